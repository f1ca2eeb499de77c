"""Kill at any moment of snapshot, rollback and cp into a container (the pattern and helpers of
test_kill.py): the container is whole, old state or new, never a mix; no partial snapshot is
listed; no staging or temporary copy is left once the command has run again; the rerun
succeeds."""

import json
import random

import pytest

from tests.integration.helpers import MACHINES
from tests.integration.test_kill import (  # noqa: F401  (seed: a fixture used below)
    KEY,
    SEED,
    Tally,
    check_whole,
    exists,
    kill_trial,
    seed,
    timed,
)

pytestmark = pytest.mark.integration

SNAPS = f"{MACHINES}/.nspawnctl-snapshots"


@pytest.fixture(scope="module")
def trials(full, kill_trials) -> int:
    """Trials per kill test: 6, 30 with --full, or --kill-trials N (10 until the suite neared
    its hour)."""
    return kill_trials or (30 if full else 6)


def draw(rng, duration: float) -> float:
    """A kill delay: past T too, since each command's commit is near its end and a trial runs
    slower than the fastest run T (writeback of the trial before); a kill after the command
    finished is not counted (Tally.attempts)."""
    return rng.uniform(0, 1.4 * duration)


@pytest.fixture(scope="module")
def victim(nspawnctl, seed):  # noqa: F811
    name = "kill-day2"
    if exists(nspawnctl.host, name):
        nspawnctl("remove", "--force", name)
    nspawnctl("create", name, *KEY)
    yield name
    nspawnctl("remove", "--force", name, check=False)


def tags(nspawnctl, name) -> set[str]:
    return {r["tag"] for r in json.loads(nspawnctl("snapshots", name, "--json").stdout)}


def snapshot_entries(host, name) -> list[str]:
    """What is in the container's snapshot directory: each entry must be a whole snapshot."""
    return host.run(["sh", "-c", f"ls -A {SNAPS}/{name} 2>/dev/null; true"]).stdout.split()


def test_kill_snapshot(host, nspawnctl, trials, figures, victim):
    rng = random.Random(f"{SEED}:snapshot")

    def clear():
        if "t" in tags(nspawnctl, victim):
            nspawnctl("snapshot", "rm", victim, "t")

    duration = timed(host, ["snapshot", victim, "t"], clear, runs=2)
    tally = Tally(figures, "snapshot", duration, "the snapshot was listed")
    try:
        for trial in tally.attempts(trials):
            clear()
            delay = draw(rng, duration)
            where, problems, run = kill_trial(host, nspawnctl, ["snapshot", victim, "t"], delay)
            check_whole(host, nspawnctl, victim)
            listed = "t" in tags(nspawnctl, victim)
            # nothing in the snapshot directory but whole snapshots
            assert set(snapshot_entries(host, victim)) == ({"t"} if listed else set())
            if listed:
                assert host.run(["test", "-f", f"{SNAPS}/{victim}/t/tree/etc/os-release"]
                                ).returncode == 0
            else:
                nspawnctl("snapshot", victim, "t")  # the rerun
            tally.record(trial, delay, where, listed, problems)
    finally:
        tally.report()
    assert tally.problems == []


def test_kill_rollback(host, nspawnctl, trials, figures, victim):
    rng = random.Random(f"{SEED}:rollback")
    marker = f"{MACHINES}/{victim}/root/marker"
    host.run(["sh", "-c", f"echo good > {marker}"])
    if "good" not in tags(nspawnctl, victim):
        nspawnctl("snapshot", victim, "good")

    def spoil():
        host.run(["sh", "-c", f"echo bad > {marker}"])

    duration = timed(host, ["rollback", victim, "good"], spoil, runs=2)
    tally = Tally(figures, "rollback", duration, "the tree was the snapshot's")
    try:
        for trial in tally.attempts(trials):
            spoil()
            delay = draw(rng, duration)
            where, problems, run = kill_trial(host, nspawnctl, ["rollback", victim, "good"],
                                              delay)
            check_whole(host, nspawnctl, victim)
            seen = host.run(["cat", marker]).stdout.strip()
            assert seen in ("good", "bad"), seen
            nspawnctl("rollback", victim, "good")  # the rerun
            assert host.run(["cat", marker]).stdout.strip() == "good"
            assert "good" in tags(nspawnctl, victim)
            tally.record(trial, delay, where, seen == "good", problems)
    finally:
        tally.report()
    assert tally.problems == []


def test_kill_cp_in(host, nspawnctl, trials, figures, victim):
    """cp of a directory of some 1,000 files into the container: after a kill, the destination
    is absent or whole, and the rerun leaves no temporary copy beside it."""
    rng = random.Random(f"{SEED}:cp")
    host.run(["sh", "-c", "rm -rf /root/cpbig && mkdir -p /root/cpbig && cp -a /usr/lib/python3 "
              "/root/cpbig/ && find /root/cpbig | wc -l > /root/cpbig.count"])
    count = host.run(["cat", "/root/cpbig.count"]).stdout.strip()
    dst = f"{MACHINES}/{victim}/opt/big"

    def clear():
        host.run(["rm", "-rf", dst])

    argv = ["cp", "/root/cpbig", f"{victim}:/opt/big"]
    duration = timed(host, argv, clear, runs=2)
    tally = Tally(figures, "cp (in)", duration, "the directory was in place")
    try:
        for trial in tally.attempts(trials):
            clear()
            delay = draw(rng, duration)
            where, problems, run = kill_trial(host, nspawnctl, argv, delay)
            there = host.run(["test", "-e", dst]).returncode == 0
            if there:
                assert host.run(["sh", "-c", f"find {dst} | wc -l"]).stdout.strip() == count
                clear()
            nspawnctl(*argv)  # the rerun
            assert host.run(["sh", "-c", f"find {dst} | wc -l"]).stdout.strip() == count
            left = host.run(["sh", "-c", f"ls -A {MACHINES}/{victim}/opt | grep nspawnctl-cp; "
                             "true"]).stdout.split()
            tally.record(trial, delay, where, there,
                         problems + [f"temporary copy left: {x}" for x in left])
    finally:
        tally.report()
    assert tally.problems == []
