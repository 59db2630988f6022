"""What the REST and gRPC handlers share: the model, its batching queues, the run pool and
the metrics, so a request reaches the same servable and the same queue by either protocol.

Resolving a model spec follows TF Serving's ServerCore (the same NOT_FOUND and
INVALID_ARGUMENT messages for both protocols); running applies the request timeout
(``--rest_api_timeout_in_ms``) as TF Serving applies RunOptions' timeout.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import Mapping

import numpy as np

from serving.batching import BatchScheduler
from serving.config import ServingConfig
from serving.errors import ApiError, invalid
from serving.metrics import ServerMetrics
from serving.servable import Model, Servable


def servable_spec(name: str, version: int | None) -> str:
    """How TF Serving names a servable request in NOT_FOUND: ``Latest(m)`` / ``Specific(m, 7)``."""
    return f"Specific({name}, {version})" if version is not None else f"Latest({name})"


class Inference:
    """One model's servables, batching schedulers, run pool and metrics."""

    def __init__(self, model: Model, config: ServingConfig, *, metrics: ServerMetrics | None = None) -> None:
        self.model = model
        self.config = config
        self.metrics = metrics or ServerMetrics()
        self.timeout_s = config.rest_api_timeout_ms / 1000.0
        cpus = len(os.sched_getaffinity(0))
        threads = config.rest_api_num_threads or 4 * cpus
        self._executor = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="run")
        self._schedulers: dict[int, BatchScheduler] = {}
        params = config.batching_effective
        if params is not None:
            for version, servable in model.versions.items():
                self._schedulers[version] = BatchScheduler(
                    servable.run, params, schedulable_cpus=cpus, metrics=self.metrics
                )
        self.in_flight = 0
        self._closed = False

    def resolve(self, name: str, version: int | None, label: str | None) -> Servable:
        """The servable a request names (a version label, a version, or the latest)."""
        if label is not None:
            if name != self.model.name or label not in self.model.labels:
                raise invalid(f"Unrecognized servable version label: {label}")
            version = self.model.labels[label]
        if name != self.model.name or (version is not None and version not in self.model.versions):
            raise ApiError("NOT_FOUND", f"Servable not found for request: {servable_spec(name, version)}")
        return self.model.versions[version] if version is not None else self.model.latest

    def status_versions(self, name: str, version: int | None, label: str | None) -> list[int]:
        """The versions GetModelStatus reports (get_model_status_impl.cc): the one asked for, or
        all of them, newest first."""
        if name != self.model.name:
            raise ApiError("NOT_FOUND", f"Could not find any versions of model {name}")
        if label is not None:
            if label not in self.model.labels:
                raise invalid(f"Unrecognized servable version label: {label}")
            version = self.model.labels[label]
        if version is not None and version not in self.model.versions:
            raise ApiError("NOT_FOUND", f"Could not find version {version} of model {name}")
        return [version] if version is not None else sorted(self.model.versions, reverse=True)

    async def run(self, servable: Servable, signature: str, tensors: Mapping[str, np.ndarray]) -> dict:
        """Runs through the version's batching queue (when batching is on) or the pool."""
        scheduler = self._schedulers.get(servable.version)
        if scheduler is not None:
            work = scheduler.submit(signature, tensors)
        else:
            loop = asyncio.get_running_loop()
            work = loop.run_in_executor(self._executor, servable.run, signature, tensors)
        try:
            return await asyncio.wait_for(work, self.timeout_s)
        except TimeoutError:
            raise ApiError("DEADLINE_EXCEEDED", "Deadline Exceeded") from None

    async def close(self) -> None:
        """Stops the schedulers and the pool once (both protocols' handlers may call it)."""
        if self._closed:
            return
        self._closed = True
        for scheduler in self._schedulers.values():
            await scheduler.close()
        self._executor.shutdown(wait=True)
