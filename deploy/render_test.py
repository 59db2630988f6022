import copy
from pathlib import Path

import pytest
import yaml

from deploy import render, spec
from serving.image import lock
from tools.python.required import required_tool

SWEEPS = Path(__file__).resolve().parent / "sweeps"
DIGEST = "sha256:" + "e" * 64


@pytest.fixture
def kubectl() -> str:
    return required_tool("kubectl", what="kubectl (with built-in kustomize)",
                         install="the machine image's kubectl 1.32; Debian's kubernetes-client is too old")


needs_kubectl = pytest.mark.usefixtures("kubectl")


@pytest.fixture
def lock_file(tmp_path):
    p = tmp_path / "images.lock.json"
    lock.update_lock(p, "tfs-resnet-cpu", lock.LockedImage(repository="reg.example/p/tfs", digest=DIGEST))
    return p


def _seed(lock_file, doc=None):
    doc = doc or yaml.safe_load((SWEEPS / "seed-gke-e2.yaml").read_text())
    return spec.parse_sweep(doc, source="seed", base_dir=SWEEPS, lock_path=lock_file)


def _tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@needs_kubectl
def test_every_seed_overlay_builds_and_validates(lock_file, tmp_path):
    sweep = _seed(lock_file)
    dirs = render.render_sweep(sweep, tmp_path / "out")
    assert len(dirs) == 15
    for c in sweep.configs:
        objects = render.kustomize_build(dirs[c.id])
        assert sorted(o["kind"] for o in objects) == ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service"]
        assert render.validate_objects(objects) == [], c.name
        _check_deployment(c, objects)


def _check_deployment(c, objects):
    by_kind = {o["kind"]: o for o in objects}
    dep, cm, svc = by_kind["Deployment"], by_kind["ConfigMap"], by_kind["Service"]
    assert dep["metadata"]["namespace"] == "servesweep"
    assert dep["spec"]["replicas"] == c.replicas
    pod = dep["spec"]["template"]["spec"]
    (ctr,) = pod["containers"]
    assert ctr["image"] == f"reg.example/p/tfs@{DIGEST}"
    res = ctr["resources"]
    assert res["requests"] == res["limits"] and res["limits"]["cpu"] == str(c.cpu)  # Guaranteed, whole CPUs
    assert pod["nodeSelector"] == {"node.kubernetes.io/instance-type": c.shape.machine_type}
    anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert anti["topologyKey"] == "kubernetes.io/hostname"
    assert ctr["readinessProbe"]["httpGet"]["path"] == "/v1/models/resnet"
    sc = ctr["securityContext"]
    assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"] and sc["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert f"--tensorflow_intra_op_parallelism={c.shape.vcpu}" in ctr["args"]
    mounted = next(v for v in pod["volumes"] if v["name"] == "tfs-config")["configMap"]["name"]
    assert mounted == cm["metadata"]["name"] and mounted.startswith("tfs-config-")  # generator hash suffix
    assert ("batching_parameters.txt" in cm["data"]) == c.name.endswith("-batch")
    assert svc["spec"]["type"] == "LoadBalancer"


def test_same_spec_renders_byte_identical(lock_file, tmp_path):
    render.render_sweep(_seed(lock_file), tmp_path / "a")
    render.render_sweep(_seed(lock_file), tmp_path / "b")
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    # rendering again over an earlier rendering leaves no stale file in an overlay
    overlay = next(p for p in (tmp_path / "a").iterdir() if p.is_dir() and p.name != "base")
    (overlay / "service-patch.yaml.old").write_text("stale")
    render.render_sweep(_seed(lock_file), tmp_path / "a")
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")


@needs_kubectl
def test_one_batching_parameter_changes_only_id_and_configmap(lock_file, tmp_path):
    doc = yaml.safe_load((SWEEPS / "seed-gke-e2.yaml").read_text())
    a = _seed(lock_file, copy.deepcopy(doc))
    doc["batching"]["batch"]["num_batch_threads"] = 8
    b = _seed(lock_file, doc)
    render.render_sweep(a, tmp_path / "a")
    render.render_sweep(b, tmp_path / "b")
    ta, tb = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    changed = {k.split("/")[0] for k in ta if ta[k] != tb.get(k)}
    changed.discard("index.json")
    assert changed == {c.name for c in a.configs if c.name.endswith("-batch")}
    name = "e2-8-64x2-inter4-batch"
    ca, cb = a.config(name), b.config(name)
    assert ca.id != cb.id
    oa = render.kustomize_build(tmp_path / "a" / name)
    ob = render.kustomize_build(tmp_path / "b" / name)
    cm_a = next(o for o in oa if o["kind"] == "ConfigMap")
    cm_b = next(o for o in ob if o["kind"] == "ConfigMap")
    assert cm_a["metadata"]["name"] != cm_b["metadata"]["name"]
    assert cm_a["data"]["batching_parameters.txt"] != cm_b["data"]["batching_parameters.txt"]
    # Blank what must change (id label, ConfigMap name, batching file): the rest is identical.
    assert _strip(oa, ca.id, cm_a) == _strip(ob, cb.id, cm_b)


def _strip(objects, config_id, cm):
    """Objects with the config id and the ConfigMap's name/batching file blanked out."""
    text = yaml.safe_dump_all(objects).replace(config_id, "ID").replace(cm["metadata"]["name"], "CM")
    out = list(yaml.safe_load_all(text))
    for o in out:
        if o["kind"] == "ConfigMap":
            o["data"].pop("batching_parameters.txt")
    return out


def test_tags_are_refused_unless_allowed(tmp_path):
    sweep = _seed(tmp_path / "no-lock.json")  # lock without the image: the spec's tag fallback
    with pytest.raises(render.RenderError, match="not pinned by digest") as e:
        render.render_sweep(sweep, tmp_path / "out")
    assert "--allow-tags" in str(e.value) and "bazel run //serving:image" in str(e.value)
    assert not (tmp_path / "out").exists()  # nothing half-written
    dirs = render.render_sweep(sweep, tmp_path / "out", allow_tags=True)
    kust = yaml.safe_load((next(iter(dirs.values())) / "kustomization.yaml").read_text())
    assert kust["images"] == [{"name": "tfs-server", "newName": "tfs-resnet-cpu", "newTag": "2.19.0-avx2"}]


def test_explicit_tag_ref_is_refused(lock_file, tmp_path):
    doc = yaml.safe_load((SWEEPS / "seed-gke-e2.yaml").read_text())
    doc["image"] = {"ref": "reg.example/p/tfs:latest"}
    with pytest.raises(render.RenderError, match="not pinned"):
        render.render_sweep(_seed(lock_file, doc), tmp_path / "out")
    doc["image"] = {"ref": f"reg.example:5000/p/tfs:2.19@{DIGEST}"}
    dirs = render.render_sweep(_seed(lock_file, doc), tmp_path / "out")
    kust = yaml.safe_load((next(iter(dirs.values())) / "kustomization.yaml").read_text())
    assert kust["images"][0] == {"name": "tfs-server", "newName": "reg.example:5000/p/tfs", "digest": DIGEST}


def test_local_sweep_has_nothing_to_render(tmp_path):
    with pytest.raises(render.RenderError, match="local backend"):
        render.render_sweep(spec.load_sweep(SWEEPS / "local.yaml"), tmp_path)


def test_validation_reports_bad_objects():
    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"replicas": "two", "selector": {}, "template": {}},
    }
    problems = render.validate_objects([bad])
    assert problems and "Deployment/x" in problems[0] and "replicas" in problems[0]


@pytest.mark.parametrize(
    "ref, parts",
    [
        ("reg/p/tfs", ("reg/p/tfs", None, None)),
        ("reg/p/tfs:1.0", ("reg/p/tfs", "1.0", None)),
        ("reg:5000/p/tfs", ("reg:5000/p/tfs", None, None)),
        (f"reg:5000/p/tfs:1@{DIGEST}", ("reg:5000/p/tfs", "1", DIGEST)),
    ],
)
def test_split_image(ref, parts):
    assert render.split_image(ref) == parts


def test_memory_quantity():
    assert render.quantity_memory(8.0) == "8Gi"
    assert render.quantity_memory(1.5) == "1536Mi"
