import asyncio
import os
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


def test_scheduling_restores_the_threads_class_and_says_what_it_got():
    before = (os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0))
    with timekeeping.scheduling("auto") as got:
        inside = (os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0))
        if got == "realtime":
            assert inside[0] == os.SCHED_FIFO
            assert os.sched_getparam(0).sched_priority == timekeeping.FIFO_PRIORITY
        elif got.startswith("nice"):
            assert inside == (before[0], int(got.split()[1]))
        else:  # neither permitted: nothing changed, and it says why
            assert got.startswith("normal (") and inside == before
    assert (os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0)) == before
    with timekeeping.scheduling("normal") as got:
        assert got == "normal (asked for)"
        assert (os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0)) == before
    with pytest.raises(ValueError, match="priority"), timekeeping.scheduling("rt"):
        pass


def test_scheduling_falls_back_to_nice_when_realtime_is_refused(monkeypatch):
    def refuse(pid, policy, param):
        if policy == os.SCHED_FIFO:
            raise PermissionError(1, "Operation not permitted")

    calls = []
    monkeypatch.setattr(timekeeping.os, "sched_setscheduler", refuse)
    monkeypatch.setattr(timekeeping.os, "setpriority", lambda *a: calls.append(a))
    monkeypatch.setattr(timekeeping.os, "getpriority", lambda *a: 0)
    with timekeeping.scheduling("auto") as got:
        assert got == f"nice {timekeeping.NICE}"
    assert calls == [(os.PRIO_PROCESS, 0, timekeeping.NICE), (os.PRIO_PROCESS, 0, 0)]

    def refuse_nice(*a):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(timekeeping.os, "setpriority", refuse_nice)
    with timekeeping.scheduling("auto") as got:
        assert got.startswith("normal (realtime and nice -10 not permitted")
