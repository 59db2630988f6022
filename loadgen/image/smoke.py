"""Runs the generator image as the Job's pod would, before it is pushed: the image's own
entrypoint, user, environment and working directory, the root filesystem read-only and
``/tmp`` an empty writable directory (the Job's ``readOnlyRootFilesystem`` and its ``/tmp``
emptyDir), and checks that the agent answers its readiness path.

The image's root filesystem comes from the builder (``Buildah.mounted``); the process runs
in a private mount namespace (``unshare``) with ``chroot``, on the host's network, so it is
reached on 127.0.0.1. It needs root. The agent is started with ``--max-idle``, so it exits
by itself if whoever started it goes away.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import shlex
import subprocess
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from formats.agent import READY_PATH
from loadgen.image import rootfs
from serving.image.builder import Buildah, ImageBuildError

# the agent on loopback, on a free port it prints first, exiting after a minute alone
SMOKE_ARGS = ("--host", "127.0.0.1", "--port", "0", "--max-idle", "60s")
TMP_SIZE = "256m"
START_TIMEOUT_S = 60.0


def pod_command(root: Path, config: Mapping[str, Any], args: Sequence[str],
                env: Mapping[str, str] | None = None) -> list[str]:
    """The command that runs ``config``'s entrypoint with ``args`` over the image root
    filesystem ``root``: read-only, fresh /proc, the host's /dev with a private /dev/shm,
    a tmpfs /tmp, as the image's (numeric) user."""
    user = config.get("User") or "0:0"
    uid, _, gid = user.partition(":")
    if not uid.isdigit() or not (gid or uid).isdigit():
        raise ImageBuildError(f"the image's user {user!r} is not numeric (Kubernetes' runAsNonRoot needs uid:gid)")
    r = shlex.quote(str(root))
    mounts = [
        f"mount --bind {r} {r}",
        f"mount -o remount,bind,ro {r}",
        f"mount -t proc proc {r}/proc",
        f"mount --rbind /dev {r}/dev",
        f"mount -t tmpfs -o mode=1777,size={TMP_SIZE} tmpfs {r}/dev/shm",
        f"mount -t tmpfs -o mode=1777,size={TMP_SIZE} tmpfs {r}/tmp",
    ]
    variables = [*config.get("Env", []), *(f"{k}={v}" for k, v in (env or {}).items())]
    argv = [*config.get("Entrypoint", []), *args]
    run = ["chroot", f"--userspec={uid}:{gid or uid}", str(root), "/usr/bin/env", "-i",
           "-C", config.get("WorkingDir") or "/", *variables, *argv]
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            " && ".join(mounts) + " && exec " + shlex.join(run)]


def _first_line(proc: subprocess.Popen, timeout_s: float) -> str:
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout_s):
            return ""
    return proc.stdout.readline()


@contextlib.contextmanager
def running_agent(builder: Buildah, image: str, log: Path, args: Sequence[str] = SMOKE_ARGS,
                  env: Mapping[str, str] | None = None) -> Iterator[str]:
    """The agent of ``image`` running as the pod would; yields its base URL."""
    config = builder.config(image)
    with builder.mounted(image) as root, open(log, "w") as err:
        proc = subprocess.Popen(pod_command(root, config, args, env), stdout=subprocess.PIPE, stderr=err,
                                text=True, env=rootfs.sbin_env())
        try:
            line = _first_line(proc, START_TIMEOUT_S)
            if not line.strip().isdigit():
                proc.kill()
                proc.wait()
                raise ImageBuildError(f"the agent in {image} did not start (said {line.strip()!r}; exit status "
                                      f"{proc.returncode}); its stderr: {log.read_text()[-2000:]}")
            yield f"http://127.0.0.1:{int(line)}"
        finally:
            if proc.poll() is None:
                proc.terminate()  # the agent itself (sh and chroot exec it): SIGTERM as a pod deleted
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            proc.stdout.close()


def ready(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + READY_PATH, timeout=10) as r:
        return json.load(r)


def check(builder: Buildah, image: str, log: Path) -> str:
    """Starts the image's agent as the pod would and asks it if it is ready; returns what
    happened, in a line (raises ImageBuildError when it does not answer ready)."""
    with running_agent(builder, image, log) as url:
        answer = ready(url)
    if answer.get("ready") is not True:
        raise ImageBuildError(f"the agent in {image} answered {READY_PATH} with {answer}")
    user = builder.config(image).get("User")
    return (f"smoke: the image's agent answered {READY_PATH} ready on {url} (its entrypoint as user {user}, "
            "root filesystem read-only, /tmp a fresh tmpfs)")
