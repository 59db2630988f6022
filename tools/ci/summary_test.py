from pathlib import Path

from tools.ci import summary

XML = """<?xml version="1.0"?>
<testsuites><testsuite name="pytest">
<testcase name="a"/><testcase name="b"><failure message="x"/></testcase>
<testcase name="c"><skipped/></testcase><testcase name="d"><error message="y"/></testcase>
</testsuite></testsuites>"""


def test_counts_cases_across_targets(tmp_path: Path):
    for target in ("pkg/a_test", "pkg/b_test"):
        (tmp_path / target).mkdir(parents=True)
        (tmp_path / target / "test.xml").write_text(XML)
    assert summary.count(tmp_path) == (2, 4, 2, 2)


def test_unparseable_xml_counts_as_a_failure(tmp_path: Path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "test.xml").write_text("<testsuites")
    assert summary.count(tmp_path) == (0, 1, 0, 1)


def test_main_prints_plain_closing_line(tmp_path: Path, capsys):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "test.xml").write_text(XML)
    summary.main(["summary", str(tmp_path)])
    assert capsys.readouterr().out.strip().splitlines()[-1] == "1 passed, 2 failed, 1 skipped"
