"""Kill at any moment: SIGKILL nspawnctl at random points of create (cold and cached), create
from an OCI archive, remove, clone and set, and check that nothing half-made is left.

After each kill: store_problems() is empty (no staging, orphaned settings, held locks), no
process nspawnctl started lives on (debootstrap's children included: nspawnctl's PDEATHSIG
only reaches its direct children), the container is either whole (`status` reads its settings
and its os-release) or absent, and the same command run again succeeds.

The kill delay is drawn uniformly from [0, T], T being the measured duration of one
uninterrupted run of that command, so kills land in every phase.  One seed, printed and recorded
as a figure, drives every draw (NSPAWNCTL_KILL_SEED=N reproduces a run's delays; the command
durations themselves vary from run to run, and so do the exact points the kills hit).
"""

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.helpers import MACHINES, listing, store_problems
from tests.integration.test_oci_containers import busybox_layer, oci_archive
from tests.testbed import children, comm

pytestmark = pytest.mark.integration

SEED = int(os.environ.get("NSPAWNCTL_KILL_SEED") or random.SystemRandom().randrange(10**6))
# A bootstrap key of our own (one extra tiny package, not slimmed): no other test's container
# uses it, so `images prune` really drops it and each cold trial bootstraps.  Not slimmed so
# that its base without the package is not the cached default base either: from that, create
# --include would build an incremental base (apt-get into a copy), not bootstrap.
KEY = ("--include", "ed", "--no-slim")
BASE = "kill-base"  # made by the cold test's last run; the other tests clone it
ARCHIVE = "/root/kill-busybox.tar"
THERE = "the container was there"


@pytest.fixture(scope="module")
def trials(full, kill_trials) -> int:
    """Trials per kill test: 7, 50 with --full, or --kill-trials N (20, then 10, until the
    suite neared its hour: at 20 these nine tests took 11 of its minutes)."""
    return kill_trials or (50 if full else 7)


@pytest.fixture(scope="module")
def seed(figures):
    print(f"\nkill trials: seed {SEED} (rerun with NSPAWNCTL_KILL_SEED={SEED})")
    figures("kill: seed (NSPAWNCTL_KILL_SEED)", SEED)
    return SEED


@pytest.fixture(scope="module")
def base(nspawnctl, seed):
    """BASE, a whole container of KEY's base tree (the cold test leaves it; made if run alone)."""
    if BASE not in listing(nspawnctl):
        nspawnctl("create", BASE, *KEY)
    return BASE


# Killing

def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def nspawnctl_pid(root: int) -> int | None:
    """The nspawnctl (python) process under the popen'd wrapper (nsenter, then env in the
    testbed; on a systemd host the popen'd process itself), seen from this side of the pid
    namespace so the kill is immediate."""
    todo = [root]
    while todo:
        pid = todo.pop(0)
        if comm(pid) not in ("nsenter", "env", "") and \
                any(a.endswith("/nspawnctl") or a == "nspawnctl" for a in _cmdline(pid)[:2]):
            return pid
        todo += children(pid)
    return None


def process_group(pgid: int) -> list[str]:
    """Processes of a process group: what nspawnctl started and has not died with it."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(f"{entry} {' '.join(_cmdline(int(entry)))[:120]}")
    return found


class Run:
    """One nspawnctl command started in the background, killed after delay seconds."""

    def __init__(self, host, argv: list[str]):
        # A session of its own: its process group is everything the command starts (and does
        # not setsid away from), which is how leftovers are found after the kill.
        self.log = open("/tmp/nspawnctl-kill-trial.log", "w+")
        self.proc = host.popen(["nspawnctl", *argv], stdin=subprocess.DEVNULL, stdout=self.log,
                               stderr=self.log, start_new_session=True)
        self.t0 = time.monotonic()

    def kill_after(self, delay: float) -> str:
        """SIGKILL the nspawnctl process at t0 + delay; says where the kill landed."""
        time.sleep(max(0.0, self.t0 + delay - time.monotonic()))
        if self.proc.poll() is not None:
            return "finished"
        pid = nspawnctl_pid(self.proc.pid)
        if pid is None:
            # Not yet exec'd nspawnctl (nsenter, env): the whole group, nothing has run yet.
            os.killpg(self.proc.pid, signal.SIGKILL)
            return "before start"
        os.kill(pid, signal.SIGKILL)
        return "killed"

    def wait(self, timeout=600) -> int:
        return self.proc.wait(timeout)

    def survivors(self) -> list[str]:
        """What is left of the process group a few seconds after the kill (then killed)."""
        self.proc.wait(60)
        deadline = time.monotonic() + 10
        while (left := process_group(self.proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        if left:
            os.killpg(self.proc.pid, signal.SIGKILL)
        return left

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()


def timed(host, argv: list[str], before=None, runs: int = 1) -> float:
    """Duration of an uninterrupted run, as the trials see it (same wrapper, same start): the
    fastest of runs, each after before() has set the stage (a first run is often slower)."""
    seconds = []
    for _ in range(runs):
        if before:
            before()
        run = Run(host, argv)
        rc = run.wait()
        seconds.append(time.monotonic() - run.t0)
        assert rc == 0, f"nspawnctl {' '.join(argv)} failed:\n{run.output()}"
    # the fastest: a slow outlier (disk writeback) would send most kills after the end
    return min(seconds)


# What a kill may leave that store_problems() does not look at: the temporary files of
# atomic writes next to settings and drop-ins, mounts under nspawnctl's own state (debootstrap
# mounts /proc and /sys in the tree it makes), a bootstrapper still running.
_EXTRA_SCAN = r"""
find /etc/systemd/nspawn /etc/systemd/system -maxdepth 2 -name '.*.tmp' -printf 'tmpfile %p\n'
for d in /etc/systemd/system/systemd-nspawn@*.service.d; do
  [ -d "$d" ] && [ ! -e "/var/lib/machines/$(basename "$d" .service.d | cut -d@ -f2)" ] \
    && echo "dropindir $d"
done
awk '$5 ~ "^/var/lib/nspawnctl/" {print "mount " $5}' /proc/self/mountinfo
# (bracketed so that the pattern does not match this shell's own command line)
pgrep -a -f '[d]ebootstrap|[m]mdebstrap|[a]pt-get|[d]pkg|[c]p -a --reflink' | sed 's/^/process /'
true
"""


def leftovers(host, nspawnctl, run: Run) -> list[str]:
    problems = [f"survivor: {p}" for p in run.survivors()]
    problems += store_problems(host, nspawnctl)
    problems += host.run(["sh", "-c", _EXTRA_SCAN]).stdout.splitlines()
    return problems


def exists(host, name: str) -> bool:
    return host.run(["test", "-e", f"{MACHINES}/{name}"]).returncode == 0


def check_whole(host, nspawnctl, name: str, image: str | None = None) -> dict:
    """A container that exists after a kill must be whole: status parses its settings, its
    tree has an os-release, its .nspawn file is there and names the base tree it came from."""
    info = json.loads(nspawnctl("status", name, "--json").stdout)
    assert info["os"], f"{name}: no os-release in its tree: {info}"
    assert host.run(["test", "-f", f"/etc/systemd/nspawn/{name}.nspawn"]).returncode == 0
    if image:
        assert info["image"] == image, info
    return info


def check_boots(nspawnctl, name: str):
    nspawnctl("start", name)
    assert nspawnctl("exec", name, "--", "test", "-e", "/etc/os-release").returncode == 0
    nspawnctl("stop", name)


class Tally:
    """Per-command counts for the figures table."""

    def __init__(self, figures, command: str, duration: float, committed: str):
        self.figures, self.command, self.committed = figures, command, committed
        self.duration = duration
        self.trials = self.before = self.after = 0
        self.where: dict[str, int] = {}
        self.problems: list[str] = []
        self.seen: set[str] = set()

    def record(self, trial: int, delay: float, where: str, committed: bool, problems):
        print(f"kill {self.command}: trial {trial}, kill at {delay:.3f} s of "
              f"{self.duration:.2f}: {where}, {'after' if committed else 'before'} the commit"
              + "".join(f"\n  problem: {p}" for p in problems))
        self.trials += 1
        self.where[where] = self.where.get(where, 0) + 1
        if committed:
            self.after += 1
        else:
            self.before += 1
        # A leftover stays until something removes it: count it once, at the trial that made it.
        for p in problems:
            if p not in self.seen:
                self.seen.add(p)
                self.problems.append(f"trial {trial} (kill at {delay:.3f} s, seed {SEED}): {p}")

    @property
    def landed(self) -> int:
        """Trials whose kill hit a running command (not one that had already finished)."""
        return self.trials - self.where.get("finished", 0)

    def attempts(self, wanted: int):
        """Trial numbers until `wanted` kills have landed; a kill that came after the command
        had finished proves nothing and does not count (at most 3 * wanted attempts)."""
        trial = 0
        while self.landed < wanted and trial < 3 * wanted:
            yield trial
            trial += 1
        assert self.landed >= wanted, \
            f"only {self.landed} of {trial} kills hit a running {self.command}"

    def report(self):
        c = self.command
        self.figures(f"kill {c}: trials (kills that hit it running)",
                     f"{self.trials} ({self.landed})")
        self.figures(f"kill {c}: uninterrupted run T", f"{self.duration:.2f} s")
        self.figures(f"kill {c}: before / after the commit point",
                     f"{self.before} / {self.after} (after: {self.committed})")
        self.figures(f"kill {c}: where the kills landed",
                     ", ".join(f"{k} {v}" for k, v in sorted(self.where.items())))
        self.figures(f"kill {c}: problems found", len(self.problems))


def kill_trial(host, nspawnctl, argv, delay):
    run = Run(host, argv)
    where = run.kill_after(delay)
    problems = leftovers(host, nspawnctl, run)
    return where, problems, run


def image_key(nspawnctl, name: str) -> str:
    return json.loads(nspawnctl("status", name, "--json").stdout)["image"]


def image_keys(nspawnctl) -> set[str]:
    return {row["key"] for row in json.loads(nspawnctl("images", "--json").stdout)}


# The tests

def test_kill_cold_create(host, nspawnctl, trials, figures, seed):
    """Cold create: each trial prunes the base tree first, so the kill may hit debootstrap
    (downloading, unpacking, configuring), the slimming, the cache entry's rename, the clone or
    the commit.  Debootstrap's .deb cache stays warm (packages are not downloaded again),
    which shortens T but not the phases.  Each trial is the rerun of the one before it (no
    stale lock or staging directory blocks it); the last run goes to completion."""
    rng = random.Random(f"{seed}:create-cold")
    argv = ["create", BASE, *KEY]
    if exists(host, BASE):
        nspawnctl("remove", "--force", BASE)
    nspawnctl("images", "prune")
    duration = timed(host, argv)
    key = image_key(nspawnctl, BASE)
    tally = Tally(figures, "create (cold, debootstrap)", duration, THERE)
    try:
        for trial in tally.attempts(trials):
            if exists(host, BASE):  # the previous kill came after the commit point
                nspawnctl("remove", BASE)
            nspawnctl("images", "prune")
            assert key not in image_keys(nspawnctl), "the base tree is still in use: not cold"
            delay = rng.uniform(0, duration)
            where, problems, run = kill_trial(host, nspawnctl, argv, delay)
            committed = exists(host, BASE)
            if committed:
                check_whole(host, nspawnctl, BASE, key)
                if tally.after == 0:
                    check_boots(nspawnctl, BASE)
            tally.record(trial, delay, where, committed, problems)
        if not exists(host, BASE):
            r = nspawnctl(*argv)
            assert "bootstrapping" in r.stderr or "using cached base tree" in r.stderr
        check_whole(host, nspawnctl, BASE, key)
        check_boots(nspawnctl, BASE)
    finally:
        tally.report()
    assert tally.problems == []


def _create_trials(host, nspawnctl, trials, figures, rng, name, argv, label, prune_every=0):
    """Kill create argv at random points; rerun it when the container did not make it."""
    def absent():
        if exists(host, name):
            nspawnctl("remove", "--force", name)
        if prune_every:
            nspawnctl("images", "prune")  # T of the longer path, building the base tree

    duration = timed(host, argv, absent, runs=3)
    key = image_key(nspawnctl, name)
    nspawnctl("remove", name)
    tally = Tally(figures, label, duration, THERE)
    booted = False
    try:
        for trial in tally.attempts(trials):
            if prune_every and trial % prune_every == 0:
                nspawnctl("images", "prune")  # this trial builds the base tree again
            delay = rng.uniform(0, duration)
            where, problems, run = kill_trial(host, nspawnctl, argv, delay)
            committed = exists(host, name)
            if not committed:
                nspawnctl(*argv)  # the rerun: nothing stale stands in its way
            check_whole(host, nspawnctl, name, key)
            if committed and not booted:
                check_boots(nspawnctl, name)
                booted = True
            nspawnctl("remove", name)
            tally.record(trial, delay, where, committed, problems)
            if where == "finished":
                # T came from slow runs (this disk's writeback swings a copy from 0.2 to
                # 2.7 s): the command is faster now, so draw from what it takes now
                duration = delay
    finally:
        tally.report()
    assert tally.problems == []


def test_kill_cached_create(host, nspawnctl, trials, figures, base):
    """A cache hit: the kill lands in the clone of the base tree, the settings or the rename."""
    rng = random.Random(f"{SEED}:create-cached")
    _create_trials(host, nspawnctl, trials, figures, rng, "kill-warm", ["create", "kill-warm", *KEY],
                   "create (cache hit)")


@pytest.fixture(scope="module")
def archive(host, tmp_path_factory):
    """A real OCI archive of a busybox tree (as test_oci_containers makes it), in the testbed."""
    work = tmp_path_factory.mktemp("kill-oci")
    made = oci_archive(work, "busybox", [busybox_layer()])
    host.run(["mkdir", "-p", str(Path(ARCHIVE).parent)])
    with open(made, "rb") as src, open(host.path(ARCHIVE), "wb") as dst:
        dst.write(src.read())
    return ARCHIVE


def test_kill_oci_create(host, nspawnctl, trials, figures, base, archive):
    """From an OCI archive; every other trial prunes first so the kill may hit the unpack of
    the image into the cache as well as the clone of the cached tree."""
    rng = random.Random(f"{SEED}:create-oci")
    _create_trials(host, nspawnctl, trials, figures, rng, "kill-oci",
                   ["create", "kill-oci", "--from", f"oci-archive:{archive}"],
                   "create --from oci-archive", prune_every=2)


def test_kill_remove(host, nspawnctl, trials, figures, base):
    """remove: before its rename the container is whole, after it gone; the rerun finishes."""
    rng = random.Random(f"{SEED}:remove")
    name = "kill-rm"
    if exists(host, name):
        nspawnctl("remove", "--force", name)
    duration = timed(host, ["remove", name], lambda: nspawnctl("create", name, *KEY), runs=3)
    tally = Tally(figures, "remove", duration, "the container was gone")
    try:
        for trial in tally.attempts(trials):
            nspawnctl("create", name, *KEY)
            delay = rng.uniform(0, duration)
            where, problems, run = kill_trial(host, nspawnctl, ["remove", name], delay)
            still_there = exists(host, name)
            if still_there:
                check_whole(host, nspawnctl, name)
                nspawnctl("remove", name)  # the rerun
            assert name not in listing(nspawnctl)
            # "committed" for remove: the container is gone
            tally.record(trial, delay, where, not still_there, problems)
    finally:
        tally.report()
    assert tally.problems == []


def test_kill_clone(host, nspawnctl, trials, figures, base):
    rng = random.Random(f"{SEED}:clone")
    _create_trials(host, nspawnctl, trials, figures, rng, "kill-clone",
                   ["clone", base, "kill-clone"], "clone")
    check_whole(host, nspawnctl, base)  # the source is untouched


def live_memory_max(host, name) -> int:
    return int(host.run(["systemctl", "show", "-P", "MemoryMax",
                         f"systemd-nspawn@{name}.service"]).stdout.strip())


def size_bytes(text: str) -> int:
    return int(text[:-1]) << {"M": 20, "G": 30}[text[-1]]


def test_kill_set(host, nspawnctl, trials, figures, base):
    """set on a running container (settings rewritten, the limit applied live over D-Bus):
    after a kill the limit is the old one or the new one, and the settings still parse."""
    rng = random.Random(f"{SEED}:set")
    name = "kill-set"
    if exists(host, name):
        nspawnctl("remove", "--force", name)
    nspawnctl("create", name, *KEY, "--memory", "100M")
    nspawnctl("start", name)
    sizes = ["128M", "256M", "384M", "512M", "640M", "768M", "896M", "1G"]
    duration = timed(host, ["set", name, "--memory", "1G"],
                     lambda: nspawnctl("set", name, "--memory", "100M"), runs=3)
    old = "1G"
    tally = Tally(figures, "set --memory (running)", duration, "the new limit was in place")

    def limit():
        return check_whole(host, nspawnctl, name)["limits"]["memory"]

    try:
        for trial in tally.attempts(trials):
            new = rng.choice([s for s in sizes if s != old])
            delay = rng.uniform(0, duration)
            where, problems, run = kill_trial(host, nspawnctl, ["set", name, "--memory", new],
                                              delay)
            seen = limit()
            assert seen in (size_bytes(old), size_bytes(new)), (old, new, seen)
            nspawnctl("set", name, "--memory", new)  # the rerun
            assert limit() == size_bytes(new)
            # the running unit, not only the files: a kill between writing them and the live
            # update must not leave it on the old value once the command has run again
            assert live_memory_max(host, name) == size_bytes(new), (new, live_memory_max(
                host, name))
            tally.record(trial, delay, where, seen == size_bytes(new), problems)
            old = new
        assert nspawnctl("exec", name, "--", "true").returncode == 0  # still running
    finally:
        tally.report()
        nspawnctl("remove", "--force", name)
    assert tally.problems == []



# Networking: published ports, networks, start

def firewall_ports(host) -> set[int]:
    """The host ports nspawnctl's table publishes now."""
    table = host.run(["nft", "list", "table", "inet", "nspawnctl"]).stdout
    return {int(word) for line in table.splitlines() if " dnat " in line
            for before, word in zip(line.split(), line.split()[1:]) if before == "dport"}


def test_kill_set_port(host, nspawnctl, trials, figures, base, archive):
    """set --port on a running container: settings and the firewall are rewritten.  After a
    kill the settings hold the old port or the new one, and the rerun (or any later set)
    leaves the firewall publishing exactly what the settings say."""
    rng = random.Random(f"{SEED}:set-port")
    name = "kill-port"
    if exists(host, name):
        nspawnctl("remove", "--force", name)
    nspawnctl("create", name, "--from", f"oci-archive:{archive}", "--port", "9000:80")
    nspawnctl("start", name)
    duration = timed(host, ["set", name, "--no-port", "9000", "--port", "9001:80"],
                     lambda: nspawnctl("set", name, "--no-port", "9001", "--port", "9000:80")
                     if ports(nspawnctl, name) != [9000] else None, runs=3)
    tally = Tally(figures, "set --port (running)", duration, "the new port was in the settings")
    old = ports(nspawnctl, name)[0]
    try:
        for trial in tally.attempts(trials):
            new = rng.choice([p for p in range(9000, 9010) if p != old])
            argv = ["set", name, "--no-port", str(old), "--port", f"{new}:80"]
            delay = rng.uniform(0, duration)
            where, problems, run = kill_trial(host, nspawnctl, argv, delay)
            seen = ports(nspawnctl, name)
            assert seen in ([old], [new]), (old, new, seen)
            if seen == [old]:
                nspawnctl(*argv)  # the rerun
            else:
                nspawnctl("set", name, "--port", f"{new}:80")  # nothing changed: rolls forward
            assert ports(nspawnctl, name) == [new]
            assert firewall_ports(host) == {new}, host.run(["nft", "list", "ruleset"])
            tally.record(trial, delay, where, seen == [new], problems)
            old = new
    finally:
        tally.report()
        nspawnctl("remove", "--force", name)
    assert tally.problems == []
    assert firewall_ports(host) == set()


def ports(nspawnctl, name) -> list[int]:
    shown = json.loads(nspawnctl("status", name, "--json").stdout)["port"]
    return [int(p.split(":")[-2]) for p in shown]


def test_kill_network_create_and_remove(host, nspawnctl, trials, figures, seed):
    """network create and remove: the registry is the commit point, the bridge follows.
    After a kill the network is there or not, and once the command is run again the bridge
    exists exactly when the network does."""
    rng = random.Random(f"{SEED}:network")
    name, bridge = "kn", "nsc-kn"
    create = ["network", "create", name, "--subnet", "192.0.2.240/28"]
    remove = ["network", "remove", name]

    def listed() -> bool:
        return name in {n["name"] for n in json.loads(
            nspawnctl("network", "list", "--json").stdout)}

    def has_bridge() -> bool:
        return host.run(["ip", "link", "show", bridge]).returncode == 0

    if listed():
        nspawnctl(*remove)
    duration = max(timed(host, create, lambda: listed() and nspawnctl(*remove), runs=3),
                   timed(host, remove, lambda: listed() or nspawnctl(*create), runs=3))
    tally = Tally(figures, "network create / remove", duration, "the registry said so")
    try:
        for trial in tally.attempts(trials):
            argv = remove if listed() else create
            delay = rng.uniform(0, duration)
            where, problems, run = kill_trial(host, nspawnctl, argv, delay)
            done = listed() == (argv is create)
            nspawnctl(*argv, check=False)  # the rerun: "exists" / "no network" once done
            assert listed() == (argv is create)
            assert has_bridge() == listed(), (argv, host.run(["ip", "-o", "link"]))
            tally.record(trial, delay, where, done, problems)
    finally:
        tally.report()
        if listed():
            nspawnctl(*remove)
    assert tally.problems == []
    assert not has_bridge()


def test_kill_start(host, nspawnctl, trials, figures, base, archive):
    """start of a container on a network (the unit starts, ExecStartPost= gives it its
    address): killing nspawnctl never leaves a half-configured container; it runs or not,
    and the rerun finds it running with its address."""
    rng = random.Random(f"{SEED}:start")
    name = "kill-start"
    if exists(host, name):
        nspawnctl("remove", "--force", name)
    nspawnctl("create", name, "--from", f"oci-archive:{archive}")
    address = listing(nspawnctl)[name]["address"][0]
    duration = timed(host, ["start", name], lambda: nspawnctl("stop", name), runs=3)
    tally = Tally(figures, "start (on a network)", duration, "it was running")
    try:
        for trial in tally.attempts(trials):
            nspawnctl("stop", name)
            delay = rng.uniform(0, duration)
            where, problems, run = kill_trial(host, nspawnctl, ["start", name], delay)
            state = listing(nspawnctl)[name]["state"]
            nspawnctl("start", name)  # the rerun
            leader = json.loads(nspawnctl("status", name, "--json").stdout)["leader"]
            inside = host.run(["nsenter", "-t", str(leader), "-n", "ip", "-4", "-o", "addr",
                               "show", "host0"]).stdout
            assert f"{address}/" in inside, inside
            tally.record(trial, delay, where, state == "running", problems)
    finally:
        tally.report()
        nspawnctl("remove", "--force", name)
    assert tally.problems == []
