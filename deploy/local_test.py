import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from deploy import local, spec
from deploy.target import DeployError

SWEEPS = Path(__file__).resolve().parent / "sweeps"


def _two_by_one(model_name="tiny"):
    """Two replicas of one CPU each, batching off (from the committed local spec)."""
    doc = yaml.safe_load((SWEEPS / "local.yaml").read_text())
    doc["serving"]["model_name"] = model_name
    doc["matrix"] = {"shape": ["cpu1"], "batching": ["off"]}
    return spec.parse_sweep(doc, source="local").configs[0]


@pytest.mark.parametrize(
    "replicas, each, available, sets",
    [
        (2, 1, (0, 1), [(0,), (1,)]),
        (1, 2, (0, 1), [(0, 1)]),
        (2, 2, (0, 1, 4, 5, 6), [(0, 1), (4, 5)]),
    ],
)
def test_cpu_sets_are_disjoint(replicas, each, available, sets):
    assert local.cpu_sets(replicas, each, available) == sets


def test_cpu_sets_too_few():
    with pytest.raises(DeployError, match="need 4 CPUs; only 2"):
        local.cpu_sets(2, 2, (0, 1))


class FakeServer:
    def __init__(self, log, cpus, port, fail=False):
        self.log, self.cpus, self.fail = log, cpus, fail
        self.url = f"http://127.0.0.1:{port}"
        self.grpc_url = f"grpc://127.0.0.1:{9000 + cpus[0]}"  # one gRPC port per replica
        self.identity = {"kind": "local", "version": "fake", "argv": [], "image_digest": None}

    def wait_available(self, timeout_s):
        if self.fail:
            raise TimeoutError("model not AVAILABLE")

    def stop(self):
        self.log.append(("stop", self.cpus))


def _fake_launch(log, fail_on=None):
    def launch(serving, *, model_base_path, host, rest_port, cpus, server_binary, workdir, nice):
        log.append(("launch", tuple(cpus)))
        log.append(("nice", nice))
        return FakeServer(log, tuple(cpus), rest_port, fail=tuple(cpus) == fail_on)

    return launch


def test_deploy_pins_each_replica_and_teardown_stops_all(tmp_path):
    log = []
    backend = local.LocalBackend(
        model_base_path=tmp_path, workdir=tmp_path / "w", cpus=(0, 1), launch=_fake_launch(log)
    )
    target = backend.deploy(_two_by_one())
    assert log == [("launch", (0,)), ("nice", 10), ("launch", (1,)), ("nice", 10)]  # servers yield to the generator
    assert len(target.urls) == 2 and all(u.endswith("/v1/models/tiny:predict") for u in target.urls)
    assert target.load_urls("rest") == target.urls
    assert target.load_urls("grpc") == ("grpc://127.0.0.1:9000/tiny", "grpc://127.0.0.1:9001/tiny")
    assert target.identity["cpus"] == [[0], [1]] and target.identity["replicas"] == 2
    with pytest.raises(DeployError, match="teardown"):
        backend.deploy(_two_by_one())
    backend.teardown()
    assert sorted(e for e in log if e[0] == "stop") == [("stop", (0,)), ("stop", (1,))]


def test_failed_replica_stops_the_others(tmp_path):
    log = []
    backend = local.LocalBackend(
        model_base_path=tmp_path, workdir=tmp_path / "w", cpus=(0, 1), launch=_fake_launch(log, fail_on=(1,))
    )
    with pytest.raises(DeployError, match="did not come up: model not AVAILABLE"):
        backend.deploy(_two_by_one())
    assert sorted(e for e in log if e[0] == "stop") == [("stop", (0,)), ("stop", (1,))]


def test_missing_model_dir(tmp_path):
    backend = local.LocalBackend(model_base_path=tmp_path / "nope", workdir=tmp_path, launch=_fake_launch([]))
    with pytest.raises(DeployError, match="not a directory"):
        backend.deploy(_two_by_one())


# --- real servers: two replicas of the tiny model on CPU 0 and CPU 1 ---------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    bazel = Path("model/tiny_model/tiny")  # //model:tiny_model in runfiles
    if (bazel / "1" / "saved_model.pb").is_file():
        return bazel.resolve()
    out = tmp_path_factory.mktemp("model")
    subprocess.run(
        [sys.executable, "-m", "model.export", "--arch", "tiny", "--name", "tiny", "--out", str(out)],
        check=True,
        capture_output=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    return out / "tiny"


def _processes_mentioning(text: str) -> dict[int, str]:
    """Live (non-zombie) processes whose command line contains ``text``."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmdline = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            out[int(d.name)] = cmdline
    return out


@pytest.mark.skipif(not {0, 1} <= os.sched_getaffinity(0), reason="needs CPUs 0 and 1")
def test_two_pinned_replicas_answer_and_teardown_leaves_nothing(tiny_model, tmp_path):
    config = _two_by_one()
    work = tmp_path / "replicas"
    with local.LocalBackend(model_base_path=tiny_model, workdir=work, cpus=(0, 1), available_timeout_s=120) as be:
        target = be.deploy(config)
        assert len(target.base_urls) == 2
        running = _processes_mentioning(str(work))
        assert len(running) >= 2
        assert {frozenset(os.sched_getaffinity(pid)) for pid in running} == {frozenset({0}), frozenset({1})}
        for base in target.base_urls:
            with urllib.request.urlopen(f"{base}/v1/models/tiny", timeout=10) as r:
                states = [s["state"] for s in json.loads(r.read())["model_version_status"]]
            assert "AVAILABLE" in states
            body = json.dumps({"instances": [[[[0.0] * 3] * 224] * 224]}).encode()
            req = urllib.request.Request(base + "/v1/models/tiny:predict", data=body, method="POST")
            with urllib.request.urlopen(req, timeout=30) as r:
                assert len(json.loads(r.read())["predictions"][0]) == 1000
    assert _processes_mentioning(str(work)) == {}
