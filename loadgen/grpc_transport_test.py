"""The gRPC transport against an in-process grpc.aio server on 127.0.0.1: bytes sent as
they are, status codes as error classes, deadlines, channels as separate connections."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from loadgen import targets, transports
from loadgen.grpc_transport import GrpcTransport, error_class
from loadgen.launch import new_loop
from serving import tfs_grpc

BODY = b"\x0a\x03\x0a\x01m"  # any bytes: the transport never decodes what it sends


class Server:
    """Predict answers by what the request says: b"ok", b"slow" (sleeps 1 s), or
    b"code:NAME" (aborts with that status). Records each request and the peer's address."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.peers: list[str] = []

    async def predict(self, request: bytes, context) -> bytes:
        self.requests.append(request)
        self.peers.append(context.peer())
        if request == b"slow":
            await asyncio.sleep(1.0)
        elif request.startswith(b"code:"):
            await context.abort(grpc.StatusCode[request[5:].decode()], "as asked")
        return b"reply"

    async def start(self) -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server()
        methods = {tfs_grpc.PREDICT_METHOD: grpc.unary_unary_rpc_method_handler(self.predict)}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(tfs_grpc.PREDICTION_SERVICE, methods),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port


def _run(coro_fn, loop="uvloop"):
    with asyncio.Runner(loop_factory=lambda: new_loop(loop)) as runner:
        return runner.run(coro_fn())


async def _sends(body: bytes, n: int = 1, *, channels: int = 1, timeout_s: float = 5.0,
                 server: Server | None = None) -> tuple[list, Server]:
    server = server or Server()
    grpc_server, port = await server.start()
    t = GrpcTransport((f"grpc://127.0.0.1:{port}/m",), body, timeout_s=timeout_s, channels=channels)
    await t.open()
    try:
        return list(await asyncio.gather(*(t.send(0) for _ in range(n)))), server
    finally:
        await t.close()
        await grpc_server.stop(None)


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_ok_and_the_bytes_arrive_as_they_were_given(loop):
    outcomes, server = _run(lambda: _sends(BODY, 3), loop)
    assert outcomes == [None] * 3 and server.requests == [BODY] * 3


@pytest.mark.parametrize("code", ["UNAVAILABLE", "RESOURCE_EXHAUSTED", "INVALID_ARGUMENT", "NOT_FOUND",
                                  "FAILED_PRECONDITION", "INTERNAL"])
def test_a_status_is_its_error_class(code):
    outcomes, _ = _run(lambda: _sends(f"code:{code}".encode()))
    assert outcomes == [f"grpc_{code.lower()}"]


def test_the_deadline_is_the_timeout():
    outcomes, _ = _run(lambda: _sends(b"slow", timeout_s=0.2))
    assert outcomes == ["timeout"]


def test_no_server_is_unavailable_not_an_exception():
    async def main():
        t = GrpcTransport(("grpc://127.0.0.1:1/m",), BODY, timeout_s=1.0)
        await t.open()
        try:
            return await t.send(0)
        finally:
            await t.close()

    assert _run(main) == "grpc_unavailable"


def test_channels_are_separate_connections_used_in_turn():
    outcomes, server = _run(lambda: _sends(BODY, 8, channels=4))
    assert outcomes == [None] * 8
    assert len(set(server.peers)) == 4  # four client ports: four TCP connections
    assert all(server.peers.count(p) == 2 for p in set(server.peers))


def test_error_class_table():
    assert error_class(grpc.StatusCode.OK) is None
    assert error_class(grpc.StatusCode.DEADLINE_EXCEEDED) == "timeout"
    assert error_class(grpc.StatusCode.CANCELLED) == "grpc_cancelled"


def test_choose_takes_grpc_for_grpc_targets_and_refuses_mixing():
    assert transports.choose("auto", ("grpc://127.0.0.1:8500/m",)).kind == "grpc"
    assert transports.choose("grpc", ("grpc://h:8500/m",)).reason == "asked for (--transport grpc)"
    with pytest.raises(transports.TransportError, match="--transport grpc"):
        transports.choose("fast", ("grpc://h:8500/m",))
    with pytest.raises(transports.TransportError, match="REST URLs"):
        transports.choose("grpc", ("http://h:8501/v1/models/m:predict",))
    with pytest.raises(transports.TransportError, match="mix REST"):
        transports.choose("auto", ("grpc://h:8500/m", "http://h:8501/v1/models/m:predict"))


@pytest.mark.parametrize("url", ["grpc://h/m", "grpc://h:8500", "grpc://h:8500/", "grpc://:8500/m",
                                 "grpc://h:8500/m/extra", "grpc://h:8500/m?v=1", "grpc://h:port/m"])
def test_bad_grpc_targets_say_what_is_expected(url):
    with pytest.raises(targets.TargetError, match="grpc://HOST:PORT/MODEL"):
        targets.grpc_target(url)


def test_grpc_targets_parse():
    assert targets.grpc_target("grpc://10.0.0.7:8500/resnet") == targets.GrpcTarget("10.0.0.7:8500", "resnet")
    assert targets.grpc_target("grpc://[::1]:8500/m").address == "[::1]:8500"
    assert targets.run_protocol(("grpc://a:1/m", "grpc://b:2/m")) == "grpc"
    assert targets.run_protocol(("http://a:1/v1/models/m:predict",)) == "rest"
    with pytest.raises(targets.TargetError, match="different models"):
        targets.run_protocol(("grpc://a:1/m", "grpc://b:2/n"))
