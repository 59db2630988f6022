"""REST vs gRPC: where a sweep measured one deployment over both APIs, a row per deployment.

Two runs are the same deployment when their Configs agree on everything but the protocol
(backend, shape, replicas, resources, ServingConfig, image). Per deployment the table gives
each protocol's capacity (or SLO throughput) with its interval, their ratio with a ± from
both intervals, and the verdict: ``tied`` when the intervals overlap (ties.overlaps). It
gives each side's p50/p99 at a common rate: the sweep's comparison probes (run.json
``common_probe``, both at one rate below both capacities), or without them each side's
highest valid probe at or below the lower capacity, with that probe's rate (the searches
probe different rates). Then the bytes per request on the wire, and the server's mean time per request from
TF Serving's ``request_latency`` (the deltas in server_metrics.csv). TF Serving exports no
CPU time, so CPU per request is not given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from analysis import ties
from analysis.results import Run, check_schema_line
from formats.results import DEFAULT_PROTOCOL, SERVER_METRICS_SCHEMA, protocol_pairs

PROTOCOL_COLUMNS = [
    "deployment", "rest_config", "grpc_config", "rest_rps", "rest_lo", "rest_hi", "grpc_rps", "grpc_lo",
    "grpc_hi", "grpc_over_rest", "grpc_over_rest_pm", "verdict", "common_rps", "rest_probe_rps",
    "rest_p50_ms", "rest_p99_ms", "grpc_probe_rps", "grpc_p50_ms", "grpc_p99_ms", "rest_bytes", "grpc_bytes",
    "rest_server_ms", "grpc_server_ms",
]
SERVER_METRICS_FILE = "server_metrics.csv"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"  # serving.metrics (analysis does not import serving)


def protocol_of(run: Run) -> str:
    return (run.config or {}).get("protocol") or DEFAULT_PROTOCOL


def deployment_label(rest: Run, grpc: Run) -> str:
    """The two Config names without the protocol: 'cpu2x1-rest', 'cpu2x1-grpc' -> 'cpu2x1'."""
    a, b = rest.name.split("-"), grpc.name.split("-")
    common = [x for x, y in zip(a, b, strict=False) if x == y and x not in ("rest", "grpc")]
    return "-".join(common) or f"{rest.name} / {grpc.name}"


def server_ms_per_request(run: Run) -> float | None:
    """Mean of TF Serving's request_latency over the run, from server_metrics.csv (ms)."""
    path = run.dir / SERVER_METRICS_FILE
    if not path.is_file():
        return None
    check_schema_line(path, SERVER_METRICS_SCHEMA)
    df = pd.read_csv(path, comment="#")
    deltas = df[df["metric"].isin([REQUEST_LATENCY + "_sum", REQUEST_LATENCY + "_count"])]
    deltas = deltas[deltas["labels"].astype(str).str.contains("API=predict,", case=False, regex=False)]
    total = deltas.loc[deltas["metric"] == REQUEST_LATENCY + "_sum", "delta"].sum()
    count = deltas.loc[deltas["metric"] == REQUEST_LATENCY + "_count", "delta"].sum()
    return float(total) / float(count) / 1000.0 if count > 0 else None  # request_latency is in microseconds


def common_probe(run: Run) -> dict[str, Any] | None:
    """run.json's comparison probe (sweep.common_rate), when it is valid."""
    c = run.record.get("common_probe")
    return c if isinstance(c, dict) and c.get("valid") and c.get("rate") else None


def at_rate(run: Run, rate: float | None) -> dict[str, Any]:
    """p50/p99 of ``run``'s highest valid probe at or below ``rate`` (a search), and its rate."""
    probes = run.probes
    if rate is None or probes is None or probes.empty:
        return {"rps": None, "p50": None, "p99": None}
    ok = probes[(probes["valid"] == 1) & (probes["rate"] <= rate * (1 + 1e-9))]
    if ok.empty:
        return {"rps": None, "p50": None, "p99": None}
    best = ok.sort_values("rate", kind="stable").iloc[-1]
    return {"rps": float(best["rate"]), "p50": float(best["p50_ms"]), "p99": float(best["p99_ms"])}


def _num(value) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _bytes(run: Run) -> int | None:
    b = (run.record.get("payload") or {}).get("bytes")
    return int(b) if b is not None else None


def pairs(runs: Sequence[Run]) -> list[tuple[Run, Run]]:
    """(REST run, gRPC run) per deployment measured over both, in the runs' order."""
    return [(runs[i], runs[j]) for i, j in protocol_pairs([r.config for r in runs])]


def protocol_table(runs: Sequence[Run], table: pd.DataFrame) -> pd.DataFrame:
    """The REST-vs-gRPC table (PROTOCOL_COLUMNS); empty when no deployment has both."""
    rows = []
    by_id = {r["config_id"]: r for _, r in table.iterrows()}
    for rest, grpc in pairs(runs):
        a, b = by_id.get(rest.id), by_id.get(grpc.id)
        if a is None or b is None:
            continue
        rest_rps, grpc_rps = _num(a["slo_rps"]), _num(b["slo_rps"])
        both = rest_rps is not None and grpc_rps is not None and rest_rps > 0 and grpc_rps > 0
        ratio, pm = ties.margin(b, a) if both else (None, None)
        if not both:
            verdict = "no comparison: a capacity is missing"
        elif not (a["valid"] and b["valid"]):
            verdict = "no comparison: a run is invalid"
        elif ties.interval(a) is None or ties.interval(b) is None:
            verdict = "no intervals (ramp): not judged"
        elif ties.overlaps(ties.interval(a), ties.interval(b)):
            verdict = "tied"
        else:
            verdict = "gRPC higher" if grpc_rps > rest_rps else "REST higher"
        cr, cg = common_probe(rest), common_probe(grpc)
        if cr and cg and math.isclose(cr["rate"], cg["rate"]):  # both measured at one rate: compare those
            common = float(cr["rate"])
            ra, ga = ({"rps": common, "p50": c["p50_ms"], "p99": c["p99_ms"]} for c in (cr, cg))
        else:
            common = min(rest_rps, grpc_rps) if both else None
            ra, ga = at_rate(rest, common), at_rate(grpc, common)
        rows.append({
            "deployment": deployment_label(rest, grpc), "rest_config": rest.id, "grpc_config": grpc.id,
            "rest_rps": rest_rps, "rest_lo": _num(a["capacity_lo"]), "rest_hi": _num(a["capacity_hi"]),
            "grpc_rps": grpc_rps, "grpc_lo": _num(b["capacity_lo"]), "grpc_hi": _num(b["capacity_hi"]),
            "grpc_over_rest": None if ratio is None else 1.0 + ratio,
            "grpc_over_rest_pm": None if pm is None or math.isnan(pm) else pm, "verdict": verdict,
            "common_rps": common, "rest_probe_rps": ra["rps"], "rest_p50_ms": ra["p50"], "rest_p99_ms": ra["p99"],
            "grpc_probe_rps": ga["rps"], "grpc_p50_ms": ga["p50"], "grpc_p99_ms": ga["p99"],
            "rest_bytes": _bytes(rest), "grpc_bytes": _bytes(grpc),
            "rest_server_ms": server_ms_per_request(rest), "grpc_server_ms": server_ms_per_request(grpc),
        })
    return pd.DataFrame(rows, columns=PROTOCOL_COLUMNS)


def _cell(value, fmt: str) -> str:
    return "–" if _num(value) is None else fmt.format(value)


HEADINGS = ("deployment", "REST req/s (95% CI)", "gRPC req/s (95% CI)", "gRPC / REST", "verdict",
            "common rate", "REST p50 / p99 ms (at req/s)", "gRPC p50 / p99 ms (at req/s)",
            "bytes/request REST / gRPC", "server ms/request REST / gRPC")
NOTE = ("p50/p99 at the common rate: the sweep's comparison probe of each side at that rate, else each side's "
        "highest valid probe at or below the lower capacity (its rate in brackets). Server ms/request: TF "
        "Serving's mean request_latency; it exports no CPU time, so CPU per request is not given.")


def display_rows(df: pd.DataFrame) -> list[tuple[str, ...]]:
    """The table as text cells under HEADINGS (summary.md and the HTML page show these)."""
    out = []
    for r in df.to_dict("records"):
        def cap(p: str, r=r) -> str:
            if _num(r[f"{p}_rps"]) is None:
                return "–"
            ci = "" if _num(r[f"{p}_lo"]) is None else f" ({r[f'{p}_lo']:.1f}–{r[f'{p}_hi']:.1f})"
            return f"{r[f'{p}_rps']:.1f}{ci}"

        def lat(p: str, r=r) -> str:
            return (f"{_cell(r[f'{p}_p50_ms'], '{:.0f}')} / {_cell(r[f'{p}_p99_ms'], '{:.0f}')} "
                    f"(at {_cell(r[f'{p}_probe_rps'], '{:.1f}')})")

        ratio = _cell(r["grpc_over_rest"], "{:.2f}×")
        if ratio != "–" and _num(r["grpc_over_rest_pm"]) is not None:
            ratio += f" ± {r['grpc_over_rest_pm']:.2f}"
        out.append((str(r["deployment"]), cap("rest"), cap("grpc"), ratio, str(r["verdict"]),
                    _cell(r["common_rps"], "{:.1f}"), lat("rest"), lat("grpc"),
                    f"{_cell(r['rest_bytes'], '{:,.0f}')} / {_cell(r['grpc_bytes'], '{:,.0f}')}",
                    f"{_cell(r['rest_server_ms'], '{:.1f}')} / {_cell(r['grpc_server_ms'], '{:.1f}')}"))
    return out


def protocol_markdown(df: pd.DataFrame) -> list[str]:
    """summary.md's REST-vs-gRPC section (no lines when the table is empty)."""
    if df.empty:
        return []
    lines = ["## REST vs gRPC", "", "| " + " | ".join(HEADINGS) + " |", "|" + "---|" * len(HEADINGS)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in display_rows(df)]
    return [*lines, "", NOTE, ""]
