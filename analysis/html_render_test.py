"""Render the report in headless Chromium: title, every image decoded, a screenshot saved."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from analysis.report import build_report
from analysis.testdata.make_fixtures import FIXTURE_SWEEP
from analysis.testdata.make_search_fixtures import FIXTURE_SEARCH
from tools.python.required import required_tool

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars"]


def chromium() -> str:
    return required_tool("chromium", "chromium-browser", "google-chrome", what="chromium",
                         install="Debian's `chromium`, in .ci/apt-packages.txt")


def run_chromium(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def dump_dom(html: Path, tmp_path: Path) -> str:
    proc = run_chromium(["--virtual-time-budget=10000", "--dump-dom", html.as_uri()], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def body_attr(dom: str, name: str) -> str | None:
    m = re.search(r"<body[^>]*\s" + name + r'="([^"]*)"', dom)
    return m.group(1) if m else None


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return build_report(FIXTURE_SWEEP, target_rps=20.0, out_dir=tmp_path_factory.mktemp("report"))


def test_report_renders_with_every_image_decoded(report, tmp_path):
    dom = dump_dom(report.index_html, tmp_path)
    assert "<title>servesweep report — fixture-seed-shapes</title>" in dom
    assert body_attr(dom, "data-report-ready") == "1", "the page's script did not run"
    assert body_attr(dom, "data-images-ok") == f"{len(report.figures)}/{len(report.figures)}"
    # the table was rendered with one row per configuration
    assert len(re.findall(r"<tr class=\"(?:recommended|invalid|)\">", dom)) == len(report.table)

    shot = Path(os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR", tmp_path)) / "report.png"
    proc = run_chromium([f"--screenshot={shot}", "--window-size=1280,2400", "--virtual-time-budget=10000",
                         report.index_html.as_uri()], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shot.is_file() and shot.read_bytes().startswith(b"\x89PNG")
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one


def test_a_broken_image_is_detected(report, tmp_path):
    html = report.index_html.read_text(encoding="utf-8")
    broken = re.sub(r'src="data:image/png;base64,[^"]{0,200}', 'src="data:image/png;base64,AAAA', html, count=1)
    page = tmp_path / "broken.html"
    page.write_text(broken, encoding="utf-8")
    dom = dump_dom(page, tmp_path)
    n = len(report.figures)
    assert body_attr(dom, "data-images-ok") == f"{n - 1}/{n}"


def test_clicking_a_heading_sorts_the_table(report, tmp_path):
    # Append a script that clicks the "req/s within SLO" heading (ascending) and records the row order.
    probe = """<script>
    (function(){var t=document.getElementById('configs');
      var i=Array.prototype.findIndex.call(t.tHead.rows[0].cells,
        function(c){return c.textContent==='req/s within SLO';});
      t.tHead.rows[0].cells[i].click();
      var v=Array.prototype.map.call(t.tBodies[0].rows,function(r){return r.cells[i].getAttribute('data-v');});
      document.body.setAttribute('data-sorted',v.join(','));})();
    </script></body>"""
    page = tmp_path / "probe.html"
    page.write_text(report.index_html.read_text(encoding="utf-8").replace("</body>", probe), encoding="utf-8")
    values = [float(v) for v in body_attr(dump_dom(page, tmp_path), "data-sorted").split(",")]
    assert values == sorted(values) and len(values) == len(report.table)
    assert values != list(report.table["slo_rps"])  # the page's initial order is different


@pytest.fixture(scope="module")
def mixed_report(tmp_path_factory):
    """The search fixture plus one ramp Config: every figure the report can have."""
    dest = tmp_path_factory.mktemp("mixed") / "sweep"
    shutil.copytree(FIXTURE_SEARCH, dest)
    shutil.copytree(FIXTURE_SWEEP / "c-2c4a6e8b0d", dest / "c-2c4a6e8b0d")
    return build_report(dest, out_dir=dest / "report")


def test_search_and_ramp_report_renders_every_figure(mixed_report, tmp_path):
    names = {p.name for p in mixed_report.figures}
    assert names == {"capacity.png", "probes.png", "comparison.png", "spectrum.png", "cost_throughput.png"}
    dom = dump_dom(mixed_report.index_html, tmp_path)
    assert body_attr(dom, "data-images-ok") == f"{len(names)}/{len(names)}"
    assert '<table id="host">' in dom and "tied within noise" in dom
    shot = Path(os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR", tmp_path)) / "search_report.png"
    proc = run_chromium([f"--screenshot={shot}", "--window-size=1400,3000", "--virtual-time-budget=10000",
                         mixed_report.index_html.as_uri()], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shot.is_file() and shot.stat().st_size > 20_000
