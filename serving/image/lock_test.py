import json

import pytest

from serving.image import lock

D1 = "sha256:" + "a" * 64
D2 = "sha256:" + "b" * 64


def _img(digest=D1, **kw):
    return lock.LockedImage(repository="reg.example/p/tfs", digest=digest, **kw)


def test_missing_lock_is_empty(tmp_path):
    assert lock.read_lock(tmp_path / "none.json") == {}


def test_round_trip_and_stable_text(tmp_path):
    p = tmp_path / "images.lock.json"
    img = _img(tag="2.19.0-avx2", build_args={"B": "2", "A": "1"}, model={"sha256": "x"})
    lock.write_lock(p, {"tfs": img})
    first = p.read_text()
    assert lock.read_lock(p) == {"tfs": img}
    lock.write_lock(p, lock.read_lock(p))
    assert p.read_text() == first
    doc = json.loads(first)
    assert doc["schema"] == lock.SCHEMA
    assert doc["images"]["tfs"]["ref"] == f"reg.example/p/tfs@{D1}"
    assert list(doc["images"]["tfs"]["build_args"]) == ["A", "B"]


def test_update_keeps_other_entries(tmp_path):
    p = tmp_path / "l.json"
    lock.update_lock(p, "one", _img(D1))
    lock.update_lock(p, "two", _img(D2))
    lock.update_lock(p, "one", _img(D2))
    got = lock.read_lock(p)
    assert got["one"].digest == D2 and got["two"].digest == D2


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("{", "not JSON"),
        ('{"schema": "other/1", "images": {}}', "schema"),
        ('{"schema": "servesweep.images-lock/1", "images": []}', "mapping"),
        (f'{{"schema": "servesweep.images-lock/1", "images": {{"x": {{"digest": "{D1}"}}}}}}', "repository"),
        (
            '{"schema": "servesweep.images-lock/1", "images": {"x": {"repository": "r", "digest": "sha256:12"}}}',
            "bad digest",
        ),
    ],
)
def test_bad_locks_are_rejected_with_reason(tmp_path, text, fragment):
    p = tmp_path / "l.json"
    p.write_text(text)
    with pytest.raises(lock.ImageLockError, match=fragment):
        lock.read_lock(p)


def test_resolve_missing_names_the_fix():
    with pytest.raises(lock.ImageLockError, match="bazel run //serving:image"):
        lock.resolve({"a": _img()}, "b", lock_path="deploy/images.lock.json")
    assert lock.resolve({"a": _img()}, "a").digest == D1


@pytest.mark.parametrize(
    "ref, pinned",
    [
        (f"reg/p/tfs@{D1}", True),
        (f"reg:5000/p/tfs:2.19@{D1}", True),
        ("reg/p/tfs:latest", False),
        ("reg/p/tfs", False),
        ("reg/p/tfs@sha256:abc", False),
    ],
)
def test_is_pinned(ref, pinned):
    assert lock.is_pinned(ref) is pinned


def test_a_rerun_keeps_the_image_it_recorded(tmp_path):
    images = {"gen": _img(D1)}
    assert lock.unchanged(images, "gen", f"reg.example/p/tfs@{D1}") == images["gen"]
    with pytest.raises(lock.ImageLockError) as e:
        lock.unchanged({"gen": _img(D2)}, "gen", f"reg.example/p/tfs@{D1}", lock_path="l.json")
    said = str(e.value)
    assert f"it ran reg.example/p/tfs@{D1}, the lock now holds reg.example/p/tfs@{D2}" in said
    assert "'gen' in l.json changed" in said
    with pytest.raises(lock.ImageLockError, match="no image 'gen'"):
        lock.unchanged({}, "gen", f"reg.example/p/tfs@{D1}")
