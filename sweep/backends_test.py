from pathlib import Path

import pytest
from kubernetes import client as k8s

from deploy.local import LocalBackend
from deploy.spec import Slo, Sweep
from sweep import backends
from sweep.loop import SweepError
from sweep.specs import load_spec


def _sweep(backend: str) -> Sweep:
    return Sweep(name="t", backend=backend, slo=Slo(), configs=(), spec={}, source="t.yaml")


def test_the_backend_follows_the_spec_and_a_contrary_flag_is_refused():
    assert backends.backend_kind(_sweep("local"), None) == "local"
    assert backends.backend_kind(_sweep("cluster"), "k8s") == "k8s"
    with pytest.raises(SweepError, match=r"t.yaml: this spec is for the local backend, not k8s"):
        backends.backend_kind(_sweep("local"), "k8s")
    with pytest.raises(SweepError, match="for the cluster backend, not local"):
        backends.backend_kind(_sweep("cluster"), "local")


def test_local_backend_serves_the_models_directory(tmp_path):
    sweep = load_spec(Path("deploy/sweeps/local.yaml"))
    got = backends.make_backend(sweep, "local", models=tmp_path / "models", workdir=tmp_path / "w")
    assert isinstance(got, LocalBackend)
    assert got.model_base_path == tmp_path / "models" / sweep.configs[0].serving.model_name


def test_a_missing_kubeconfig_is_a_sweep_error_not_a_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    with pytest.raises(SweepError, match="cannot load kubeconfig"):
        backends.make_backend(_sweep("cluster"), "k8s", models=tmp_path, workdir=tmp_path)
    with pytest.raises(SweepError, match="unknown backend"):
        backends.make_backend(_sweep("cluster"), "mesos", models=tmp_path, workdir=tmp_path)


def test_port_forward_on_a_multi_replica_spec_is_refused_before_the_cluster_is_touched(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))  # the refusal comes first
    seed = load_spec(Path("deploy/sweeps/seed-gke-e2.yaml"))
    with pytest.raises(SweepError, match=r"would measure one of its \d+ replicas.*\(and \d+ more Configs\)"):
        backends.make_backend(seed, "k8s", models=tmp_path, workdir=tmp_path, endpoint="port-forward")


def test_generators_run_in_a_cluster_only_and_send_through_no_endpoint():
    assert backends.check_generators("local", 0, None) is None
    assert backends.check_generators("k8s", 0, "port-forward") == "port-forward"
    assert backends.check_generators("k8s", 2, None) == "in-cluster"
    with pytest.raises(SweepError, match="add --generators N"):
        backends.check_generators("k8s", 0, "in-cluster")
    with pytest.raises(SweepError, match=r"--generators 2: .* inside a cluster .* use --workers N"):
        backends.check_generators("local", 2, None)
    with pytest.raises(SweepError, match="drop --endpoint"):
        backends.check_generators("k8s", 2, "loadbalancer")


def test_an_unpinned_generator_image_is_refused():
    seed = load_spec(Path("deploy/sweeps/seed-gke-e2.yaml"))

    class Backend:  # generator_job reads only the backend's API client (nothing is called here)
        kube = type("Kube", (), {"api_client": k8s.ApiClient(k8s.Configuration(host="http://127.0.0.1:9"))})()

    with pytest.raises(SweepError, match="not pinned by digest"):
        backends.generator_spec(seed, 2, "reg.example/loadgen:latest", allow_tags=False)
    recorded = {"count": 2, "image": "reg.example/loadgen@sha256:" + "a" * 64}
    agents = backends.generator_spec(seed, 2, None, allow_tags=False, recorded=recorded)  # a rerun's
    assert agents.count == 2 and agents.sweep_id == seed.id and agents.image == recorded["image"]
    assert backends.generator_job(seed, Backend(), agents).job == agents


def test_a_rerun_of_locked_agents_is_refused_once_the_lock_holds_another_image(tmp_path):
    import yaml

    from deploy import spec
    from serving.image import lock

    first, second = ("reg.example/p/servesweep-loadgen@sha256:" + c * 64 for c in "ab")
    lock_file = tmp_path / "images.lock.json"
    lock.update_lock(lock_file, "tfs-resnet-cpu", lock.LockedImage("reg.example/p/tfs", "sha256:" + "e" * 64))
    lock.update_lock(lock_file, "servesweep-loadgen", lock.LockedImage(*first.split("@")))
    doc = yaml.safe_load(Path("deploy/sweeps/seed-gke-e2.yaml").read_text())
    doc["image"] = {"name": "tfs-resnet-cpu", "lock": "images.lock.json"}
    seed = spec.parse_sweep(doc, source=str(tmp_path / "seed.yaml"), base_dir=tmp_path)
    agents = backends.generator_spec(seed, 2, None, allow_tags=False)  # from the lock
    assert agents.image == first and agents.locked
    recorded = {"count": 2, "image": first, "locked": True}
    assert backends.generator_spec(seed, 2, None, allow_tags=False, recorded=recorded).image == first
    lock.update_lock(lock_file, "servesweep-loadgen", lock.LockedImage(*second.split("@")))
    with pytest.raises(SweepError, match="changed since the run was recorded"):
        backends.generator_spec(seed, 2, None, allow_tags=False, recorded=recorded)
    # an image given by hand is the user's word (and so is one a run was given)
    assert backends.generator_spec(seed, 2, first, allow_tags=False, recorded=recorded).image == first
    assert not backends.generator_spec(seed, 2, None, allow_tags=False, recorded={"image": first}).locked
