"""A run keeps the garbage collector off the heap that existed before it (launch.frozen_heap)."""

import gc

from loadgen.run import RunOptions, run
from loadgen.schedule import Profile
from tests.loadgen_helpers import running_server


def test_the_heap_is_frozen_while_sending_and_unfrozen_after(tmp_path):
    seen = []

    def until(interval) -> bool:  # called on the sending loop, once a second
        seen.append(gc.get_freeze_count())
        return False

    garbage = [[i] for i in range(50_000)]  # survives into the run: frozen, not walked
    with running_server("--delay-ms", "2") as (url, _):
        options = RunOptions(targets=(url + "/v1/models/a:predict",),
                             profile=Profile(kind="constant", rate=50.0, duration_s=2.0),
                             payload="b64", max_in_flight=16, timeout_s=5.0)
        rec = run(options, str(tmp_path), until=until).record
    assert rec["complete"] is True and rec["totals"]["ok"] == 100
    assert len(seen) >= 2 and min(seen) >= len(garbage)
    assert gc.get_freeze_count() == 0
