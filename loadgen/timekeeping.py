"""Keeping time on a shared CPU: wake-ups at an exact instant, and a scheduling class
under which a wake-up is not queued behind other processes.

Measured on a 2-vCPU machine with two CPU-bound processes beside the generator (the
server under test, say), 300 req/s: send lag p99 was ~3 ms whatever the timing mode,
because the kernel let the woken generator wait for a running process's time slice.
Under SCHED_FIFO (priority 1) it fell to ~0.25 ms; under nice -10 to ~0.7 ms. The event
loop's own timer has 1 ms resolution, which the engine used to cover by spinning; a
timerfd armed at the absolute send time wakes it within microseconds without spinning,
so the CPU the server needs is not spent waiting.

``PreciseTimer`` (Linux timerfd: ``os.timerfd_*`` on Python 3.13+, libc through ctypes
before) and ``scheduling(mode)`` (a context manager for the calling thread) are the two
pieces; both say plainly when they are not available and the engine falls back.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import dataclasses
import os
import sys

PRIORITIES = ("auto", "normal")
_RESET_ON_FORK = getattr(os, "SCHED_RESET_ON_FORK", 0)  # auto: realtime if permitted, else nice, else normal
FIFO_PRIORITY = 1  # the lowest real-time priority: above every normal process, below the kernel's
NICE = -10  # the fallback when real-time scheduling is not permitted

_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = os.O_CLOEXEC
_TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


@dataclasses.dataclass(frozen=True)
class _TimerFd:
    """timerfd_create / timerfd_settime (absolute, one-shot) on CLOCK_MONOTONIC."""

    create: object
    arm: object

    @classmethod
    def load(cls) -> _TimerFd | None:
        if not sys.platform.startswith("linux"):
            return None
        if hasattr(os, "timerfd_create"):  # Python 3.13+
            return cls(create=lambda: os.timerfd_create(
                       os.CLOCK_MONOTONIC, flags=os.TFD_NONBLOCK | os.TFD_CLOEXEC),
                       arm=lambda fd, when: os.timerfd_settime(
                       fd, flags=os.TFD_TIMER_ABSTIME, initial=when))
        name = ctypes.util.find_library("c")
        if name is None:
            return None
        try:
            libc = ctypes.CDLL(name, use_errno=True)
            create, settime = libc.timerfd_create, libc.timerfd_settime
        except (OSError, AttributeError):
            return None
        create.argtypes, create.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec),
                            ctypes.c_void_p]
        settime.restype = ctypes.c_int

        def make() -> int:
            fd = create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
            if fd < 0:
                raise OSError(ctypes.get_errno(), "timerfd_create failed")
            return fd

        spec = _Itimerspec()

        def arm(fd: int, when: float) -> None:
            sec = int(when)
            spec.it_value.tv_sec, spec.it_value.tv_nsec = sec, max(1, int((when - sec) * 1e9))
            if settime(fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None) != 0:
                raise OSError(ctypes.get_errno(), "timerfd_settime failed")

        return cls(create=make, arm=arm)


class PreciseTimer:
    """Wake the event loop at an absolute ``time.monotonic()`` instant (µs accuracy).

    One timerfd, re-armed for each wait and watched by the loop, so a wait costs two
    syscalls and no spinning. ``PreciseTimer.open(loop)`` returns None where there is
    no timerfd (not Linux, no libc): the caller falls back to the loop's timer.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, api: _TimerFd) -> None:
        self._loop = loop
        self._fd = fd
        self._arm = api.arm
        self._waiter: asyncio.Future | None = None
        loop.add_reader(fd, self._fired)

    @classmethod
    def open(cls, loop: asyncio.AbstractEventLoop) -> PreciseTimer | None:
        api = _TimerFd.load()
        if api is None:
            return None
        try:
            fd = api.create()
        except OSError:
            return None
        return cls(loop, fd, api)

    def _fired(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._fd, 8)
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait_until(self, when: float) -> None:
        """Return at ``when`` (a ``time.monotonic()`` value) or just after it."""
        waiter = self._waiter = self._loop.create_future()
        self._arm(self._fd, when)
        await waiter

    def close(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.cancel()
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1


# -- scheduling class of the sending thread ---------------------------------------------

def _current() -> tuple[int, int, int]:
    """(policy, real-time priority, nice) of the calling thread."""
    policy = os.sched_getscheduler(0)
    return policy, os.sched_getparam(0).sched_priority, os.getpriority(os.PRIO_PROCESS, 0)


def _restore(state: tuple[int, int, int]) -> None:
    policy, priority, nice = state
    with contextlib.suppress(OSError):
        os.sched_setscheduler(0, policy, os.sched_param(priority))
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, nice)


class Scheduling:
    """The calling thread's scheduling class for a run: what was obtained (``text``, for
    run.json) and ``demote``, which gives it back early (a real-time thread that fell
    behind its schedule is CPU-bound, and must not starve the server under test)."""

    def __init__(self, text: str, before: tuple[int, int, int] | None = None) -> None:
        self.text = text
        self._before = before

    @property
    def raised(self) -> bool:
        """Whether the thread is above its previous class (so ``demote`` would change it)."""
        return self._before is not None

    def demote(self, reason: str) -> None:
        if self.raised:
            self.restore()
            self.text = f"{self.text}, then normal ({reason})"

    def restore(self) -> None:
        if self._before is not None:
            _restore(self._before)
            self._before = None


@contextlib.contextmanager
def scheduling(mode: str):
    """Run the block with the calling thread raised above normal processes; yield a
    ``Scheduling`` whose ``text`` says what was obtained: ``"realtime"``, ``"nice -10"``
    or ``"normal (why)"``.

    ``auto`` asks for SCHED_FIFO priority 1 (needs CAP_SYS_NICE or an RLIMIT_RTPRIO),
    then nice -10, and keeps whatever it got; a thread already real-time is left as it
    is. Only the calling thread changes (Linux applies both to a thread), with
    SCHED_RESET_ON_FORK so threads and processes started meanwhile (executors, resolvers)
    do not inherit it; the previous class is restored afterwards. A thread that spins
    must not run under SCHED_FIFO (it would starve its CPU's other processes), so the
    engine asks for ``auto`` only when it does not spin, and demotes itself when busy.
    """
    if mode not in PRIORITIES:
        raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}")
    if mode == "normal" or not hasattr(os, "sched_setscheduler"):
        yield Scheduling("normal (asked for)" if mode == "normal" else "normal (not supported here)")
        return
    before = _current()
    if before[0] & ~_RESET_ON_FORK in (os.SCHED_FIFO, os.SCHED_RR):
        yield Scheduling(f"realtime (already, priority {before[1]})")
        return
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO | _RESET_ON_FORK, os.sched_param(FIFO_PRIORITY))
        got = "realtime"
    except OSError as e:
        fifo_error = e.strerror or str(e)
        try:
            if before[2] > NICE:
                os.setpriority(os.PRIO_PROCESS, 0, NICE)
            got = f"nice {min(before[2], NICE)}"
        except OSError:
            got = f"normal (realtime and nice {NICE} not permitted: {fifo_error})"
    handle = Scheduling(got, before)
    try:
        yield handle
    finally:
        handle.restore()
