"""What nspawnctl says about a container is what is true of it (issue 34), in the testbed:
settings `set` saved for the next start are shown pending while the container runs with the
old ones (and its published ports go where it is), a failed container says why, a start on
a network the host does not forward for says so, and a bind source that is not there is
refused where it is typed.

All traffic stays inside the testbed, on 192.0.2.0/24 and loopback.
"""

import json
import re

import pytest

from tests import outside
from tests.integration.helpers import MACHINES, listing
from tests.integration.test_network import PAGE, web_image  # noqa: F401 (a fixture)

pytestmark = pytest.mark.integration

NETWORK = "back34"
SUBNET = "192.0.2.224/28"  # beside the default network (192.0.2.0/25) and test_network's


def status(nspawnctl, name) -> dict:
    return json.loads(nspawnctl("status", name, "--json").stdout)


def fetch(host, port: int, timeout: float = 3):
    return outside.fetch(host, f"http://127.0.0.1:{port}/", timeout=timeout)


def test_a_network_set_while_running_is_pending_and_ports_follow_the_live_address(
        host, nspawnctl, made, web_image):  # noqa: F811
    page = PAGE.decode()
    nspawnctl("network", "create", NETWORK, "--subnet", SUBNET)
    try:
        name = made("pend34", "--from", web_image, "--port", "8090:80")
        nspawnctl("start", name)
        (live,) = status(nspawnctl, name)["address"]
        assert fetch(host, 8090) == (True, page)

        r = nspawnctl("set", name, "--network", NETWORK)
        assert "restart it for network" in r.stdout, str(r)
        shown = status(nspawnctl, name)
        assert shown["address"] == [live] and shown["network"] == "default", shown
        (future,) = shown["pending"]["address"]
        assert future.startswith("192.0.2.22") or future.startswith("192.0.2.23"), future
        assert shown["pending"]["network"] == NETWORK
        row = listing(nspawnctl)[name]
        assert row["address"] == [live] and row["pending"]["address"] == [future], row
        text = nspawnctl("status", name).stdout.splitlines()
        assert f"{live} (pending after restart: {future})" in \
            [line.split(None, 1)[1] for line in text if line.startswith("address:")], text
        # its ports, old and new, reach it where it runs until the restart
        assert fetch(host, 8090) == (True, page)
        nspawnctl("set", name, "--port", "8091:80")
        assert fetch(host, 8091) == (True, page)

        nspawnctl("restart", name)
        shown = status(nspawnctl, name)
        assert shown["address"] == [future] and shown["network"] == NETWORK, shown
        assert shown["pending"] == {}
        assert fetch(host, 8090) == (True, page) and fetch(host, 8091) == (True, page)
        networks = {n["name"]: n for n in json.loads(
            nspawnctl("network", "list", "--json").stdout)}
        assert name not in (networks["default"]["containers"] or []), networks
        nspawnctl("remove", "--force", name)
    finally:
        nspawnctl("remove", "--force", "pend34", check=False)
        nspawnctl("network", "remove", NETWORK, check=False)


def test_status_of_a_failed_container_says_why(host, nspawnctl, made):
    name = made("fail34", "--from", "scratch", "--add", "/bin/busybox", "--network", "none",
                "--cmd", "/bin/busybox sh -c 'echo marker-34 before the fall; exit 3'")
    nspawnctl("start", name, check=False)  # fails, or runs for the moment it takes
    host.run(["sh", "-c", f"for i in $(seq 50); do systemctl is-failed -q "
                          f"systemd-nspawn@{name}.service && exit; sleep 0.1; done"])
    shown = status(nspawnctl, name)
    assert shown["state"] == "failed", shown
    assert shown["result"] == "exit-code"
    assert any("marker-34 before the fall" in line for line in shown["log"]), shown["log"]
    assert len(shown["log"]) <= 10
    text = nspawnctl("status", name).stdout.splitlines()
    at = text.index("log:")
    assert any("marker-34" in line for line in text[at + 1:]), text
    assert all(line.startswith("  ") for line in text[at + 1:]), text


def test_a_start_on_a_network_the_host_does_not_forward_for_says_so(
        host, nspawnctl, made, web_image):  # noqa: F811
    name = made("fwd34", "--from", web_image)  # on the default network: its bridge is up
    host.run(["sysctl", "-qw", "net.ipv4.ip_forward=0"])
    try:
        r = nspawnctl("start", name)
        said = [line for line in r.stderr.splitlines() if "forwarding is off" in line]
        assert len(said) == 1, str(r)
        assert said[0].startswith("warning: IPv4 forwarding is off")
        assert "turn it on: echo 'net.ipv4.ip_forward = 1'" in said[0]
    finally:
        host.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    nspawnctl("stop", name)
    r = nspawnctl("start", name)
    assert "forwarding" not in r.stderr, str(r)


def test_a_missing_bind_source_is_refused_at_create_and_set(host, nspawnctl, made):
    r = nspawnctl.fails("create", "bind34", "--from", "scratch", "--add", "/bin/busybox",
                        "--bind", "/srv/no-such-34:/data")
    assert r.returncode == 2
    assert r.error == "nspawnctl: bind mount source /srv/no-such-34 does not exist"
    assert not host.path(f"{MACHINES}/bind34").exists()
    assert not host.path("/etc/systemd/nspawn/bind34.nspawn").exists()

    name = made("bound34", "--from", "scratch", "--add", "/bin/busybox", "--network", "none")
    before = host.path(f"/etc/systemd/nspawn/{name}.nspawn").read_text()
    r = nspawnctl.fails("set", name, "--bind", "/srv/no-such-34:/data")
    assert r.returncode == 2 and "/srv/no-such-34 does not exist" in r.error
    assert host.path(f"/etc/systemd/nspawn/{name}.nspawn").read_text() == before
    host.run(["mkdir", "-p", "/srv/there-34"])
    try:
        nspawnctl("set", name, "--bind", "/srv/there-34:/data")
    finally:
        host.run(["rmdir", "/srv/there-34"])
    # a source gone since does not block other changes
    nspawnctl("set", name, "--memory", "64MB")
    assert status(nspawnctl, name)["memory"] == 64 << 20


def test_memory_as_podman_and_systemd_spell_it_reaches_systemd(host, nspawnctl, made):
    """--memory 512MB (podman) is 512 MiB; --memory 50% stays a percentage (status says 50%,
    its JSON the bytes that means), and systemd takes
    it live (MemoryMaxScale) and in the drop-in (MemoryMax=50%) as half the host's memory."""
    name = made("mem34", "--from", "scratch", "--add", "/bin/busybox", "--network", "none",
                "--cmd", "/bin/busybox sleep 600", "--memory", "512MB")
    assert status(nspawnctl, name)["memory"] == 512 << 20
    nspawnctl("start", name)
    nspawnctl("set", name, "--memory", "50%")
    # JSON keeps one type per key: the bytes 50% means here, as systemd works it out
    pages = host.run(["getconf", "_PHYS_PAGES"]).stdout.strip()
    size = host.run(["getconf", "PAGE_SIZE"]).stdout.strip()
    assert status(nspawnctl, name)["memory"] == int(pages) * int(size) // 2
    assert re.search(r"^memory: +50%$", nspawnctl("status", name).stdout, re.M)
    dropin = host.path(f"/etc/systemd/system/systemd-nspawn@{name}.service.d/"
                       "50-nspawnctl.conf").read_text()
    assert "MemoryMax=50%\n" in dropin
    total = int(host.run(["awk", "/^MemTotal:/ {print $2}", "/proc/meminfo"]).stdout) * 1024
    for when in ("live", "after a restart"):
        shown = host.run(["systemctl", "show", "-P", "MemoryMax",
                          f"systemd-nspawn@{name}.service"]).stdout.strip()
        assert shown.isdigit() and 0.45 < int(shown) / total < 0.55, (when, shown, total)
        if when == "live":
            nspawnctl("restart", name)
    r = nspawnctl.fails("set", name, "--memory", "150%")
    assert r.returncode != 0 and "at most 100%" in r.error
