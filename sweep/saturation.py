"""The search's first guess: a short closed-loop saturation step.

``concurrency`` requests per target are kept outstanding for ``seconds`` (after a
``settle_s`` lead that is not counted); the completion rate is the raw throughput a
Config reaches when it is never idle, which bounds its SLO capacity from above and is
a good place to start bracketing. Not a measurement of record: it is reported as the
guess and nothing else is derived from it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import aiohttp


@dataclasses.dataclass(frozen=True)
class Saturation:
    rps: float  # completions per second in the counted window (0.0 if none)
    ok: int
    errors: int
    seconds: float


async def _saturate(urls: tuple[str, ...], body: bytes, content_type: str, *, concurrency: int,
                    seconds: float, settle_s: float, timeout_s: float) -> Saturation:
    start = time.monotonic()
    count_from, end = start + settle_s, start + settle_s + seconds
    ok = errors = 0
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector,
                                     headers={"Content-Type": content_type}) as session:
        async def user(url: str) -> None:
            nonlocal ok, errors
            while time.monotonic() < end:
                try:
                    async with session.post(url, data=body) as response:
                        await response.read()
                        good = response.status // 100 == 2
                except (TimeoutError, aiohttp.ClientError):
                    good = False
                done = time.monotonic()
                if count_from <= done <= end:
                    ok, errors = (ok + 1, errors) if good else (ok, errors + 1)

        await asyncio.gather(*(user(u) for u in urls for _ in range(concurrency)))
    return Saturation(ok / seconds, ok, errors, seconds)


def saturate(urls: tuple[str, ...], body: bytes, content_type: str, *, concurrency: int = 4,
             seconds: float = 5.0, settle_s: float = 1.0, timeout_s: float = 30.0) -> Saturation:
    """Closed-loop throughput of ``urls`` with ``concurrency`` outstanding requests each."""
    if concurrency < 1 or seconds <= 0:
        raise ValueError("need concurrency >= 1 and seconds > 0")
    return asyncio.run(_saturate(tuple(urls), body, content_type, concurrency=concurrency,
                                 seconds=seconds, settle_s=settle_s, timeout_s=timeout_s))
