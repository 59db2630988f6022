import csv
import shutil

import pytest

from analysis.replicas import replica_markdown, replica_rows
from analysis.results import load_run
from analysis.testdata.make_search_fixtures import FIXTURE_SEARCH
from formats.results import REPLICAS_COLUMNS, REPLICAS_FILE, REPLICAS_SCHEMA


@pytest.fixture
def config_dir(tmp_path):
    src = sorted(p for p in FIXTURE_SEARCH.iterdir() if p.is_dir())[0]
    dest = tmp_path / src.name
    shutil.copytree(src, dest)
    return dest


def _write(config_dir, counts_by_probe):
    """replicas.csv as the sweep writes it: per probe dir, each replica's request count."""
    with (config_dir / REPLICAS_FILE).open("w", newline="") as f:
        f.write(f"# {REPLICAS_SCHEMA}\n")
        w = csv.DictWriter(f, REPLICAS_COLUMNS, lineterminator="\n")
        w.writeheader()
        for n, (probe, counts) in enumerate(counts_by_probe.items(), 1):
            for i, c in enumerate(counts):
                share = None if c is None else c / sum(counts)
                dev = None if share is None else share * len(counts) - 1
                w.writerow({"config": "x", "repeat": 1, "probe": n, "dir": probe, "replicas": len(counts),
                            "replica": f"pod/r{i}", "requests": c, "share": share, "deviation": dev,
                            "imbalanced": "" if dev is None else int(abs(dev) > 0.2), "error": ""})


def test_the_largest_deviation_of_the_valid_probes_and_how_many_were_off(config_dir):
    # probes/1-1 .. 1-5 of the fixture are all valid
    _write(config_dir, {"probes/1-1": [25, 25, 25, 25], "probes/1-2": [40, 20, 20, 20],
                        "probes/1-3": [30, 25, 25, 20]})
    (row,) = replica_rows([load_run(config_dir)])
    # 40 of 100 on r0: 0.4 x 4 - 1 = +60%, over the 20% bound; 30/100 and 20/100: +-20%, within it
    assert row["replicas"] == 4 and row["probes"] == 3 and row["off"] == 1
    assert row["worst"] == pytest.approx(0.6) and row["replica"] == "pod/r0"
    lines = replica_markdown([load_run(config_dir)])
    assert lines[0].startswith("**Replica shares.**") and lines[-1].endswith("| +60.0% | pod/r0 | **1** |")


def test_invalid_probes_do_not_count_and_no_file_means_no_section(config_dir):
    assert replica_markdown([load_run(config_dir)]) == []
    probes = (config_dir / "probes.csv").read_text().replace(",1,,probes/1-2", ",0,lost,probes/1-2")
    (config_dir / "probes.csv").write_text(probes)
    _write(config_dir, {"probes/1-2": [90, 10], "probes/1-3": [50, 50]})
    (row,) = replica_rows([load_run(config_dir)])
    assert row["probes"] == 1 and row["off"] == 0 and row["worst"] == 0.0
