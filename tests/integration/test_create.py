"""create from debootstrap, tar and directories; the base-tree cache; clone, remove, images;
nothing half-made.  Runs inside the systemd host (the testbed) as a user would type it."""

import json
import os
import signal
import time

import pytest

from tests.integration.helpers import MACHINES, guest_running, listing, store_problems, wait_for
from tests.integration.test_kill import Run, check_whole, leftovers, nspawnctl_pid, timed

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def base(nspawnctl):
    """The default container, created cold: a real debootstrap from the Debian mirror.

    Earlier test modules may have cached the default base tree; they remove their containers,
    so pruning makes this create cold again (the .deb cache stays: downloads are not what
    these tests are about).  Removed at the module's end, as the others remove theirs (the
    next modules prove things about who uses the cached base: test_overlay's prune)."""
    nspawnctl("images", "prune")
    left = [row["name"] for row in listing(nspawnctl).values()]
    assert not left, f"earlier tests left containers that keep the base cached: {left}"
    r = nspawnctl("create", "base", "--json")
    yield json.loads(r.stdout) | {"stderr": r.stderr}
    nspawnctl("remove", "--force", "base")


def test_cold_create_bootstraps_with_progress_and_boots(host, nspawnctl, base):
    assert base["cached"] is False and base["image"].startswith("debootstrap-")
    assert "bootstrapping debootstrap:bookworm" in base["stderr"]
    # mmdebstrap, the default where it is installed (test_incremental compares it with
    # debootstrap); its stages are the progress lines
    assert "with mmdebstrap" in base["stderr"]
    assert "extracting archives" in base["stderr"]
    assert "installing remaining packages" in base["stderr"] and "success in" in base["stderr"]
    # Booted by machinectl itself: the container is an ordinary systemd-nspawn@ unit.
    r = host.run(["machinectl", "start", "base"])
    assert r.returncode == 0, str(r)
    try:
        wait_for(lambda: guest_running(host, "base"), what="base's systemd to run")
    finally:
        host.run(["machinectl", "poweroff", "base"])
        wait_for(lambda: host.run(["machinectl", "status", "base"]).returncode != 0,
                 what="base to power off")


def test_cache_hit_does_not_bootstrap(host, nspawnctl, base):
    logs_before = host.run(["ls", "/var/cache/nspawnctl/logs"]).stdout.split()
    r = nspawnctl("create", "warm", "--json")
    info = json.loads(r.stdout)
    assert info["cached"] is True and info["image"] == base["image"]
    assert "bootstrapping" not in r.stderr
    assert host.run(["ls", "/var/cache/nspawnctl/logs"]).stdout.split() == logs_before
    # Each clone gets its own identity.
    assert host.run(["cat", f"{MACHINES}/warm/etc/hostname"]).stdout == "warm\n"
    assert host.run(["cat", f"{MACHINES}/warm/etc/machine-id"]).stdout == ""
    nspawnctl("remove", "warm")


def test_slim_image_has_no_docs_and_is_small(host, base):
    tree = f"{MACHINES}/base"
    docs = host.run(["find", f"{tree}/usr/share/doc", "-type", "f", "!", "-name", "copyright"])
    assert docs.stdout == "", docs.stdout[:500]
    for empty in ("usr/share/man", "usr/share/locale", "usr/share/info", "var/lib/apt/lists"):
        r = host.run(["find", f"{tree}/{empty}", "-type", "f"])
        assert r.stdout == "", f"{empty}: {r.stdout[:300]}"
    assert "path-exclude=/usr/share/doc/*" in host.run(
        ["cat", f"{tree}/etc/dpkg/dpkg.cfg.d/01-nspawnctl-slim"]).stdout
    size_mb = int(host.run(["du", "-sm", tree]).stdout.split()[0])
    assert size_mb <= 150, f"default image is {size_mb} MB"


def test_images_lists_and_prunes(host, nspawnctl, base):
    rows = json.loads(nspawnctl("images", "--json").stdout)
    row = next(r for r in rows if r["key"] == base["image"])
    assert row["source"] == "debootstrap:bookworm" and len(row["containers"]) >= 1
    assert row["size"] > 50e6
    # A base no container uses is pruned; one in use stays.
    host.run(["mkdir", "-p", "/var/lib/nspawnctl/images/unused/tree"])
    host.run(["sh", "-c", 'echo \'{"source": "x", "created": 0, "size": 1}\' '
              '> /var/lib/nspawnctl/images/unused/meta.json'])
    r = nspawnctl("images", "prune")
    assert "unused" in r.stdout and base["image"] not in r.stdout
    keys = [r["key"] for r in json.loads(nspawnctl("images", "--json").stdout)]
    assert base["image"] in keys and "unused" not in keys


def test_import_tar_and_dir_and_clone(host, nspawnctl, base):
    host.run(["tar", "-C", f"{MACHINES}/base", "-czf", "/root/base.tar.gz", "."])
    nspawnctl("create", "fromtar", "--from", "tar:/root/base.tar.gz")
    nspawnctl("create", "fromdir", "--from", f"dir:{MACHINES}/base")
    nspawnctl("clone", "fromtar", "cloned")
    for name in ("fromtar", "fromdir", "cloned"):
        r = host.run(["test", "-x", f"{MACHINES}/{name}/usr/lib/systemd/systemd"])
        assert r.returncode == 0, name
    # The tarball's owners and modes came through (base may have been chowned to a private
    # user range by its first boot, so compare with it rather than with root).
    def modes(name):
        return host.run(["stat", "-c", "%a %u", f"{MACHINES}/{name}/usr/bin/passwd",
                         f"{MACHINES}/{name}/tmp"]).stdout
    assert modes("fromtar") == modes("base") and modes("fromtar").startswith("4755 ")
    nspawnctl("start", "cloned")
    assert nspawnctl("exec", "cloned", "--", "hostname").stdout.strip() == "cloned"
    nspawnctl("remove", "--force", "fromtar", "fromdir", "cloned")
    assert not {"fromtar", "fromdir", "cloned"} & set(listing(nspawnctl))


@pytest.mark.parametrize("args, message", [
    (["create", "bad/name"], "invalid container name"),
    (["create", "-x"], "no such option"),
    (["create", "a" * 65], "longer than 64"),
    (["create", ".host"], "reserved"),
    (["create", "base"], "already exists"),
    (["create", "x1", "--from", "debootstrap:nosuchsuite"], "unknown suite"),
    (["create", "x1", "--from", "floppy:/dev/fd0"], "unknown source"),
    (["create", "x1", "--from", "tar:/nonexistent.tar"], "no such tarball"),
    (["create", "x1", "--mirror", "http://127.0.0.1:9/debian", "--include", "hello"],
     "mirror http://127.0.0.1:9/debian is unreachable"),
    (["create", "x1", "--memory", "lots"], "invalid"),
])
def test_create_errors_are_one_clear_line(host, nspawnctl, base, args, message):
    before = host.run(["ls", "-A", MACHINES]).stdout
    r = nspawnctl.fails(*args)
    assert message.lower() in r.error.lower(), r.stderr
    assert host.run(["ls", "-A", MACHINES]).stdout == before
    assert store_problems(host, nspawnctl) == []


def test_create_without_root_or_tools(host, nspawnctl, base):
    r = host.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                  "nspawnctl", "create", "x2"])
    assert r.returncode != 0 and r.stderr.startswith("nspawnctl: this command needs root"), str(r)
    # A key that needs a bootstrap, with neither bootstrapper in PATH (auto falls back to
    # debootstrap, and says it is missing).
    r = host.run(["nspawnctl", "create", "x2", "--include", "hello"],
                 env={"PATH": "/usr/local/bin"})
    assert r.returncode == 1 and "debootstrap is not installed" in r.stderr, str(r)
    assert "x2" not in listing(nspawnctl)


def test_full_disk_is_a_clear_error_and_leaves_nothing(host, nspawnctl, base):
    # A 20 MB filesystem for the containers: the clone of a ~100 MB base cannot fit.
    host.run(["mkdir", "-p", "/srv/small"])
    r = host.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", f"{MACHINES}"])
    assert r.returncode == 0, str(r)
    try:
        r = nspawnctl.fails("create", "big")
        assert "no space left" in r.stderr, r.stderr
        assert host.run(["ls", "-A", MACHINES]).stdout.split() in ([], [".nspawnctl-staging"])
        assert host.run(["sh", "-c", f"ls -A {MACHINES}/.nspawnctl-staging 2>/dev/null"]
                        ).stdout == ""
        used = host.run(["df", "--output=used", "-m", MACHINES]).stdout.split()[-1]
        assert int(used) < 2, f"{used} MB still used"
    finally:
        host.run(["umount", MACHINES])
    assert host.run(["ls", "/etc/systemd/nspawn/big.nspawn"]).returncode != 0


def test_same_name_twice_at_once_one_wins(host, nspawnctl, base):
    procs = [host.popen(["nspawnctl", "create", "twin"], stdout=-1, stderr=-1, text=True)
             for _ in range(2)]
    results = [(p.wait(), p.stdout.read(), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes[0] == 0 and codes[1] != 0, results
    loser = next(err for code, _, err in results if code)
    assert ("busy" in loser or "already exists" in loser) and "Traceback" not in loser
    nspawnctl("start", "twin")
    assert nspawnctl("exec", "twin", "--", "true").returncode == 0
    nspawnctl("remove", "--force", "twin")


def test_same_base_needed_twice_is_bootstrapped_once(host, nspawnctl, base):
    # --no-slim is another key: both creates need it, one bootstraps, the other waits.
    logs_before = set(host.run(["ls", "/var/cache/nspawnctl/logs"]).stdout.split())
    procs = [host.popen(["nspawnctl", "create", name, "--no-slim", "--json"], stdout=-1,
                        stderr=-1, text=True) for name in ("fat1", "fat2")]
    results = [(p.wait(), p.stdout.read(), p.stderr.read()) for p in procs]
    assert all(code == 0 for code, _, _ in results), results
    infos = [json.loads(out) for _, out, _ in results]
    assert sorted(i["cached"] for i in infos) == [False, True]
    assert infos[0]["image"] == infos[1]["image"] != base["image"]
    new_logs = set(host.run(["ls", "/var/cache/nspawnctl/logs"]).stdout.split()) - logs_before
    assert len(new_logs) == 1, new_logs
    # not slim: the docs are there
    assert host.run(["ls", f"{MACHINES}/fat1/usr/share/man/man1"]).stdout
    nspawnctl("remove", "fat1", "fat2")


def absent(nspawnctl, name):
    if name in listing(nspawnctl):
        nspawnctl("remove", name)


@pytest.fixture(scope="module")
def create_time(host, nspawnctl, base):  # noqa: ARG001 (base: the cached default base)
    """T of a cached create as the kills below see it: the fastest of three uninterrupted
    ones (test_kill.timed), kept up to date by kill_landed."""
    seconds = timed(host, ["create", "killed"], lambda: absent(nspawnctl, "killed"), runs=3)
    absent(nspawnctl, "killed")
    return {"T": seconds}


def kill_landed(host, nspawnctl, create_time, name, fraction, kill, tries=6):
    """Start a cached create of name and call kill(run, delay) at fraction of T; again while
    the create had finished by then, which proves nothing.  A create that finished before
    the delay took less than it: T becomes the delay, as in test_kill (this disk's writeback
    makes one take from under a second to several, and the first after a bootstrap are the
    slow ones).  Returns the last run and where its kill landed ("killed": in the running
    nspawnctl)."""
    for _ in range(tries):
        absent(nspawnctl, name)
        delay = fraction * create_time["T"]
        run = Run(host, ["create", name])
        where = kill(run, delay)
        print(f"create {name}: kill at {fraction} of T = {delay:.2f} s: {where}")
        if where == "killed":
            return run, where
        leftovers(host, nspawnctl, run)  # (and wait for it)
        if where == "finished":
            create_time["T"] = delay
    return run, where


def sigterm_after(run, delay: float) -> str:
    """Run.kill_after with SIGTERM."""
    time.sleep(max(0.0, run.t0 + delay - time.monotonic()))
    pid = nspawnctl_pid(run.proc.pid)
    if run.proc.poll() is not None or pid is None:
        return "finished" if run.proc.poll() is not None else "before start"
    os.kill(pid, signal.SIGTERM)
    return "killed"


@pytest.mark.parametrize("fraction", [0.05, 0.2, 0.4, 0.6, 0.75, 0.9])
def test_sigkill_during_create_leaves_a_consistent_store(host, nspawnctl, base, create_time,
                                                         fraction):
    """SIGKILL at a fraction of T, so that the kills spread over the whole create however fast
    this host is (as test_kill does), and only a kill that hit the running nspawnctl counts.
    After it: nothing half-made, the container whole or absent, and create works again."""
    run, where = kill_landed(host, nspawnctl, create_time, "killed", fraction,
                             lambda run, delay: run.kill_after(delay))
    assert where == "killed", f"no kill at {fraction} of T hit a running create"
    assert leftovers(host, nspawnctl, run) == []
    if "killed" in listing(nspawnctl):  # killed after the commit point: it must be whole
        check_whole(host, nspawnctl, "killed", base["image"])
        nspawnctl("remove", "killed")
    nspawnctl("create", "killed")  # and it works again
    nspawnctl("remove", "killed")


def test_sigkill_during_bootstrap_leaves_no_partial_base(host, nspawnctl, base):
    # debootstrap asked for: a key whose default base is not cached, so a whole bootstrap (an
    # --include on the cached default base is an incremental build: test_incremental kills
    # those; test_kill kills cold creates with the default bootstrapper)
    p = host.popen(["nspawnctl", "create", "boot-killed", "--bootstrapper", "debootstrap",
                    "--include", "less"], stdout=-1, stderr=-1)
    wait_for(lambda: host.run(["pgrep", "-f", "debootstrap"]).returncode == 0, timeout=30,
             what="debootstrap to start")
    time.sleep(2)
    killed = host.run(["pkill", "-KILL", "-f", "nspawnctl create boot-killed"])
    assert killed.returncode == 0, "the create had ended before its kill"  # it landed
    assert p.wait() != 0
    host.run(["pkill", "-KILL", "-f", "debootstrap"])  # orphaned with its parent gone
    wait_for(lambda: host.run(["pgrep", "-f", "debootstrap"]).returncode != 0,
             what="debootstrap to end")
    assert store_problems(host, nspawnctl) == []
    # every base tree there is whole (a pulled image another module left may have none yet)
    images = [r["key"] for r in json.loads(nspawnctl("images", "--json").stdout)
              if r["unpacked"]]
    assert images and all(host.run(["test", "-f", f"/var/lib/nspawnctl/images/{k}/meta.json"]
                                   ).returncode == 0 for k in images)


def test_sigterm_during_create_cleans_up(host, nspawnctl, base, create_time):
    """SIGTERM half way through a cached create (T/2), sent only while nspawnctl runs: it
    unwinds as from Ctrl-C (one line, exit 130) and leaves nothing half-made."""
    run, where = kill_landed(host, nspawnctl, create_time, "termed", 0.5, sigterm_after)
    assert where == "killed", "no SIGTERM at T/2 reached a running create"
    assert run.wait(60) == 130, run.output()
    assert run.output().strip().splitlines()[-1] == "nspawnctl: interrupted", run.output()
    assert leftovers(host, nspawnctl, run) == []
    if "termed" in listing(nspawnctl):  # the TERM came after the commit point: whole
        check_whole(host, nspawnctl, "termed", base["image"])
        nspawnctl("remove", "termed")


def test_remove_refuses_running_and_never_leaves_the_store(host, nspawnctl, base):
    nspawnctl("create", "victim")
    nspawnctl("start", "victim")
    r = nspawnctl.fails("remove", "victim")
    assert "victim is running" in r.stderr
    # Symlinks planted in the tree point outside the store.
    host.run(["sh", "-c", "mkdir -p /srv/outside && echo keep > /srv/outside/file && "
              f"ln -s /srv/outside {MACHINES}/victim/root/link && "
              f"ln -s / {MACHINES}/victim/root/rootlink"])
    nspawnctl("remove", "--force", "victim")
    assert host.run(["cat", "/srv/outside/file"]).stdout == "keep\n"
    assert host.run(["test", "-e", f"{MACHINES}/victim"]).returncode != 0
    assert host.run(["test", "-e", "/etc/systemd/nspawn/victim.nspawn"]).returncode != 0
    # The container's own path a symlink to outside: only the link goes.
    host.run(["ln", "-s", "/srv/outside", f"{MACHINES}/linked"])
    nspawnctl("remove", "linked")
    assert host.run(["cat", "/srv/outside/file"]).stdout == "keep\n"
    nspawnctl.fails("remove", "../etc")
