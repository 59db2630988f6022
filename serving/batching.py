"""Server-side batching with the semantics of TF Serving's SharedBatchScheduler + BatchingSession.

- Tasks (requests) join the open batch of their queue while it has room for them
  (`max_batch_size`); a task that does not fit closes it and opens the next one.
- A batch runs when it is full or closed, or when `batch_timeout_micros` has passed since
  its first task (0 = as soon as a batch thread is free), on one of `num_batch_threads`.
- A queue holds at most `max_enqueued_batches` batches; a task that would need one more is
  refused at once with UNAVAILABLE (503): load is shed, never queued without bound.
- A task larger than `max_batch_size` is refused (INVALID_ARGUMENT), as without splitting.
- With `allowed_batch_sizes`, a batch is padded up to the next allowed size (with copies of
  its first row) and the padding is cut off the outputs.

Everything here runs on the event loop except the model runs, which go to a thread pool.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import concurrent.futures
import dataclasses
import time
from collections.abc import Callable, Mapping

import numpy as np

from serving.config import BatchingParameters
from serving.json_tensor import ApiError
from serving.metrics import ServerMetrics

QUEUE_FULL_MESSAGE = "The batch scheduling queue to which this task was submitted is full"

RunFn = Callable[[str, Mapping[str, np.ndarray]], dict[str, np.ndarray]]


def task_size(tensors: Mapping[str, np.ndarray]) -> int:
    """The 0th dimension shared by every input (BatchingSession's rule)."""
    sizes = set()
    for arr in tensors.values():
        if arr.ndim == 0:
            raise ApiError("INVALID_ARGUMENT", "Batching session Run() input tensors must have at least one dimension")
        sizes.add(arr.shape[0])
    if len(sizes) != 1:
        raise ApiError("INVALID_ARGUMENT", "Batching Run() input tensors must have equal 0th-dimension size")
    return sizes.pop()


@dataclasses.dataclass
class _Task:
    tensors: Mapping[str, np.ndarray]
    size: int
    future: asyncio.Future
    enqueued: float


@dataclasses.dataclass
class _Batch:
    tasks: list[_Task] = dataclasses.field(default_factory=list)
    size: int = 0
    opened: float = 0.0
    closed: bool = False


class BatchScheduler:
    """One scheduler per servable; queues are keyed by signature and input shapes."""

    def __init__(
        self,
        run: RunFn,
        params: BatchingParameters,
        *,
        schedulable_cpus: int,
        metrics: ServerMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._run = run
        self.max_batch_size = params.effective_max_batch_size
        self.timeout_s = params.effective_batch_timeout_micros / 1e6
        self.max_enqueued = params.effective_max_enqueued_batches
        self.threads = params.effective_num_batch_threads(schedulable_cpus)
        self.allowed = tuple(params.allowed_batch_sizes)
        self.pad_variable_length = params.pad_variable_length_inputs
        self.pool_name = params.effective_thread_pool_name
        self._metrics = metrics
        self._clock = clock
        self._queues: dict[tuple, collections.deque[_Batch]] = {}
        self._busy = 0
        self._executor = concurrent.futures.ThreadPoolExecutor(self.threads, thread_name_prefix=self.pool_name)
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task] = set()
        self._closed = False

    # --- submitting ---------------------------------------------------------------------

    async def submit(self, signature: str, tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        size = task_size(tensors)
        if size > self.max_batch_size:
            raise ApiError(
                "INVALID_ARGUMENT", f"Task size {size} is larger than maximum input batch size {self.max_batch_size}"
            )
        if self._closed:
            raise ApiError("UNAVAILABLE", "Server is shutting down")
        key = self._key(signature, tensors)
        queue = self._queues.setdefault(key, collections.deque())
        now = self._clock()
        if queue and not queue[-1].closed and queue[-1].size + size <= self.max_batch_size:
            batch = queue[-1]
        else:
            if len(queue) >= self.max_enqueued:
                raise ApiError("UNAVAILABLE", QUEUE_FULL_MESSAGE)
            if queue:
                queue[-1].closed = True
            batch = _Batch(opened=now)
            queue.append(batch)
        future = asyncio.get_running_loop().create_future()
        batch.tasks.append(_Task(tensors, size, future, now))
        batch.size += size
        if batch.size >= self.max_batch_size:
            batch.closed = True
        self._dispatch()
        return await future

    def _key(self, signature: str, tensors: Mapping[str, np.ndarray]) -> tuple:
        if self.pad_variable_length:
            return (signature, tuple(sorted((k, v.dtype.str, v.ndim) for k, v in tensors.items())))
        return (signature, tuple(sorted((k, v.dtype.str, v.shape[1:]) for k, v in tensors.items())))

    # --- scheduling ---------------------------------------------------------------------

    def queued_tasks(self) -> int:
        return sum(len(b.tasks) for q in self._queues.values() for b in q)

    def _ready(self, batch: _Batch, now: float) -> bool:
        """Full, timed out, or the scheduler is closing (queued batches no longer wait)."""
        return batch.closed or self._closed or now - batch.opened >= self.timeout_s

    def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        now = self._clock()
        while self._busy < self.threads:
            # The oldest ready batch across queues (round robin by age, as the shared scheduler).
            candidates = [(q[0].opened, key) for key, q in self._queues.items() if q and self._ready(q[0], now)]
            if not candidates:
                break
            _opened, key = min(candidates)
            batch = self._queues[key].popleft()
            if not self._queues[key]:
                del self._queues[key]
            self._busy += 1
            task = loop.create_task(self._process(key[0], batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        self._arm_timer(loop, now)

    def _arm_timer(self, loop: asyncio.AbstractEventLoop, now: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._busy >= self.threads:
            return  # a finishing batch dispatches again
        pending = [q[0].opened + self.timeout_s for q in self._queues.values() if q]
        if pending:
            self._timer = loop.call_later(max(0.0, min(pending) - now), self._dispatch)

    async def _process(self, signature: str, batch: _Batch) -> None:
        started = self._clock()
        live = [t for t in batch.tasks if not t.future.done()]  # timed-out callers are dropped
        try:
            if not live:
                return
            for t in live:
                self._metrics.queuing_latency.observe((started - t.enqueued) * 1e6, self.pool_name)
            size = sum(t.size for t in live)
            padded = self._padded_size(size)
            inputs = self._merge(live, padded)
            self._metrics.input_batch_size.observe(size)
            self._metrics.processed_batch_size.observe(padded)
            self._metrics.padding_size.observe(padded - size, str(padded))
            self._metrics.wrapped_run_count.inc()
            loop = asyncio.get_running_loop()
            try:
                outputs = await loop.run_in_executor(self._executor, self._run, signature, inputs)
            except ApiError as err:
                for t in live:
                    if not t.future.done():
                        t.future.set_exception(ApiError(err.code, err.message))
                return
            offset = 0
            for t in live:
                part = {k: v[offset : offset + t.size] for k, v in outputs.items()}
                offset += t.size
                if not t.future.done():
                    t.future.set_result(part)
        except Exception as err:  # never leave a caller hanging
            for t in live:
                if not t.future.done():
                    t.future.set_exception(ApiError("INTERNAL", f"batch failed: {err}"))
        finally:
            self._busy -= 1
            self._dispatch()

    def _padded_size(self, size: int) -> int:
        if not self.allowed:
            return size
        return self.allowed[bisect.bisect_left(self.allowed, size)]

    def _merge(self, tasks: list[_Task], padded: int) -> dict[str, np.ndarray]:
        merged = {}
        for name in tasks[0].tensors:
            parts = [t.tensors[name] for t in tasks]
            if self.pad_variable_length:
                parts = _pad_to_common_shape(parts)
            size = sum(len(p) for p in parts)
            if padded > size:
                first = parts[0][:1]
                parts.append(np.repeat(first, padded - size, axis=0))
            merged[name] = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
        return merged

    async def close(self) -> None:
        """Stops accepting tasks; batches already queued run now, without waiting out their timeout."""
        self._closed = True
        self._dispatch()
        while self._busy or self.queued_tasks():
            await asyncio.sleep(0.01)
        self._executor.shutdown(wait=True)


def _pad_to_common_shape(parts: list[np.ndarray]) -> list[np.ndarray]:
    """pad_variable_length_inputs: pads dims 1.. of each part to the largest (with zeros / empty)."""
    target = tuple(max(p.shape[d] for p in parts) for d in range(1, parts[0].ndim))
    out = []
    for p in parts:
        widths = [(0, 0)] + [(0, t - s) for s, t in zip(p.shape[1:], target, strict=True)]
        out.append(np.pad(p, widths) if any(w for _, w in widths) else p)
    return out
