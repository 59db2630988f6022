"""BatchScheduler: TF Serving's batching semantics, with a fake model run (no TensorFlow)."""

import asyncio
import threading
import time

import numpy as np
import pytest

from serving.batching import QUEUE_FULL_MESSAGE, BatchScheduler
from serving.config import BatchingParameters
from serving.json_tensor import ApiError
from serving.metrics import ServerMetrics


class FakeModel:
    """Doubles its input; records the batch sizes it started and ran; can be held to fill the queue."""

    def __init__(self):
        self.started = []  # batch sizes, appended as a run begins (before it waits for `release`)
        self.batches = []
        self.release = threading.Event()
        self.release.set()

    def run(self, signature, inputs):
        self.started.append(len(inputs["x"]))
        self.release.wait(10)
        self.batches.append(len(inputs["x"]))
        return {"y": inputs["x"] * 2}


def scheduler(model, metrics=None, **params):
    params = BatchingParameters(**params)
    return BatchScheduler(model.run, params, schedulable_cpus=2, metrics=metrics or ServerMetrics())


def rows(n, start=0):
    return {"x": np.arange(start, start + n, dtype=np.float32).reshape(n, 1)}


async def gather(*aws):
    return await asyncio.gather(*aws, return_exceptions=True)


async def until(condition, what, timeout_s=5.0):
    """Lets the event loop run until ``condition()`` holds; fails saying ``what`` never happened."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(0.001)


def test_concurrent_tasks_are_merged_and_results_split_back():
    async def go():
        model = FakeModel()
        model.release.clear()
        s = scheduler(model, max_batch_size=4, max_enqueued_batches=10, num_batch_threads=1)
        first = asyncio.ensure_future(s.submit("sig", rows(1, 100)))
        await until(lambda: len(model.started) == 1, "the first batch is running (held)")
        tasks = [asyncio.ensure_future(s.submit("sig", rows(1, i))) for i in range(8)]
        await until(lambda: s.queued_tasks() == 8, "all 8 tasks are queued behind it")
        model.release.set()
        results = await gather(first, *tasks)
        await s.close()
        return model, results

    model, results = asyncio.run(go())
    assert results[0]["y"].tolist() == [[200.0]]
    assert [r["y"].tolist() for r in results[1:]] == [[[2.0 * i]] for i in range(8)]
    assert model.batches == [1, 4, 4]


def test_a_full_queue_answers_unavailable_at_once():
    async def go():
        model = FakeModel()
        model.release.clear()
        s = scheduler(model, max_batch_size=2, max_enqueued_batches=2, num_batch_threads=1)
        running = asyncio.ensure_future(s.submit("sig", rows(1)))
        await until(lambda: len(model.started) == 1, "the first batch is running (held)")
        tasks = [asyncio.ensure_future(s.submit("sig", rows(1))) for _ in range(10)]
        # each task is either queued or already answered; none has waited for the model
        await until(lambda: s.queued_tasks() + sum(t.done() for t in tasks) == 10, "all 10 tasks submitted")
        refused = [t for t in tasks if t.done()]
        model.release.set()
        results = await gather(running, *tasks)
        await s.close()
        return refused, results

    refused, results = asyncio.run(go())
    errors = [r for r in results if isinstance(r, ApiError)]
    assert len(refused) == 6 and len(errors) == 6  # 2 batches of 2 queued; the rest shed immediately
    assert {(e.code, e.message) for e in errors} == {("UNAVAILABLE", QUEUE_FULL_MESSAGE)}


def test_batch_timeout_waits_for_more_tasks():
    async def go():
        model = FakeModel()
        s = scheduler(model, max_batch_size=8, batch_timeout_micros=200_000, num_batch_threads=1)
        started = time.monotonic()
        first = asyncio.ensure_future(s.submit("sig", rows(1)))
        await until(lambda: s.queued_tasks() == 1, "the first task is queued")
        await asyncio.sleep(0.02)  # the others arrive 20 ms later, well within the 200 ms timeout
        assert model.started == []  # its batch is still waiting for them
        others = [asyncio.ensure_future(s.submit("sig", rows(2))) for _ in range(2)]
        await gather(first, *others)
        elapsed = time.monotonic() - started
        await s.close()
        return model, elapsed

    model, elapsed = asyncio.run(go())
    assert model.batches == [5] and elapsed >= 0.19


def test_full_batch_runs_without_waiting_for_the_timeout():
    async def go():
        model = FakeModel()
        s = scheduler(model, max_batch_size=2, batch_timeout_micros=10_000_000, num_batch_threads=1)
        await asyncio.wait_for(gather(s.submit("sig", rows(1)), s.submit("sig", rows(1))), 5)
        await s.close()
        return model

    assert asyncio.run(go()).batches == [2]


def test_oversized_task_is_refused():
    async def go():
        s = scheduler(FakeModel(), max_batch_size=4)
        try:
            with pytest.raises(ApiError, match="Task size 5 is larger than maximum input batch size 4") as e:
                await s.submit("sig", rows(5))
            assert e.value.code == "INVALID_ARGUMENT"
            with pytest.raises(ApiError, match="equal 0th-dimension size"):
                await s.submit("sig", {"x": np.zeros((1, 1)), "z": np.zeros((2, 1))})
        finally:
            await s.close()

    asyncio.run(go())


def test_padding_to_allowed_batch_sizes():
    async def go():
        model = FakeModel()
        model.release.clear()
        metrics = ServerMetrics()
        s = scheduler(model, metrics, max_batch_size=4, allowed_batch_sizes=(2, 4), num_batch_threads=1)
        first = asyncio.ensure_future(s.submit("sig", rows(1)))
        await until(lambda: len(model.started) == 1, "the first batch is running (held)")
        rest = [asyncio.ensure_future(s.submit("sig", rows(1, i))) for i in range(3)]
        await until(lambda: s.queued_tasks() == 3, "the other 3 tasks are queued behind it")
        model.release.set()
        results = await gather(first, *rest)
        await s.close()
        return model, metrics, results

    model, metrics, results = asyncio.run(go())
    assert model.batches == [2, 4]  # 1 -> 2 and 3 -> 4
    assert [r["y"].shape for r in results] == [(1, 1)] * 4  # padding cut off
    assert metrics.padding_size.observations("2") == {1: 1} and metrics.padding_size.observations("4") == {1: 1}
    assert metrics.input_batch_size.count() == 2 and metrics.wrapped_run_count.value() == 2


def test_different_inner_shapes_queue_separately():
    async def go():
        model = FakeModel()
        s = scheduler(model, max_batch_size=8, batch_timeout_micros=50_000, num_batch_threads=1)
        a, b = await gather(s.submit("sig", {"x": np.zeros((1, 2))}), s.submit("sig", {"x": np.zeros((1, 3))}))
        await s.close()
        return model, a, b

    model, a, b = asyncio.run(go())
    assert sorted(model.batches) == [1, 1] and a["y"].shape == (1, 2) and b["y"].shape == (1, 3)
