"""Start a TF Serving-compatible server for a ServingConfig and say exactly what runs.

The real `tensorflow_model_server` when it is on PATH (or given as `server_binary`),
otherwise the local server (`serving.local_server`). Both get their settings from the
same ServingConfig; the real one through its flags and text-proto files, the local one
through the config as JSON. Optionally pinned to a CPU set (`os.sched_setaffinity`), which
is how deploy's local backend emulates node shapes.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from serving.config import ServingConfig

TFS_BINARY = "tensorflow_model_server"
LOCAL_VERSION = "servesweep-local-server/1"
CONFIG_JSON = "serving_config.json"


class LaunchError(RuntimeError):
    """The server could not be started or did not become AVAILABLE."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _tensorflow_version() -> str:
    for dist in ("tensorflow-cpu", "tensorflow"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return importlib.metadata.version(dist)
    return "unknown"


def _binary_version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"unknown ({err})"
    lines = (out.stdout or out.stderr).strip().splitlines()
    return " ".join(line.strip() for line in lines[:2]) or "unknown"


class ServerProcess:
    """A started server: `.url` (REST base), `.grpc_url` (grpc://HOST:PORT), `.identity` (run.json
    "server"), `.wait_available()`, `.stop()`."""

    def __init__(
        self,
        proc: subprocess.Popen,
        *,
        url: str,
        model_name: str,
        identity: dict[str, Any],
        log_path: Path,
        grpc_url: str | None = None,
    ) -> None:
        self.proc = proc
        self.url = url
        self.grpc_url = grpc_url
        self.model_name = model_name
        self.identity = identity
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def status(self) -> list[dict[str, Any]] | None:
        """The model's version states, or None if the server does not answer yet."""
        try:
            with urllib.request.urlopen(f"{self.url}/v1/models/{self.model_name}", timeout=2) as response:
                return json.loads(response.read()).get("model_version_status", [])
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def wait_available(self, timeout_s: float = 120.0) -> None:
        """Blocks until a version is AVAILABLE; raises LaunchError if the process dies or time runs out."""
        deadline = time.monotonic() + timeout_s
        while True:
            code = self.proc.poll()
            if code is not None:
                raise LaunchError(
                    f"{self.identity['kind']} exited with status {code} before the model was AVAILABLE; "
                    f"log {self.log_path}:\n{self._log_tail()}"
                )
            states = self.status()
            if states and any(s.get("state") == "AVAILABLE" for s in states):
                return
            if time.monotonic() > deadline:
                raise LaunchError(
                    f"model {self.model_name} not AVAILABLE at {self.url} after {timeout_s:.0f} s; "
                    f"log {self.log_path}:\n{self._log_tail()}"
                )
            time.sleep(0.2)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM (graceful: in-flight requests finish), then SIGKILL after `timeout_s`."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _child_setup(cpus: Sequence[int] | None, nice: int):
    """Runs in the child between fork and exec: pin and renice before any thread exists."""
    if cpus is None and nice == 0:
        return None
    wanted = set(cpus) if cpus is not None else None

    def setup() -> None:
        if wanted is not None:
            os.sched_setaffinity(0, wanted)
        if nice:
            os.nice(nice)
            # start_new_session put us in a new scheduler autogroup (where the kernel has them),
            # and CPU is shared between autogroups by the group's nice, not the threads'.
            with contextlib.suppress(OSError), open("/proc/self/autogroup", "w") as group:
                group.write(str(nice))

    return setup


def launch(
    config: ServingConfig,
    *,
    model_base_path: str | os.PathLike[str],
    host: str = "127.0.0.1",
    rest_port: int,
    cpus: Sequence[int] | None = None,
    server_binary: str | None = None,
    workdir: str | os.PathLike[str],
    grpc_port: int | None = None,
    max_body_bytes: int | None = None,
    local: bool = False,
    nice: int = 0,
    grpc_max_threads: int | None = None,
) -> ServerProcess:
    """Starts the server (without waiting; call `.wait_available()`). `rest_port=0` picks a free port.

    `local=True` runs the local server even when tensorflow_model_server is on PATH. `cpus` pins
    the process (and so every thread it starts) before it runs; `nice` > 0 lowers its CPU
    priority, so that a load generator sharing the machine is not starved by the server.
    `grpc_max_threads` is the binaries' `--grpc_max_threads` (RPCs served at once).
    """
    base = Path(model_base_path).absolute()
    if not base.is_dir():
        raise LaunchError(f"model base path {base} is not a directory")
    work = Path(workdir).absolute()
    work.mkdir(parents=True, exist_ok=True)
    port = rest_port or free_port(host)
    binary = server_binary or (None if local else shutil.which(TFS_BINARY))
    files = config.write_files(work, base_path=str(base))
    grpc = grpc_port or free_port(host)
    if binary:
        argv = config.argv(config_dir=work, rest_port=port, grpc_port=grpc, binary=binary)
        if grpc_max_threads is not None:
            argv.append(f"--grpc_max_threads={grpc_max_threads}")
        identity = {
            "kind": "tensorflow_model_server",
            "version": _binary_version(binary),
            "argv": argv,
            "image_digest": None,
        }
        env = dict(os.environ)
    else:
        (work / CONFIG_JSON).write_text(json.dumps(config.to_dict(), indent=1, sort_keys=True) + "\n")
        argv = [
            sys.executable, "-m", "serving.local_server",
            f"--model_base_path={base}",
            f"--config={work / CONFIG_JSON}",
            f"--rest_api_port={port}",
            f"--port={grpc}",
            f"--host={host}",
        ]
        if max_body_bytes is not None:
            argv.append(f"--max_body_bytes={max_body_bytes}")
        if grpc_max_threads is not None:
            argv.append(f"--grpc_max_threads={grpc_max_threads}")
        identity = {
            "kind": "local",
            "version": f"{LOCAL_VERSION} tensorflow/{_tensorflow_version()}",
            "argv": argv,
            "image_digest": None,
        }
        env = dict(os.environ)
        root = str(Path(__file__).absolute().parent.parent)  # the directory holding serving/
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    identity["files"] = {name: path.read_text() for name, path in files.items()}
    identity["cpus"] = sorted(cpus) if cpus is not None else None
    identity["nice"] = nice
    if cpus is not None:
        try:  # fail here, with a clear message, rather than in the child
            unknown = set(cpus) - os.sched_getaffinity(0)
        except OSError as err:
            raise LaunchError(f"cannot read this process's CPU affinity: {err.strerror}") from None
        if unknown:
            raise LaunchError(f"cannot pin the server to CPUs {sorted(cpus)}: {sorted(unknown)} not usable here")
    log_path = work / "server.log"
    with open(log_path, "ab") as log:
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work,
                start_new_session=True,  # Ctrl-C in the terminal reaches the parent only; the parent stops us
                preexec_fn=_child_setup(cpus, nice),
            )
        except (OSError, subprocess.SubprocessError) as err:
            raise LaunchError(f"cannot start {argv[0]}: {getattr(err, 'strerror', None) or err}") from None
    identity["pid"] = proc.pid
    return ServerProcess(proc, url=f"http://{host}:{port}", model_name=config.model_name, identity=identity,
                         log_path=log_path, grpc_url=f"grpc://{host}:{grpc}")
