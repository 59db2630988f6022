import pytest

from serving.image import builder, lock
from serving.image.fakes import fake_buildah, fake_docker

DIGEST = "sha256:" + "c" * 64


def _request(tmp_path, repository="reg.example/proj/img", **kw):
    return builder.BuildRequest(context=tmp_path / "ctx", repository=repository, tag="t1",
                                build_args={"B": "2", "A": "1"}, **kw)


def _quiet(_line):
    pass


@pytest.mark.parametrize(("repository", "host", "loopback"), [
    ("127.0.0.1:5000/servesweep/loadgen", "127.0.0.1:5000", True),
    ("localhost:5000/loadgen", "localhost:5000", True),
    ("localhost/loadgen", "localhost", True),
    ("[::1]:5000/loadgen", "[::1]:5000", True),
    ("us-docker.pkg.dev/p/r/loadgen", "us-docker.pkg.dev", False),
    ("reg.example:443/p/loadgen", "reg.example:443", False),
    ("tensorflow/serving", "docker.io", False),  # Docker Hub: a first component without . or :
    ("ubuntu", "docker.io", False),
])
def test_registry_host_and_loopback(repository, host, loopback):
    assert builder.registry_host(repository) == host
    assert builder.is_loopback(repository) is loopback


def test_buildx_pushes_with_metadata(tmp_path):
    (cmd,) = builder.Buildx().commands(_request(tmp_path), tmp_path)
    assert cmd[:3] == ["docker", "buildx", "build"]
    assert "--push" in cmd and cmd[cmd.index("--metadata-file") + 1] == str(tmp_path / "metadata.json")
    assert cmd[cmd.index("--tag") + 1] == "reg.example/proj/img:t1"
    assert [cmd[i + 1] for i, c in enumerate(cmd) if c == "--build-arg"] == ["A=1", "B=2"]
    assert cmd[cmd.index("--file") + 1] == str(tmp_path / "ctx" / "Dockerfile") and cmd[-1] == str(tmp_path / "ctx")


def test_buildah_builds_in_its_storage_then_pushes_with_a_digest_file(tmp_path):
    bud, push = builder.Buildah(storage=tmp_path / "st").commands(_request(tmp_path), tmp_path)
    store = ["buildah", "--storage-driver", "vfs", "--root", str(tmp_path / "st" / "root"),
             "--runroot", str(tmp_path / "st" / "runroot")]
    assert bud[:len(store)] == store and push[:len(store)] == store
    assert bud[len(store):len(store) + 4] == ["bud", "--isolation", "chroot", "--layers"]
    assert [bud[i + 1] for i, c in enumerate(bud) if c == "--build-arg"] == ["A=1", "B=2"]
    assert bud[bud.index("--tag") + 1] == "reg.example/proj/img:t1" and bud[-1] == str(tmp_path / "ctx")
    assert push[len(store):] == ["push", "--digestfile", str(tmp_path / "digest"), "reg.example/proj/img:t1",
                                 "docker://reg.example/proj/img:t1"]  # TLS verified: not loopback


def test_buildah_speaks_plain_http_to_a_loopback_registry_only(tmp_path):
    _, push = builder.Buildah().commands(_request(tmp_path, "127.0.0.1:5000/p/img"), tmp_path)
    assert push[:4] == ["buildah", "--storage-driver", "vfs", "push"] and "--tls-verify=false" in push


@pytest.mark.parametrize("text", ["", "sha256:abc", "md5:" + "c" * 64, DIGEST + " extra"])
def test_a_digest_file_without_a_digest_is_refused(tmp_path, text):
    (tmp_path / "digest").write_text(text)
    with pytest.raises(builder.ImageBuildError, match="not a sha256"):
        builder.read_digest_file(tmp_path / "digest")


def test_digests_read_from_either_builder(tmp_path):
    (tmp_path / "digest").write_text(DIGEST + "\n")
    assert builder.read_digest_file(tmp_path / "digest") == DIGEST
    (tmp_path / "m.json").write_text(f'{{"containerimage.digest": "{DIGEST}"}}')
    assert builder.read_metadata_digest(tmp_path / "m.json") == DIGEST
    with pytest.raises(builder.ImageBuildError, match="push did not finish"):
        builder.read_digest_file(tmp_path / "none")
    (tmp_path / "m.json").write_text("{}")
    with pytest.raises(builder.ImageBuildError, match="--push"):
        builder.read_metadata_digest(tmp_path / "m.json")


def test_auto_takes_buildx_when_a_daemon_answers(tmp_path):
    docker, _ = fake_docker(tmp_path / "d")
    buildah, _ = fake_buildah(tmp_path / "b")
    chosen = builder.choose(docker=str(docker), buildah=str(buildah))
    assert isinstance(chosen, builder.Buildx) and chosen.why == "a Docker daemon with buildx answers"


def test_auto_takes_buildah_without_a_daemon_and_says_why(tmp_path):
    docker, _ = fake_docker(tmp_path / "d", daemon=False, buildx=False)
    buildah, _ = fake_buildah(tmp_path / "b")
    chosen = builder.choose(storage=tmp_path / "st", docker=str(docker), buildah=str(buildah))
    assert isinstance(chosen, builder.Buildah) and chosen.storage == tmp_path / "st"
    assert "buildx plugin is not installed" in chosen.why and "no Docker daemon answers" in chosen.why
    assert "buildah version 1.28.2" in chosen.why and "needs no daemon" in chosen.why


def test_no_builder_says_what_to_install(tmp_path):
    with pytest.raises(builder.ImageBuildError) as e:
        builder.choose(docker=str(tmp_path / "no-docker"), buildah=str(tmp_path / "no-buildah"))
    said = str(e.value)
    assert said.startswith("cannot build the image") and "no `" in said and "apt-get install buildah" in said
    assert "lock is unchanged" in said


def test_an_asked_for_builder_that_cannot_work_is_refused(tmp_path):
    docker, _ = fake_docker(tmp_path / "d", daemon=False)
    buildah, _ = fake_buildah(tmp_path / "b")
    with pytest.raises(builder.ImageBuildError, match="with docker buildx: no Docker daemon"):
        builder.choose("buildx", docker=str(docker), buildah=str(buildah))
    assert isinstance(builder.choose("buildah", docker=str(docker), buildah=str(buildah)), builder.Buildah)
    with pytest.raises(builder.ImageBuildError, match="with buildah: no working"):
        builder.choose("buildah", buildah=str(tmp_path / "none"))


def test_publish_runs_the_check_between_build_and_push_then_locks(tmp_path):
    buildah, log = fake_buildah(tmp_path, digest=DIGEST)
    lock_path = tmp_path / "images.lock.json"
    lock.update_lock(lock_path, "other", lock.LockedImage(repository="r/o", digest="sha256:" + "d" * 64))
    seen = []

    def ran():
        return [line.split()[2] for line in log.read_text().splitlines()]  # after --storage-driver vfs

    def verify(image):
        seen.append((image, ran()))

    entry = builder.publish(builder.Buildah(buildah=str(buildah)), _request(tmp_path), tmp_path,
                            lock_path=lock_path, lock_name="img", verify=verify, echo=_quiet)
    assert seen == [("reg.example/proj/img:t1", ["bud"])]  # built, not yet pushed
    assert ran() == ["bud", "push"]
    assert entry.ref == f"reg.example/proj/img@{DIGEST}" and entry.build_args == {"A": "1", "B": "2"}
    got = lock.read_lock(lock_path)
    assert set(got) == {"other", "img"} and got["img"] == entry


def test_a_failed_build_pushes_nothing_and_leaves_the_lock(tmp_path):
    buildah, log = fake_buildah(tmp_path, digest=DIGEST, bud_status=1)
    lock_path = tmp_path / "images.lock.json"
    with pytest.raises(builder.ImageBuildError, match="buildah bud failed with exit status 1; nothing was pushed"):
        builder.publish(builder.Buildah(buildah=str(buildah)), _request(tmp_path), tmp_path,
                        lock_path=lock_path, lock_name="img", echo=_quiet)
    assert [line.split()[2] for line in log.read_text().splitlines()] == ["bud"] and not lock_path.exists()


def test_a_base_that_cannot_be_pulled_is_named(tmp_path):
    buildah, _ = fake_buildah(tmp_path, pull_error="Error: dial tcp: lookup registry-1.docker.io: no such host")
    with pytest.raises(builder.ImageBuildError) as e:
        builder.Buildah(buildah=str(buildah)).check_pullable(["docker.io/library/ubuntu:22.04"])
    assert str(e.value) == ("buildah cannot pull docker.io/library/ubuntu:22.04 "
                            "(Error: dial tcp: lookup registry-1.docker.io: no such host)")


def test_tree_hash_follows_paths_and_bytes(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x").write_bytes(b"1")
    first = builder.tree_sha256(tmp_path)
    (tmp_path / "a" / "x").rename(tmp_path / "a" / "y")
    assert builder.tree_sha256(tmp_path) != first
