"""create --overlay: containers that share the cached base tree and keep only their changes,
mounted by a systemd mount unit, so they come back after a reboot."""

import json
import random

import pytest

from tests.integration.helpers import MACHINES, guest_running, listing, store_problems, wait_for
from tests.integration.test_kill import Run, leftovers, timed

pytestmark = pytest.mark.integration

LAYERS = f"{MACHINES}/.nspawnctl-overlays"
UNITS = "/etc/systemd/system"


@pytest.fixture(scope="module")
def image(nspawnctl):
    """The default base tree, cached (a cold bootstrap if no earlier test made it).  The
    container made for it is removed at once: the overlay containers of this module are then
    the base's only users, so what keeps it from a prune is theirs (earlier modules remove
    their containers, as test_create relies on too)."""
    info = json.loads(nspawnctl("create", "ov-plain", "--json").stdout)
    nspawnctl("remove", "ov-plain")
    return f"/var/lib/nspawnctl/images/{info['image']}/tree"


def is_mount(host, path) -> bool:
    return host.run(["mountpoint", "-q", path]).returncode == 0


def du_kb(host, path) -> int:
    return int(host.run(["du", "-sk", path]).stdout.split()[0])


def test_overlay_create_shares_the_base_and_boots(host, nspawnctl, image):
    info = json.loads(nspawnctl("create", "ov1", "--overlay", "--json").stdout)
    assert info["method"] == "overlay" and info["cached"] is True
    assert is_mount(host, f"{MACHINES}/ov1")
    # Only the clone's identity is its own: everything else is the base's.
    upper = f"{LAYERS}/ov1/upper"
    files = host.run(["find", upper, "-type", "f"]).stdout.split()
    assert sorted(files) == [f"{upper}/etc/hostname", f"{upper}/etc/machine-id"]
    assert du_kb(host, f"{LAYERS}/ov1") < 100
    assert host.run(["cat", f"{MACHINES}/ov1/etc/hostname"]).stdout == "ov1\n"
    assert host.run(["systemctl", "is-active", "var-lib-machines-ov1.mount"]
                    ).stdout.strip() == "active"
    assert listing(nspawnctl)["ov1"]["os"].startswith("Debian")
    status = json.loads(nspawnctl("status", "ov1", "--json").stdout)
    assert status["overlay"] == f"{LAYERS}/ov1"

    nspawnctl("start", "--wait", "ov1")
    assert guest_running(host, "ov1")
    nspawnctl("exec", "ov1", "--", "sh", "-c", "echo mine > /root/note")
    # The write went to the container's layer; the shared base is untouched.
    assert host.run(["cat", f"{upper}/root/note"]).stdout == "mine\n"
    assert host.run(["test", "-e", f"{image}/root/note"]).returncode != 0
    # The user namespace's chown on first boot copied metadata up, not file data
    # (metacopy=on): the layer stays far smaller than the 100 MB base.
    nspawnctl("stop", "ov1")
    assert du_kb(host, f"{LAYERS}/ov1") < 40_000, du_kb(host, f"{LAYERS}/ov1")


def users_of(nspawnctl, key) -> list[str]:
    return sorted(name for name in listing(nspawnctl) if json.loads(
        nspawnctl("status", name, "--json").stdout)["image"] == key)


def test_base_in_use_by_an_overlay_is_not_pruned(host, nspawnctl, image):
    """ov1 alone holds the base: prune keeps it for ov1's sake, or no test could tell."""
    key = image.split("/")[-2]
    assert users_of(nspawnctl, key) == ["ov1"], "another container holds the base"
    row = next(r for r in json.loads(nspawnctl("images", "--json").stdout) if r["key"] == key)
    assert len(row["containers"]) == 1
    assert key not in nspawnctl("images", "prune").stdout
    assert host.run(["test", "-d", image]).returncode == 0
    # and ov1 still sees the base's files through its mount
    assert "ID=debian" in host.run(["cat", f"{MACHINES}/ov1/etc/os-release"]).stdout


def test_clone_of_an_overlay_copies_only_its_changes(host, nspawnctl, image):
    nspawnctl("clone", "ov1", "ov2")
    assert is_mount(host, f"{MACHINES}/ov2")
    assert host.run(["cat", f"{MACHINES}/ov2/root/note"]).stdout == "mine\n"
    assert host.run(["cat", f"{MACHINES}/ov2/etc/hostname"]).stdout == "ov2\n"
    nspawnctl("start", "--wait", "ov2")
    nspawnctl("exec", "ov2", "--", "sh", "-c", "echo theirs > /root/note")
    assert host.run(["cat", f"{MACHINES}/ov1/root/note"]).stdout == "mine\n"
    nspawnctl("remove", "--force", "ov2")


def test_overlay_is_mounted_after_a_reboot_and_enabled_ones_start(host, nspawnctl, image):
    if not host.can_reboot:
        pytest.skip("only the testbed can be rebooted from a test")  # a real host: no
    nspawnctl("create", "ov-boot", "--overlay")
    nspawnctl("enable", "ov-boot")
    host.reboot()
    wait_for(lambda: guest_running(host, "ov-boot"), timeout=60, what="ov-boot to come back")
    # ov1 is not enabled: its tree is mounted at boot all the same (local-fs.target).
    wait_for(lambda: is_mount(host, f"{MACHINES}/ov1"), timeout=30, what="ov1's mount")
    assert host.run(["cat", f"{MACHINES}/ov1/root/note"]).stdout == "mine\n"
    nspawnctl("remove", "--force", "ov-boot")


def test_remove_unmounts_and_leaves_nothing(host, nspawnctl, image):
    nspawnctl("remove", "ov1")
    assert not is_mount(host, f"{MACHINES}/ov1")
    for path in (f"{MACHINES}/ov1", f"{LAYERS}/ov1", f"{UNITS}/var-lib-machines-ov1.mount",
                 f"{UNITS}/local-fs.target.wants/var-lib-machines-ov1.mount"):
        assert host.run(["test", "-e", path]).returncode != 0, path
    assert store_problems(host, nspawnctl) == []
    assert host.run(["test", "-d", image]).returncode == 0


def test_overlay_needs_a_base_source(host, nspawnctl, image):
    host.run(["tar", "-C", image, "-cf", "/root/ov.tar", "./etc"])
    r = nspawnctl.fails("create", "ov-tar", "--overlay", "--from", "tar:/root/ov.tar")
    assert "--overlay needs a cached base tree" in r.error
    assert "ov-tar" not in listing(nspawnctl)


def test_sigkill_during_overlay_create_and_remove(host, nspawnctl, image, figures):
    """An overlay create takes tens of milliseconds: kills land in every step of it (and of
    remove).  After each: a whole container or none, and the command works again.  The delays
    are drawn from [0, T], T an uninterrupted run's duration, and only kills that hit the
    running nspawnctl count (test_kill.Run): 10 of each command."""
    seed = 1127
    rng = random.Random(seed)
    create, remove = ["create", "ov-k", "--overlay"], ["remove", "ov-k"]

    def there() -> bool:
        return "ov-k" in listing(nspawnctl)

    def absent():
        if there():
            nspawnctl(*remove)

    def present():
        if not there():
            nspawnctl(*create)

    seconds = {"create": timed(host, create, absent, runs=3),
               "remove": timed(host, remove, present, runs=3)}
    outcomes = {"create": [0, 0], "remove": [0, 0]}  # [container there after, gone after]
    where: dict[str, dict[str, int]] = {"create": {}, "remove": {}}
    for _ in range(60):
        for command, argv, before in (("create", create, absent), ("remove", remove, present)):
            if sum(outcomes[command]) >= 10:
                continue
            before()
            delay = rng.uniform(0, seconds[command])
            run = Run(host, argv)
            landed = run.kill_after(delay)
            where[command][landed] = where[command].get(landed, 0) + 1
            assert leftovers(host, nspawnctl, run) == [], f"seed {seed}"
            if landed != "killed":
                if landed == "finished":
                    seconds[command] = delay  # it is faster now: draw from what it takes now
                continue
            is_there = there()
            outcomes[command][0 if is_there else 1] += 1
            if is_there:  # whole: its boot-ready tree is visible (mounted again if need be)
                nspawnctl("start", "--wait", "ov-k")
                assert host.run(["cat", f"{MACHINES}/ov-k/etc/hostname"]).stdout == "ov-k\n"
                nspawnctl("stop", "ov-k")
        if all(sum(o) >= 10 for o in outcomes.values()):
            break
    absent()
    assert store_problems(host, nspawnctl) == []
    for command, (is_there, gone) in outcomes.items():
        figures(f"SIGKILL during {command} --overlay (seed {seed})",
                f"{is_there + gone} kills landed: {is_there} left the container, {gone} left "
                f"none, 0 inconsistent (T {seconds[command]:.2f} s; all: {where[command]})")
    assert all(sum(o) >= 10 for o in outcomes.values()), (outcomes, where)
