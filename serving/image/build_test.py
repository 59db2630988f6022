import os
import stat
import subprocess
from pathlib import Path

import pytest

from serving.image import build, lock

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
    assert args["TFS_DEVEL_IMAGE"] == "tensorflow/serving:2.19.0-devel"
    assert args["MODEL_SHA256"] == h and args["MODEL_NAME"] == "resnet"
    native = build.build_args(_spec(model_dir, cpu_opt="native"), h)
    assert native["TF_SERVING_BUILD_OPTIONS"] == "--config=nativeopt"


def test_every_build_arg_is_declared_in_the_dockerfile(model_dir):
    text = build.DOCKERFILE.read_text()
    for name in build.build_args(_spec(model_dir), "sha256:x"):
        assert f"ARG {name}" in text, name
    assert "TF_ENABLE_ONEDNN_OPTS=1" in text


def test_command_pushes_with_metadata(model_dir, tmp_path):
    spec = _spec(model_dir, tag="t1")
    cmd = build.build_command(spec, {"B": "2", "A": "1"}, tmp_path / "ctx", tmp_path / "m.json")
    assert cmd[:3] == ["docker", "buildx", "build"]
    assert "--push" in cmd and cmd[cmd.index("--metadata-file") + 1] == str(tmp_path / "m.json")
    assert cmd[cmd.index("--tag") + 1] == "reg.example/proj/tfs:t1"
    assert [cmd[i + 1] for i, c in enumerate(cmd) if c == "--build-arg"] == ["A=1", "B=2"]
    assert cmd[-1] == str(tmp_path / "ctx")


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


def _fake_docker(tmp_path, *, daemon=True, buildx=True, digest=DIGEST):
    """A stand-in `docker` executable that records its argv and fakes a push."""
    script = tmp_path / "bin" / "docker"
    script.parent.mkdir()
    log = tmp_path / "docker.log"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {log}\n'
        'if [ "$1" = info ]; then ' + ("echo 28.2; exit 0" if daemon else "exit 1") + "; fi\n"
        'if [ "$1 $2" = "buildx version" ]; then ' + ("exit 0" if buildx else "exit 1") + "; fi\n"
        'while [ $# -gt 0 ]; do if [ "$1" = --metadata-file ]; then '
        f'printf \'{{"containerimage.digest": "{digest}"}}\' > "$2"; fi; shift; done\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script, log


def test_preflight_without_daemon_or_buildx_says_so(tmp_path):
    docker, _ = _fake_docker(tmp_path, daemon=False, buildx=False)
    with pytest.raises(build.ImageBuildError) as e:
        build.preflight(str(docker))
    assert "buildx" in str(e.value) and "daemon" in str(e.value) and "lock is unchanged" in str(e.value)


def test_preflight_without_docker(tmp_path):
    with pytest.raises(build.ImageBuildError, match="no `nodocker-here` on PATH"):
        build.preflight("nodocker-here")


def test_build_records_digest_in_lock(model_dir, tmp_path):
    docker, log = _fake_docker(tmp_path)
    lock_path = tmp_path / "images.lock.json"
    lock.update_lock(lock_path, "other", lock.LockedImage(repository="r/o", digest="sha256:" + "d" * 64))
    entry = build.build_and_push(
        _spec(model_dir), lock_path=lock_path, lock_name="tfs", docker=str(docker), echo=lambda s: None
    )
    assert entry.ref == f"reg.example/proj/tfs@{DIGEST}"
    got = lock.read_lock(lock_path)
    assert set(got) == {"other", "tfs"}
    assert got["tfs"].model["sha256"] == build.model_sha256(model_dir)
    assert got["tfs"].build_args["TF_SERVING_BUILD_OPTIONS"].startswith("--config=release")
    assert "buildx build" in log.read_text()


def test_failed_preflight_leaves_lock_alone(model_dir, tmp_path):
    docker, _ = _fake_docker(tmp_path, daemon=False)
    lock_path = tmp_path / "images.lock.json"
    with pytest.raises(build.ImageBuildError):
        build.build_and_push(_spec(model_dir), lock_path=lock_path, lock_name="tfs", docker=str(docker))
    assert not lock_path.exists()


def test_cli_on_this_machine_stops_with_a_clear_message(model_dir, tmp_path):
    """The CLI never shows a traceback: here either docker is missing or has no daemon."""
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
    assert not (tmp_path / "deploy" / "images.lock.json").exists()
