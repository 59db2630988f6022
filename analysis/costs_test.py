from pathlib import Path

import pytest

from analysis.costs import DEFAULT_PRICING, HOURS_PER_MONTH, load_prices
from analysis.errors import ResultsError

# The seed study's cost table (anchors.md "Cost", tfserving.md §7): USD per 24 h at E2 custom rates.
SEED_TABLE = [((2, 4, 8), 11.15), ((4, 8, 4), 11.15), ((8, 16, 2), 11.15), ((8, 64, 2), 18.21)]


def shape(vcpu, mem, nodes, pricing="e2-custom"):
    return {"machine_type": f"e2-custom-{vcpu}-{mem * 1024}", "vcpu": vcpu, "memory_gb": mem, "nodes": nodes,
            "pricing": pricing}


@pytest.mark.parametrize(("dims", "usd_per_day"), SEED_TABLE)
def test_seed_shapes_cost_to_the_cent(dims, usd_per_day):
    cost = load_prices().cost(shape(*dims))
    assert round(cost.per_day, 2) == usd_per_day
    assert cost.per_month == pytest.approx(cost.per_hour * HOURS_PER_MONTH)


def test_predefined_is_cheaper_than_custom_and_highmem_matches_two_e2_highmem_8():
    prices = load_prices()
    custom = prices.cost(shape(8, 64, 2)).per_hour
    predefined = prices.cost(shape(8, 64, 2, "e2-predefined")).per_hour
    assert predefined < custom
    assert predefined == pytest.approx(2 * (8 * 0.02181159 + 64 * 0.00292353))


def test_every_rate_has_source_and_date():
    for rate in load_prices(DEFAULT_PRICING).rates:
        assert rate.source and rate.date and rate.region == "us-central1"


def test_unknown_family_names_family_and_file():
    with pytest.raises(KeyError, match=r"n2-custom.*gcp-e2-us-central1\.csv"):
        load_prices().cost(shape(2, 4, 1, "n2-custom"))


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "prices.csv"
    p.write_text(text, encoding="utf-8")
    return p


def test_user_csv_with_flat_node_rate(tmp_path):
    p = write(tmp_path, "# servesweep.pricing/1\nfamily,resource,usd_per_hour,region,source,date\n"
                       "x,vcpu,0.5,r,me,2026-01-01\nx,memory_gb,0.25,r,me,2026-01-01\nx,node,1,r,me,2026-01-01\n")
    assert load_prices(p).cost(shape(2, 4, 3, "x")).per_hour == pytest.approx(3 * (2 * 0.5 + 4 * 0.25 + 1))


@pytest.mark.parametrize(("text", "match"), [
    ("family,resource,usd_per_hour,region,source,date\n", "unknown schema line"),
    ("# servesweep.pricing/2\nfamily,resource,usd_per_hour,region,source,date\n", "unknown schema line"),
    ("# servesweep.pricing/1\nfamily,resource,usd_per_hour\nx,vcpu,1\n", "missing columns region, source, date"),
    ("# servesweep.pricing/1\nfamily,resource,usd_per_hour,region,source,date\nx,gpu,1,r,s,d\n", "unknown resource"),
    ("# servesweep.pricing/1\nfamily,resource,usd_per_hour,region,source,date\nx,vcpu,-1,r,s,d\n", "non-negative"),
    ("# servesweep.pricing/1\nfamily,resource,usd_per_hour,region,source,date\n", "no rates"),
])
def test_bad_pricing_csv_names_the_file(tmp_path, text, match):
    p = write(tmp_path, text)
    with pytest.raises(ResultsError, match=match) as e:
        load_prices(p)
    assert str(p) in str(e.value)


def test_missing_pricing_file(tmp_path):
    with pytest.raises(ResultsError, match=r"nope\.csv"):
        load_prices(tmp_path / "nope.csv")
