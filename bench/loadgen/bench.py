"""bench/loadgen: our open-loop generator vs Locust FastHttpUser and wrk, and vs a
closed-loop grpc.aio client over gRPC, one core each.

REST (--protocols rest): starts nginx (Debian) on 127.0.0.1 answering every predict POST with a small JSON,
pinned to one core; every generator runs pinned to another core, one at a time, with
a small body and with the seed's ~0.6 MB tensor body. Ours: the highest rate whose
open-loop run is valid (send-lag p99 within 5 ms, schedule kept, < 1% errors),
found by a geometric search (an invalid run is retried twice: the machine is shared).
Locust and wrk: their closed-loop rate. Prints a table with ratios to Locust
FastHttpUser and to wrk (wrk2 is not packaged here; wrk's closed-loop rate bounds it).
Note: nginx's `return` may answer before it has read a large body.

gRPC (--protocols grpc): starts a trivial Predict server (bench/loadgen/grpc_server.py: raw
bytes in, a fixed small PredictResponse out; grpcio's synchronous server, the faster of grpcio's
two on one core, or grpc.aio with --grpc-server aio) pinned to the server's core, and measures,
pinned to the generator's core, in the same run: a closed-loop grpc.aio client (--grpc-calls
concurrent calls over --connections channels: the library's own ceiling) and ours
(`--transport grpc`, as many channels, the same geometric search for the highest valid
open-loop rate). Bodies: a small PredictRequest (201 floats as DT_FLOAT tensor_content) and
the seed image as `payload.load("tensor", protocol="grpc")` gives it (~0.6 MB). Prints their
rates, the CPUs the generator's process and the server used (run.json's host_cpu.ours for ours),
the rate per generator CPU, and the ratios ours / closed-loop of both. On two cores the one-core
server can bound both (its CPUs near 1, the generator's below): the rate per generator CPU is
then the fairer comparison.

  bazel run //bench/loadgen:bench -- [--seconds 8] [--bodies small,tensor] [--transports fast,aiohttp]
                                     [--protocols rest,grpc] [--grpc-calls 64] [--connections 4]
                                     [--grpc-server sync|aio]
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import click
import grpc
import numpy as np

from loadgen import hostcpu, payload
from loadgen.launch import new_loop
from loadgen.run import RunOptions, run
from loadgen.schedule import Profile
from serving import launcher, tensor_proto, tfs_grpc
from serving import tfs_messages_pb2 as pb

PATH = "/v1/models/m:predict"
SMALL_BODY = b'{"instances": [' + b"0.5, " * 200 + b'0.5]}'  # ~1 KB
GRPC_MODEL = "m"

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  client_max_body_size 4m;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location /v1/models/ {{
      default_type application/json;
      return 200 '{{"predictions": [[0.25, 0.75]]}}';
    }}
  }}
}}
"""

WRK_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("BENCH_BODY"), "rb")
wrk.body = f:read("*a")
f:close()
"""

LOCUSTFILE = """
import os
from locust import FastHttpUser, constant, task

BODY = open(os.environ["BENCH_BODY"], "rb").read()


class Predict(FastHttpUser):
    wait_time = constant(0)

    @task
    def predict(self):
        self.client.post("PATH", data=BODY, headers={"Content-Type": "application/json"})
""".replace("PATH", PATH)


def small_grpc_request() -> bytes:
    """SMALL_BODY's gRPC counterpart: 201 floats as DT_FLOAT tensor_content (~0.8 KB)."""
    request = pb.PredictRequest()
    request.model_spec.name = GRPC_MODEL
    request.inputs["instances"].CopyFrom(tensor_proto.from_numpy(np.full((1, 201), 0.5, np.float32)))
    return request.SerializeToString(deterministic=True)


def _wait_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise click.ClickException(f"nginx did not listen on port {port}")


def start_nginx(workdir: str, cpu: int) -> tuple[subprocess.Popen, int]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        raise click.ClickException("nginx not found: apt-get install -y nginx")
    port = launcher.free_port()
    conf = os.path.join(workdir, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(dir=workdir, port=port))
    proc = subprocess.Popen(["taskset", "-c", str(cpu), nginx, "-c", conf, "-p", workdir,
                             "-e", os.path.join(workdir, "error.log")])
    _wait_port(port)
    return proc, port


def start_grpc_server(cpu: int, kind: str = "sync") -> tuple[subprocess.Popen, int]:
    """grpc_server.py, beside this file (``kind``: sync or aio), in its own process pinned to
    ``cpu``; returns it and its port."""
    # the child finds our modules and packages where this process does (bazel's runfiles too)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(os.path.abspath(p) for p in sys.path if p)}
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "grpc_server.py")
    argv = [sys.executable, script, *(["--aio"] if kind == "aio" else [])]
    proc = subprocess.Popen(["taskset", "-c", str(cpu), *argv], stdout=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline().strip()
    if not line.isdigit():
        proc.kill()
        raise click.ClickException(f"the gRPC server did not start (said {line!r})")
    _wait_port(int(line))
    return proc, int(line)


def wrk_rate(url: str, body_file: str, seconds: int, cpu: int, workdir: str) -> float:
    wrk = shutil.which("wrk")
    if not wrk:
        raise click.ClickException("wrk not found: apt-get install -y wrk")
    script = os.path.join(workdir, "post.lua")
    with open(script, "w") as f:
        f.write(WRK_LUA)
    out = subprocess.run(
        ["taskset", "-c", str(cpu), wrk, "-t1", "-c32", f"-d{seconds}s", "-s", script, url],
        capture_output=True, text=True, env={**os.environ, "BENCH_BODY": body_file},
        check=True).stdout
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise click.ClickException(f"could not read wrk's output:\n{out}")


def locust_rate(base_url: str, body_file: str, seconds: int, cpu: int, workdir: str) -> float:
    locustfile = os.path.join(workdir, "locustfile.py")
    with open(locustfile, "w") as f:
        f.write(LOCUSTFILE)
    prefix = os.path.join(workdir, "locust")
    subprocess.run(
        ["taskset", "-c", str(cpu), sys.executable, "-m", "locust", "-f", locustfile,
         "--headless", "-u", "32", "-r", "1000", "-t", f"{seconds}s", "-H", base_url,
         "--csv", prefix, "--only-summary", "--loglevel", "WARNING"],
        env={**os.environ, "BENCH_BODY": body_file}, check=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(prefix + "_stats.csv") as f:
        for row in csv.DictReader(f):
            if row["Name"] == "Aggregated":
                return float(row["Requests/s"])
    raise click.ClickException("could not read Locust's stats")


# --- gRPC's peer: a closed-loop grpc.aio client (in this file, not a module of its own: as
# bazel runs this file, its directory comes first on sys.path and "bench" is this file) -------

# as loadgen.grpc_transport opens its channels: one connection each, any reply size
CHANNEL_OPTIONS = (*tfs_grpc.RECEIVE_ANY_SIZE, ("grpc.use_local_subchannel_pool", 1))


@dataclasses.dataclass(frozen=True)
class ClosedLoopResult:
    rate: float  # OK calls completed per second in the measured window
    errors: dict  # status code name -> calls, in the measured window
    cpus: float  # CPUs this process used meanwhile (1.0: one core busy)
    server_cpus: float  # CPUs the server process used meanwhile (NaN: not asked)


async def _closed_loop_grpc(address: str, body: bytes, calls: int, channels: int, seconds: float,
                            warmup_s: float, timeout_s: float, server_pid: int | None) -> ClosedLoopResult:
    opened = [grpc.aio.insecure_channel(address, options=list(CHANNEL_OPTIONS))
              for _ in range(channels)]
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(c.channel_ready() for c in opened)), 5.0)
        methods = [c.unary_unary(tfs_grpc.PREDICT) for c in opened]
        start = time.perf_counter()
        measure_from, end = start + warmup_s, start + warmup_s + seconds
        ok, errors = 0, {}

        async def caller(i: int) -> None:
            nonlocal ok
            predict = methods[i % channels]
            while time.perf_counter() < end:
                try:
                    await predict(body, timeout=timeout_s)
                    code = None
                except grpc.aio.AioRpcError as e:
                    code = e.code().name
                if measure_from <= time.perf_counter() <= end:
                    if code is None:
                        ok += 1
                    else:
                        errors[code] = errors.get(code, 0) + 1

        async def cpu_window() -> tuple[hostcpu.Usage | None, float]:
            await asyncio.sleep(max(measure_from - time.perf_counter(), 0.0))
            cpu_before, server_before = hostcpu.snapshot(), _server_cpu_s(server_pid)
            await asyncio.sleep(max(end - time.perf_counter(), 0.0))
            server_s = _server_cpu_s(server_pid) - server_before
            used = hostcpu.usage(cpu_before, hostcpu.snapshot())
            return used, server_s / used.wall_s if used else float("nan")

        *_, (used, server_cpus) = await asyncio.gather(*(caller(i) for i in range(calls)), cpu_window())
        return ClosedLoopResult(ok / seconds, errors, used.ours if used else float("nan"), server_cpus)
    finally:
        for c in opened:
            await c.close()


def _server_cpu_s(pid: int | None) -> float:
    """CPU seconds process ``pid`` has used (NaN without one)."""
    return float("nan") if pid is None else hostcpu.process_cpu_s(pid)


def closed_loop_grpc(address: str, body: bytes, *, calls: int = 64, channels: int = 4, seconds: float = 8.0,
                     warmup_s: float = 1.0, timeout_s: float = 10.0, loop: str = "uvloop",
                     server_pid: int | None = None) -> ClosedLoopResult:
    """``calls`` tasks each sending Predict to ``address`` (HOST:PORT) back to back, the next call
    as soon as the last one answers, over ``channels`` channels (each its own HTTP/2 connection, as
    our transport opens them), the request as pre-serialised bytes and the reply left as bytes:
    what grpc.aio does per call with no schedule to keep, the library's own ceiling. On ``loop``
    (loadgen's LOOPS; ours runs on uvloop by default too). ``server_pid``: a process whose CPU
    use over the measured window is reported too (is the server the bound?)."""
    with asyncio.Runner(loop_factory=lambda: new_loop(loop)) as runner:
        return runner.run(_closed_loop_grpc(address, body, calls, channels, seconds, warmup_s, timeout_s,
                                            server_pid))


# nginx answers in microseconds, so the default rule (5% of the p50) would void every run;
# what this bench asks is how much load the generator sends on schedule, within a fixed lag
BENCH_MAX_SEND_LAG_MS = 5.0


def ours_trial(url: str, body_spec: str, rate: float, seconds: int, transport: str,
               workdir: str, connections: int = 4, server_pid: int | None = None) -> tuple[bool, dict]:
    """One open-loop run at ``rate`` (retried twice if invalid): (valid, run.json's record, with
    "bench_server_cpus": the CPUs process ``server_pid`` used during the run, if given)."""
    options = RunOptions(targets=(url,), profile=Profile(kind="constant", rate=rate,
                                                         duration_s=float(seconds)),
                         payload=body_spec, max_in_flight=256, timeout_s=10.0,
                         transport=transport, max_send_lag_ms=BENCH_MAX_SEND_LAG_MS,
                         connections=connections)
    for _ in range(3):  # a shared machine can stall a run: an invalid run is retried twice
        out = tempfile.mkdtemp(dir=workdir)
        server_before, t0 = _server_cpu_s(server_pid), time.monotonic()
        rec = run(options, out).record
        rec["bench_server_cpus"] = (_server_cpu_s(server_pid) - server_before) / (time.monotonic() - t0)
        shutil.rmtree(out, ignore_errors=True)
        t = rec["totals"]
        ok = rec["validity"]["valid"] and t["errors"] <= 0.01 * max(t["scheduled"], 1)
        if ok:
            break
    return ok, rec


def ours_max_rate(url: str, body_spec: str, start: float, seconds: int, transport: str,
                  workdir: str, log, connections: int = 4, server_pid: int | None = None
                  ) -> tuple[float, dict | None]:
    """Highest valid open-loop rate: climb x1.25 until two rates in a row are invalid
    (a noisy neighbour can spoil one), then bisect twice below the first invalid one."""
    best, best_rec, rate, bad, misses = 0.0, None, start, None, 0

    def trial(r):
        ok, rec = ours_trial(url, body_spec, r, seconds, transport, workdir, connections, server_pid)
        server = "" if server_pid is None else f", server CPUs {rec['bench_server_cpus']:.2f}"
        log(f"  ours[{transport}] {r:9.0f}/s -> {'valid' if ok else 'invalid'} "
            f"(send-lag p99 {rec['send_lag_ms']['p99']} ms, errors {rec['totals']['errors']}"
            f"{_classes(rec['totals'])}, CPUs {_ours_cpus(rec):.2f}{server})")
        return ok, rec

    while misses < 2:
        ok, rec = trial(rate)
        if ok:
            best, best_rec, bad, misses = rate, rec, None, 0
        elif best == 0.0:  # the start was too high: halve
            if rate < 200:
                break
            rate /= 2
            continue
        else:
            bad = bad or rate
            misses += 1
        rate *= 1.25
    for _ in range(2):
        if best == 0.0 or bad is None:
            break
        mid = (best + bad) / 2
        ok, rec = trial(mid)
        if ok:
            best, best_rec = mid, rec
        else:
            bad = mid
    return best, best_rec


def _classes(totals: dict) -> str:
    classes = ", ".join(f"{k} {v}" for k, v in totals["error_classes"].items() if v)
    return f" ({classes})" if classes else ""


def _ours_cpus(rec: dict | None) -> float:
    """CPUs our generator used during a run (run.json's host_cpu.ours), NaN if unknown."""
    cpu = (rec or {}).get("host_cpu") or {}
    return cpu.get("ours", float("nan"))


def rest_rows(base: str, bodies: list[str], transports: list[str], seconds: int, gen_cpu: int,
              workdir: str, log) -> list[tuple]:
    """Locust, wrk and ours against nginx at ``base``: (name, mode, body, req/s, MB, Locust, wrk)."""
    rows = []
    for body_name in bodies:
        body_bytes = SMALL_BODY if body_name == "small" else payload.tensor_payload().body
        body_file = os.path.join(workdir, f"{body_name}.json")
        with open(body_file, "wb") as f:
            f.write(body_bytes)
        mb = len(body_bytes) / 1e6
        log(f"REST body {body_name}: {len(body_bytes)} bytes")
        loc = locust_rate(base, body_file, seconds, gen_cpu, workdir)
        log(f"  locust FastHttpUser {loc:9.0f}/s")
        wrk = wrk_rate(base + PATH, body_file, seconds, gen_cpu, workdir)
        log(f"  wrk                 {wrk:9.0f}/s")
        rows.append(("Locust FastHttpUser", "closed, 32 users", body_name, loc, mb, loc, wrk))
        rows.append(("wrk 4.1", "closed, 32 conns", body_name, wrk, mb, loc, wrk))
        for transport in transports:
            rate, _ = ours_max_rate(base + PATH, f"file:{body_file}", max(loc * 0.5, 100.0), seconds,
                                    transport, workdir, log)
            rows.append((f"servesweep ({transport})", "open, valid", body_name, rate, mb, loc, wrk))
    return rows


def grpc_rows(port: int, bodies: list[str], seconds: int, calls: int, connections: int, workdir: str,
              log, server_pid: int | None = None) -> list[tuple]:
    """The closed-loop grpc.aio client, then ours, against the trivial gRPC server on ``port``:
    (name, mode, body, req/s, MB, generator CPUs, server CPUs, closed-loop req/s)."""
    url = f"grpc://127.0.0.1:{port}/{GRPC_MODEL}"
    rows = []
    for body_name in bodies:
        if body_name == "small":
            body_file = os.path.join(workdir, "small.pb")
            with open(body_file, "wb") as f:
                f.write(small_grpc_request())
            spec = f"file:{body_file}"
        else:
            spec = "tensor"  # DT_FLOAT tensor_content, [1,224,224,3]
        body = payload.load(spec, protocol="grpc", model=GRPC_MODEL).body  # exactly what ours sends
        mb = len(body) / 1e6
        log(f"gRPC body {body_name}: {len(body)} bytes")
        closed = closed_loop_grpc(f"127.0.0.1:{port}", body, calls=calls, channels=connections,
                                  seconds=float(seconds), server_pid=server_pid)
        log(f"  grpc.aio closed loop {closed.rate:9.0f}/s (CPUs {closed.cpus:.2f}, server CPUs "
            f"{closed.server_cpus:.2f}, errors {closed.errors or 0})")
        rows.append(("grpc.aio", f"closed, {calls} calls", body_name, closed.rate, mb, closed.cpus,
                     closed.server_cpus, closed.rate))
        rate, rec = ours_max_rate(url, spec, max(closed.rate * 0.5, 100.0), seconds, "grpc", workdir, log,
                                  connections, server_pid)
        rows.append(("servesweep (grpc)", "open, valid", body_name, rate, mb, _ours_cpus(rec),
                     (rec or {}).get("bench_server_cpus", float("nan")), closed.rate))
    return rows


@click.command()
@click.option("--seconds", type=int, default=8, show_default=True, help="Length of each run.")
@click.option("--bodies", default="small,tensor", show_default=True)
@click.option("--transports", default="fast,aiohttp", show_default=True,
              help="Our REST transports to measure.")
@click.option("--protocols", default="rest,grpc", show_default=True,
              help="rest: against nginx (with Locust and wrk); grpc: against a trivial gRPC server "
                   "(with a closed-loop grpc.aio client).")
@click.option("--grpc-calls", type=int, default=64, show_default=True,
              help="The closed-loop grpc.aio client's concurrent calls.")
@click.option("--connections", type=int, default=4, show_default=True,
              help="gRPC channels, ours and the closed-loop client's.")
@click.option("--grpc-server", type=click.Choice(["sync", "aio"]), default="sync", show_default=True,
              help="The trivial gRPC server: grpcio's synchronous server or grpc.aio's.")
@click.option("--gen-cpu", type=int, default=0, show_default=True)
@click.option("--server-cpu", type=int, default=1, show_default=True)
def main(seconds, bodies, transports, protocols, grpc_calls, connections, grpc_server, gen_cpu, server_cpu):
    """Measure generators against nginx and a trivial gRPC server on 127.0.0.1; print tables with ratios."""
    unknown = set(protocols.split(",")) - {"rest", "grpc"}
    if unknown:
        raise click.BadParameter(f"unknown {', '.join(sorted(unknown))}: use rest, grpc", param_hint="--protocols")
    os.sched_setaffinity(0, {gen_cpu})  # our generator (and the closed-loop gRPC client) runs in this process
    log = lambda msg: click.echo(msg, err=True)  # noqa: E731
    body_names = bodies.split(",")
    rows, grows = [], []
    with tempfile.TemporaryDirectory(prefix="bench-loadgen-") as workdir:
        if "rest" in protocols.split(","):
            nginx, port = start_nginx(workdir, server_cpu)
            try:
                rows = rest_rows(f"http://127.0.0.1:{port}", body_names, transports.split(","), seconds,
                                 gen_cpu, workdir, log)
            finally:
                nginx.terminate()
                nginx.wait(timeout=10)
        if "grpc" in protocols.split(","):
            server, port = start_grpc_server(server_cpu, grpc_server)
            try:
                grows = grpc_rows(port, body_names, seconds, grpc_calls, connections, workdir, log, server.pid)
            finally:
                server.terminate()
                server.wait(timeout=10)
    if rows:
        click.echo(f"\n{'generator':<24}{'mode':<18}{'body':<8}{'req/s':>10}{'MB/s':>10}"
                   f"{'vs Locust':>11}{'vs wrk':>9}")
        for name, mode, body_name, rate, mb, loc, wrk in rows:
            click.echo(f"{name:<24}{mode:<18}{body_name:<8}{rate:>10.0f}{rate * mb:>10.1f}"
                       f"{(rate / loc if loc else float('nan')):>10.2f}x"
                       f"{(rate / wrk if wrk else float('nan')):>8.2f}x")
    if grows:
        click.echo(f"\n{'gRPC generator':<24}{'mode':<18}{'body':<8}{'req/s':>10}{'MB/s':>10}{'gen CPUs':>10}"
                   f"{'srv CPUs':>10}{'req/s/CPU':>11}{'vs grpc.aio':>13}{'per CPU':>9}")
        per_cpu = {}
        for name, mode, body_name, rate, mb, cpus, server_cpus, closed in grows:
            per_cpu[name, body_name] = rate / cpus if cpus > 0 else float("nan")
            closed_per_cpu = per_cpu.get(("grpc.aio", body_name), float("nan"))
            click.echo(f"{name:<24}{mode:<18}{body_name:<8}{rate:>10.0f}{rate * mb:>10.1f}{cpus:>10.2f}"
                       f"{server_cpus:>10.2f}{per_cpu[name, body_name]:>11.0f}"
                       f"{(rate / closed if closed else float('nan')):>12.2f}x"
                       f"{per_cpu[name, body_name] / closed_per_cpu:>8.2f}x")
    click.echo(f"\none core each (generator cpu {gen_cpu}, server cpu {server_cpu}), "
               f"{seconds} s per run; gRPC: {connections} channels each, {grpc_server} server")


if __name__ == "__main__":
    main()
