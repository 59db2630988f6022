"""A Docker registry on 127.0.0.1 for tests: Debian's `docker-registry` (distribution 2.8)
with a temporary configuration and storage, on a port it picks and says. It lives at most
``lifetime_s`` (under `timeout`), so it stops by itself if the test that started it dies."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json")
CONFIG = """\
version: 0.1
log:
  level: info
  formatter: json
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage}
http:
  addr: 127.0.0.1:0
"""


def _log_lines(proc: subprocess.Popen, lines: queue.Queue) -> None:
    """Reads the registry's log to its end (so it never blocks on a full pipe)."""
    for line in proc.stderr:
        lines.put(line)
    lines.put(None)


def _listening(lines: queue.Queue, timeout_s: float) -> str:
    """The address from the registry's "listening on H:P" log line (it has bound by then)."""
    deadline = time.monotonic() + timeout_s
    try:
        while (line := lines.get(timeout=max(0.0, deadline - time.monotonic()))) is not None:
            with contextlib.suppress(ValueError, AttributeError):
                msg = json.loads(line).get("msg", "")
                if msg.startswith("listening on "):
                    return msg.removeprefix("listening on ")
    except queue.Empty:
        raise RuntimeError(f"docker-registry did not listen within {timeout_s:g} s") from None
    raise RuntimeError("docker-registry exited before it listened")


@contextlib.contextmanager
def loopback_registry(exe: str, root: Path, lifetime_s: float = 1200.0) -> Iterator[str]:
    """Yields the registry's address, ``127.0.0.1:PORT``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yml").write_text(CONFIG.format(storage=root / "data"))
    proc = subprocess.Popen(["timeout", "--kill-after=5", str(int(lifetime_s)), exe, "serve", str(root / "config.yml")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_log_lines, args=(proc, lines), daemon=True).start()
    try:
        yield _listening(lines, 30.0)
    finally:
        proc.terminate()  # timeout passes it on
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # timeout and the registry
            proc.wait()


def manifest(address: str, repository: str, reference: str) -> tuple[str, dict[str, Any]]:
    """(the registry's Docker-Content-Digest, the manifest) of ``repository:reference``."""
    request = urllib.request.Request(f"http://{address}/v2/{repository}/manifests/{reference}",
                                     headers={"Accept": ", ".join(MANIFEST_TYPES)})
    with urllib.request.urlopen(request, timeout=10) as r:
        return r.headers["Docker-Content-Digest"], json.load(r)
