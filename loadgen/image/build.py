"""Builds and pushes the load generator's image and records its digest.

Library half of `bazel run //loadgen:image`: the context (``Dockerfile`` and the three
layers of ``loadgen.image.rootfs``) is assembled from the Python files ``//loadgen:agent``
imports (the ``agent_sources`` listing Bazel writes) and their share of the lock, built and
pushed by the shared builder (``serving.image.builder``), run before the push when the
builder keeps it locally (``loadgen.image.smoke``), and locked under
``formats.agent.IMAGE_LOCK_NAME``, which the generators' Job is rendered from.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shlex
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from loadgen.image import requirements, rootfs, smoke
from serving.image import builder as builders
from serving.image import lock

DOCKERFILE = Path(__file__).with_name("Dockerfile")
LISTING = "loadgen/image/agent_sources.txt"  # written by Bazel (py_sources), in runfiles
LOCKFILE = "requirements_lock.txt"


@dataclasses.dataclass(frozen=True)
class GeneratorImage:
    """Where the image goes and what it is made from; echoed into the lock."""

    repository: str
    tag: str = ""  # default: from the content hashes
    mirror: str = ""  # the Debian archive; default: the one apt uses here
    platform: str = "linux/amd64"

    def __post_init__(self) -> None:
        builders.check_repository(self.repository)
        rootfs.machine(self.platform)


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What goes in: the listed sources (path -> text) and their share of the lock."""

    runfiles: Path
    files: Mapping[str, str]
    subset: requirements.Subset
    pins: tuple[str, ...]

    @property
    def sources_sha256(self) -> str:
        h = hashlib.sha256()
        for path in sorted(self.files):
            h.update(path.encode() + b"\0" + hashlib.sha256(self.files[path].encode()).digest())
        return "sha256:" + h.hexdigest()

    def tag(self) -> str:
        both = hashlib.sha256((self.sources_sha256 + self.subset.sha256).encode()).hexdigest()
        return f"{rootfs.SUITE}-{both[:12]}"


def runfiles_root() -> Path:
    """The workspace root in this program's runfiles (where the listing and sources are)."""
    return Path(__file__).absolute().parents[2]


def read_inputs(runfiles: Path) -> Inputs:
    """The agent's sources as Bazel listed them, and what they need of the lock."""
    paths = (runfiles / LISTING).read_text().split()
    files = {p: (runfiles / p).read_text() for p in paths}
    lock_text = (runfiles / LOCKFILE).read_text()
    subset = requirements.subset(lock_text, files)
    return Inputs(runfiles, files, subset, tuple(subset.pins(requirements.parse_lock(lock_text))))


def build_args(inputs: Inputs, debian_python: str) -> dict[str, str]:
    """The Dockerfile's build arguments (its labels), recorded in the lock too."""
    return {
        "DEBIAN_PYTHON": debian_python,
        "DEBIAN_SUITE": rootfs.SUITE,
        "PYTHON_PACKAGES": " ".join(inputs.pins),
        "REQUIREMENTS_SHA256": inputs.subset.sha256,
        "SOURCES_SHA256": inputs.sources_sha256,
    }


def assemble(spec: GeneratorImage, inputs: Inputs, work: Path, echo: Callable[[str], None]) -> builders.BuildRequest:
    """The build context under ``work/context``: the Dockerfile and base/python/app tars."""
    arch, wheel_machine = rootfs.machine(spec.platform)
    cache = work / "cache"
    base = rootfs.debian_base(cache, spec.mirror or rootfs.apt_mirror(), arch, echo)
    packages = rootfs.python_packages(cache, inputs.subset.text, wheel_machine, echo)
    context = work / "context"
    for stale in (context, work / "app"):
        if stale.exists():
            shutil.rmtree(stale)
    context.mkdir(parents=True)
    app = rootfs.stage_sources(inputs.runfiles, sorted(inputs.files), work / "app")
    shutil.copyfile(DOCKERFILE, context / "Dockerfile")
    sizes = {
        "base.tar": rootfs.write_tar(context / "base.tar", base, no_contents=rootfs.NO_CONTENTS),
        "python.tar": rootfs.write_tar(context / "python.tar", packages, mtime=rootfs.FIXED_MTIME),
        "app.tar": rootfs.write_tar(context / "app.tar", app, mtime=rootfs.FIXED_MTIME),
    }
    echo("layers: " + ", ".join(f"{name} {size / 2**20:.1f} MiB" for name, size in sizes.items()))
    return builders.BuildRequest(context=context, repository=spec.repository, tag=spec.tag or inputs.tag(),
                                 build_args=build_args(inputs, rootfs.package_version(base, "python3.11")),
                                 platform=spec.platform)


def describe(inputs: Inputs, echo: Callable[[str], None]) -> None:
    echo(f"sources: {len(inputs.files)} files that //loadgen:agent imports ({inputs.sources_sha256[:19]})")
    echo(f"python packages ({len(inputs.pins)}, hash-pinned from {LOCKFILE}): {' '.join(inputs.pins)}")


def build_and_push(spec: GeneratorImage, inputs: Inputs, work: Path, *, builder: builders.Builder,
                   lock_path: Path, lock_name: str, run_first: bool = True, dry_run: bool = False,
                   echo: Callable[[str], None] = print) -> lock.LockedImage | None:
    """Assembles, builds, (with buildah) runs the agent from the image, pushes and locks
    it; returns the lock entry (None on a dry run)."""
    describe(inputs, echo)
    if dry_run:
        arch, wheel_machine = rootfs.machine(spec.platform)
        echo(shlex.join(rootfs.debootstrap_command(work / "rootfs", spec.mirror or rootfs.apt_mirror(), arch)))
        echo(shlex.join(rootfs.pip_command(work / "requirements.txt", work / rootfs.LIB_DIR, wheel_machine)))
        request = builders.BuildRequest(context=work / "context", repository=spec.repository,
                                        tag=spec.tag or inputs.tag(), platform=spec.platform)
        for cmd in builder.commands(request, work):
            echo(shlex.join(cmd))
        return None
    started = time.monotonic()
    request = assemble(spec, inputs, work, echo)
    verify = None
    if run_first and isinstance(builder, builders.Buildah):
        def verify(image: str) -> None:
            echo(f"image size: {builder.size(image)} (uncompressed)")
            echo(smoke.check(builder, image, work / "smoke.log"))
    entry = builders.publish(builder, request, work, lock_path=lock_path, lock_name=lock_name, verify=verify,
                             echo=echo)
    echo(f"built and pushed in {time.monotonic() - started:.0f} s")
    return entry
