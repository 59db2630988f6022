"""The model a local sweep serves: exported on first use (TensorFlow runs in a child)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sweep.loop import SweepError

ARCHS = ("resnet50", "tiny")


def has_model(models: Path, name: str) -> bool:
    """Whether ``models/name`` holds a version directory (TF Serving's layout)."""
    model_dir = models / name
    return model_dir.is_dir() and any(p.name.isdigit() for p in model_dir.iterdir())


def ensure_model(models: Path, name: str, arch: str, echo: Callable[[str], None] = print) -> bool:
    """Export ``arch`` (random weights) into ``models/name/1`` unless a version is there.

    Runs ``//model:export`` (or ``python -m model.export`` outside Bazel) as a child, so
    this process never imports TensorFlow. Returns whether it exported; raises SweepError
    with the exporter's last lines when it fails.
    """
    if arch not in ARCHS:
        raise SweepError(f"unknown model architecture {arch!r}: use one of {', '.join(ARCHS)}")
    if has_model(models, name):
        return False
    echo(f"model {name!r} not found under {models}: exporting {arch} (random weights) ...")
    export = Path("model/export")
    cmd = [str(export)] if export.exists() else [sys.executable, "-m", "model.export"]
    cmd += ["--out", str(models), "--name", name, "--arch", arch]
    t0 = time.monotonic()
    result = subprocess.run(cmd, capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, check=False)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-5:])
        raise SweepError(f"model export failed:\n{tail}")
    echo(f"exported {name} in {time.monotonic() - t0:.0f} s")
    return True
