"""Scrape TF Serving's Prometheus metrics before and after a run (server_metrics.csv)."""

from __future__ import annotations

import csv
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from formats.results import SERVER_METRICS_SCHEMA

METRICS_PATH = "/monitoring/prometheus/metrics"

Samples = dict[tuple[str, str], float]


def scrape(base_url: str, timeout_s: float = 5.0) -> tuple[Samples, str | None]:
    """All samples at ``base_url``'s metrics endpoint, keyed by (name, labels); or an error."""
    url = base_url.rstrip("/") + METRICS_PATH
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            text = response.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as err:
        return {}, f"{url}: {err}"
    samples: Samples = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                samples[(sample.name, labels)] = sample.value
    except ValueError as err:
        return samples, f"{url}: unparseable metrics: {err}"
    return samples, None


def write_csv(path: Path, base_urls: Sequence[str], before: Sequence[Samples], after: Sequence[Samples]) -> int:
    """One row per (replica, metric, labels): value before, after and the difference."""
    rows = 0
    with path.open("w", newline="") as handle:
        handle.write(f"# {SERVER_METRICS_SCHEMA}\n")
        writer = csv.writer(handle)
        writer.writerow(["replica", "base_url", "metric", "labels", "before", "after", "delta"])
        for replica, (url, b, a) in enumerate(zip(base_urls, before, after, strict=True)):
            for key in sorted(set(b) | set(a)):
                old, new = b.get(key), a.get(key)
                delta = None if old is None or new is None else new - old
                writer.writerow([replica, url, key[0], key[1], old, new, delta])
                rows += 1
    return rows


def record(path: Path, base_urls: Sequence[str], before: Sequence[tuple[Samples, str | None]],
           after: Sequence[tuple[Samples, str | None]]) -> list[str]:
    """server_metrics.csv from ``scrape`` results taken before and after a measurement
    (nothing when there are no replicas); returns the scrapes' errors."""
    if not base_urls:
        return []
    write_csv(path, base_urls, [s for s, _ in before], [s for s, _ in after])
    return [err for _, err in [*before, *after] if err]
