"""`//loadgen:sweep` (= `//sweep:sweep`) end to end on this machine: tiny model, two Configs, a few seconds each.

Checks the result files and the report, that a re-run skips finished Configs, and that a
replica killed mid-run is recorded while the sweep goes on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from deploy.local import LocalBackend
from deploy.spec import load_sweep
from loadgen.options import GeneratorOptions
from sweep import cli as sweep_cli
from sweep import loop as sweep_mod
from sweep import specs
from sweep.warmup import WarmupOptions

BAZEL_MODELS = Path("model/tiny_model")  # runfiles of //model:tiny_model

SPEC = {
    "schema": "servesweep.sweep-spec/1",
    "name": "mini",
    "backend": "local",
    "slo": {"p99_ms": 1000, "error_rate": 0.01},
    "profile": {"kind": "constant", "rate": 20, "duration": "4s"},
    "shapes": {
        "one": {"vcpu": 1, "memory_gb": 1, "nodes": 1, "pricing": "e2-custom"},
        "two": {"vcpu": 1, "memory_gb": 1, "nodes": 2, "pricing": "e2-custom"},
    },
    "serving": {"model_name": "tiny", "intra_op": "cpu", "inter_op": 1},
    "matrix": {"shape": ["two", "one"]},
}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """Models dir holding `tiny`: Bazel's export, or a fresh one outside Bazel (not in the source tree)."""
    if (BAZEL_MODELS / "tiny" / "1" / "saved_model.pb").is_file():
        return BAZEL_MODELS
    out = tmp_path_factory.mktemp("models")
    subprocess.run([sys.executable, "-m", "model.export", "--arch", "tiny", "--name", "tiny", "--out", str(out)],
                   check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory) -> Path:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 usable CPUs (two replicas pinned to one CPU each)")
    path = tmp_path_factory.mktemp("spec") / "mini.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    return path


def _sweep(spec_path: Path, models: Path, out: Path, *extra: str):
    args = ["--sweep", str(spec_path), "--models", str(models), "--out", str(out), "--payload", "b64", *extra]
    return CliRunner().invoke(sweep_cli.main, args, catch_exceptions=False)


def test_sweep_writes_results_and_report_then_skips_on_rerun(spec_path, models, tmp_path):
    first = _sweep(spec_path, models, tmp_path, "--method", "ramp")
    assert first.exit_code == 0, first.output
    (sweep_dir,) = [p for p in tmp_path.iterdir() if p.name.startswith("s-")]
    record = json.loads((sweep_dir / "sweep.json").read_text())
    assert record["schema"] == "servesweep.sweep/1" and len(record["configs"]) == 2
    assert record["host"]["cores"] >= 2 and record["git"].keys() == {"commit", "dirty"}
    for config in record["configs"]:
        d = sweep_dir / config["id"]
        run = json.loads((d / "run.json").read_text())
        assert run["config"]["id"] == config["id"] and run["complete"]
        assert run["server"]["kind"] in ("local", "tensorflow_model_server")
        assert run["totals"]["ok"] >= 60, run["totals"]  # 20/s for 4 s, minus nothing much
        assert len(run["targets"]) == config["replicas"]
        assert json.loads((d / "status.json").read_text())["status"] == "done"
        assert json.loads((d / "warmup.json").read_text())["ok"] >= 1
        assert (d / "series.csv").read_text().startswith("# servesweep.series/1")
        assert (d / "latency.hlog").stat().st_size > 0
        assert "request_count" in (d / "server_metrics.csv").read_text()
    report = sweep_dir / "report"
    assert (report / "index.html").is_file() and (report / "table.csv").is_file()
    assert "recommendation:" in first.output and str(report / "index.html") in first.output
    # 20 req/s of the tiny model meets the SLO on either shape: the cheaper one (1 node) is named.
    recommendation = first.output.split("recommendation:", 1)[1]
    assert "onex1" in recommendation, first.output

    second = _sweep(spec_path, models, tmp_path, "--method", "ramp")
    assert second.exit_code == 0, second.output
    assert "2 skipped" in second.output and "recommendation:" in second.output

    # --rerun re-expands the recorded spec into the very same Configs.
    rerun, recorded = specs.load_recorded(sweep_dir)
    assert [c.id for c in rerun.configs] == [c["id"] for c in record["configs"]]
    assert recorded["sweep_id"] == record["sweep_id"] == rerun.id
    broken = dict(record, configs=[dict(record["configs"][0], id="c-0000000000")])
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "sweep.json").write_text(json.dumps(broken))
    with pytest.raises(sweep_mod.SweepError, match="no longer expands to the same Configs"):
        specs.load_recorded(tmp_path / "other")

    # --list expands the recorded spec without running anything.
    listed = CliRunner().invoke(sweep_cli.main, ["--sweep", str(spec_path), "--list"])
    assert listed.exit_code == 0 and all(c["id"] in listed.output for c in record["configs"])


def test_killed_replica_is_recorded_and_the_sweep_goes_on(spec_path, models, tmp_path):
    sweep = load_sweep(spec_path)
    killed = []

    with LocalBackend(model_base_path=models / "tiny", workdir=tmp_path / "work") as backend:

        def on_event(event: sweep_mod.Event) -> None:
            if event.index == 1 and event.progress is not None and event.progress.t_s >= 1 and not killed:
                pid = backend.pids()[1]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

        options = sweep_mod.SweepOptions(out_dir=tmp_path / sweep.id, load=GeneratorOptions(payload="b64"),
                                         warmup=WarmupOptions(min_requests=4, window=2), method="ramp")
        outcome = sweep_mod.run_sweep(sweep, backend, options, on_event)

    assert killed, "the replica was never killed"
    first, second = outcome.outcomes
    assert first.status == "done" and any("replica 1" in p and "exited" in p for p in first.problems)
    status = json.loads((tmp_path / sweep.id / first.config_id / "status.json").read_text())
    assert status["problems"] == list(first.problems)
    run = json.loads((tmp_path / sweep.id / first.config_id / "run.json").read_text())
    assert run["totals"]["errors"] > 0 and run["totals"]["ok"] > 0  # replica 0 kept answering
    assert second.status == "done" and not second.problems


def test_the_default_method_searches_each_configs_capacity(spec_path, models, tmp_path):
    # short probes and a coarse resolution: this checks the wiring, not the statistics
    # (sweep/search_test.py and tests/capacity_test.py do)
    result = _sweep(spec_path, models, tmp_path, "--probe-max", "13s", "--resolution", "20%", "--max-repeats", "2")
    assert result.exit_code == 0, result.output
    assert "method: capacity search" in result.output and "capacity " in result.output
    (sweep_dir,) = [p for p in tmp_path.iterdir() if p.name.startswith("s-")]
    record = json.loads((sweep_dir / "sweep.json").read_text())
    assert record["method"] == "search" and record["search"]["resolution"] == 0.2
    assert record["search"]["repeats"] == 2  # the default: two independent searches, interleaved
    for config in record["configs"]:
        d = sweep_dir / config["id"]
        run = json.loads((d / "run.json").read_text())
        assert run["method"] == "search" and run["complete"]
        cap = run["capacity"]
        assert cap["rps"] is not None and cap["lo"] <= cap["rps"] <= cap["hi"], run["validity"]
        assert [s["repeat"] for s in run["searches"]] == [1, 2] and cap["repeats"] == 2
        probes = (d / "probes.csv").read_text()
        assert probes.startswith("# servesweep.probes/1")
        assert {row.split(",")[1] for row in probes.splitlines()[2:]} == {"1", "2"}
        assert run["probes"] >= 2 and run["guess_rps"] > 0
        assert "request_count" in (d / "server_metrics.csv").read_text()
        assert json.loads((d / "status.json").read_text())["status"] == "done"
    assert (sweep_dir / "report" / "index.html").is_file() and "recommendation:" in result.output
