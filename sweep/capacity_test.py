import dataclasses

from sweep.capacity import Subject, add_totals, next_round
from sweep.estimate import Capacity
from sweep.plan import Eta, SearchOptions
from sweep.probe import ProbeRules

RULES = ProbeRules(latency_ms=1000.0)


def test_totals_add_up_over_probes():
    into: dict = {}
    add_totals(into, {"scheduled": 10, "sent": 9, "ok": 8, "errors": 1, "error_classes": {"timeout": 1}})
    add_totals(into, {"scheduled": 5, "sent": 5, "ok": 5, "errors": 0, "error_classes": {"timeout": 0}})
    assert into == {"scheduled": 15, "sent": 14, "ok": 13, "errors": 1, "error_classes": {"timeout": 1}}


@dataclasses.dataclass(frozen=True)
class _Config:
    id: str
    name: str = "c"
    protocol: str = "rest"

    def to_record(self) -> dict:
        return {"id": self.id}


def _subject(index: int, searches: int) -> Subject:
    return Subject(index, _Config(f"c{index}"), None, None, None, searches={r: None for r in range(1, searches + 1)})


def test_rounds_start_the_least_searches_then_one_more_while_loose(monkeypatch):
    opts = SearchOptions(repeats=2, max_repeats=3, precision=0.10)
    caps = {"c1": Capacity(100.0, 80.0, 120.0, 2, ()), "c2": Capacity(100.0, 97.0, 103.0, 2, ())}
    monkeypatch.setattr("sweep.capacity.subject_capacity", lambda s, o: caps[s.config.id])
    eta = Eta(2 * opts.most_repeats, opts)
    fresh = [_subject(1, 0), _subject(2, 0)]
    assert [(s.index, r) for s, r in next_round(fresh, opts, RULES, 0.0, eta)] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    done = [_subject(1, 2), _subject(2, 2)]
    assert [(s.index, r) for s, r in next_round(done, opts, RULES, 0.0, eta)] == [(1, 3)]  # c2 is within +-3%
    assert done[1].settled and not done[0].settled and eta.left == 2 * 3 - 1
    assert next_round([_subject(1, 3)], opts, RULES, 0.0, eta) == []  # at max_repeats
    broke = _subject(1, 2)
    broke.failed = "deploy failed"
    assert next_round([broke], opts, RULES, 0.0, eta) == []


def test_no_further_search_once_the_budget_is_spent(monkeypatch):
    opts = SearchOptions(repeats=1, max_repeats=4, precision=0.05, budget_s=600.0)
    monkeypatch.setattr("sweep.capacity.subject_capacity", lambda s, o: Capacity(100.0, 70.0, 130.0, 1, ()))
    eta = Eta(4, opts)
    assert len(next_round([_subject(1, 1)], opts, RULES, 599.0, eta)) == 1
    late = _subject(1, 1)
    assert next_round([late], opts, RULES, 600.0, eta) == [] and late.settled
