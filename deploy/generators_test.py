import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from deploy import cluster, generators, render, spec
from deploy.configs import GeneratorPool
from deploy.k8s_double import KubeApiDouble
from deploy.render import RenderError
from formats.agent import COUNT_ENV
from serving.image import lock
from tools.python.required import required_tool

SWEEPS = Path(__file__).resolve().parent / "sweeps"
DIGEST = "sha256:" + "a" * 64
IMAGE = f"reg.example/p/servesweep-loadgen@{DIGEST}"


def _seed(**cluster_extra):
    doc = yaml.safe_load((SWEEPS / "seed-gke-e2.yaml").read_text())
    doc["cluster"].update(cluster_extra)
    doc["image"] = {"ref": "reg.example/p/tfs@sha256:" + "e" * 64}
    return spec.parse_sweep(doc, source=str(SWEEPS / "seed-gke-e2.yaml"), base_dir=SWEEPS)


POOL = {"node_selector": {"cloud.google.com/gke-nodepool": "generators"},
        "tolerations": [{"key": "servesweep.io/generators", "operator": "Exists", "effect": "NoSchedule"}]}


def test_the_seed_sweeps_job_and_rbac_validate_strictly():
    sweep = _seed(generator_pool=POOL)
    job = generators.GeneratorJob(count=3, image=IMAGE, sweep_id=sweep.id)
    objects = generators.manifests(job, sweep.cluster)
    assert [o["kind"] for o in objects] == ["ServiceAccount", "ServiceAccount", "Role", "RoleBinding", "Service",
                                            "Job"]
    assert render.validate_objects(objects) == []
    assert {o["metadata"]["namespace"] for o in objects} == {"servesweep"}


def test_the_agents_send_to_a_headless_service_of_the_server_pods():
    sweep = _seed()
    svc = generators.replicas_service(sweep.cluster)
    assert svc["spec"]["clusterIP"] == "None"  # its DNS name gives every ready pod, no proxy between
    base = yaml.safe_load((render.BASE_DIR / "deployment.yaml").read_text())
    assert svc["spec"]["selector"].items() <= base["spec"]["template"]["metadata"]["labels"].items()
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {"rest": render.REST_PORT, "grpc": render.GRPC_PORT}
    assert generators.in_cluster_bases(sweep.cluster) == (
        "http://tfs-server-replicas.servesweep.svc.cluster.local:8501",
        "grpc://tfs-server-replicas.servesweep.svc.cluster.local:8500")


def test_the_job_is_indexed_guaranteed_restricted_and_kept_off_the_servers():
    sweep = _seed(generator_pool=POOL)
    job = generators.job(generators.GeneratorJob(count=2, image=IMAGE, sweep_id=sweep.id), sweep.cluster)
    s = job["spec"]
    assert s["completionMode"] == "Indexed" and s["completions"] == s["parallelism"] == 2
    pod = s["template"]["spec"]
    (ctr,) = pod["containers"]
    assert ctr["image"] == IMAGE
    assert ctr["resources"]["requests"] == ctr["resources"]["limits"] == {"cpu": "2", "memory": "2048Mi"}
    assert {"name": COUNT_ENV, "value": "2"} in ctr["env"]
    assert ctr["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert ctr["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert pod["nodeSelector"] == POOL["node_selector"] and pod["tolerations"] == POOL["tolerations"]
    (term,) = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    # the labels every rendered server pod carries (the base Deployment's selector)
    base = yaml.safe_load((render.BASE_DIR / "deployment.yaml").read_text())
    server_labels = base["spec"]["template"]["metadata"]["labels"]
    assert term["labelSelector"]["matchLabels"].items() <= server_labels.items()
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert s["template"]["metadata"]["labels"]["servesweep.io/sweep"] == sweep.id


def test_no_pool_means_no_node_selection():
    sweep = _seed()
    assert sweep.cluster.generator_pool == GeneratorPool()
    pod = generators.job(generators.GeneratorJob(1, IMAGE, sweep.id), sweep.cluster)["spec"]["template"]["spec"]
    assert "nodeSelector" not in pod and "tolerations" not in pod


def test_the_role_grants_what_the_cluster_backend_calls_and_no_more():
    role = next(o for o in generators.rbac(_seed().cluster) if o["kind"] == "Role")
    grants = {(g, r): set(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"]
              for r in rule["resources"]}
    groups = {"core": "", "apps": "apps", "policy": "policy", "batch": "batch"}
    for kind, api in cluster._APIS.items():
        if not api.namespaced:
            continue  # the Namespace is the cluster admin's, outside a Role
        plural = {"ConfigMap": "configmaps", "Service": "services", "Deployment": "deployments",
                  "PodDisruptionBudget": "poddisruptionbudgets", "Job": "jobs"}[kind]
        # server-side apply creates an object only with create (it is deleted at every teardown)
        assert {"get", "create", "patch", "delete"} <= grants[(groups[api.group], plural)], kind
    assert grants[("", "pods/proxy")] == {"get", "create", "delete"}  # loadgen.remote's GET, POST, DELETE
    assert grants[("batch", "jobs")] == {"get", "create", "patch", "delete"}
    assert not any("*" in verbs or "escalate" in verbs or "bind" in verbs for verbs in grants.values())
    assert ("", "secrets") not in grants
    binding = next(o for o in generators.rbac(_seed().cluster) if o["kind"] == "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_rendering_is_byte_identical_and_parses_back(tmp_path):
    sweep = _seed(generator_pool=POOL)
    job = generators.GeneratorJob(count=2, image=IMAGE, sweep_id=sweep.id)
    first = generators.render(job, sweep.cluster, tmp_path / "a")
    second = generators.render(job, sweep.cluster, tmp_path / "b")
    for name in ("rbac.yaml", "job.yaml"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    back = [o for f in ("rbac.yaml", "job.yaml") for o in yaml.safe_load_all((first / f).read_text())]
    assert back == generators.manifests(job, sweep.cluster)


def test_the_image_comes_from_the_lock_or_must_be_pinned(tmp_path):
    lock_file = tmp_path / "images.lock.json"
    with pytest.raises(RenderError, match="--generator-image"):
        lock.write_lock(lock_file, {})
        generators.generator_image(lock_file, None, allow_tags=False)
    lock.update_lock(lock_file, generators.LOCK_NAME,
                     lock.LockedImage(repository="reg.example/p/servesweep-loadgen", digest=DIGEST))
    assert generators.generator_image(lock_file, None, allow_tags=False) == IMAGE
    with pytest.raises(RenderError, match="not pinned by digest"):
        generators.generator_image(lock_file, "reg.example/p/loadgen:latest", allow_tags=False)
    assert generators.generator_image(None, "reg.example/p/loadgen:latest", allow_tags=True).endswith(":latest")
    with pytest.raises(RenderError):
        generators.GeneratorJob(count=0, image=IMAGE, sweep_id="s")


def test_a_rerun_refuses_a_generator_image_that_changed_in_the_lock(tmp_path):
    lock_file = tmp_path / "images.lock.json"
    lock.update_lock(lock_file, generators.LOCK_NAME,
                     lock.LockedImage(repository="reg.example/p/servesweep-loadgen", digest=DIGEST))
    assert generators.rerun_image(IMAGE, lock_file) == IMAGE
    lock.update_lock(lock_file, generators.LOCK_NAME,
                     lock.LockedImage(repository="reg.example/p/servesweep-loadgen", digest="sha256:" + "e" * 64))
    with pytest.raises(RenderError, match="changed since the run was recorded: it ran " + re.escape(IMAGE)):
        generators.rerun_image(IMAGE, lock_file)


@pytest.mark.parametrize(("pool", "field"), [
    ("gpu", "cluster.generator_pool"),
    ({"nodes": {}}, "cluster.generator_pool.nodes"),
    ({"node_selector": {"pool": 3}}, "cluster.generator_pool.node_selector"),
    ({"tolerations": {"key": "x"}}, "cluster.generator_pool.tolerations"),
    ({"tolerations": [{"key": "x", "colour": "red"}]}, "cluster.generator_pool.tolerations[0].colour"),
])
def test_a_bad_pool_is_refused_naming_its_field(pool, field):
    with pytest.raises(spec.SpecError, match=f": {field}: ".replace("[", r"\[").replace("]", r"\]")):
        _seed(generator_pool=pool)


def test_kubectl_accepts_the_job_and_rbac_in_a_client_dry_run(tmp_path):
    # kubectl maps each kind through the API double's discovery and finds none of them
    # there (a client dry run creates nothing); the schemas were checked strictly above
    kubectl = required_tool("kubectl", what="kubectl", install="the machine image's kubectl 1.32")
    sweep = _seed(generator_pool=POOL)
    directory = generators.render(generators.GeneratorJob(2, IMAGE, sweep.id), sweep.cluster, tmp_path)
    with KubeApiDouble() as api:
        r = subprocess.run([kubectl, "--server", api.url, "apply", "--dry-run=client", "--validate=false",
                            "-f", str(directory / "rbac.yaml"), "-f", str(directory / "job.yaml")],
                           capture_output=True, text=True, timeout=120, env={**os.environ, "KUBECONFIG": os.devnull})
        assert r.returncode == 0, r.stderr
        assert api.objects == {}  # nothing was created
    assert sorted(r.stdout.split("\n")[:-1]) == sorted([
        "serviceaccount/servesweep-generator created (dry run)",
        "serviceaccount/servesweep-controller created (dry run)",
        "role.rbac.authorization.k8s.io/servesweep-sweep created (dry run)",
        "rolebinding.rbac.authorization.k8s.io/servesweep-sweep created (dry run)",
        "service/tfs-server-replicas created (dry run)",
        "job.batch/servesweep-generators created (dry run)"])
