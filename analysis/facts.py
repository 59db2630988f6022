"""sweep.json's provenance in words: the host, the git checkout, the measurement method."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from analysis.analyze import method_label
from analysis.results import SEARCH
from formats.results import searches_words

# host key -> heading, in display order (sweep.provenance.host_facts writes these)
HOST_LABELS = {"hostname": "hostname", "cpu_model": "CPU model", "cores": "cores", "usable_cpus": "usable CPUs",
               "memory_gb": "memory", "os": "operating system", "python": "Python"}


def cpu_ranges(cpus: Iterable[int]) -> str:
    """[0, 1, 2, 3, 6, 8, 9] -> '0-3, 6, 8-9'."""
    ids = sorted(set(int(c) for c in cpus))
    spans: list[list[int]] = []
    for c in ids:
        if spans and c == spans[-1][1] + 1:
            spans[-1][1] = c
        else:
            spans.append([c, c])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in spans)


def _host_value(key: str, value: Any) -> str:
    if key == "usable_cpus" and isinstance(value, list):
        return f"{len(value)} (CPU {cpu_ranges(value)})" if value else "none"
    if key == "memory_gb" and isinstance(value, (int, float)):
        return f"{value:g} GB"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def host_rows(host: Any) -> list[tuple[str, str]]:
    """sweep.json's "host" as (heading, value) rows: known keys first, then any others."""
    if not isinstance(host, dict):
        return [] if host is None else [("host", str(host))]
    keys = [k for k in HOST_LABELS if k in host] + sorted(k for k in host if k not in HOST_LABELS)
    return [(HOST_LABELS.get(k, k), _host_value(k, host[k])) for k in keys if host[k] is not None]


def git_text(sweep: dict[str, Any]) -> str | None:
    """The checkout the sweep ran from: 'abc123' or 'abc123 (with local changes)'."""
    git = sweep.get("git")
    if isinstance(git, dict) and git.get("commit"):
        return git["commit"] + (" (with local changes)" if git.get("dirty") else "")
    return sweep.get("git_commit")


def method_text(sweep: dict[str, Any]) -> str | None:
    """The sweep's method and, for a search, its rules in words (None if sweep.json has none)."""
    method = sweep.get("method")
    if not method:
        return None
    rules = sweep.get("search") if method == SEARCH else None
    if not isinstance(rules, dict):
        return method_label(method)
    words = []
    if rules.get("repeats") is not None:
        most, precision = rules.get("max_repeats"), rules.get("precision")
        words.append(searches_words(rules["repeats"], most if isinstance(most, int) else None,
                                    precision if isinstance(precision, (int, float)) else None))
    if isinstance(rules.get("resolution"), (int, float)):
        words.append(f"resolution {rules['resolution']:.0%}")
    if isinstance(rules.get("confidence"), (int, float)):
        words.append(f"confidence {rules['confidence']:.0%}")
    if rules.get("min_probe_s") is not None and rules.get("max_probe_s") is not None:
        words.append(f"probes {rules['min_probe_s']}-{rules['max_probe_s']} s")
    return f"{method_label(method)} ({', '.join(words)})" if words else method_label(method)
