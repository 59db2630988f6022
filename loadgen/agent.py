"""`loadgen agent`: a generator that runs shares of runs on command, over a small HTTP API.

An agent is one of the generators of a run (``loadgen.share``): it runs its share in a
worker process exactly as a ``--workers`` worker does (``loadgen.workers``: same engine,
same every-n-th split), and keeps what the worker measured second by second, encoded
(HdrHistograms merge exactly, so the controller's merge loses nothing). Results stay
small: a second is a few kB.

The API (JSON; one run at a time; ``loadgen.remote`` is its client):

  GET  /ready                   {"ready": true, "wall": epoch s, "run": id or null}
  GET  /resolve?target=URL...   {"targets": [...]}: the targets a share naming them is sent to
  POST /runs/ID      a share    answers once the worker has connected (it is then ready), with
                                the targets it sends to (``loadgen.resolve``: a headless
                                Service's name becomes one target per replica)
  POST /runs/ID/go   {"start_at": epoch s of this agent's clock}   the schedule's origin
  GET  /runs/ID?since=K         {"intervals": [seconds after K], "done": record|null, "failed": why|null}
  POST /runs/ID/end             cut the schedule now (the controller's verdict is in)
  POST /runs/ID/stop            stop now (the controller was interrupted)
  DELETE /runs/ID               forget it (stopping it first)

The agent exits by itself after ``max_idle_s`` without a controller's call (``/runs/``;
a kubelet's readiness probe does not count), so an agent whose controller went away does
not hold its node; on SIGTERM (its pod deleted) it stops its worker and exits. A share
that is ready but not started within ``GO_TIMEOUT_S`` is halted, and a worker whose agent
died stops by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import multiprocessing as mp
import queue as queue_mod
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from formats.agent import READY_PATH, RESOLVE_PATH
from loadgen import resolve, workers
from loadgen.options import choose_transport
from loadgen.share import Share, ShareError

READY_TIMEOUT_S = workers.READY_TIMEOUT_S
GO_TIMEOUT_S = 60.0  # a share ready but not started by then is halted


@dataclasses.dataclass
class _Run:
    """One share being run: its worker process and what the worker has sent so far."""

    id: str
    process: Any
    go: Any
    t0: Any  # the worker's schedule origin (time.monotonic of this host)
    stop: Any
    end: Any
    intervals: list[dict] = dataclasses.field(default_factory=list)
    done: dict | None = None
    failed: str | None = None
    ready: threading.Event = dataclasses.field(default_factory=threading.Event)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def drain(self, q) -> None:
        """The worker's messages, until it is done, failed or died (a thread)."""
        while True:
            try:
                kind, _, data = q.get(timeout=0.2)
            except queue_mod.Empty:
                if not self.process.is_alive() and q.empty():
                    with self.lock:
                        if self.done is None and self.failed is None:
                            self.failed = f"the worker died (exit code {self.process.exitcode})"
                    self.ready.set()
                    return
                continue
            with self.lock:
                if kind == "ready":
                    self.ready.set()
                elif kind == "interval":
                    self.intervals.append(data)
                elif kind == "done":
                    self.done = data
                elif kind == "failed":
                    self.failed = data
            if kind in ("done", "failed"):
                self.ready.set()
                return

    def view(self, since: int) -> dict[str, Any]:
        with self.lock:
            return {"intervals": [iv for iv in self.intervals if iv["t_s"] > since],
                    "done": self.done, "failed": self.failed}

    def halt(self) -> None:
        self.stop.set()
        self.go.set()
        self.process.join(timeout=5.0)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


class Agent:
    """The agent's state and its HTTP handlers (``app()``)."""

    def __init__(self, hosts_file: Path | None = None) -> None:
        self.hosts_file = hosts_file  # read before DNS, as /etc/hosts (the API double's cluster DNS)
        self.ctx = mp.get_context("spawn")
        self.run: _Run | None = None
        self.starting = asyncio.Lock()  # one POST /runs/ID at a time
        self.last_request = time.monotonic()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self._touch])
        app.router.add_get(READY_PATH, self.ready)
        app.router.add_get(RESOLVE_PATH, self.resolved)
        app.router.add_post("/runs/{id}", self.start)
        app.router.add_post("/runs/{id}/go", self.go)
        app.router.add_get("/runs/{id}", self.poll)
        app.router.add_post("/runs/{id}/end", self.end)
        app.router.add_post("/runs/{id}/stop", self.stop)
        app.router.add_delete("/runs/{id}", self.forget)
        return app

    @web.middleware
    async def _touch(self, request: web.Request, handler):
        if request.path != READY_PATH:  # a controller's call; a kubelet's /ready is not one
            self.last_request = time.monotonic()
        return await handler(request)

    def idle_for(self) -> float:
        return time.monotonic() - self.last_request

    async def ready(self, request: web.Request) -> web.Response:
        return web.json_response({"ready": True, "wall": time.time(), "run": self.run.id if self.run else None})

    async def _expand(self, targets: tuple[str, ...]) -> tuple[str, ...]:
        """``targets`` as this agent sends to them (``loadgen.resolve``), resolved off the loop."""
        try:
            return await asyncio.get_running_loop().run_in_executor(
                None, resolve.expand, targets, lambda host: resolve.lookup(host, self.hosts_file))
        except resolve.ResolveError as e:
            raise web.HTTPServiceUnavailable(text=str(e)) from None

    async def resolved(self, request: web.Request) -> web.Response:
        targets = tuple(request.query.getall("target", ()))
        return web.json_response({"targets": list(await self._expand(targets))})

    def _mine(self, request: web.Request) -> _Run:
        if self.run is None or self.run.id != request.match_info["id"]:
            raise web.HTTPNotFound(text=f"no run {request.match_info['id']!r} here")
        return self.run

    async def start(self, request: web.Request) -> web.Response:
        try:
            share = Share.from_wire(await request.json())
        except (ShareError, ValueError) as e:
            raise web.HTTPBadRequest(text=str(e)) from None
        targets = await self._expand(share.options.targets)
        share = dataclasses.replace(share, options=dataclasses.replace(share.options, targets=targets))
        async with self.starting:
            if self.run is not None and self.run.done is None and self.run.failed is None:
                raise web.HTTPConflict(text=f"run {self.run.id!r} is still running here")
            if self.run is not None:
                await asyncio.get_running_loop().run_in_executor(None, self.run.halt)
            return await self._start(request.match_info["id"], share)

    async def _start(self, run_id: str, share: Share) -> web.Response:
        loop = asyncio.get_running_loop()
        choice = choose_transport(share.options)
        q = self.ctx.Queue()
        go, stop, end = self.ctx.Event(), self.ctx.Event(), self.ctx.Event()
        t0 = self.ctx.Value("d", 0.0)
        process = self.ctx.Process(target=workers.worker_main, name=f"loadgen-agent-share-{share.index}",
                                   daemon=True, args=(share.options, choice, share.payload, share.index,
                                                      q, go, t0, stop, end))
        process.start()
        run = _Run(run_id, process, go, t0, stop, end)
        self.run = run
        threading.Thread(target=run.drain, args=(q,), daemon=True).start()
        ready = await loop.run_in_executor(None, run.ready.wait, READY_TIMEOUT_S)
        if not ready or run.failed:
            why = run.failed or f"the worker was not ready within {READY_TIMEOUT_S:g} s"
            await loop.run_in_executor(None, run.halt)
            raise web.HTTPInternalServerError(text=why)

        def expire() -> None:  # a controller that never gives the start: do not hold the target
            if not run.go.is_set():
                run.failed = run.failed or f"no start within {GO_TIMEOUT_S:g} s of being ready"
                loop.run_in_executor(None, run.halt)

        loop.call_later(GO_TIMEOUT_S, expire)
        return web.json_response({"ready": True, "index": share.index, "count": share.count,
                                  "transport": choice.kind, "targets": list(share.options.targets)})

    async def go(self, request: web.Request) -> web.Response:
        run = self._mine(request)
        if run.failed:
            raise web.HTTPConflict(text=run.failed)
        try:
            start_at = float((await request.json())["start_at"])
        except (KeyError, TypeError, ValueError) as e:
            raise web.HTTPBadRequest(text=f"go needs {{\"start_at\": epoch seconds}}: {e}") from None
        # the origin in this host's monotonic clock, from the agent's wall clock
        run.t0.value = time.monotonic() + (start_at - time.time())
        run.go.set()
        return web.json_response({"lead_s": start_at - time.time()})

    async def poll(self, request: web.Request) -> web.Response:
        run = self._mine(request)
        return web.json_response(run.view(int(request.query.get("since", "0"))))

    async def end(self, request: web.Request) -> web.Response:
        self._mine(request).end.set()
        return web.json_response({"ended": True})

    async def stop(self, request: web.Request) -> web.Response:
        self._mine(request).stop.set()
        return web.json_response({"stopped": True})

    async def forget(self, request: web.Request) -> web.Response:
        run = self._mine(request)
        await asyncio.get_running_loop().run_in_executor(None, run.halt)
        self.run = None
        return web.json_response({"forgotten": True})

    def close(self) -> None:
        if self.run is not None:
            self.run.halt()


async def serve(host: str, port: int, *, max_idle_s: float, on_listening=None,
                hosts_file: Path | None = None) -> None:
    """Serves on ``host:port`` (0: any free port, told to ``on_listening(port)``) until
    idle for ``max_idle_s``, or cancelled. ``hosts_file``: names resolved from it first."""
    agent = Agent(hosts_file)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    runner = web.AppRunner(agent.app(), access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    if on_listening is not None:
        on_listening(sock.getsockname()[1])
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):  # a pod being deleted gets SIGTERM
        loop.add_signal_handler(sig, stopping.set)
    try:
        while agent.idle_for() < max_idle_s and not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=min(1.0, max_idle_s))
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await asyncio.get_running_loop().run_in_executor(None, agent.close)
        await runner.cleanup()
