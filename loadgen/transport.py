"""The engine's one-method view of the network, its outcomes, and an in-process fake.

What every transport shares (the real ones import it; ``transports`` picks and builds
them). A transport sends the run's one request body to target ``i`` and says how it went:
``None`` for a 2xx response (body read to the end), otherwise an error class from
docs/results-format.md (``http_<status>``, ``timeout``, ``connect``, ``protocol``).
Errors are data, never exceptions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol


class Transport(Protocol):
    """What the engine needs from the HTTP layer.

    A transport may also offer ``start(target, done)``: send now and call
    ``done(outcome)`` later (``"cancelled"`` if closed first). The engine then uses it
    instead of a task per request.
    """

    async def open(self) -> None: ...

    async def send(self, target: int) -> str | None: ...

    async def close(self) -> None: ...


def status_class(status: int) -> str | None:
    """The outcome of a response with HTTP status ``status``: ``None`` (2xx) or ``http_<status>``."""
    return None if 200 <= status < 300 else f"http_{status}"


class FakeTransport:
    """An in-process target: ``behaviour(target, n)`` -> (delay_s, status or error class).

    ``n`` counts requests from 0. The fake sleeps for the delay on the event loop, as
    a server would, and can answer with a status (int) or fail with an error class.
    """

    def __init__(self, behaviour: Callable[[int, int], tuple[float, int | str]]) -> None:
        self.behaviour = behaviour
        self.count = 0
        self.targets_seen: list[int] = []
        self.opened = False
        self.closed = False

    async def open(self) -> None:
        self.opened = True

    async def send(self, target: int) -> str | None:
        n = self.count
        self.count += 1
        self.targets_seen.append(target)
        delay, outcome = self.behaviour(target, n)
        if delay > 0:
            await asyncio.sleep(delay)
        if isinstance(outcome, str):
            return outcome
        return status_class(outcome)

    async def close(self) -> None:
        self.closed = True
