import pytest
from click.testing import CliRunner

from analysis.report_main import main, parse_duration_ms, parse_fraction
from analysis.testdata.make_fixtures import FIXTURE_SWEEP


@pytest.mark.parametrize(("text", "ms"), [("1s", 1000.0), ("250ms", 250.0), ("0.5", 500.0), ("2m", 120000.0)])
def test_parse_duration(text, ms):
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "fast", "-1s", "0s", "1h"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration_ms(text)


@pytest.mark.parametrize(("text", "value"), [("1%", 0.01), ("0.5%", 0.005), ("0.02", 0.02), ("0", 0.0)])
def test_parse_fraction(text, value):
    assert parse_fraction(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["x", "100%", "1.5", "-1%"])
def test_parse_fraction_rejects(text):
    with pytest.raises(ValueError):
        parse_fraction(text)


def test_cli_writes_report(tmp_path):
    res = CliRunner().invoke(main, [str(FIXTURE_SWEEP), "--out", str(tmp_path / "r"), "--slo-p99", "1s",
                                    "--slo-errors", "1%", "--target-rps", "20"])
    assert res.exit_code == 0, res.output
    assert "For 20 req/s" in res.output and (tmp_path / "r" / "index.html").is_file()


def test_cli_resolves_relative_paths_against_bazel_working_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("BUILD_WORKING_DIRECTORY", str(FIXTURE_SWEEP.parent))
    res = CliRunner().invoke(main, ["sweep", "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output


def test_cli_error_names_the_file_without_traceback(tmp_path):
    res = CliRunner().invoke(main, [str(tmp_path / "absent"), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2
    assert "absent" in res.output and "Traceback" not in res.output


def test_cli_rejects_bad_options(tmp_path):
    for args in (["--slo-p99", "soon"], ["--slo-errors", "lots"], ["--target-rps", "-3"]):
        res = CliRunner().invoke(main, [str(FIXTURE_SWEEP), "--out", str(tmp_path), *args])
        assert res.exit_code == 2 and "Invalid value" in res.output


def test_cli_compares_with_a_baseline(tmp_path):
    res = CliRunner().invoke(main, [str(FIXTURE_SWEEP), "--out", str(tmp_path / "r"), "--compare", str(FIXTURE_SWEEP)])
    assert res.exit_code == 0, res.output
    compared = (tmp_path / "r" / "compare.csv").read_text().splitlines()
    assert compared[0].startswith("config_id,name,presence")
    assert len(compared) == 1 + 5  # one row per fixture Config
    assert "(+0%)" in res.output and "both" in res.output  # a sweep against itself: no change
