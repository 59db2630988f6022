from click.testing import CliRunner

from analysis.compare import read_comparison
from analysis.report_main import main
from analysis.testdata.make_fixtures import FIXTURE_SWEEP


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
    compared = read_comparison(tmp_path / "r" / "compare.csv")  # rejects a file without its schema line
    assert list(compared.columns[:3]) == ["config_id", "name", "presence"]
    assert len(compared) == 5  # one row per fixture Config
    assert "(+0%)" in res.output and "both" in res.output  # a sweep against itself: no change
