"""snapshot, snapshots, rollback, snapshot rm in the testbed, as a user types them: a snapshot,
a destructive change (no /usr/bin any more), a rollback, and the container boots again; its
settings roll back with its tree; overlay containers keep only their layer and hold their base.
"""

import json
import subprocess
import time

import pytest

from tests.integration.helpers import MACHINES, guest_running, listing, store_problems, wait_for

pytestmark = pytest.mark.integration

SNAPS = f"{MACHINES}/.nspawnctl-snapshots"


def snaps(nspawnctl, name) -> dict:
    return {r["tag"]: r for r in json.loads(nspawnctl("snapshots", name, "--json").stdout)}


def limits(nspawnctl, name) -> dict:
    return json.loads(nspawnctl("status", name, "--json").stdout)["limits"]


def test_snapshot_destroy_rollback_boots_again(host, nspawnctl, made, figures):
    name = made("snap1", "--memory", "100M")
    nspawnctl("start", name)
    nspawnctl("exec", name, "--", "sh", "-c", "echo kept > /root/note")
    # The testbed's cgroups are hybrid: systemd cannot freeze the unit there, and says so.
    t0 = time.monotonic()
    frozen = nspawnctl("snapshot", name, "good", "--json", check=False)
    took = time.monotonic() - t0
    if frozen.returncode == 0:  # a unified-cgroup host: frozen for the copy
        info = json.loads(frozen.stdout)
        # the copy of a whole tree takes time, within the command's own
        assert 0 < info["frozen_seconds"] < took, (info, took)
        assert f"{name} was frozen for {info['frozen_seconds']:.2f} s" in frozen.stderr
        figures("snapshot of a running container: frozen for", f"{info['frozen_seconds']} s")
    else:
        r = nspawnctl.fails("snapshot", name, "good")
        assert "cannot freeze running container snap1" in r.error, r.error
        figures("snapshot of a running container: freezing refused", r.error[:120])
        assert "good" not in snaps(nspawnctl, name)
        r = nspawnctl("snapshot", "--stop", name, "good", "--json")
        info = json.loads(r.stdout)
        assert info["stopped_seconds"] > 0 and "was stopped for" in r.stderr
        figures("snapshot --stop of a running container: stopped for",
                f"{info['stopped_seconds']} s ({info['method']})")
        assert guest_running(host, name)  # started again after the copy
    assert info["method"] in ("copy", "reflink")
    row = snaps(nspawnctl, name)["good"]
    assert row["size"] > 50_000_000 and row["created"].endswith("Z")  # a whole Debian tree
    table = nspawnctl("snapshots", name).stdout
    assert "good" in table and "MB" in table

    # the destruction, and a settings change after the snapshot: /usr/bin but systemctl,
    # which the guest's halt needs (without it the stop waits out its 60 s, then kills)
    nspawnctl("exec", name, "--", "find", "/usr/bin", "-mindepth", "1", "!", "-name",
              "systemctl", "-delete", check=False)
    assert host.run(["test", "-e", f"{MACHINES}/{name}/usr/bin/true"]).returncode != 0
    nspawnctl("set", name, "--memory", "300M")
    assert limits(nspawnctl, name)["memory"] == 300 << 20

    r = nspawnctl("rollback", name, "good")
    assert r.stdout.strip().startswith(f"{name} rolled back to good"), r.stdout
    assert "stopping" in r.stderr and "starting" in r.stderr
    assert guest_running(host, name)
    assert nspawnctl("exec", name, "--", "cat", "/root/note").stdout == "kept\n"
    assert nspawnctl("exec", name, "--", "/usr/bin/true").returncode == 0
    assert limits(nspawnctl, name)["memory"] == 100 << 20
    assert host.run(["systemctl", "show", "-P", "MemoryMax",
                     f"systemd-nspawn@{name}.service"]).stdout.strip() == str(100 << 20)
    assert "good" in snaps(nspawnctl, name)  # the snapshot stays
    assert store_problems(host, nspawnctl) == []


def test_bad_input(host, nspawnctl, made):
    name = made("snap2")
    nspawnctl("snapshot", name, "t1")
    assert "t1" in snaps(nspawnctl, name)
    assert "already has a snapshot 't1'" in nspawnctl.fails("snapshot", name, "t1").error
    assert "has no snapshot 'nope'" in nspawnctl.fails("rollback", name, "nope").error
    assert "has no snapshot 'nope'" in nspawnctl.fails("snapshot", "rm", name, "nope").error
    for tag in (".x", "-x", "a/b", "..", "x" * 65):
        r = nspawnctl.fails("snapshot", "create", name, "--", tag)
        assert "invalid snapshot tag" in r.error, r.error
    assert "no container named 'ghost'" in nspawnctl.fails("snapshot", "ghost").error
    # rollback while another command (an upgrade) holds the container's lock
    r = host.run(["flock", f"/var/lib/nspawnctl/locks/{name}.lock",
                  "nspawnctl", "rollback", name, "t1"])
    assert r.returncode != 0 and "is busy" in r.stderr, str(r)
    nspawnctl("snapshot", "rm", name, "t1")
    assert snaps(nspawnctl, name) == {}
    # a default tag is a UTC time, and remove says which snapshots went with the container
    nspawnctl("snapshot", name)
    nspawnctl("snapshot", name)
    tags = snaps(nspawnctl, name)
    assert all(t.endswith("Z") or "Z-" in t for t in tags)
    r = nspawnctl("remove", name)
    assert r.stdout.startswith(f"removed {name} and its 2 snapshots ("), r.stdout
    assert all(f"{tag} (" in r.stdout for tag in tags), r.stdout
    assert host.run(["test", "-e", f"{SNAPS}/{name}"]).returncode != 0


def test_overlay_snapshot_keeps_only_the_layer_and_holds_its_base(host, nspawnctl, made):
    name = made("snap-ov", "--overlay")
    image = json.loads(nspawnctl("status", name, "--json").stdout)["image"]
    host.run(["sh", "-c", f"echo one > {MACHINES}/{name}/root/note"])
    info = json.loads(nspawnctl("snapshot", name, "one", "--json").stdout)
    assert info["method"].startswith("overlay+") and info["size"] < 1_000_000, info
    assert host.run(["test", "-d", f"{SNAPS}/{name}/one/upper"]).returncode == 0
    host.run(["sh", "-c", f"rm -rf {MACHINES}/{name}/usr/bin; echo two > "
              f"{MACHINES}/{name}/root/note"])
    # the base is needed by the snapshot as well as by the container
    row = next(r for r in json.loads(nspawnctl("images", "--json").stdout) if r["key"] == image)
    assert len(row["containers"]) >= 2
    nspawnctl("rollback", name, "one")
    assert host.run(["cat", f"{MACHINES}/{name}/root/note"]).stdout == "one\n"
    assert host.run(["mountpoint", "-q", f"{MACHINES}/{name}"]).returncode == 0
    nspawnctl("start", name)
    assert nspawnctl("exec", name, "--", "/usr/bin/true").returncode == 0
    nspawnctl("stop", name)
    assert name in listing(nspawnctl)


SLOW_STOP = """[Unit]
Description=takes its time to stop, and writes the container's tree meanwhile
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/true
ExecStop=/bin/sh -c 'sleep 4; echo written-while-stopping > /root/late'
[Install]
WantedBy=multi-user.target
"""


def test_a_stopping_container_is_copied_once_it_has_stopped(host, nspawnctl, made):
    """A stopping container (its unit deactivating) still runs and writes its tree: the
    snapshot waits for the stop to end, so it holds what was written on the way down."""
    name = made("snap-stop")
    units = f"{MACHINES}/{name}/etc/systemd/system"
    host.path(f"{units}/slowstop.service").write_text(SLOW_STOP)  # as an image would bring it
    host.run(["mkdir", "-p", f"{units}/multi-user.target.wants"])
    host.run(["ln", "-s", "../slowstop.service", f"{units}/multi-user.target.wants/"])
    nspawnctl("start", name)
    assert nspawnctl("exec", name, "--", "systemctl", "is-active", "slowstop.service").stdout \
        == "active\n"
    unit = f"systemd-nspawn@{name}.service"
    stopping = host.popen(["nspawnctl", "stop", name], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: host.run(["systemctl", "show", "-P", "ActiveState", unit]).stdout
                 .strip() == "deactivating", timeout=30, what="the container to be stopping")
        r = nspawnctl("snapshot", name, "down", "--json")
    finally:
        stopping.wait(timeout=120)
    assert host.run(["cat", f"{SNAPS}/{name}/down/tree/root/late"]).stdout == \
        "written-while-stopping\n"
    assert "is stopping: waiting for it" in r.stderr, r.stderr
    assert json.loads(r.stdout)["running"] is False
