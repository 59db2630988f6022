"""Generator agents share one run's schedule; the controller merges their seconds exactly."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import urllib.request

from kubernetes import client as k8s

from deploy import generators
from deploy.agents import GeneratorJob
from deploy.configs import ClusterOptions
from deploy.k8s_double import KubeApiDouble, PodProcess
from formats.agent import COUNT_ENV, INDEX_ENV
from loadgen import recorder, remote
from loadgen.recorder import Interval
from loadgen.run import RunOptions, run
from loadgen.schedule import Profile
from tests.loadgen_helpers import child_env, hlog_counts, read_series, running_server

PATH = "/v1/models/m:predict"
AGENT = [sys.executable, "-m", "loadgen.agent_cli", "--host", "127.0.0.1", "--port", "0", "--max-idle", "60s"]


@contextlib.contextmanager
def running_agents(n: int):
    """``n`` agent processes on 127.0.0.1 (each exits by itself after 60 s idle)."""
    procs = [subprocess.Popen(AGENT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=child_env(), text=True,
                              start_new_session=True) for _ in range(n)]  # a group each: agent and worker
    try:
        ports = []
        for p in procs:
            line = p.stdout.readline()
            assert line.strip().isdigit(), f"agent did not start (said {line!r})"
            ports.append(int(line))
        yield procs, [f"http://127.0.0.1:{port}" for port in ports]
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)  # as a pod being deleted
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)  # its worker, if the agent left one


class Recording:
    """A link to an agent that keeps every second the agent handed back (the test's witness)."""

    def __init__(self, link, on_poll=None) -> None:
        self.link, self.on_poll, self.seconds = link, on_poll, []
        self.name = link.name

    def call(self, method, path, body, timeout):
        answer = self.link.call(method, path, body, timeout)
        if method == "GET" and path.startswith("/runs/"):
            self.seconds.extend(answer["intervals"])
            if self.on_poll is not None:
                self.on_poll(self, answer)
        return answer


def _shares(recorded):
    """What each recorded agent sent, and the union of their corrected histograms."""
    union, sent = recorder.new_histogram(), []
    for agent in recorded:
        seconds = [Interval.from_wire(w) for w in agent.seconds]
        sent.append(sum(iv.sent for iv in seconds))
        for iv in seconds:
            union.add(iv.hists["corrected"])
    return sent, union


def _options(url: str, rate: float, seconds: float) -> RunOptions:
    # these tests are about sharing, merging and replacing agents, not about keeping a schedule
    # on a busy machine: two agents, their workers, the test server and the API double share 2
    # cores, and a full test run beside other builds lagged 37.7 ms p99 at 200 req/s. 100 ms
    # still voids a run whose agent stalls (a killed one stops answering for seconds)
    return RunOptions(targets=(url + PATH,), profile=Profile(kind="constant", rate=rate, duration_s=seconds),
                      payload="b64", max_in_flight=64, timeout_s=5.0, max_send_lag_ms=100.0)


def test_two_agents_share_the_schedule_and_merge_exactly(tmp_path):
    with running_server("--delay-ms", "3") as (url, _), running_agents(2) as (_, urls):
        agents = [Recording(remote.HttpAgent(u)) for u in urls]
        rec = run(_options(url, 200.0, 2.0), str(tmp_path), agents=agents).record
        served = json.loads(_get(url + "/stats"))["served_delays_ms"]
    assert rec["complete"] is True and rec["validity"]["valid"] is True, rec["validity"]
    assert rec["options"]["workers"] == 2
    assert rec["generators"]["agents"] == urls and rec["generators"]["clock_skew_ms"] < 50
    t = rec["totals"]
    assert t["scheduled"] == t["sent"] == t["ok"] == 400 and len(served) == 400
    # every 2nd arrival each: the 400 of the common schedule split 200 / 200
    sent, union = _shares(agents)
    assert sent == [200, 200]
    # the merged histogram is the union of the agents' own, exactly
    assert union.get_total_count() == rec["latency_ms"]["corrected"]["count"] == 400
    assert rec["latency_ms"]["corrected"] == recorder.summary_ms(union)  # count, mean, p50 ... max
    assert sum(hlog_counts(tmp_path / "latency.hlog")) == 400
    rows = read_series(tmp_path / "series.csv")
    assert [int(r["t_s"]) for r in rows] == list(range(1, len(rows) + 1))
    assert sum(int(r["ok"]) for r in rows) == 400


def test_an_agent_killed_mid_run_makes_the_run_invalid_and_keeps_the_files(tmp_path):
    with running_server("--delay-ms", "3") as (url, _), running_agents(2) as (procs, urls):
        def kill_after_first_second(agent, answer):
            # the second agent's process dies once it has handed back a second of its share
            if agent is agents[1] and answer["intervals"] and procs[1].poll() is None:
                os.killpg(procs[1].pid, signal.SIGKILL)  # the agent and its worker

        agents = [Recording(remote.HttpAgent(urls[0])), Recording(remote.HttpAgent(urls[1]), kill_after_first_second)]
        rec = run(_options(url, 100.0, 4.0), str(tmp_path), agents=agents).record
    assert rec["complete"] is False and rec["validity"]["valid"] is False
    assert any("generator 1" in r for r in rec["validity"]["reasons"]), rec["validity"]["reasons"]
    on_disk = json.loads((tmp_path / "run.json").read_text())
    assert on_disk == rec
    rows = read_series(tmp_path / "series.csv")
    assert sum(int(r["ok"]) for r in rows) == rec["totals"]["ok"] == sum(hlog_counts(tmp_path / "latency.hlog"))


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read()


# --- in the cluster: the Job's pods through the API server's pod proxy (the API double) --


def _start_agent_pod(job, index):
    """The double's pod: an agent process with its index in the environment, as a pod of an
    Indexed Job has it."""
    env = {**child_env(), INDEX_ENV: str(index), COUNT_ENV: str(job["spec"]["completions"])}
    p = subprocess.Popen(AGENT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
                         start_new_session=True)
    line = p.stdout.readline()
    assert line.strip().isdigit(), f"agent pod did not start: {line!r}"

    def kill():  # the whole pod: the agent and its worker
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=10)

    return PodProcess(int(line), lambda: p.poll() is None, kill)


@contextlib.contextmanager
def generator_job(count: int):
    options = ClusterOptions(namespace="servesweep")
    with KubeApiDouble(start_pod=_start_agent_pod) as api:
        job = GeneratorJob(k8s.ApiClient(k8s.Configuration(host=api.url)), options,
                           generators.GeneratorJob(count=count, image="reg.example/loadgen@sha256:" + "a" * 64,
                                                   sweep_id="s-test"), ready_timeout_s=30.0, poll_s=0.1)
        job.apply()
        try:
            yield api, job
        finally:
            job.delete()


def test_through_the_pod_proxy_two_agent_pods_load_two_replicas(tmp_path):
    with running_server("--delay-ms", "3") as (a, _), running_server("--delay-ms", "3") as (b, _), \
            generator_job(2) as (api, job):
        links = job.links()
        assert [link.pod.split("-")[-2] for link in links] == ["0", "1"]  # in index order
        recording = [Recording(link) for link in links]
        options = dataclasses.replace(_options(a, 200.0, 2.0), targets=(a + PATH, b + PATH))
        rec = run(options, str(tmp_path), agents=recording).record
        per_replica = [len(json.loads(_get(u + "/stats"))["served_delays_ms"]) for u in (a, b)]
    assert any("/proxy/runs/" in path for _, path, _, _ in api.requests)  # it went through the proxy
    assert rec["complete"] is True and rec["validity"]["valid"] is True, rec["validity"]
    assert rec["totals"]["ok"] == 400 and per_replica == [200, 200]
    sent, union = _shares(recording)
    assert sent == [200, 200]
    assert rec["latency_ms"]["corrected"] == recorder.summary_ms(union)
    assert rec["generators"]["agents"] == [link.name for link in links]


def test_a_killed_agent_pod_voids_the_run_and_the_job_replaces_it_with_its_index(tmp_path):
    with running_server("--delay-ms", "3") as (url, _), generator_job(2) as (api, job):
        links = job.links()

        def kill_pod_1(agent, answer):
            if agent.link is links[1] and answer["intervals"]:
                for (_, name), (_, process) in list(api.pods.items()):
                    if name == links[1].pod:
                        process.kill()

        first = run(_options(url, 100.0, 3.0), str(tmp_path / "first"),
                    agents=[Recording(links[0]), Recording(links[1], kill_pod_1)]).record
        assert first["validity"]["valid"] is False
        assert any("generator 1" in r for r in first["validity"]["reasons"]), first["validity"]["reasons"]
        again = job.links()  # the pod in place of the dead one, with the same index
        assert api.replaced == 1 and again[0] == links[0] and again[1].pod != links[1].pod
        assert again[1].pod.split("-")[-2] == "1"
        second = run(_options(url, 100.0, 2.0), str(tmp_path / "second"), agents=again).record
    assert second["complete"] is True and second["validity"]["valid"] is True, second["validity"]
    assert second["totals"]["ok"] == 200
    for d in ("first", "second"):
        rec = json.loads((tmp_path / d / "run.json").read_text())
        assert sum(int(r["ok"]) for r in read_series(tmp_path / d / "series.csv")) == rec["totals"]["ok"]
