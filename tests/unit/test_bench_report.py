"""tests/bench: a benchmark that breaks is shown in the table with the rest, and fails the run."""

import pytest

from tests.bench import common


@pytest.fixture
def failed(monkeypatch):
    monkeypatch.setattr(common, "FAILED", [])
    return common.FAILED


def broken():
    raise common.BenchError("setup step failed:\nnspawnctl: boom")


def test_a_broken_benchmark_is_a_row_and_fails_the_run(failed, capsys):
    rows = []
    common.guarded(rows, "warm create", "cp -a", lambda: [("warm create", common.Seconds([0.5]),
                                                           common.Seconds([0.4]), "cp -a")])
    common.guarded(rows, "planted", "nothing", broken)
    assert rows[1] == ("planted", "failed: setup step failed:", "-", "nothing")
    assert failed == ["planted: setup step failed:"]
    assert common.finish(rows, {"cpu": "test"}) == 1
    out, err = capsys.readouterr()
    assert "warm create" in out and "planted" in out  # the table of what ran, both rows
    assert err.splitlines()[-2:] == ["bench: 1 benchmark(s) FAILED, so this run is no report:",
                                     "  planted: setup step failed:"]


def test_a_run_without_failures_exits_0(failed, capsys):
    rows = []
    common.guarded(rows, "warm create", "cp -a", lambda: [("warm create", common.Seconds([0.5]),
                                                           common.Seconds([0.4]), "cp -a")])
    assert common.finish(rows, {}) == 0
    assert "FAILED" not in capsys.readouterr().err
