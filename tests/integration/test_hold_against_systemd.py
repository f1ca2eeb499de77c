"""While nspawnctl replaces a container's tree, systemd starts it for nobody (issue 26, item 7).

nspawnctl's lock keeps nspawnctl out, not systemd: `machinectl start`, `systemctl start` or a
container that requires this one could start it between the stop and the swap, and the swap
would leave it running from a tree that is then deleted.  store/hold.py holds it: every
container's drop-in asserts its hold file is absent.  Here, on the real systemd host:

- a rollback of a running container while a loop keeps asking systemd to start it: the starts
  in its window fail their assertion (counted: at least one must have come in the window, or
  the test proves nothing), and the container runs from the restored tree, not a deleted one;
- the containers that require it, stopped with it, run again afterwards;
- a hold whose command was killed blocks `systemctl start` only until nspawnctl's next start
  (or recover) drops it.
"""

import json

import pytest

from tests.integration.helpers import store_problems, wait_for
from tests.integration.test_oci_containers import busybox_layer, oci_archive

pytestmark = pytest.mark.integration

WORK = "/root/nspawnctl-hold"
HOLDS = "/run/nspawnctl/holds"
PAD_MB = 300  # a tree large enough that the rollback's copy takes a while: the window


@pytest.fixture(scope="module")
def archive(host, tmp_path_factory):
    work = tmp_path_factory.mktemp("hold")
    built = oci_archive(work, "busybox", [busybox_layer()])
    host.run(["mkdir", "-p", WORK])
    host.path(f"{WORK}/busybox.tar").write_bytes(built.read_bytes())
    yield f"oci-archive:{WORK}/busybox.tar"
    host.run(["rm", "-rf", WORK])


def leader(nspawnctl, name) -> int:
    return json.loads(nspawnctl("status", name, "--json").stdout)["leader"]


def runs_from_its_tree(host, nspawnctl, name) -> bool:
    """Whether the running container's root is the tree at /var/lib/machines/NAME (not one
    that was swapped out and deleted under it)."""
    pid = leader(nspawnctl, name)
    inside = host.run(["stat", "-L", "-c", "%d:%i", f"/proc/{pid}/root"]).stdout.strip()
    tree = host.run(["stat", "-c", "%d:%i", f"/var/lib/machines/{name}"]).stdout.strip()
    return bool(inside) and inside == tree


START_LOOP = """
unit=systemd-nspawn@$1.service
while [ ! -e "$2/stop" ]; do
  if timeout 10 systemctl start "$unit" 2>>"$2/errors"; then echo ok >>"$2/log"
  else echo refused >>"$2/log"; fi
  sleep 0.02
done
"""


def test_rollback_is_not_raced_by_a_start_from_systemd(host, nspawnctl, made, archive):
    name = made("hold-race", "--from", archive)
    nspawnctl("start", name)
    host.run(["dd", "if=/dev/urandom", f"of=/var/lib/machines/{name}/pad", "bs=1M",
              f"count={PAD_MB}", "status=none"])
    host.run(["sh", "-c", f"echo before > /var/lib/machines/{name}/marker"])
    nspawnctl("snapshot", name, "before", "--stop")
    host.run(["sh", "-c", f"echo after > /var/lib/machines/{name}/marker"])
    loop_dir = f"{WORK}/loop-{name}"
    host.run(["mkdir", "-p", loop_dir])
    looping = host.popen(["sh", "-c", START_LOOP, "sh", name, loop_dir])
    try:
        result = nspawnctl("rollback", name, "before", check=False)
    finally:
        host.run(["touch", f"{loop_dir}/stop"])
        looping.wait(30)
    outcomes = host.run(["cat", f"{loop_dir}/log"]).stdout.split()
    errors = host.run(["cat", f"{loop_dir}/errors"]).stdout
    assert result.returncode == 0, str(result)
    assert host.run(["cat", f"/var/lib/machines/{name}/marker"]).stdout == "before\n"
    assert runs_from_its_tree(host, nspawnctl, name), "it runs from the tree swapped out"
    # the loop asked while the container was held (else this proved nothing): refused
    assert "refused" in outcomes, (outcomes, errors)
    assert "ssertion" in errors, errors
    assert not host.path(f"{HOLDS}/{name}").exists()
    host.run(["rm", f"/var/lib/machines/{name}/pad"])
    nspawnctl("snapshot", "rm", name, "before")
    assert store_problems(host, nspawnctl) == []


def test_what_requires_it_runs_again_after_a_rollback(host, nspawnctl, made, archive):
    db = made("hold-db", "--from", archive)
    web = made("hold-web", "--from", archive, "--requires", db)
    nspawnctl("snapshot", db, "s1")
    nspawnctl("start", web)  # starts db first
    for each in (db, web):
        assert host.run(["systemctl", "is-active", f"systemd-nspawn@{each}.service"]) \
            .stdout.strip() == "active"
    nspawnctl("rollback", db, "s1")
    for each in (db, web):  # started again (web's start is not waited for)
        wait_for(lambda: host.run(["systemctl", "is-active", f"systemd-nspawn@{each}.service"])
                 .stdout.strip() == "active", timeout=60, what=f"{each} to run again")
    nspawnctl("stop", web, db)
    nspawnctl("snapshot", "rm", db, "s1")


def test_a_killed_commands_hold_blocks_systemd_until_nspawnctl_drops_it(host, nspawnctl, made,
                                                                        archive):
    name = made("hold-stale", "--from", archive)
    boot = host.run(["cat", "/proc/sys/kernel/random/boot_id"]).stdout.strip()
    host.run(["mkdir", "-p", HOLDS])
    # the token of a command that is gone (PID 2**22 + 1 does not exist) in this boot
    host.run(["sh", "-c", f"echo {2**22 + 1}-{boot.replace('-', '')[:12]} > {HOLDS}/{name}"])
    started = host.run(["systemctl", "start", f"systemd-nspawn@{name}.service"])
    assert started.returncode != 0 and "ssertion" in started.stderr, str(started)
    nspawnctl("start", name)  # drops the dead command's hold
    assert not host.path(f"{HOLDS}/{name}").exists()
    nspawnctl("stop", name)
    # recover drops one too
    host.run(["sh", "-c", f"echo {2**22 + 1}-{boot.replace('-', '')[:12]} > {HOLDS}/{name}"])
    r = nspawnctl("recover")
    assert f"removed the hold of a killed command on {name}" in r.stdout + r.stderr
    assert not host.path(f"{HOLDS}/{name}").exists()
