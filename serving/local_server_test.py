"""The local server's process settings (the HTTP API itself is tested in http_api_test)."""

import os
import platform
import subprocess
import sys
import textwrap

import pytest

# Allocate and free ~40 MB of numpy temporaries (sizes a batch of seed images makes) several
# times; print the minor page faults of the last rounds. glibc's default gives such blocks
# back to the kernel when freed, so each round faults them in again.
PROBE = textwrap.dedent("""
    import resource, sys
    import numpy as np
    if sys.argv[1] == "keep":
        from serving.local_server import keep_freed_memory
        assert keep_freed_memory()
    def round_():
        arrays = [np.ones(n, np.uint8) for n in (8_000_000,) * 5]
        return sum(int(a[-1]) for a in arrays)
    for _ in range(3):
        round_()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        round_()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _faults(mode: str) -> int:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(os.path.abspath(p or ".") for p in sys.path)}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                         env=env, check=True, timeout=60)
    return int(out.stdout.strip())


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_freed_request_memory_is_reused_not_faulted_in_again():
    default, kept = _faults("default"), _faults("keep")
    # 5 rounds x 40 MB: glibc's default hands part of it back each round (~10k faults here);
    # kept memory is reused as it is
    assert default > 5_000, default
    assert kept < default / 10, (kept, default)
