import copy
from pathlib import Path

import pytest
import yaml

from deploy import spec
from serving.image import lock

SWEEPS = Path(__file__).resolve().parent / "sweeps"
DIGEST = "sha256:" + "e" * 64


def _seed_doc():
    return yaml.safe_load((SWEEPS / "seed-gke-e2.yaml").read_text())


def _local_doc():
    return yaml.safe_load((SWEEPS / "local.yaml").read_text())


@pytest.fixture
def lock_file(tmp_path):
    p = tmp_path / "images.lock.json"
    lock.update_lock(p, "tfs-resnet-cpu", lock.LockedImage(repository="reg.example/p/tfs", digest=DIGEST))
    return p


def _parse(doc, lock_path=None):
    return spec.parse_sweep(doc, source="t.yaml", base_dir=SWEEPS, lock_path=lock_path)


def test_seed_spec_reproduces_the_study(lock_file):
    sweep = spec.load_sweep(SWEEPS / "seed-gke-e2.yaml", lock_path=lock_file)
    names = [c.name for c in sweep.configs]
    assert len(names) == 15
    assert "e2-8-16x2-inter4" in names and "e2-8-64x2-inter8-batch" in names
    assert not any(n.startswith(("e2-2-4", "e2-4-8", "e2-8-16")) and n.endswith("-batch") for n in names)
    by_shape = {c.shape.name: c for c in sweep.configs}
    assert {s: (c.shape.vcpu, c.shape.nodes, c.replicas) for s, c in by_shape.items()} == {
        "e2-2-4": (2, 8, 8),
        "e2-4-8": (4, 4, 4),
        "e2-8-16": (8, 2, 2),
        "e2-8-64": (8, 2, 2),
    }
    for c in sweep.configs:
        assert c.serving.to_dict()["intra_op"] == c.shape.vcpu  # intra_op = vCPU, as in the study
        assert c.cpu == c.shape.vcpu - 1  # Guaranteed whole CPUs that fit allocatable
        assert c.image == f"reg.example/p/tfs@{DIGEST}"
    assert sweep.slo == spec.Slo(p99_ms=1000.0, error_rate=0.01)
    batch = sweep.config("e2-8-64x2-inter2-batch")
    assert batch.serving.to_dict()["enable_batching"] is True


def test_ids_are_stable_unique_and_content_derived(lock_file):
    a = _parse(_seed_doc(), lock_file)
    b = _parse(_seed_doc(), lock_file)
    assert [c.id for c in a.configs] == [c.id for c in b.configs]
    assert len({c.id for c in a.configs}) == len(a.configs)
    assert all(c.id.startswith("c-") and len(c.id) == 12 for c in a.configs)
    assert a.id == b.id


def test_one_batching_parameter_changes_only_batching_ids(lock_file):
    doc = _seed_doc()
    before = {c.name: c.id for c in _parse(doc, lock_file).configs}
    doc["batching"]["batch"]["max_enqueued_batches"] = 4
    after = {c.name: c.id for c in _parse(doc, lock_file).configs}
    changed = {n for n in before if before[n] != after[n]}
    assert changed == {n for n in before if n.endswith("-batch")}


def test_image_digest_is_part_of_the_id(tmp_path, lock_file):
    other = tmp_path / "other.json"
    lock.update_lock(
        other, "tfs-resnet-cpu", lock.LockedImage(repository="reg.example/p/tfs", digest="sha256:" + "f" * 64)
    )
    a = _parse(_seed_doc(), lock_file).configs[0]
    b = _parse(_seed_doc(), other).configs[0]
    assert a.name == b.name and a.id != b.id


def test_missing_lock_entry_falls_back_to_the_tag_with_a_note(tmp_path):
    sweep = _parse(_seed_doc(), tmp_path / "empty.json")
    assert sweep.configs[0].image == "tfs-resnet-cpu:2.19.0-avx2"
    assert "bazel run //serving:image" in sweep.image_note


def test_local_spec_fits_two_cores():
    sweep = spec.load_sweep(SWEEPS / "local.yaml")
    assert sweep.backend == "local"
    assert [c.name for c in sweep.configs] == ["cpu2x1", "cpu2x1-batch", "cpu1x2", "cpu1x2-batch"]
    for c in sweep.configs:
        assert c.replicas * c.cpu == 2
        d = c.serving.to_dict()
        assert d["intra_op"] == c.cpu and d["inter_op"] == c.cpu
    assert sweep.slo.p99_ms == 1000.0 and sweep.slo.error_rate == 0.01
    p = sweep.configs[0].profile
    # Rough time budget: ~10 minutes for the whole sweep on 2 cores.
    assert len(sweep.configs) * (p["duration_s"] + 60) <= 11 * 60  # + start-up and drain


def test_record_matches_results_format(lock_file):
    c = _parse(_seed_doc(), lock_file).config("e2-8-16x2-inter4")
    rec = c.to_record()
    assert rec["id"] == c.id and rec["name"] == "e2-8-16x2-inter4" and rec["replicas"] == 2
    assert rec["shape"] == {
        "machine_type": "e2-custom-8-16384",
        "vcpu": 8,
        "memory_gb": 16.0,
        "nodes": 2,
        "pricing": "e2-custom",
    }
    assert rec["serving"] == c.serving.to_dict()
    assert set(c.profile) == set(spec.PROFILE_FIELDS)
    assert c.profile["duration_s"] == 300.0 and c.profile["users"] == 150


def _mutate(doc, path, value):
    d = doc
    for k in path[:-1]:
        d = d[k]
    if value is _DELETE:
        del d[path[-1]]
    else:
        d[path[-1]] = value
    return doc


_DELETE = object()


@pytest.mark.parametrize(
    "path, value, fragment",
    [
        (("schema",), "servesweep.sweep-spec/9", "schema"),
        (("bogus",), 1, "bogus: unknown field"),
        (("name",), "Has Spaces", "name:"),
        (("backend",), "mesos", "backend:"),
        (("slo", "error_rate"), 2, "slo.error_rate"),
        (("slo", "error_rate"), 1, "slo.error_rate"),  # the report could not judge it: refused here
        (("slo", "p50_ms"), 1, "slo.p50_ms: unknown field"),
        (("slo", "p99_ms"), -1, "slo.p99_ms"),
        (("profile",), _DELETE, "profile: missing"),
        (("profile", "kind"), "spike", "profile.kind"),
        (("profile", "users"), _DELETE, "profile.users: required"),
        (("profile", "duration"), "soon", "profile.duration"),
        (("profile", "duration"), "0s", "profile.duration"),
        (("shapes", "e2-2-4", "vcpu"), 0, "shapes.e2-2-4.vcpu"),
        (("shapes", "e2-2-4", "cores"), 2, "shapes.e2-2-4.cores: unknown"),
        (("shapes", "e2-2-4", "replica_cpu"), 3, "shapes.e2-2-4.replica_cpu"),
        (("matrix", "inter_op"), [], "matrix.inter_op"),
        (("matrix", "inter_op"), [2, 2], "twice"),
        (("matrix", "shape"), ["e2-3-5"], "unknown shape"),
        (("matrix", "batching"), ["off", "turbo"], "unknown batching"),
        (("matrix", "replicas"), [9], "one replica per node"),
        (("matrix", "inter_op"), [-1, 2], "serving"),
        (("exclude",), [{"color": "red"}], "exclude[0].color"),
        (("exclude",), [{"shape": "e2-8-64", "batching": "batch", "inter_op": 3}], "not one of"),
        (("exclude",), [{}], "exclude[0]: an empty rule"),
        (("image",), {"ref": "x", "name": "y"}, "not both"),
    ],
)
def test_invalid_specs_name_field_and_reason(lock_file, path, value, fragment):
    doc = _mutate(copy.deepcopy(_seed_doc()), path, value)
    with pytest.raises(spec.SpecError) as e:
        _parse(doc, lock_file)
    assert fragment in str(e.value)
    assert str(e.value).startswith("t.yaml: ")


def test_unknown_serving_field_is_rejected():
    doc = _local_doc()
    doc["serving"]["warp_drive"] = True
    with pytest.raises(spec.SpecError, match="serving"):
        _parse(doc)


def test_exclude_everything_is_an_error():
    doc = _local_doc()
    doc["exclude"] = [{"shape": ["cpu2", "cpu1"]}]
    with pytest.raises(spec.SpecError, match="excludes every configuration"):
        _parse(doc)


def test_yaml_off_without_quotes_means_batching_off():
    doc = _local_doc()
    doc["matrix"]["batching"] = [False, "batch"]
    assert [c.name for c in _parse(doc).configs][:2] == ["cpu2x1", "cpu2x1-batch"]


def test_bad_file_is_a_spec_error(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("a: [")
    with pytest.raises(spec.SpecError, match="not valid YAML"):
        spec.load_sweep(p)
    with pytest.raises(spec.SpecError, match="cannot read"):
        spec.load_sweep(tmp_path / "missing.yaml")


def test_replicas_in_matrix_and_names():
    doc = _local_doc()
    doc["matrix"] = {"shape": ["cpu1"], "replicas": [1, 2]}
    assert [c.name for c in _parse(doc).configs] == ["cpu1x1", "cpu1x2"]


def test_protocol_axis_names_configs_and_keeps_rest_ids():
    doc = yaml.safe_load((SWEEPS / "local-protocols.yaml").read_text())
    sweep = _parse(doc)
    rest, grpc = sweep.configs
    assert (rest.name, rest.protocol, grpc.name, grpc.protocol) == ("cpu2x1-rest", "rest", "cpu2x1-grpc", "grpc")
    assert rest.id != grpc.id and rest.serving == grpc.serving  # the same server, another API
    assert grpc.to_record()["protocol"] == "grpc"
    # a REST Config's id does not change when the spec starts naming the protocol
    del doc["matrix"]
    assert _parse(doc).configs[0].id == rest.id and _parse(doc).configs[0].protocol == "rest"


def test_unknown_protocol_is_refused():
    doc = _local_doc()
    doc["matrix"]["protocol"] = ["rest", "thrift"]
    with pytest.raises(spec.SpecError, match=r"matrix.protocol: unknown protocol 'thrift' \(known: rest, grpc\)"):
        _parse(doc)
