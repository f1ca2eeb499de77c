"""Host crash at any moment (issue 13): the testbed's every process killed at once (its systemd
included: Testbed.crash) at a random point of create (cold and cached), create --overlay,
remove, clone and set; the testbed boots again.  Before any nspawnctl command runs, the store
must be consistent (the same checks as the SIGKILL tests, without the sweep a command would
do: nspawnctl-recover.service did it at boot), a container must be whole or absent, and the
interrupted command must then succeed.

The page cache survives this crash (the testbed's files live on this machine's filesystem),
so it does not show what a power cut loses; the commit points sync what they need for that
(store/containers.py: syncfs before a tree's rename, the directory after; write_atomic syncs
each settings file before its rename).

Crash delays are drawn uniformly from [0, T], T one uninterrupted run of the command; a crash
that came after the command finished does not count.  The default run makes 2 crashes per
command (1 for the cold create); --full makes 20 each.
"""

import json
import random
import subprocess
import time

import pytest

from tests import testbed
from tests.integration.helpers import store_problems
from tests.integration.test_kill import _EXTRA_SCAN, KEY, SEED, Tally, check_whole, exists, timed

pytestmark = pytest.mark.integration

COLD = "crash-cold"
NAME = "crash-c"
SRC = "crash-src"


def crashes(full: bool, cold: bool = False) -> int:
    return 20 if full else (1 if cold else 2)


@pytest.fixture(scope="module")
def bed(host):
    if not isinstance(host, testbed.Testbed):
        pytest.skip("a host crash needs the testbed (this host would crash with it)")
    return host


def crash_during(host, argv: list[str], delay: float) -> str:
    """Run nspawnctl argv inside the testbed and crash the testbed at delay seconds, if the
    command still runs then; says where the crash landed."""
    log = open("/tmp/nspawnctl-crash-trial.log", "w+")
    proc = host.popen(["nspawnctl", *argv], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                      start_new_session=True)
    t0 = time.monotonic()
    time.sleep(max(0.0, t0 + delay - time.monotonic()))
    if proc.poll() is not None:
        return "finished"
    host.crash()
    proc.wait(60)
    return "crashed"


def after_boot(host, nspawnctl) -> list[str]:
    """What the store looks like right after the boot, before any nspawnctl command."""
    problems = []
    recover = host.run(["systemctl", "is-active", "nspawnctl-recover.service"]).stdout.strip()
    if recover != "active":
        problems.append(f"nspawnctl-recover.service is {recover} after the boot")
    problems += store_problems(host, nspawnctl, sweep=False)
    problems += host.run(["sh", "-c", _EXTRA_SCAN]).stdout.splitlines()
    return problems


def trials(host, nspawnctl, figures, label, argv, duration, wanted, prepare, committed,
           finish):
    """Crash argv `wanted` times while it runs; after each boot check the store, then
    finish(was_committed) reruns what the crash interrupted."""
    rng = random.Random(f"{SEED}:crash:{label}")
    tally = Tally(figures, f"crash {label}", duration, "it took effect")
    try:
        for trial in tally.attempts(wanted):
            prepare()
            delay = rng.uniform(0, duration)
            where = crash_during(host, argv, delay)
            problems = after_boot(host, nspawnctl) if where == "crashed" else []
            done = committed()
            tally.record(trial, delay, where, done, problems)
            finish(done)
    finally:
        tally.report()
        figures(f"crash {label}: testbed boot after a crash", f"{host.boot_seconds:.1f} s")
    assert tally.problems == []


def remove_if_there(nspawnctl, host, *names):
    for name in names:
        if exists(host, name):
            nspawnctl("remove", "--force", name)


def test_crash_cold_create(bed, nspawnctl, full, figures):
    argv = ["create", COLD, *KEY]

    def prepare():
        remove_if_there(nspawnctl, bed, COLD)
        nspawnctl("images", "prune")

    prepare()
    duration = timed(bed, argv)

    def finish(done):
        if not done:
            nspawnctl(*argv)
        check_whole(bed, nspawnctl, COLD)

    trials(bed, nspawnctl, figures, "create (cold)", argv, duration,
           crashes(full, cold=True), prepare, lambda: exists(bed, COLD), finish)
    remove_if_there(nspawnctl, bed, COLD)  # test_create wants no container keeping a base


@pytest.mark.parametrize("label, options", [("create (cached)", ()),
                                            ("create --overlay", ("--overlay",))])
def test_crash_create(bed, nspawnctl, full, figures, label, options):
    argv = ["create", NAME, *KEY, "--network", "none", *options]

    def prepare():
        remove_if_there(nspawnctl, bed, NAME)

    duration = timed(bed, argv, prepare, runs=3)

    def finish(done):
        if not done:
            nspawnctl(*argv)
        check_whole(bed, nspawnctl, NAME)
        if options:  # the overlay is mounted again after the boot: it starts
            nspawnctl("start", NAME)
            nspawnctl("stop", NAME)

    trials(bed, nspawnctl, figures, label, argv, duration, crashes(full), prepare,
           lambda: exists(bed, NAME), finish)
    remove_if_there(nspawnctl, bed, NAME)


def test_crash_remove(bed, nspawnctl, full, figures):
    argv = ["remove", NAME]

    def prepare():
        if not exists(bed, NAME):
            nspawnctl("create", NAME, *KEY, "--network", "none")

    duration = timed(bed, argv, prepare, runs=3)

    def finish(done):
        if not done:
            check_whole(bed, nspawnctl, NAME)
            nspawnctl(*argv)
        assert not exists(bed, NAME)

    trials(bed, nspawnctl, figures, "remove", argv, duration, crashes(full), prepare,
           lambda: not exists(bed, NAME), finish)


def test_crash_clone(bed, nspawnctl, full, figures):
    if not exists(bed, SRC):
        nspawnctl("create", SRC, *KEY, "--network", "none")
    argv = ["clone", SRC, NAME]

    def prepare():
        remove_if_there(nspawnctl, bed, NAME)

    duration = timed(bed, argv, prepare, runs=3)

    def finish(done):
        if not done:
            nspawnctl(*argv)
        check_whole(bed, nspawnctl, NAME)
        check_whole(bed, nspawnctl, SRC)

    trials(bed, nspawnctl, figures, "clone", argv, duration, crashes(full), prepare,
           lambda: exists(bed, NAME), finish)
    remove_if_there(nspawnctl, bed, NAME)


def test_crash_set(bed, nspawnctl, full, figures):
    if not exists(bed, SRC):
        nspawnctl("create", SRC, *KEY, "--network", "none")
    sizes = iter(f"{n}M" for n in range(100, 10_000))
    argv = ["set", SRC, "--memory", "", "--restart", "on-failure"]

    def prepare():
        argv[3] = next(sizes)  # a new value each trial: a set that changes something

    def committed() -> bool:
        memory = json.loads(nspawnctl("status", SRC, "--json").stdout)["memory"]
        return memory == int(argv[3][:-1]) << 20

    def finish(done):
        nspawnctl(*argv)  # the rerun takes effect whether or not the crash let it
        assert committed()

    prepare()
    duration = timed(bed, argv)
    trials(bed, nspawnctl, figures, "set", argv, duration, crashes(full), prepare, committed,
           finish)
    remove_if_there(nspawnctl, bed, SRC)
