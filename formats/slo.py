"""The SLO: one record, validated once, for the spec, the sweep, the generator and the report."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

FIELDS = ("p99_ms", "error_rate")


class SloError(ValueError):
    """An SLO that cannot be met or judged; ``field`` names the offending field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Slo:
    """A bound on the corrected p99 latency (milliseconds, lower is better) and on the
    share of requests that fail (errors / requests, lower is better)."""

    p99_ms: float = 1000.0
    error_rate: float = 0.01

    def __post_init__(self) -> None:
        if isinstance(self.p99_ms, bool) or not isinstance(self.p99_ms, (int, float)) or not (
                self.p99_ms > 0 and math.isfinite(self.p99_ms)):
            raise SloError("p99_ms", f"must be a positive number of milliseconds, got {self.p99_ms!r}")
        if isinstance(self.error_rate, bool) or not isinstance(self.error_rate, (int, float)) or not (
                0.0 <= self.error_rate < 1.0):
            raise SloError("error_rate", f"must be a fraction in [0, 1), got {self.error_rate!r}")
        object.__setattr__(self, "p99_ms", float(self.p99_ms))
        object.__setattr__(self, "error_rate", float(self.error_rate))

    def to_dict(self) -> dict[str, float]:
        return {"p99_ms": self.p99_ms, "error_rate": self.error_rate}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Slo:
        unknown = sorted(set(d) - set(FIELDS))
        if unknown:
            raise SloError(unknown[0], f"unknown field (use {', '.join(FIELDS)})")
        return cls(**{k: d[k] for k in FIELDS if k in d})

    def text(self) -> str:
        """For a person: "p99 <= 1000 ms, errors <= 1%"."""
        return f"p99 <= {self.p99_ms:g} ms, errors <= {self.error_rate * 100:g}%"
