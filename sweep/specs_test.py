import json
from pathlib import Path

import pytest
import yaml

from formats.results import SWEEP_SCHEMA
from sweep import specs
from sweep.loop import SweepError

SWEEPS = Path("deploy/sweeps")


def _spec(tmp_path: Path, **changes) -> Path:
    doc = yaml.safe_load((SWEEPS / "local.yaml").read_text())
    doc.update(changes)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_seed_profile_and_model_name_override_the_spec(tmp_path):
    sweep = specs.load_spec(_spec(tmp_path), "seed", "other")
    for c in sweep.configs:
        assert c.profile["kind"] == "ramp" and c.profile["users"] == 150
        assert c.profile["duration_s"] == 300.0 and c.serving.model_name == "other"
    plain = specs.load_spec(_spec(tmp_path))
    assert {c.profile["duration_s"] for c in plain.configs} == {100.0}


def test_a_bad_spec_is_a_sweep_error_naming_the_field(tmp_path):
    with pytest.raises(SweepError, match=r"spec.yaml.*slo"):
        specs.load_spec(_spec(tmp_path, slo={"p99_ms": -1}))
    with pytest.raises(SweepError, match="unknown profile"):
        specs.load_spec(_spec(tmp_path), "locust")


def test_recorded_sweep_is_refused_unless_it_expands_the_same(tmp_path):
    sweep = specs.load_spec(_spec(tmp_path))
    record = {"schema": SWEEP_SCHEMA, "spec": sweep.spec, "source": sweep.source,
              "configs": [c.to_record() for c in sweep.configs]}
    (tmp_path / "sweep.json").write_text(json.dumps(record))
    again, recorded = specs.load_recorded(tmp_path)
    assert [c.id for c in again.configs] == [c.id for c in sweep.configs] and recorded == record
    record["configs"][0]["id"] = "c-0000000000"
    (tmp_path / "sweep.json").write_text(json.dumps(record))
    with pytest.raises(SweepError, match=r"no longer expands to the same Configs .*: c-0000000000"):
        specs.load_recorded(tmp_path)
    (tmp_path / "sweep.json").write_text(json.dumps({"schema": "servesweep.sweep/0"}))
    with pytest.raises(SweepError, match="unknown schema"):
        specs.load_recorded(tmp_path)
    with pytest.raises(SweepError, match="cannot read"):
        specs.load_recorded(tmp_path / "missing")


@pytest.mark.parametrize("changes, field, reason", [
    ({"slo": {"p99_ms": 1000, "error_rate": 1}}, "slo.error_rate", "[0, 1)"),
    ({"profile": {"kind": "constant", "rate": 5, "duration": "fast"}}, "profile.duration", "bad duration"),
])
def test_list_refuses_what_the_report_would_refuse_with_file_field_and_reason(tmp_path, changes, field, reason):
    from click.testing import CliRunner

    from sweep import cli

    path = _spec(tmp_path, **changes)
    result = CliRunner().invoke(cli.main, ["--sweep", str(path), "--list"])
    assert result.exit_code != 0
    assert str(path) in result.output and field in result.output and reason in result.output


def test_list_accepts_half_seconds_as_every_flag_does(tmp_path):
    from click.testing import CliRunner

    from sweep import cli

    path = _spec(tmp_path, profile={"kind": "constant", "rate": 5, "duration": ".5s"})
    result = CliRunner().invoke(cli.main, ["--sweep", str(path), "--list"])
    assert result.exit_code == 0, result.output
    assert "profile=constant 0.5s" in result.output


def test_load_options_are_refused_before_anything_runs(tmp_path):
    with pytest.raises(SweepError, match=r"load.warmup: 200 s is not shorter"):
        specs.load_spec(_spec(tmp_path, load={"warmup": "200s"}))
    with pytest.raises(SweepError, match=r"load: .*no/such/body"):
        specs.load_spec(_spec(tmp_path, load={"payload": "file:no/such/body"}))
    sweep = specs.load_spec(_spec(tmp_path, load={"max_in_flight": 64, "timeout": "5s"}))
    got = specs.load_options(sweep, {"--timeout": "2s"})
    assert (got.max_in_flight, got.timeout_s) == (64, 2.0)  # a flag wins over the spec


def test_an_old_recorded_load_is_repeated_as_it_was_judged(tmp_path):
    sweep = specs.load_spec(_spec(tmp_path))
    old = {"load": {"payload": "b64", "max_in_flight": 256, "timeout_s": 30.0, "transport": "auto"}}
    got = specs.load_options(sweep, recorded=old)
    assert (got.timeout_s, got.max_send_lag_ms, got.priority) == (30.0, 5.0, "normal")
    with pytest.raises(SweepError, match="--rerun repeats the recorded load options"):
        specs.load_options(sweep, {"--workers": "2"}, recorded=old)
