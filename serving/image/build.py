"""Builds and pushes the CPU-optimised TF Serving image and records its digest.

Library half of `bazel run //serving:image`: the build arguments are rendered from an
`ImageBuild` record, the model directory is hashed, the image is built and pushed by a
builder (`serving.image.builder`: docker buildx, or buildah without a daemon), and the
registry digest is written to the image lock (`deploy/images.lock.json`) with the build
arguments and the model's hash.
"""

from __future__ import annotations

import dataclasses
import shlex
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from serving.image import builder as builders
from serving.image import lock
from serving.image.builder import ImageBuildError

DOCKERFILE = Path(__file__).with_name("Dockerfile")

# Named CPU build presets (TF Serving's .bazelrc: release = -mavx -msse4.2).
CPU_OPTIONS = {
    "avx2": "--config=release --copt=-mavx2 --copt=-mfma",
    "native": "--config=nativeopt",
    "release": "--config=release",
}


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
    runtime_base: str = "docker.io/library/ubuntu:22.04"
    platform: str = "linux/amd64"
    tag: str = ""

    def __post_init__(self) -> None:
        builders.check_repository(self.repository)
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
    return builders.tree_sha256(model_dir)


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


def devel_image(spec: ImageBuild) -> str:
    """TF Serving's devel image: the sources and toolchain the image compiles from (fully
    qualified, as builders without Docker's short-name default need)."""
    return f"docker.io/tensorflow/serving:{spec.tfs_version}-devel"


def build_args(spec: ImageBuild, model_hash: str) -> dict[str, str]:
    """The Dockerfile's build arguments for ``spec``."""
    return {
        "MODEL_NAME": spec.model_name,
        "MODEL_SHA256": model_hash,
        "RUNTIME_BASE": spec.runtime_base,
        "TFS_DEVEL_IMAGE": devel_image(spec),
        "TFS_VERSION": spec.tfs_version,
        "TF_SERVING_BAZEL_OPTIONS": spec.bazel_options,
        "TF_SERVING_BUILD_OPTIONS": spec.build_options,
    }


def prepare_context(spec: ImageBuild, dest: Path) -> Path:
    """Copies the Dockerfile and the model into a fresh build context."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DOCKERFILE, dest / "Dockerfile")
    shutil.copytree(spec.model_dir, dest / "model")
    return dest




def build_and_push(
    spec: ImageBuild,
    *,
    lock_path: Path,
    lock_name: str,
    builder: builders.Builder,
    dry_run: bool = False,
    echo: Callable[[str], None] = print,
) -> lock.LockedImage | None:
    """Builds, pushes and records the image; returns the lock entry (None on a dry run)."""
    check_model_dir(spec.model_dir)
    model_hash = model_sha256(spec.model_dir)
    with tempfile.TemporaryDirectory(prefix="servesweep-image-") as tmp:
        request = builders.BuildRequest(context=Path(tmp) / "context", repository=spec.repository,
                                        tag=spec.effective_tag, build_args=build_args(spec, model_hash),
                                        platform=spec.platform)
        if dry_run:
            for cmd in builder.commands(request, Path(tmp)):
                echo(shlex.join(cmd))
            return None
        bases = (devel_image(spec), spec.runtime_base)
        try:
            builder.check_pullable(bases)
        except ImageBuildError as e:
            raise ImageBuildError(
                f"cannot build the image: {e}. The TF Serving image compiles tensorflow_model_server FROM "
                f"{bases[0]} (TF Serving's sources and toolchain) and runs FROM {bases[1]}; where their "
                "registry cannot be reached (a machine that reaches only PyPI and Debian, say) this image "
                f"cannot be built: build it where it can; {builders.NOTHING_DONE}") from None
        prepare_context(spec, request.context)
        echo(f"building {request.target} with {builder.name} (this compiles TF Serving: hours)")
        return builders.publish(builder, request, Path(tmp), lock_path=lock_path, lock_name=lock_name,
                                model={"name": spec.model_name, "sha256": model_hash}, echo=echo)
