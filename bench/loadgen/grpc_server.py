"""bench/loadgen's trivial gRPC target: PredictionService/Predict answering a fixed reply.

The gRPC counterpart of the bench's nginx: grpcio on 127.0.0.1, one generic handler for
``serving.tfs_grpc.PREDICT`` that takes the request as raw bytes (never parsed) and
answers the same small serialised PredictResponse every time, so what a generator is
measured against costs the server as little as grpcio allows. Run as its own process
(pinned with taskset by the bench); prints the bound port on stdout's first line and
serves until SIGTERM or --max-lifetime-s.

grpcio's synchronous server with a few threads (--threads), or grpc.aio (--aio): pinned to
one core, the synchronous one answered 4.0-4.5k small calls/s and grpc.aio 2.9-3.0k (both
at 0.98 CPUs, against a closed-loop grpc.aio client, Dec 2026), and the slower the server,
the sooner it, not the generator, bounds what a generator can be seen to send.

  python bench/loadgen/grpc_server.py [--port 0] [--threads 4 | --aio] [--max-lifetime-s 3600]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import threading
from concurrent import futures

import grpc

from serving import tfs_grpc
from serving import tfs_messages_pb2 as pb


def reply_bytes() -> bytes:
    """The fixed reply: two probabilities, as TF Serving's typed float_val."""
    reply = pb.PredictResponse()
    reply.model_spec.name = "m"
    reply.outputs["probabilities"].dtype = pb.DataType.Value("DT_FLOAT")
    reply.outputs["probabilities"].float_val.extend([0.25, 0.75])
    return reply.SerializeToString()


def handler(reply: bytes, *, aio: bool = False) -> grpc.GenericRpcHandler:
    """Predict with no (de)serialisers: the request stays bytes, the reply is ``reply``."""

    def predict(request: bytes, context: grpc.ServicerContext) -> bytes:
        return reply

    async def predict_aio(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return reply

    return grpc.method_handlers_generic_handler(tfs_grpc.PREDICTION_SERVICE, {
        tfs_grpc.PREDICT_METHOD: grpc.unary_unary_rpc_method_handler(predict_aio if aio else predict)})


def _bind(server, port: int) -> int:
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    if bound == 0:
        raise SystemExit(f"cannot listen for gRPC on 127.0.0.1:{port}")
    return bound


def serve(port: int, threads: int, max_lifetime_s: float) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(threads), options=list(tfs_grpc.RECEIVE_ANY_SIZE))
    server.add_generic_rpc_handlers((handler(reply_bytes()),))
    bound = _bind(server, port)
    server.start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(bound, flush=True)
    stop.wait(max_lifetime_s)  # never outlive the bench
    server.stop(None)


async def serve_aio(port: int, max_lifetime_s: float) -> None:
    server = grpc.aio.server(options=list(tfs_grpc.RECEIVE_ANY_SIZE))
    server.add_generic_rpc_handlers((handler(reply_bytes(), aio=True),))
    bound = _bind(server, port)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(bound, flush=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max_lifetime_s)
    await server.stop(None)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--threads", type=int, default=4, help="The synchronous server's handler threads.")
    p.add_argument("--aio", action="store_true", help="grpc.aio's server instead.")
    p.add_argument("--max-lifetime-s", type=float, default=3600.0)
    args = p.parse_args(argv)
    if args.aio:
        asyncio.run(serve_aio(args.port, args.max_lifetime_s))
    else:
        serve(args.port, args.threads, args.max_lifetime_s)


if __name__ == "__main__":
    sys.exit(main())
