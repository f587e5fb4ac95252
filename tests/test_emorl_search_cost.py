"""benchmarks/emorl_search_cost.py: the stand-in search's candidate counts track the published
EMORL records' and grow with the number of objectives."""

import statistics

import pytest
from script_support import load_script

from morl_core.bench.suites import load_suite
from morl_core.evaluation import preference_grid
from morl_core.options import METHOD_OPTIONS


@pytest.fixture(scope="module")
def cost():
    return load_script("benchmarks/emorl_search_cost.py")


def counted(cost, name: str) -> int:
    suite = load_suite(name)
    k, rounds = len(suite.objectives), METHOD_OPTIONS["emorl"]["search_rounds"].default
    return cost.distinct_candidates(k, preference_grid(k, suite.preferences), rounds, seed=0)


@pytest.mark.parametrize("name", ["conflicting", "three_objectives"])
def test_the_stand_in_counts_within_a_third_of_the_published_searches(cost, name):
    measured = [r["candidates"] for r in cost.measured(name)]
    assert measured, f"no published EMORL records for {name}"
    assert abs(counted(cost, name) / statistics.mean(measured) - 1) < 1 / 3


def test_candidates_grow_about_as_three_to_the_k(cost):
    two, three, five = (
        counted(cost, n) for n in ("conflicting", "three_objectives", "five_objectives")
    )
    assert two < three < five
    # 3^2 times the grid per round, 5 preferences against 6: about 7.5 times the candidates
    assert 3.75 < five / three < 15


def test_an_unknown_suite_is_refused_naming_the_suites(cost, capsys):
    with pytest.raises(SystemExit):
        cost.main(["--suites", "nope", "--out", "unused.json"])
    assert "unknown suite 'nope'" in capsys.readouterr().err


def test_each_suite_is_counted_at_its_own_rounds(cost, tmp_path, capsys):
    """The five-objective suites search one round (their method_options): the 243 points of
    {0, 0.5, 1}^5, with the paper's five-round count beside them; other suites at five."""
    import json

    out = tmp_path / "cost.json"
    assert cost.main(["--suites", "three_objectives,five_objectives", "--out", str(out)]) == 0
    three, five = json.loads(out.read_text())["suites"]
    assert (three["rounds"], three["candidates_at_default_rounds"]) == (5, None)
    assert five["rounds"] == 1 and five["candidates_estimated"] == [243, 243, 243]
    assert five["candidates_at_default_rounds"] > 10 * 243
