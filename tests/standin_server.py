"""A stand-in TF Serving deployment whose every latency is known exactly: the ground
truth for capacity tests.

Each listening port is one replica: a single FIFO server with a fixed service time that
uses no CPU (it sleeps). Request k, read at r_k, starts at s_k = max(r_k, f_(k-1)) and
finishes at f_k = s_k + S, in virtual time (a late wake-up of this process delays that
one response, never the queue behind it); its response is written when the clock
reaches f_k, through a timerfd (``loadgen.timekeeping.PreciseTimer``) where there is
one. So a client's latencies follow from the arrival times alone (``tests/standin.py``
simulates them), and ``truth_capacity`` says what a capacity search must find.

HTTP/1.1 keep-alive on a bare asyncio Protocol, not aiohttp, so the server's own cost
per request stays tiny; with ``--grpc`` each replica also answers TF Serving's gRPC
Predict (grpc.aio, the request not decoded) through the same FIFO. Run as a script; the
first line of stdout is the ports (with ``--grpc``, the second line the gRPC ports):

  --replicas C --service-ms S [--max-lifetime-s 120] [--grpc]

  POST /v1/models/<name>:predict   {"predictions": [[0.0]]} after the FIFO delay
  GET  /v1/models/<name>           TF Serving's model status, AVAILABLE, at once
  GET  /stats                      {"replicas": [{"read": [...], "finish": [...]}, ...]}:
                                   time.monotonic() of each predict's read and write
  POST or GET /reset               clears the stats
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import functools
import json
import os
import re
import socket
import subprocess
import sys
import time

import numpy as np

try:
    from loadgen import timekeeping
except ImportError:  # run by hand without the repo on sys.path: the loop's timer
    timekeeping = None

SCRIPT = os.path.abspath(__file__)
PREDICT = re.compile(rb"^/v1/models/[^/:?]+(/(versions|labels)/[^/:?]+)?:predict$")
STATUS = re.compile(rb"^/v1/models/[^/:?]+(/(versions|labels)/[^/:?]+)?$")
PREDICTION = b'{"predictions": [[0.0]]}'
MODEL_STATUS = json.dumps({"model_version_status": [{
    "version": "1", "state": "AVAILABLE",
    "status": {"error_code": "OK", "error_message": ""}}]}).encode()
MAX_HEAD = 64 * 1024
REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found"}


def response(status: int, body: bytes, close: bool = False) -> bytes:
    return b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s" % (
        status, REASONS[status], len(body), b"Connection: close\r\n" if close else b"", body)


class Replica:
    """One FIFO server: responses queued with their virtual finish times, written in order."""

    def __init__(self, service_s: float) -> None:
        self.service_s = service_s
        self.free_at = 0.0  # f_(k-1), virtual
        self.queue: collections.deque = collections.deque()  # (finish, read, conn, slot)
        self.read: list[float] = []
        self.finish: list[float] = []
        self._wake: asyncio.Future | None = None

    def submit(self, read: float, deliver) -> None:
        """Queue a request read at ``read``; ``deliver()`` answers it at its finish time."""
        self.free_at = max(read, self.free_at) + self.service_s
        self.queue.append((self.free_at, read, deliver))
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        timer = timekeeping.PreciseTimer.open(loop) if timekeeping else None
        try:
            while True:
                if not self.queue:
                    self._wake = loop.create_future()
                    await self._wake
                    continue
                finish = self.queue[0][0]
                now = time.monotonic()
                if now < finish:  # never early: loop until the clock has passed finish
                    await (timer.wait_until(finish) if timer else asyncio.sleep(finish - now))
                    continue
                while self.queue and self.queue[0][0] <= now:  # all that are due, in order
                    _, read, deliver = self.queue.popleft()
                    self.read.append(read)
                    self.finish.append(time.monotonic())
                    deliver()
        finally:
            if timer:
                timer.close()


class Connection(asyncio.Protocol):
    """Parses requests as they arrive and answers them in order (pipelining too)."""

    def __init__(self, server: Server, replica: Replica) -> None:
        self.server, self.replica = server, replica
        self.buffer = bytearray()
        self.pending: collections.deque = collections.deque()  # slots: [bytes | None, close]
        self.transport = None
        self.done = False  # no more requests will be read (close asked for, or garbage)

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.done = True

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while not self.done:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    self.answer(response(400, b"{}", True), True)
                return
            request = self.parse(bytes(self.buffer[:end]))
            if request is None:
                self.answer(response(400, b"{}", True), True)
                return
            method, path, length, close = request
            if len(self.buffer) < end + 4 + length:
                return  # the body is still coming
            del self.buffer[:end + 4 + length]
            self.route(method, path, close)

    @staticmethod
    def parse(head: bytes):
        """(method, path, content length, close) or None for a malformed head."""
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not parts[1].startswith(b"/") or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0"):
            return None
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                return None
            headers[name.strip().lower()] = value.strip().lower()
        if b"transfer-encoding" in headers:
            return None  # chunked bodies: not needed by any client here
        try:
            length = int(headers.get(b"content-length", b"0"))
        except ValueError:
            return None
        if length < 0:
            return None
        default = b"keep-alive" if parts[2] == b"HTTP/1.1" else b"close"
        close = headers.get(b"connection", default) == b"close"
        return parts[0], parts[1].split(b"?", 1)[0], length, close

    def route(self, method: bytes, path: bytes, close: bool) -> None:
        if method == b"POST" and PREDICT.match(path):
            slot = [None, close]
            self.pending.append(slot)
            self.done = close
            self.replica.submit(time.monotonic(), functools.partial(self.deliver, slot))
        elif method == b"GET" and path == b"/stats":
            self.answer(response(200, self.server.stats(), close), close)
        elif method in (b"GET", b"POST") and path == b"/reset":
            self.server.reset()
            self.answer(response(200, b"{}", close), close)
        elif method == b"GET" and STATUS.match(path):
            self.answer(response(200, MODEL_STATUS, close), close)
        else:
            self.answer(response(404, b'{"error": "not found"}', close), close)

    def deliver(self, slot: list) -> None:
        slot[0] = response(200, PREDICTION, slot[1])
        self.flush()

    def answer(self, data: bytes, close: bool) -> None:
        """Queue an immediate answer behind any predicts still pending on this connection."""
        self.pending.append([data, close])
        self.done = self.done or close
        self.flush()

    def flush(self) -> None:
        while self.pending and self.pending[0][0] is not None:
            data, close = self.pending.popleft()
            if self.transport.is_closing():
                continue
            self.transport.write(data)
            if close:
                self.transport.close()


class Server:
    def __init__(self, replicas: int, service_s: float) -> None:
        self.replicas = [Replica(service_s) for _ in range(replicas)]

    def stats(self) -> bytes:
        return json.dumps({"replicas": [{"read": r.read, "finish": r.finish}
                                        for r in self.replicas]}).encode()

    def reset(self) -> None:
        for r in self.replicas:
            r.read.clear()
            r.finish.clear()


async def grpc_replica(replica: Replica):
    """A gRPC server (127.0.0.1, any port) whose Predict goes through ``replica``'s FIFO, as
    its HTTP predicts do; returns (server, port). The request is not decoded."""
    from serving import tfs_messages_pb2 as pb
    from tests.loadgen_testserver import start_predict_server

    loop = asyncio.get_running_loop()
    reply = pb.PredictResponse().SerializeToString()

    async def predict(request: bytes, context) -> bytes:
        done = loop.create_future()
        replica.submit(time.monotonic(), functools.partial(done.set_result, reply))
        return await done

    return await start_predict_server(predict)


async def serve(args) -> None:
    loop = asyncio.get_running_loop()
    server = Server(args.replicas, args.service_ms / 1000.0)
    listeners, tasks, grpc_servers = [], [], []  # (server, port): held, or gRPC stops them when collected
    for replica in server.replicas:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        listeners.append(await loop.create_server(
            lambda r=replica: Connection(server, r), sock=sock, backlog=1024))
        tasks.append(loop.create_task(replica.run()))
        if args.grpc:
            grpc_servers.append(await grpc_replica(replica))
    print(" ".join(str(s.sockets[0].getsockname()[1]) for s in listeners), flush=True)
    if args.grpc:
        print(" ".join(str(port) for _, port in grpc_servers), flush=True)
    await asyncio.sleep(args.max_lifetime_s)  # never outlive a test run


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--service-ms", type=float, required=True)
    p.add_argument("--max-lifetime-s", type=float, default=120.0)
    p.add_argument("--grpc", action="store_true", help="each replica also serves Predict over gRPC "
                   "(second stdout line: the gRPC ports), through the same FIFO")
    args = p.parse_args(argv)
    if args.replicas < 1 or args.service_ms <= 0:
        p.error("need --replicas >= 1 and --service-ms > 0")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))


# -- for tests ----------------------------------------------------------------------------

@contextlib.contextmanager
def running_standin(replicas: int, service_ms: float, lifetime_s: float = 60.0, *, grpc: bool = False):
    """Start the stand-in in a child process; yield its replicas' base URLs (with ``grpc``:
    a pair, the REST base URLs and the ``grpc://127.0.0.1:PORT`` bases, replica by replica)."""
    from tests.loadgen_helpers import child_env

    proc = subprocess.Popen(
        [sys.executable, SCRIPT, "--replicas", str(replicas), "--service-ms", str(service_ms),
         "--max-lifetime-s", str(lifetime_s), *(["--grpc"] if grpc else [])],
        stdout=subprocess.PIPE, env=child_env(), text=True)
    try:
        lines = [proc.stdout.readline().split() for _ in range(2 if grpc else 1)]
        if any(len(ports) != replicas or not all(p.isdigit() for p in ports) for ports in lines):
            raise RuntimeError(f"stand-in server did not start (said {lines!r})")
        rest = [f"http://127.0.0.1:{p}" for p in lines[0]]
        yield (rest, [f"grpc://127.0.0.1:{p}" for p in lines[1]]) if grpc else rest
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()


def single_fifo_latencies(arrivals_s: np.ndarray, service_s: float) -> np.ndarray:
    """``fifo_latencies(arrivals_s, service_s, 1)``, vectorised: f_k = max(a_k, f_(k-1)) + S
    unrolls to f_k = (k+1) S + max over j <= k of (a_j - j S)."""
    a = np.asarray(arrivals_s, dtype=np.float64)
    k = np.arange(a.size, dtype=np.float64) * service_s
    return np.maximum.accumulate(a - k) + k + service_s - a


def truth_capacity(service_s: float, replicas: int, slo_s: float, p: float = 0.99, *,
                   seed: int = 0, requests: int = 4_000_000) -> float:
    """The SLO-bounded capacity: the highest Poisson rate (req/s) at which the p-quantile
    of latency over a long stationary run is <= slo_s (at least a fraction p of requests
    finish within slo_s), arrival i going to replica i % replicas (round-robin, as the
    load generator sends), each replica one FIFO server with a fixed service time.
    0.0 when even an idle replica misses the SLO.

    Bisection on the rate in (0, replicas / service_s). Every rate uses the same seeded
    ``requests`` unit-rate arrivals scaled in time, so each latency, and so the quantile,
    is monotone in the rate and the bisection is exact for that sample. The default 4
    million requests make the answer stable to ~0.1% (sd over seeds; two seeds agree
    well within 1%, as tests/standin_server_test.py checks) in about a second.
    """
    if replicas < 1 or service_s <= 0 or not 0 < p < 1 or requests < 100 * replicas:
        raise ValueError("need replicas >= 1, service_s > 0, 0 < p < 1, enough requests")
    if slo_s < service_s:
        return 0.0
    unit = np.cumsum(np.random.default_rng(seed).standard_exponential(requests))
    queues = [unit[j::replicas].copy() for j in range(replicas)]  # round-robin
    steps = [np.arange(q.size) * service_s for q in queues]
    allowed = (1.0 - p) * requests  # latencies over slo_s the quantile can tolerate

    def over_slo(rate: float) -> int:  # single_fifo_latencies, without its arange each time
        n = 0
        for q, k in zip(queues, steps, strict=True):
            a = q / rate
            n += np.count_nonzero(np.maximum.accumulate(a - k) + k + service_s - a > slo_s)
        return n

    lo, hi = 0.0, replicas / service_s
    while hi - lo > 1e-4 * hi:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if over_slo(mid) <= allowed else (lo, mid)
    return lo


if __name__ == "__main__":
    sys.exit(main())
