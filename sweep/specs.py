"""Which sweep to run: a spec file (with the CLI's overrides), or a recorded sweep to repeat."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from deploy import spec as spec_mod
from deploy.spec import SpecError, Sweep
from formats.results import SWEEP_FILE, SWEEP_SCHEMA
from loadgen import flags
from loadgen import payload as payload_mod
from loadgen.options import GeneratorOptions, OptionsError
from loadgen.payload import PayloadError
from sweep.loop import SweepError
from sweep.plan import SearchOptions

# The seed study's load: Locust, 150 users, +1 user/s, constant(1) wait, 5 minutes.
SEED_PROFILE = {"kind": "ramp", "users": 150, "spawn_rate": 1.0, "per_user_rps": 1.0,
                "duration": "300s", "arrivals": "uniform", "seed": 0}
PROFILES = ("spec", "seed")


def load_spec(path: Path, profile: str = "spec", model_name: str | None = None) -> Sweep:
    """The sweep in ``path``; ``profile="seed"`` swaps in the seed study's load profile and
    ``model_name`` the served model's name. Raises SweepError naming the file and field."""
    if profile not in PROFILES:
        raise SweepError(f"unknown profile {profile!r}: use one of {', '.join(PROFILES)}")
    try:
        sweep = spec_mod.load_sweep(path)
        if profile == "seed" or model_name:
            doc = json.loads(json.dumps(sweep.spec))
            if profile == "seed":
                doc["profile"] = dict(SEED_PROFILE)
            if model_name:
                doc.setdefault("serving", {})["model_name"] = model_name
            sweep = spec_mod.parse_sweep(doc, source=str(path), base_dir=path.parent)
    except SpecError as err:
        raise SweepError(str(err)) from None
    load_options(sweep)  # the generator's options are refused here too, before anything runs
    return sweep


def load_options(sweep: Sweep, given: dict[str, Any] | None = None,
                 recorded: dict[str, Any] | None = None) -> GeneratorOptions:
    """How the sweep sends load: the flags ``given`` (keyed by flag) over the spec's
    ``load:`` over the defaults; for a rerun, exactly what was recorded (flags that would
    change it are refused)."""
    given = given or {}
    if recorded is not None:
        if given:
            raise SweepError(f"--rerun repeats the recorded load options; drop {', '.join(sorted(given))}")
        load = dict(recorded.get("load") or {})
        if "timeout_s" in load:  # a sweep.json from before 2026-12: judged as it was then
            load["timeout"] = load.pop("timeout_s")
            load.update(max_send_lag="5ms", priority="normal")
        where = f"{SWEEP_FILE} load"
    else:
        load, where = dict(sweep.load), f"{sweep.source}: load"
    try:
        options = flags.resolve(given, load, where=where)
        payload_mod.load(options.payload)
    except (OptionsError, PayloadError) as err:
        raise SweepError(f"{where}: {err}" if isinstance(err, PayloadError) else str(err)) from None
    shortest = min((c.profile["duration_s"] for c in sweep.configs), default=None)
    if shortest is not None and options.warmup_s >= shortest:
        raise SweepError(f"{where}.warmup: {options.warmup_s:g} s is not shorter than the shortest "
                         f"Config's load ({shortest:g} s)")
    return options


def load_recorded(results_dir: Path) -> tuple[Sweep, dict[str, Any]]:
    """The sweep recorded in ``results_dir/sweep.json``, expanded again, and the record.

    Refuses (SweepError) when the record cannot be read or no longer expands to the same
    Configs (the image lock or the tool changed since), so a rerun repeats exactly what ran.
    """
    path = results_dir / SWEEP_FILE
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise SweepError(f"{path}: cannot read the recorded sweep: {err}") from None
    if not isinstance(recorded, dict) or recorded.get("schema") != SWEEP_SCHEMA:
        got = recorded.get("schema") if isinstance(recorded, dict) else None
        raise SweepError(f"{path}: unknown schema {got!r} (expected {SWEEP_SCHEMA})")
    try:
        sweep = spec_mod.parse_sweep(recorded["spec"], source=recorded.get("source") or str(results_dir))
    except SpecError as err:
        raise SweepError(f"{path}: the recorded spec no longer parses: {err}") from None
    before = [c["id"] for c in recorded["configs"]]
    now = [c.id for c in sweep.configs]
    if before != now:
        changed = sorted(set(before) ^ set(now))
        raise SweepError("the recorded sweep no longer expands to the same Configs (image lock or tool "
                         "changed): " + ", ".join(changed))
    return sweep, recorded


def method_options(profile: str, method: str | None, search: dict[str, Any],
                   recorded: dict[str, Any] | None = None) -> tuple[str, SearchOptions]:
    """How Configs are measured: ``method`` (default ``search``; ``--profile seed`` means the
    seed's ramp) and the search's options (``search``: the flags given, None for unset);
    a rerun repeats what was recorded (sweeps recorded before the search are ramps)."""
    given = {k: v for k, v in search.items() if v is not None}
    if recorded is not None:
        if method is not None or given:
            raise SweepError("--rerun repeats the recorded method and search options; drop "
                             + ", ".join(sorted(["--method"] * (method is not None) + [f"--{k}" for k in given])))
        method = recorded.get("method") or "ramp"
        fields = {f.name for f in dataclasses.fields(SearchOptions)}
        kept = {k: v for k, v in (recorded.get("search") or {}).items() if k in fields}
        if "repeats" in kept and "max_repeats" not in kept:  # recorded before searches for precision: exactly
            kept.update(max_repeats=kept["repeats"], precision=0.0)
        return method, SearchOptions(**kept)
    if profile == "seed":
        if method == "search":
            raise SweepError("--profile seed is the seed study's ramp: use it with --method ramp (or alone)")
        method = "ramp"
    method = method or "search"
    if method == "ramp" and given:
        raise SweepError(f"{', '.join('--' + k for k in sorted(given))}: search options, but the method is ramp")
    try:
        return method, SearchOptions.given(given)
    except (TypeError, ValueError) as err:
        raise SweepError(f"search options: {err}") from None
