"""The fast HTTP/1.1 transport: asyncio Protocols, pre-built request bytes, httptools parsing.

Same contract as the aiohttp transport (one request per keep-alive connection at a
time, a pool of at most ``max_in_flight`` connections, a per-request timeout that
includes connecting), with a fraction of its per-request Python work: the request
is one ``write`` of bytes built once per target, and the response is parsed in C by
llhttp (httptools): status line, headers, Content-Length, chunked and close-delimited
bodies. Plain http:// only, no proxies: ``transports.choose`` sends the rest to aiohttp.

Outcomes: a connection refused, reset or closed before the response ended is
`connect`; a response that breaks HTTP's rules is `protocol`; no complete response
within the timeout is `timeout`.
"""

from __future__ import annotations

import asyncio
import re
from urllib.parse import urlsplit

import httptools

from loadgen.transport import status_class

PREWARM_TIMEOUT_S = 2.0
# a response head that frames its body (otherwise the body ends when the connection closes)
_FRAMED = re.compile(rb"\r\n(?:content-length|transfer-encoding)[ \t]*:", re.IGNORECASE)


class _Connection(asyncio.Protocol):
    __slots__ = (
        "closed",
        "deadline",
        "done",
        "first",
        "keep_alive",
        "parser",
        "paused",
        "pool",
        "reusable_when_drained",
        "target",
        "transport",
    )

    def __init__(self, pool: FastTransport, target: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.done = None  # the callback of the request in flight
        self.first = None  # the first bytes of its response (kept only by reference)
        self.deadline = 0.0
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.keep_alive = True
        self.pool = pool
        self.target = target
        self.paused = False  # request bytes still buffered on our side
        self.reusable_when_drained = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        # pause_writing whenever anything is left unsent, resume_writing once all is sent:
        # a server may answer before reading the whole body (nginx's `return` does), and
        # the connection must not take the next request until this one has left.
        transport.set_write_buffer_limits(high=0, low=0)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.reusable_when_drained:
            self.reusable_when_drained = False
            self.pool._finished(self)

    def data_received(self, data: bytes) -> None:
        if self.first is None:
            self.first = data
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:  # includes upgrades we never asked for
            self.fail("protocol")

    def on_message_complete(self) -> None:
        done = self.done
        self.done = None
        self.first = None  # an idle connection holds no response data (up to 256 KiB a chunk)
        status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        if self.paused:
            self.pool.busy.discard(self)
            self.reusable_when_drained = True
        else:
            self.pool._finished(self)
        if done is not None:
            done(status_class(status))

    def connection_lost(self, exc) -> None:
        if self.done is not None and exc is None and self._ends_at_close():
            self.on_message_complete()
        self.fail("connect")

    def _ends_at_close(self) -> bool:
        """Whether the response in flight had all its head and a body that ends when the
        connection closes (no Content-Length, not chunked): then the close completes it."""
        first = self.first
        if first is None:
            return False
        end = first.find(b"\r\n\r\n")
        if end < 0 or _FRAMED.search(first, 0, end + 2):
            return False
        status = self.parser.get_status_code()
        return status >= 200 and status not in (204, 304)

    def fail(self, error_class: str) -> None:
        """End this connection; its request in flight (if any) ends as ``error_class``."""
        if not self.closed:
            self.closed = True
            self.pool._lost(self)
            if self.transport is not None:
                self.transport.abort()
        done = self.done
        self.done = None
        if done is not None:
            done(error_class)


class FastTransport:
    def __init__(self, urls: tuple[str, ...], body: bytes, content_type: str, *,
                 max_in_flight: int, timeout_s: float, prewarm: int = 0) -> None:
        self.timeout_s = timeout_s
        self.max_in_flight = max_in_flight
        self.prewarm = prewarm
        self.addresses = []
        self.requests = []
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme != "http":
                raise ValueError(f"the fast transport speaks plain http:// only: {url!r}")
            port = parts.port or 80
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            head = (f"POST {path} HTTP/1.1\r\nHost: {parts.hostname}:{port}\r\n"
                    f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                    "Connection: keep-alive\r\n\r\n").encode("latin-1")
            self.addresses.append((parts.hostname, port))
            self.requests.append(head + body)
        self.idle: list[list[_Connection]] = [[] for _ in urls]
        self.busy: set[_Connection] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.Task | None = None
        self._connecting: set[asyncio.Task] = set()

    async def open(self) -> None:
        """Start the timeout sweeper; open ``prewarm`` idle connections per target first, so
        a run that starts at a high rate does not begin with a storm of connects."""
        self.loop = asyncio.get_running_loop()
        self._sweeper = self.loop.create_task(self._sweep())
        if self.prewarm > 0:
            await asyncio.gather(*(self._prewarm_one(target) for target in range(len(self.addresses))
                                   for _ in range(self.prewarm)))

    async def _connect(self, target: int, timeout_s: float) -> _Connection:
        host, port = self.addresses[target]
        _, conn = await asyncio.wait_for(self.loop.create_connection(
            lambda: _Connection(self, target), host, port), timeout_s)
        return conn

    async def _prewarm_one(self, target: int) -> None:
        try:
            conn = await self._connect(target, min(self.timeout_s, PREWARM_TIMEOUT_S))
        except (TimeoutError, OSError):
            return  # the run's own requests will meet (and count) whatever is wrong
        self.idle[target].append(conn)

    async def _sweep(self) -> None:
        """Expire requests past their deadline (one timer for all, not one per request)."""
        period = min(0.05, self.timeout_s / 4)
        while True:
            await asyncio.sleep(period)
            now = self.loop.time()
            for conn in [c for c in self.busy if c.deadline <= now]:
                conn.fail("timeout")

    def start(self, target: int, done) -> None:
        """Send now on an idle connection (or a new one); call ``done(outcome)`` later."""
        idle = self.idle[target]
        while idle:
            conn = idle.pop()
            if not conn.closed:
                self._write(conn, done)
                return
        task = self.loop.create_task(self._connect_and_send(target, done))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    def _write(self, conn: _Connection, done) -> None:
        conn.done = done
        conn.first = None  # (data an idle connection got unasked is not this response's head)
        conn.deadline = self.loop.time() + self.timeout_s
        self.busy.add(conn)
        try:
            conn.transport.write(self.requests[conn.target])
        except RuntimeError:  # closed under us (uvloop raises, asyncio's transport ignores)
            conn.fail("connect")

    async def _connect_and_send(self, target: int, done) -> None:
        deadline = self.loop.time() + self.timeout_s
        try:
            conn = await self._connect(target, self.timeout_s)
        except TimeoutError:
            done("timeout")
            return
        except asyncio.CancelledError:
            done("cancelled")
            raise
        except OSError:
            done("connect")
            return
        if conn.closed:  # the peer closed it as soon as it was made
            done("connect")
            return
        self._write(conn, done)
        conn.deadline = deadline  # connecting counts toward the request's timeout

    def _finished(self, conn: _Connection) -> None:
        self.busy.discard(conn)
        if conn.keep_alive and not conn.closed:
            self.idle[conn.target].append(conn)
        else:
            conn.closed = True
            conn.transport.close()

    def _lost(self, conn: _Connection) -> None:
        self.busy.discard(conn)

    async def send(self, target: int) -> str | None:
        """The coroutine form of ``start``."""
        waiter = self.loop.create_future()
        self.start(target, lambda outcome: waiter.done() or waiter.set_result(outcome))
        return await waiter

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for task in list(self._connecting):
            task.cancel()
        await asyncio.gather(*self._connecting, self._sweeper or asyncio.sleep(0),
                             return_exceptions=True)
        for conn in list(self.busy):
            conn.fail("cancelled")
        for idle in self.idle:
            for conn in idle:
                conn.closed = True
                conn.transport.close()
            idle.clear()
        await asyncio.sleep(0)
