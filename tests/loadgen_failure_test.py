"""The generator survives a dying server, and its files survive a dying generator."""

import asyncio
import json
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from loadgen.run import RunOptions, run
from loadgen.schedule import Profile
from tests.loadgen_helpers import child_env, hlog_counts, read_series, running_server

PATH = "/v1/models/m:predict"


@pytest.mark.parametrize("transport", ["aiohttp", "fast"])
def test_server_killed_mid_run(tmp_path, transport):
    # the server dies as request 61 of 150 arrives (a count, not a timer: a timer started
    # beside run() raced the generator's own start-up on a loaded machine)
    with running_server("--delay-ms", "5", "--exit-after", "60") as (url, _):
        options = RunOptions(targets=(url + PATH,),
                             profile=Profile(kind="constant", rate=50.0, duration_s=3.0),
                             payload="b64", max_in_flight=64, timeout_s=5.0,
                             transport=transport)
        started = time.monotonic()
        result = run(options, str(tmp_path))
    assert time.monotonic() - started < 10.0
    rec = json.loads((tmp_path / "run.json").read_text())
    assert rec == result.record and rec["complete"] is True
    totals = rec["totals"]
    assert totals["scheduled"] == 150 and totals["sent"] == 150
    assert 55 <= totals["ok"] <= 60  # those in flight when it died fail
    assert totals["error_classes"]["connect"] >= 50
    assert totals["ok"] + totals["errors"] == 150
    rows = read_series(tmp_path / "series.csv")
    assert sum(int(r["ok"]) for r in rows) == totals["ok"]
    assert "connect:" in rows[-2]["error_classes"] or "connect:" in rows[-1]["error_classes"]
    assert sum(hlog_counts(str(tmp_path / "latency.hlog"))) == totals["ok"]


def _seconds_on_disk(out) -> int:
    """Whole seconds the generator has flushed to all of series.csv and both hlogs."""
    files = [out / "series.csv", out / "latency.hlog", out / "latency_uncorrected.hlog"]
    if not all(f.exists() for f in files):
        return 0
    rows = len(files[0].read_text().splitlines()) - 2  # the header, and a second being written
    return min(rows, len(hlog_counts(str(files[1]))), len(hlog_counts(str(files[2]))))


def test_generator_killed_with_sigkill_leaves_parseable_files(tmp_path):
    out = tmp_path / "out"
    with running_server("--delay-ms", "5") as (url, _):
        gen = subprocess.Popen(
            [sys.executable, "-m", "loadgen.cli", "--target", url + PATH, "--rate", "50",
             "--duration", "20s", "--payload", "b64", "--out", str(out), "--quiet"],
            env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 30
            while _seconds_on_disk(out) < 3:  # in every file: each is flushed on its own
                assert gen.poll() is None, gen.stderr.read()
                if time.monotonic() > deadline:
                    pytest.fail("the generator had not written 3 seconds of series.csv after 30 s")
                time.sleep(0.1)
        finally:
            gen.kill()  # SIGKILL: no chance to flush or close anything
            gen.wait(timeout=10)
            gen.stderr.close()
    rows = read_series(out / "series.csv")
    assert len(rows) >= 3
    counts = hlog_counts(str(out / "latency.hlog"))
    assert len(counts) >= 3 and sum(counts) >= 100
    assert len(hlog_counts(str(out / "latency_uncorrected.hlog"))) >= 3
    rec = json.loads((out / "run.json").read_text())
    assert rec["complete"] is False and rec["validity"]["valid"] is False


class _MisbehavingServer:
    """A 127.0.0.1 server on its own thread: request n gets BEHAVIOURS[n % len] (one
    request per connection, so a broken connection never takes a good answer with it)."""

    BEHAVIOURS = ("ok", "reset", "close mid-body", "garbage", "ok", "503", "stall", "ok")
    OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"

    def __init__(self):
        self.count = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self):
        async def handler(reader, writer):
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
            except (asyncio.IncompleteReadError, ConnectionError, IndexError):
                writer.close()
                return
            what = self.BEHAVIOURS[self.count % len(self.BEHAVIOURS)]
            self.count += 1
            if what == "reset":
                writer.get_extra_info("socket").setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return
            if what == "stall":
                await asyncio.sleep(2.0)  # beyond the run's timeout
            else:
                writer.write({"ok": self.OK,
                              "close mid-body": b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{",
                              "garbage": b"HTTP/9 what\r\n\r\n",
                              "503": b"HTTP/1.1 503 X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                              }[what])
            writer.close()

        async def serve():
            self.server = await asyncio.start_server(handler, "127.0.0.1", 0, backlog=512)
            self.port = self.server.sockets[0].getsockname()[1]
            self.ready.set()

        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(serve())
        self.loop.run_forever()
        self.loop.close()

    async def _shutdown(self):
        self.server.close()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in others:
            t.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def __enter__(self):
        self.thread.start()
        assert self.ready.wait(10)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc):
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.mark.parametrize("transport", ["fast", "aiohttp"])
def test_a_misbehaving_server_is_counted_by_class_and_the_run_completes(tmp_path, transport):
    server = _MisbehavingServer()
    with server as url:
        options = RunOptions(targets=(url + PATH,),
                             profile=Profile(kind="constant", rate=80.0, duration_s=2.0),
                             payload="b64", max_in_flight=64, timeout_s=0.5, transport=transport)
        result = run(options, str(tmp_path))
    rec = result.record
    assert rec["complete"] is True and rec["options"]["transport"] == transport
    t = rec["totals"]
    assert t["scheduled"] == t["sent"] == 160 and t["ok"] + t["errors"] == 160
    per_cycle = 160 // len(_MisbehavingServer.BEHAVIOURS)  # 20 of each behaviour
    classes = t["error_classes"]
    assert t["ok"] == 3 * per_cycle
    assert classes["connect"] == 2 * per_cycle  # reset, closed mid-body
    assert classes["protocol"] == per_cycle and classes["http_503"] == per_cycle
    assert classes["timeout"] == per_cycle
    assert sum(hlog_counts(str(tmp_path / "latency.hlog"))) == t["ok"]
