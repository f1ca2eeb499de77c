"""The default bootstrapper (mmdebstrap, the faster) and incremental bases: `create --include`
from the cached default base installs only what is missing.  Runs inside the systemd host.

Three cold creates, each once: mmdebstrap with --include nginx (kept only as a package list
to compare with), the default base (the incremental builds start from it), and debootstrap (the
package list and size mmdebstrap must match).  Every container this module makes is removed,
and the base trees it made are pruned, at its end."""

import json
import time

import pytest

from tests.integration.helpers import (
    MACHINES,
    STATE,
    guest_running,
    listing,
    store_problems,
    wait_for,
)

pytestmark = pytest.mark.integration

PREFIX = "inc-"
IMAGES = f"{STATE}/images"
# The default mirror spelt with a trailing slash: the same mirror, another cache key, so this
# module's cold creates are cold whatever base trees earlier modules keep (test_create keeps
# its default container for the session).
MIRROR = ("--mirror", "http://deb.debian.org/debian/")


def packages(host, name: str) -> list[str]:
    """Every installed package and its version, as dpkg says it in the container's tree."""
    r = host.run(["chroot", f"{MACHINES}/{name}", "dpkg-query", "-W",
                  "-f", "${db:Status-Status} ${Package} ${Version}\n"])
    assert r.returncode == 0, str(r)
    return sorted(line.split(" ", 1)[1] for line in r.stdout.splitlines()
                  if line.startswith("installed "))


def image_keys(nspawnctl) -> set[str]:
    return {row["key"] for row in json.loads(nspawnctl("images", "--json").stdout)}


def create(nspawnctl, name, *args) -> dict:
    # Cold bootstraps: debootstrap's one by one dpkg runs are several times mmdebstrap's, and
    # under emulation in the VM tier that went past the default 10 minutes.
    r = nspawnctl("create", name, "--json", *MIRROR, *args, timeout=1800)
    return json.loads(r.stdout) | {"stderr": r.stderr}


@pytest.fixture(scope="module")
def built(host, nspawnctl):
    """The cold creates, in the one order that makes each cold: what they left to compare."""
    out: dict = {}
    try:
        # 1. --include nginx with nothing cached: one bootstrap with every package
        cold = create(nspawnctl, PREFIX + "cold", "--include", "nginx")
        out["cold"] = cold | {"packages": packages(host, PREFIX + "cold")}
        nspawnctl("remove", PREFIX + "cold")
        nspawnctl("images", "prune")  # its base too: the next --include nginx must not hit it
        # 2. the default base, cold
        out["base"] = create(nspawnctl, PREFIX + "base")
        yield out
    finally:
        names = [n for n in listing(nspawnctl) if n.startswith(PREFIX)]
        if names:
            nspawnctl("remove", "--force", *names)
        nspawnctl("images", "prune")


def test_default_bootstrapper_is_mmdebstrap_and_builds_leave_no_trace(host, built):
    for which in ("cold", "base"):
        info = built[which]
        assert info["cached"] is False, info
        assert "with mmdebstrap" in info["stderr"] and "success in" in info["stderr"], info
    meta = json.loads(host.run(["cat", f"{IMAGES}/{built['base']['image']}/meta.json"]).stdout)
    assert meta["spec"]["bootstrapper"] == "mmdebstrap"
    # built fast (eatmydata, dpkg's unsafe-io), and none of that stays in the tree
    tree = f"{MACHINES}/{PREFIX}base"
    r = host.run(["grep", "-rl", "unsafe-io", f"{tree}/etc/dpkg", f"{tree}/etc/apt"])
    assert r.stdout == "", str(r)
    for gone in ("usr/bin/dpkg.distrib", "usr/bin/eatmydata"):
        assert host.run(["test", "-e", f"{tree}/{gone}"]).returncode != 0, gone
    r = host.run(["chroot", tree, "dpkg-divert", "--list"])
    assert "/usr/bin/dpkg" not in r.stdout, str(r)
    assert not [p for p in packages(host, PREFIX + "base") if "eatmydata" in p]


def test_incremental_include_installs_only_what_is_missing(host, nspawnctl, built):
    warm = create(nspawnctl, PREFIX + "nginx", "--include", "nginx")
    assert warm["cached"] is False
    assert "installing nginx into a copy of the cached base" in warm["stderr"], warm
    assert "bootstrapping" not in warm["stderr"], warm["stderr"]
    # its own cache entry, beside the default base and not the cold one's key
    assert warm["image"] not in (built["base"]["image"], built["cold"]["image"])
    meta = json.loads(host.run(["cat", f"{IMAGES}/{warm['image']}/meta.json"]).stdout)
    assert meta["base"] == built["base"]["image"] and meta["packages"] == ["nginx"]
    # the same packages as the cold bootstrap with --include nginx, versions too
    assert packages(host, PREFIX + "nginx") == built["cold"]["packages"]
    assert "nginx" in " ".join(built["cold"]["packages"])
    # slim as a bootstrapped tree: no lists, no .debs, no docs of the new packages
    tree = f"{MACHINES}/{PREFIX}nginx"
    r = host.run(["sh", "-c", f"find {tree}/var/lib/apt/lists {tree}/var/cache/apt "
                  f"{tree}/usr/share/doc/nginx -type f ! -name copyright; "
                  f"ls {tree}/usr/sbin/policy-rc.d"])
    assert r.stdout == "", str(r)
    # a second one is a cache hit of the incremental base
    again = create(nspawnctl, PREFIX + "nginx2", "--include", "nginx")
    assert again["cached"] is True and again["image"] == warm["image"]
    nspawnctl("remove", PREFIX + "nginx2")


def test_incremental_container_boots_and_runs_its_package(host, nspawnctl, built):
    if PREFIX + "nginx" not in listing(nspawnctl):
        create(nspawnctl, PREFIX + "nginx", "--include", "nginx")
    nspawnctl("start", PREFIX + "nginx")
    try:
        wait_for(lambda: guest_running(host, PREFIX + "nginx"), what="its systemd to run")
        r = nspawnctl("exec", PREFIX + "nginx", "--", "nginx", "-t")
        assert r.returncode == 0
    finally:
        nspawnctl("stop", PREFIX + "nginx")


def test_unknown_package_is_one_line_and_caches_nothing(host, nspawnctl, built):
    before = image_keys(nspawnctl)
    r = nspawnctl.fails("create", PREFIX + "bad", *MIRROR, "--include", "nosuchpkg")
    assert "no package named nosuchpkg" in r.error, r.stderr
    assert "Traceback" not in r.stderr
    assert image_keys(nspawnctl) == before
    assert PREFIX + "bad" not in listing(nspawnctl)
    assert store_problems(host, nspawnctl) == []


def test_killed_incremental_build_leaves_only_what_the_sweep_removes(host, nspawnctl, built):
    before = image_keys(nspawnctl)
    name = PREFIX + "killed"
    p = host.popen(["nspawnctl", "create", name, *MIRROR, "--include", "less"], stdout=-1,
                   stderr=-1)
    wait_for(lambda: host.run(["pgrep", "-f", "apt-get"]).returncode == 0, timeout=60,
             interval=0.02, what="the incremental build's apt-get")
    time.sleep(0.5)
    killed = host.run(["pkill", "-KILL", "-f", f"nspawnctl create {name}"])
    assert killed.returncode == 0, "the create had ended before its kill"  # it landed
    assert p.wait() != 0
    # nothing of it goes on running (its processes were in a PID namespace of their own)
    wait_for(lambda: host.run(["pgrep", "-f", "apt-get|systemd-nspawn.*apt"]).returncode != 0,
             timeout=10, what="the build's processes to end")
    assert store_problems(host, nspawnctl) == []  # (sweeps the dead staging directory)
    assert image_keys(nspawnctl) == before
    assert name not in listing(nspawnctl)
    # and the same create succeeds afterwards
    info = create(nspawnctl, name, "--include", "less")
    assert info["image"] not in before and "installing less" in info["stderr"]
    nspawnctl("remove", name)


def test_debootstrap_on_request_and_mmdebstrap_makes_the_same_image(host, nspawnctl, built):
    deb = create(nspawnctl, PREFIX + "deb", "--bootstrapper", "debootstrap")
    assert deb["cached"] is False and deb["image"] != built["base"]["image"]
    assert "with debootstrap" in deb["stderr"]
    assert packages(host, PREFIX + "base") == packages(host, PREFIX + "deb")

    def size(name):
        return int(host.run(["du", "-sk", f"{MACHINES}/{name}"]).stdout.split()[0])
    assert size(PREFIX + "base") <= size(PREFIX + "deb") * 1.02, \
        (size(PREFIX + "base"), size(PREFIX + "deb"))
    nspawnctl("start", PREFIX + "base")
    try:
        wait_for(lambda: guest_running(host, PREFIX + "base"), what="its systemd to run")
    finally:
        nspawnctl("stop", PREFIX + "base")
