import asyncio

from loadgen.fast_transport import FastTransport


async def _serve(handler):
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _read_request(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    body = await reader.readexactly(length)
    return head, body


def _response(status=200, body=b'{"predictions": [[1]]}', extra=b""):
    return (b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n%s\r\n" % (status, len(body), extra)
            + body)


def test_keep_alive_requests_statuses_and_bytes_on_the_wire():
    seen = []
    connections = 0

    async def handler(reader, writer):
        nonlocal connections
        connections += 1
        try:
            while True:
                head, body = await _read_request(reader)
                seen.append((head, body))
                writer.write(_response(503 if len(seen) == 3 else 200))
                await writer.drain()
        except asyncio.IncompleteReadError:
            writer.close()

    async def main():
        server, port = await _serve(handler)
        t = FastTransport((f"http://127.0.0.1:{port}/v1/models/m:predict",), b'{"x": 1}',
                         "application/json", max_in_flight=4, timeout_s=2.0)
        await t.open()
        outcomes = [await t.send(0) for _ in range(4)]
        await t.close()
        server.close()
        return outcomes

    assert asyncio.run(main()) == [None, None, "http_503", None]
    assert connections == 1  # one keep-alive connection for sequential requests
    head, body = seen[0]
    assert head.startswith(b"POST /v1/models/m:predict HTTP/1.1\r\n")
    assert b"Content-Type: application/json" in head and body == b'{"x": 1}'


def test_prewarm_opens_connections_before_the_first_send_and_reuses_them():
    accepted = []

    async def handler(reader, writer):
        accepted.append(writer)
        try:
            while True:
                await _read_request(reader)
                writer.write(_response())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main():
        server, port = await _serve(handler)
        t = FastTransport((f"http://127.0.0.1:{port}/",), b"x", "text/plain",
                          max_in_flight=8, timeout_s=2.0, prewarm=3)
        await t.open()
        deadline = asyncio.get_running_loop().time() + 5.0
        while len(accepted) < 3:  # the server has accepted the prewarmed connections
            assert asyncio.get_running_loop().time() < deadline, f"only {len(accepted)} accepted in 5 s"
            await asyncio.sleep(0.001)
        opened = len(accepted)
        outcomes = await asyncio.gather(*(t.send(0) for _ in range(3)))
        await t.close()
        server.close()
        return opened, outcomes

    opened, outcomes = asyncio.run(main())
    assert opened == 3 and outcomes == [None] * 3
    assert len(accepted) == 3  # three concurrent sends took the three warm connections


def test_prewarm_against_nobody_listening_does_not_fail_the_open():
    async def main():
        server, port = await _serve(lambda r, w: None)
        server.close()
        await server.wait_closed()
        t = FastTransport((f"http://127.0.0.1:{port}/",), b"x", "text/plain",
                          max_in_flight=4, timeout_s=1.0, prewarm=2)
        await t.open()
        outcome = await t.send(0)
        await t.close()
        return outcome

    assert asyncio.run(main()) == "connect"


def test_prewarm_count_follows_the_first_seconds_rate():
    from loadgen.launch import prewarm_connections
    from loadgen.options import RunOptions
    from loadgen.schedule import Profile

    def count(rate, **kw):
        return prewarm_connections(RunOptions(
            targets=kw.pop("targets", ("http://h:1/p",)),
            profile=Profile(kind="constant", rate=rate, duration_s=5.0), **kw))

    assert count(10.0) == 1 and count(60_000.0) == 60
    assert count(60_000.0, workers=2) == 30
    assert count(60_000.0, targets=("http://a:1/p", "http://b:1/p")) == 30
    assert count(1e6, max_in_flight=100) == 100
    ramp = RunOptions(targets=("http://h:1/p",), profile=Profile(
        kind="ramp", users=150, spawn_rate=1.0, per_user_rps=1.0, duration_s=300.0))
    assert prewarm_connections(ramp) == 1  # starts near zero: connects as it climbs
