"""Cost table (versioned CSV of per-resource hourly rates) and the cost of a Config's nodes."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.errors import ResultsError

PRICING_SCHEMA = "servesweep.pricing/1"
DEFAULT_PRICING = Path(os.path.abspath(__file__)).parent / "pricing" / "gcp-e2-us-central1.csv"
HOURS_PER_DAY = 24.0
HOURS_PER_MONTH = 730.0
# resource -> shape key it multiplies; "node" is a flat per-node rate (optional)
RESOURCES = {"vcpu": "vcpu", "memory_gb": "memory_gb", "node": None}
COLUMNS = ("family", "resource", "usd_per_hour", "region", "source", "date")


@dataclass(frozen=True)
class Rate:
    family: str
    resource: str
    usd_per_hour: float
    region: str
    source: str
    date: str


@dataclass(frozen=True)
class Cost:
    """What a Config's nodes cost on demand, in USD."""

    per_hour: float

    @property
    def per_day(self) -> float:
        return self.per_hour * HOURS_PER_DAY

    @property
    def per_month(self) -> float:
        return self.per_hour * HOURS_PER_MONTH


@dataclass(frozen=True)
class PriceTable:
    path: Path
    rates: tuple[Rate, ...]

    @property
    def families(self) -> tuple[str, ...]:
        return tuple(sorted({r.family for r in self.rates}))

    def rate(self, family: str, resource: str) -> Rate | None:
        for r in self.rates:
            if r.family == family and r.resource == resource:
                return r
        return None

    def node_per_hour(self, family: str, vcpu: float, memory_gb: float) -> float:
        """Hourly price of one node: vCPU x rate + GB x rate (+ a flat node rate if listed)."""
        if family not in self.families:
            raise KeyError(f"pricing family {family!r} not in {self.path.name} (has: {', '.join(self.families)})")
        amounts = {"vcpu": vcpu, "memory_gb": memory_gb, "node": 1.0}
        return sum(amounts[r.resource] * r.usd_per_hour for r in self.rates if r.family == family)

    def cost(self, shape: dict[str, Any]) -> Cost:
        """Cost of `nodes` nodes of a run.json config shape; KeyError if it cannot be priced."""
        for key in ("pricing", "vcpu", "memory_gb", "nodes"):
            if shape.get(key) is None:
                raise KeyError(f"shape has no {key!r}")
        node = self.node_per_hour(str(shape["pricing"]), float(shape["vcpu"]), float(shape["memory_gb"]))
        return Cost(per_hour=int(shape["nodes"]) * node)


def load_prices(path: Path | str | None = None) -> PriceTable:
    """Read a pricing CSV (first line '# servesweep.pricing/1'); the bundled GCP E2 table by default."""
    path = Path(path) if path is not None else DEFAULT_PRICING
    if not path.is_file():
        raise ResultsError(f"{path}: pricing file missing")
    with path.open(encoding="utf-8") as f:
        first = f.readline().strip()
    if first != f"# {PRICING_SCHEMA}":
        raise ResultsError(f"{path}: unknown schema line {first!r} (expected '# {PRICING_SCHEMA}')")
    try:
        df = pd.read_csv(path, skiprows=1, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise ResultsError(f"{path}: not a valid pricing CSV ({e})") from e
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ResultsError(f"{path}: missing columns {', '.join(missing)}")
    rates = []
    seen = set()
    for i, row in enumerate(df.itertuples(index=False), start=3):
        if row.resource not in RESOURCES:
            raise ResultsError(f"{path}:{i}: unknown resource {row.resource!r} (use {', '.join(RESOURCES)})")
        try:
            value = float(row.usd_per_hour)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise ResultsError(f"{path}:{i}: usd_per_hour {row.usd_per_hour!r} is not a non-negative number")
        if (row.family, row.resource) in seen:
            raise ResultsError(f"{path}:{i}: duplicate rate for {row.family}/{row.resource}")
        seen.add((row.family, row.resource))
        rates.append(Rate(family=row.family, resource=row.resource, usd_per_hour=value,
                          region=row.region, source=row.source, date=row.date))
    if not rates:
        raise ResultsError(f"{path}: no rates")
    return PriceTable(path=path, rates=tuple(rates))
