"""bench/serving: ResNet50 images/s through the local server (HTTP and gRPC) vs in-process TensorFlow.

Same SavedModel, same intra/inter-op threads, same batch size, in the same run: the
ratio server / in-process is the server's overhead (HTTP and JSON or gRPC and protobuf,
batching). Measured one
after the other, never at the same time, alternating in --rounds slices per point (a
shared machine's speed drifts by 10-20% over minutes); the ratio is the rounds' median.
Each slice's rate runs from its first to its last completion event (`rate`), and a slice
during which other processes used the CPUs is measured again (`quiet`, --attempts).
Payloads: `b64` (a JPEG through `serving_bytes`, decoding inside the model on both sides)
and `tensor` (the seed's pixels as a JSON array through `serving_default`; parsing that
JSON is the REST API's cost). Over gRPC (--protocols), the same images as a PredictRequest
to the server's gRPC port: `tensor` as DT_FLOAT `tensor_content` (float32 bytes, nothing to
parse), `b64` as the JPEG in DT_STRING `string_val`; a closed-loop grpc.aio client, one channel
(one HTTP/2 connection) per client, as many clients as the HTTP rows.

Server settings measured: batching off (each request carries `batch` images; one closed-loop
client, whose requests leave the model idle while each is parsed, and two, which keep it
busy: the server's throughput), and batching on with several max_batch_size /
batch_timeout_micros (each request one image, 2 x max_batch_size concurrent clients, as TF
Serving's batching guide advises).

  bazel run //bench/serving:bench -- [--model-dir DIR] [--threads 2] [--seconds 12] [--rounds 3]
                                     [--attempts 3] [--payloads b64,tensor] [--protocols rest,grpc]
                                     [--batching off,on]
"""

from __future__ import annotations

import asyncio
import base64
import functools
import gc
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import NamedTuple

import click

from loadgen import hostcpu, recorder
from loadgen.targets import grpc_target
from serving import launcher, servable, tensor_proto, tfs_grpc
from serving import tfs_messages_pb2 as pb
from serving.config import BatchingParameters, ServingConfig
from tools.python.runpath import user_path

MODEL_NAME = "resnet"
# (label, batching parameters or None)
SERVER_SETTINGS = (
    ("off", None),
    ("on mbs=8 t=0", BatchingParameters(max_batch_size=8, batch_timeout_micros=0, max_enqueued_batches=1000)),
    ("on mbs=8 t=2ms", BatchingParameters(max_batch_size=8, batch_timeout_micros=2000, max_enqueued_batches=1000)),
)


def _payloads(seed: int = 0) -> dict[str, tuple[str, str, object]]:
    """payload kind -> (signature, input name, one instance as a JSON value)."""
    import tensorflow as tf

    from model import signatures as sig
    from model import warmup

    pixels = warmup.sample_pixels(seed)
    jpeg = tf.io.encode_jpeg(pixels, quality=90).numpy()
    return {
        "b64": (sig.BYTES_SIGNATURE, sig.BYTES_INPUT, {"b64": base64.b64encode(jpeg).decode()}),
        # 0-255 integer pixels, as loadgen's tensor payload sends them
        "tensor": (sig.DEFAULT_SIGNATURE, sig.IMAGE_INPUT, pixels.astype(int).tolist()),
    }


def rest_body(signature: str, instance, per_request: int) -> bytes:
    """The REST API's predict body: ``per_request`` copies of ``instance`` (row format)."""
    doc = {"signature_name": signature, "instances": [instance] * per_request}
    return json.dumps(doc, separators=(",", ":")).encode()


def grpc_body(signature: str, name: str, instance, per_request: int) -> bytes:
    """The same images as a serialised PredictRequest: pixels as DT_FLOAT tensor_content
    ([n,H,W,3] float32), a {"b64": ...} instance as its bytes in DT_STRING string_val ([n])."""
    import numpy as np

    if isinstance(instance, dict):
        tensor = np.array([base64.b64decode(instance["b64"])] * per_request, dtype=object)
    else:
        tensor = np.repeat(np.asarray(instance, np.float32)[np.newaxis], per_request, axis=0)
    request = pb.PredictRequest()
    request.model_spec.name = MODEL_NAME
    request.model_spec.signature_name = signature
    request.inputs[name].CopyFrom(tensor_proto.from_numpy(tensor))
    return request.SerializeToString()


def _export(out: Path) -> Path:
    from model import exporter

    click.echo("exporting ResNet50 (random weights) ...", err=True)
    exporter.export(exporter.ExportOptions(out=out, name=MODEL_NAME, arch="resnet50"))
    return out / MODEL_NAME


def _percentiles(latencies_us: list[int]) -> tuple[float, float]:
    """p50, p99 in ms, through the generator's own histogram code."""
    import numpy as np

    h = recorder.new_histogram()
    recorder.load_values(h, np.asarray(latencies_us, np.int64))
    q = recorder.percentiles(h, (50.0, 99.0))
    return recorder.ms(q[50.0]), recorder.ms(q[99.0])


def rate(completions: list[tuple[float, int]], start: float, end: float, burst_s: float = 0.005) -> float:
    """Images/s from the first to the last completion event in [start, end].

    Completions less than `burst_s` apart (one batch's responses) are one event. Counting
    from event to event, a slice's edges neither add nor drop part of a batch: with 5 s
    slices of ~13 batches, counting whole slices moved the rate by up to a batch (8%).
    """
    events: list[list[float]] = []  # [first time, last time, images]
    for t, n in sorted(c for c in completions if start <= c[0] <= end):
        if events and t - events[-1][1] <= burst_s:
            events[-1][1:] = [t, events[-1][2] + n]
        else:
            events.append([t, t, n])
    if len(events) < 2:
        return sum(e[2] for e in events) / (end - start)
    return sum(e[2] for e in events[1:]) / (events[-1][0] - events[0][0])


# --- the machine's other load ------------------------------------------------------------------

QUIET_CPUS = 0.15  # a slice during which other processes used more than this many CPUs is measured again


def others_cpus(measure, pids: list[int]):
    """(measure()'s result, CPUs used by processes other than this one and `pids` meanwhile,
    the hypervisor's steal included)."""
    before = hostcpu.snapshot(pids)
    result = measure()
    used = hostcpu.usage(before, hostcpu.snapshot(pids))
    return result, (used.others + used.steal) if used else 0.0


def quiet(measure, pids: list[int], attempts: int):
    """measure() until other processes used at most QUIET_CPUS meanwhile (at most `attempts` times;
    else the quietest try). Returns (result, others' CPUs, tries)."""
    best = None
    for attempt in range(1, attempts + 1):
        result, others = others_cpus(measure, pids)
        if best is None or others < best[1]:
            best = (result, others, attempt)
        if others <= QUIET_CPUS:
            break
    return best


# --- in-process TensorFlow -------------------------------------------------------------------


class InProcess:
    """Direct signature calls on the same SavedModel, in this process (same thread settings)."""

    def __init__(self, model_dir: Path, payloads) -> None:
        import tensorflow as tf

        version = servable.available_versions(model_dir)[-1]
        self._loaded = tf.saved_model.load(str(model_dir / str(version)))
        self._payloads = payloads

    def measure(self, kind: str, batch: int, seconds: float, callers: int = 1) -> tuple[float, float, float]:
        """images/s, p50 ms, p99 ms of `callers` threads calling the signature back to back
        (TF releases the GIL while it runs: the concurrency a server has with as many requests)."""
        import numpy as np
        import tensorflow as tf

        signature, name, instance = self._payloads[kind]
        fn = self._loaded.signatures[signature]
        if kind == "b64":
            data = tf.constant([base64.b64decode(instance["b64"])] * batch)
        else:
            data = tf.constant(np.asarray([instance] * batch, np.float32))
        for _ in range(2):
            fn(**{name: data})
        latencies: list[int] = []
        completions: list[tuple[float, int]] = []
        started = time.perf_counter()

        def caller() -> None:
            while time.perf_counter() - started < seconds:
                t = time.perf_counter()
                fn(**{name: data})["probabilities"].numpy()
                done = time.perf_counter()
                latencies.append(int((done - t) * 1e6))
                completions.append((done, batch))

        threads = [threading.Thread(target=caller) for _ in range(callers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        p50, p99 = _percentiles(latencies)
        return rate(completions, started, started + seconds), p50, p99


# --- through the server -------------------------------------------------------------------------


async def _closed_loop(url: str, body: bytes, clients: int, images_per_request: int, seconds: float, warmup: float):
    import aiohttp

    latencies, completions, errors = [], [], {}
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients), timeout=timeout) as session:
        start = time.perf_counter()
        measure_from = start + warmup
        end = measure_from + seconds

        async def client():
            while (now := time.perf_counter()) < end:
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                    await r.read()
                    done = time.perf_counter()
                    if r.status == 200:
                        completions.append((done, images_per_request))
                        if now >= measure_from:
                            latencies.append(int((done - now) * 1e6))
                    elif now >= measure_from:
                        errors[r.status] = errors.get(r.status, 0) + 1

        await asyncio.gather(*(client() for _ in range(clients)))
    return rate(completions, measure_from, end), latencies, errors


async def _closed_loop_grpc(url: str, body: bytes, clients: int, images_per_request: int, seconds: float,
                            warmup: float):
    """As _closed_loop, over gRPC: ``clients`` tasks, each on its own channel (one HTTP/2 connection,
    as each HTTP client has its own connection), the request sent as the bytes it is and the reply
    read as bytes. Errors are counted by status code name."""
    import grpc

    options = [*tfs_grpc.RECEIVE_ANY_SIZE, ("grpc.use_local_subchannel_pool", 1)]
    address = grpc_target(url).address
    channels = [grpc.aio.insecure_channel(address, options=options) for _ in range(clients)]
    latencies, completions, errors = [], [], {}
    try:
        await asyncio.wait_for(asyncio.gather(*(c.channel_ready() for c in channels)), 30)
        start = time.perf_counter()
        measure_from = start + warmup
        end = measure_from + seconds

        async def client(channel):
            predict = channel.unary_unary(tfs_grpc.PREDICT)
            while (now := time.perf_counter()) < end:
                try:
                    await predict(body, timeout=120)
                    code = None
                except grpc.aio.AioRpcError as e:
                    code = e.code().name
                done = time.perf_counter()
                if code is None:
                    completions.append((done, images_per_request))
                    if now >= measure_from:
                        latencies.append(int((done - now) * 1e6))
                elif now >= measure_from:
                    errors[code] = errors.get(code, 0) + 1

        await asyncio.gather(*(client(c) for c in channels))
    finally:
        for c in channels:
            await c.close()
    return rate(completions, measure_from, end), latencies, errors


def _serve(url: str, *args):
    return asyncio.run((_closed_loop_grpc if url.startswith("grpc://") else _closed_loop)(url, *args))


class Point(NamedTuple):
    """One server point's figures (see _point)."""

    rate: float  # server images/s (mean of the rounds)
    p50: float
    p99: float
    ref: float  # in-process images/s
    ref_p50: float
    errors: dict
    ratios: list[float]  # per round, server / in-process
    others: float  # the most CPUs other processes used during a kept slice
    tries: int  # slices measured


def _point(direct: InProcess, kind: str, batch: int, callers: int, url: str, body: bytes, clients: int,
           per_request: int, seconds: float, rounds: int, server_pid: int, attempts: int) -> Point:
    """One server point: `rounds` alternations of in-process TF then the server, seconds/rounds each
    (the shared machine's speed drifts over minutes; a ratio within one round sees the same machine).
    A slice during which other processes used the CPUs is measured again (see `quiet`)."""
    slice_s = seconds / rounds
    server_rates, direct_rates, direct_p50s, ratios, latencies, errors = [], [], [], [], [], {}
    others, tries = 0.0, 0
    for i in range(rounds):
        (ip_rate, ip_p50, _), ip_others, ip_tries = quiet(
            lambda: direct.measure(kind, batch, slice_s, callers), [], attempts)
        (server_rate, lat, errs), server_others, server_tries = quiet(
            functools.partial(_serve, url, body, clients, per_request, slice_s, 3.0 if i == 0 else 1.0),
            [server_pid], attempts)
        others, tries = max(others, ip_others, server_others), tries + ip_tries + server_tries
        server_rates.append(server_rate)
        direct_rates.append(ip_rate)
        direct_p50s.append(ip_p50)
        ratios.append(server_rate / ip_rate)
        latencies += lat
        for status, n in errs.items():
            errors[status] = errors.get(status, 0) + n
    p50, p99 = _percentiles(latencies) if latencies else (float("nan"), float("nan"))
    return Point(statistics.mean(server_rates), p50, p99, statistics.mean(direct_rates),
                 statistics.median(direct_p50s), errors, ratios, others, tries)


def measure(model_dir: Path, payloads, direct: InProcess, threads: int, batches: list[int], seconds: float,
            workdir: Path, rounds: int, attempts: int, protocols=("rest", "grpc"), settings=SERVER_SETTINGS):
    """Every server point alternates with in-process runs of the same batch size (see _point)."""
    rows = []
    for label, params in settings:
        config = ServingConfig(model_name=MODEL_NAME, intra_op=threads, inter_op=threads,
                               enable_batching=params is not None, batching=params)
        work = workdir / label.replace(" ", "_")
        with launcher.launch(config, model_base_path=model_dir, rest_port=0, workdir=work, local=True) as server:
            server.wait_available(300)
            urls = {"rest": f"{server.url}/v1/models/{MODEL_NAME}:predict",
                    "grpc": f"{server.grpc_url}/{MODEL_NAME}"}
            for kind, (signature, name, instance) in payloads.items():
                # (batch, images per request, HTTP clients, in-process callers): batching off, one
                # client or two (model runs overlap, and parsing overlaps them), against as many
                # in-process callers; batching on, 2 x max_batch_size clients, against
                # num_batch_threads callers of max_batch_size
                if params is None:
                    shapes = [(b, b, c, c) for b in batches for c in (1, 2)]
                else:
                    shapes = [(params.max_batch_size, 1, 2 * params.max_batch_size,
                               params.effective_num_batch_threads(len(os.sched_getaffinity(0))))]
                for (batch, per_request, clients, callers), protocol in (
                        (shape, p) for shape in shapes for p in protocols):
                    body = (grpc_body(signature, name, instance, per_request) if protocol == "grpc"
                            else rest_body(signature, instance, per_request))
                    point = _point(direct, kind, batch, callers, urls[protocol], body, clients, per_request,
                                   seconds, rounds, server.pid, attempts)
                    rows.append((label, protocol, kind, batch, clients, callers, len(body), point))
                    click.echo(f"  {label:16s} {protocol:4s} {kind:6s} batch {batch:2d} clients {clients:2d}: server "
                               f"{point.rate:6.1f} img/s, in-process ({callers} callers) {point.ref:6.1f} img/s, "
                               f"ratio per round {' '.join(f'{x:.2f}' for x in point.ratios)}", err=True)
    return rows


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model-dir", default=None,
              help="Model base path (version dirs). Default: export ResNet50 to a temp dir.")
@click.option("--threads", default=2, show_default=True, help="intra_op = inter_op threads, server and in-process.")
@click.option("--seconds", default=12.0, show_default=True,
              help="Measured seconds per point, server and in-process each (split into --rounds).")
@click.option("--batches", default="1,8", show_default=True, help="Batch sizes with batching off.")
@click.option("--payloads", "kinds", default="b64,tensor", show_default=True)
@click.option("--protocols", default="rest,grpc", show_default=True,
              help="rest: JSON to the REST port; grpc: a PredictRequest (tensor: tensor_content) to the gRPC port.")
@click.option("--batching", default="off,on", show_default=True,
              help="Server settings to measure: off (batching off), on (the batching settings).")
@click.option("--rounds", default=3, show_default=True, type=click.IntRange(1),
              help="Alternations of in-process and server runs per point; the ratio is their median.")
@click.option("--attempts", default=3, show_default=True, type=click.IntRange(1),
              help=f"Tries per slice: a slice during which other processes used more than {QUIET_CPUS} CPUs "
                   "is measured again (the quietest try is kept).")
def main(model_dir, threads, seconds, batches, kinds, protocols, batching, rounds, attempts) -> None:
    """Print images/s and latency, server vs in-process TF, and their ratio."""
    protocol_list = [p for p in ("rest", "grpc") if p in protocols.split(",")]
    wanted = set(batching.split(","))
    settings = [s for s in SERVER_SETTINGS if s[0].split()[0] in wanted]
    if not protocol_list or set(protocols.split(",")) - {"rest", "grpc"}:
        raise click.BadParameter(f"{protocols!r}: use rest, grpc or both", param_hint="--protocols")
    if not settings or wanted - {"off", "on"}:
        raise click.BadParameter(f"{batching!r}: use off, on or both", param_hint="--batching")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    batch_sizes = sorted({int(b) for b in batches.split(",")})
    # before anything runs TensorFlow (the export does): the threads are fixed from then on
    servable.configure_threads(threads, threads)
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        base = user_path(model_dir) if model_dir else _export(Path(tmp) / "models")
        payloads = {k: v for k, v in _payloads().items() if k in kinds.split(",")}
        direct = InProcess(base, payloads)
        gc.freeze()  # TF's objects would slow every collection of the HTTP client in this process
        rows = measure(base, payloads, direct, threads, batch_sizes, seconds, Path(tmp) / "work", rounds, attempts,
                       protocol_list, settings)

    cpus = len(os.sched_getaffinity(0))
    click.echo(f"\nResNet50, {threads} intra/inter-op threads, {cpus} CPUs, {seconds:.0f} s per point in "
               f"{rounds} rounds alternating with in-process TF (same batch size; callers = concurrent calls); "
               "ratio = median of the rounds' server/in-process ratios; others = the most CPUs other processes "
               f"used during a kept slice (slices above {QUIET_CPUS} were measured again, up to {attempts} tries)")
    click.echo(f"{'server':16s} {'proto':5s} {'payload':7s} {'batch':>5s} {'clients':>7s} {'callers':>7s} {'body':>8s} "
               f"{'img/s':>7s} {'p50 ms':>7s} {'p99 ms':>7s} {'in-proc':>7s} {'ip p50':>7s} {'ratio':>6s} {'min':>5s}"
               f" {'others':>6s} {'slices':>6s}  errors")
    for label, protocol, kind, batch, clients, callers, size, p in rows:
        click.echo(f"{label:16s} {protocol:5s} {kind:7s} {batch:5d} {clients:7d} {callers:7d} {size:8d} {p.rate:7.1f} "
                   f"{p.p50:7.1f} {p.p99:7.1f} {p.ref:7.1f} {p.ref_p50:7.1f} {statistics.median(p.ratios):6.2f} "
                   f"{min(p.ratios):5.2f} {p.others:6.2f} {p.tries:6d}  {p.errors or ''}")


if __name__ == "__main__":
    sys.exit(main())
