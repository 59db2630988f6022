"""Building an image from a context directory and pushing it: one abstraction, two builders.

``docker buildx build --push`` where a Docker daemon answers, Debian's ``buildah`` where
none does (buildah needs no daemon; it runs here with vfs storage and chroot isolation,
which work inside a container and without overlay support). Both take the same
``BuildRequest`` (a context directory holding its Dockerfile, the build arguments, where to
push) and hand back the manifest digest the registry stored; ``publish`` records it in the
image lock. ``//serving:image`` and ``//loadgen:image`` both go through here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from serving.image import lock

BUILDERS = ("auto", "buildx", "buildah")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
NOTHING_DONE = "nothing was pushed and the lock is unchanged"


class ImageBuildError(RuntimeError):
    """The image cannot be built or pushed here; the message says why and what to do."""


def check_repository(repository: str) -> None:
    """A repository to push to: REGISTRY/PATH, without tag or digest."""
    if not repository or "@" in repository or ":" in repository.rsplit("/", 1)[-1]:
        raise ImageBuildError(f"--repository {repository!r} must be REGISTRY/PATH without tag or digest")


def tree_sha256(root: Path) -> str:
    """A content hash of a directory tree: its files' relative paths and bytes."""
    root = Path(root)
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return "sha256:" + h.hexdigest()


def registry_host(repository: str) -> str:
    """The registry a repository lives in (Docker's rule: a first component with a dot, a
    colon or ``localhost`` is a host; anything else is on Docker Hub)."""
    first, _, rest = repository.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def is_loopback(repository: str) -> bool:
    """Whether the registry is on this machine (spoken to over plain HTTP)."""
    host = registry_host(repository)
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name in LOOPBACK_HOSTS


@dataclasses.dataclass(frozen=True)
class BuildRequest:
    """One image to build and push: ``context`` holds ``dockerfile`` and what it copies."""

    context: Path
    repository: str
    tag: str
    build_args: Mapping[str, str] = dataclasses.field(default_factory=dict)
    platform: str = "linux/amd64"
    dockerfile: str = "Dockerfile"

    def __post_init__(self) -> None:
        check_repository(self.repository)

    @property
    def target(self) -> str:
        return f"{self.repository}:{self.tag}"


class Builder(Protocol):
    """What builds and pushes: ``name`` and ``why`` (it was chosen) are for the user."""

    name: str
    why: str

    def commands(self, request: BuildRequest, work: Path) -> list[list[str]]:
        """The command lines ``build_and_push`` runs (``work``: a scratch directory)."""

    def check_pullable(self, refs: Sequence[str]) -> None:
        """Raises ImageBuildError naming the first base image that cannot be pulled."""

    def build_and_push(self, request: BuildRequest, work: Path, *, verify: Callable[[str], None] | None = None,
                       echo: Callable[[str], None] = print) -> str:
        """Builds, runs ``verify(local image)`` when the builder keeps the image locally
        before pushing, pushes, and returns the registry's manifest digest."""


def _run(cmd: list[str], what: str, echo: Callable[[str], None], env: Mapping[str, str] | None = None) -> None:
    echo("$ " + shlex.join(cmd))
    started = time.monotonic()
    r = subprocess.run(cmd, env=env)
    if r.returncode != 0:
        raise ImageBuildError(f"{what} failed with exit status {r.returncode}; {NOTHING_DONE}")
    echo(f"{what}: {time.monotonic() - started:.0f} s")


def _checked_digest(digest: str, source: str) -> str:
    if not lock.DIGEST_RE.match(digest):
        raise ImageBuildError(f"{source} holds {digest!r}, not a sha256:<64 hex> digest; {NOTHING_DONE}")
    return digest


def read_metadata_digest(metadata_file: Path) -> str:
    """The pushed manifest digest from buildx's ``--metadata-file``."""
    try:
        digest = json.loads(Path(metadata_file).read_text())["containerimage.digest"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ImageBuildError(f"the build finished but {metadata_file} holds no containerimage.digest; "
                              "was the image pushed (--push)?") from None
    return _checked_digest(str(digest), "buildx's metadata file")


def read_digest_file(digest_file: Path) -> str:
    """The pushed manifest digest from ``buildah push --digestfile``."""
    try:
        digest = Path(digest_file).read_text().strip()
    except OSError:
        raise ImageBuildError(f"buildah push wrote no digest file ({digest_file}); the push did not finish") from None
    return _checked_digest(digest, "buildah's digest file")


def _build_arg_flags(args: Mapping[str, str]) -> list[str]:
    return [flag for k in sorted(args) for flag in ("--build-arg", f"{k}={args[k]}")]


@dataclasses.dataclass(frozen=True)
class Buildx:
    """``docker buildx build --push``: needs a Docker daemon; the registry digest comes
    from ``--metadata-file``. It pushes as it builds, so the image is not run before."""

    docker: str = "docker"
    why: str = ""
    name: str = "docker buildx"

    def commands(self, request: BuildRequest, work: Path) -> list[list[str]]:
        return [[self.docker, "buildx", "build", "--platform", request.platform,
                 "--file", str(request.context / request.dockerfile), *_build_arg_flags(request.build_args),
                 "--tag", request.target, "--metadata-file", str(work / "metadata.json"), "--push",
                 str(request.context)]]

    def check_pullable(self, refs: Sequence[str]) -> None:
        """The daemon pulls the bases while it builds (and says so when it cannot)."""

    def build_and_push(self, request: BuildRequest, work: Path, *, verify: Callable[[str], None] | None = None,
                       echo: Callable[[str], None] = print) -> str:
        if verify is not None:
            echo("docker buildx pushes as it builds: the image is not run before it is pushed")
        (cmd,) = self.commands(request, work)
        _run(cmd, "docker buildx build", echo)
        return read_metadata_digest(work / "metadata.json")


@dataclasses.dataclass(frozen=True)
class Buildah:
    """Debian's ``buildah``, no daemon: ``bud`` with chroot isolation into vfs storage
    (under ``storage`` when given, so nothing outlives the build's directory), a layer per
    instruction as Docker makes them, then ``push --digestfile``. A loopback registry is
    spoken to over plain HTTP."""

    buildah: str = "buildah"
    storage: Path | None = None
    why: str = ""
    name: str = "buildah"

    def base(self) -> list[str]:
        cmd = [self.buildah, "--storage-driver", "vfs"]
        if self.storage is not None:
            cmd += ["--root", str(self.storage / "root"), "--runroot", str(self.storage / "runroot")]
        return cmd

    def env(self) -> dict[str, str] | None:
        """Big temporary files (layers being pushed) go under ``storage`` too."""
        if self.storage is None:
            return None
        (self.storage / "tmp").mkdir(parents=True, exist_ok=True)
        return {**os.environ, "TMPDIR": str(self.storage / "tmp")}

    def commands(self, request: BuildRequest, work: Path) -> list[list[str]]:
        tls = ["--tls-verify=false"] if is_loopback(request.repository) else []
        return [
            [*self.base(), "bud", "--isolation", "chroot", "--layers", "--platform", request.platform,
             "--file", str(request.context / request.dockerfile), *_build_arg_flags(request.build_args),
             "--tag", request.target, str(request.context)],
            [*self.base(), "push", *tls, "--digestfile", str(work / "digest"), request.target,
             f"docker://{request.target}"],
        ]

    def check_pullable(self, refs: Sequence[str]) -> None:
        for ref in refs:
            r = subprocess.run([*self.base(), "pull", "--quiet", ref], capture_output=True, text=True, env=self.env())
            if r.returncode != 0:
                said = (r.stderr.strip().splitlines() or ["no message"])[-1]
                raise ImageBuildError(f"buildah cannot pull {ref} ({said})")

    def build_and_push(self, request: BuildRequest, work: Path, *, verify: Callable[[str], None] | None = None,
                       echo: Callable[[str], None] = print) -> str:
        bud, push = self.commands(request, work)
        _run(bud, "buildah bud", echo, self.env())
        if verify is not None:
            verify(request.target)
        if is_loopback(request.repository):
            echo(f"pushing over plain HTTP: {registry_host(request.repository)} is a loopback registry")
        _run(push, "buildah push", echo, self.env())
        return read_digest_file(work / "digest")

    def _out(self, *args: str) -> str:
        r = subprocess.run([*self.base(), *args], capture_output=True, text=True, env=self.env())
        if r.returncode != 0:
            raise ImageBuildError(f"buildah {args[0]} failed: {r.stderr.strip()}")
        return r.stdout.strip()

    def config(self, image: str) -> dict[str, Any]:
        """The image's OCI config (User, Env, WorkingDir, Entrypoint, Cmd, ExposedPorts ...)."""
        return json.loads(self._out("inspect", "--type", "image", image))["OCIv1"]["config"]

    def size(self, image: str) -> str:
        """The image's size in buildah's storage (uncompressed), as buildah prints it."""
        return json.loads(self._out("images", "--json", image))[0]["size"]

    @contextlib.contextmanager
    def mounted(self, image: str) -> Iterator[Path]:
        """The image's root filesystem, mounted (a working container of it) while in the block."""
        container = self._out("from", "--pull=never", "--quiet", image)
        try:
            yield Path(self._out("mount", container))
        finally:
            with contextlib.suppress(ImageBuildError):
                self._out("umount", container)
            self._out("rm", container)


def _buildx_problems(docker: str) -> list[str]:
    exe = shutil.which(docker)
    if exe is None:
        return [f"no `{docker}` on PATH"]
    problems = []
    if subprocess.run([exe, "buildx", "version"], capture_output=True, text=True).returncode != 0:
        problems.append("the buildx plugin is not installed (`docker buildx version` failed)")
    r = subprocess.run([exe, "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True)
    if r.returncode != 0 or not r.stdout.strip():
        host = os.environ.get("DOCKER_HOST", "the default socket")
        problems.append(f"no Docker daemon answers at {host} (`docker info` failed)")
    return problems


def _buildah_version(buildah: str) -> str | None:
    exe = shutil.which(buildah)
    if exe is None:
        return None
    r = subprocess.run([exe, "--version"], capture_output=True, text=True)
    return " ".join(r.stdout.split()[:3]) if r.returncode == 0 and r.stdout.strip() else None


def choose(prefer: str = "auto", *, storage: Path | None = None, docker: str = "docker",
           buildah: str = "buildah") -> Builder:
    """The builder to use: ``prefer`` when it is usable, else (``auto``) docker buildx when a
    daemon answers, else buildah. Its ``why`` says what was found."""
    if prefer not in BUILDERS:
        raise ImageBuildError(f"builder {prefer!r} is not one of {', '.join(BUILDERS)}")
    buildx_problems = _buildx_problems(docker) if prefer in ("auto", "buildx") else []
    if prefer == "buildx" or (prefer == "auto" and not buildx_problems):
        if buildx_problems:
            raise ImageBuildError("cannot build the image with docker buildx: " + "; ".join(buildx_problems)
                                  + f"; {NOTHING_DONE}")
        why = "--builder buildx" if prefer == "buildx" else "a Docker daemon with buildx answers"
        return Buildx(docker=docker, why=why)
    version = _buildah_version(buildah)
    if version is None:
        if prefer == "buildah":
            raise ImageBuildError(f"cannot build the image with buildah: no working `{buildah}` on PATH "
                                  f"(Debian: apt-get install buildah); {NOTHING_DONE}")
        raise ImageBuildError(
            "cannot build the image: docker buildx is not usable (" + "; ".join(buildx_problems) + f") and no "
            f"`{buildah}` is on PATH. Install Docker with buildx and a daemon, or buildah (Debian: apt-get "
            f"install buildah; it needs no daemon), and log in to the registry; {NOTHING_DONE}")
    why = "--builder buildah" if prefer == "buildah" else f"docker buildx is not usable: {'; '.join(buildx_problems)}"
    return Buildah(buildah=buildah, storage=storage,
                   why=f"{why}. Found {version}, which needs no daemon: vfs storage, chroot isolation")


def now_utc() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def publish(builder: Builder, request: BuildRequest, work: Path, *, lock_path: Path, lock_name: str,
            model: Mapping[str, str] | None = None, verify: Callable[[str], None] | None = None,
            echo: Callable[[str], None] = print) -> lock.LockedImage:
    """Builds and pushes ``request`` with ``builder`` and records the pushed digest under
    ``lock_name`` in ``lock_path`` (with the build arguments); the lock changes only once
    the registry has the image."""
    digest = builder.build_and_push(request, work, verify=verify, echo=echo)
    entry = lock.LockedImage(repository=request.repository, digest=digest, tag=request.tag,
                             build_args=dict(request.build_args), model=dict(model or {}), built_at=now_utc())
    lock.update_lock(lock_path, lock_name, entry)
    echo(f"pushed {entry.ref}; recorded as {lock_name!r} in {lock_path}")
    return entry
