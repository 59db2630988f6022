"""Pareto front (cost per hour vs SLO-bounded throughput) and the recommendation for a target rate.

Where Configs have capacity intervals (the capacity search), the choice without a target
is analysis.ties's (ties within noise go to the cheapest per million requests), and a
target rate is sized from each Config's lower bound, so the margin is one the evidence backs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from analysis import ties
from analysis.results import SEARCH


@dataclass(frozen=True)
class Recommendation:
    """The cheapest eligible way to serve `target_rps` (or, with no target, the best value)."""

    text: str
    config_id: str | None = None
    name: str | None = None
    replicas: int | None = None
    nodes: int | None = None
    capacity_rps: float | None = None
    cost_per_hour: float | None = None
    margin: float | None = None  # (capacity - target) / target
    scaled: bool = False  # replica count differs from the measured one (assumes linear scaling)
    tied: tuple[str, ...] = ()  # config_ids tied within noise with the highest capacity (no target)
    from_lower_bound: bool = False  # capacity_rps is sized from the interval's lower end


def eligible(table: pd.DataFrame) -> pd.DataFrame:
    """Rows that may be recommended: valid, priced and with a positive SLO-bounded throughput."""
    ok = table["valid"].astype(bool) & table["cost_per_hour"].notna() & (table["slo_rps"] > 0)
    return table[ok]


def pareto_front(table: pd.DataFrame) -> list[str]:
    """config_ids of eligible rows no other eligible row beats (cheaper-or-equal and faster-or-equal)."""
    rows = eligible(table)
    front = []
    for cid, cost, rps in zip(rows["config_id"], rows["cost_per_hour"], rows["slo_rps"], strict=True):
        dominated = ((rows["cost_per_hour"] <= cost) & (rows["slo_rps"] >= rps)
                     & ((rows["cost_per_hour"] < cost) | (rows["slo_rps"] > rps))).any()
        if not dominated:
            front.append(cid)
    return sorted(front, key=lambda c: float(rows.loc[rows["config_id"] == c, "cost_per_hour"].iloc[0]))


def _why_not(row: pd.Series) -> str:
    if not bool(row["valid"]):
        return "invalid run"
    if pd.isna(row["cost_per_hour"]):
        return "not priced"
    return "no capacity within the SLO" if row.get("method") == SEARCH else "no window met the SLO"


def sizing_rps(row) -> tuple[float, bool]:
    """The rate a Config is sized by: its capacity's lower bound when it has an interval,
    else its throughput within the SLO; and whether it was the lower bound."""
    lo = getattr(row, "capacity_lo", None)
    if lo is not None and not pd.isna(lo) and lo > 0:
        return float(lo), True
    return float(row.slo_rps), False


def _options(rows: pd.DataFrame, target: float) -> list[Recommendation]:
    """For each eligible Config: as measured if it meets the target, and the fewest replicas that do."""
    out = []
    for r in rows.itertuples(index=False):
        replicas, nodes = int(r.replicas), int(r.nodes)
        sizing, lower = sizing_rps(r)
        per_replica = sizing / replicas
        need = max(1, math.ceil(target / per_replica - 1e-9))
        candidates = {need} | ({replicas} if sizing >= target else set())
        for k in sorted(candidates):
            k_nodes = math.ceil(k * nodes / replicas)
            capacity = per_replica * k
            cost = r.cost_per_hour / nodes * k_nodes
            out.append(Recommendation(text="", config_id=r.config_id, name=r.name, replicas=k, nodes=k_nodes,
                                      capacity_rps=capacity, cost_per_hour=cost,
                                      margin=(capacity - target) / target, scaled=k != replicas,
                                      from_lower_bound=lower))
    return out


_TARGET_HINT = "Pass a target rate to get the cheapest configuration that serves it."


def recommend(table: pd.DataFrame, target_rps: float | None, *, slo_text: str) -> Recommendation:
    """Cheapest eligible Config (or a replica count of one) meeting `target_rps` within the SLO."""
    rows = eligible(table)
    why = [f"{r['name']}: {_why_not(r)}" for _, r in table.iterrows() if r["config_id"] not in set(rows["config_id"])]
    note = f" Not eligible: {'; '.join(why)}." if why else ""
    if rows.empty:
        return Recommendation(text=f"No configuration can be recommended: none is valid, priced and meets "
                                   f"the SLO ({slo_text}).{note}")
    if target_rps is None and ties.has_intervals(rows):
        best, tied, text = ties.choose(rows, slo_text)
        return Recommendation(
            text=f"{text} {_TARGET_HINT}{note}",
            config_id=best["config_id"], name=best["name"], replicas=int(best["replicas"]),
            nodes=int(best["nodes"]), capacity_rps=float(best["slo_rps"]),
            cost_per_hour=float(best["cost_per_hour"]), tied=tied)
    if target_rps is None:
        best = rows.sort_values(["usd_per_million", "cost_per_hour", "config_id"]).iloc[0]
        return Recommendation(
            text=(f"Best value within the SLO ({slo_text}): {best['name']} ({best['config_id']}), "
                  f"{best['slo_rps']:.1f} req/s at {best['cost_per_hour']:.4f} USD/h = "
                  f"{best['usd_per_million']:.2f} USD per million requests. "
                  f"{_TARGET_HINT}{note}"),
            config_id=best["config_id"], name=best["name"], replicas=int(best["replicas"]),
            nodes=int(best["nodes"]), capacity_rps=float(best["slo_rps"]),
            cost_per_hour=float(best["cost_per_hour"]))
    if target_rps <= 0:
        raise ValueError(f"target rate must be positive, got {target_rps!r}")
    options = _options(rows, target_rps)
    best = min(options, key=lambda o: (round(o.cost_per_hour, 9), o.scaled, -o.margin, o.config_id))
    row = table.loc[table["config_id"] == best.config_id].iloc[0]
    how = (f"{best.replicas} replica(s) on {best.nodes} node(s), scaled from the measured "
           f"{int(row['replicas'])} replica(s) assuming throughput scales linearly with replicas"
           if best.scaled else f"as measured ({best.replicas} replica(s) on {best.nodes} node(s))")
    sized = (f" (sized from the lower end of its {ties.CI_LABEL}, {float(row['capacity_lo']):.1f} req/s "
             f"for {int(row['replicas'])} replica(s); point estimate {float(row['slo_rps']):.1f})"
             if best.from_lower_bound else "")
    text = (f"For {target_rps:g} req/s within the SLO ({slo_text}): {best.name} ({best.config_id}), {how}: "
            f"{best.capacity_rps:.1f} req/s capacity{sized}, margin {best.margin:+.0%}, "
            f"{best.cost_per_hour:.4f} USD/h ({best.cost_per_hour * 24:.2f} USD per 24 h).{note}")
    return Recommendation(text=text, config_id=best.config_id, name=best.name, replicas=best.replicas,
                          nodes=best.nodes, capacity_rps=best.capacity_rps, cost_per_hour=best.cost_per_hour,
                          margin=best.margin, scaled=best.scaled, from_lower_bound=best.from_lower_bound)
