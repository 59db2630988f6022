"""A capacity-search Config's answer under the report's SLO (run.json "capacity", "best_pass").

The search measured the capacity for the SLO recorded in its run.json; the probes' verdicts
cannot be re-judged for another bound, so under a different SLO the Config has no
capacity within it (said in its note), while its measured capacity stays in the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hdrh.histogram import HdrHistogram

from analysis import hdr
from analysis.errors import ResultsError
from analysis.results import Run
from formats.results import HLOG_FILES
from formats.slo import Slo, SloError


@dataclass(frozen=True, eq=False)
class SearchAnswer:
    """What the search found, as the report's table needs it."""

    rps: float  # capacity within the report's SLO; 0.0 when none (why_none says why)
    lo: float | None  # the capacity's interval as measured (None when no capacity was found)
    hi: float | None
    measured_rps: float | None  # capacity.rps under the search's own SLO
    probes: int
    best_pass: dict[str, Any] | None
    best_histogram: HdrHistogram | None  # corrected latency of the highest passing probe
    best_uncorrected: HdrHistogram | None
    why_none: str = ""


def run_slo(run: Run) -> Slo | None:
    """The SLO the search was run for (None when its run.json records none)."""
    recorded = run.record.get("slo")
    if not isinstance(recorded, dict):
        return None
    try:
        return Slo.from_dict(recorded)
    except SloError as e:
        raise ResultsError(f"{run.dir / 'run.json'}: slo: {e}") from e


def _probe_histograms(run: Run, rel: str | None) -> tuple[HdrHistogram | None, HdrHistogram | None]:
    """The whole-probe histograms of probe directory `rel`, when its logs are there."""
    if not rel:
        return None, None
    out = []
    for name in ("corrected", "uncorrected"):
        path = run.dir / rel / HLOG_FILES[name]
        out.append(hdr.merge(iv.histogram for iv in hdr.read_log(path)) if path.is_file() else None)
    return out[0], out[1]


def search_answer(run: Run, slo: Slo) -> SearchAnswer:
    """The capacity, its interval and the highest passing probe of a search-method run."""
    cap = run.capacity
    rps, lo, hi = cap.get("rps"), cap.get("lo"), cap.get("hi")
    best = run.best_pass
    best_hist, best_unc = _probe_histograms(run, (best or {}).get("dir"))
    searched = run_slo(run)
    why = ""
    if rps is None:
        errors = "; ".join(cap.get("errors") or []) or "no reason recorded"
        why = f"the search found no capacity ({errors})"
    elif searched is not None and searched != slo:
        why = (f"capacity searched for {searched.text()}, not this report's {slo.text()}: "
               "a search's verdicts hold for its own SLO only (re-run it, or report with that SLO)")
    n = run.record.get("probes")
    probes = int(n) if isinstance(n, int) else len(run.probes) if run.probes is not None else 0
    return SearchAnswer(rps=float(rps) if rps is not None and not why else 0.0,
                        lo=None if lo is None or rps is None else float(lo),
                        hi=None if hi is None or rps is None else float(hi),
                        measured_rps=None if rps is None else float(rps), probes=probes, best_pass=best,
                        best_histogram=best_hist, best_uncorrected=best_unc, why_none=why)
