"""The report's PNG figures (matplotlib, Agg canvas; no pyplot global state)."""

from __future__ import annotations

import io
from collections.abc import Callable

from analysis import hdr
from analysis.analyze import Analysis

WIDTH_IN, DPI = 10.0, 100


def _figure(height_in: float, nrows: int = 1, sharex: bool = False):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # Agg chosen here, not at import
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_IN, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, 1, sharex=sharex, squeeze=False)[:, 0]
    return fig, axes


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _label(ra) -> str:
    return ra.run.name + ("" if ra.run.valid else " (INVALID)")


def comparison(a: Analysis) -> bytes:
    """The seed study's Figure 1, across Configs: throughput, p50 and p99 per second over time."""
    fig, (ax_rps, ax_p50, ax_p99) = _figure(9.0, 3, sharex=True)
    for ra in a.runs:
        s = ra.run.series
        style = "-" if ra.run.valid else "--"
        (line,) = ax_rps.plot(s["t_s"], s["ok"], style, label=_label(ra), linewidth=1.4)
        ax_p50.plot(s["t_s"], s["p50_ms"], style, color=line.get_color(), linewidth=1.2)
        ax_p99.plot(s["t_s"], s["p99_ms"], style, color=line.get_color(), linewidth=1.2)
        if ra.sustained.window is not None:
            w = ra.sustained.window
            ax_rps.hlines(w.ok_rps, w.first_s, w.last_s, colors=line.get_color(), linewidth=4, alpha=0.35)
    ax_rps.set_ylabel("ok responses / s")
    ax_rps.set_title("Throughput and latency over time (bars: best window within the SLO)")
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
    """Latency by percentile from the HDR logs (after warm-up), one line per Config."""
    fig, (ax,) = _figure(5.0)
    ticks = [50.0, 90.0, 99.0, 99.9, 99.99, 99.999]
    x_max = 2.0
    for ra in a.runs:
        pcts, values = hdr.spectrum_ms(ra.run_histogram)
        if not pcts:
            continue
        x = [1.0 / max(1e-7, 1.0 - p / 100.0) for p in pcts]
        x_max = max(x_max, x[-1])
        (line,) = ax.plot(x, values, "-" if ra.run.valid else "--", label=_label(ra), linewidth=1.4)
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
    ax.set_title("Latency percentile spectrum over each run (HdrHistogram, corrected)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small", loc="upper left")
    return _png(fig)


def cost_throughput(a: Analysis) -> bytes:
    """SLO-bounded throughput vs cost per hour, with the Pareto front and the target rate."""
    fig, (ax,) = _figure(5.0)
    t = a.table[a.table["cost_per_hour"].notna()]
    good = t[t["valid"].astype(bool)]
    bad = t[~t["valid"].astype(bool)]
    ax.scatter(good["cost_per_hour"], good["slo_rps"], s=40, label="valid run", zorder=3)
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


FIGURES: dict[str, tuple[str, Callable[[Analysis], bytes]]] = {
    "comparison.png": ("Throughput and p50/p99 latency over time, per configuration", comparison),
    "spectrum.png": ("Latency percentile spectrum per configuration (HdrHistogram)", spectrum),
    "cost_throughput.png": ("Throughput within the SLO vs cost, with the Pareto front", cost_throughput),
}


def render_all(a: Analysis) -> dict[str, tuple[str, bytes]]:
    """file name -> (caption, PNG bytes)."""
    return {name: (caption, fn(a)) for name, (caption, fn) in FIGURES.items()}
