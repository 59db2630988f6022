"""Each replica's share of each probe (replicas.csv, written by the sweep), a row per Config.

The sweep reads every replica's request counter before and after each probe; a replica's
share is off when it differs from 1/R by more than ``formats.results.IMBALANCE``
(relative). Per Config: how many replicas, how many valid probes had every replica read,
the largest deviation among them and which replica, and how many probes were off. Only
valid probes count: an invalid one (an agent lost, the generator behind) is not the
Config's.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from analysis.results import Run, check_schema_line
from formats.results import IMBALANCE, REPLICAS_FILE, REPLICAS_SCHEMA


def replica_rows(runs: Sequence[Run]) -> list[dict]:
    """One row per searched Config that has replicas.csv (none when no Config has it)."""
    rows = []
    for run in runs:
        path = run.dir / REPLICAS_FILE
        if not path.is_file() or run.probes is None:
            continue
        check_schema_line(path, REPLICAS_SCHEMA)
        shares = pd.read_csv(path, comment="#", dtype={"replica": str, "error": str})
        valid = set(run.probes.loc[run.probes["valid"] == 1, "dir"])
        read = shares[shares["dir"].isin(valid)].dropna(subset=["deviation"])
        if read.empty:
            rows.append({"name": run.name, "replicas": None, "probes": 0, "worst": None, "replica": None,
                         "off": 0})
            continue
        worst = read.loc[read["deviation"].abs().idxmax()]
        rows.append({"name": run.name, "replicas": int(read["replicas"].max()), "probes": read["dir"].nunique(),
                     "worst": float(worst["deviation"]), "replica": str(worst["replica"]),
                     "off": read.loc[read["deviation"].abs() > IMBALANCE, "dir"].nunique()})
    return rows


def replica_markdown(runs: Sequence[Run]) -> list[str]:
    """summary.md's "Replica shares" section (no lines when no Config has replicas.csv)."""
    rows = replica_rows(runs)
    if not rows:
        return []
    lines = ["**Replica shares.** Each replica's share of each valid probe's requests (TF Serving's "
             f"request_count, read before and after it); off when more than {IMBALANCE:.0%} from 1/R "
             "(`replicas.csv`).", "",
             "| Config | replicas | probes read | largest deviation from 1/R | at | probes off |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        worst = "-" if r["worst"] is None else f"{r['worst']:+.1%}"
        lines.append(f"| {r['name']} | {r['replicas'] or '-'} | {r['probes']} | {worst} | {r['replica'] or '-'} "
                     f"| {'**' + str(r['off']) + '**' if r['off'] else 0} |")
    return lines
