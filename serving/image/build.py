"""Builds and pushes the CPU-optimised TF Serving image and records its digest.

Library half of `bazel run //serving:image`: the build arguments are rendered from an
`ImageBuild` record, the model directory is hashed, `docker buildx build --push
--metadata-file` is run, and the registry digest it reports is written to the image lock
(`deploy/images.lock.json`) with the build arguments and the model's hash.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from serving.image import lock

DOCKERFILE = Path(__file__).with_name("Dockerfile")

# Named CPU build presets (TF Serving's .bazelrc: release = -mavx -msse4.2).
CPU_OPTIONS = {
    "avx2": "--config=release --copt=-mavx2 --copt=-mfma",
    "native": "--config=nativeopt",
    "release": "--config=release",
}


class ImageBuildError(RuntimeError):
    """The image cannot be built or pushed here; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class ImageBuild:
    """Everything that determines the image, echoed into the lock."""

    repository: str
    model_dir: Path
    model_name: str = "resnet"
    tfs_version: str = "2.19.0"
    cpu_opt: str = "avx2"
    extra_build_options: tuple[str, ...] = ()
    bazel_options: str = "--local_ram_resources=2048"
    runtime_base: str = "ubuntu:22.04"
    platform: str = "linux/amd64"
    tag: str = ""

    def __post_init__(self) -> None:
        if not self.repository or "@" in self.repository or ":" in self.repository.rsplit("/", 1)[-1]:
            raise ImageBuildError(f"--repository {self.repository!r} must be REGISTRY/PATH without tag or digest")
        if self.cpu_opt not in CPU_OPTIONS:
            raise ImageBuildError(f"cpu_opt {self.cpu_opt!r} is not one of {', '.join(sorted(CPU_OPTIONS))}")

    @property
    def effective_tag(self) -> str:
        return self.tag or f"{self.tfs_version}-{self.cpu_opt}"

    @property
    def build_options(self) -> str:
        return " ".join([CPU_OPTIONS[self.cpu_opt], *self.extra_build_options])


def model_sha256(model_dir: Path) -> str:
    """A content hash of a TF Serving model directory (relative paths and file bytes)."""
    root = Path(model_dir)
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return "sha256:" + h.hexdigest()


def check_model_dir(model_dir: Path) -> None:
    """A model base path: numeric version directories, each with a saved_model.pb."""
    root = Path(model_dir)
    if not root.is_dir():
        raise ImageBuildError(f"model directory {root} does not exist")
    versions = [d for d in root.iterdir() if d.is_dir() and d.name.isdigit()]
    if not versions:
        raise ImageBuildError(
            f"{root} has no version directory (expected e.g. {root}/1/saved_model.pb); "
            "pass the model base path, as written by //model:export"
        )
    for v in versions:
        if not (v / "saved_model.pb").is_file():
            raise ImageBuildError(f"{v} has no saved_model.pb")


def build_args(spec: ImageBuild, model_hash: str) -> dict[str, str]:
    """The Dockerfile's build arguments for ``spec``."""
    return {
        "MODEL_NAME": spec.model_name,
        "MODEL_SHA256": model_hash,
        "RUNTIME_BASE": spec.runtime_base,
        "TFS_DEVEL_IMAGE": f"tensorflow/serving:{spec.tfs_version}-devel",
        "TFS_VERSION": spec.tfs_version,
        "TF_SERVING_BAZEL_OPTIONS": spec.bazel_options,
        "TF_SERVING_BUILD_OPTIONS": spec.build_options,
    }


def build_command(
    spec: ImageBuild, args: dict[str, str], context: Path, metadata_file: Path, docker: str = "docker"
) -> list[str]:
    """The `docker buildx build --push` command line."""
    cmd = [docker, "buildx", "build", "--platform", spec.platform, "--file", str(context / "Dockerfile")]
    for k in sorted(args):
        cmd += ["--build-arg", f"{k}={args[k]}"]
    cmd += [
        "--tag",
        f"{spec.repository}:{spec.effective_tag}",
        "--metadata-file",
        str(metadata_file),
        "--push",
        str(context),
    ]
    return cmd


def preflight(docker: str = "docker", run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> None:
    """Fails with one clear message when Docker, buildx or a daemon is missing."""
    exe = shutil.which(docker)
    if exe is None:
        raise ImageBuildError(
            f"cannot build the image: no `{docker}` on PATH. Install Docker (with the buildx "
            "plugin) and log in to the target registry, then re-run."
        )
    problems = []
    r = run([exe, "buildx", "version"], capture_output=True, text=True)
    if r.returncode != 0:
        problems.append("the docker buildx plugin is not installed (`docker buildx version` failed)")
    r = run([exe, "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True)
    if r.returncode != 0 or not r.stdout.strip():
        host = os.environ.get("DOCKER_HOST", "the default socket")
        problems.append(f"no Docker daemon answers at {host} (`docker info` failed)")
    if problems:
        raise ImageBuildError(
            "cannot build the image: " + "; ".join(problems) + ". The image needs a Docker "
            "daemon with buildx and push access to a registry; nothing was built and the lock "
            "is unchanged."
        )


def prepare_context(spec: ImageBuild, dest: Path) -> Path:
    """Copies the Dockerfile and the model into a fresh build context."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DOCKERFILE, dest / "Dockerfile")
    shutil.copytree(spec.model_dir, dest / "model")
    return dest


def read_digest(metadata_file: Path) -> str:
    """The pushed manifest digest from buildx's --metadata-file."""
    try:
        meta = json.loads(Path(metadata_file).read_text())
        digest = meta["containerimage.digest"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ImageBuildError(
            f"the build finished but {metadata_file} holds no containerimage.digest; was the image pushed (--push)?"
        ) from None
    if not lock.DIGEST_RE.match(digest):
        raise ImageBuildError(f"buildx reported an unexpected digest {digest!r}")
    return digest


def build_and_push(
    spec: ImageBuild,
    *,
    lock_path: Path,
    lock_name: str,
    docker: str = "docker",
    dry_run: bool = False,
    echo: Callable[[str], None] = print,
) -> lock.LockedImage | None:
    """Builds, pushes and records the image; returns the lock entry (None on a dry run)."""
    check_model_dir(spec.model_dir)
    model_hash = model_sha256(spec.model_dir)
    args = build_args(spec, model_hash)
    with tempfile.TemporaryDirectory(prefix="servesweep-image-") as tmp:
        context = Path(tmp) / "context"
        metadata = Path(tmp) / "metadata.json"
        cmd = build_command(spec, args, context, metadata, docker=docker)
        if dry_run:
            echo(shlex.join(cmd))
            return None
        preflight(docker)
        prepare_context(spec, context)
        echo(f"building {spec.repository}:{spec.effective_tag} (this compiles TF Serving: hours)")
        r = subprocess.run(cmd)
        if r.returncode != 0:
            raise ImageBuildError(f"docker buildx build failed with exit status {r.returncode}")
        digest = read_digest(metadata)
    entry = lock.LockedImage(
        repository=spec.repository,
        digest=digest,
        tag=spec.effective_tag,
        build_args=args,
        model={"name": spec.model_name, "sha256": model_hash},
        built_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    lock.update_lock(lock_path, lock_name, entry)
    echo(f"pushed {entry.ref}; recorded as {lock_name!r} in {lock_path}")
    return entry
