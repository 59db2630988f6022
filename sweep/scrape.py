"""Scrape each replica's TF Serving Prometheus metrics before and after a measurement
(server_metrics.csv), and each replica's share of the requests (replicas.csv).

A replica is read on its own (``deploy.target.Replica``): a local server at its base URL,
a cluster's pod through the API server's pod proxy. The replicas are read in parallel, so
a probe's scrapes cost one round trip, not one per replica.
"""

from __future__ import annotations

import concurrent.futures
import csv
from collections.abc import Sequence
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from deploy.target import DeployError, Replica
from formats.results import IMBALANCE, REPLICAS_FILE, SERVER_METRICS_SCHEMA
from serving.metrics import REQUEST_COUNT

METRICS_PATH = "/monitoring/prometheus/metrics"

Samples = dict[tuple[str, str], float]
Scrape = tuple[Samples, str | None]  # the samples, or why there are none (or only some)


def scrape(replica: Replica, timeout_s: float = 5.0) -> Scrape:
    """All samples at ``replica``'s metrics endpoint, keyed by (name, labels); or an error."""
    try:
        text = replica.get(METRICS_PATH, timeout_s).decode("utf-8", "replace")
    except DeployError as err:
        return {}, f"{replica.name}{METRICS_PATH}: {err}"
    samples: Samples = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                samples[(sample.name, labels)] = sample.value
    except ValueError as err:
        return samples, f"{replica.name}{METRICS_PATH}: unparseable metrics: {err}"
    return samples, None


def scrape_all(replicas: Sequence[Replica], timeout_s: float = 5.0) -> list[Scrape]:
    """``scrape`` of every replica, at once; in the replicas' order."""
    if not replicas:
        return []
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(replicas))) as pool:
        return list(pool.map(lambda r: scrape(r, timeout_s), replicas))


def write_csv(path: Path, names: Sequence[str], before: Sequence[Samples], after: Sequence[Samples]) -> int:
    """One row per (replica, metric, labels): value before, after and the difference
    (column ``base_url``: where the replica was read, a base URL or ``pod/NAME``)."""
    rows = 0
    with path.open("w", newline="") as handle:
        handle.write(f"# {SERVER_METRICS_SCHEMA}\n")
        writer = csv.writer(handle)
        writer.writerow(["replica", "base_url", "metric", "labels", "before", "after", "delta"])
        for replica, (name, b, a) in enumerate(zip(names, before, after, strict=True)):
            for key in sorted(set(b) | set(a)):
                old, new = b.get(key), a.get(key)
                delta = None if old is None or new is None else new - old
                writer.writerow([replica, name, key[0], key[1], old, new, delta])
                rows += 1
    return rows


def record(path: Path, names: Sequence[str], before: Sequence[Scrape], after: Sequence[Scrape]) -> list[str]:
    """server_metrics.csv from ``scrape`` results taken before and after a measurement
    (nothing when there are no replicas); returns the scrapes' errors."""
    if not names:
        return []
    write_csv(path, names, [s for s, _ in before], [s for s, _ in after])
    return [err for _, err in [*before, *after] if err]


# prometheus_client's parser names a counter's samples NAME_total (TF Serving writes NAME)
REQUEST_COUNTS = (REQUEST_COUNT, REQUEST_COUNT + "_total")


def requests(samples: Samples) -> float:
    """The requests a replica counted (TF Serving's request_count, every model and status)."""
    return sum(v for (name, _), v in samples.items() if name in REQUEST_COUNTS)


def shares(names: Sequence[str], before: Sequence[Scrape], after: Sequence[Scrape]) -> list[dict]:
    """Each replica's share of the requests between the two scrapes: a row of replicas.csv
    (without the probe's columns). ``imbalanced`` when the share is off 1/R by more than
    IMBALANCE (relative); a replica that could not be read has its error instead."""
    counts: list[int | None] = []
    errors: list[str] = []
    for (b, b_err), (a, a_err) in zip(before, after, strict=True):
        error = b_err or a_err or ("" if any(k[0] in REQUEST_COUNTS for k in a) else f"no {REQUEST_COUNT}")
        counts.append(None if error else round(requests(a) - requests(b)))
        errors.append(error)
    total = sum(c for c in counts if c is not None)
    n = len(names)
    rows = []
    for name, count, error in zip(names, counts, errors, strict=True):
        share = count / total if count is not None and total > 0 and not any(errors) else None
        deviation = None if share is None else share * n - 1.0
        rows.append({"replicas": n, "replica": name, "requests": count, "share": share, "deviation": deviation,
                     "imbalanced": None if deviation is None else abs(deviation) > IMBALANCE, "error": error})
    return rows


def imbalance_note(rows: Sequence[dict]) -> str | None:
    """What a probe's shares say when they are off (None when even, or unknown)."""
    off = [r for r in rows if r["imbalanced"]]
    if not off:
        return None
    n = rows[0]["replicas"]
    parts = ", ".join(f"{r['replica']} {r['share']:.0%}" for r in off)
    return f"replica shares off 1/{n} = {1 / n:.0%} by more than {IMBALANCE:.0%}: {parts}"


def imbalanced_probes(dirs: Sequence[str]) -> str:
    """A Config's problem: the probes whose replica shares were off."""
    return (f"replica shares off 1/R by more than {IMBALANCE:.0%} in {len(dirs)} probes ({', '.join(dirs)}; "
            f"{REPLICAS_FILE})")
