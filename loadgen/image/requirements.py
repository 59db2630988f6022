"""The generator's share of the hash-pinned lock: what the image's Python sources import,
and what that needs, as lines of ``requirements_lock.txt`` (hashes kept verbatim).

Nothing is listed by hand. The third-party modules the sources import (every ``import``,
at any depth: an optional one must be installed too) are mapped to the distributions that
provide them in the running interpreter (the venv installed from the same lock), and the
lock's own ``# via`` lines give the dependency edges to close over.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import importlib.metadata as md
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

_ENTRY_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==")


class RequirementsError(ValueError):
    """The lock cannot be read, or a source imports what the lock does not provide."""


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclasses.dataclass(frozen=True)
class Locked:
    """One entry of the lock: its requirement lines (``name==version`` and its hashes) and
    the entries that need it (``# via``; the requirements file itself is left out)."""

    name: str
    lines: tuple[str, ...]
    via: frozenset[str]


def parse_lock(text: str) -> dict[str, Locked]:
    """The lock's entries by normalized name (``uv pip compile --generate-hashes`` output)."""
    entries: dict[str, Locked] = {}
    name, lines, via = None, [], set()

    def close() -> None:
        if name is not None:
            entries[name] = Locked(name, tuple(lines), frozenset(via))

    for raw in text.splitlines():
        stripped = raw.strip()
        match = _ENTRY_RE.match(raw)
        if match:
            close()
            name, lines, via = normalize(match.group(1)), [raw.rstrip()], set()
        elif name is None or not stripped:
            continue
        elif stripped.startswith("--hash="):
            lines.append(raw.rstrip())
        elif stripped.startswith("# via"):
            via.update(v for v in stripped[len("# via"):].split() if v)
        elif stripped.startswith("#") and stripped.lstrip("#").strip():  # "#   name" under "# via"
            via.add(stripped.lstrip("#").strip())
    close()
    for entry in entries.values():
        object.__setattr__(entry, "via", frozenset(normalize(v) for v in entry.via if not v.startswith("-r")))
    if not entries:
        raise RequirementsError("the lock holds no name==version entries")
    return entries


def closure(entries: Mapping[str, Locked], roots: Iterable[str]) -> list[str]:
    """``roots`` and everything they need, by the lock's ``# via`` edges (sorted names)."""
    needs: dict[str, set[str]] = {}
    for entry in entries.values():
        for parent in entry.via:
            needs.setdefault(parent, set()).add(entry.name)
    todo = [normalize(r) for r in roots]
    missing = sorted(r for r in todo if r not in entries)
    if missing:
        raise RequirementsError(f"not in the lock: {', '.join(missing)}")
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(needs.get(name, ()))
    return sorted(seen)


def first_party(paths: Iterable[str]) -> set[str]:
    """Top-level package names of workspace-relative source paths."""
    return {Path(p).parts[0].removesuffix(".py") for p in paths}


def imported_modules(source: str) -> set[str]:
    """Absolute dotted names ``source`` imports anywhere (relative imports are first-party)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def third_party_imports(files: Mapping[str, str]) -> dict[str, set[str]]:
    """Third-party dotted module name -> the files importing it, for sources ``files``
    (workspace-relative path -> text)."""
    ours = first_party(files)
    found: dict[str, set[str]] = {}
    for path, text in files.items():
        for name in imported_modules(text):
            top = name.split(".")[0]
            if top not in ours and top not in sys.stdlib_module_names:
                found.setdefault(name, set()).add(path)
    return found


def _provides(dist: str, module: str) -> bool:
    prefix = module.replace(".", "/")
    return any(str(f).startswith(prefix) for f in md.distribution(dist).files or ())


def distributions_of(modules: Mapping[str, set[str]],
                     index: Mapping[str, list[str]] | None = None) -> dict[str, set[str]]:
    """Distribution (normalized) -> the modules it provides, for the installed interpreter
    (``index``: top-level module -> distributions, ``packages_distributions()`` by default)."""
    index = md.packages_distributions() if index is None else index
    out: dict[str, set[str]] = {}
    for module, where in sorted(modules.items()):
        candidates = index.get(module.split(".")[0], [])
        if len(candidates) > 1:  # a namespace package (google.*): the one holding the module
            candidates = [d for d in candidates if _provides(d, module)]
        if not candidates:
            raise RequirementsError(f"{', '.join(sorted(where))} import {module}, which no installed "
                                    "distribution provides: add it to requirements.in")
        for dist in candidates:
            out.setdefault(normalize(dist), set()).add(module)
    return out


@dataclasses.dataclass(frozen=True)
class Subset:
    """The generator's requirements: the lock lines of ``names``, and why each root is in."""

    names: tuple[str, ...]
    text: str
    roots: Mapping[str, frozenset[str]]  # distribution -> modules the sources import from it

    @property
    def sha256(self) -> str:
        return "sha256:" + hashlib.sha256(self.text.encode()).hexdigest()

    def pins(self, entries: Mapping[str, Locked]) -> list[str]:
        """``name==version`` of each, as the lock has it."""
        return [entries[n].lines[0].rstrip(" \\") for n in self.names]


def subset(lock_text: str, files: Mapping[str, str],
           index: Mapping[str, list[str]] | None = None) -> Subset:
    """What ``files`` need of the lock, as a requirements file pip installs with
    ``--require-hashes --no-deps``."""
    entries = parse_lock(lock_text)
    roots = distributions_of(third_party_imports(files), index)
    names = closure(entries, roots)
    text = "".join("\n".join(entries[n].lines) + "\n" for n in names)
    return Subset(tuple(names), text, {d: frozenset(m) for d, m in roots.items()})
