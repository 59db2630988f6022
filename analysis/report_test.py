import base64
import json
import re
import shutil
from html import escape

import pandas as pd
import pytest

from analysis.report import TABLE_SCHEMA, build_report
from analysis.testdata.make_fixtures import FIXTURE_SWEEP
from analysis.testdata.make_search_fixtures import FIXTURE_SEARCH
from formats.results import PROBES_COLUMNS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return build_report(FIXTURE_SWEEP, target_rps=20.0, out_dir=tmp_path_factory.mktemp("report"))


def test_files_written(report):
    for path in (report.index_html, report.summary_md, report.table_csv, *report.figures):
        assert path.is_file() and path.stat().st_size > 0
    # a ramp-only sweep: no probes figure (that is for the capacity search)
    assert {p.name for p in report.figures} == {"capacity.png", "comparison.png", "spectrum.png",
                                                "cost_throughput.png"}
    for p in report.figures:
        assert p.read_bytes().startswith(PNG_MAGIC)


def test_table_csv_round_trips(report):
    assert report.table_csv.read_text().splitlines()[0] == f"# {TABLE_SCHEMA}"
    df = pd.read_csv(report.table_csv, skiprows=1)
    assert list(df["config_id"]) == list(report.table["config_id"])
    assert sorted(round(v, 2) for v in df["cost_per_day"]) == [11.15, 11.15, 11.15, 18.21, 18.21]


def test_html_is_self_contained_with_every_figure_embedded(report):
    html = report.index_html.read_text()
    assert "<title>servesweep report — fixture-seed-shapes</title>" in html
    srcs = re.findall(r'<img [^>]*src="([^"]+)"', html)
    assert len(srcs) == len(report.figures) == 4
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    assert not re.search(r'(src|href)="(https?:|//|file:)', html)
    assert 'class="sortable"' in html and "<script>" in html


def test_html_shows_facts_and_flags_the_invalid_run(report):
    html = report.index_html.read_text()
    assert "sha256:" in html and "tensorflow_model_server 2.19.0" in html and "servesweep 0.1.0" in html
    assert 'id="invalid"' in html and "e2-8-64x2-inter4-batch" in html
    assert html.count('class="invalid"') == 1 and html.count('class="recommended"') == 1
    assert escape(report.recommendation) in html


def test_recommendation_and_summary(report):
    assert report.recommended_id is not None
    assert report.recommended_id != "c-4e6c8b0d2f"  # the invalid run
    md = report.summary_md.read_text()
    assert report.recommendation in md and "Invalid runs" in md and "| e2-8-16x2-inter4 |" in md


def test_no_target_and_an_unmeetable_slo(tmp_path):
    r = build_report(FIXTURE_SWEEP, slo_p99_ms=1.0, out_dir=tmp_path)
    assert r.recommended_id is None and r.recommendation.startswith("No configuration can be recommended")
    assert "none" in r.index_html.read_text()


# ---- a capacity-search sweep ----


@pytest.fixture(scope="module")
def search_report(tmp_path_factory):
    return build_report(FIXTURE_SEARCH, out_dir=tmp_path_factory.mktemp("search_report"))


def test_search_report_has_the_probes_figure_not_the_ramp_one(search_report):
    names = [p.name for p in search_report.figures]
    assert names == ["capacity.png", "probes.png", "spectrum.png", "cost_throughput.png"]
    html = search_report.index_html.read_text()
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', html)) == 4
    assert 'data-name="probes.png"' in html and 'data-name="comparison.png"' not in html


def test_search_report_states_method_ties_and_host(search_report):
    html = search_report.index_html.read_text()
    assert html.count("<td data-v=\"capacity search\">capacity search</td>") == 3
    assert "95% CI (req/s)" in html and ">29.4–31.5</td>" in html and "tied with best" in html
    assert "tied within noise" in html and escape(search_report.recommendation) in html
    # host facts as a two-column table, not a dict's repr
    assert '<table id="host">' in html and "<th>CPU model</th><td>AMD EPYC 7B13</td>" in html
    assert "<th>usable CPUs</th><td>8 (CPU 0-7)</td>" in html and "{&#x27;hostname" not in html
    assert "capacity search (1 search per Config, resolution 3%, confidence 95%, probes 13-40 s)" in html
    md = search_report.summary_md.read_text()
    assert "| cpu1x2 | capacity search | yes | 30.5 | 29.4–31.5 | yes | 5 |" in md
    assert "| CPU model | AMD EPYC 7B13 |" in md and "figures/probes.png" in md


def test_search_table_csv_has_the_new_columns(search_report):
    df = pd.read_csv(search_report.table_csv, skiprows=1)
    assert list(df["method"]) == ["search"] * 3 and list(df["probes"]) == [5, 5, 5]
    assert list(df["tied_with_best"]) == [True, True, False]


def test_ramp_rows_are_labelled_as_the_seeds_method(report):
    html = report.index_html.read_text()
    assert html.count(escape("the seed's method (ramp)")) >= 5
    assert "| e2-8-16x2-inter4 | the seed's method (ramp) | yes |" in report.summary_md.read_text()


def test_a_search_that_found_nothing_still_reports(tmp_path):
    dest = tmp_path / "search"
    shutil.copytree(FIXTURE_SEARCH, dest)
    failed = dest / "s-3c4d5e6f7a"
    shutil.rmtree(failed / "probes")
    (failed / "probes.csv").write_text((failed / "probes.csv").read_text().splitlines()[0] + "\n"
                                       + ",".join(PROBES_COLUMNS) + "\n")
    rec = json.loads((failed / "run.json").read_text())
    rec.update(capacity={"rps": None, "lo": None, "hi": None, "repeats": 0, "points": [], "errors": []},
               probes=0, best_pass=None, totals=None,
               validity={"valid": False, "reasons": ["deploy failed: no such image"]})
    (failed / "run.json").write_text(json.dumps(rec))
    r = build_report(dest, out_dir=tmp_path / "report")
    row = r.table.set_index("config_id").loc["s-3c4d5e6f7a"]
    assert not row["valid"] and row["slo_rps"] == 0 and pd.isna(row["capacity_rps"])
    assert "the search found no capacity" in row["note"]
    assert "deploy failed: no such image" in r.index_html.read_text()
    assert r.recommended_id == "s-1a2b3c4d5e"
