"""Pareto front (cost per hour vs SLO-bounded throughput) and the recommendation for a target rate."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd


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
    return "no window met the SLO"


def _options(rows: pd.DataFrame, target: float) -> list[Recommendation]:
    """For each eligible Config: as measured if it meets the target, and the fewest replicas that do."""
    out = []
    for r in rows.itertuples(index=False):
        replicas, nodes = int(r.replicas), int(r.nodes)
        per_replica = r.slo_rps / replicas
        need = max(1, math.ceil(target / per_replica - 1e-9))
        candidates = {need} | ({replicas} if r.slo_rps >= target else set())
        for k in sorted(candidates):
            k_nodes = math.ceil(k * nodes / replicas)
            capacity = per_replica * k
            cost = r.cost_per_hour / nodes * k_nodes
            out.append(Recommendation(text="", config_id=r.config_id, name=r.name, replicas=k, nodes=k_nodes,
                                      capacity_rps=capacity, cost_per_hour=cost,
                                      margin=(capacity - target) / target, scaled=k != replicas))
    return out


def recommend(table: pd.DataFrame, target_rps: float | None, *, slo_text: str) -> Recommendation:
    """Cheapest eligible Config (or a replica count of one) meeting `target_rps` within the SLO."""
    rows = eligible(table)
    why = [f"{r['name']}: {_why_not(r)}" for _, r in table.iterrows() if r["config_id"] not in set(rows["config_id"])]
    note = f" Not eligible: {'; '.join(why)}." if why else ""
    if rows.empty:
        return Recommendation(text=f"No configuration can be recommended: none is valid, priced and meets "
                                   f"the SLO ({slo_text}).{note}")
    if target_rps is None:
        best = rows.sort_values(["usd_per_million", "cost_per_hour", "config_id"]).iloc[0]
        return Recommendation(
            text=(f"Best value within the SLO ({slo_text}): {best['name']} ({best['config_id']}), "
                  f"{best['slo_rps']:.1f} req/s at {best['cost_per_hour']:.4f} USD/h = "
                  f"{best['usd_per_million']:.2f} USD per million requests. "
                  f"Pass a target rate to get the cheapest configuration that serves it.{note}"),
            config_id=best["config_id"], name=best["name"], replicas=int(best["replicas"]),
            nodes=int(best["nodes"]), capacity_rps=float(best["slo_rps"]),
            cost_per_hour=float(best["cost_per_hour"]))
    if target_rps <= 0:
        raise ValueError(f"target rate must be positive, got {target_rps!r}")
    options = _options(rows, target_rps)
    best = min(options, key=lambda o: (round(o.cost_per_hour, 9), o.scaled, -o.margin, o.config_id))
    how = (f"{best.replicas} replica(s) on {best.nodes} node(s), scaled from the measured "
           f"{int(table.loc[table['config_id'] == best.config_id, 'replicas'].iloc[0])} replica(s) "
           f"assuming throughput scales linearly with replicas"
           if best.scaled else f"as measured ({best.replicas} replica(s) on {best.nodes} node(s))")
    text = (f"For {target_rps:g} req/s within the SLO ({slo_text}): {best.name} ({best.config_id}), {how}: "
            f"{best.capacity_rps:.1f} req/s capacity, margin {best.margin:+.0%}, "
            f"{best.cost_per_hour:.4f} USD/h ({best.cost_per_hour * 24:.2f} USD per 24 h).{note}")
    return Recommendation(text=text, config_id=best.config_id, name=best.name, replicas=best.replicas,
                          nodes=best.nodes, capacity_rps=best.capacity_rps, cost_per_hour=best.cost_per_hour,
                          margin=best.margin, scaled=best.scaled)
