"""Local backend: emulates a node shape with CPU-pinned server processes on this machine.

A Config with R replicas of C CPUs becomes R `serving.launcher` processes, each pinned to
its own set of C CPUs (disjoint sets, taken in order from the CPUs this process may use),
each on its own REST port on 127.0.0.1.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from deploy.spec import Config
from deploy.target import DeployError, Target
from serving import launcher


def available_cpus() -> tuple[int, ...]:
    return tuple(sorted(os.sched_getaffinity(0)))


def cpu_sets(replicas: int, cpus_each: int, available: Sequence[int]) -> list[tuple[int, ...]]:
    """Disjoint CPU sets, one per replica, taken in order from ``available``."""
    need = replicas * cpus_each
    if need > len(available):
        raise DeployError(
            f"{replicas} replicas x {cpus_each} CPUs need {need} CPUs; only {len(available)} are available here "
            f"({', '.join(map(str, available))})"
        )
    cpus = list(available)
    return [tuple(cpus[i * cpus_each : (i + 1) * cpus_each]) for i in range(replicas)]


class LocalBackend:
    """Runs each Config as pinned local server processes; use as a context manager."""

    def __init__(
        self,
        *,
        model_base_path: str | os.PathLike[str],
        workdir: str | os.PathLike[str],
        host: str = "127.0.0.1",
        cpus: Sequence[int] | None = None,
        server_binary: str | None = None,
        available_timeout_s: float = 180.0,
        launch: Callable[..., Any] | None = None,
        server_nice: int = 10,
    ) -> None:
        self.model_base_path = Path(model_base_path)
        self.workdir = Path(workdir)
        self.host = host
        self.cpus = tuple(cpus) if cpus is not None else available_cpus()
        self.server_binary = server_binary
        self.available_timeout_s = available_timeout_s
        self._launch = launch
        # The load generator shares this machine with the servers (on a cluster it would not):
        # lower the servers' CPU priority so the generator keeps to its schedule.
        self.server_nice = server_nice
        self._procs: list[Any] = []

    def __enter__(self) -> LocalBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    def deploy(self, config: Config) -> Target:
        if self._procs:
            raise DeployError("a configuration is still running: call teardown() first")
        if not self.model_base_path.is_dir():
            raise DeployError(f"model base path {self.model_base_path} is not a directory")
        launch = self._launch or launcher.launch
        sets = cpu_sets(config.replicas, config.cpu, self.cpus)
        try:
            for i, cpus in enumerate(sets):
                self._procs.append(
                    launch(
                        config.serving,
                        model_base_path=self.model_base_path,
                        host=self.host,
                        rest_port=0,  # a free one
                        cpus=cpus,
                        server_binary=self.server_binary,
                        workdir=self.workdir / config.name / f"replica-{i}",
                        nice=self.server_nice,
                    )
                )
            for proc in self._procs:
                proc.wait_available(self.available_timeout_s)
        except BaseException as e:
            self.teardown()
            if isinstance(e, DeployError) or not isinstance(e, Exception):
                raise
            raise DeployError(f"{config.name}: local server did not come up: {e}") from e
        identity = dict(self._procs[0].identity)
        identity.pop("pid", None)
        identity["replicas"] = len(self._procs)
        identity["cpus"] = [list(s) for s in sets]  # one CPU set per replica
        model = config.serving.model_name
        bases = tuple(p.url for p in self._procs)
        return Target(base_urls=bases, model_name=model, identity=identity)

    def problems(self) -> list[str]:
        """Replicas of the running Config that have exited (e.g. killed or crashed) since deploy."""
        return [
            f"replica {i} (pid {proc.pid}, {proc.url}) exited with code {proc.proc.returncode}"
            for i, proc in enumerate(self._procs)
            if proc.proc.poll() is not None
        ]

    def pids(self) -> list[int]:
        """Process ids of the running Config's replicas, in replica order."""
        return [proc.pid for proc in self._procs]

    def teardown(self) -> None:
        procs, self._procs = self._procs, []
        errors = []
        for proc in reversed(procs):
            try:
                proc.stop()
            except Exception as e:  # keep stopping the others
                errors.append(str(e))
        if errors:
            raise DeployError("teardown: " + "; ".join(errors))
