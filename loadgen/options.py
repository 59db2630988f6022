"""The generator's options, declared once: ``GeneratorOptions`` (how load is sent, shared by
``loadgen run``, the sweep's flags and a sweep spec's ``load:`` section) and ``RunOptions``
(one measurement: those plus targets and profile). Validated here, echoed into run.json.

``FIELDS`` is the declaration: each option's name, flag, parser, default and help. The
CLIs build their flags from it (``loadgen.flags``) and a spec's ``load:`` mapping is read
with the same parsers (``GeneratorOptions.from_mapping``), so a flag, a spec field and a
default can never disagree.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from formats import units
from loadgen import targets as targets_mod
from loadgen import timekeeping, transports
from loadgen.engine import SEND_TIMINGS, SPIN_BUDGET, SPIN_S
from loadgen.payload import DEFAULT_PAYLOAD
from loadgen.results import LAG_SHARE
from loadgen.schedule import Profile

LOOPS = ("uvloop", "asyncio")
MAX_TIMEOUT_S = 60.0  # the histograms' range


class OptionsError(ValueError):
    """Options that cannot run (message says why)."""


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"not a whole number: {value!r}")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) else int(str(value).strip())


def _lag_ms(value: Any) -> float | None:
    return None if value in (None, "", "auto") else units.parse_duration_ms(value, positive=True)


def _plain(value: float) -> str:
    """A number as the duration grammar reads it back exactly (no exponent, no rounding)."""
    return np.format_float_positional(float(value), trim="-")


def _seconds_text(value: float) -> str:
    return f"{_plain(value)}s"


def _ms_text(value: float | None) -> str:
    return "auto" if value is None else f"{_plain(value)}ms"


@dataclasses.dataclass(frozen=True)
class Field:
    """One generator option: its attribute, its key in a spec's ``load:`` (and sweep.json),
    its flag, a parser (text or YAML value -> value), the inverse (value -> what a spec
    would say), allowed values (if a choice) and help. Defaults live on GeneratorOptions."""

    name: str
    key: str
    flag: str
    parse: Callable[[Any], Any]
    text: Callable[[Any], Any]
    help: str
    choices: tuple[str, ...] | None = None


FIELDS: tuple[Field, ...] = (
    Field("payload", "payload", "--payload", str, str,
          "b64: a JPEG for the serving_bytes signature (JSON parsing is then not what is "
          "measured); tensor: the seed study's JSON pixel lists; file:PATH: a raw body."),
    Field("max_in_flight", "max_in_flight", "--max-in-flight", _int, int,
          "Ceiling on outstanding requests; arrivals beyond it are counted as dropped."),
    Field("timeout_s", "timeout", "--timeout", lambda v: units.parse_duration(v, positive=True),
          _seconds_text, f"Per-request timeout: {units.DURATION_HELP}; at most {MAX_TIMEOUT_S:g} s."),
    Field("workers", "workers", "--workers", _int, int,
          "Processes splitting the schedule (each takes every N-th arrival)."),
    Field("max_send_lag_ms", "max_send_lag", "--max-send-lag", _lag_ms, _ms_text,
          f"Send-lag p99 above this marks a run invalid ({units.DURATION_HELP}); auto: "
          f"{LAG_SHARE:.0%} of the SLO's latency bound, else of the run's corrected p50 "
          "(docs/results-format.md)."),
    Field("transport", "transport", "--transport", str, str,
          "fast: our HTTP/1.1 client (plain http://, no proxy); aiohttp: TLS and proxies "
          "too, but ~10x less valid load per core (bench/loadgen); auto: fast where it can.",
          transports.TRANSPORTS),
    Field("connections", "connections", "--connections", _int, int,
          "gRPC: channels (each its own HTTP/2 connection) per target, used in turn; a "
          "Kubernetes Service balances per connection, so give at least one per replica. "
          "REST transports open connections as the in-flight count needs them."),
    Field("loop", "loop", "--loop", str, str, "The event loop.", LOOPS),
    Field("warmup_s", "warmup", "--warmup", units.parse_duration, _seconds_text,
          "Leading seconds of each run that analysis excludes (recorded in run.json)."),
    Field("send_timing", "send_timing", "--send-timing", str, str,
          "precise: wake on a timerfd at each send time (µs accuracy, no spinning; Linux); "
          f"spin: sleep to {SPIN_S * 1e3:g} ms before each send, then spin (burns CPU); "
          "sleep: the event loop's timer (~1 ms); auto: precise where it can, else spin up "
          f"to {SPIN_BUDGET:.0%} of each second.", SEND_TIMINGS),
    Field("priority", "priority", "--priority", str, str,
          "auto: with precise timing the sending thread asks for real-time priority "
          f"(SCHED_FIFO {timekeeping.FIFO_PRIORITY}), else nice {timekeeping.NICE}, so a "
          "wake-up does not wait behind the server's threads; normal: leave it. run.json "
          "says what it got.", timekeeping.PRIORITIES),
)


@dataclasses.dataclass(frozen=True)
class GeneratorOptions:
    """How load is sent, whatever it is sent to (see FIELDS for each option's meaning)."""

    payload: str = DEFAULT_PAYLOAD
    max_in_flight: int = 256
    timeout_s: float = 30.0
    workers: int = 1
    max_send_lag_ms: float | None = None  # None: results.send_lag_bound's rule
    transport: str = "auto"
    connections: int = 4
    loop: str = "uvloop"
    send_timing: str = "auto"
    priority: str = "auto"
    warmup_s: float = 0.0

    def __post_init__(self) -> None:
        if self.max_in_flight < 1:
            raise OptionsError("--max-in-flight must be >= 1")
        if not (0 < self.timeout_s <= MAX_TIMEOUT_S):
            raise OptionsError(f"--timeout must be > 0 and <= {MAX_TIMEOUT_S:g} s (the histogram's range)")
        if self.workers < 1:
            raise OptionsError("--workers must be >= 1")
        if self.connections < 1:
            raise OptionsError("--connections must be >= 1")
        if self.warmup_s < 0:
            raise OptionsError("--warmup must be >= 0")
        if self.max_send_lag_ms is not None and not (
                self.max_send_lag_ms > 0 and math.isfinite(self.max_send_lag_ms)):
            raise OptionsError("--max-send-lag must be > 0")
        for f in FIELDS:
            value = getattr(self, f.name)
            if f.choices is not None and value not in f.choices:
                raise OptionsError(f"unknown {f.flag.lstrip('-')} {value!r}: use one of "
                                   f"{', '.join(f.choices)}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], where: str = "load") -> GeneratorOptions:
        """Options from a spec's ``load:`` mapping (or sweep.json's): keys as FIELDS' keys,
        values as a person writes them (``timeout: 30s``); missing ones keep their
        defaults. Errors name ``where.key``."""
        return cls().updated(values, by="key", prefix=f"{where}.")

    def updated(self, values: Mapping[str, Any], *, by: str = "name", prefix: str = ""
                ) -> GeneratorOptions:
        """These options with ``values`` parsed and applied. ``by``: what the keys are,
        FIELDS' ``name``, ``key`` or ``flag``; errors say ``prefix + key``."""
        known = {getattr(f, by): f for f in FIELDS}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise OptionsError(f"{prefix}{unknown[0]}: unknown field (known: {', '.join(known)})")
        parsed = {}
        for k, value in values.items():
            try:
                parsed[known[k].name] = known[k].parse(value)
            except ValueError as e:
                raise OptionsError(f"{prefix}{k}: {e}") from None
        try:
            return dataclasses.replace(self, **parsed)
        except OptionsError as e:
            raise OptionsError(f"{prefix}{', '.join(values)}: {e}" if values else str(e)) from None

    def to_mapping(self) -> dict[str, Any]:
        """These options as a spec's ``load:`` would say them (sweep.json's "load");
        ``from_mapping`` reads them back."""
        return {f.key: f.text(getattr(self, f.name)) for f in FIELDS}


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunOptions(GeneratorOptions):
    """Everything one measurement needs; echoed into run.json."""

    targets: tuple[str, ...]
    profile: Profile
    slo_latency_ms: float | None = None  # the latency bound the run is judged against, if any

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.targets, (list, str)):
            object.__setattr__(self, "targets", tuple([self.targets] if isinstance(
                self.targets, str) else self.targets))
        if not self.targets:
            raise OptionsError("at least one --target URL is needed")
        try:
            targets_mod.run_protocol(self.targets)
        except targets_mod.TargetError as e:
            raise OptionsError(str(e)) from None
        if self.slo_latency_ms is not None and not (
                self.slo_latency_ms > 0 and math.isfinite(self.slo_latency_ms)):
            raise OptionsError("the SLO's latency bound must be > 0")
        if not (0 <= self.warmup_s < self.profile.duration_s):
            raise OptionsError("--warmup must be >= 0 and shorter than the duration")

    @classmethod
    def of(cls, load: GeneratorOptions, **run: Any) -> RunOptions:
        """``load``'s options for one measurement (``run``: targets, profile, ...)."""
        return cls(**{f.name: getattr(load, f.name) for f in FIELDS}, **run)

    @property
    def protocol(self) -> str:
        """``rest`` or ``grpc``: what the targets speak (loadgen.targets)."""
        return targets_mod.run_protocol(self.targets)

    @property
    def grpc_model(self) -> str | None:
        """The model a gRPC run's PredictRequest names (None for REST)."""
        return targets_mod.grpc_target(self.targets[0]).model if self.protocol == "grpc" else None

    def record(self) -> dict:
        """The "options" object of run.json, but for the payload (its own record) and the
        transport (run() adds the one chosen)."""
        return {"protocol": self.protocol, "max_in_flight": self.max_in_flight,
                "timeout_s": self.timeout_s, "workers": self.workers,
                "connections": self.connections, "max_send_lag_ms": self.max_send_lag_ms,
                "slo_latency_ms": self.slo_latency_ms, "send_timing": self.send_timing,
                "priority": self.priority}


def choose_transport(options: RunOptions) -> transports.Choice:
    """The transport ``options`` resolve to (``auto``: fast unless TLS or a proxy needs aiohttp)."""
    try:
        return transports.choose(options.transport, options.targets)
    except transports.TransportError as e:
        raise OptionsError(str(e)) from None
