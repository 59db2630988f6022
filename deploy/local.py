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
    """Runs each Config as pinned local server processes; use as a context manager.

    Several Configs may be up at once (``holds_many``): the capacity search keeps them all
    up and interleaves its probes across them; an idle server costs no CPU.
    """

    holds_many = True

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
        self._running: dict[str, list[Any]] = {}  # config id -> its replicas

    def __enter__(self) -> LocalBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    def deploy(self, config: Config) -> Target:
        if config.id in self._running:
            raise DeployError(f"{config.name} is already running: call teardown() first")
        if not self.model_base_path.is_dir():
            raise DeployError(f"model base path {self.model_base_path} is not a directory")
        launch = self._launch or launcher.launch
        sets = cpu_sets(config.replicas, config.cpu, self.cpus)
        procs = self._running[config.id] = []
        try:
            for i, cpus in enumerate(sets):
                procs.append(
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
            for proc in procs:
                proc.wait_available(self.available_timeout_s)
        except BaseException as e:
            self.teardown(config)
            if isinstance(e, DeployError) or not isinstance(e, Exception):
                raise
            raise DeployError(f"{config.name}: local server did not come up: {e}") from e
        identity = dict(procs[0].identity)
        identity.pop("pid", None)
        identity["replicas"] = len(procs)
        identity["cpus"] = [list(s) for s in sets]  # one CPU set per replica
        model = config.serving.model_name
        bases = tuple(p.url for p in procs)
        grpc_bases = tuple(p.grpc_url for p in procs) if all(p.grpc_url for p in procs) else ()
        return Target(base_urls=bases, model_name=model, identity=identity, grpc_bases=grpc_bases)

    def _of(self, config: Config | None) -> list[Any]:
        if config is not None:
            return self._running.get(config.id, [])
        return [p for procs in self._running.values() for p in procs]

    def problems(self, config: Config | None = None) -> list[str]:
        """Replicas that have exited (e.g. killed or crashed) since deploy: ``config``'s, or all."""
        return [
            f"replica {i} (pid {proc.pid}, {proc.url}) exited with code {proc.proc.returncode}"
            for i, proc in enumerate(self._of(config))
            if proc.proc.poll() is not None
        ]

    def pids(self, config: Config | None = None) -> list[int]:
        """Process ids of ``config``'s replicas (or every running one), in replica order."""
        return [proc.pid for proc in self._of(config)]

    def teardown(self, config: Config | None = None) -> None:
        """Stops ``config``'s servers, or every running Config's; safe to call twice."""
        if config is None:
            procs = self._of(None)
            self._running = {}
        else:
            procs = self._running.pop(config.id, [])
        errors = []
        for proc in reversed(procs):
            try:
                proc.stop()
            except Exception as e:  # keep stopping the others
                errors.append(str(e))
        if errors:
            raise DeployError("teardown: " + "; ".join(errors))
