"""The report's PNG figures (matplotlib, Agg canvas; no pyplot global state).

Which figures a report has depends on its methods: capacity bars, the latency spectrum and
cost vs throughput for every report; the probes' latency-throughput figure when a Config
was measured by the capacity search; throughput and latency over time for ramps.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from analysis import hdr, ties
from analysis.analyze import Analysis, method_label
from analysis.results import RAMP, SEARCH
from analysis.throughput import WINDOW_S

WIDTH_IN, DPI = 10.0, 100
ALLOWED_OVER = 0.01  # the SLO bounds the p99: at most 1% of a probe's requests may be over the bound
FRACTION_FLOOR = 3e-4  # over-bound fractions below this (0 among them) are drawn at it (log axis)
VERDICT_COLOURS = {"PASS": "tab:green", "FAIL": "tab:red"}


def _figure(height_in: float, nrows: int = 1, sharex: bool = False, ncols: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # Agg chosen here, not at import
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_IN, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, sharex=sharex, squeeze=False)
    return fig, (axes[:, 0] if ncols == 1 else axes)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _label(ra) -> str:
    return ra.run.name + ("" if ra.run.valid else " (INVALID)")


def _ramps(a: Analysis) -> list:
    return [ra for ra in a.runs if not ra.run.is_search]


def _searches(a: Analysis) -> list:
    return [ra for ra in a.runs if ra.run.is_search]


def comparison(a: Analysis) -> bytes:
    """Ramp runs over time: throughput (a rolling mean, so batching's spikes do not hide the
    trend; faint: per second), p50 and p99 per second."""
    fig, (ax_rps, ax_p50, ax_p99) = _figure(9.0, 3, sharex=True)
    for ra in _ramps(a):
        s = ra.run.series.sort_values("t_s")
        style = "-" if ra.run.valid else "--"
        rolling = s["ok"].rolling(WINDOW_S, min_periods=1, center=True).mean()
        (line,) = ax_rps.plot(s["t_s"], rolling, style, label=_label(ra), linewidth=1.6)
        ax_rps.plot(s["t_s"], s["ok"], style, color=line.get_color(), linewidth=0.7, alpha=0.3)
        ax_p50.plot(s["t_s"], s["p50_ms"], style, color=line.get_color(), linewidth=1.2)
        ax_p99.plot(s["t_s"], s["p99_ms"], style, color=line.get_color(), linewidth=1.2)
        if ra.sustained.window is not None:
            w = ra.sustained.window
            ax_rps.hlines(w.ok_rps, w.first_s, w.last_s, colors=line.get_color(), linewidth=4, alpha=0.35)
    ax_rps.set_ylabel(f"ok responses / s\n({WINDOW_S} s rolling mean)")
    ax_rps.set_title(f"{method_label(RAMP).capitalize()}: throughput and latency over time "
                     "(bars: best window within the SLO)")
    ax_p50.set_ylabel("p50 latency (ms)")
    ax_p99.set_ylabel("p99 latency (ms)")
    ax_p99.axhline(a.slo.p99_ms, color="red", linestyle=":", linewidth=1, label=f"SLO p99 {a.slo.p99_ms:g} ms")
    ax_p99.set_xlabel("seconds since start (corrected latency, per second)")
    for ax in (ax_p50, ax_p99):
        ax.set_yscale("log")
    for ax in (ax_rps, ax_p50, ax_p99):
        ax.grid(True, alpha=0.3)
    ax_rps.legend(fontsize="small", loc="upper left")
    ax_p99.legend(fontsize="small", loc="upper left")
    return _png(fig)


def spectrum(a: Analysis) -> bytes:
    """Latency by percentile from the HDR logs, one line per Config: a ramp's run after
    warm-up, a search's highest passing probe."""
    fig, (ax,) = _figure(5.0)
    ticks = [50.0, 90.0, 99.0, 99.9, 99.99, 99.999]
    x_max = 2.0
    for ra in a.runs:
        pcts, values = hdr.spectrum_ms(ra.run_histogram)
        if not pcts:
            continue
        x = [1.0 / max(1e-7, 1.0 - p / 100.0) for p in pcts]
        x_max = max(x_max, x[-1])
        label = _label(ra) + (" (highest passing probe)" if ra.run.is_search else "")
        (line,) = ax.plot(x, values, "-" if ra.run.valid else "--", label=label, linewidth=1.4)
        if ra.uncorrected_histogram is not None:
            pu, vu = hdr.spectrum_ms(ra.uncorrected_histogram)
            ax.plot([1.0 / max(1e-7, 1.0 - p / 100.0) for p in pu], vu, ":", color=line.get_color(),
                    linewidth=0.9)
    ax.axhline(a.slo.p99_ms, color="red", linestyle=":", linewidth=1, label=f"SLO p99 {a.slo.p99_ms:g} ms")
    ax.set_xscale("log")
    ax.set_yscale("log")
    shown = [t for t in ticks if 1.0 / (1.0 - t / 100.0) <= x_max * 1.01]
    ax.set_xticks([1.0 / (1.0 - t / 100.0) for t in shown], [f"{t:g}%" for t in shown])
    ax.set_xlim(1.8, x_max * 1.3)
    ax.set_xlabel("percentile (dotted: uncorrected, from the actual send time)")
    ax.set_ylabel("latency (ms)")
    ax.set_title("Latency percentile spectrum (HdrHistogram, corrected): ramp over the run, "
                 "search at its highest passing probe", fontsize="medium")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small", loc="upper left")
    return _png(fig)


def _intervals(ax, x, t: pd.DataFrame, **style) -> None:
    """Error bars from capacity_lo/hi for the rows of `t` that have an interval (x: their positions)."""
    has = t["capacity_lo"].notna() & t["capacity_hi"].notna() if ties.has_intervals(t) else None
    if has is None or not has.any():
        return
    rows, xs = t[has], [xi for xi, h in zip(x, has, strict=True) if h]
    below = (rows["slo_rps"] - rows["capacity_lo"]).clip(lower=0)
    above = (rows["capacity_hi"] - rows["slo_rps"]).clip(lower=0)
    ax.errorbar(xs, rows["slo_rps"], yerr=[list(below), list(above)], fmt="none", **style)


def cost_throughput(a: Analysis) -> bytes:
    """SLO-bounded throughput vs cost per hour, with the Pareto front and the target rate."""
    fig, (ax,) = _figure(5.0)
    t = a.table[a.table["cost_per_hour"].notna()]
    good = t[t["valid"].astype(bool)]
    bad = t[~t["valid"].astype(bool)]
    ax.scatter(good["cost_per_hour"], good["slo_rps"], s=40, label="valid run", zorder=3)
    _intervals(ax, list(good["cost_per_hour"]), good, ecolor="tab:blue", capsize=4, linewidth=1,
               label=f"capacity {ties.CI_LABEL}", zorder=3)
    ax.scatter(bad["cost_per_hour"], bad["slo_rps"], s=50, marker="x", color="grey",
               label="invalid run (never recommended)", zorder=3)
    front = t[t["config_id"].isin(a.pareto_ids)].sort_values("cost_per_hour")
    if not front.empty:
        ax.step(front["cost_per_hour"], front["slo_rps"], where="post", color="tab:green", linewidth=1.5,
                label="Pareto front", zorder=2)
    rec = t[t["recommended"].astype(bool)]
    if not rec.empty:
        ax.scatter(rec["cost_per_hour"], rec["slo_rps"], s=220, marker="*", color="tab:orange",
                   label="recommended configuration (measured)", zorder=4)
    r = a.recommendation
    if r.scaled and r.cost_per_hour is not None and r.capacity_rps is not None:
        ax.scatter([r.cost_per_hour], [r.capacity_rps], s=220, marker="*", facecolors="none",
                   edgecolors="tab:orange", label=f"recommended: {r.replicas} replicas (linear scaling)", zorder=4)
    if a.target_rps is not None:
        ax.axhline(a.target_rps, color="red", linestyle=":", linewidth=1, label=f"target {a.target_rps:g} req/s")
    for r in t.itertuples(index=False):
        ax.annotate(r.name, (r.cost_per_hour, r.slo_rps), textcoords="offset points", xytext=(6, 4),
                    fontsize="x-small")
    ax.set_xlabel("cost (USD per hour, on demand)")
    ax.set_ylabel("throughput within the SLO (req/s)")
    ax.set_title(f"Throughput within the SLO vs cost ({a.slo_text})")
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.25, y=0.15)
    ax.legend(fontsize="small", loc="best")
    return _png(fig)


def _bar_label(row: dict) -> str:
    how = f"search, {row['probes']} probes" if row["method"] == SEARCH else RAMP
    return f"{row['name']}\n({how})" + ("" if row["valid"] else "\nINVALID")


def capacity(a: Analysis) -> bytes:
    """The seed study's Figure 1 as capacity bars: throughput within the SLO per Config, its
    95% interval as error bars, coloured by cost per hour; ties with the best marked."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    t = a.table.sort_values(["slo_rps", "config_id"], ascending=[False, True], kind="stable")
    fig, (ax,) = _figure(4.6 + 0.15 * max(0, len(t) - 6))
    priced = t["cost_per_hour"].dropna()
    low, high = (float(priced.min()), float(priced.max())) if not priced.empty else (0.0, 1.0)
    if high - low < 1e-9:
        low, high = low * 0.9, high * 1.1 + 1e-9
    norm, cmap = Normalize(low, high), colormaps["viridis"]
    x = list(range(len(t)))
    rows = t.to_dict("records")
    colours = ["lightgrey" if pd.isna(r["cost_per_hour"]) else cmap(norm(r["cost_per_hour"])) for r in rows]
    bars = ax.bar(x, t["slo_rps"], color=colours, edgecolor="black", linewidth=0.6, zorder=2)
    for bar, r in zip(bars, rows, strict=True):
        if not r["valid"]:
            bar.set_hatch("xx")
            bar.set_alpha(0.55)
        if r["tied_with_best"]:
            bar.set_linewidth(2.2)
    _intervals(ax, x, t, ecolor="black", capsize=6, linewidth=1.3, zorder=3)
    top = t["capacity_hi"].fillna(t["slo_rps"]).fillna(0.0)
    best_id = next((r["config_id"] for r in rows if r["tied_with_best"]), None)
    for i, (r, y) in enumerate(zip(rows, top, strict=True)):
        words = [f"{r['slo_rps']:.1f}"]
        if r["tied_with_best"]:
            words.append("best" if r["config_id"] == best_id else "tied with best")
        if r["recommended"]:
            words.append("★ recommended")
        ax.annotate("\n".join(words), (i, y), textcoords="offset points", xytext=(0, 4), ha="center",
                    va="bottom", fontsize="small", fontweight="bold" if r["recommended"] else "normal")
    ax.set_xticks(x, [_bar_label(r) for r in rows], fontsize="small", rotation=0 if len(t) <= 5 else 30,
                  ha="center" if len(t) <= 5 else "right")
    ax.set_ylabel("throughput within the SLO (req/s)")
    ax.set_ylim(0, max(1.0, float(top.max())) * 1.28)
    ax.set_title(f"Capacity within the SLO ({a.slo_text}); error bars: {ties.CI_LABEL} (search only); "
                 "thick edge: tied with the best", fontsize="medium")
    ax.grid(True, axis="y", alpha=0.3, zorder=0)
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.01)
    bar.set_label("cost (USD per hour; grey: not priced)")
    return _png(fig)


@dataclass(frozen=True)
class _Marker:
    face: str
    edge: str
    marker: str


def _marker(p) -> _Marker:
    if not p.valid:
        return _Marker("grey", "grey", "x")
    colour = VERDICT_COLOURS.get(p.verdict, "grey")
    return _Marker("none" if p.marginal else colour, colour, "o")


def _fraction(value) -> float:
    """A fraction as the log axis draws it (missing or below the floor: the floor)."""
    return FRACTION_FLOOR if value is None or pd.isna(value) else max(float(value), FRACTION_FLOOR)


def probes(a: Analysis) -> bytes:
    """Per search Config: each probe's rate against its p99 (left) and its over-bound
    fraction with that fraction's interval (right), the capacity and its interval marked."""
    runs = _searches(a)
    fig, axes = _figure(0.8 + 2.7 * len(runs), len(runs), ncols=2)
    for (ax_p99, ax_over), ra in zip(axes, runs, strict=True):
        f, pr = ra.search, ra.run.probes
        for ax in (ax_p99, ax_over):
            if f.measured_rps is not None:
                ax.axvspan(f.lo, f.hi, color="tab:blue", alpha=0.12, label=f"capacity {ties.CI_LABEL}")
                ax.axvline(f.measured_rps, color="tab:blue", linewidth=1.4, label="capacity")
            ax.grid(True, alpha=0.3)
        for p in pr.itertuples(index=False):
            m = _marker(p)
            ax_p99.scatter([p.rate], [p.p99_ms], s=46, marker=m.marker, facecolors=m.face, edgecolors=m.edge,
                           linewidths=1.5, zorder=3)
            point = _fraction(p.over / p.requests if p.requests else None)
            lo, hi = _fraction(p.over_lo), _fraction(p.over_hi)
            ax_over.errorbar([p.rate], [point], yerr=[[max(0.0, point - lo)], [max(0.0, hi - point)]], fmt="none",
                             ecolor=m.edge, capsize=3, linewidth=1.1, zorder=2)
            ax_over.scatter([p.rate], [point], s=46, marker=m.marker, facecolors=m.face, edgecolors=m.edge,
                            linewidths=1.5, zorder=3)
        slo_ms = (ra.run.record.get("slo") or {}).get("p99_ms", a.slo.p99_ms)
        ax_p99.axhline(slo_ms, color="red", linestyle=":", linewidth=1, label=f"SLO p99 {slo_ms:g} ms")
        ax_over.axhline(ALLOWED_OVER, color="red", linestyle=":", linewidth=1,
                        label=f"SLO: p99 <= {slo_ms:g} ms, i.e. <= {ALLOWED_OVER:.0%} over")
        ax_over.set_yscale("log")
        ax_p99.set_ylabel("probe p99 (ms)")
        ax_over.set_ylabel(f"share over the bound\n(0 drawn at {FRACTION_FLOOR:.2%})")
        cap = (f"capacity {f.measured_rps:.1f} req/s ({ties.CI_LABEL} {f.lo:.1f}–{f.hi:.1f})"
               if f.measured_rps is not None else "no capacity found")
        ax_p99.set_title(f"{_label(ra)}: {cap}, {f.probes} probes", fontsize="medium", loc="left")
    _probe_legend(fig, axes[0][1])
    for ax in axes[-1]:
        ax.set_xlabel("probe rate (req/s, constant Poisson)")
    return _png(fig)


def _value(v) -> float:
    return float("nan") if v is None or pd.isna(v) else float(v)


def protocols(a: Analysis) -> bytes:
    """REST vs gRPC per deployment measured over both: capacity bars with their intervals
    (left) and bytes per request (right)."""
    df = a.protocols
    fig, axes = _figure(3.6, ncols=2)
    ax_cap, ax_bytes = axes[0]
    x = list(range(len(df)))
    for offset, p, label, colour in ((-0.2, "rest", "REST", "tab:orange"), (0.2, "grpc", "gRPC", "tab:blue")):
        rps = [_value(v) for v in df[f"{p}_rps"]]
        lo = [r - _value(v) if not pd.isna(v) else 0.0 for r, v in zip(rps, df[f"{p}_lo"], strict=True)]
        hi = [_value(v) - r if not pd.isna(v) else 0.0 for r, v in zip(rps, df[f"{p}_hi"], strict=True)]
        where = [i + offset for i in x]
        ax_cap.bar(where, rps, width=0.4, color=colour, yerr=[lo, hi], capsize=4, label=label)
        ax_bytes.bar(where, [_value(v) / 1000.0 for v in df[f"{p}_bytes"]], width=0.4, color=colour, label=label)
    for ax in (ax_cap, ax_bytes):
        ax.set_xticks(x, list(df["deployment"]))
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize="small")
    ax_cap.set_ylabel(f"capacity within the SLO (req/s, {ties.CI_LABEL})")
    ax_bytes.set_ylabel("bytes per request (kB)")
    return _png(fig)


def _probe_legend(fig, ax) -> None:
    from matplotlib.lines import Line2D

    handles, _ = ax.get_legend_handles_labels()
    handles += [Line2D([], [], marker="o", linestyle="", color=VERDICT_COLOURS["PASS"], label="PASS"),
                Line2D([], [], marker="o", linestyle="", color=VERDICT_COLOURS["FAIL"], label="FAIL"),
                Line2D([], [], marker="o", linestyle="", markerfacecolor="none", color="black",
                       label="marginal (point estimate at max_s)"),
                Line2D([], [], marker="x", linestyle="", color="grey", label="invalid (repeated)")]
    fig.legend(handles=handles, fontsize="small", loc="outside upper center", ncol=4)


@dataclass(frozen=True)
class FigureSpec:
    caption: str
    draw: Callable[[Analysis], bytes]
    applies: Callable[[Analysis], bool] = lambda a: True


FIGURES: dict[str, FigureSpec] = {
    "capacity.png": FigureSpec("Capacity within the SLO per configuration: 95% CI error bars (search), "
                               "colour = USD/h, thick edge = tied with the best", capacity),
    "probes.png": FigureSpec("Capacity search: each probe's rate vs its p99 and its share over the bound "
                             "(PASS green, FAIL red, hollow = marginal); band = capacity 95% CI", probes,
                             lambda a: bool(_searches(a))),
    "comparison.png": FigureSpec(f"{method_label(RAMP).capitalize()}: throughput ({WINDOW_S} s rolling mean) and "
                                 "p50/p99 latency over time", comparison, lambda a: bool(_ramps(a))),
    "protocols.png": FigureSpec(f"REST vs gRPC on the same deployment: capacity ({ties.CI_LABEL}) and bytes "
                                "per request", protocols, lambda a: not a.protocols.empty),
    "spectrum.png": FigureSpec("Latency percentile spectrum per configuration (HdrHistogram)", spectrum),
    "cost_throughput.png": FigureSpec("Throughput within the SLO vs cost, with the Pareto front", cost_throughput),
}


def names(a: Analysis) -> list[str]:
    """The figures this analysis gets, in report order."""
    return [name for name, spec in FIGURES.items() if spec.applies(a)]


def render_all(a: Analysis) -> dict[str, tuple[str, bytes]]:
    """file name -> (caption, PNG bytes), for the figures that apply."""
    return {name: (FIGURES[name].caption, FIGURES[name].draw(a)) for name in names(a)}
