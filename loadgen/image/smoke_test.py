import shlex

import pytest

from loadgen.image import smoke
from serving.image.builder import ImageBuildError

CONFIG = {"User": "65532:65532", "WorkingDir": "/opt/servesweep/app",
          "Env": ["PATH=/usr/bin:/bin", "PYTHONPATH=/opt/servesweep/app:/opt/servesweep/lib"],
          "Entrypoint": ["/usr/bin/python3", "-m", "loadgen.agent_cli"], "Cmd": ["--port", "8600"]}


def test_the_image_runs_as_its_pod_would():
    cmd = smoke.pod_command("/st/c1", CONFIG, ["--port", "0"], {"SERVESWEEP_GENERATORS": "2"})
    assert cmd[:6] == ["unshare", "--mount", "--propagation", "private", "sh", "-c"]
    steps = cmd[6].split(" && ")
    # the root is read-only before anything is mounted on it; /tmp and /dev/shm are fresh
    assert steps[:3] == ["mount --bind /st/c1 /st/c1", "mount -o remount,bind,ro /st/c1",
                         "mount -t proc proc /st/c1/proc"]
    assert "mount -t tmpfs -o mode=1777,size=256m tmpfs /st/c1/tmp" in steps
    assert steps[-1].startswith("exec chroot")
    argv = shlex.split(steps[-1])[1:]
    assert argv[:7] == ["chroot", "--userspec=65532:65532", "/st/c1", "/usr/bin/env", "-i", "-C",
                        "/opt/servesweep/app"]
    assert argv[7:] == [*CONFIG["Env"], "SERVESWEEP_GENERATORS=2", "/usr/bin/python3", "-m", "loadgen.agent_cli",
                        "--port", "0"]  # the entrypoint with the given args in place of Cmd


def test_a_named_user_is_refused():
    with pytest.raises(ImageBuildError, match="not numeric"):
        smoke.pod_command("/r", {**CONFIG, "User": "agent"}, [])
