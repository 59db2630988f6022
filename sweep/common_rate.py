"""REST vs gRPC at one rate: after the searches, a comparison probe per protocol of a deployment.

The searches of a deployment's REST and gRPC Configs probe different rates, so their
latencies do not compare. When a sweep measured one deployment over both protocols (the
Configs equal but for ``protocol``) and both searches found a capacity, each Config gets
one more probe at the same rate, ``COMMON_FRACTION`` of the lower capacity (below both, so
both are served within the SLO and their latencies are the protocols' difference). It is
a probe like the others (sequential, the same rules and validity check; an invalid one is
repeated, at most ``ATTEMPTS`` times) written to probes.csv as repeat 0 (not part of any
search) under probes/common-<n>/, and to run.json as ``common_probe``. Only for backends
that hold every Config at once: the others have torn them down by then.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from formats.results import PROBES_DIR, protocol_pairs
from sweep.prober import run_probe

COMMON_FRACTION = 0.8
ATTEMPTS = 3
COMMON_REPEAT = 0  # probes.csv's repeat for a comparison probe


def pairs(subjects: Sequence) -> list[tuple]:
    """(REST subject, gRPC subject) per deployment both were searched for, in order."""
    return [(subjects[i], subjects[j]) for i, j in protocol_pairs([s.config.to_record() for s in subjects])]


def common_rate(capacities: Sequence[float | None]) -> float | None:
    """The comparison rate: COMMON_FRACTION of the lower capacity (None without both)."""
    if any(c is None or c <= 0 for c in capacities):
        return None
    return round(COMMON_FRACTION * min(capacities), 3)


def probe_pairs(subjects: Sequence, capacity_of: Callable, load, rules, *, seed: int,
                say: Callable[[object, str], None]) -> None:
    """Runs the comparison probes; sets each subject's ``common_probe`` (a dict, or None)."""
    for rest, grpc in pairs(subjects):
        rate = common_rate([capacity_of(rest), capacity_of(grpc)])
        if rate is None:
            continue
        for subject in (rest, grpc):
            for attempt in range(1, ATTEMPTS + 1):
                rel = f"{PROBES_DIR}/common-{attempt}"
                say(subject, f"comparison probe at {rate:.2f} req/s (REST vs gRPC, attempt {attempt}) ...")
                probe = run_probe(load, subject.urls, rate, rules, subject.dir / rel,
                                  seed=seed * 7_919 + subject.index * 31 + attempt,
                                  config_record=subject.config.to_record(),
                                  server_identity=dict(subject.target.identity))
                subject.log.write(subject.config.id, COMMON_REPEAT, attempt, probe, rel)
                if not probe.complete:
                    raise KeyboardInterrupt
                lat = probe.record["latency_ms"]["corrected"]
                subject.common_probe = {"rate": rate, "p50_ms": lat["p50"], "p90_ms": lat["p90"],
                                        "p99_ms": lat["p99"], "verdict": probe.outcome.decision.outcome,
                                        "valid": probe.outcome.valid, "dir": rel}
                say(subject, f"comparison probe at {rate:.2f} req/s: p50 {lat['p50']:.0f} ms, p99 "
                             f"{lat['p99']:.0f} ms" + ("" if probe.outcome.valid else f", INVALID: "
                                                       f"{probe.outcome.reason}"))
                if probe.outcome.valid:
                    break
