"""status.json: one Config's state in a sweep (running, done, failed, interrupted), kept
current on disk as the Config goes through its phases, so a re-run knows what finished."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from formats.results import RUN_FILE, STATUS_SCHEMA
from loadgen.results import write_json_atomic

STATUS_FILE = "status.json"


def now_utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def write_json(path: Path, data: dict) -> None:
    """The sweep's JSON files, written as the generator writes run.json (atomically)."""
    write_json_atomic(str(path), data)


def fresh_dir(config_dir: Path) -> None:
    """An empty directory for a Config's measurement (a failed, interrupted or --force'd
    earlier attempt is removed)."""
    if config_dir.exists():
        shutil.rmtree(config_dir)
    config_dir.mkdir(parents=True)


def read_status(config_dir: Path) -> dict | None:
    try:
        status = json.loads((config_dir / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return status if status.get("schema") == STATUS_SCHEMA else None


def is_complete(config_dir: Path) -> bool:
    status = read_status(config_dir)
    return bool(status and status["status"] == "done" and (config_dir / RUN_FILE).is_file())


class Status:
    """A Config's status.json, written on every change."""

    def __init__(self, config_dir: Path, config_id: str, name: str) -> None:
        self.path = config_dir / STATUS_FILE
        self.data: dict[str, Any] = {"schema": STATUS_SCHEMA, "config_id": config_id, "name": name,
                                     "status": "running", "error": None, "problems": [], "phases_s": {},
                                     "started_at": now_utc()}
        self.save()

    @property
    def problems(self) -> list[str]:
        return self.data["problems"]

    @property
    def state(self) -> str:
        return self.data["status"]

    def save(self) -> None:
        write_json(self.path, self.data)

    def timed(self, phase: str, t0: float) -> None:
        """Adds the seconds since ``t0`` (time.monotonic) to ``phase``."""
        phases = self.data["phases_s"]
        phases[phase] = round(phases.get(phase, 0.0) + time.monotonic() - t0, 3)
        self.save()

    def finish(self, state: str, error: str | None = None, valid: bool | None = None) -> None:
        self.data.update(status=state, error=error, valid=valid, ended_at=now_utc())
        self.save()
