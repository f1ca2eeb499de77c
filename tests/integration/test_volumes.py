"""Named volumes in the testbed (issue 32): one volume mounted by two user-namespaced
containers at once, each in a UID range of its own, and each sees the owners the other gave
(the bind is idmapped: uid N inside is uid N in the volume), and a host directory bound with
--bind SRC:DST:idmap shows its owners unchanged both ways; exported and imported, a
volume keeps its owners; the volume outlives a container
(`remove` says it keeps it), `volume remove` is refused while a container mounts it, and bad
input is one line with nothing changed.  `snapshot --with-volumes` keeps a container's volume
with its owners, `rollback --with-volumes` puts it back (and only then), both refused while
another running container mounts it.

The containers are static busybox trees from scratch running `sleep`: cheap, and they run
with the same -U (PrivateUsers=pick) as any other.
"""

import json

import pytest

from tests.integration.helpers import MACHINES, store_problems, wait_for

pytestmark = pytest.mark.integration

VOLUME = "vt-data"
HOST_DIR = "/root/vt-host"  # a host directory B binds with :idmap
DATA = f"/var/lib/nspawnctl/volumes/{VOLUME}/data"
SLEEPER = ("--from", "scratch", "--add", "/bin/busybox", "--cmd", "/bin/busybox sleep 1d")


def inside(nspawnctl, name, script):
    return nspawnctl("exec", name, "--", "/bin/busybox", "sh", "-c", script).stdout


def owners_on_host(host, path):
    return host.run(["stat", "-c", "%u:%g", path]).stdout.strip()


def uid_shift(nspawnctl, name) -> int:
    """The host uid the container's root is: the second field of its uid_map."""
    return int(inside(nspawnctl, name, "cat /proc/self/uid_map").split()[1])


def test_a_volume_shared_by_two_containers_keeps_its_owners(host, nspawnctl, made):
    from nspawnctl.cli import jsonview
    created = json.loads(nspawnctl("volume", "create", VOLUME, "--json").stdout)
    assert jsonview.check(jsonview.schema("volume"), created) == [] and created["path"] == DATA
    made("vt-a", *SLEEPER, "--volume", f"{VOLUME}:/vol")
    host.run(["rm", "-rf", HOST_DIR])
    host.run(["mkdir", "-p", HOST_DIR])
    host.path(f"{HOST_DIR}/h").write_text("from the host\n")
    host.run(["chown", "1000:1000", f"{HOST_DIR}/h"])
    made("vt-b", *SLEEPER, "--volume", f"{VOLUME}:/shared", "--bind", f"{HOST_DIR}:/host:idmap")
    nspawnctl("start", "vt-a", "vt-b")
    # two user namespaces, two UID ranges: without an idmapped bind each would see the
    # other's files as nobody
    assert uid_shift(nspawnctl, "vt-a") != uid_shift(nspawnctl, "vt-b") != 0

    inside(nspawnctl, "vt-a", "echo from-a > /vol/a && chown 1000:1001 /vol/a && "
                              "mkdir /vol/d && echo root > /vol/d/r")
    assert inside(nspawnctl, "vt-b", "cat /shared/a; stat -c %u:%g /shared/a /shared/d/r") \
        == "from-a\n1000:1001\n0:0\n"
    # on the host, the owners as the containers see them (canonical), not either one's range
    assert owners_on_host(host, f"{DATA}/a") == "1000:1001"
    assert owners_on_host(host, f"{DATA}/d/r") == "0:0"
    # and back: what B's uid 2000 writes is uid 2000 for A
    inside(nspawnctl, "vt-b", "echo from-b > /shared/b && chown 2000:2000 /shared/b")
    assert inside(nspawnctl, "vt-a", "stat -c %u:%g /vol/b") == "2000:2000\n"
    assert owners_on_host(host, f"{DATA}/b") == "2000:2000"

    # a container without a user namespace mounts it as a plain bind (nspawn refuses idmap
    # there) and sees the same owners; nspawnctl exec refuses such a container, so its
    # command writes what it sees into its own tree
    made("vt-c", "--from", "scratch", "--add", "/bin/busybox", "--no-private-users",
         "--volume", f"{VOLUME}:/v:ro", "--cmd",
         "/bin/busybox sh -c 'stat -c %u:%g /v/a /v/b > /seen; exec /bin/busybox sleep 1d'")
    nspawnctl("start", "vt-c")
    seen = host.path(f"{MACHINES}/vt-c/seen")
    wait_for(lambda: seen.exists() and seen.read_text(), timeout=20, what="vt-c's stat")
    assert seen.read_text() == "1000:1001\n2000:2000\n"
    assert "idmap" not in host.path("/etc/systemd/nspawn/vt-c.nspawn").read_text()
    nspawnctl("remove", "--force", "vt-c")

    # --bind SRC:DST:idmap: host and container agree on owners, both ways
    assert inside(nspawnctl, "vt-b", "cat /host/h; stat -c %u:%g /host/h") \
        == "from the host\n1000:1000\n"
    inside(nspawnctl, "vt-b", "echo from-b > /host/c && chown 3000:3001 /host/c")
    assert owners_on_host(host, f"{HOST_DIR}/c") == "3000:3001"

    # exported and imported as another volume: the same files, the same owners
    host.run(["rm", "-f", "/root/vt-data.tar"])
    nspawnctl("volume", "export", VOLUME, "/root/vt-data.tar")
    nspawnctl("volume", "import", "vt-copy", "/root/vt-data.tar")
    copy = "/var/lib/nspawnctl/volumes/vt-copy/data"
    assert host.path(f"{copy}/a").read_text() == "from-a\n"
    assert [owners_on_host(host, f"{copy}/{f}") for f in ("a", "b", "d/r")] == \
        ["1000:1001", "2000:2000", "0:0"]
    nspawnctl("volume", "remove", "vt-copy")
    host.run(["rm", "-f", "/root/vt-data.tar"])

    listed = json.loads(nspawnctl("volume", "list", "--json").stdout)
    (row,) = [v for v in listed if v["name"] == VOLUME]
    assert row["containers"] == ["vt-a", "vt-b"] and row["size"] > 0

    # the volume outlives A, and remove says it keeps it
    gone = nspawnctl("remove", "--force", "vt-a")
    assert f"kept volume {VOLUME} (nspawnctl volume remove {VOLUME} removes it)" in gone.stdout
    assert host.path(f"{DATA}/a").read_text() == "from-a\n"

    # refused while B mounts it: one line naming B, nothing removed
    refused = nspawnctl.fails("volume", "remove", VOLUME)
    assert f"volume {VOLUME} is used by vt-b: not removed" in refused.error
    assert inside(nspawnctl, "vt-b", "cat /shared/a /shared/b") == "from-a\nfrom-b\n"

    nspawnctl("remove", "--force", "vt-b")
    assert "removed volume" in nspawnctl("volume", "remove", VOLUME).stdout
    assert not host.path(f"/var/lib/nspawnctl/volumes/{VOLUME}").exists()
    assert store_problems(host, nspawnctl) == []
    host.run(["rm", "-rf", HOST_DIR])


@pytest.mark.parametrize("args, says", [
    (("volume", "create", "a/b"), "invalid volume name 'a/b'"),
    (("volume", "create", ".."), "invalid volume name '..'"),
    (("create", "vt-bad", *SLEEPER, "--volume", "vt-nope:/vol"), "no volume named 'vt-nope'"),
    (("create", "vt-bad", *SLEEPER, "--volume", "a/b:/vol"), "invalid volume name 'a/b'"),
])
def test_bad_volume_input_is_one_line_and_changes_nothing(host, nspawnctl, args, says):
    before = nspawnctl("volume", "list", "--json").stdout
    machines = host.run(["ls", "-A", "/var/lib/machines"]).stdout
    r = nspawnctl.fails(*args)
    assert says in r.error, r.error
    assert nspawnctl("volume", "list", "--json").stdout == before
    assert host.run(["ls", "-A", "/var/lib/machines"]).stdout == machines
    assert not host.path("/etc/systemd/nspawn/vt-bad.nspawn").exists()


STACK = """\
name: vt-stack
volumes:
  vt-stackvol:
containers:
  vt-s:
    from: scratch
    add: [/bin/busybox]
    cmd: /bin/busybox sleep 1d
    network: none
    volume: ['vt-stackvol:/v']
"""


def test_a_stack_makes_its_volume_and_prune_keeps_it(host, nspawnctl):
    r = nspawnctl("apply", "-f", "-", input=STACK)
    assert "created volume vt-stackvol" in r.stdout, r
    inside(nspawnctl, "vt-s", "echo kept > /v/f && chown 1000:1000 /v/f")
    assert owners_on_host(host, "/var/lib/nspawnctl/volumes/vt-stackvol/data/f") == "1000:1000"
    # the stack emptied: its container goes, its volume stays
    nspawnctl("apply", "-f", "-", "--prune", input="name: vt-stack\n")
    assert host.path("/var/lib/nspawnctl/volumes/vt-stackvol/data/f").read_text() == "kept\n"
    nspawnctl("volume", "remove", "vt-stackvol")
    assert store_problems(host, nspawnctl) == []


SNAP_VOLUME = "vt-snapvol"
SNAP_DATA = f"/var/lib/nspawnctl/volumes/{SNAP_VOLUME}/data"


def test_snapshot_and_rollback_with_volumes(host, nspawnctl, made):
    """A container's volume in its snapshot (--with-volumes) with its owners, rolled back only
    when asked, and refused while another running container mounts it."""
    nspawnctl("volume", "create", SNAP_VOLUME)
    made("vt-s1", *SLEEPER, "--volume", f"{SNAP_VOLUME}:/vol")
    nspawnctl("start", "vt-s1")
    inside(nspawnctl, "vt-s1", "echo before > /vol/f && chown 1000:1001 /vol/f")
    # the testbed's hybrid cgroups cannot freeze: --stop (test_snapshots.py covers freezing)
    info = json.loads(nspawnctl("snapshot", "--stop", "vt-s1", "t", "--with-volumes",
                                "--json").stdout)
    assert info["volumes"] == [SNAP_VOLUME]
    saved = f"{MACHINES}/.nspawnctl-snapshots/vt-s1/t/volumes/{SNAP_VOLUME}/f"
    assert owners_on_host(host, saved) == "1000:1001"
    (row,) = json.loads(nspawnctl("snapshots", "vt-s1", "--json").stdout)
    assert row["volumes"] == [SNAP_VOLUME] and row["size"] == info["size"]

    inside(nspawnctl, "vt-s1", "echo after > /vol/f && rm /vol/f && echo new > /vol/g")
    # without --with-volumes the volume is left as it is, and rollback says so
    r = nspawnctl("rollback", "vt-s1", "t")
    assert (f"snapshot t also holds volume {SNAP_VOLUME}: left as it is (rollback "
            "--with-volumes puts it back)") in r.stderr, r.stderr
    assert inside(nspawnctl, "vt-s1", "ls /vol") == "g\n"

    # another running container mounts it: refused, one line, nothing changed (vt-s1 runs on)
    made("vt-s2", *SLEEPER, "--volume", f"{SNAP_VOLUME}:/v:ro")
    nspawnctl("start", "vt-s2")
    for args, what in ((("rollback", "vt-s1", "t"), "not rolled back"),
                       (("snapshot", "--stop", "vt-s1", "t2"), "no snapshot taken")):
        refused = nspawnctl.fails(*args, "--with-volumes")
        assert refused.error.endswith(f"volume {SNAP_VOLUME} is mounted by running container "
                                      f"vt-s2 too: {what}"), refused.error
        assert inside(nspawnctl, "vt-s1", "ls /vol") == "g\n"  # still running, unchanged
    assert [r["tag"] for r in json.loads(nspawnctl("snapshots", "vt-s1", "--json").stdout)] \
        == ["t"]

    nspawnctl("stop", "vt-s2")
    r = nspawnctl("rollback", "vt-s1", "t", "--with-volumes")
    assert r.stdout.startswith("vt-s1 rolled back to t (") and \
        f"volumes {SNAP_VOLUME})" in r.stdout, r.stdout
    assert inside(nspawnctl, "vt-s1", "ls /vol; cat /vol/f; stat -c %u:%g /vol/f") \
        == "f\nbefore\n1000:1001\n"
    assert owners_on_host(host, f"{SNAP_DATA}/f") == "1000:1001"
    nspawnctl("start", "vt-s2")  # held only while the volume was put back
    assert inside(nspawnctl, "vt-s2", "cat /v/f") == "before\n"

    nspawnctl("snapshot", "rm", "vt-s1", "t")  # its volume copy goes with it
    assert not host.path(f"{MACHINES}/.nspawnctl-snapshots/vt-s1").exists()
    nspawnctl("remove", "--force", "vt-s1", "vt-s2")
    nspawnctl("volume", "remove", SNAP_VOLUME)
    assert store_problems(host, nspawnctl) == []
