"""Concurrency: many nspawnctl commands at once, on different names and on the same name.

Ten processes each run a whole lifecycle (create, start, exec, stop, remove) on their own
container at the same time: all must succeed.  Then two processes do conflicting things to one
name at once (create/create, start/remove, remove/remove, set/remove, clone/remove), repeated
since the race goes either way: the winner succeeds, the loser gets one clear line, and the
container is left whole or not there at all.

The second process of a pair starts after a small random delay, so the repeats land at
different points of the first one's work; the seed is printed and NSPAWNCTL_TEST_SEED replays it.
"""

import os
import random
import subprocess
import time

import pytest

from tests import sysctl
from tests.integration.helpers import MACHINES, listing, store_problems

pytestmark = pytest.mark.integration

PARALLEL = 10


@pytest.fixture(scope="module")
def rng():
    seed = int(os.environ.get("NSPAWNCTL_TEST_SEED", random.randrange(2**32)))
    print(f"\ntest_concurrency: seed {seed} (replay with NSPAWNCTL_TEST_SEED={seed})")
    return random.Random(seed)


@pytest.fixture(scope="module")
def warm(nspawnctl):
    """The default base tree in the cache, so every create below is a clone of it (the first
    create of a session bootstraps it)."""
    nspawnctl("create", "conc-warm")
    nspawnctl("remove", "conc-warm")


@pytest.fixture(scope="module")
def inotify():
    """Booted containers each take inotify instances, charged to root on the machine: the
    kernel default leaves room for about 16 in all testbeds together."""
    with sysctl.enough_inotify_instances():
        yield


def launch(host, *args, delay=0.0) -> subprocess.Popen:
    """`nspawnctl ARGS` inside the host in the background, after delay seconds."""
    return host.popen(["sh", "-c", 'sleep "$0"; exec nspawnctl "$@"', f"{delay:.3f}",
                       *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                      text=True)


def finish(procs, timeout=300) -> list[tuple[int, str, str]]:
    """(exit status, stdout, stderr) of each process, once all have ended."""
    outputs = [p.communicate(timeout=timeout) for p in procs]
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outputs)]


def assert_clear_failure(code, out, err):
    """What Nspawnctl.fails asserts: non-zero, no traceback, exactly one 'nspawnctl' line."""
    assert code != 0, (code, out, err)
    assert "Traceback" not in err and "internal error" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("nspawnctl")]
    assert len(lines) == 1, err


def unit_active(host, name) -> bool:
    r = host.run(["systemctl", "is-active", f"systemd-nspawn@{name}.service"])
    return r.stdout.strip() in ("active", "activating", "deactivating", "reloading")


def whole_or_absent(host, nspawnctl, name) -> bool:
    """Assert NAME exists completely or not at all; True if it exists.  Checked on the files
    before any other nspawnctl command runs, since every command sweeps leftovers away."""
    tree = host.run(["test", "-d", f"{MACHINES}/{name}"]).returncode == 0
    settings = host.run(["test", "-e", f"/etc/systemd/nspawn/{name}.nspawn"]).returncode == 0
    dropin = host.run(["test", "-e", f"/etc/systemd/system/systemd-nspawn@{name}.service.d/"
                                     "50-nspawnctl.conf"]).returncode == 0
    assert tree == settings == dropin, f"{name}: tree {tree}, settings {settings}, " \
                                       f"drop-in {dropin}"
    if tree:
        nspawnctl("status", name)
    else:
        assert not unit_active(host, name), f"{name} is gone but its unit still runs"
        assert host.run(["machinectl", "status", name]).returncode != 0
    assert store_problems(host, nspawnctl) == []
    return tree


def remove_if_there(nspawnctl, *names):
    for name in names:
        nspawnctl("remove", "--force", name, check=False)


@pytest.fixture
def ten(nspawnctl):
    """The ten names; after the test, what a failed run left is removed (after its checks,
    which must see a leak): the next module's cold-create tests refuse to start while
    containers keep the default base cached."""
    names = [f"conc-{i}" for i in range(PARALLEL)]
    yield names
    remove_if_there(nspawnctl, *sorted(set(names) & set(listing(nspawnctl))))


def test_ten_lifecycles_at_once(host, nspawnctl, warm, inotify, figures, ten):
    names = ten
    # start's own --timeout (60 s) is for one boot on an idle host: ten at once under the VM
    # tier's emulation took longer, and this test is about what they do to each other, not
    # about speed (the figure below is).
    script = ('set -e; n="$0"; nspawnctl create "$n"; nspawnctl start --timeout 600 "$n"; '
              'nspawnctl exec "$n" -- hostname; nspawnctl stop "$n"; nspawnctl remove "$n"')
    t0 = time.monotonic()
    procs = [host.popen(["sh", "-c", script, name], stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True) for name in names]
    try:
        results = finish(procs, timeout=1200)
    finally:
        for p in procs:
            p.kill()
    seconds = time.monotonic() - t0
    for name, (code, out, err) in zip(names, results):
        assert code == 0, f"{name}: exit {code}\n{out}\n{err}"
        # Each step said it did its part: created, booted, ran (its own hostname), stopped,
        # removed.
        lines = out.splitlines()
        assert lines[0].startswith(f"created {name} (") and "from the cached base" in lines[0]
        assert lines[1:] in ([f"{name}: running", name, f"{name}: stopped", f"removed {name}"],
                             [f"{name}: degraded", name, f"{name}: stopped", f"removed {name}"]
                             ), out
    figures(f"concurrency: {PARALLEL} create+start+exec+stop+remove at once", f"{seconds:.1f} s")

    assert store_problems(host, nspawnctl) == []
    units = host.run(["systemctl", "list-units", "--all", "--plain", "--no-legend",
                      "systemd-nspawn@*"]).stdout
    left = [line for line in units.splitlines() if any(f"@{n}.service" in line for n in names)
            and " active " in f" {line} "]
    assert left == [], units
    machines = host.run(["machinectl", "list", "--no-legend"]).stdout.split()
    assert not set(names) & set(machines), machines
    assert not set(names) & set(listing(nspawnctl))


def race(host, rng, first, second) -> list[tuple[int, str, str]]:
    """Run two nspawnctl commands at once, one of them (either) after a random 0-300 ms.
    Returns their results in the order given."""
    delays = [0.0, rng.uniform(0, 0.3)]
    rng.shuffle(delays)
    return finish([launch(host, *first, delay=delays[0]),
                   launch(host, *second, delay=delays[1])])


def outcome(commands, results) -> str:
    """e.g. "set ok, remove failed", for the figures."""
    return ", ".join(f"{c[0]} {'ok' if code == 0 else 'failed'}"
                     for c, (code, _, _) in zip(commands, results))


def tally(seen: list[str]) -> str:
    return "; ".join(f"{seen.count(s)}x {s}" for s in sorted(set(seen)))


def repeats(full):
    return 20 if full else 5


def test_create_create(host, nspawnctl, warm, rng, full, figures):
    for i in range(repeats(full)):
        name = f"race-cc{i}"
        results = race(host, rng, ["create", name], ["create", name])
        # Exactly one create makes it; the other says the name is taken or busy.
        assert sorted(code == 0 for code, _, _ in results) == [False, True], results
        for code, out, err in results:
            if code:
                assert_clear_failure(code, out, err)
                assert "busy" in err or "already exists" in err, err
        assert whole_or_absent(host, nspawnctl, name)
        nspawnctl("remove", name)
    figures("concurrency: create/create races, one winner each", repeats(full))


def test_remove_remove(host, nspawnctl, warm, rng, full, figures):
    for i in range(repeats(full)):
        name = f"race-rr{i}"
        nspawnctl("create", name)
        results = race(host, rng, ["remove", name], ["remove", name])
        assert sorted(code == 0 for code, _, _ in results) == [False, True], results
        for code, out, err in results:
            if code:
                assert_clear_failure(code, out, err)
                assert "busy" in err or "no container named" in err, err
        assert not whole_or_absent(host, nspawnctl, name)
    figures("concurrency: remove/remove races, one winner each", repeats(full))


def test_start_remove(host, nspawnctl, warm, rng, full, figures):
    """Only one can win: remove refuses a running container, and a start racing a remove must
    neither succeed on a container that is then removed nor leave one running without a tree."""
    seen = []
    for i in range(repeats(full)):
        name = f"race-sr{i}"
        nspawnctl("create", name)
        commands = [["start", name], ["remove", name]]
        results = race(host, rng, *commands)
        (start_code, _, _), (remove_code, _, _) = results
        assert not (start_code == 0 and remove_code == 0), results
        for code, out, err in results:
            if code:
                assert_clear_failure(code, out, err)
        assert whole_or_absent(host, nspawnctl, name) == (remove_code != 0), results
        seen.append(outcome(commands, results))
        remove_if_there(nspawnctl, name)
    figures("concurrency: start/remove races", tally(seen))


def test_set_remove(host, nspawnctl, warm, rng, full, figures):
    """Both may succeed (set first), but a set that comes after the remove must fail and must
    not bring back settings for the container that is gone."""
    seen = []
    for i in range(repeats(full)):
        name = f"race-sx{i}"
        nspawnctl("create", name)
        commands = [["set", name, "--memory", "256M"], ["remove", name]]
        results = race(host, rng, *commands)
        (set_code, _, _), (remove_code, _, _) = results
        for code, out, err in results:
            if code:
                assert_clear_failure(code, out, err)
        exists = whole_or_absent(host, nspawnctl, name)
        assert exists == (remove_code != 0), results
        if exists and set_code == 0:  # the set that won was saved whole
            dropin = host.run(["cat", f"/etc/systemd/system/systemd-nspawn@{name}.service.d/"
                                      "50-nspawnctl.conf"]).stdout
            assert "MemoryMax=256M" in dropin, dropin
        seen.append(outcome(commands, results))
        remove_if_there(nspawnctl, name)
    figures("concurrency: set/remove races", tally(seen))


def test_clone_remove(host, nspawnctl, warm, rng, full, figures):
    """The copy is made from the whole source or not at all; the source is removed or not."""
    seen = []
    for i in range(repeats(full)):
        src, dst = f"race-cr{i}", f"race-cr{i}-copy"
        nspawnctl("create", src)
        commands = [["clone", src, dst], ["remove", src]]
        results = race(host, rng, *commands)
        (clone_code, _, _), (remove_code, _, _) = results
        for code, out, err in results:
            if code:
                assert_clear_failure(code, out, err)
        assert whole_or_absent(host, nspawnctl, src) == (remove_code != 0), results
        assert whole_or_absent(host, nspawnctl, dst) == (clone_code == 0), results
        if clone_code == 0:  # a whole copy, given its own name
            assert host.run(["cat", f"{MACHINES}/{dst}/etc/hostname"]).stdout == f"{dst}\n"
            assert host.run(["test", "-x", f"{MACHINES}/{dst}/usr/lib/systemd/systemd"]
                            ).returncode == 0
        seen.append(outcome(commands, results))
        remove_if_there(nspawnctl, src, dst)
    figures("concurrency: clone/remove races", tally(seen))
