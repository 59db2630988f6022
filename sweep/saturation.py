"""The search's first guess: a short closed-loop saturation step.

``concurrency`` requests per target are kept outstanding for ``seconds`` (after a
``settle_s`` lead that is not counted); the completion rate is the raw throughput a
Config reaches when it is never idle, which bounds its SLO capacity from above and is
a good place to start bracketing. It speaks the targets' protocol through the
generator's own transports. Not a measurement of record: it is reported as the
guess and nothing else is derived from it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

from loadgen import transports


@dataclasses.dataclass(frozen=True)
class Saturation:
    rps: float  # completions per second in the counted window (0.0 if none)
    ok: int
    errors: int
    seconds: float


async def _saturate(urls: tuple[str, ...], body: bytes, content_type: str, *, concurrency: int,
                    seconds: float, settle_s: float, timeout_s: float) -> Saturation:
    transport = transports.make(transports.choose("auto", urls), urls=urls, body=body, content_type=content_type,
                                max_in_flight=concurrency * len(urls), timeout_s=timeout_s, channels=concurrency)
    await transport.open()
    start = time.monotonic()
    count_from, end = start + settle_s, start + settle_s + seconds
    ok = errors = 0

    async def user(target: int) -> None:
        nonlocal ok, errors
        while time.monotonic() < end:
            outcome = await transport.send(target)
            done = time.monotonic()
            if count_from <= done <= end:
                ok, errors = (ok + 1, errors) if outcome is None else (ok, errors + 1)
            if outcome is not None and not outcome.startswith(("http_", "grpc_")):
                await asyncio.sleep(0.05)  # no answer at all: do not spin on a refused connection

    try:
        await asyncio.gather(*(user(t) for t in range(len(urls)) for _ in range(concurrency)))
    finally:
        await transport.close()
    return Saturation(ok / seconds, ok, errors, seconds)


def saturate(urls: tuple[str, ...], body: bytes, content_type: str, *, concurrency: int = 4,
             seconds: float = 5.0, settle_s: float = 1.0, timeout_s: float = 30.0) -> Saturation:
    """Closed-loop throughput of ``urls`` with ``concurrency`` outstanding requests each."""
    if concurrency < 1 or seconds <= 0:
        raise ValueError("need concurrency >= 1 and seconds > 0")
    return asyncio.run(_saturate(tuple(urls), body, content_type, concurrency=concurrency,
                                 seconds=seconds, settle_s=settle_s, timeout_s=timeout_s))
