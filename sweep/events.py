"""What a sweep tells its caller: progress events and each Config's outcome."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from loadgen.run import Progress

PHASES = ("deploying", "warming up", "guess", "loading", "probing", "tearing down")

@dataclasses.dataclass(frozen=True)
class Event:
    """Progress of the sweep, for display."""

    index: int  # 1-based
    total: int
    name: str
    phase: str  # one of PHASES, or "skipped" / "done" / "failed"
    detail: str = ""
    progress: Progress | None = None
    eta_s: float | None = None


@dataclasses.dataclass(frozen=True)
class ConfigOutcome:
    config_id: str
    name: str
    status: str  # done | skipped | failed | interrupted
    error: str | None = None
    valid: bool | None = None
    problems: tuple[str, ...] = ()
    seconds: float = 0.0


@dataclasses.dataclass(frozen=True)
class SweepOutcome:
    out_dir: Path
    outcomes: tuple[ConfigOutcome, ...]
    interrupted: bool
    seconds: float

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)
