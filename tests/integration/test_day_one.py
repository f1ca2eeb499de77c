"""A podman user's day-one mistakes, caught where they are made (issue 34), with real containers
in the testbed: remove --dry-run names a container's snapshots and their sizes and changes
nothing; restart and kill take two names; logs --since/--until; export keeps an existing file
and names its format by the file's name.  Containers are scratch busybox ones: fast to make."""

import json
import time

import pytest

from tests.integration.helpers import MACHINES, wait_for

pytestmark = pytest.mark.integration

SNAPS = f"{MACHINES}/.nspawnctl-snapshots"
OUT = "/root/day-one"
USAGE, CONFLICT = 2, 4  # nspawnctl/errors.py


def busybox(made, name, script="exec /bin/busybox sleep 100000"):
    return made(name, "--from", "scratch", "--add", "/bin/busybox",
                "--cmd", f"/bin/busybox sh -c '{script}'")


def active(host, name) -> str:
    return host.run(["systemctl", "is-active", f"systemd-nspawn@{name}.service"]).stdout.strip()


def leader(host, name) -> str:
    return host.run(["machinectl", "show", "-p", "Leader", "--value", name]).stdout.strip()


def files(host, *paths) -> str:
    return host.run(["find", *paths, "-printf", "%p %s\n"]).stdout


def mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def test_remove_dry_run_names_the_snapshots_and_changes_nothing(host, nspawnctl, made):
    name = busybox(made, "d1-snap")
    nspawnctl("snapshot", name, "before")
    size = json.loads(nspawnctl("snapshots", name, "--json").stdout)[0]["size"]
    assert size > 0
    before = files(host, f"{MACHINES}/{name}", f"{SNAPS}/{name}")

    r = nspawnctl("remove", "--dry-run", name)
    assert r.stdout == f"would remove {name} and its 1 snapshot ({mb(size)}): before " \
                       f"({mb(size)})\n", str(r)
    assert files(host, f"{MACHINES}/{name}", f"{SNAPS}/{name}") == before

    # refused as remove would refuse it; with --force it says it would stop it, and does not
    nspawnctl("start", name)
    r = nspawnctl.fails("remove", "--dry-run", name)
    assert r.error == f"nspawnctl: {name} is running", str(r)
    r = nspawnctl("remove", "--dry-run", "--force", name)
    assert r.stdout.startswith(f"would stop {name} and remove it and its 1 snapshot"), str(r)
    assert active(host, name) == "active"

    r = nspawnctl("remove", "--force", name)
    assert r.stdout == f"removed {name} and its 1 snapshot ({mb(size)}): before " \
                       f"({mb(size)})\n", str(r)
    assert host.run(["test", "-e", f"{MACHINES}/{name}"]).returncode != 0
    assert host.run(["test", "-e", f"{SNAPS}/{name}"]).returncode != 0


def test_restart_and_kill_take_two_names(host, nspawnctl, made):
    a, b = busybox(made, "d1-a"), busybox(made, "d1-b")
    nspawnctl("start", a, b)
    leaders = {n: leader(host, n) for n in (a, b)}
    r = nspawnctl("restart", a, b)
    assert r.stdout == f"{a}: running\n{b}: running\n", str(r)
    assert all(leader(host, n) not in ("", leaders[n]) for n in (a, b)), leaders  # new ones

    # a typo among the names: nothing is sent to any
    r = nspawnctl.fails("kill", a, b, "d1-nosuch", "--signal", "KILL")
    assert "no container named 'd1-nosuch'" in r.error, str(r)
    assert active(host, a) == active(host, b) == "active"

    nspawnctl("kill", a, b, "--signal", "KILL")
    assert wait_for(lambda: active(host, a) != "active" and active(host, b) != "active",
                    timeout=30, what="both killed")


def test_logs_since_and_until(host, nspawnctl, made):
    name = busybox(made, "d1-log", "echo day-one-mark; exec /bin/busybox sleep 100000")

    def marks(*args) -> int:
        return nspawnctl("logs", name, *args).stdout.count("day-one-mark")

    nspawnctl("start", name)
    wait_for(lambda: marks() == 1, timeout=30, what="the first mark in the journal")
    time.sleep(1.1)  # journalctl's times are to the second
    between = host.run(["date", "+%Y-%m-%d %H:%M:%S"]).stdout.strip()
    time.sleep(1.1)
    nspawnctl("restart", name)
    wait_for(lambda: marks() == 2, timeout=30, what="the second mark in the journal")
    assert marks("--since", between) == 1
    assert marks("--until", between) == 1
    assert marks("--since", "10 min ago") == 2
    assert marks("--since", "tomorrow") == 0
    for bad in ("10m", "garbage", "2026-13-01"):
        r = nspawnctl.fails("logs", name, "--since", bad)
        assert r.returncode == USAGE and r.error.startswith("nspawnctl: invalid --since time")


def test_export_keeps_an_existing_file_and_names_its_format(host, nspawnctl, made):
    name = busybox(made, "d1-exp")
    host.run(["rm", "-rf", OUT])
    host.run(["mkdir", "-p", OUT])
    try:
        mine = host.path(f"{OUT}/web.oci.tar")
        mine.write_bytes(b"the user's own OCI archive")
        r = nspawnctl.fails("export", name, f"{OUT}/web.oci.tar")
        assert r.returncode == CONFLICT and "already exists" in r.error, str(r)
        r = nspawnctl.fails("export", name, f"{OUT}/web.oci.tar", "--format", "tar",
                            "--force")
        assert r.returncode == USAGE and "names an oci-archive, not a tar" in r.error, str(r)
        assert mine.read_bytes() == b"the user's own OCI archive"
        assert sorted(p.name for p in host.path(OUT).iterdir()) == ["web.oci.tar"]

        info = json.loads(nspawnctl("export", name, f"{OUT}/web.oci.tar", "--force",
                                    "--json").stdout)
        assert info["format"] == "oci-archive", info
        listing = host.run(["tar", "-tf", f"{OUT}/web.oci.tar"]).stdout.split()
        assert "oci-layout" in listing and "index.json" in listing, listing
        info = json.loads(nspawnctl("export", name, f"{OUT}/web.docker.tar", "--json").stdout)
        assert info["format"] == "docker-archive", info
        assert "manifest.json" in host.run(["tar", "-tf", f"{OUT}/web.docker.tar"]).stdout
    finally:
        host.run(["rm", "-rf", OUT])
