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
