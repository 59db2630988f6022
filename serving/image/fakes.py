"""For tests: stand-in `docker` and `buildah` executables that log their argv and fake a
push (the digest a registry would answer), so builder logic runs without either tool."""

from __future__ import annotations

import stat
from pathlib import Path


def _script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def fake_docker(tmp_path: Path, *, daemon: bool = True, buildx: bool = True, digest: str = "") -> tuple[Path, Path]:
    """(executable, its argv log): `docker info` and `docker buildx version` answer as
    asked; `buildx build --metadata-file F` writes ``digest`` to F."""
    log = tmp_path / "docker.log"
    script = _script(tmp_path / "bin" / "docker", (
        f'echo "$@" >> {log}\n'
        'if [ "$1" = info ]; then ' + ("echo 28.2; exit 0" if daemon else "exit 1") + "; fi\n"
        'if [ "$1 $2" = "buildx version" ]; then ' + ("exit 0" if buildx else "exit 1") + "; fi\n"
        'while [ $# -gt 0 ]; do if [ "$1" = --metadata-file ]; then '
        f'printf \'{{"containerimage.digest": "{digest}"}}\' > "$2"; fi; shift; done\n'))
    return script, log


def fake_buildah(tmp_path: Path, *, digest: str = "", pull_error: str = "", bud_status: int = 0) -> tuple[Path, Path]:
    """(executable, its argv log): `pull` fails with ``pull_error`` when given, `bud` exits
    ``bud_status``, `push --digestfile F` writes ``digest`` to F."""
    log = tmp_path / "buildah.log"
    script = _script(tmp_path / "bin" / "buildah", (
        f'echo "$@" >> {log}\n'
        'if [ "$1" = --version ]; then echo "buildah version 1.28.2 (image-spec 1.1.0-rc2)"; exit 0; fi\n'
        'while [ $# -gt 0 ]; do case "$1" in --storage-driver|--root|--runroot) shift 2;; *) break;; esac; done\n'
        'case "$1" in\n'
        '  pull) ' + (f"echo '{pull_error}' >&2; exit 125" if pull_error else "exit 0") + ";;\n"
        f"  bud) exit {bud_status};;\n"
        '  push) while [ $# -gt 0 ]; do if [ "$1" = --digestfile ]; then '
        f'printf "{digest}" > "$2"; fi; shift; done;;\n'
        "esac\n"))
    return script, log
