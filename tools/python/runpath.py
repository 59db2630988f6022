"""Paths a user typed, under `bazel run` or not.

`bazel run` starts programs in their runfiles tree; Bazel passes the directory the user
ran it from as $BUILD_WORKING_DIRECTORY. Every CLI resolves user-given paths with this.
"""

from __future__ import annotations

import os
from pathlib import Path


def user_path(value: str | os.PathLike[str]) -> Path:
    """``value`` (``~`` expanded) made absolute against where the user ran the command."""
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    return Path(os.environ.get("BUILD_WORKING_DIRECTORY") or os.getcwd(), path).absolute()
