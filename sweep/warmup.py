"""Warm-up before measuring: requests until latency settles, bounded, reported apart.

Closed-loop on purpose: one request at a time to every target in turn, in the targets'
protocol (REST or gRPC, through the generator's own transports), so a cold
server (graph tracing, allocator growth, oneDNN primitive caches) is warmed without
being queued. Latency "settles" when the median of the last ``window`` requests is
within ``tolerance`` of the median of the ``window`` before them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time
from pathlib import Path

from formats.results import WARMUP_SCHEMA
from loadgen import transports
from loadgen.payload import Payload
from sweep.status import write_json


@dataclasses.dataclass(frozen=True)
class WarmupOptions:
    window: int = 5
    tolerance: float = 0.15
    min_requests: int = 10
    max_requests: int = 60
    max_seconds: float = 45.0


@dataclasses.dataclass(frozen=True)
class WarmupResult:
    requests: int
    ok: int
    seconds: float
    settled: bool
    latencies_ms: tuple[float, ...]
    errors: tuple[str, ...]
    window: int = 5

    def record(self) -> dict:
        """The warmup.json written beside run.json (excluded from the measurement)."""
        last = self.latencies_ms[-self.window :]
        return {
            "schema": WARMUP_SCHEMA,
            "requests": self.requests,
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "settled": self.settled,
            "first_ms": self.latencies_ms[0] if self.latencies_ms else None,
            "last_window_median_ms": statistics.median(last) if last else None,
            "latencies_ms": [round(v, 3) for v in self.latencies_ms],
            "errors": list(self.errors[:10]),
        }


def settled(latencies: list[float], window: int, tolerance: float) -> bool:
    """Median of the last window within ``tolerance`` (relative) of the window before it."""
    if len(latencies) < 2 * window:
        return False
    last = statistics.median(latencies[-window:])
    before = statistics.median(latencies[-2 * window : -window])
    return abs(last - before) <= tolerance * max(before, 1e-9)


async def _warm(urls: tuple[str, ...], body: bytes, content_type: str, options: WarmupOptions,
                timeout_s: float) -> WarmupResult:
    latencies: list[float] = []
    errors: list[str] = []
    requests = 0
    started = time.monotonic()
    transport = transports.make(transports.choose("auto", urls), urls=urls, body=body, content_type=content_type,
                                max_in_flight=1, timeout_s=timeout_s)
    await transport.open()
    try:
        while requests < options.max_requests and time.monotonic() - started < options.max_seconds:
            target = requests % len(urls)
            requests += 1
            t0 = time.perf_counter()
            outcome = await transport.send(target)
            if outcome is not None:  # an error class (docs/results-format.md)
                errors.append(outcome)
                if not outcome.startswith("http_"):  # no answer at all: give the server a moment
                    await asyncio.sleep(0.2)
                continue
            latencies.append((time.perf_counter() - t0) * 1000.0)
            if len(latencies) >= options.min_requests and settled(latencies, options.window, options.tolerance):
                break
    finally:
        await transport.close()
    done = settled(latencies, options.window, options.tolerance)
    return WarmupResult(requests, len(latencies), time.monotonic() - started, done, tuple(latencies),
                        tuple(errors), options.window)


def warm_up(urls: tuple[str, ...], body: bytes, content_type: str,
            options: WarmupOptions | None = None, *, timeout_s: float) -> WarmupResult:
    """Run the warm-up to completion (its own event loop); ``timeout_s`` per request (the
    generator's, so a warm-up request may take as long as a measured one)."""
    return asyncio.run(_warm(urls, body, content_type, options or WarmupOptions(), timeout_s))


def warm_and_record(urls: tuple[str, ...], body: Payload, options: WarmupOptions, *, timeout_s: float,
                    config_dir: Path) -> tuple[WarmupResult, str | None]:
    """Warm up ``urls`` with ``body`` (a loadgen Payload), write ``config_dir/warmup.json``;
    returns the result and, when no request succeeded, why the Config cannot be measured."""
    warm = warm_up(urls, body.body, body.content_type, options, timeout_s=timeout_s)
    write_json(config_dir / "warmup.json", warm.record())
    if warm.ok == 0:
        return warm, "no warm-up request succeeded: " + ", ".join(warm.errors[:3])
    return warm, None
