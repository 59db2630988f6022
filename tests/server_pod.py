"""One server pod of the API double: a stand-in replica (``tests/standin_server.py``: a FIFO
server with a fixed service time, its latencies known exactly) on a pod IP of its own, with
TF Serving's request counter on its metrics endpoint, so the sweep reads each replica's
share of a probe as it reads a real pod's.

Run as a script: ``--ip 127.A.B.C [--port 8501] --service-ms S [--max-lifetime-s 600]``;
the first line of stdout is ``ready`` once it listens (or the error, and exit code 1).

  GET /monitoring/prometheus/metrics   :tensorflow:serving:request_count{model_name, status="OK"}
                                       the predicts answered so far
  (and the stand-in's own routes: predict, model status, /stats, /reset)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import subprocess
import sys

from deploy.k8s_double import PodProcess
from serving.metrics import REQUEST_COUNT
from tests.loadgen_helpers import child_env
from tests.standin_server import Connection, Replica, Server, response

METRICS = b"/monitoring/prometheus/metrics"


class PodConnection(Connection):
    """The stand-in's connection, with the metrics route."""

    def route(self, method: bytes, path: bytes, close: bool) -> None:
        if method == b"GET" and path == METRICS:
            answered = len(self.replica.read)
            text = (f"# TYPE {REQUEST_COUNT} counter\n"
                    f'{REQUEST_COUNT}{{model_name="m",status="OK"}} {answered}\n').encode()
            self.answer(response(200, text, close), close)
        else:
            super().route(method, path, close)


async def serve(args) -> None:
    loop = asyncio.get_running_loop()
    server = Server(1, args.service_ms / 1000.0)
    replica: Replica = server.replicas[0]
    try:
        listener = await loop.create_server(lambda: PodConnection(server, replica), args.ip, args.port,
                                            backlog=1024, reuse_address=False)
    except OSError as e:
        print(f"cannot listen on {args.ip}:{args.port}: {e}", flush=True)
        sys.exit(1)
    task = loop.create_task(replica.run())
    print("ready", flush=True)
    async with listener:
        await asyncio.sleep(args.max_lifetime_s)  # never outlive a test run
    task.cancel()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ip", required=True)
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--service-ms", type=float, required=True)
    p.add_argument("--max-lifetime-s", type=float, default=600.0)
    args = p.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))


# -- for tests ----------------------------------------------------------------------------

def start(service_ms: float, port: int = 8501, lifetime_s: float = 600.0, attempts: int = 5) -> PodProcess:
    """A server pod process on a free pod IP in 127.0.0.0/8 (the double's ``start_server_pod``)."""
    for _ in range(attempts):
        ip = f"127.{random.randint(16, 250)}.{random.randint(0, 255)}.{random.randint(1, 254)}"
        proc = subprocess.Popen([sys.executable, "-m", "tests.server_pod", "--ip", ip, "--port", str(port),
                                 "--service-ms", str(service_ms), "--max-lifetime-s", str(lifetime_s)],
                                stdout=subprocess.PIPE, env=child_env(), text=True)
        line = proc.stdout.readline().strip()
        if line == "ready":
            def kill(p=proc) -> None:
                p.kill()
                p.wait(timeout=10)
                p.stdout.close()

            return PodProcess(None, lambda p=proc: p.poll() is None, kill, ip=ip)
        proc.wait(timeout=10)
        proc.stdout.close()
    raise RuntimeError(f"no server pod could listen (last said {line!r})")


if __name__ == "__main__":
    sys.exit(main())
