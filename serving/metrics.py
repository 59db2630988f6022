"""TF Serving's Prometheus metrics (names, labels, buckets), in the text exposition format.

TF Serving exports TF monitoring metrics with '/' (and every other character outside
[a-zA-Z0-9_]) replaced by ':', without the `_total` suffix that prometheus_client would add,
so this is a small registry of its own.
"""

from __future__ import annotations

import bisect
import re
import threading

PREFIX = ":tensorflow:serving:"
REQUEST_COUNT = PREFIX + "request_count"
REQUEST_LATENCY = PREFIX + "request_latency"
RUNTIME_LATENCY = PREFIX + "runtime_latency"
QUEUING_LATENCY = PREFIX + "batching_session:queuing_latency"
INPUT_BATCH_SIZE = PREFIX + "batching_session:input_batch_size"
PROCESSED_BATCH_SIZE = PREFIX + "batching_session:processed_batch_size"
PADDING_SIZE = PREFIX + "batching_session:padding_size"
WRAPPED_RUN_COUNT = PREFIX + "batching_session:wrapped_run_count"

_NAME_RE = re.compile(r"[^a-zA-Z0-9_]")


def exposition_name(tf_name: str) -> str:
    """'/tensorflow/serving/request_count' -> ':tensorflow:serving:request_count'."""
    return _NAME_RE.sub(":", tf_name)


def exponential_buckets(scale: float, growth: float, count: int) -> list[float]:
    """TF's Buckets::Exponential: scale, scale*growth, ..., count bounds (then +Inf)."""
    return [scale * growth**i for i in range(count)]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(v: float) -> str:
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


class Counter:
    def __init__(self, name: str, labels: tuple[str, ...]) -> None:
        self.name, self.label_names = name, labels
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def inc(self, *labels: str, amount: float = 1) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0) + amount

    def value(self, *labels: str) -> float:
        return self._values.get(labels, 0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        lines = [f"# TYPE {self.name} counter"]
        lines += [f"{self.name}{_labels(self.label_names, k)} {_number(v)}" for k, v in items]
        return lines


class Histogram:
    def __init__(self, name: str, labels: tuple[str, ...], bounds: list[float]) -> None:
        self.name, self.label_names, self.bounds = name, labels, bounds
        self._data: dict[tuple[str, ...], list[float]] = {}  # per label set: bucket counts..., sum, count
        self._lock = threading.Lock()

    def observe(self, value: float, *labels: str) -> None:
        with self._lock:
            data = self._data.setdefault(labels, [0.0] * (len(self.bounds) + 3))
            data[bisect.bisect_left(self.bounds, value)] += 1
            data[-2] += value
            data[-1] += 1

    def count(self, *labels: str) -> int:
        data = self._data.get(labels)
        return int(data[-1]) if data else 0

    def observations(self, *labels: str) -> dict[float, int]:
        """Non-cumulative bucket counts by upper bound (inf for the last)."""
        data = self._data.get(labels)
        if not data:
            return {}
        bounds = [*self.bounds, float("inf")]
        return {b: int(c) for b, c in zip(bounds, data[: len(bounds)], strict=True) if c}

    def render(self) -> list[str]:
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._data.items())
        lines = [f"# TYPE {self.name} histogram"]
        for key, data in items:
            cumulative = 0.0
            for bound, c in zip(self.bounds, data, strict=False):
                cumulative += c
                le = f'le="{bound:.6g}"'
                lines.append(f"{self.name}_bucket{_labels(self.label_names, key, le)} {_number(cumulative)}")
            cumulative += data[len(self.bounds)]
            inf = _labels(self.label_names, key, 'le="+Inf"')
            lines.append(f"{self.name}_bucket{inf} {_number(cumulative)}")
            lines.append(f"{self.name}_sum{_labels(self.label_names, key)} {_number(data[-2])}")
            lines.append(f"{self.name}_count{_labels(self.label_names, key)} {_number(data[-1])}")
        return lines


class ServerMetrics:
    """The metrics TF Serving's model server exports, as the local server records them."""

    def __init__(self) -> None:
        self.request_count = Counter(REQUEST_COUNT, ("model_name", "status"))
        self.request_latency = Histogram(
            REQUEST_LATENCY, ("model_name", "API", "entrypoint"), exponential_buckets(10, 1.8, 33)
        )
        self.runtime_latency = Histogram(
            RUNTIME_LATENCY, ("model_name", "API", "runtime"), exponential_buckets(10, 1.8, 33)
        )
        self.queuing_latency = Histogram(QUEUING_LATENCY, ("thread_pool_name",), exponential_buckets(100, 1.2, 52))
        size_buckets = exponential_buckets(1, 2, 14)
        self.input_batch_size = Histogram(INPUT_BATCH_SIZE, (), size_buckets)
        self.processed_batch_size = Histogram(PROCESSED_BATCH_SIZE, (), size_buckets)
        self.padding_size = Histogram(PADDING_SIZE, ("execution_batch_size",), size_buckets)
        self.wrapped_run_count = Counter(WRAPPED_RUN_COUNT, ())

    def render(self) -> str:
        lines: list[str] = []
        for metric in (
            self.request_count,
            self.request_latency,
            self.runtime_latency,
            self.queuing_latency,
            self.input_batch_size,
            self.processed_batch_size,
            self.padding_size,
            self.wrapped_run_count,
        ):
            rendered = metric.render()
            if len(rendered) > 1:  # TF Serving lists only metrics that have cells
                lines += rendered
        return "\n".join(lines) + "\n" if lines else ""
