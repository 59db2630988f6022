"""The gRPC transport: TF Serving's PredictionService/Predict over grpc.aio, open-loop.

The PredictRequest is serialised once per run (loadgen.payload) and sent as raw bytes;
the reply is read as bytes and not decoded (a reply is OK or it is not). Each target gets
``channels`` channels, each its own HTTP/2 connection (a local subchannel pool, so two
channels to one address do not share one), used in turn: a Kubernetes Service balances
per connection, so a target behind one needs at least one channel per replica. Every
call has the run's timeout as its deadline, and its latency is the engine's (from the
intended send).

Outcomes: ``None`` for OK; a deadline that passed is ``timeout``, as over REST; any other
status is ``grpc_<code>`` (``grpc_unavailable``, ``grpc_resource_exhausted``, ...:
docs/results-format.md). Errors are data, never exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools

import grpc

from loadgen.targets import grpc_target
from serving import tfs_grpc

# a local pool per channel: grpc's global pool would reuse one connection for every
# channel with the same address and arguments
_CHANNEL_OPTIONS = (*tfs_grpc.RECEIVE_ANY_SIZE, ("grpc.use_local_subchannel_pool", 1))
CONNECT_WAIT_S = 5.0  # open() waits this long at most for the channels to connect


def error_class(code: grpc.StatusCode) -> str | None:
    """The outcome of a call that ended with ``code`` (docs/results-format.md)."""
    if code == grpc.StatusCode.OK:
        return None
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return "timeout"
    return f"grpc_{code.name.lower()}"


class GrpcTransport:
    def __init__(self, urls: tuple[str, ...], body: bytes, *, timeout_s: float,
                 channels: int = 1) -> None:
        if channels < 1:
            raise ValueError("a gRPC target needs at least one channel")
        self.addresses = tuple(grpc_target(u).address for u in urls)
        self.body = body
        self.timeout_s = timeout_s
        self.channels_per_target = channels
        self._channels: list[grpc.aio.Channel] = []
        self._calls: list = []  # per target: an endless cycle over its channels' Predict

    async def open(self) -> None:
        for address in self.addresses:
            methods = []
            for _ in range(self.channels_per_target):
                channel = grpc.aio.insecure_channel(address, options=list(_CHANNEL_OPTIONS))
                self._channels.append(channel)
                # no serializers: the request goes as the bytes it is, the reply stays bytes
                methods.append(channel.unary_unary(tfs_grpc.PREDICT))
            self._calls.append(itertools.cycle(methods))
        # connected before the schedule starts, so the first calls do not carry the
        # handshakes; a target that does not answer is left to fail its calls (unavailable)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(c.channel_ready() for c in self._channels)),
                                   min(self.timeout_s, CONNECT_WAIT_S))

    async def send(self, target: int) -> str | None:
        predict = next(self._calls[target])
        try:
            await predict(self.body, timeout=self.timeout_s)
        except grpc.aio.AioRpcError as e:
            return error_class(e.code())
        return None

    async def close(self) -> None:
        channels, self._channels, self._calls = self._channels, [], []
        for channel in channels:
            await channel.close()
