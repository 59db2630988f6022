"""Export a model as a TF Serving model directory: <out>/<name>/<version>/."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from model import signatures as sig


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    out: Path
    name: str = "resnet"
    version: int = 1
    arch: str = "resnet50"
    weights: Path | None = None
    seed: int = 0
    overwrite: bool = False


@dataclasses.dataclass(frozen=True)
class ExportResult:
    version_dir: Path
    bytes: int
    seconds: float
    tree_sha256: str


class ExportError(Exception):
    """A problem the user can fix (bad option, existing directory, bad weights file)."""


def tree_sha256(root: Path) -> str:
    """Content hash of a directory tree (relative paths and bytes), stable across machines."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _validate(options: ExportOptions) -> Path:
    if options.version < 1:
        raise ExportError(f"--version must be a positive integer, got {options.version}")
    if not options.name or "/" in options.name or ":" in options.name:
        raise ExportError(f"--name {options.name!r} is not a valid TF Serving model name")
    if options.weights is not None and not options.weights.is_file():
        raise ExportError(f"--weights {options.weights}: no such file")
    version_dir = options.out / options.name / str(options.version)
    if version_dir.exists() and not options.overwrite:
        raise ExportError(f"{version_dir} already exists (use --overwrite to replace it)")
    return version_dir


def export(options: ExportOptions, log: Callable[[str], None] = lambda _msg: None) -> ExportResult:
    """Build the network, save it with both signatures and the warm-up records."""
    version_dir = _validate(options)
    started = time.monotonic()
    import tensorflow as tf

    from model import graph, warmup

    log(f"building {options.arch} ({'weights ' + str(options.weights) if options.weights else 'random weights'})")
    try:
        network = graph.build_network(options.arch, str(options.weights) if options.weights else None, options.seed)
    except (ValueError, OSError) as err:
        raise ExportError(str(err)) from err
    servable = graph.Servable(network)
    tmp_dir = version_dir.with_name(f".{version_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    log(f"saving SavedModel to {version_dir}")
    try:
        tf.saved_model.save(servable, str(tmp_dir), signatures=servable.signatures())
        warmup.write(str(tmp_dir / sig.WARMUP_RELPATH), warmup.prediction_logs(options.name, options.seed))
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    info = {
        "schema": "servesweep.export/1",
        "arch": options.arch,
        "weights": options.weights.name if options.weights else None,
        "seed": options.seed,
        "tensorflow": tf.__version__,
        "signatures": [sig.DEFAULT_SIGNATURE, sig.BYTES_SIGNATURE],
    }
    (tmp_dir / sig.EXPORT_INFO_RELPATH).write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    if version_dir.exists():
        shutil.rmtree(version_dir)
    tmp_dir.rename(version_dir)  # atomic: TF Serving never sees a half-written version
    size = sum(p.stat().st_size for p in version_dir.rglob("*") if p.is_file())
    return ExportResult(version_dir, size, time.monotonic() - started, tree_sha256(version_dir))
