import pytest

from loadgen import hostcpu


def test_usage_splits_the_machines_busy_time_between_us_others_and_steal(monkeypatch):
    machine = {"busy": 100.0, "steal": 5.0}
    processes = {"self": 10.0, 42: 20.0}
    clock = {"now": 1000.0}
    monkeypatch.setattr(hostcpu, "_machine", lambda: (machine["busy"], machine["steal"]))
    monkeypatch.setattr(hostcpu, "process_cpu_s", lambda pid: processes[pid])
    monkeypatch.setattr(hostcpu.time, "monotonic", lambda: clock["now"])
    monkeypatch.setattr(hostcpu, "throttled_s", lambda: 0.0)

    def half_a_second():  # this process 0.4 CPU-s, the server 0.3, somebody else 0.2, steal 0.1
        machine["busy"] += 0.9
        machine["steal"] += 0.1
        processes["self"] += 0.4
        processes[42] += 0.3
        clock["now"] += 0.5

    before = hostcpu.snapshot([42])
    half_a_second()
    used = hostcpu.usage(before, hostcpu.snapshot([42]))
    # ours = (0.4 + 0.3) / 0.5; others = (0.9 - 0.7) / 0.5; steal = 0.1 / 0.5
    assert (used.ours, used.others, used.steal) == pytest.approx((1.4, 0.4, 0.2))
    before = hostcpu.snapshot()  # the server not ours: its CPU counts as others'
    half_a_second()
    used = hostcpu.usage(before, hostcpu.snapshot())
    assert (used.ours, used.others) == pytest.approx((0.8, 1.0))
    # workers that exited: their CPU seconds, reported by themselves, are ours
    before = hostcpu.snapshot()
    half_a_second()
    used = hostcpu.usage(before, hostcpu.snapshot(), extra_ours_s=0.3)
    assert (used.ours, used.others) == pytest.approx((1.4, 0.4))
    assert used.record() == {"cpus": used.cpus, "wall_s": 0.5, "ours": 1.4, "others": 0.4,
                             "steal": 0.2, "throttled_s": 0.0}
    assert "other processes 0.40" in used.describe()


def test_no_interval_no_claim():
    snap = hostcpu.snapshot()
    assert hostcpu.usage(None, snap) is None and hostcpu.usage(snap, None) is None
    assert hostcpu.usage(snap, snap) is None  # no time passed


def test_counters_read_this_machine():
    snap = hostcpu.snapshot()
    assert snap is not None and snap.busy_s > 0 and snap.ours_s > 0
    assert hostcpu.process_cpu_s(2**22 + 12345) == 0.0  # a pid that does not exist
    assert hostcpu.self_cpu_s() > 0


def test_throttling_is_read_from_the_processs_cgroup(tmp_path):
    # cgroup v2: one hierarchy, throttled_usec; v1: the cpu controller's mount, throttled_time
    (tmp_path / "v2" / "box").mkdir(parents=True)
    (tmp_path / "v2" / "box" / "cpu.stat").write_text("usage_usec 9\nthrottled_usec 2500000\n")
    (tmp_path / "v2.cgroup").write_text("0::/box\n")
    assert hostcpu.throttled_s(str(tmp_path / "v2.cgroup"), str(tmp_path / "v2")) == 2.5
    (tmp_path / "v1" / "cpu,cpuacct" / "box").mkdir(parents=True)
    (tmp_path / "v1" / "cpu,cpuacct" / "box" / "cpu.stat").write_text(
        "nr_periods 5\nnr_throttled 2\nthrottled_time 750000000\n")
    (tmp_path / "v1.cgroup").write_text("12:memory:/box\n4:cpu,cpuacct:/box\n")
    assert hostcpu.throttled_s(str(tmp_path / "v1.cgroup"), str(tmp_path / "v1")) == 0.75
    assert hostcpu.throttled_s(str(tmp_path / "missing"), str(tmp_path)) == 0.0
    assert hostcpu.throttled_s(str(tmp_path / "v1.cgroup"), str(tmp_path / "nowhere")) == 0.0
