import asyncio
import os
import threading
import time

import pytest

from loadgen import timekeeping


def test_precise_timer_never_wakes_before_the_instant_asked_for():
    async def main():
        timer = timekeeping.PreciseTimer.open(asyncio.get_running_loop())
        assert timer is not None  # Linux: a timerfd exists
        try:
            early = []
            start = time.monotonic()
            for k in range(1, 51):
                when = start + k * 0.0013  # between the loop timer's 1 ms steps
                await timer.wait_until(when)
                early.append(time.monotonic() - when)
            await timer.wait_until(time.monotonic() - 1.0)  # in the past: returns at once
            return early
        finally:
            timer.close()

    early = asyncio.run(main())
    assert len(early) == 50 and min(early) >= 0.0


RESET = getattr(os, "SCHED_RESET_ON_FORK", 0)


def _class() -> tuple[int, int]:
    return os.sched_getscheduler(0) & ~RESET, os.getpriority(os.PRIO_PROCESS, 0)


def test_scheduling_restores_the_threads_class_and_says_what_it_got():
    before = _class()
    with timekeeping.scheduling("auto") as sched:
        inside = _class()
        if sched.text == "realtime":
            assert inside[0] == os.SCHED_FIFO
            assert os.sched_getparam(0).sched_priority == timekeeping.FIFO_PRIORITY
            # a thread started meanwhile (an executor's, a resolver's) does not inherit it
            seen = []
            worker = threading.Thread(target=lambda: seen.append(_class()))
            worker.start()
            worker.join()
            assert seen[0][0] == os.SCHED_OTHER
        elif sched.text.startswith("nice"):
            assert inside == (before[0], int(sched.text.split()[1]))
        else:  # neither permitted: nothing changed, and it says why
            assert sched.text.startswith("normal (") and inside == before
    assert _class() == before
    with timekeeping.scheduling("normal") as sched:
        assert sched.text == "normal (asked for)" and _class() == before
    with pytest.raises(ValueError, match="priority"), timekeeping.scheduling("rt"):
        pass


def test_demote_gives_the_class_back_early_and_says_so():
    before = _class()
    with timekeeping.scheduling("auto") as sched:
        got = sched.text
        sched.demote("fell 10 ms behind its schedule at 3.0 s")
        assert _class() == before
        sched.demote("again")  # once is enough
    assert sched.text == f"{got}, then normal (fell 10 ms behind its schedule at 3.0 s)"
    assert _class() == before


def test_scheduling_falls_back_to_nice_when_realtime_is_refused(monkeypatch):
    def refuse(pid, policy, param):
        if policy & ~RESET == os.SCHED_FIFO:
            raise PermissionError(1, "Operation not permitted")

    calls = []
    monkeypatch.setattr(timekeeping.os, "sched_getscheduler", lambda pid: os.SCHED_OTHER)
    monkeypatch.setattr(timekeeping.os, "sched_setscheduler", refuse)
    monkeypatch.setattr(timekeeping.os, "setpriority", lambda *a: calls.append(a))
    monkeypatch.setattr(timekeeping.os, "getpriority", lambda *a: 0)
    with timekeeping.scheduling("auto") as sched:
        assert sched.text == f"nice {timekeeping.NICE}"
    assert calls == [(os.PRIO_PROCESS, 0, timekeeping.NICE), (os.PRIO_PROCESS, 0, 0)]

    def refuse_nice(*a):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(timekeeping.os, "setpriority", refuse_nice)
    with timekeeping.scheduling("auto") as sched:
        assert sched.text.startswith("normal (realtime and nice -10 not permitted")


def test_a_thread_already_real_time_is_left_as_it_is(monkeypatch):
    monkeypatch.setattr(timekeeping.os, "sched_getscheduler", lambda pid: os.SCHED_FIFO)
    monkeypatch.setattr(timekeeping.os, "sched_setscheduler", lambda *a: pytest.fail("changed"))
    with timekeeping.scheduling("auto") as sched:
        assert sched.text.startswith("realtime (already")


def test_closing_the_timer_cancels_a_pending_wait():
    async def main():
        timer = timekeeping.PreciseTimer.open(asyncio.get_running_loop())
        waiting = asyncio.get_running_loop().create_task(timer.wait_until(time.monotonic() + 60))
        await asyncio.sleep(0)
        timer.close()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(main())
