"""The sweep loop with fake backends and a tiny in-thread HTTP target (no TensorFlow)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from pathlib import Path

import pytest
from aiohttp import web

from deploy.spec import Config, NodeShape, Slo, Sweep
from deploy.target import Target
from loadgen.options import GeneratorOptions
from serving.config import ServingConfig
from sweep import capacity, plan
from sweep import loop as sweep_mod
from sweep.status import is_complete
from sweep.warmup import WarmupOptions, settled


class _Server:
    """A TF-Serving-shaped target on 127.0.0.1 in a background thread."""

    def __init__(self) -> None:
        self.count = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def predict(request: web.Request) -> web.Response:
            await request.read()
            self.count += 1
            await asyncio.sleep(0.002)
            return web.json_response({"predictions": [[0.5, 0.5]]})

        async def metrics(_request: web.Request) -> web.Response:
            text = (f"# TYPE :tensorflow:serving:request_count counter\n"
                    f':tensorflow:serving:request_count{{model_name="m",status="OK"}} {self.count}\n')
            return web.Response(text=text)

        app = web.Application()
        app.router.add_post("/v1/models/m:predict", predict)
        app.router.add_get("/monitoring/prometheus/metrics", metrics)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def server():
    s = _Server()
    yield s
    s.stop()


def _config(config_id: str) -> Config:
    shape = NodeShape(name="cpu1", machine_type="local-1", vcpu=1, memory_gb=1.0, nodes=1, pricing="e2-custom")
    return Config(id=config_id, name=f"cfg-{config_id}", shape=shape, replicas=1, cpu=1, memory_gb=1.0,
                  serving=ServingConfig(model_name="m"), profile=PROFILE)


class FakeBackend:
    holds_many = False

    def __init__(self, server: _Server, fail: set[str] = frozenset(), problems: dict | None = None) -> None:
        self.server, self.fail, self.problem_map = server, fail, problems or {}
        self.deployed: list[str] = []
        self.torn_down = 0
        self.current: str | None = None

    def deploy(self, config: Config) -> Target:
        self.deployed.append(config.id)
        if config.id in self.fail:
            raise RuntimeError("no capacity for this shape")
        self.current = config.id
        return Target(base_urls=(f"http://127.0.0.1:{self.server.port}",), model_name="m",
                      identity={"kind": "fake"})

    def problems(self, config: Config | None = None) -> list[str]:
        return list(self.problem_map.get(self.current, []))

    def teardown(self, config: Config | None = None) -> None:
        self.torn_down += 1
        self.current = None


PROFILE = {"kind": "constant", "rate": 40.0, "duration_s": 2.0, "arrivals": "uniform", "seed": 0}
FAST_WARMUP = WarmupOptions(window=2, min_requests=4, max_requests=8, max_seconds=5)


def _sweep(*ids: str, name: str = "test") -> Sweep:
    return Sweep(name=name, backend="local", slo=Slo(p99_ms=1000.0, error_rate=0.01),
                 configs=tuple(_config(i) for i in ids), spec={}, source="test")


def _options(tmp_path: Path, **kw) -> sweep_mod.SweepOptions:
    """The ramp method's loop (the search's has its own tests: capacity_test.py)."""
    kw.setdefault("method", "ramp")
    return sweep_mod.SweepOptions(out_dir=tmp_path / "s-test", load=GeneratorOptions(payload="b64"),
                                  warmup=FAST_WARMUP, **kw)


def test_measures_every_config_and_writes_files(server, tmp_path):
    events = []
    outcome = sweep_mod.run_sweep(_sweep("a", "b"), FakeBackend(server), _options(tmp_path), events.append)
    assert [o.status for o in outcome.outcomes] == ["done", "done"]
    for cid in ("a", "b"):
        d = tmp_path / "s-test" / cid
        run = json.loads((d / "run.json").read_text())
        assert run["complete"] and run["totals"]["ok"] >= 70
        # the send lag is judged against the sweep's SLO (5% of its 1000 ms bound)
        assert run["options"]["slo_latency_ms"] == 1000.0
        assert run["validity"]["send_lag_bound_ms"] == 50.0
        assert json.loads((d / "status.json").read_text())["status"] == "done"
        assert json.loads((d / "warmup.json").read_text())["ok"] >= 4
        metrics = (d / "server_metrics.csv").read_text().splitlines()
        assert metrics[0] == "# servesweep.server_metrics/1"
        row = next(r for r in metrics if "request_count" in r)
        assert float(row.rsplit(",", 1)[1]) >= run["totals"]["ok"]  # the server saw at least what we counted
    record = json.loads((tmp_path / "s-test" / "sweep.json").read_text())
    assert record["schema"] == "servesweep.sweep/1" and record["host"]["cores"] >= 1
    phases = {e.phase for e in events}
    assert {"deploying", "warming up", "loading", "tearing down", "done"} <= phases
    assert any(e.progress is not None for e in events)


def test_rerun_skips_completed_and_force_redoes(server, tmp_path):
    backend = FakeBackend(server)
    sweep_mod.run_sweep(_sweep("a"), backend, _options(tmp_path))
    again = sweep_mod.run_sweep(_sweep("a"), backend, _options(tmp_path))
    assert [o.status for o in again.outcomes] == ["skipped"]
    assert backend.deployed == ["a"]
    forced = sweep_mod.run_sweep(_sweep("a"), backend, _options(tmp_path, force=True))
    assert [o.status for o in forced.outcomes] == ["done"] and backend.deployed == ["a", "a"]


def test_failed_deploy_is_recorded_and_the_sweep_goes_on(server, tmp_path):
    backend = FakeBackend(server, fail={"a"})
    outcome = sweep_mod.run_sweep(_sweep("a", "b"), backend, _options(tmp_path))
    assert [o.status for o in outcome.outcomes] == ["failed", "done"]
    status = json.loads((tmp_path / "s-test" / "a" / "status.json").read_text())
    assert status["status"] == "failed" and "no capacity" in status["error"]
    assert backend.torn_down >= 2
    # A failed Config is retried on the next run; the finished one is not.
    backend.fail = set()
    again = sweep_mod.run_sweep(_sweep("a", "b"), backend, _options(tmp_path))
    assert [o.status for o in again.outcomes] == ["done", "skipped"]


def test_backend_problems_are_recorded(server, tmp_path):
    backend = FakeBackend(server, problems={"a": ["replica 1 exited with code -9"]})
    outcome = sweep_mod.run_sweep(_sweep("a"), backend, _options(tmp_path))
    (o,) = outcome.outcomes
    assert o.status == "done" and o.problems == ("replica 1 exited with code -9",)
    status = json.loads((tmp_path / "s-test" / "a" / "status.json").read_text())
    assert status["problems"] == ["replica 1 exited with code -9"]


def test_refuses_a_directory_of_another_sweep(server, tmp_path):
    sweep_mod.run_sweep(_sweep("a"), FakeBackend(server), _options(tmp_path))
    other = _sweep("a", name="other")
    with pytest.raises(sweep_mod.SweepError, match="another sweep"):
        sweep_mod.run_sweep(other, FakeBackend(server), _options(tmp_path))


def test_profile_from_spec_dict():
    p = sweep_mod.profile_from({"kind": "steps", "duration_s": 20, "steps": [[5, 10], [10, 10]], "seed": None})
    assert p.kind == "steps" and p.steps == ((5.0, 10.0), (10.0, 10.0)) and p.seed == 0


@pytest.mark.parametrize(
    ("latencies", "expected"),
    [
        ([100, 90, 70, 50], False),  # still falling: median 95 -> 60
        ([100, 90, 80, 50, 51, 50, 52], True),
        ([50, 52], False),  # too few for two windows
    ],
)
def test_settled(latencies, expected):
    assert settled([float(v) for v in latencies], window=2, tolerance=0.15) is expected


def test_eta_counts_the_current_load_and_the_rest():
    configs = _sweep("a", "b").configs  # 2 s of load each
    eta = sweep_mod._Eta(configs, WarmupOptions(max_seconds=30))  # default overhead 30 + 10 = 40 s
    assert eta.eta() == pytest.approx(2 * (2 + 40))
    # Loading "a" with 0.5 s left: half of a's overhead (teardown) is still to come, then all of "b".
    assert eta.eta("a", 0.5) == pytest.approx(0.5 + 20 + (2 + 40))
    eta.finish("a", seconds=12.0, measured=True)  # measured overhead: 10 s
    assert eta.eta() == pytest.approx(2 + 10)


def test_an_error_inside_a_search_fails_that_config_and_not_the_sweep(server, tmp_path, monkeypatch):
    def broken_probe(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(capacity, "run_probe", broken_probe)
    options = _options(tmp_path, method="search", search=plan.SearchOptions(saturation_s=0.5))
    events = []
    outcome = sweep_mod.run_sweep(_sweep("a"), FakeBackend(server), options, events.append)
    (o,) = outcome.outcomes
    assert o.status == "failed" and "No space left on device" in o.error
    status = json.loads((tmp_path / "s-test" / "a" / "status.json").read_text())
    assert status["status"] == "failed" and "repeat 1, probe 1: OSError" in status["error"]
    assert json.loads((tmp_path / "s-test" / "a" / "run.json").read_text())["capacity"]["rps"] is None
    assert any(e.phase == "probing" and "ERROR" in e.detail for e in events)
    assert not is_complete(tmp_path / "s-test" / "a")  # not done: the next run measures it again


def test_a_grpc_config_without_a_grpc_address_fails_with_the_reason(server, tmp_path):
    sweep = dataclasses.replace(_sweep("g"), configs=(dataclasses.replace(_config("g"), protocol="grpc"),))
    outcome = sweep_mod.run_sweep(sweep, FakeBackend(server), _options(tmp_path))
    (o,) = outcome.outcomes
    assert o.status == "failed" and "gives no gRPC address" in o.error


def test_grpc_behind_one_address_gets_a_channel_per_replica():
    one = dataclasses.replace(_config("x"), protocol="grpc", replicas=8, backend="cluster")
    assert sweep_mod.reach_every_replica(GeneratorOptions(connections=4), (one,)).connections == 8
    local = dataclasses.replace(one, backend="local")  # each local replica is its own target
    assert sweep_mod.reach_every_replica(GeneratorOptions(connections=4), (local,)).connections == 4
    rest = dataclasses.replace(one, protocol="rest")
    assert sweep_mod.reach_every_replica(GeneratorOptions(connections=4), (rest,)).connections == 4
