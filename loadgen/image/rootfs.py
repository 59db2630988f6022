"""The generator image's three layers, made on the build host: a Debian minbase root
filesystem with python3 (debootstrap), the generator's Python packages (pip, hash-pinned,
wheels for the image's Python and glibc), and the generator's own sources; each written
as a tar with sorted entries and numeric owners (a layer that did not change is the same
bytes, so a registry already holds it).

debootstrap and chroot need root. The Debian base and the packages are cached under the
build's work directory, keyed on what makes them, so a second build in one work directory
takes seconds where the first takes minutes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from serving.image.builder import ImageBuildError

SUITE = "bookworm"
PYTHON = "3.11"  # bookworm's python3
GLIBC_MINOR = 36  # bookworm's glibc 2.36: the newest manylinux wheels its python can load
DEBIAN_PACKAGES = ("python3", "ca-certificates")  # ca-certificates: https:// targets
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# image platform -> (Debian architecture, wheel machine); debootstrap runs the target's
# binaries, so only the build host's own architecture is supported
ARCHES = {"linux/amd64": ("amd64", "x86_64")}
# removed from the base (contents only): what neither python nor apt needs to run
TRIMMED = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
           "var/cache/apt", "var/lib/apt/lists", "var/log")
NO_CONTENTS = ("dev", "proc", "sys")  # the runtime provides them
APP_DIR = "opt/servesweep/app"
LIB_DIR = "opt/servesweep/lib"
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")
FIXED_MTIME = 946684800  # 2000-01-01: the mtime of every file of the app and python layers


def machine(platform: str) -> tuple[str, str]:
    """(Debian architecture, wheel machine) of an image platform."""
    try:
        return ARCHES[platform]
    except KeyError:
        raise ImageBuildError(f"platform {platform!r}: the generator image is built for "
                              f"{', '.join(ARCHES)} only (debootstrap runs the target's binaries)") from None


def apt_mirror(apt_dir: Path = Path("/etc/apt"), suite: str = SUITE) -> str:
    """The Debian archive this machine's apt uses for ``suite`` (deb822 ``*.sources`` or
    one-line ``sources.list``), else deb.debian.org."""
    stanzas: list[dict[str, str]] = []
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        for block in re.split(r"\n\s*\n", path.read_text()):
            fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", block, re.M))
            stanzas.append(fields)
    lists = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    for path in (p for p in lists if p.is_file()):
        for line in path.read_text().splitlines():
            words = re.sub(r"\[[^\]]*\]", "", line.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] == "deb":
                stanzas.append({"Types": "deb", "URIs": words[1], "Suites": words[2]})
    for fields in stanzas:
        if "deb" in fields.get("Types", "").split() and suite in fields.get("Suites", "").split():
            uris = fields.get("URIs", "").split()
            if uris:
                return uris[0]
    return DEFAULT_MIRROR


def debootstrap_command(target: Path, mirror: str, arch: str, suite: str = SUITE,
                        packages: Iterable[str] = DEBIAN_PACKAGES) -> list[str]:
    return ["debootstrap", "--variant=minbase", f"--arch={arch}", f"--include={','.join(packages)}",
            suite, str(target), mirror]


def platform_tags(wheel_machine: str, glibc_minor: int = GLIBC_MINOR) -> list[str]:
    """The manylinux platforms whose wheels run on the image (pip takes them literally:
    every glibc from the image's down, and the legacy aliases)."""
    tags = [f"manylinux_2_{m}_{wheel_machine}" for m in range(glibc_minor, 4, -1)]
    return tags + [f"{legacy}_{wheel_machine}" for legacy in ("manylinux2014", "manylinux2010", "manylinux1")]


def pip_command(requirements: Path, target: Path, wheel_machine: str, python: str = PYTHON) -> list[str]:
    """pip installing the lock's lines into ``target`` for the image's interpreter: wheels
    only, every file checked against its hash, nothing more than the lines."""
    platforms = [f"--platform={t}" for t in platform_tags(wheel_machine)]
    return [sys.executable, "-m", "pip", "install", "--target", str(target), "--require-hashes", "--no-deps",
            "--only-binary=:all:", *platforms, "--python-version", python, "--implementation", "cp",
            "--abi", "cp" + python.replace(".", ""), "--no-compile", "--no-cache-dir",
            "--disable-pip-version-check", "--no-input", "--progress-bar=off", "--quiet", "-r", str(requirements)]


def sbin_env() -> dict[str, str]:
    """The environment with the system directories on PATH: debootstrap, chroot and mount
    live in /usr/sbin, which a user's (or Bazel's) PATH may leave out."""
    path = os.environ.get("PATH", "").split(os.pathsep)
    extra = [d for d in SBIN_DIRS if d not in path]
    return {**os.environ, "PATH": os.pathsep.join([p for p in path if p] + extra)}


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def _cached(cache: Path, name: str, make: Callable[[Path], None], echo: Callable[[str], None]) -> Path:
    """``cache/name``, made by ``make(dir)`` unless a finished one is there."""
    done = cache / name
    if done.is_dir():
        echo(f"reusing {done.name} from {cache}")
        return done
    partial = cache / f"{name}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    started = time.monotonic()
    make(partial)
    partial.rename(done)
    echo(f"made {name} in {time.monotonic() - started:.0f} s")
    return done


def _run(cmd: list[str], what: str, echo: Callable[[str], None]) -> None:
    echo("$ " + shlex.join(cmd))
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=sbin_env())
    if r.returncode != 0:
        raise ImageBuildError(f"{what} failed (exit status {r.returncode}):\n{r.stdout[-3000:]}")


def trim(rootfs: Path) -> None:
    for rel in TRIMMED:
        d = rootfs / rel
        for child in d.iterdir() if d.is_dir() else ():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()


def debian_base(cache: Path, mirror: str, arch: str, echo: Callable[[str], None]) -> Path:
    """The Debian minbase root filesystem with python3, trimmed (``cache/debian-.../rootfs``)."""
    if os.geteuid() != 0 or shutil.which("debootstrap", path=sbin_env()["PATH"]) is None:
        raise ImageBuildError("the generator image's Debian base is made with debootstrap, which needs root "
                              "and `debootstrap` on PATH (Debian: apt-get install debootstrap)")

    def make(d: Path) -> None:
        echo(f"debootstrap: Debian {SUITE} minbase + {', '.join(DEBIAN_PACKAGES)} from {mirror} (a few minutes)")
        _run(debootstrap_command(d / "rootfs", mirror, arch), "debootstrap", echo)
        trim(d / "rootfs")

    return _cached(cache, f"debian-{SUITE}-{arch}-{_key(mirror, DEBIAN_PACKAGES)}", make, echo) / "rootfs"


def package_version(rootfs: Path, package: str) -> str:
    """The installed version of a Debian package in ``rootfs`` (dpkg's status file)."""
    status = (rootfs / "var/lib/dpkg/status").read_text()
    for block in status.split("\n\n"):
        if re.search(rf"^Package: {re.escape(package)}$", block, re.M) and "Status: install ok installed" in block:
            return re.search(r"^Version: (.*)$", block, re.M).group(1)
    raise ImageBuildError(f"the Debian base has no {package} installed")


def python_packages(cache: Path, requirements_text: str, wheel_machine: str, echo: Callable[[str], None]) -> Path:
    """The lock lines installed for the image's python (``cache/python-...``, holding
    ``opt/servesweep/lib``)."""
    def make(d: Path) -> None:
        requirements = d / "requirements.txt"
        requirements.write_text(requirements_text)
        _run(pip_command(requirements, d / "tree" / LIB_DIR, wheel_machine), "pip install", echo)

    return _cached(cache, f"python-{wheel_machine}-{_key(requirements_text, PYTHON)}", make, echo) / "tree"


def stage_sources(runfiles: Path, paths: Iterable[str], dest: Path) -> Path:
    """Copies the workspace-relative ``paths`` (from ``runfiles``) under ``dest/opt/servesweep/app``."""
    for rel in paths:
        target = dest / APP_DIR / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(runfiles / rel, target)
    return dest


def write_tar(out: Path, root: Path, *, mtime: int | None = None,
              no_contents: Iterable[str] = ()) -> int:
    """``root``'s tree as the tar ``out`` (its paths relative to ``root``): sorted entries,
    numeric owners, no device nodes, nothing under ``no_contents``; with ``mtime``, every
    entry gets it and root's owner. Returns the tar's size in bytes."""
    skip = {Path(p) for p in no_contents}
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel_dir = Path(dirpath).relative_to(root)
            if rel_dir in skip:
                dirnames.clear()
                continue
            for name in sorted(dirnames + filenames):
                path = Path(dirpath) / name
                info = tar.gettarinfo(str(path), arcname=(rel_dir / name).as_posix())
                if not (info.isreg() or info.isdir() or info.issym() or info.islnk()):
                    continue  # device nodes, fifos, sockets
                info.uname = info.gname = ""
                if mtime is not None:
                    info.mtime, info.uid, info.gid = mtime, 0, 0
                if info.isreg():
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
    return out.stat().st_size
