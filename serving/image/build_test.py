import os
import subprocess
from pathlib import Path

import pytest

from serving.image import build, builder, lock
from serving.image.fakes import fake_buildah, fake_docker

DIGEST = "sha256:" + "c" * 64


@pytest.fixture
def model_dir(tmp_path):
    d = tmp_path / "resnet"
    (d / "1" / "variables").mkdir(parents=True)
    (d / "1" / "saved_model.pb").write_bytes(b"graph")
    (d / "1" / "variables" / "variables.index").write_bytes(b"idx")
    return d


def _spec(model_dir, **kw):
    return build.ImageBuild(repository="reg.example/proj/tfs", model_dir=model_dir, **kw)


def test_build_args_carry_cpu_options_and_model_hash(model_dir):
    spec = _spec(model_dir, cpu_opt="avx2", extra_build_options=("--copt=-O3",))
    h = build.model_sha256(model_dir)
    args = build.build_args(spec, h)
    assert args["TF_SERVING_BUILD_OPTIONS"] == "--config=release --copt=-mavx2 --copt=-mfma --copt=-O3"
    assert args["TFS_DEVEL_IMAGE"] == "docker.io/tensorflow/serving:2.19.0-devel"
    assert args["MODEL_SHA256"] == h and args["MODEL_NAME"] == "resnet"
    native = build.build_args(_spec(model_dir, cpu_opt="native"), h)
    assert native["TF_SERVING_BUILD_OPTIONS"] == "--config=nativeopt"


def test_every_build_arg_is_declared_in_the_dockerfile(model_dir):
    text = build.DOCKERFILE.read_text()
    for name in build.build_args(_spec(model_dir), "sha256:x"):
        assert f"ARG {name}" in text, name
    assert "TF_ENABLE_ONEDNN_OPTS=1" in text


def test_model_hash_follows_content(model_dir):
    h1 = build.model_sha256(model_dir)
    (model_dir / "1" / "saved_model.pb").write_bytes(b"graph2")
    assert build.model_sha256(model_dir) != h1


@pytest.mark.parametrize("repo", ["", "reg/p/tfs:latest", f"reg/p/tfs@{DIGEST}"])
def test_repository_must_be_bare(model_dir, repo):
    with pytest.raises(build.ImageBuildError, match="repository"):
        build.ImageBuild(repository=repo, model_dir=model_dir)


def test_model_dir_needs_a_version(tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(build.ImageBuildError, match="no version directory"):
        build.check_model_dir(tmp_path / "m")


def test_build_records_digest_in_lock(model_dir, tmp_path):
    docker, log = fake_docker(tmp_path, digest=DIGEST)
    lock_path = tmp_path / "images.lock.json"
    lock.update_lock(lock_path, "other", lock.LockedImage(repository="r/o", digest="sha256:" + "d" * 64))
    entry = build.build_and_push(_spec(model_dir), lock_path=lock_path, lock_name="tfs",
                                 builder=builder.Buildx(docker=str(docker)), echo=lambda s: None)
    assert entry.ref == f"reg.example/proj/tfs@{DIGEST}"
    got = lock.read_lock(lock_path)
    assert set(got) == {"other", "tfs"}
    assert got["tfs"].model["sha256"] == build.model_sha256(model_dir)
    assert got["tfs"].build_args["TF_SERVING_BUILD_OPTIONS"].startswith("--config=release")
    assert "buildx build" in log.read_text()


def test_with_buildah_an_unreachable_tf_serving_base_is_said_plainly(model_dir, tmp_path):
    """buildah pulls the bases first: where Docker Hub cannot be reached, nothing is built."""
    fake, log = fake_buildah(tmp_path, pull_error="Error: initializing source docker://tensorflow/serving:2.19.0"
                                                  "-devel: pinging container registry registry-1.docker.io: "
                                                  "no such host")
    lock_path = tmp_path / "images.lock.json"
    with pytest.raises(builder.ImageBuildError) as e:
        build.build_and_push(_spec(model_dir), lock_path=lock_path, lock_name="tfs",
                             builder=builder.Buildah(buildah=str(fake)), echo=lambda s: None)
    said = str(e.value)
    assert said.startswith("cannot build the image: buildah cannot pull docker.io/tensorflow/serving:2.19.0-devel")
    assert "no such host" in said and "TF Serving's sources and toolchain" in said and "lock is unchanged" in said
    assert not lock_path.exists()
    assert " bud " not in log.read_text()  # nothing was built


def test_cli_on_this_machine_stops_with_a_clear_message(model_dir, tmp_path):
    """The CLI never shows a traceback: with no builder on PATH it says what to install."""
    env = dict(os.environ, PATH=str(tmp_path / "empty"), BUILD_WORKSPACE_DIRECTORY=str(tmp_path))
    r = subprocess.run(
        [os.sys.executable, "-m", "serving.image.cli", "--repository", "reg/p/tfs", "--model-dir", str(model_dir)],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert r.returncode == 2
    assert r.stderr.startswith("error: cannot build the image") and "Traceback" not in r.stderr
    assert "apt-get install buildah" in r.stderr
    assert not (tmp_path / "deploy" / "images.lock.json").exists()
