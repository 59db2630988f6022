"""The cluster sweep through in-cluster generator agents, end to end against the API double.

A Config of 2 replicas, each a stand-in FIFO server with a 10 ms service time (its
latencies known exactly: tests/standin_server.py) running as a server pod of the double
on a pod IP of its own; 2 generator agents as the pods of the sweep's Indexed Job, sending
to the headless Service's DNS name (the double's hosts file is their cluster DNS). The
capacity search runs every warm-up, first guess and probe through the agents, and reads
each replica's metrics through the pod proxy around each probe. One agent pod is killed
in the middle of the second probe. Then the same Config's capacity is searched again from
this process alone (one generator, a URL per replica), and both are held to the truth.

Time: about 5 minutes (the capacity of each, searched with 15 s probes at 10% resolution
as tests/capacity_test.py, plus warm-ups of at least 10 s through the agents).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import urllib.parse

import pytest
from kubernetes import client as k8s

from deploy import agents, cluster, generators, spec
from deploy.k8s_double import KubeApiDouble, PodProcess
from formats.agent import COUNT_ENV, INDEX_ENV
from formats.slo import Slo
from loadgen import recorder
from loadgen.options import GeneratorOptions
from loadgen.recorder import Interval
from sweep.agents import Generators, generators_up
from sweep.capacity import SearchOptions, SearchSweep, bodies, run_search
from sweep.endpoints import Endpoint, ExternalBackend
from sweep.status import is_complete
from sweep.warmup import WarmupOptions
from tests import server_pod
from tests.loadgen_helpers import child_env, hlog_counts, read_series
from tests.standin_server import running_standin, truth_capacity

SERVICE_MS = 10.0
SLO = Slo(p99_ms=100.0, error_rate=0.01)
RESOLUTION = 0.10
KILLED_PROBE = 2  # the probe (in probes.csv order) during which agent pod 1 is killed
# send lag allowed 20 ms, 20% of the SLO's 100 ms (as tests/agents_test.py): two agents,
# their worker processes, two server pods, the double and this test share 2 cores, and a
# run here at 10 ms had three probes in a row over it (10.6, 50.4, 13.5 ms p99), which
# ends a search
LOAD = GeneratorOptions(payload="b64", max_send_lag_ms=20.0)
SEARCH = SearchOptions(repeats=1, max_probe_s=15, min_probe_s=13, resolution=RESOLUTION, seed=3)
SPEC = {
    "schema": "servesweep.sweep-spec/1", "name": "double", "backend": "cluster",
    "image": {"ref": "reg.example/p/tfs@sha256:" + "e" * 64},
    "cluster": {"namespace": "servesweep"},
    "slo": SLO.to_dict(),
    "profile": {"kind": "constant", "rate": 10, "duration": "10s"},
    "shapes": {"two": {"machine_type": "e2-custom-2-4096", "vcpu": 2, "memory_gb": 4, "nodes": 2,
                       "pricing": "e2-custom"}},
    "serving": {"model_name": "m"},
    "matrix": {"shape": ["two"]},
}
AGENT = [sys.executable, "-m", "loadgen.agent_cli", "--host", "127.0.0.1", "--port", "0", "--max-idle", "120s"]
TIMEOUTS = cluster.Timeouts(rollout_s=60.0, model_available_s=30.0, teardown_s=30.0, poll_s=0.05)


class Recording:
    """A link to an agent that keeps every second it handed back, run by run (the witness of
    the exact merge); ``on_poll`` sees each poll's answer."""

    def __init__(self, link, index: int, job: RecordingJob) -> None:
        self.link, self.index, self.job = link, index, job
        self.name = link.name

    def call(self, method, path, body, timeout):
        answer = self.link.call(method, path, body, timeout)
        run = urllib.parse.urlsplit(path).path.split("/")[2] if path.startswith("/runs/") else None
        if method == "POST" and path.endswith("/go") and self.index == 0:
            self.job.runs[self.job.out_dir] = run  # the run that started, for the run directory
        if method == "GET" and run is not None:
            seconds = self.job.seconds.setdefault(run, {}).setdefault(self.index, {})
            seconds.update((w["t_s"], w) for w in answer["intervals"])  # polls may overlap
            self.job.on_poll(self, run, answer)
        return answer


class RecordingJob:
    """The sweep's GeneratorJob, its links recording (and one agent pod killed mid-probe)."""

    def __init__(self, job: agents.GeneratorJob, api: KubeApiDouble) -> None:
        self.inner, self.api = job, api
        self.out_dir = ""  # the run directory of the run the sweep is starting (Witness.run)
        self.runs: dict[str, str] = {}  # run directory -> the agents' run id
        self.seconds: dict[str, dict[int, dict[int, dict]]] = {}
        self.killed: str | None = None

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def links(self, **kw):
        return [Recording(link, i, self) for i, link in enumerate(self.inner.links(**kw))]

    def on_poll(self, agent: Recording, run: str, answer: dict) -> None:
        if (self.killed is None and agent.index == 1 and answer["intervals"]
                and self.out_dir.endswith(f"probes/1-{KILLED_PROBE}")):
            self.killed = agent.link.pod
            self.api.pods[("servesweep", agent.link.pod)][1].kill()  # the agent and its worker

    def union(self, out_dir) -> tuple[list[int], recorder.HdrHistogram]:
        """What each agent sent in the run written to ``out_dir``, and the union of their
        corrected histograms."""
        run = self.runs[str(out_dir)]
        union, sent = recorder.new_histogram(), []
        for index in sorted(self.seconds[run]):
            seconds = [Interval.from_wire(w) for w in self.seconds[run][index].values()]
            sent.append(sum(iv.sent for iv in seconds))
            for iv in seconds:
                union.add(iv.hists["corrected"])
        return sent, union


class Witness(Generators):
    """The sweep's Generators, telling the recording job which run directory each run is for."""

    def run(self, options, out_dir, **kw):
        self.job.out_dir = str(out_dir)
        return super().run(options, out_dir, **kw)


def _agent_pod(api_ref: list):
    def start(job, index) -> PodProcess:
        """An agent process with its index in the environment, and the double's hosts file
        as its cluster DNS."""
        env = {**child_env(), INDEX_ENV: str(index), COUNT_ENV: str(job["spec"]["completions"])}
        p = subprocess.Popen([*AGENT, "--hosts", api_ref[0].hosts_path], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, env=env, text=True, start_new_session=True)
        line = p.stdout.readline()
        assert line.strip().isdigit(), f"agent pod did not start: {line!r}"

        def kill():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
            p.stdout.close()

        return PodProcess(int(line), lambda: p.poll() is None, kill)

    return start


def _search(configs, backend, out, how_agents=None):
    how = SearchSweep(out_dir=out, slo=SLO, load=LOAD, warmup=WarmupOptions(), search=SEARCH, agents=how_agents)
    events = []
    outcomes, interrupted = run_search(configs, backend, how, bodies("b64"), events.append, skip=is_complete)
    assert not interrupted and [o.status for o in outcomes] == ["done"], (outcomes, events[-5:])
    config_dir = out / configs[0].id
    for line in (config_dir / "probes.csv").read_text().splitlines():
        print(line)
    return config_dir, json.loads((config_dir / "run.json").read_text())


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cluster")
    sweep = spec.parse_sweep(SPEC, source=str(tmp / "double.yaml"), base_dir=tmp)
    api_ref: list = []
    problems: list[str] = []
    with KubeApiDouble(start_pod=_agent_pod(api_ref),
                       start_server_pod=lambda deployment, index: server_pod.start(SERVICE_MS)) as api:
        api_ref.append(api)
        api_client = k8s.ApiClient(k8s.Configuration(host=api.url))
        backend = cluster.ClusterBackend(api_client, options=sweep.cluster, work_dir=tmp / "work",
                                         endpoint=cluster.IN_CLUSTER, timeouts=TIMEOUTS)
        job = RecordingJob(agents.GeneratorJob(api_client, sweep.cluster, generators.GeneratorJob(
            count=2, image="reg.example/p/loadgen@sha256:" + "a" * 64, sweep_id=sweep.id),
            ready_timeout_s=60.0, poll_s=0.05), api)
        with generators_up(job, on_problem=problems.append) as gens:
            config_dir, record = _search(sweep.configs, backend, tmp / "agents", Witness(gens.job))
        left = api.kinds()
        replaced, pods_left = api.replaced, len(api.pods)
    assert problems == [] and pods_left == 0 and left == ["Namespace/servesweep"]  # Job, Service, Config: gone
    with running_standin(2, SERVICE_MS, lifetime_s=600.0) as bases:
        endpoint = Endpoint(tuple(f"{b}/v1/models/m:predict" for b in bases), "one-generator")
        _, single = _search([endpoint], ExternalBackend(), tmp / "single")
    return config_dir, record, single, job, replaced


def test_both_capacities_agree_with_each_other_and_the_truth(swept):
    _, record, single, _, _ = swept
    truth = truth_capacity(SERVICE_MS / 1000, 2, SLO.p99_ms / 1000)
    got, alone = record["capacity"], single["capacity"]
    print(f"truth {truth:.1f}; agents {got['rps']:.1f} ({got['lo']:.1f}-{got['hi']:.1f}); "
          f"one generator {alone['rps']:.1f} ({alone['lo']:.1f}-{alone['hi']:.1f}) req/s")
    assert got["lo"] <= alone["rps"] <= got["hi"] and alone["lo"] <= got["rps"] <= alone["hi"]
    for c in (got, alone):  # as tests/capacity_test.py: within the resolution, interval around the truth
        assert c["rps"] == pytest.approx(truth, rel=RESOLUTION), (c, truth)
        assert c["lo"] <= truth * (1 + RESOLUTION) and c["hi"] >= truth * (1 - RESOLUTION), (c, truth)


def test_the_configs_run_json_names_the_generator_image_by_digest(swept):
    _, record, single, _, _ = swept
    assert record["generators"]["image"] == "reg.example/p/loadgen@sha256:" + "a" * 64
    assert record["generators"]["count"] == 2 and single["generators"] is None


def _rows(path, schema):
    with open(path, newline="") as f:
        assert f.readline().strip() == f"# {schema}"
        return list(csv.DictReader(f))


def _probes(config_dir):
    return _rows(config_dir / "probes.csv", "servesweep.probes/1")


def test_the_killed_agent_voids_its_probe_which_is_repeated_on_its_replacement(swept):
    config_dir, record, _, job, replaced = swept
    rows = _probes(config_dir)
    killed, again = rows[KILLED_PROBE - 1], rows[KILLED_PROBE]
    assert job.killed is not None and replaced == 1
    assert killed["valid"] == "0" and "generator 1" in killed["reason"], killed
    assert again["valid"] == "1" and again["rate"] == killed["rate"], again
    assert record["validity"]["valid"] is True and record["probes"] == len(rows)
    # the repeat ran on the pod the Job put in place of the killed one, with its index
    later = json.loads((config_dir / again["dir"] / "run.json").read_text())["generators"]["agents"]
    assert later[1] != f"pod/{job.killed}" and later[1].startswith("pod/servesweep-generators-1-")


def test_no_result_file_is_lost_or_half_written(swept):
    config_dir, _, _, _, _ = swept
    rows = _probes(config_dir)
    assert sorted(p.name for p in (config_dir / "probes").iterdir()) == sorted(r["dir"].split("/")[1] for r in rows)
    for row in rows:
        d = config_dir / row["dir"]
        run = json.loads((d / "run.json").read_text())
        assert sum(int(r["ok"]) for r in read_series(d / "series.csv")) == run["totals"]["ok"]
        assert sum(hlog_counts(d / "latency.hlog")) == run["totals"]["ok"]
        metrics = (d / "server_metrics.csv").read_text().splitlines()
        assert metrics[0] == "# servesweep.server_metrics/1" and len(metrics) > 2
    assert len(_rows(config_dir / "replicas.csv", "servesweep.replicas/1")) == 2 * len(rows)
    for name in ("warmup.json", "status.json", "server_metrics.csv"):
        assert (config_dir / name).is_file()
    assert json.loads((config_dir / "status.json").read_text())["status"] == "done"


def _replica_counts(config_dir, probe_dir):
    rows = _rows(config_dir / "replicas.csv", "servesweep.replicas/1")
    return [int(r["requests"]) for r in rows if r["dir"] == probe_dir]


def test_each_agent_sent_every_second_arrival_and_the_merge_is_exact(swept):
    config_dir, _, _, job, _ = swept
    rows = [r for r in _probes(config_dir) if r["valid"] == "1"]
    assert {str(config_dir / "warmup"), str(config_dir / "guess")} <= set(job.runs)  # through the agents too
    for row in rows:
        run = json.loads((config_dir / row["dir"] / "run.json").read_text())
        sent, union = job.union(config_dir / row["dir"])
        assert run["options"]["workers"] == 2 and len(sent) == 2 and sum(sent) == run["totals"]["sent"]
        # agent k sends arrivals k, k+2, ... and arrival i goes to replica i mod 2 (the pod IPs,
        # sorted): each agent's arrivals all reached one replica, and each replica one agent's
        assert sorted(sent) == sorted(_replica_counts(config_dir, row["dir"]))
        # the shares end where each agent was told the verdict, each on its own (a run ended
        # by the rule): here within 2 arrivals of each other, after the verdict
        assert abs(sent[0] - sent[1]) <= 0.01 * sum(sent)
        assert union.get_total_count() == run["latency_ms"]["corrected"]["count"] == run["totals"]["ok"]
        assert run["latency_ms"]["corrected"] == recorder.summary_ms(union)  # count, mean, p50 ... max
        # sent to the Service's name, resolved by each agent to the 2 replicas' pod IPs
        assert run["targets"] == ["http://tfs-server-replicas.servesweep.svc.cluster.local:8501/v1/models/m:predict"]
        assert len(run["generators"]["targets"]) == 2


def test_every_replica_got_its_share_of_every_probe(swept):
    config_dir, _, _, _, _ = swept
    valid = {r["dir"] for r in _probes(config_dir) if r["valid"] == "1"}
    rows = _rows(config_dir / "replicas.csv", "servesweep.replicas/1")
    for probe in valid:
        mine = [r for r in rows if r["dir"] == probe]
        assert [r["replica"].startswith("pod/tfs-server-") for r in mine] == [True, True]
        assert all(r["imbalanced"] == "0" and abs(float(r["deviation"])) <= 0.01 for r in mine), mine
