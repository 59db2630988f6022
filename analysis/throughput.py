"""SLO-bounded throughput: the highest rate a run sustained over a window with p99 and errors in the SLO."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
from hdrh.histogram import HdrHistogram

from analysis import hdr
from formats.slo import Slo

WINDOW_S = 10


@dataclass(frozen=True, eq=False)
class Window:
    """Seconds (first_s, last_s] of the series: t_s from first_s + 1 to last_s inclusive."""

    first_s: int
    last_s: int
    ok_rps: float
    offered_rps: float
    error_rate: float
    histogram: HdrHistogram

    @property
    def p99_ms(self) -> float | None:
        return hdr.percentiles_ms(self.histogram, (99.0,))["p99"]


@dataclass(frozen=True, eq=False)
class Sustained:
    """Result of the search: rps is 0.0 with window None when no window met the SLO."""

    rps: float
    window: Window | None
    windows: int
    why_none: str = ""


def eligible_seconds(series: pd.DataFrame, *, warmup_s: float, duration_s: float) -> pd.DataFrame:
    """Rows that count: after warm-up, within the schedule (no drain tail), with load scheduled.

    Excludes the ramp's edges: the warm-up prefix, the seconds after the schedule ended
    (responses draining) and any leading/trailing seconds with no scheduled arrivals.
    """
    df = series.sort_values("t_s")
    keep = df["t_s"] > warmup_s
    if duration_s > 0:
        keep &= df["t_s"] <= math.ceil(duration_s - 1e-6)
    loaded = df["scheduled"].fillna(0) > 0
    if loaded.any():
        idx = df.index[loaded]
        first, last = df.loc[idx[0], "t_s"], df.loc[idx[-1], "t_s"]
        keep &= (df["t_s"] >= first) & (df["t_s"] <= last)
    return df[keep]


def windows(series: pd.DataFrame, seconds: dict[int, HdrHistogram], window_s: int = WINDOW_S) -> list[Window]:
    """Every run of `window_s` consecutive seconds in `series` (already filtered to eligible rows)."""
    t = [int(x) for x in series["t_s"]]
    ok = series["ok"].fillna(0).to_numpy(dtype=float)
    err = series["errors"].fillna(0).to_numpy(dtype=float)
    sched = series["scheduled"].fillna(0).to_numpy(dtype=float)
    out = []
    for i in range(len(t) - window_s + 1):
        if t[i + window_s - 1] - t[i] != window_s - 1:
            continue  # a gap in the series: not consecutive seconds
        sl = slice(i, i + window_s)
        n_ok, n_err = ok[sl].sum(), err[sl].sum()
        done = n_ok + n_err
        out.append(Window(
            first_s=t[i] - 1, last_s=t[i + window_s - 1],
            ok_rps=n_ok / window_s, offered_rps=sched[sl].sum() / window_s,
            error_rate=(n_err / done) if done else 0.0,
            histogram=hdr.merge(seconds[s] for s in t[sl] if s in seconds),
        ))
    return out


def sustained_throughput(series: pd.DataFrame, seconds: dict[int, HdrHistogram], slo: Slo, *,
                         warmup_s: float = 0.0, duration_s: float = 0.0,
                         window_s: int = WINDOW_S) -> Sustained:
    """Highest ok-rate over `window_s` s whose merged-HDR p99 <= SLO and error rate <= SLO."""
    rows = eligible_seconds(series, warmup_s=warmup_s, duration_s=duration_s)
    cands = windows(rows, seconds, window_s)
    if not cands:
        return Sustained(0.0, None, 0, f"fewer than {window_s} consecutive seconds after warm-up")
    # Highest rate first; ties -> earliest window. The first that meets the SLO is the answer.
    for w in sorted(cands, key=lambda w: (-w.ok_rps, w.first_s)):
        if w.ok_rps <= 0:
            break
        if w.error_rate > slo.error_rate:
            continue
        p99 = w.p99_ms
        if p99 is not None and p99 <= slo.p99_ms:
            return Sustained(w.ok_rps, w, len(cands))
    return Sustained(0.0, None, len(cands), f"no {window_s}-s window met p99 <= {slo.p99_ms:g} ms "
                                             f"and errors <= {slo.error_rate:.2%}")
