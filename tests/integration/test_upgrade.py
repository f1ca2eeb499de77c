"""upgrade in the testbed, against a testbed-local apt repository served from the outside world's
"internet" (tests/outside.py: 203.0.113.2, documentation range), which containers reach through
NAT as they reach a real mirror (the host itself is closed to them): an upgrade that succeeds,
one whose --check fails and one whose package breaks the boot (a failing unit: degraded), both
rolled back to a working container; SIGKILL at any moment of an upgrade (the tree is the old
one or the new one, dpkg's state whole, nothing left running, the rerun succeeds); single-command
containers are refused."""

import hashlib
import json
import random
import subprocess
import time
from pathlib import Path

import pytest

from tests import outside
from tests.integration.helpers import MACHINES, guest_running
from tests.integration.test_kill import SEED, Tally, check_whole, kill_trial, timed
from tests.integration.test_oci_containers import busybox_layer, oci_archive

pytestmark = pytest.mark.integration

MIRROR = outside.UPSTREAM_ADDR  # "a mirror on the internet"
PORT = 8931
REPO = "/srv/nspawnctl-repo"
PROBE = "nspawnctl-probe"
VERSION_FILE = f"/usr/share/{PROBE}/version"


def build_deb(host, version: str, broken: bool = False) -> str:
    """A tiny arch-all package; broken: it enables a unit that fails at boot."""
    work = f"/root/debs/{PROBE}-{version}"
    unit = "[Unit]\nDescription=broken by the upgrade\n[Service]\nType=oneshot\n" \
           "ExecStart=/bin/false\n[Install]\nWantedBy=multi-user.target\n"
    script = f"""set -e
rm -rf {work} && mkdir -p {work}/DEBIAN {work}/usr/share/{PROBE}
printf 'Package: {PROBE}\\nVersion: {version}\\nArchitecture: all\\nMaintainer: t <t@example.org>\\n\
Description: nspawnctl upgrade test package\\n' > {work}/DEBIAN/control
echo {version} > {work}{VERSION_FILE}
"""
    if broken:
        script += f"""mkdir -p {work}/lib/systemd/system {work}/etc/systemd/system/multi-user.target.wants
printf '{unit}' > {work}/lib/systemd/system/{PROBE}-broken.service
ln -s /lib/systemd/system/{PROBE}-broken.service \
{work}/etc/systemd/system/multi-user.target.wants/{PROBE}-broken.service
"""
    script += f"dpkg-deb -Zgzip --root-owner-group -b {work} /root/debs/{PROBE}_{version}_all.deb\n"
    r = host.run(["sh", "-c", script])
    assert r.returncode == 0, str(r)
    return f"/root/debs/{PROBE}_{version}_all.deb"


def publish(host, deb: str | None):
    """The repository holds deb (or nothing): a flat repository with Packages and Release."""
    host.run(["sh", "-c", f"rm -rf {REPO} && mkdir -p {REPO}"])
    entries = []
    if deb:
        host.run(["cp", deb, REPO])
        data = Path(host.path(deb)).read_bytes()
        control = host.run(["dpkg-deb", "-f", deb]).stdout.strip()
        entries.append(f"{control}\nFilename: ./{Path(deb).name}\nSize: {len(data)}\n"
                       f"SHA256: {hashlib.sha256(data).hexdigest()}\n")
    packages = "\n".join(entries)
    digest = hashlib.sha256(packages.encode()).hexdigest()
    release = ("Origin: nspawnctl-test\nLabel: nspawnctl-test\nSuite: test\nCodename: test\n"
               f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S UTC', time.gmtime())}\n"
               f"SHA256:\n {digest} {len(packages.encode())} Packages\n")
    host.run(["sh", "-c", f"cat > {REPO}/Packages"], input=packages)
    host.run(["sh", "-c", f"cat > {REPO}/Release"], input=release)


@pytest.fixture(scope="module")
def repo(host):
    """The HTTP server on the mirror, in the outside world's upstream namespace (the
    repository's files are the testbed's: a namespace shares its filesystem)."""
    if not outside.isolated(host):
        pytest.skip("the outside world is made only in the testbed or the VM tier's VM")
    publish(host, None)
    with outside.outside_world(host) as world:
        server = world.upstream_popen(host, ["python3", "-m", "http.server", "--bind", MIRROR,
                                             "--directory", REPO, str(PORT)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield
        finally:
            server.kill()
            server.wait()


@pytest.fixture(scope="module")
def debs(host):
    return {v: build_deb(host, v, broken=(v == "3.0")) for v in ("1.0", "2.0", "3.0")}


@pytest.fixture(scope="module")
def box(host, nspawnctl, made, debs, repo):  # noqa: ARG001 (repo: the server runs)
    """A booted container with the probe at 1.0 and only the local repository as source."""
    return prepared(host, nspawnctl, made("upg1"), debs)


def prepared(host, nspawnctl, name, debs) -> str:
    tree = f"{MACHINES}/{name}"
    host.run(["sh", "-c", f"rm -f {tree}/etc/apt/sources.list.d/* && echo "
              f"'deb [trusted=yes] http://{MIRROR}:{PORT}/ ./' > {tree}/etc/apt/sources.list"])
    nspawnctl("start", name)
    nspawnctl("cp", debs["1.0"], f"{name}:/root/")
    nspawnctl("exec", name, "--", "dpkg", "-i", f"/root/{Path(debs['1.0']).name}")
    return name


def version(nspawnctl, name) -> str:
    return nspawnctl("exec", name, "--", "cat", VERSION_FILE).stdout.strip()


def snapshots_of(nspawnctl, name) -> list:
    return json.loads(nspawnctl("snapshots", name, "--json").stdout)


def test_upgrade_succeeds(host, nspawnctl, box, debs):
    publish(host, debs["2.0"])
    r = nspawnctl("upgrade", box)
    assert r.stdout.strip() == f"{box} upgraded: running", str(r)
    for step in ("[1/6] apt-get update", "[2/6] download the upgrade", "[3/6] stop, snapshot",
                 "[4/6] install the upgrade into a copy", "[5/6] start", "[6/6] health check"):
        assert step in r.stderr, r.stderr
    assert version(nspawnctl, box) == "2.0"
    assert guest_running(host, box)
    assert snapshots_of(nspawnctl, box) == []  # dropped without --keep-snapshot


def test_upgrade_of_an_overlay_container(host, nspawnctl, made, debs, repo):  # noqa: ARG001
    """Only its upper layer is copied and upgraded; the shared base stays as it was."""
    name = prepared(host, nspawnctl, made("upg-ov", "--overlay"), debs)
    publish(host, debs["2.0"])
    nspawnctl("upgrade", name)
    assert version(nspawnctl, name) == "2.0" and guest_running(host, name)
    options = host.run(["findmnt", "-n", "-o", "OPTIONS", f"{MACHINES}/{name}"]).stdout
    base = [o[len("lowerdir="):] for o in options.strip().split(",")
            if o.startswith("lowerdir=")]
    assert base, options  # still an overlay, on the same base, which has no probe
    assert host.run(["test", "-e", f"{base[0]}{VERSION_FILE}"]).returncode != 0
    nspawnctl("remove", "--force", name)


def test_an_unreachable_source_fails_the_upgrade_and_changes_nothing(host, nspawnctl, made,
                                                                     repo):  # noqa: ARG001
    """apt-get update only warns when a source cannot be fetched; the upgrade used to go on
    with stale lists and say "upgraded" (seen in the VM tier, whose containers could not reach
    the test repository)."""
    name = made("upg-off")
    tree = f"{MACHINES}/{name}"
    host.run(["sh", "-c", f"rm -f {tree}/etc/apt/sources.list.d/* && echo "
              f"'deb [trusted=yes] http://{MIRROR}:9/ ./' > {tree}/etc/apt/sources.list"])
    nspawnctl("start", name)
    r = nspawnctl.fails("upgrade", name)
    assert r.error == (f"nspawnctl: upgrade of {name} failed at apt-get update (exit 100); "
                       "nothing was changed"), r.stderr
    assert "Failed to fetch" in r.stderr
    assert snapshots_of(nspawnctl, name) == []
    assert guest_running(host, name)


def test_failing_check_rolls_back(host, nspawnctl, box, debs):
    """A check that passes on the version before and fails on 2.5 only, and says what it saw:
    it can fail only if the upgrade installed 2.5, and the version after is the one before
    only if the rollback put it back (a check failing on both could not tell a rollback from
    an upgrade that installed nothing)."""
    before = version(nspawnctl, box)
    assert before != "2.5"
    publish(host, build_deb(host, "2.5"))
    check = f'v=$(cat {VERSION_FILE}); echo "the check saw $v"; [ "$v" = "{before}" ]'
    assert nspawnctl("exec", box, "--", "sh", "-c", check).returncode == 0  # passes before
    r = nspawnctl.fails("upgrade", box, "--check", check)
    assert "failed at --check" in r.error and "rolled back to snapshot upgrade-" in r.error, \
        r.error
    assert "the check saw 2.5" in r.stderr, r.stderr  # it ran on the upgraded tree
    assert version(nspawnctl, box) == before
    assert guest_running(host, box)


def test_package_that_breaks_boot_rolls_back(host, nspawnctl, box, debs):
    before = version(nspawnctl, box)
    publish(host, debs["3.0"])
    r = nspawnctl.fails("upgrade", box, "--keep-snapshot")
    assert "failed at health check (its systemd is degraded, was running)" in r.error, r.error
    assert f"{PROBE}-broken.service" in r.stderr  # the failing step's output: the failed unit
    assert version(nspawnctl, box) == before
    assert host.run(["systemctl", "-M", box, "is-system-running"]).stdout.strip() == "running"
    # the snapshot taken before it stays when asked to
    assert [s["tag"] for s in snapshots_of(nspawnctl, box)][0].startswith("upgrade-")


def test_kill_upgrade(host, nspawnctl, full, figures, box, debs):
    """Each trial puts the container back at 1.0 (rollback to a snapshot), kills an upgrade to
    2.0 at a random moment, checks the tree, then runs the upgrade again."""
    rng = random.Random(f"{SEED}:upgrade")
    tree = f"{MACHINES}/{box}"
    publish(host, debs["1.0"])
    if version(nspawnctl, box) != "1.0":
        nspawnctl("exec", box, "--", "dpkg", "-i", f"/root/{Path(debs['1.0']).name}")
    if "v1" not in {s["tag"] for s in snapshots_of(nspawnctl, box)}:
        nspawnctl("snapshot", "--stop", box, "v1")
    earlier = {s["tag"] for s in snapshots_of(nspawnctl, box)}  # v1, and kept ones
    publish(host, debs["2.0"])

    def reset():
        nspawnctl("rollback", box, "v1")
        nspawnctl("start", box)

    duration = timed(host, ["upgrade", box], reset, runs=2)  # the first is slower
    tally = Tally(figures, "upgrade", duration, "the tree was the upgraded one")
    try:
        for trial in tally.attempts(4 if not full else 20):  # some 30 s each
            reset()
            delay = rng.uniform(0, duration)
            where, problems, _ = kill_trial(host, nspawnctl, ["upgrade", box], delay)
            check_whole(host, nspawnctl, box)
            seen = host.run(["cat", f"{tree}{VERSION_FILE}"]).stdout.strip()
            assert seen in ("1.0", "2.0"), seen
            # dpkg's own view of the tree: nothing half installed or half configured
            audit = host.run(["dpkg", f"--root={tree}", "--audit"])
            if audit.stdout.strip():
                problems = problems + [f"dpkg --audit: {audit.stdout.strip()[:200]}"]
            rerun = nspawnctl("upgrade", box)
            assert guest_running(host, box), str(rerun)
            assert version(nspawnctl, box) == "2.0", str(rerun)
            kept = {s["tag"] for s in snapshots_of(nspawnctl, box)}
            if kept != earlier:
                problems = problems + [f"snapshots left: {sorted(kept - earlier)}"]
            tally.record(trial, delay, where, seen == "2.0", problems)
    finally:
        tally.report()
        nspawnctl("snapshot", "rm", box, "v1", check=False)
    assert tally.problems == []


def test_single_command_container_does_not_apply(host, nspawnctl, made, tmp_path_factory):
    archive = "/root/upgrade-busybox.tar"
    built = oci_archive(tmp_path_factory.mktemp("upg-oci"), "busybox", [busybox_layer()])
    with open(built, "rb") as src, open(host.path(archive), "wb") as dst:
        dst.write(src.read())
    name = made("upg-oci", "--from", f"oci-archive:{archive}")
    r = nspawnctl.fails("upgrade", name)
    assert "upgrade does not apply to upg-oci: it runs a single command" in r.error, r.error
