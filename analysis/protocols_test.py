"""REST vs gRPC: pairs of search runs that differ only by protocol, against known capacities."""

import json

import numpy as np
import pytest

from analysis import protocols
from analysis.analyze import analyze
from analysis.report import PROTOCOLS_CSV, build_report
from analysis.testdata.make_fixtures import config_record
from analysis.testdata.make_search_fixtures import Model, write_search_config
from formats.results import PROTOCOLS_SCHEMA, SERVER_METRICS_SCHEMA, SWEEP_FILE, SWEEP_SCHEMA

SERVER = {"kind": "local", "version": "fixture", "argv": [], "image_digest": None}
LATENCY = ":tensorflow:serving:request_latency"


def _server_metrics(path, api_sum_us, count):
    rows = [f"# {SERVER_METRICS_SCHEMA}", "replica,base_url,metric,labels,before,after,delta"]
    labels = '"API=Predict,entrypoint=REST,model_name=resnet"'
    rows.append(f"0,http://127.0.0.1:1,{LATENCY}_sum,{labels},100.0,{100.0 + api_sum_us},{api_sum_us}")
    rows.append(f"0,http://127.0.0.1:1,{LATENCY}_count,{labels},1.0,{1.0 + count},{count}")
    rows.append(f"0,http://127.0.0.1:1,{LATENCY}_count,\"API=GetModelStatus,entrypoint=REST,model_name=resnet\","
                "0.0,50.0,50.0")  # another API: not counted
    path.write_text("\n".join(rows) + "\n")


def _sweep(tmp_path, capacities):
    """Per deployment (vcpu, REST capacity, gRPC capacity): a REST and a gRPC search run."""
    rng = np.random.default_rng(7)
    configs = []
    for i, (vcpu, rest_cap, grpc_cap) in enumerate(capacities):
        base = config_record("", "", vcpu, 2 * vcpu, 1, vcpu, False)
        for protocol, cap, size in (("rest", rest_cap, 631_823), ("grpc", grpc_cap, 602_186)):
            cfg = {**base, "id": f"c-{protocol}{i}", "name": f"cpu{vcpu}x1-{protocol}", "protocol": protocol}
            configs.append(cfg)
            d = tmp_path / cfg["id"]
            write_search_config(d, rng, Model(cap), cfg, SERVER)
            record = json.loads((d / "run.json").read_text())
            record["payload"] = {**record["payload"], "protocol": protocol, "bytes": size}
            (d / "run.json").write_text(json.dumps(record))
            ms = 120.0 if protocol == "rest" else 90.0  # the server's mean time per Predict
            _server_metrics(d / protocols.SERVER_METRICS_FILE, 1000 * ms * 1000.0, 1000)
    (tmp_path / SWEEP_FILE).write_text(json.dumps({"schema": SWEEP_SCHEMA, "sweep_id": "protocols",
                                                   "configs": configs}))
    return tmp_path


def test_pairs_differ_only_by_protocol_and_the_verdicts_follow_the_intervals(tmp_path):
    a = analyze(_sweep(tmp_path, [(2, 20.0, 30.0), (4, 25.0, 25.2)]))
    df = a.protocols.set_index("deployment")
    assert sorted(df.index) == ["cpu2x1", "cpu4x1"]
    clear, tied = df.loc["cpu2x1"], df.loc["cpu4x1"]
    assert clear["verdict"] == "gRPC higher" and tied["verdict"] == "tied"
    assert clear["grpc_over_rest"] == pytest.approx(1.5, rel=0.06)  # the known capacities' ratio
    assert clear["grpc_over_rest"] == pytest.approx(clear["grpc_rps"] / clear["rest_rps"])
    assert clear["grpc_over_rest_pm"] > 0
    assert clear["common_rps"] == min(clear["rest_rps"], clear["grpc_rps"])
    for row in (clear, tied):  # each side's highest valid probe at or below the common rate
        assert row["rest_probe_rps"] <= row["common_rps"] and row["rest_p99_ms"] > 0
    assert tied["grpc_probe_rps"] <= tied["common_rps"] and tied["grpc_p99_ms"] > 0
    assert np.isnan(clear["grpc_probe_rps"])  # gRPC's search never probed as low as REST's capacity: not shown
    assert (clear["rest_bytes"], clear["grpc_bytes"]) == (631_823, 602_186)
    assert (clear["rest_server_ms"], clear["grpc_server_ms"]) == (120.0, 90.0)  # sum / count, Predict only
    assert set(a.table["protocol"]) == {"rest", "grpc"}


def test_runs_that_differ_by_more_than_the_protocol_are_not_paired(tmp_path):
    _sweep(tmp_path, [(2, 20.0, 30.0)])
    record = json.loads((tmp_path / "c-grpc0" / "run.json").read_text())
    record["config"]["serving"]["inter_op_parallelism"] = 1
    (tmp_path / "c-grpc0" / "run.json").write_text(json.dumps(record))
    assert analyze(tmp_path).protocols.empty


def test_report_shows_the_comparison(tmp_path):
    report = build_report(_sweep(tmp_path / "in", [(2, 20.0, 30.0)]), out_dir=tmp_path / "report")
    summary = report.summary_md.read_text()
    assert "## REST vs gRPC" in summary and "gRPC higher" in summary and "631,823 / 602,186" in summary
    assert (tmp_path / "report" / PROTOCOLS_CSV).read_text().startswith(f"# {PROTOCOLS_SCHEMA}\n")
    assert 'id="protocols"' in report.index_html.read_text()
    assert any(p.name == "protocols.png" and p.stat().st_size > 1000 for p in report.figures)


def test_the_sweeps_comparison_probes_give_the_common_rate(tmp_path):
    _sweep(tmp_path, [(2, 20.0, 30.0)])
    for cid, p50, p99 in (("c-rest0", 300.0, 800.0), ("c-grpc0", 150.0, 400.0)):
        record = json.loads((tmp_path / cid / "run.json").read_text())
        record["common_probe"] = {"rate": 16.0, "p50_ms": p50, "p90_ms": p99 / 2, "p99_ms": p99, "verdict": "PASS",
                                  "valid": True, "dir": "probes/common-1"}
        (tmp_path / cid / "run.json").write_text(json.dumps(record))
    row = analyze(tmp_path).protocols.iloc[0]
    assert (row["common_rps"], row["rest_probe_rps"], row["grpc_probe_rps"]) == (16.0, 16.0, 16.0)
    assert (row["rest_p50_ms"], row["rest_p99_ms"], row["grpc_p50_ms"], row["grpc_p99_ms"]) == (300, 800, 150, 400)
