"""A small TF-Serving-shaped test target for the load generator's tests (127.0.0.1 only).

Run as a script; prints the chosen port on the first line of stdout (with --grpc, the
gRPC port on the second).

  --delay-ms MEAN --delay-sigma S --seed N   the n-th request sleeps delays[n] (seeded
                                             lognormal, so the truth is known exactly)
  --freeze-every 5 --freeze-s 1              block the whole event loop for freeze-s
                                             every freeze-every seconds (a stalled server)
  --grpc                                     also serve PredictionService/Predict over
                                             gRPC (grpc.aio, same loop, same delays)
  --exit-after N                             the process dies (os._exit, as if killed) when
                                             request N+1 arrives: exactly N were answered

POST /v1/models/<name>:predict answers {"predictions": [[...]]} after its delay
(names starting with "zero" answer at once and are not recorded: the path's own cost).
Over gRPC, a PredictRequest whose model_spec.name starts with "zero" is the path's cost
in the same way. GET /stats answers {"served_delays_ms": [...], "held_ms": [...]}: the delays drawn and
how long each request was really held (the truth a client's latency should match).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import sys
import time

import numpy as np
from aiohttp import web


def delays_ms(mean_ms: float, sigma: float, seed: int, n: int) -> np.ndarray:
    """The delay sequence: lognormal with the given mean (ms) and log-sd."""
    if mean_ms <= 0:
        return np.zeros(n)
    rng = np.random.default_rng(seed)
    mu = np.log(mean_ms) - sigma * sigma / 2.0
    return rng.lognormal(mu, sigma, n)


class Delays:
    """The seeded delay sequence and what was served, shared by both protocols."""

    def __init__(self, args) -> None:
        self.sequence = delays_ms(args.delay_ms, args.delay_sigma, args.seed, 200_000)
        self.served: list[float] = []  # delays drawn, in arrival order
        self.held: list[float] = []  # how long each request was actually held (sleep overshoot too)
        self.exit_after = args.exit_after

    async def hold(self, model: str, started: float) -> None:
        if model.startswith("zero"):  # calibration: no delay, not recorded
            return
        if self.exit_after and len(self.served) >= self.exit_after:
            os._exit(0)  # a server dying mid-run: every socket closes at once, nothing flushed
        delay = float(self.sequence[len(self.served) % self.sequence.size])
        self.served.append(delay)
        if delay > 0:
            await asyncio.sleep(delay / 1000.0)
        self.held.append((time.monotonic() - started) * 1000.0)


def build_app(args, delays: Delays) -> web.Application:
    body = b'{"predictions": [[0.25, 0.75]]}'

    async def predict(request: web.Request) -> web.Response:
        started = time.monotonic()
        await request.read()
        await delays.hold(request.match_info["name"], started)
        return web.Response(body=body, content_type="application/json")

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"served_delays_ms": delays.served, "held_ms": delays.held})

    async def freezer(app):
        async def loop():
            while True:
                await asyncio.sleep(args.freeze_every - args.freeze_s)
                time.sleep(args.freeze_s)  # deliberately blocks everything

        task = asyncio.get_running_loop().create_task(loop())
        yield
        task.cancel()

    app = web.Application()
    app.router.add_post("/v1/models/{name}", predict)
    app.router.add_get("/stats", stats)
    if args.freeze_every > 0:
        app.cleanup_ctx.append(freezer)
    return app


async def start_grpc(delays: Delays):
    """Predict over gRPC on a free 127.0.0.1 port; returns (server, port)."""
    from serving import tfs_messages_pb2 as pb

    reply = pb.PredictResponse()
    reply.outputs["probabilities"].float_val.extend([0.25, 0.75])
    reply_bytes = reply.SerializeToString()

    async def predict(request: bytes, context) -> bytes:
        started = time.monotonic()
        await delays.hold(pb.PredictRequest.FromString(request).model_spec.name, started)
        return reply_bytes

    return await start_predict_server(predict)


async def start_predict_server(predict):
    """A grpc.aio server on 127.0.0.1 (any port) whose Predict is ``predict(request bytes,
    context) -> reply bytes`` (nothing decoded for it); returns (server, port). Hold the
    server: gRPC stops one that is garbage-collected."""
    import grpc

    from serving import tfs_grpc

    handler = grpc.method_handlers_generic_handler(tfs_grpc.PREDICTION_SERVICE, {
        tfs_grpc.PREDICT_METHOD: grpc.unary_unary_rpc_method_handler(predict)})
    server = grpc.aio.server(options=list(tfs_grpc.RECEIVE_ANY_SIZE))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


async def serve(args) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(1024)
    delays = Delays(args)
    runner = web.AppRunner(build_app(args, delays), access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock, backlog=1024).start()
    grpc_server = None
    print(sock.getsockname()[1], flush=True)
    if args.grpc:
        grpc_server, grpc_port = await start_grpc(delays)
        print(grpc_port, flush=True)
    await asyncio.sleep(args.max_lifetime_s)  # never outlive a test run
    if grpc_server is not None:
        await grpc_server.stop(None)
    await runner.cleanup()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--delay-ms", type=float, default=0.0)
    p.add_argument("--delay-sigma", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--freeze-every", type=float, default=0.0)
    p.add_argument("--freeze-s", type=float, default=1.0)
    p.add_argument("--max-lifetime-s", type=float, default=120.0)
    p.add_argument("--grpc", action="store_true")
    p.add_argument("--exit-after", type=int, default=0)
    args = p.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
