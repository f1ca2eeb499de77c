"""auto-update against a real registry (registries.py: Debian's docker-registry over TLS in the
testbed's outside world): a container made from REPO:TAG with --auto-update registry and a
published port runs v1; a new digest pushed under the same tag is what `auto-update` puts in
(its page says so) at the same address and port; a broken image (its program dies at once) is
rolled back to v2, running, and the output says so; --dry-run's exit codes; bad input refused
with one line and nothing changed; SIGKILL of auto-update at random moments leaves it on v2 or
v3, running, and the rerun converges; a crash of the testbed once the new tree is swapped in
and starting is rolled back at the boot (nspawnctl-recover.service), and the rerun converges."""

import json
import random
import subprocess
import time

import pytest

from tests import outside, testbed
from tests.integration import registries as R
from tests.integration.helpers import listing, wait_for
from tests.integration.test_crash import after_boot
from tests.integration.test_kill import SEED, Run
from tests.unit import imagebuild as ib

pytestmark = pytest.mark.integration

TLS = R.registry("tls")
REF = f"{TLS}/test/auto:1"
NAME = "au-web"
PAGES = {"v1": b"v1\n", "v2": b"v2\n", "v3": b"v3\n"}
# an image whose program starts and dies 2 s later (the container's command, kept from v1, is
# /bin/busybox httpd ...: here a script run by the real busybox): its start succeeds, and only
# the health check (a single command's unit still active 3 s after its start) finds it sick
BROKEN = ib.layer(ib.dir("bin"), ib.file("bin/busybox.real", R.BUSYBOX.read_bytes(), 0o755),
                  ib.file("bin/busybox", b"#!/bin/busybox.real sh\n/bin/busybox.real sleep 2\n"
                                         b"exit 1\n", 0o755))


@pytest.fixture(scope="module")
def world(host):
    if not outside.isolated(host):
        pytest.skip("the outside world is made only in the testbed or the VM tier's VM")
    with outside.outside_world(host) as w:
        yield w


@pytest.fixture(scope="module")
def regs(host, world, tmp_path_factory):  # noqa: ARG001 (world: its namespaces)
    work = tmp_path_factory.mktemp("auto-update")
    r = R.Registries(host, work).up()
    r.work = work
    yield r
    r.down()


@pytest.fixture(scope="module", autouse=True)
def store_as_found(nspawnctl):
    """The image store as this module found it: what it pulled goes at its end (after its
    containers), so the registry tests that follow count their own blob fetches."""
    def keys():
        return {row["key"] for row in json.loads(nspawnctl("images", "--json").stdout)}

    before = keys()
    yield
    nspawnctl("remove", "--force", NAME, check=False)
    nspawnctl("images", "rm", REF, check=False)  # its record, and the blobs nothing needs
    for key in sorted(keys() - before):  # the trees of the images the tag named before
        nspawnctl("images", "rm", key, check=False)


def push(regs, which: str) -> str:
    layers = [BROKEN if which == "broken" else R.SCRATCH_BASE,
              R.www(PAGES.get(which, b"broken\n"))]
    return regs.push(R.layout(regs.work, which, layers), "1", "tls", "test/auto", "1")


def status(nspawnctl, name=NAME) -> dict:
    return json.loads(nspawnctl("status", name, "--json").stdout)


def page(host, nspawnctl, name=NAME) -> str:
    addr = wait_for(lambda: (listing(nspawnctl)[name]["address"] or [None])[0],
                    what=f"an address for {name}")
    return wait_for(lambda: (lambda r: r[1] if r[0] else None)(
        outside.fetch(host, f"http://{addr}/", timeout=2)), timeout=30, what=f"{name} serving")


def update(nspawnctl, *args):
    r = nspawnctl("auto-update", *args, "--json", check=False)
    return r, {row["name"]: row for row in json.loads(r.stdout or "[]")}


def test_a_new_digest_under_the_tag_is_put_in_keeping_address_and_port(host, nspawnctl, regs,
                                                                        made):
    push(regs, "v1")
    made(NAME, "--from", f"docker://{REF}", "--auto-update", "registry", "--port", "8080:80")
    nspawnctl("start", NAME)
    assert page(host, nspawnctl) == "v1\n"
    before = status(nspawnctl)
    assert before["auto_update"] == "registry"
    r, rows = update(nspawnctl, "--dry-run", NAME)
    assert r.returncode == 0 and rows[NAME]["action"] == "up-to-date", r  # nothing new yet

    push(regs, "v2")
    r, rows = update(nspawnctl, "--dry-run")
    assert r.returncode == 6 and rows[NAME]["action"] == "would-update", r
    assert status(nspawnctl)["image"] == before["image"]  # --dry-run touched nothing
    t0 = time.monotonic()
    r = nspawnctl("auto-update", NAME)
    print(f"auto-update to v2: {time.monotonic() - t0:.1f} s")
    assert f"{NAME}: updated to" in r.stdout
    after = status(nspawnctl)
    assert after["image"] != before["image"] and after["state"] == "running"
    assert page(host, nspawnctl) == "v2\n"
    for key in ("address", "port", "env", "network", "command", "made_from", "auto_update"):
        assert after[key] == before[key], key
    assert outside.fetch(host, "http://127.0.0.1:8080/", timeout=3) == (True, "v2\n")
    assert json.loads(nspawnctl("snapshots", NAME, "--json").stdout) == []  # not left
    r, rows = update(nspawnctl, "--dry-run", NAME)
    assert r.returncode == 0 and rows[NAME]["action"] == "up-to-date", r


def test_a_broken_image_is_rolled_back_and_said(host, nspawnctl, regs):
    v2 = status(nspawnctl)["image"]
    push(regs, "broken")
    t0 = time.monotonic()
    r = nspawnctl.fails("auto-update", NAME)
    print(f"auto-update to a broken image, rolled back: {time.monotonic() - t0:.1f} s")
    assert f"{NAME}: auto-update of {NAME} failed at health check (its command exited); " \
        "rolled back to snapshot " in r.stdout, r
    assert r.error == f"nspawnctl: auto-update did not update {NAME}", r.error
    assert status(nspawnctl)["image"] == v2 and status(nspawnctl)["state"] == "running"
    assert page(host, nspawnctl) == "v2\n"
    assert json.loads(nspawnctl("snapshots", NAME, "--json").stdout) == []


# /bin/sh for a --health-cmd (run as /bin/sh -c CMD); a tree without the page it checks
SHELL = ib.layer(ib.symlink("bin/sh", "busybox"))
NO_PAGE = ib.layer(ib.dir("www"), ib.file("www/other.html", b"not the page\n"))


def test_an_image_its_health_cmd_finds_sick_is_rolled_back(host, nspawnctl, regs):
    """With a --health-cmd the new image is kept only once the check passes in it: an image
    with the page is kept; one that serves but lacks the page the check looks for is rolled
    back, the check's failures said."""
    nspawnctl("set", NAME, "--health-cmd", "test -e /www/index.html", "--health-interval", "1s",
              "--health-retries", "2")
    try:
        regs.push(R.layout(regs.work, "checked", [R.SCRATCH_BASE, SHELL, R.www(b"checked\n")]),
                  "1", "tls", "test/auto", "1")
        r = nspawnctl("auto-update", NAME)
        assert f"{NAME}: updated to" in r.stdout, r
        kept = status(nspawnctl)["image"]
        assert page(host, nspawnctl) == "checked\n"
        regs.push(R.layout(regs.work, "nopage", [R.SCRATCH_BASE, SHELL, NO_PAGE]), "1", "tls",
                  "test/auto", "1")
        r = nspawnctl.fails("auto-update", NAME)
        assert f"{NAME}: auto-update of {NAME} failed at health check (its health check " \
            "failed 2 times in a row (exit 1" in r.stdout, r
        assert "rolled back to snapshot" in r.stdout, r
        assert status(nspawnctl)["image"] == kept and status(nspawnctl)["state"] == "running"
        assert page(host, nspawnctl) == "checked\n"
    finally:
        nspawnctl("set", NAME, "--health-cmd", "none")


def test_bad_input_is_one_line_and_changes_nothing(nspawnctl, made):
    r = nspawnctl.fails("create", "au-scratch", "--from", "scratch", "--add", "/bin/busybox",
                        "--cmd", "/bin/busybox sleep 1d", "--auto-update", "registry")
    assert "needs a container made from a registry image" in r.error
    assert "au-scratch" not in listing(nspawnctl)
    made("au-scratch", "--from", "scratch", "--add", "/bin/busybox", "--cmd",
         "/bin/busybox sleep 1d")
    r = nspawnctl.fails("set", "au-scratch", "--auto-update", "registry")
    assert "made from scratch" in r.error
    assert status(nspawnctl, "au-scratch")["auto_update"] is None
    r = nspawnctl.fails("auto-update", "au-scratch")
    assert "au-scratch is not marked for auto-update" in r.error and r.returncode == 2


def test_sigkill_at_any_moment_leaves_the_old_image_or_the_new_and_a_rerun_converges(
        host, nspawnctl, regs):
    """3 trials: a new image pushed, auto-update SIGKILLed at a random moment: the container's
    record names the old image or the new one, and the rerun ends on the new one, running,
    serving its page, no snapshot left."""
    rng = random.Random(SEED)
    landed = []
    for trial, which in enumerate(("v3", "v2", "v3")):
        old = status(nspawnctl)["image"]
        push(regs, which)
        run = Run(host, ["auto-update", NAME])
        landed.append(run.kill_after(rng.uniform(0.3, 4.0)))
        run.survivors()
        assert status(nspawnctl)["image"] in (old, _key(nspawnctl)), trial
        r = nspawnctl("auto-update", NAME)
        assert "updated to" in r.stdout or "up to date" in r.stdout, r
        assert status(nspawnctl)["state"] == "running"
        assert page(host, nspawnctl) == PAGES[which].decode()
        assert json.loads(nspawnctl("snapshots", NAME, "--json").stdout) == []
    print(f"kills landed: {landed}")


RECORD = f"/var/lib/nspawnctl/upgrades/{NAME}.json"  # runtime/upgrade.py _record


def test_a_host_crash_during_the_replace_is_recovered_at_boot(host, nspawnctl, world, regs):
    """The testbed crashes (every process killed at once, test_crash.py) once auto-update
    has swapped the new tree in and started it, before its health check passed (its record
    says swapped).  At the boot, before any nspawnctl command, nspawnctl-recover.service has
    rolled it back: the container, enabled, runs on the old image (the new one was never
    found healthy), serving its page, no record or snapshot left; the next auto-update ends
    on the new one."""
    if not isinstance(host, testbed.Testbed):
        pytest.skip("a host crash needs the testbed (this host would crash with it)")
    nspawnctl("enable", NAME)  # it ran before the crash: the boot starts it again
    try:
        old = status(nspawnctl)["image"]
        push(regs, "v1")
        new = _key(nspawnctl)
        served = page(host, nspawnctl)
        t0 = time.monotonic()
        run = host.popen(["nspawnctl", "auto-update", NAME], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
        record, unit = host.path(RECORD), f"systemd-nspawn@{NAME}.service"
        wait_for(lambda: '"swapped"' in _text(record) and host.run(
            ["systemctl", "is-active", unit]).stdout.strip() in ("activating", "active"),
            timeout=60, interval=0.02, what="the new tree swapped in and starting")
        assert '"swapped"' in _text(record)  # its health check has not passed yet
        print(f"crash: {time.monotonic() - t0:.1f} s into auto-update")
        host.crash()
        run.wait(60)
        problems = after_boot(host, nspawnctl)
        assert problems == [], problems
        assert not host.path(RECORD).exists()
        seen = status(nspawnctl)
        assert (seen["image"], seen["state"]) == (old, "running"), (seen, old, new)
        assert page(host, nspawnctl) == served
        assert json.loads(nspawnctl("snapshots", NAME, "--json").stdout) == []

        world.up(host)  # the registry went with the crash: up again, the image pushed again
        regs.up()
        push(regs, "v1")
        r = nspawnctl("auto-update", NAME)
        assert "updated to" in r.stdout or "up to date" in r.stdout, r
        assert status(nspawnctl)["image"] == new and status(nspawnctl)["state"] == "running"
        assert page(host, nspawnctl) == PAGES["v1"].decode()
        assert json.loads(nspawnctl("snapshots", NAME, "--json").stdout) == []
        print(f"crash: rolled back at the boot, converged {time.monotonic() - t0:.1f} s "
              "after the start")
    finally:
        nspawnctl("disable", NAME)


def _text(path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def _key(nspawnctl) -> str:
    """The image key the tag names now (what a dry run says)."""
    _, rows = update(nspawnctl, "--dry-run", NAME)
    return rows[NAME]["new_image"]


def test_the_timer_is_enabled_and_its_service_runs_auto_update(host, nspawnctl):
    nspawnctl("auto-update", "--enable-timer")
    unit = "nspawnctl-auto-update.timer"
    assert host.run(["systemctl", "is-enabled", unit]).stdout.strip() == "enabled"
    assert host.run(["systemctl", "is-active", unit]).stdout.strip() == "active"
    r = host.run(["systemctl", "start", "nspawnctl-auto-update.service"])  # waits: oneshot
    assert r.returncode == 0, host.run(["journalctl", "-u", "nspawnctl-auto-update.service",
                                        "-n", "20", "--no-pager"]).stdout
    log = host.run(["journalctl", "-u", "nspawnctl-auto-update.service", "-o", "cat",
                    "--no-pager"]).stdout
    assert f"{NAME}: up to date ({REF})" in log, log
    nspawnctl("auto-update", "--disable-timer")
    assert host.run(["systemctl", "is-enabled", unit]).stdout.strip() == "disabled"
    assert host.run(["systemctl", "is-active", unit]).stdout.strip() == "inactive"
