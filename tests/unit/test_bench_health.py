"""tests/bench/bench_health.py's arithmetic: the checks' cost is A's CPU rate less B's, and a
figure that cannot be true (checks while the scheduler was stopped, far from the share of checks
a window should hold, checks that cost nothing) stops the benchmark instead of becoming a row."""

import json
import subprocess

import pytest

from tests.bench import common
from tests.bench.bench_health import FLEET, PARTS, Window, passed, steady_figures

HEALTH_SLICE = PARTS[0][1][0]


def windows(a_usage: int, b_usage: int, a_checks: int = 150, b_checks: int = 0,
            wall: float = 90.0) -> list[Window]:
    return [Window("A", wall, {"": a_usage, HEALTH_SLICE: a_usage - b_usage}, a_checks),
            Window("B", wall, {"": b_usage}, b_checks)]


def test_the_cost_is_a_less_b_per_second_and_per_check():
    # 50 checks every 30 s for 90 s: 150 checks of 0.2 s each over a 1 % background
    background = int(0.01 * 90 * 1e6)
    f = steady_figures(windows(background + 150 * 200_000, background), 50, 30)
    assert f["cost"] == [pytest.approx(150 * 0.2 / 90 * 100)]  # 33.3 % of one core
    assert f["per_check"] == [pytest.approx(0.2)]
    assert f["background"] == [pytest.approx(1.0)]
    assert f["parts"][PARTS[0][0]] == [pytest.approx(33.333, rel=1e-3)]
    assert f["parts"]["other"] == [pytest.approx(0, abs=1e-9)]


def test_pairs_are_taken_side_by_side_in_either_order():
    a, b = windows(30_000_000, 900_000)
    f = steady_figures([a, b, b, a], 50, 30)
    assert len(f["cost"]) == 2 and f["cost"][0] == f["cost"][1]


@pytest.mark.parametrize("bad, said", [
    (windows(30_000_000, 900_000, b_checks=3), "checks ran while the scheduler was stopped"),
    (windows(30_000_000, 900_000, a_checks=100), "the scheduler does not run them as set"),
    (windows(900_000, 900_000), "cannot be true"),
    (windows(800_000, 900_000), "cannot be true"),
    (windows(30_000_000, 900_000)[:1] * 2, "not one A and one B"),
])
def test_a_figure_that_cannot_be_true_stops_the_benchmark(bad, said):
    with pytest.raises(common.BenchError, match=said):
        steady_figures(bad, 50, 30)


def test_a_percent_shows_its_spread_and_its_ratio_to_the_aim():
    rows = [("health checks, CPU", common.Percent([30.0, 33.25, 40.0]), common.Percent([1.0]),
             "1 % of one core")]
    line = common.table(rows, {}).splitlines()[2]
    assert "33.25 % (30.00-40.00)" in line and "1.00 %" in line and "33.25" in line.split("|")[5]


class Listing:
    """A host whose `nspawnctl list --json` shows the fleet with these health objects."""

    def __init__(self, health: dict):
        self.health = health

    def run(self, argv, timeout=None, env=None):
        rows = [{"name": n, "health": self.health.get(n)} for n in FLEET]
        return subprocess.CompletedProcess(argv, 0, json.dumps(rows), "")


def test_checks_that_did_not_pass_stop_the_benchmark():
    """A check that cannot run ends early: its cost would not be a check's."""
    good = {"state": "healthy", "last_exit_status": 0, "last_output": ""}
    passed(Listing({n: good for n in FLEET}))
    for bad in ({"state": "unhealthy", "last_exit_status": 125,
                 "last_output": "nspawnctl: cannot enter the container"},
                {"state": "healthy", "last_exit_status": None}, None):
        with pytest.raises(common.BenchError, match="1 of 50 containers' checks did not pass"):
            passed(Listing({**{n: good for n in FLEET}, FLEET[7]: bad}))
