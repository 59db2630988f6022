"""Both real transports against misbehaving 127.0.0.1 servers: the same outcome classes.

Each case is a raw asyncio server that answers one request in a particular (mis)way; the
fast and the aiohttp transports must both turn it into the same outcome, never raise.
"""

import asyncio
import socket
import struct

import pytest

from loadgen import transports
from loadgen.aiohttp_transport import AiohttpTransport
from loadgen.fast_transport import FastTransport

OK_BODY = b'{"predictions": [[0.25, 0.75]]}'


async def _read_request(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    await reader.readexactly(length)


def _reset(writer):
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _head(status=200, headers=b""):
    return b"HTTP/1.1 %d X\r\n%s\r\n" % (status, headers)


# name -> (what the server does after reading the request, expected outcome)
CASES = {
    "ok": (lambda w: w.write(_head(headers=b"Content-Length: %d\r\n" % len(OK_BODY)) + OK_BODY), None),
    "503 with body": (lambda w: w.write(_head(503, b"Content-Length: 2\r\n") + b"{}"), "http_503"),
    "chunked": (lambda w: w.write(_head(headers=b"Transfer-Encoding: chunked\r\n")
                                  + b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), None),
    "body ends at close": (lambda w: (w.write(_head(headers=b"Connection: close\r\n") + OK_BODY),
                                      w.close()), None),
    "connection: close with length": (lambda w: (w.write(_head(
        headers=b"Connection: close\r\nContent-Length: %d\r\n" % len(OK_BODY)) + OK_BODY), w.close()), None),
    "closed before answering": (lambda w: w.close(), "connect"),
    "reset before answering": (_reset, "connect"),
    "closed mid-head": (lambda w: (w.write(b"HTTP/1.1 200 OK\r\nContent-Le"), w.close()), "connect"),
    "closed mid-body": (lambda w: (w.write(_head(headers=b"Content-Length: 100\r\n") + b"0123456789"),
                                   w.close()), "connect"),
    "reset mid-body": (lambda w: (w.write(_head(headers=b"Content-Length: 100\r\n") + b"0123"), _reset(w)),
                       "connect"),
    "not http": (lambda w: w.write(b"NOT HTTP AT ALL\r\n\r\n"), "protocol"),
    "bad content-length": (lambda w: w.write(_head(headers=b"Content-Length: ten\r\n") + b"x" * 10),
                           "protocol"),
    "bad chunk size": (lambda w: w.write(_head(headers=b"Transfer-Encoding: chunked\r\n") + b"zz\r\nab\r\n"),
                       "protocol"),
    "never answers": (lambda w: None, "timeout"),
    "head then stalls": (lambda w: w.write(_head(headers=b"Content-Length: 100\r\n") + b"0123"), "timeout"),
}


def _make(kind, url, timeout_s=0.5):
    cls = FastTransport if kind == "fast" else AiohttpTransport
    return cls((url,), b'{"instances": [1]}', "application/json", max_in_flight=4,
               timeout_s=timeout_s)


async def _one_request(kind, behaviour):
    held = []

    async def handler(reader, writer):
        held.append(writer)  # keep stalled connections open until the test ends
        try:
            await _read_request(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        behaviour(writer)

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    t = _make(kind, f"http://127.0.0.1:{port}/v1/models/m:predict")
    await t.open()
    try:
        return await asyncio.wait_for(t.send(0), 5.0)
    finally:
        await t.close()
        for w in held:
            w.transport.abort()
        server.close()


@pytest.mark.parametrize("kind", ["fast", "aiohttp"])
@pytest.mark.parametrize("case", list(CASES))
def test_outcome_class(kind, case):
    behaviour, expected = CASES[case]
    assert asyncio.run(_one_request(kind, behaviour)) == expected


@pytest.mark.parametrize("kind", ["fast", "aiohttp"])
def test_refused_connection_is_connect(kind):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def main():
        t = _make(kind, f"http://127.0.0.1:{port}/")
        await t.open()
        try:
            return await t.send(0)
        finally:
            await t.close()

    assert asyncio.run(main()) == "connect"


@pytest.mark.parametrize("kind", ["fast", "aiohttp"])
def test_keeps_working_after_each_kind_of_failure(kind):
    """One transport through a server that misbehaves in turn: later requests still work."""
    order = ["ok", "closed mid-body", "ok", "not http", "ok", "reset before answering", "ok",
             "body ends at close", "ok", "never answers", "ok"]
    count = 0

    async def handler(reader, writer):
        nonlocal count
        while True:
            try:
                await _read_request(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            behaviour, _ = CASES[order[count]]
            count += 1
            behaviour(writer)
            if writer.is_closing() or order[count - 1] in ("not http", "never answers"):
                return

    async def main():
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        t = _make(kind, f"http://127.0.0.1:{port}/", timeout_s=0.3)
        await t.open()
        try:
            return [await t.send(0) for _ in order]
        finally:
            await t.close()
            server.close()

    assert asyncio.run(main()) == [CASES[name][1] for name in order]


def test_choose_fast_for_plain_http_without_proxy(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    c = transports.choose("auto", ("http://127.0.0.1:8501/v1/models/m:predict",))
    assert (c.kind, c.proxies) == ("fast", (None,))
    assert transports.choose("aiohttp", ("http://h:1/",)).kind == "aiohttp"


def test_choose_aiohttp_for_tls_and_refuse_fast(monkeypatch):
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    urls = ("http://a:1/p", "https://b:2/p")
    c = transports.choose("auto", urls)
    assert c.kind == "aiohttp" and "https://b:2/p" in c.reason and "TLS" in c.reason
    with pytest.raises(transports.TransportError, match="--transport aiohttp"):
        transports.choose("fast", urls)


def test_choose_follows_the_environments_proxy_and_no_proxy(monkeypatch):
    monkeypatch.setenv("http_proxy", "http://proxy.internal:3128")
    monkeypatch.setenv("no_proxy", "localhost,127.0.0.1")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    direct = transports.choose("auto", ("http://127.0.0.1:8501/p",))
    assert direct.kind == "fast"
    proxied = transports.choose("auto", ("http://10.0.0.7:8501/p", "http://127.0.0.1:8501/p"))
    assert proxied.kind == "aiohttp" and "proxy.internal" in proxied.reason
    assert proxied.proxies == ("http://proxy.internal:3128", None)
    with pytest.raises(transports.TransportError, match="proxy"):
        transports.choose("fast", ("http://10.0.0.7:8501/p",))


def test_choose_rejects_unknown_names():
    with pytest.raises(transports.TransportError, match="unknown transport 'raw'"):
        transports.choose("raw", ("http://h:1/",))


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_a_connection_closed_between_connect_and_write_is_connect_never_a_hang(loop):
    """A dying server can close a new connection before the fast transport writes on it."""
    class ClosingLoop:  # the real loop, but every new connection is closed before it is returned
        def __init__(self, real):
            self.real = real

        def __getattr__(self, name):
            return getattr(self.real, name)

        async def create_connection(self, factory, host, port):
            transport, conn = await self.real.create_connection(factory, host, port)
            transport.abort()
            deadline = self.real.time() + 5.0
            while not conn.closed:  # connection_lost has run
                assert self.real.time() < deadline, "connection_lost did not run within 5 s"
                await asyncio.sleep(0)
            return transport, conn

    async def handler(reader, writer):
        await reader.read()

    async def main():
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        t = _make("fast", f"http://127.0.0.1:{port}/", timeout_s=2.0)
        await t.open()
        t.loop = ClosingLoop(t.loop)
        try:
            return await asyncio.wait_for(asyncio.gather(*(t.send(0) for _ in range(3))), 5.0)
        finally:
            await t.close()
            server.close()

    from loadgen.launch import new_loop

    with asyncio.Runner(loop_factory=lambda: new_loop(loop)) as runner:
        assert runner.run(main()) == ["connect"] * 3
