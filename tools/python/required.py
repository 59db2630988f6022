"""For tests: a tool a test needs from the machine (kubectl, chromium). Missing, the test
is skipped on a developer's machine and fails under CI=true, where it must run."""

from __future__ import annotations

import os
import shutil

import pytest


def required_tool(*names: str, what: str, install: str, path: str | None = None) -> str:
    """The path of the first of ``names`` on PATH (or ``path``); else skip (fail under
    CI=true), saying ``what`` is missing and how to ``install`` it."""
    for name in names:
        found = shutil.which(name, path=path)
        if found:
            return found
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} not on PATH, and CI=true: CI's machine must provide it ({install})")
    pytest.skip(f"{what} not on PATH ({install}); required in CI")
