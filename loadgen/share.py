"""One generator's share of a run, as a controller hands it to an agent (``servesweep.share/1``).

A run's schedule is shared by ``count`` generators: generator ``index`` sends every
``count``-th arrival (global index ``index mod count``), exactly as ``--workers`` splits it
between processes, so the union of the shares is the schedule. The share carries the
run's options (as a spec's ``load:`` says them, plus targets, profile and SLO bound) and
the request body itself: an agent in a cluster has no file of the controller's machine.
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

from formats.agent import SHARE_SCHEMA as SCHEMA
from loadgen.options import GeneratorOptions, OptionsError, RunOptions
from loadgen.payload import Payload
from loadgen.schedule import Profile


class ShareError(ValueError):
    """A share record that cannot be read (message says why)."""


@dataclasses.dataclass(frozen=True)
class Share:
    options: RunOptions  # options.workers == count: the engine splits by it
    index: int
    payload: Payload

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.options.workers:
            raise ShareError(f"share index {self.index} is not within 0..{self.options.workers - 1}")

    @property
    def count(self) -> int:
        return self.options.workers

    def to_wire(self) -> dict[str, Any]:
        o, p = self.options, self.payload
        return {
            "schema": SCHEMA,
            "index": self.index,
            "load": GeneratorOptions.to_mapping(o),
            "targets": list(o.targets),
            "profile": o.profile.to_dict(),
            "slo_latency_ms": o.slo_latency_ms,
            "payload": {**{f.name: getattr(p, f.name) for f in dataclasses.fields(p) if f.name != "body"},
                        "body_b64": base64.b64encode(p.body).decode("ascii")},
        }

    @classmethod
    def from_wire(cls, d: Any) -> Share:
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            raise ShareError(f"not a {SCHEMA} record")
        try:
            load = GeneratorOptions.from_mapping(d["load"])
            options = RunOptions.of(load, targets=tuple(d["targets"]), profile=Profile.from_dict(d["profile"]),
                                    slo_latency_ms=d["slo_latency_ms"])
            p = dict(d["payload"])
            payload = Payload(body=base64.b64decode(p.pop("body_b64"), validate=True), **p)
            return cls(options=options, index=int(d["index"]), payload=payload)
        except ShareError:
            raise
        except (KeyError, TypeError, ValueError, OptionsError) as e:
            raise ShareError(f"a bad share record: {type(e).__name__}: {e}") from None
