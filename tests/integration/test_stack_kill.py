"""Kill apply at any moment (issue 29): SIGKILL at a random point of an apply that creates a
stack, and of one that changes it (a live change, a change that restarts, a new container, a
prune); after each kill every container is whole or absent and nothing half-made is left
(store_problems), and the rerun converges to the state an uninterrupted apply gives: the
same containers, states and settings, and a --dry-run with nothing to do.

The kill delay is drawn uniformly from [0, T], T the duration of one uninterrupted run, with
test_kill.py's seed (NSPAWNCTL_KILL_SEED reproduces the draws)."""

import json
import random

import pytest

from tests.integration.helpers import listing
from tests.integration.test_kill import SEED, Tally, kill_trial, timed
from tests.integration.test_stacks import box, stack_file

pytestmark = pytest.mark.integration

FIRST = ("name: kst\nnetworks:\n  kst:\n    subnet: 203.0.113.0/24\ncontainers:\n"
         + box("kst-a", "network: kst")
         + box("kst-b", "network: kst", "port: ['18090:80']", "after: [kst-a]",
               "memory: 64M", "env: [MODE=one]")
         + box("kst-c", "network: none", "state: stopped"))
SECOND = ("name: kst\nnetworks:\n  kst:\n    subnet: 203.0.113.0/24\ncontainers:\n"
          + box("kst-a", "network: kst", "memory: 80M")
          + box("kst-b", "network: kst", "port: ['18091:80']", "after: [kst-a]",
                "memory: 64M", "env: [MODE=two]")
          + box("kst-d", "network: none", "enabled: true"))
EMPTY = "name: kst\n"


@pytest.fixture(scope="module")
def trials(full, kill_trials) -> int:
    """Trials per phase: 3, 12 with --full, or --kill-trials N."""
    return kill_trials or (12 if full else 3)


def state(nspawnctl) -> dict:
    """What an apply decides, per container of the stack: state, enabled, and settings."""
    seen = {}
    for name, row in listing(nspawnctl).items():
        if row["stack"] != "kst":
            continue
        info = json.loads(nspawnctl("status", name, "--json").stdout)
        seen[name] = {k: info[k] for k in ("state", "enabled", "memory", "env", "port",
                                           "network", "after", "stack")}
        assert info["os"], f"{name} is not whole: {info}"
    nets = {n["name"] for n in json.loads(nspawnctl("network", "list", "--json").stdout)}
    return {"containers": seen, "network": "kst" in nets}


def test_kill_apply_converges(host, nspawnctl, trials, figures):
    rng = random.Random(f"{SEED}:apply")
    empty, first, second = (stack_file(host, f"kst-{n}", text) for n, text in
                            (("empty", EMPTY), ("first", FIRST), ("second", SECOND)))

    def apply(path, *more):
        return nspawnctl("apply", "-f", path, "--prune", *more)
    try:
        # the states uninterrupted applies give, and how long each takes
        apply(empty)
        make = timed(host, ["apply", "-f", first, "--prune"], lambda: apply(empty), runs=2)
        made = state(nspawnctl)
        change = timed(host, ["apply", "-f", second, "--prune"], lambda: apply(first), runs=2)
        changed = state(nspawnctl)
        assert made != changed and set(changed["containers"]) == {"kst-a", "kst-b", "kst-d"}
        for what, before, path, duration, want in (
                ("apply (create a stack)", empty, first, make, made),
                ("apply (change a stack)", first, second, change, changed)):
            tally = Tally(figures, what, duration, "the host matched the file")
            for trial in tally.attempts(trials):
                apply(before)
                delay = rng.uniform(0, duration)
                where, problems, run = kill_trial(host, nspawnctl,
                                                  ["apply", "-f", path, "--prune"], delay)
                state(nspawnctl)  # every container there is whole
                matched = nspawnctl("apply", "-f", path, "--dry-run",
                                    check=False).returncode == 0
                tally.record(trial, delay, where, matched, problems)
                assert problems == [], problems
                apply(path)  # the rerun
                assert state(nspawnctl) == want, (what, trial, delay)
                assert nspawnctl("apply", "-f", path, "--dry-run").returncode == 0
            tally.report()
    finally:
        apply(empty)
    assert state(nspawnctl) == {"containers": {}, "network": False}
