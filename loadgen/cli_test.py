import pytest
from click.testing import CliRunner

from loadgen import cli
from loadgen.run import Progress

URL = "http://127.0.0.1:9/v1/models/m:predict"


@pytest.mark.parametrize("args, message", [
    (["--rate", "10"], "Missing option '--target'"),
    (["--target", URL], "--rate"),
    (["--target", "ftp://x/y", "--rate", "10"], "bad target"),
    (["--target", URL, "--rate", "10", "--duration", "soon"], "bad duration"),
    (["--target", URL, "--profile", "steps", "--steps", "10"], "bad step"),
    (["--target", URL, "--profile", "ramp"], "users"),
    (["--target", URL, "--rate", "10", "--payload", "nope"], "unknown payload"),
    (["--target", URL, "--rate", "10", "--payload", "file:/no/such/file"], "cannot read"),
    (["--target", URL, "--rate", "10", "--max-in-flight", "0"], "max-in-flight"),
    (["--target", URL, "--rate", "10", "--timeout", "90s"], "timeout"),
    (["--target", "https://h:8501/v1/models/m:predict", "--rate", "10", "--transport", "fast"],
     "use --transport aiohttp"),
    (["--target", URL, "--rate", "10", "--transport", "raw"], "'raw' is not one of"),
    (["--target", URL, "--rate", "10", "--send-timing", "busy"], "'busy' is not one of"),
])
def test_bad_input_is_a_clear_message_not_a_traceback(tmp_path, args, message):
    result = CliRunner().invoke(cli.main, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_relative_paths_resolve_against_the_bazel_working_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("BUILD_WORKING_DIRECTORY", str(tmp_path))
    assert str(cli.user_path("out")) == str(tmp_path / "out")
    assert str(cli.user_path("/abs")) == "/abs"


def test_progress_and_summary_lines():
    line = cli.format_progress(Progress(t_s=3, duration_s=30.0, target_rps=100.0,
                                        sent_rps=99, ok=290, errors=1, in_flight=2,
                                        p50_ms=10.5, p99_ms=None))
    assert "[   3/30s]" in line and "p50 10.50 ms" in line and "p99 - ms" in line
    lat = {"count": 2, "mean": 1.0, "p50": 1.0, "p90": 1.0, "p99": 1.0, "p99_9": 1.0,
           "max": 1.0}
    record = {"latency_ms": {"corrected": lat, "uncorrected": lat},
              "send_lag_ms": {"p50": 0.1, "p99": 0.2, "max": 0.3},
              "totals": {"scheduled": 3, "sent": 3, "ok": 2, "errors": 1,
                         "error_classes": {"timeout": 1, "connect": 0}},
              "duration_s": 1.0, "complete": True,
              "validity": {"valid": False, "reasons": ["send lag p99 9 ms exceeds 5 ms"]}}
    text = cli.format_summary(record, "out")
    assert "timeout 1" in text and "connect" not in text
    assert "valid: NO — send lag p99 9 ms exceeds 5 ms" in text


def test_generator_flags_follow_the_one_declaration(tmp_path, monkeypatch):
    seen = {}

    def fake_run(options, out_dir, **kw):  # record what would run; send nothing
        seen["options"] = options
        raise OSError("stop here")

    monkeypatch.setattr(cli.run_mod, "run", fake_run)
    args = ["--target", "http://127.0.0.1:9/v1/models/m:predict", "--rate", "10", "--quiet",
            "--out", str(tmp_path)]
    CliRunner().invoke(cli.main, [*args, "--max-send-lag", "2ms", "--timeout", "1.5", "--slo-p99", "1s"])
    o = seen["options"]
    # a bare number is seconds, for every duration flag; defaults come from GeneratorOptions
    assert (o.max_send_lag_ms, o.timeout_s, o.slo_latency_ms) == (2.0, 1.5, 1000.0)
    assert o.payload == "b64" and o.max_in_flight == 256
    bad = CliRunner().invoke(cli.main, [*args, "--max-send-lag", "soon"])
    assert bad.exit_code == 2 and "--max-send-lag: bad duration 'soon'" in bad.output
    assert "[default: b64]" in CliRunner().invoke(cli.main, ["--help"]).output


def test_auto_transport_says_what_it_chose_for_tls(tmp_path, monkeypatch):
    for var in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    seen = {}

    def fake_run(options, out_dir, **kw):  # record what would run; send nothing
        seen["options"] = options
        raise OSError("stop here")

    monkeypatch.setattr(cli.run_mod, "run", fake_run)
    result = CliRunner().invoke(cli.main, ["--target", "https://h:8501/v1/models/m:predict",
                                           "--rate", "10", "--quiet", "--out", str(tmp_path)])
    assert "transport: aiohttp (auto: https:// targets need TLS" in result.output
    assert seen["options"].transport == "auto"


def test_generator_options_survive_their_own_record():
    from loadgen.options import GeneratorOptions

    odd = GeneratorOptions(timeout_s=1.2345678, max_send_lag_ms=3_600_000.0, warmup_s=0.00001,
                           workers=3, send_timing="sleep")
    assert GeneratorOptions.from_mapping(odd.to_mapping()) == odd
    assert GeneratorOptions.from_mapping(GeneratorOptions().to_mapping()) == GeneratorOptions()
