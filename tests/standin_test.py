import numpy as np
import pytest

from tests.standin import fifo_latencies, poisson_arrivals, ps_latencies, round_robin_latencies, simulated_truth
from tests.standin_server import truth_capacity


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


def test_processor_sharing_shares_the_server_equally():
    # two at once, 1 s each: both progress at 1/2 and leave at 2 s
    assert ps_latencies(np.zeros(2), 1.0) == pytest.approx([2.0, 2.0])
    # the first alone for 0.5 s (half done), then both at 1/2: it leaves at 1.5 s, the
    # second (0.5 done by then) alone until 2.0 s
    assert ps_latencies(np.array([0.0, 0.5]), 1.0) == pytest.approx([1.5, 1.5])
    assert ps_latencies(np.array([0.0, 3.0]), 1.0) == pytest.approx([1.0, 1.0])  # never together


def test_md1_ps_mean_sojourn_is_s_over_one_minus_rho():
    # M/G/1-PS is insensitive to the service distribution: mean sojourn = S / (1 - rho) = 5 S at 0.8
    service, rate = 0.01, 80.0
    lat = ps_latencies(poisson_arrivals(rate, 2000.0, seed=1), service)
    assert lat.mean() == pytest.approx(5 * service, rel=0.05)


def test_the_simulated_truth_agrees_with_the_vectorised_one_for_fifo():
    fast = truth_capacity(0.005, 2, 0.05, requests=400_000)
    assert simulated_truth(0.005, 2, 0.05, "fifo", requests=400_000) == pytest.approx(fast, rel=0.002)
    # processor sharing holds every request longer near capacity: a lower capacity at the same SLO
    assert simulated_truth(0.005, 2, 0.05, "ps", requests=400_000) < 0.95 * fast


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        round_robin_latencies(np.zeros(2), 0.01, 1, "lifo")
    with pytest.raises(ValueError):
        fifo_latencies(np.array([1.0, 0.5]), 0.01)
    with pytest.raises(ValueError):
        fifo_latencies(np.zeros(2), 0.01, servers=0)
