"""The open-loop engine: sends on schedule, never waits for a response to send the next.

One engine runs in one event loop (one worker). It takes the arrivals whose global
index ``i`` has ``i % workers == worker_index`` and sends arrival ``i`` to target
``i % n_targets`` (round-robin across the whole run). A request that would exceed
``max_in_flight`` is counted as ``dropped``. Once a second a ticker hands the
recorder's interval to ``sink``; the last interval comes after in-flight requests
finish (or, when stopped early, after a short grace). A run can also be *ended* early
(``end``: a caller's rule has what it needs, a probe decided): the schedule is cut
there and every request already sent is waited for, as at a normal end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable

import numpy as np

from loadgen import schedule, timekeeping
from loadgen.recorder import Interval, Recorder
from loadgen.schedule import Profile
from loadgen.transport import Transport

SEND_TIMINGS = ("auto", "precise", "spin", "sleep")
SPIN_S = 0.0015  # spin: sleep on the timer until this close to a send, then yield-spin
SPIN_BUDGET = 0.25  # auto without a precise timer: spin at most this share of each second
PRECISE_MIN_S = 0.00005  # precise: a gap shorter than this is yield-spun, not slept
# A real-time sender that has not slept on its timer for this long is CPU-bound (a high
# rate, or behind its schedule): real-time then only starves its CPU's other work (the
# kernel's network softirq threads among it: bench/loadgen measured 79k instead of 147k
# valid req/s), so it gives real-time up for the rest of the run.
DEMOTE_BUSY_S = 0.01
BURST = 32  # sends in a row without yielding while catching up
LATE_ABORT_S = 1.0  # stop sending when this far past the schedule's end
STOP_GRACE_S = 2.0  # how long a stopped run waits for in-flight requests
ABSORB_S = 0.1  # how often buffered latencies move into the histograms
SEND_KINDS = ("precise", "spin", "timer", "due")  # how a send was timed (scheduler_record)


@dataclasses.dataclass(frozen=True)
class EngineSettings:
    max_in_flight: int
    n_targets: int
    worker_index: int = 0
    workers: int = 1
    send_timing: str = "auto"  # see SEND_TIMINGS and docs/results-format.md ("scheduler")
    priority: str = "auto"  # the sending thread's scheduling class (timekeeping.PRIORITIES)


@dataclasses.dataclass(frozen=True)
class EngineStats:
    elapsed_s: float  # from the schedule origin to the last interval
    stopped_early: bool  # stopped (Ctrl-C): the run is incomplete
    ended_s: float | None  # ended by the caller's rule at this offset (None: ran its schedule)
    unsent: int  # arrivals never sent or dropped (the generator gave up on them)
    scheduler: dict  # how sends were timed: run.json's "scheduler" (see scheduler_record)


def scheduler_record(send_timing: str, *, timer: str, priority: str, sends: dict,
                     spin_s: float) -> dict:
    """run.json's "scheduler": the timing mode asked for, what timed the sends, the
    sending thread's scheduling class, and how each send was timed.

    ``sends``: ``precise`` woke on a timerfd at the send time (µs accuracy, no spinning);
    ``spin`` woke early and spun to the send time; ``timer``: sent when the event loop's
    timer fired (~1 ms resolution); ``due``: already due when the dispatcher reached it
    (bursts, or catching up). ``spin_s``: wall time spent spinning.
    """
    return {"send_timing": send_timing, "timer": timer, "priority": priority,
            "spin_window_ms": SPIN_S * 1000,
            "spin_budget": SPIN_BUDGET if send_timing == "auto" and timer != "timerfd" else None,
            "sends": {k: int(sends.get(k, 0)) for k in SEND_KINDS}, "spin_s": round(spin_s, 3)}


def merge_scheduler(records: list[dict]) -> dict:
    """Several workers' scheduler records as one (counts and spin time summed; the
    timer and priority of the first, with the others' when they differ)."""
    first = records[0]

    def joined(key: str) -> str:
        return " / ".join(dict.fromkeys(r[key] for r in records))

    return scheduler_record(first["send_timing"], timer=joined("timer"),
                            priority=joined("priority"),
                            sends={k: sum(r["sends"][k] for r in records) for k in SEND_KINDS},
                            spin_s=sum(r["spin_s"] for r in records))


def _busy(at_s: float) -> str:
    return f"sent without sleeping for {DEMOTE_BUSY_S * 1e3:g} ms at {at_s:.1f} s: CPU-bound"


class Engine:
    def __init__(self, profile: Profile, transport: Transport, settings: EngineSettings,
                 sink: Callable[[Interval], None], *, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        if settings.max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        if settings.send_timing not in SEND_TIMINGS:
            raise ValueError(f"send_timing must be one of {', '.join(SEND_TIMINGS)}")
        if settings.priority not in timekeeping.PRIORITIES:
            raise ValueError(f"priority must be one of {', '.join(timekeeping.PRIORITIES)}")
        self.profile = profile
        self.transport = transport
        self.settings = settings
        self.sink = sink
        self.clock = clock
        self.recorder = Recorder()
        self.in_flight = 0
        self._tasks: set[asyncio.Task] = set()
        self._next_t = 1
        self._dispatched = 0  # arrivals past the timing step: sent or dropped
        self._sends: dict = {}  # SEND_KINDS -> count, and "spin_s"
        self._timer_kind = "event loop"
        self._priority = "normal"
        self._opened = False
        # the schedule's arrivals per second, counted up front (exact whatever happens)
        for offsets, _ in self._mine():
            self.recorder.add_scheduled(offsets)
        self.scheduled_total = self.recorder.pending_scheduled()

    async def open(self) -> None:
        """Open the transport (its pool's first connections) before choosing ``t0``; ``run``
        does it if not done yet."""
        if not self._opened:
            self._opened = True
            await self.transport.open()

    async def run(self, t0: float, stop: asyncio.Event | None = None,
                  end: asyncio.Event | None = None) -> EngineStats:
        """Run the schedule with origin ``t0`` (a ``clock()`` value) until done, ``stop``
        (incomplete: in-flight requests get STOP_GRACE_S) or ``end`` (the schedule is cut
        there, complete: in-flight requests are waited for, up to the transport's timeout).

        With ``precise`` timing (``auto`` where a timerfd exists) the calling thread runs
        the dispatch raised to real-time priority (``settings.priority``), restored after.
        """
        stop = stop or asyncio.Event()
        end = end or asyncio.Event()
        halt = asyncio.Event()  # stop or end: no more sends
        ended_s: float | None = None
        loop = asyncio.get_running_loop()
        timer = None
        # the timerfd counts on CLOCK_MONOTONIC, which is time.monotonic(); a test's clock is not
        if self.settings.send_timing in ("auto", "precise") and self.clock is time.monotonic:
            timer = timekeeping.PreciseTimer.open(loop)
        if timer is None and self.settings.send_timing == "precise":
            raise RuntimeError("precise send timing needs Linux's timerfd (and the monotonic "
                               "clock), not available here: use --send-timing auto, spin or sleep")
        self._timer_kind = "timerfd" if timer is not None else "event loop"
        # a thread that spins must not be real-time: it would starve its CPU's other processes
        priority, note = self.settings.priority, None
        if timer is None and priority != "normal":
            priority, note = "normal", "normal (the send timing spins, so never real-time)"
        ticker = stopper = ender = dispatcher = None
        try:
            await self.open()
            ticker = loop.create_task(self._tick(t0))
            stopper = loop.create_task(stop.wait())
            ender = loop.create_task(end.wait())
            for task in (stopper, ender):
                task.add_done_callback(lambda t: halt.set())
            with timekeeping.scheduling(priority) as sched:
                dispatcher = loop.create_task(self._dispatch(t0, halt, timer, sched))
                try:
                    await asyncio.wait({dispatcher, stopper, ender},
                                       return_when=asyncio.FIRST_COMPLETED)
                finally:  # also when run() itself is cancelled
                    if not dispatcher.done():
                        dispatcher.cancel()
                    await asyncio.gather(dispatcher, return_exceptions=True)
                    self._priority = note or sched.text
            if halt.is_set():
                cut = self.clock() - t0
                if cut < self.profile.duration_s:
                    self._forget_scheduled_after(cut)
                    if not stop.is_set():
                        ended_s = cut
            await self._drain(stop)
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            if timer is not None:
                timer.close()
            helpers = [t for t in (ticker, stopper, ender) if t is not None]
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await self.transport.close()  # callbacks still pending end as "cancelled"
        elapsed = self.clock() - t0
        self.sink(self.recorder.take_interval(self._next_t, in_flight=self.in_flight))
        sends = dict(self._sends)
        spin_s = sends.pop("spin_s", 0.0)
        sends["due"] = self._dispatched - sum(sends.values())
        return EngineStats(elapsed_s=elapsed, stopped_early=stop.is_set(), ended_s=ended_s,
                           unsent=self.scheduled_total - self._dispatched,
                           scheduler=scheduler_record(
                               self.settings.send_timing, timer=self._timer_kind,
                               priority=self._priority, sends=sends, spin_s=spin_s))

    async def _drain(self, stop: asyncio.Event) -> None:
        """Wait for in-flight requests (bounded by the transport's timeout); once
        stopped, wait at most STOP_GRACE_S."""
        deadline = None
        while self.in_flight > 0:
            if stop.is_set():
                if deadline is None:
                    deadline = self.clock() + STOP_GRACE_S
                elif self.clock() >= deadline:
                    return
            await asyncio.sleep(0.005)

    # -- per-second ticker ---------------------------------------------------------
    async def _tick(self, t0: float) -> None:
        """Hand over each second when it ends; absorb buffers every ABSORB_S meanwhile."""
        while True:
            now = self.clock()
            boundary = t0 + self._next_t
            if now >= boundary:
                self.sink(self.recorder.take_interval(self._next_t, in_flight=self.in_flight))
                self._next_t += 1
                continue
            await asyncio.sleep(min(ABSORB_S, boundary - now))
            if self.clock() < t0 + self._next_t:
                self.recorder.absorb()

    # -- dispatch ------------------------------------------------------------------
    def _mine(self):
        """Yield (offsets, targets) of this worker's arrivals, chunk by chunk."""
        s = self.settings
        base = 0
        for chunk in schedule.arrival_times(self.profile):
            idx = np.arange(base, base + chunk.size, dtype=np.int64)
            base += chunk.size
            if s.workers > 1:
                keep = idx % s.workers == s.worker_index
                chunk, idx = chunk[keep], idx[keep]
            if chunk.size:
                yield chunk, idx % s.n_targets

    async def _dispatch(self, t0: float, stop: asyncio.Event,
                        timer: timekeeping.PreciseTimer | None,
                        sched: timekeeping.Scheduling) -> None:
        clock, rec = self.clock, self.recorder
        max_in_flight = self.settings.max_in_flight
        loop = asyncio.get_running_loop()
        sleep = asyncio.sleep
        give_up = t0 + self.profile.duration_s + LATE_ABORT_S
        start = getattr(self.transport, "start", None)  # callback fast path, if offered
        on_send, done_callback = rec.on_send, self._done_callback
        timing = self.settings.send_timing
        budget = SPIN_BUDGET if timing == "auto" else (0.0 if timing == "sleep" else float("inf"))
        window_end, window_spin = t0, 0.0  # auto: spin time within the current second
        burst = dispatched = spun = timed = precise = 0
        spin_s = 0.0
        slept = clock()  # when the sender last slept on its timer
        demotable = sched.raised  # checked per send; the message is built once, if ever
        try:
            for offsets, targets in self._mine():
                for offset, target in zip(offsets.tolist(), targets.tolist(), strict=True):
                    intended = t0 + offset
                    now = clock()
                    if intended > now:
                        burst = 0
                        if timer is not None:
                            if intended - now > PRECISE_MIN_S:
                                await timer.wait_until(intended)
                                now = slept = clock()
                            elif demotable and now - slept > DEMOTE_BUSY_S:
                                sched.demote(_busy(now - t0))
                                demotable = False
                            while now < intended:  # a few µs at most: a send never leaves early
                                await sleep(0)
                                now = clock()
                            if stop.is_set():
                                return
                            precise += 1
                        else:
                            if now >= window_end:
                                window_end, window_spin = now + 1.0, 0.0
                            spin = window_spin < budget
                            lead = SPIN_S if spin else 0.0
                            if intended - now > lead:
                                await sleep(intended - now - lead)
                            now = spin_from = clock()
                            # spin; with the timer alone this only covers its rounding to
                            # 1 ms (a send never leaves early)
                            while now < intended:
                                await sleep(0)
                                now = clock()
                            if stop.is_set():
                                return
                            if spin:
                                window_spin += now - spin_from
                                spin_s += now - spin_from
                                spun += 1
                            else:
                                timed += 1
                    elif now > give_up:
                        return
                    else:
                        if demotable and now - slept > DEMOTE_BUSY_S:
                            sched.demote(_busy(now - t0))
                            demotable = False
                        burst += 1
                        if burst >= BURST:
                            burst = 0
                            await sleep(0)
                            if stop.is_set():
                                return
                            now = clock()
                    dispatched += 1
                    if self.in_flight >= max_in_flight:
                        rec.on_error("dropped")
                        continue
                    self.in_flight += 1
                    if start is not None:
                        on_send(intended, now)
                        start(target, done_callback(intended, now))
                        continue
                    task = loop.create_task(self._one(intended, target))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        finally:  # also when cancelled: run() reports these
            self._dispatched = dispatched
            self._sends = {"precise": precise, "spin": spun, "timer": timed, "spin_s": spin_s}

    def _forget_scheduled_after(self, offset: float) -> None:
        """A stopped run: only arrivals before the stop count as scheduled."""
        second = int(offset)
        pending = self.recorder.scheduled
        for s in [s for s in pending if s >= second]:
            del pending[s]
        partial = 0
        for offsets, _ in self._mine():
            if offsets[0] >= offset:
                break
            partial += int(((offsets >= second) & (offsets < offset)).sum())
        if partial:
            pending[second] = partial

    def _done_callback(self, intended: float, actual: float) -> Callable[[str | None], None]:
        rec, clock = self.recorder, self.clock

        def done(outcome: str | None) -> None:
            self.in_flight -= 1
            if outcome is None:
                rec.on_ok(intended, actual, clock())
            elif outcome != "cancelled":
                rec.on_error(outcome)

        return done

    async def _one(self, intended: float, target: int) -> None:
        rec = self.recorder
        actual = self.clock()
        rec.on_send(intended, actual)
        try:
            outcome = await self.transport.send(target)
        except asyncio.CancelledError:
            self.in_flight -= 1
            raise
        except Exception:  # a transport bug must not kill the run: count it
            outcome = "protocol"
        done = self.clock()
        self.in_flight -= 1
        if outcome is None:
            rec.on_ok(intended, actual, done)
        else:
            rec.on_error(outcome)
