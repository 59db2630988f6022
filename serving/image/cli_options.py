"""What the image CLIs (`//serving:image`, `//loadgen:image`) share: the builder and
work-directory options, the builder choice said out loud, workspace-relative files, and
how they stop on an error."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import click

from serving.image import builder, lock
from tools.python.runpath import user_path


def workspace_file(p: str) -> Path:
    """A repository file (the image lock): relative paths are against the workspace root."""
    path = Path(p)
    if path.is_absolute():
        return path
    return Path(os.environ.get("BUILD_WORKSPACE_DIRECTORY", os.getcwd())) / path


def builder_options(f: Callable) -> Callable:
    """--builder and --work-dir."""
    f = click.option(
        "--work-dir", default=None, metavar="DIR",
        help="Keep buildah's storage and the build's caches here between builds (default: a temporary "
             "directory, removed after the build).")(f)
    return click.option(
        "--builder", "builder_name", type=click.Choice(builder.BUILDERS), default="auto", show_default=True,
        help="auto: docker buildx when a Docker daemon answers, else buildah (no daemon needed).")(f)


@contextlib.contextmanager
def work_dir(given: str | None) -> Iterator[Path]:
    """``given`` (created if missing), or a temporary directory removed afterwards."""
    if given:
        path = user_path(given)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="servesweep-image-") as tmp:
        yield Path(tmp)


def chosen_builder(name: str, work: Path, echo: Callable[[str], None]) -> builder.Builder:
    """The builder (buildah's storage under ``work``), said with the reason it was chosen."""
    chosen = builder.choose(name, storage=work / "buildah")
    echo(f"builder: {chosen.name}. {chosen.why}")
    return chosen


@contextlib.contextmanager
def stopping_cleanly(*errors: type[Exception]) -> Iterator[None]:
    """A build's known errors (``errors`` too) end the CLI with their message and exit
    status 2, Ctrl-C with 130; never a traceback."""
    try:
        yield
    except (builder.ImageBuildError, lock.ImageLockError, *errors) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("interrupted; the lock is unchanged", err=True)
        sys.exit(130)
