"""The image lock: which pushed image (by registry digest) each logical image name means.

`deploy/images.lock.json` is written by the image build driver after a push and read by
the deploy renderer, which pins every Deployment to the recorded digest.  The file is
versioned; readers reject a schema they do not know.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SCHEMA = "servesweep.images-lock/1"
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
# A reference pinned by digest: "<repository>@sha256:<64 hex>", optionally with a tag
# before the "@" ("repo:tag@sha256:..."), which the registry ignores.
PINNED_REF_RE = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")


class ImageLockError(ValueError):
    """The lock file is missing, malformed or does not hold the image asked for."""


@dataclasses.dataclass(frozen=True)
class LockedImage:
    """One pushed image: where it lives, its digest and how it was built."""

    repository: str
    digest: str
    tag: str = ""
    build_args: Mapping[str, str] = dataclasses.field(default_factory=dict)
    model: Mapping[str, str] = dataclasses.field(default_factory=dict)
    built_at: str = ""

    def __post_init__(self) -> None:
        if not self.repository or "@" in self.repository:
            raise ImageLockError(f"bad repository {self.repository!r}")
        if not DIGEST_RE.match(self.digest):
            raise ImageLockError(f"bad digest {self.digest!r} for {self.repository}: expected sha256:<64 hex>")

    @property
    def ref(self) -> str:
        """The digest-pinned reference, e.g. ``registry/repo@sha256:...``."""
        return f"{self.repository}@{self.digest}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "tag": self.tag,
            "digest": self.digest,
            "ref": self.ref,
            "build_args": dict(sorted(self.build_args.items())),
            "model": dict(sorted(self.model.items())),
            "built_at": self.built_at,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LockedImage:
        try:
            return cls(
                repository=str(d["repository"]),
                digest=str(d["digest"]),
                tag=str(d.get("tag", "")),
                build_args={str(k): str(v) for k, v in dict(d.get("build_args", {})).items()},
                model={str(k): str(v) for k, v in dict(d.get("model", {})).items()},
                built_at=str(d.get("built_at", "")),
            )
        except KeyError as e:
            raise ImageLockError(f"image entry lacks field {e.args[0]!r}") from None


def is_pinned(ref: str) -> bool:
    """True when ``ref`` names an image by registry digest."""
    return bool(PINNED_REF_RE.match(ref))


def read_lock(path: str | os.PathLike[str]) -> dict[str, LockedImage]:
    """Reads the lock; a missing file is an empty lock."""
    p = Path(path)
    if not p.exists():
        return {}
    try:
        doc = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ImageLockError(f"{p}: not JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        got = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise ImageLockError(f"{p}: schema {got!r} is not {SCHEMA!r}")
    images = doc.get("images", {})
    if not isinstance(images, dict):
        raise ImageLockError(f"{p}: 'images' must be a mapping")
    out: dict[str, LockedImage] = {}
    for name, entry in images.items():
        if not isinstance(entry, dict):
            raise ImageLockError(f"{p}: image {name!r} must be a mapping")
        try:
            out[name] = LockedImage.from_dict(entry)
        except ImageLockError as e:
            raise ImageLockError(f"{p}: image {name!r}: {e}") from None
    return out


def render_lock(images: Mapping[str, LockedImage]) -> str:
    """The lock file's text: sorted keys, stable across runs."""
    doc = {
        "schema": SCHEMA,
        "images": {name: images[name].to_dict() for name in sorted(images)},
    }
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def write_lock(path: str | os.PathLike[str], images: Mapping[str, LockedImage]) -> None:
    """Writes the lock atomically (temp file + rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=p.name, dir=p.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(render_lock(images))
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def update_lock(path: str | os.PathLike[str], name: str, image: LockedImage) -> None:
    """Records ``image`` under ``name``, keeping the other entries."""
    images = read_lock(path)
    images[name] = image
    write_lock(path, images)


def resolve(images: Mapping[str, LockedImage], name: str, *, lock_path: str = "") -> LockedImage:
    """The locked image called ``name``, or a clear error saying how to make it."""
    try:
        return images[name]
    except KeyError:
        where = f" in {lock_path}" if lock_path else ""
        known = ", ".join(sorted(images)) or "none"
        raise ImageLockError(
            f"no image {name!r}{where} (locked: {known}); build and push it with "
            f"`bazel run //serving:image -- --name {name} --repository REGISTRY/REPO "
            f"--model-dir DIR`, which records its digest"
        ) from None


def unchanged(images: Mapping[str, LockedImage], name: str, recorded_ref: str, *, lock_path: str = "") -> LockedImage:
    """The locked image ``name`` when it is still ``recorded_ref`` (the image a recorded run
    used); else ImageLockError naming both, so a rerun never measures with another image."""
    now = resolve(images, name, lock_path=lock_path)
    if now.ref != recorded_ref:
        where = f" in {lock_path}" if lock_path else ""
        raise ImageLockError(
            f"the image locked as {name!r}{where} changed since the run was recorded: it ran {recorded_ref}, "
            f"the lock now holds {now.ref}. A rerun would measure with another image: restore the lock the "
            "run was recorded with, or start a new sweep"
        )
    return now
