"""Capacity intervals: which Configs are tied with the best, and how sure a choice is, in words.

Only a capacity search gives a Config an interval ([capacity_lo, capacity_hi], its 95% CI).
A Config is tied with the best when its interval overlaps that of the Config with the
highest capacity; without intervals nothing is tied. Among the tied, the cheapest per
million requests at capacity wins. A difference is stated with a ± from both intervals
(half-widths, relative, combined in quadrature: the delta method for a ratio).
"""

from __future__ import annotations

import math

import pandas as pd

CI_LABEL = "95% CI"


def _num(value) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def interval(row: pd.Series) -> tuple[float, float] | None:
    """A row's capacity interval, or None (a ramp, or no capacity found)."""
    lo, hi = _num(row.get("capacity_lo")), _num(row.get("capacity_hi"))
    return None if lo is None or hi is None else (lo, hi)


def overlaps(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool:
    """Whether two intervals share a point (False when either is missing)."""
    return a is not None and b is not None and a[0] <= b[1] and b[0] <= a[1]


def ranked(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows by capacity (slo_rps), highest first; equal capacities by config_id."""
    return rows.sort_values(["slo_rps", "config_id"], ascending=[False, True], kind="stable")


def tied_with_best(rows: pd.DataFrame) -> pd.Series:
    """Per row of `rows` (the Configs that may be recommended): whether its interval overlaps
    that of the highest-capacity row (itself included). All False without intervals."""
    if rows.empty:
        return pd.Series(False, index=rows.index, dtype=bool)
    best = interval(ranked(rows).iloc[0])
    return pd.Series([overlaps(interval(r), best) for _, r in rows.iterrows()], index=rows.index, dtype=bool)


def has_intervals(rows: pd.DataFrame) -> bool:
    return "capacity_lo" in rows and bool(rows["capacity_lo"].notna().any())


def ci_text(row: pd.Series) -> str:
    """'95% CI 29.4–31.5', or a ramp's 'ramp: no interval'."""
    iv = interval(row)
    return "ramp: no interval" if iv is None else f"{CI_LABEL} {iv[0]:.1f}–{iv[1]:.1f}"


def capacity_text(row: pd.Series) -> str:
    """'30.5 req/s (95% CI 29.4–31.5)'."""
    return f"{float(row['slo_rps']):.1f} req/s ({ci_text(row)})"


def margin(a: pd.Series, b: pd.Series) -> tuple[float, float]:
    """(a / b - 1, its ± from both intervals' relative half-widths, combined in quadrature)."""
    ratio = float(a["slo_rps"]) / float(b["slo_rps"])
    rel = []
    for row in (a, b):
        iv = interval(row)
        if iv is not None:
            rel.append((iv[1] - iv[0]) / 2.0 / float(row["slo_rps"]))
    return ratio - 1.0, ratio * math.sqrt(sum(r * r for r in rel))


def names(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _same_per_hour(a: pd.Series, b: pd.Series) -> bool:
    return math.isclose(float(a["cost_per_hour"]), float(b["cost_per_hour"]), rel_tol=1e-9)


def _cost_words(a: pd.Series, b: pd.Series) -> str:
    ca, cb = float(a["cost_per_hour"]), float(b["cost_per_hour"])
    if _same_per_hour(a, b):
        return "at the same cost"
    return f"at {ca:.4f} vs {cb:.4f} USD/h"


def _distinct_digits(value: float, others: list[float]) -> int:
    """The fewest decimals (2 to 4) at which `value` reads differently from each of `others`."""
    for digits in (2, 3):
        if all(f"{value:.{digits}f}" != f"{o:.{digits}f}" for o in others):
            return digits
    return 4


def choose(rows: pd.DataFrame, slo_text: str) -> tuple[pd.Series, tuple[str, ...], str]:
    """The recommendation without a target rate when intervals exist: (winner, the config_ids
    tied with the best, the sentence saying how sure it is). `rows` are the eligible Configs."""
    order = ranked(rows)
    tied = order[tied_with_best(order)]
    tied_ids = tuple(tied["config_id"])
    if len(tied) > 1:
        by_cost = tied.sort_values(["usd_per_million", "slo_rps", "config_id"], ascending=[True, False, True],
                                   kind="stable")
        winner, others = by_cost.iloc[0], by_cost.iloc[1:]
        head = f"{winner['name']} ({winner['config_id']}) serves {capacity_text(winner)} within the SLO ({slo_text})."
        ties = names([str(n) for n in by_cost["name"]])
        usd = float(winner["usd_per_million"])
        if all(math.isclose(usd, float(u), rel_tol=1e-6) for u in others["usd_per_million"]):
            why = (f"they cost the same per million requests ({usd:.2f} USD); {winner['name']} is chosen by its "
                   "higher capacity point estimate")
        elif all(_same_per_hour(winner, o) for _, o in others.iterrows()):
            why = (f"they cost the same per hour ({float(winner['cost_per_hour']):.4f} USD/h), so only their "
                   f"capacity point estimates, which differ within noise, separate them; {winner['name']} is chosen "
                   "by its higher point estimate")
        else:
            digits = _distinct_digits(usd, [float(u) for u in others["usd_per_million"]])
            rest = ", ".join(f"{float(u):.{digits}f}" for u in others["usd_per_million"])
            why = (f"{winner['name']} is chosen because it costs less per million requests "
                   f"({usd:.{digits}f} vs {rest} USD)")
        return winner, tied_ids, f"{head} {ties} are tied within noise (their {CI_LABEL}s overlap); {why}."
    winner = order.iloc[0]
    head = f"{winner['name']} ({winner['config_id']}) serves {capacity_text(winner)} within the SLO ({slo_text})"
    usd = f"{float(winner['usd_per_million']):.2f} USD per million requests at capacity"
    if len(order) == 1:
        return winner, tied_ids, f"{head}, the only configuration that can be recommended; {usd}."
    runner = order.iloc[1]
    diff, pm = margin(winner, runner)
    return winner, tied_ids, (f"{head}, {diff:.0%} ± {pm:.0%} more than {runner['name']} "
                              f"({float(runner['slo_rps']):.1f} req/s, {ci_text(runner)}) "
                              f"{_cost_words(winner, runner)}; {usd}.")
