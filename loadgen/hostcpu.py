"""Who used the machine's CPUs during a measurement: us, other processes, the hypervisor.

A generator that falls behind its schedule should say why. Linux's /proc/stat counts
every CPU's busy time (and ``steal``: time a virtual machine's CPUs were runnable but
the hypervisor ran someone else); /proc/PID/stat counts a process's own. Sampled
before and after, their differences say how many CPUs each party used on average.
Elsewhere than Linux ``snapshot`` returns None and nothing is claimed.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import time
from collections.abc import Iterable

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclasses.dataclass(frozen=True)
class Snapshot:
    wall_s: float
    busy_s: float  # all CPUs: user, nice, system, irq, softirq (not idle, iowait or steal)
    steal_s: float
    ours_s: float  # this process (every thread) and the given pids
    throttled_s: float = 0.0  # this process's cgroup held back by its CPU quota (cpu.stat)


@dataclasses.dataclass(frozen=True)
class Usage:
    """Average CPUs used over an interval (1.0 = one CPU busy the whole time)."""

    cpus: int
    wall_s: float
    ours: float
    others: float
    steal: float
    throttled_s: float = 0.0  # seconds our cgroup's CPU quota held us back (container limits)

    def record(self) -> dict:
        """run.json's "host_cpu"."""
        return {"cpus": self.cpus, "wall_s": round(self.wall_s, 3), "ours": round(self.ours, 3),
                "others": round(self.others, 3), "steal": round(self.steal, 3),
                "throttled_s": round(self.throttled_s, 3)}

    def describe(self) -> str:
        quota = (f"; the cgroup's CPU quota held this measurement back {self.throttled_s:.2f} s"
                 if self.throttled_s else "")
        return (f"of {self.cpus} CPUs, this measurement used {self.ours:.2f}, other processes "
                f"{self.others:.2f} and the hypervisor took {self.steal:.2f} (steal){quota}")


def _machine() -> tuple[float, float]:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq) / TICK, steal / TICK


def process_cpu_s(pid: int | str) -> float:
    """utime + stime of a process (every thread), 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def self_cpu_s() -> float:
    """This process's CPU time (every thread), from getrusage (a worker reports it)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def throttled_s(proc_cgroup: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> float:
    """How long this process's cgroup has been held back by a CPU quota (cgroup v2
    ``throttled_usec``, v1 ``throttled_time``), 0 where there is no quota or no cgroup."""
    try:
        with open(proc_cgroup) as f:
            lines = f.read().splitlines()
    except OSError:
        return 0.0
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2: one hierarchy
            places, key, scale = [f"{root}{path}"], "throttled_usec", 1e-6
        elif "cpu" in controllers.split(","):  # v1: the cpu controller's own mount
            places = [f"{root}/{m}{path}" for m in (controllers, "cpu", "cpu,cpuacct")]
            key, scale = "throttled_time", 1e-9
        else:
            continue
        for place in places:
            try:
                with open(f"{place}/cpu.stat") as f:
                    for stat in f:
                        name, _, value = stat.partition(" ")
                        if name == key:
                            return int(value) * scale
            except (OSError, ValueError):
                continue
    return 0.0


def snapshot(pids: Iterable[int] = ()) -> Snapshot | None:
    """The counters now; ``pids``: other processes that count as ours (a server we started)."""
    try:
        busy, steal = _machine()
    except (OSError, ValueError, IndexError):
        return None
    ours = process_cpu_s("self") + sum(process_cpu_s(p) for p in pids)
    return Snapshot(time.monotonic(), busy, steal, ours, throttled_s())


def usage(before: Snapshot | None, after: Snapshot | None, *, extra_ours_s: float = 0.0
          ) -> Usage | None:
    """Average CPUs per party between two snapshots. ``extra_ours_s``: CPU seconds of our
    processes the snapshots did not see (worker processes that have exited)."""
    if before is None or after is None or after.wall_s <= before.wall_s:
        return None
    wall = after.wall_s - before.wall_s
    ours = (after.ours_s - before.ours_s + extra_ours_s) / wall
    busy = (after.busy_s - before.busy_s) / wall
    return Usage(cpus=os.cpu_count() or 1, wall_s=wall, ours=max(0.0, ours),
                 others=max(0.0, busy - ours), steal=max(0.0, (after.steal_s - before.steal_s) / wall),
                 throttled_s=max(0.0, after.throttled_s - before.throttled_s))
