import numpy as np
import pytest

from tests.standin import fifo_latencies, poisson_arrivals


def test_a_queue_that_never_forms_holds_each_request_for_the_service_time():
    arrivals = np.arange(10) * 0.1  # one every 100 ms, 30 ms each
    assert fifo_latencies(arrivals, 0.03) == pytest.approx(np.full(10, 0.03))


def test_a_burst_is_served_in_rounds_of_c():
    # 5 requests at once, 2 servers, 10 ms each: 10, 10, 20, 20, 30 ms
    got = fifo_latencies(np.zeros(5), 0.01, servers=2)
    assert got == pytest.approx([0.01, 0.01, 0.02, 0.02, 0.03])


def test_md1_mean_wait_matches_pollaczek_khinchine():
    # M/D/1 at rho = 0.8: mean wait in queue = rho * S / (2 (1 - rho)) = 2 S
    service, rate = 0.01, 80.0
    lat = fifo_latencies(poisson_arrivals(rate, 2000.0, seed=1), service)
    assert lat.mean() - service == pytest.approx(2 * service, rel=0.05)


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        fifo_latencies(np.array([1.0, 0.5]), 0.01)
    with pytest.raises(ValueError):
        fifo_latencies(np.zeros(2), 0.01, servers=0)
