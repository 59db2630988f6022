"""`bazel run //serving:local_server -- --model_base_path DIR`: TF Serving's REST API, locally.

Serves one model directory with TensorFlow, taking its settings from a ServingConfig
(`--config FILE.json`, as written by the launcher) plus a few TF Serving-named flags.
Like tensorflow_model_server, the port opens only once every version has loaded and run
its warm-up records, so a model that answers is AVAILABLE. SIGTERM / Ctrl-C stop it
gracefully: the port closes, requests in flight finish, then the process exits.
"""

from __future__ import annotations

import asyncio
import gc
import json
import signal
import sys
from pathlib import Path

import click

from serving.config import DEFAULT_MAX_BODY_BYTES, ConfigError, ServingConfig
from serving.launcher import LOCAL_VERSION
from tools.python.runpath import user_path

SHUTDOWN_TIMEOUT_S = 30.0
# glibc mallopt: keep up to this much freed memory for reuse instead of returning it
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
KEEP_FREED_BYTES = 512 * 2**20
MMAP_THRESHOLD_BYTES = 32 * 2**20  # glibc's maximum on 64-bit


def keep_freed_memory() -> bool:
    """Let glibc's malloc reuse freed memory instead of unmapping it after each request.

    A big request body makes tens of MB of numpy temporaries; by default glibc gives them
    back to the kernel when freed, so every request pays ~10k page faults to get them again
    (25-40 ms for a batch of 8 seed images: more than parsing them). tensorflow_model_server
    links tcmalloc, which keeps freed memory; this is the glibc equivalent. Returns False
    where it does not apply (not glibc).
    """
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
            libc.mallopt(M_TRIM_THRESHOLD, KEEP_FREED_BYTES))
    except (OSError, AttributeError):
        return False


class ServeError(RuntimeError):
    """The server cannot start (bad config, port taken); the message says why."""


def load_config(path: str | None, overrides: dict) -> ServingConfig:
    d = {}
    if path:
        try:
            d = json.loads(user_path(path).read_text())
        except (OSError, ValueError) as err:
            raise ServeError(f"--config {path}: {err}") from None
    d.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return ServingConfig.from_dict(d)
    except (ConfigError, TypeError) as err:
        raise ServeError(f"invalid serving config: {err}") from None


async def serve(
    config: ServingConfig,
    model_base_path: Path,
    *,
    host: str,
    port: int,
    max_body_bytes: int,
    port_file: Path | None = None,
    grpc_port: int | None = None,
    grpc_max_threads: int | None = None,
    log=print,
) -> None:
    """Loads the model, serves REST (and gRPC on ``grpc_port``, 0 = any free port) until
    SIGTERM/SIGINT, then shuts down gracefully. ``port_file`` gets the REST port on its first
    line and, with gRPC, ``grpc=PORT`` on the second."""
    from aiohttp import web

    from serving import grpc_api, servable
    from serving.http_api import RestApi
    from serving.inference import Inference

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    servable.configure_threads(config.intra_op, config.inter_op)
    if not keep_freed_memory():
        log("note: not glibc, so freed memory goes back to the kernel after each request")
    model = await loop.run_in_executor(None, lambda: servable.Model(config, model_base_path, log=log))
    if stop.is_set():
        return
    # TensorFlow leaves millions of Python objects behind; without this every garbage collection
    # walks them all, and requests that allocate (JSON parsing) run 3-6x slower
    gc.freeze()
    inference = Inference(model, config)
    api = RestApi(model, config, max_body_bytes=max_body_bytes, inference=inference)
    grpc_server = None
    if grpc_port is not None:
        try:
            grpc_server, grpc_port = await grpc_api.start(grpc_api.GrpcApi(inference), host, grpc_port,
                                                          max_threads=grpc_max_threads,
                                                          max_message_bytes=max_body_bytes)
        except (OSError, RuntimeError) as err:
            await inference.close()
            raise ServeError(f"cannot listen for gRPC on {host}:{grpc_port}: {err}") from None
    runner = web.AppRunner(api.app(), access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    site = web.TCPSite(runner, host, port, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    try:
        await site.start()
    except OSError as err:
        await runner.cleanup()
        if grpc_server is not None:
            await grpc_server.stop(None)
        await inference.close()
        raise ServeError(f"cannot listen on {host}:{port}: {err.strerror}") from None
    bound = runner.addresses[0][1] if runner.addresses else port
    if port_file is not None:
        tmp = port_file.with_suffix(".tmp")
        tmp.write_text(f"{bound}\n" + (f"grpc={grpc_port}\n" if grpc_server is not None else ""))
        tmp.replace(port_file)
    where = f"http://{host}:{bound}" + (f" and grpc://{host}:{grpc_port}" if grpc_server is not None else "")
    log(f"serving {config.model_name} versions {sorted(model.versions)} on {where} ({LOCAL_VERSION})")
    await stop.wait()
    log(f"shutting down: {inference.in_flight} request(s) in flight")
    if grpc_server is not None:
        await grpc_server.stop(SHUTDOWN_TIMEOUT_S)  # refuses new calls, lets those in flight finish
    await runner.cleanup()  # closes the listener, waits for in-flight handlers
    await api.close()
    log("stopped")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model_base_path", "--model-base-path", "model_base_path", required=True,
              help="Directory holding the model's numeric version directories.")
@click.option("--config", "config_path", default=None, help="ServingConfig as JSON (ServingConfig.to_dict()).")
@click.option("--model_name", "--model-name", "model_name", default=None, help="Overrides the config's model_name.")
@click.option("--rest_api_port", "--rest-api-port", "port", default=8501, show_default=True, type=int,
              help="REST port (0 = any free port; see --port_file).")
@click.option("--port", "grpc_port", default=8500, show_default=True, type=int,
              help="gRPC port, TF Serving's PredictionService and ModelService (0 = any free port; "
                   "-1 = no gRPC).")
@click.option("--grpc_max_threads", "--grpc-max-threads", "grpc_max_threads", default=None, type=click.IntRange(1),
              help="RPCs served at once; more get RESOURCE_EXHAUSTED (default: no limit).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--tensorflow_intra_op_parallelism", "intra_op", default=None, type=int)
@click.option("--tensorflow_inter_op_parallelism", "inter_op", default=None, type=int)
@click.option("--max_body_bytes", default=DEFAULT_MAX_BODY_BYTES, show_default=True, type=int,
              help="Larger REST bodies get 413, larger gRPC messages RESOURCE_EXHAUSTED (TF Serving: 2 GiB).")
@click.option("--port_file", default=None, help="Write the bound port here once the model is AVAILABLE.")
def main(model_base_path, config_path, model_name, port, grpc_port, grpc_max_threads, host, intra_op, inter_op,
         max_body_bytes, port_file) -> None:
    """Serve a SavedModel over TF Serving's REST API (predict, status, metadata, metrics) and gRPC API."""
    try:
        config = load_config(config_path, {"model_name": model_name, "intra_op": intra_op, "inter_op": inter_op})
    except ServeError as err:
        raise click.ClickException(str(err)) from None
    base = user_path(model_base_path)
    if not base.is_dir():
        raise click.ClickException(f"--model_base_path {base}: no such directory")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    from serving.servable import LoadError

    def log(message: str) -> None:
        click.echo(f"local_server: {message}", err=True)

    try:
        asyncio.run(
            serve(config, base, host=host, port=port, max_body_bytes=max_body_bytes,
                  port_file=user_path(port_file) if port_file else None,
                  grpc_port=None if grpc_port < 0 else grpc_port, grpc_max_threads=grpc_max_threads, log=log)
        )
    except (LoadError, ServeError) as err:
        raise click.ClickException(str(err)) from None


if __name__ == "__main__":
    sys.exit(main())
