"""The self-contained HTML report: figures as data URIs, a sortable table, the run facts."""

from __future__ import annotations

import base64
import math
from html import escape
from typing import Any

import pandas as pd

from analysis import facts, protocols
from analysis.analyze import Analysis, method_label
from analysis.results import RAMP, SEARCH
from analysis.throughput import WINDOW_S

# (column, heading, format) for the HTML table; format None = text. Two cells are composed:
# "config" (the name, its id below) and "ci" (capacity_lo–capacity_hi, sorted by its lower end).
# capacity_rps is not shown: it equals "req/s within SLO" except for a search under another
# SLO, which its note explains. For width, cost_per_month (USD/h x 730) is left to table.csv
# and the notes are listed under the table.
TABLE = [
    ("config", "Config", None), ("method", "method", None), ("machine_type", "machine", None),
    ("nodes", "nodes", "{:.0f}"), ("replicas", "replicas", "{:.0f}"), ("valid", "valid", None),
    ("slo_rps", "req/s within SLO", "{:.1f}"), ("ci", "95% CI (req/s)", None),
    ("tied_with_best", "tied with best", None), ("probes", "probes", "{:.0f}"),
    ("p50_ms_at_slo", "p50 ms @SLO", "{:.0f}"),
    ("p90_ms_at_slo", "p90 ms @SLO", "{:.0f}"),
    ("p99_ms_at_slo", "p99 ms @SLO", "{:.0f}"), ("p99_9_ms_at_slo", "p99.9 ms @SLO", "{:.0f}"),
    ("p99_ms_run", "p99 ms run", "{:.0f}"), ("error_rate", "errors (run)", "{:.2%}"),
    ("error_classes", "error classes (share)", None),
    ("cost_per_hour", "USD/h", "{:.4f}"), ("cost_per_day", "USD/24h", "{:.2f}"),
    ("usd_per_million", "USD/1M req", "{:.2f}"),
    ("pareto", "Pareto", None),
]

CSS = """
body{font-family:system-ui,sans-serif;margin:1.5rem auto;max-width:1400px;padding:0 1rem;color:#222}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
.rec{background:#eef7ee;border-left:4px solid #3a3;padding:.7rem 1rem}
.warn{background:#fff6e0;border-left:4px solid #d90;padding:.5rem 1rem}
.none{background:#fbeeee;border-left-color:#c33}
table{border-collapse:collapse;font-size:.85rem;width:100%}
th,td{border:1px solid #ddd;padding:.25rem .4rem;text-align:left;vertical-align:top}
th.sortable{cursor:pointer;background:#f4f4f4}th.sortable:hover{background:#e8e8e8}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
#configs td:nth-child(1),#configs td:nth-child(3),td.num{white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums}.wide{overflow-x:auto}
#configs{font-size:.75rem}#configs th,#configs td{padding:.2rem .3rem}
#configs .id{display:block;font-size:.7rem;color:#666;font-weight:normal}
#host{width:auto}#host th{background:#f4f4f4;font-weight:600}#runs{font-size:.75rem}
tr.invalid{background:#fff3f3;color:#844}tr.recommended{background:#f0fff0;font-weight:600}
figure{margin:1rem 0}img{max-width:100%;height:auto;border:1px solid #eee}
code{font-size:.8rem;word-break:break-all}.small{font-size:.8rem;color:#555}
"""

JS = """
(function(){
  function key(td){var v=td.getAttribute('data-v');var n=parseFloat(v);
    return (v!==null&&v!==''&&!isNaN(n))?[0,n]:[1,(td.textContent||'').toLowerCase()];}
  document.querySelectorAll('table.sortable').forEach(function(table){
    var heads=table.querySelectorAll('th');
    heads.forEach(function(th,i){th.classList.add('sortable');th.addEventListener('click',function(){
      var asc=th.getAttribute('aria-sort')!=='ascending';
      heads.forEach(function(h){h.removeAttribute('aria-sort');});
      th.setAttribute('aria-sort',asc?'ascending':'descending');
      var body=table.tBodies[0];var rows=Array.prototype.slice.call(body.rows);
      rows.sort(function(a,b){var x=key(a.cells[i]),y=key(b.cells[i]);
        var c=x[0]-y[0]||(x[1]<y[1]?-1:x[1]>y[1]?1:0);return asc?c:-c;});
      rows.forEach(function(r){body.appendChild(r);});});});});
  function check(){var imgs=document.images,ok=0;
    for(var i=0;i<imgs.length;i++){if(imgs[i].complete&&imgs[i].naturalWidth>0){ok++;}}
    document.body.setAttribute('data-images-ok',ok+'/'+imgs.length);
    document.body.setAttribute('data-report-ready','1');}
  if(document.readyState==='complete'){check();}else{window.addEventListener('load',check);}
})();
"""


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _cell(value: Any, fmt: str | None, column: str = "") -> str:
    if _missing(value):
        return '<td data-v=""></td>'
    if isinstance(value, bool) or fmt is None:
        no = "NO" if column == "valid" else "no"
        text = ("yes" if value else no) if isinstance(value, bool) else str(value)
        sort = "1" if value is True else "0" if value is False else text
        return f'<td data-v="{escape(sort)}">{escape(text)}</td>'
    return f'<td class="num" data-v="{float(value)!r}">{escape(fmt.format(value))}</td>'


def _ci_cell(r: dict[str, Any]) -> str:
    lo, hi = r["capacity_lo"], r["capacity_hi"]
    if _missing(lo) or _missing(hi):
        return '<td data-v=""></td>'
    return f'<td class="num" data-v="{float(lo)!r}">{lo:.1f}–{hi:.1f}</td>'


def _config_cell(r: dict[str, Any]) -> str:
    return (f'<td data-v="{escape(str(r["name"]))}">{escape(str(r["name"]))}'
            f'<span class="id">{escape(str(r["config_id"]))}</span></td>')


_COMPOSED = {"ci": _ci_cell, "config": _config_cell}


def _table(a: Analysis) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for _, h, _ in TABLE)
    rows = []
    for r in a.table.to_dict("records"):
        cls = "recommended" if r["recommended"] else ("invalid" if not r["valid"] else "")
        shown = {**r, "method": method_label(r["method"]),
                 "error_classes": str(r["error_classes"] or "").replace("|", " | ") or None}
        cells = "".join(_COMPOSED[c](r) if c in _COMPOSED else _cell(shown[c], f, c) for c, _, f in TABLE)
        rows.append(f'<tr class="{cls}">{cells}</tr>')
    notes = "".join(f"<li><b>{escape(str(r['name']))}</b>: {escape(str(r['note']))}</li>"
                    for r in a.table.to_dict("records") if r["note"])
    return (f'<div class="wide"><table class="sortable" id="configs"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>'
            + (f'<p class="small">Notes:</p><ul id="notes" class="small">{notes}</ul>' if notes else ""))


def _rows(items: list[tuple[str, Any]], code: bool = True) -> str:
    """Two-column rows (heading, value), skipping missing values."""
    wrap = (lambda v: f"<code>{escape(str(v))}</code>") if code else (lambda v: escape(str(v)))
    return "".join(f"<tr><th>{escape(k)}</th><td>{wrap(v)}</td></tr>" for k, v in items if v is not None)


def _short(digest: str, keep: int = 19) -> str:
    """'sha256:18f2635f389f…' (the whole digest is the cell's title)."""
    return digest if len(digest) <= keep + 1 else digest[:keep] + "…"


def _method_facts(ra) -> str:
    rec = ra.run.record
    if not ra.run.is_search:
        return f"{method_label(ra.run.method)}: {rec.get('duration_s')} s (warm-up {rec.get('warmup_s')} s)"
    rules = rec.get("rules") or {}
    guess = rec.get("guess_rps")
    return (f"{method_label(ra.run.method)}: {ra.search.probes} probes, {rec.get('duration_s')} s probed"
            + (f", first guess {guess:.1f} req/s" if isinstance(guess, (int, float)) else "")
            + (f", resolution {rules['resolution']:.0%}" if isinstance(rules.get("resolution"), float) else ""))


def _facts(a: Analysis) -> str:
    sweep = a.results.sweep or {}
    items = [("sweep", a.results.sweep_id), ("git commit", facts.git_text(sweep)),
             ("lock sha256", sweep.get("lock_sha256")), ("method", facts.method_text(sweep)),
             ("SLO", a.slo_text), ("target", f"{a.target_rps:g} req/s" if a.target_rps else "none given"),
             ("pricing", a.prices.path.name)]
    top = _rows(items)
    host = facts.host_rows(sweep.get("host"))
    host_table = f'<h3>Host</h3><table id="host">{_rows(host, code=False)}</table>' if host else ""
    runs = []
    for ra in a.runs:
        rec, srv = ra.run.record, ra.run.record.get("server") or {}
        tool = rec.get("tool") or {}
        payload = rec.get("payload") or {}
        validity = "valid" if ra.run.valid else "INVALID: " + "; ".join(ra.run.reasons)
        digest = srv.get("image_digest") or "-"
        cells = [f"<td>{escape(str(v))}</td>" for v in (
            ra.run.name, ra.run.id, f"{tool.get('name', '')} {tool.get('version', '')}",
            f"{srv.get('kind', '')} {srv.get('version', '')}")]
        cells.append(f'<td title="{escape(digest)}"><code>{escape(_short(digest))}</code></td>')
        cells += [f"<td>{escape(str(v))}</td>" for v in (
            " ".join(srv.get("argv") or []), f"{payload.get('kind', '')} {payload.get('bytes', '')} B "
            f"sha256:{str(payload.get('sha256', ''))[:12]}", rec.get("started_at"),
            _method_facts(ra), validity)]
        runs.append("<tr>" + "".join(cells) + "</tr>")
    heads = ("config", "id", "tool", "server", "image digest", "server argv", "payload", "started",
             "method and duration", "validity")
    rates = "".join(f"<tr><td>{escape(r.family)}</td><td>{escape(r.resource)}</td><td>{r.usd_per_hour:g}</td>"
                    f"<td>{escape(r.region)}</td><td>{escape(r.source)}</td><td>{escape(r.date)}</td></tr>"
                    for r in a.prices.rates)
    return (f"<table>{top}</table>{host_table}<h3>Runs</h3><div class=\"wide\"><table class=\"sortable\" "
            "id=\"runs\"><thead><tr>" + "".join(f"<th>{h}</th>" for h in heads)
            + f"</tr></thead><tbody>{''.join(runs)}</tbody></table></div>"
            "<h3>Rates (USD per unit-hour)</h3><table><thead><tr><th>family</th><th>resource</th><th>rate</th>"
            f"<th>region</th><th>source</th><th>date</th></tr></thead><tbody>{rates}</tbody></table>")


def _definitions(a: Analysis) -> str:
    """How throughput within the SLO was found, for the methods this report holds."""
    methods = {ra.run.method for ra in a.runs}
    out = []
    if SEARCH in methods:
        out.append("<b>Capacity search:</b> throughput within the SLO is the Config's capacity, the rate where "
                   "the share of requests over the p99 bound, counted over all its constant-rate probes together, "
                   "crosses 1% (PASS/FAIL verdicts at 95% confidence steer the search), with its 95% CI; "
                   "Configs whose intervals overlap the best one's are tied within noise. Its latencies @SLO are "
                   "those of its highest passing probe.")
    if methods - {SEARCH}:
        out.append(f"<b>{escape(method_label(RAMP).capitalize())}:</b> throughput within the SLO is the "
                   f"highest ok-response rate over a {WINDOW_S}-second window whose p99 (merged HdrHistogram, "
                   "latency from the intended send time) and error rate meet the SLO, after warm-up and within "
                   "the schedule; a single ramp has no interval, so nothing it measured is called tied.")
    return " ".join(out)


def _protocols(a: Analysis) -> str:
    """The REST-vs-gRPC section, when a deployment was measured over both."""
    if a.protocols.empty:
        return ""
    head = "".join(f"<th>{escape(h)}</th>" for h in protocols.HEADINGS)
    rows = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>"
                   for row in protocols.display_rows(a.protocols))
    return (f'<h2>REST vs gRPC</h2><div class="wide"><table id="protocols"><thead><tr>{head}</tr></thead>'
            f'<tbody>{rows}</tbody></table></div><p class="small">{escape(protocols.NOTE)}</p>')


def render(a: Analysis, figures: dict[str, tuple[str, bytes]]) -> str:
    """The whole page as one string (no external resources)."""
    title = f"servesweep report — {a.results.sweep_id}"
    rec = a.recommendation
    figs = "".join(
        f'<figure><img alt="{escape(caption)}" data-name="{escape(name)}" '
        f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
        for name, (caption, png) in figures.items())
    front = ", ".join(a.table.loc[a.table["config_id"] == c, "name"].iloc[0] for c in a.pareto_ids) or "none"
    invalid = a.table[~a.table["valid"].astype(bool)]
    flagged = "".join(f"<li><b>{escape(r.name)}</b> ({escape(r.config_id)}): {escape(r.validity_reasons)}</li>"
                      for r in invalid.itertuples(index=False))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>
<body><h1>{escape(title)}</h1>
<div class="rec{'' if rec.config_id else ' none'}" id="recommendation"><b>Recommendation.</b> {escape(rec.text)}</div>
<p class="small">{_definitions(a)} Costs are on-demand node prices: nodes &times; (vCPU &times; rate + GB
&times; rate). Invalid runs are shown and flagged but never recommended. Pareto front (cost vs throughput):
{escape(front)}.</p>
{f'<p id="drift" class="{"warn" if a.drift.notable else "small"}"><b>Drift.</b> {escape(a.drift.text())}</p>'
 if a.drift is not None else ''}
{f'<h2>Invalid runs</h2><ul id="invalid">{flagged}</ul>' if flagged else ''}
{f'<p id="unmeasured"><b>Not measured</b> (in sweep.json, no results): {escape(", ".join(a.unmeasured))}</p>'
 if a.unmeasured else ''}
<h2>Configurations</h2><p class="small">Click a heading to sort.</p>{_table(a)}
{_protocols(a)}<h2>Figures</h2>{figs}
<h2>Run facts</h2>{_facts(a)}
<script>{JS}</script></body></html>
"""
