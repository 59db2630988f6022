import base64
import re
from html import escape

import pandas as pd
import pytest

from analysis.report import TABLE_SCHEMA, build_report
from analysis.testdata.make_fixtures import FIXTURE_SWEEP

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return build_report(FIXTURE_SWEEP, target_rps=20.0, out_dir=tmp_path_factory.mktemp("report"))


def test_files_written(report):
    for path in (report.index_html, report.summary_md, report.table_csv, *report.figures):
        assert path.is_file() and path.stat().st_size > 0
    assert {p.name for p in report.figures} == {"comparison.png", "spectrum.png", "cost_throughput.png"}
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
    assert len(srcs) == 3
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
