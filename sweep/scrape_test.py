import pytest

from deploy.target import DeployError, Replica
from serving.metrics import REQUEST_COUNT
from sweep import scrape


def _replica(name: str, count: float | None, other: float = 0.0) -> Replica:
    """A replica whose metrics say it answered ``count`` requests (None: it cannot be read)."""
    def get(path, timeout_s):
        assert path == scrape.METRICS_PATH
        if count is None:
            raise DeployError("503 no running process")
        return (f"# TYPE {REQUEST_COUNT} counter\n"  # as TF Serving writes it: no _total
                f'{REQUEST_COUNT}{{model_name="m",status="OK"}} {count}\n'
                f'{REQUEST_COUNT}{{model_name="m",status="INVALID_ARGUMENT"}} {other}\n').encode()

    return Replica(name, get)


def test_the_request_counter_is_read_whatever_the_parser_calls_it():
    samples, error = scrape.scrape(_replica("pod/a", 7, other=2))
    assert error is None and scrape.requests(samples) == 9  # every status counts


@pytest.mark.parametrize(("before", "after", "shares", "imbalanced"), [
    # the arithmetic: 1/R = 50%; a share is off when |share x R - 1| > 0.2
    ((0, 0), (100, 100), (0.5, 0.5), (False, False)),
    ((10, 20), (70, 80), (0.5, 0.5), (False, False)),  # counters need not start equal
    ((0, 0), (59, 41), (0.59, 0.41), (False, False)),  # 59 x 2 - 1 = 0.18
    ((0, 0), (61, 39), (0.61, 0.39), (True, True)),  # 0.22 each way
    ((0, 0, 0, 0), (25, 25, 25, 25), (0.25,) * 4, (False,) * 4),
    ((0, 0, 0, 0), (40, 20, 20, 20), (0.4, 0.2, 0.2, 0.2), (True, False, False, False)),  # 0.6; -0.2
])
def test_each_replica_gets_its_share_and_an_imbalance_is_flagged(before, after, shares, imbalanced):
    names = [f"pod/{i}" for i in range(len(before))]
    rows = scrape.shares(names, [scrape.scrape(_replica(n, c)) for n, c in zip(names, before, strict=True)],
                         [scrape.scrape(_replica(n, c)) for n, c in zip(names, after, strict=True)])
    assert [r["share"] for r in rows] == pytest.approx(shares)
    assert [r["imbalanced"] for r in rows] == list(imbalanced)
    assert [r["requests"] for r in rows] == [a - b for a, b in zip(after, before, strict=True)]
    note = scrape.imbalance_note(rows)
    assert (note is None) == (not any(imbalanced))


def test_a_replica_that_cannot_be_read_leaves_every_share_unknown():
    names = ["pod/a", "pod/b"]
    before = scrape.scrape_all([_replica("pod/a", 0), _replica("pod/b", 0)])
    after = scrape.scrape_all([_replica("pod/a", 10), _replica("pod/b", None)])
    rows = scrape.shares(names, before, after)
    assert [r["share"] for r in rows] == [None, None] and [r["imbalanced"] for r in rows] == [None, None]
    assert rows[0]["requests"] == 10 and "503" in rows[1]["error"]
    assert scrape.imbalance_note(rows) is None
