"""The outside world of the networking tests (tests/outside.py) works, seen from the testbed
host itself: the upstream's web page and DNS name, the lan machine reaching the host, no route
back from the upstream, and nothing left once it is down (also after a run that was killed)."""

import re
import signal
import time

import pytest

from tests import outside
from tests.integration.helpers import wait_for
from tests.outside import OutsideWorld, fetch, outside_world

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def testbed_host(host):
    if not outside.isolated(host):
        pytest.skip("the outside world is built only in the testbed or the VM tier's VM")
    return host


def settled(text: str) -> str:
    text = re.sub(r" linkdown\b", "", text)
    # a DHCP address's lifetimes count down (the VM tier's own network)
    return re.sub(r"valid_lft \S+ preferred_lft \S+", "", text)


def snapshot(host) -> dict:
    """What the world may change on the host: namespaces, links, routes, resolver, processes."""
    def out(*argv):
        return host.run(list(argv)).stdout

    return {
        "netns": out("ip", "netns", "list"),
        "links": sorted(line.split(":")[1].split("@")[0].strip()
                        for line in out("ip", "-o", "link", "show").splitlines()),
        # IPv4 (all the world sets; its links are listed above), without the states a young
        # link passes through on its own: the default bridge, made just before when this
        # runs first, gains IPv6 routes and loses "linkdown" meanwhile
        "addresses": settled(out("ip", "-4", "-o", "addr", "show")),
        "routes": settled(out("ip", "-4", "route", "show", "table", "all")),
        "resolv.conf": out("sh", "-c", "ls -l /etc/resolv.conf | cut -c1; cat /etc/resolv.conf"),
        "saved": out("sh", "-c", f"ls -d {outside.RESOLV_SAVED}* {outside.STATE} 2>/dev/null"),
        "servers": out("sh", "-c", "pgrep -ax dnsmasq; pgrep -af '[h]ttp[.]server'; true"),
    }


def server_pids(host) -> list[int]:
    """The main process of each of the world's server units (0: not running)."""
    return [int(host.run(["systemctl", "show", "-P", "MainPID", unit]).stdout.strip() or 0)
            for unit in outside.SERVER_UNITS]


def namespace_pids(host) -> list[str]:
    return [pid for ns in (outside.UPSTREAM_NS, outside.LAN_NS)
            for pid in host.run(["ip", "netns", "pids", ns]).stdout.split()]


# Runs first, before the module's world is up, so it sees the host as the testbed booted it.
def test_down_leaves_nothing_even_after_a_killed_run(testbed_host):
    host = testbed_host
    before = snapshot(host)
    assert before["netns"] == "" and before["servers"] == ""
    killed = OutsideWorld().up(host)  # never brought down: a run that was SIGKILLed
    # what that run had running: its server units, and a process of its own in each namespace
    # (entered from outside, as a test's client would be)
    old_servers = server_pids(host)
    assert all(old_servers), old_servers
    strays = [killed.upstream_popen(host, ["sleep", "1000"]),
              killed.lan_popen(host, ["sleep", "1000"])]
    wait_for(lambda: len(namespace_pids(host)) >= 2 + len(old_servers),
             what="the killed run's processes to be in its namespaces")
    second = OutsideWorld().up(host)  # replaces it: one set of namespaces and servers
    names = [line.split()[0] for line in host.run(["ip", "netns", "list"]).stdout.splitlines()]
    assert sorted(names) == sorted([outside.LAN_NS, outside.UPSTREAM_NS])
    assert len(host.run(["pgrep", "dnsmasq"]).stdout.split()) == 1
    assert not set(server_pids(host)) & set(old_servers)  # its own servers, new ones
    for p in strays:  # killed with the namespaces' other processes, whoever started them
        assert p.wait(timeout=10) == -signal.SIGKILL, p.returncode
    assert fetch(host) == (True, outside.HTTP_PAGE)
    second.down(host)
    for pid in old_servers:
        assert host.run(["kill", "-0", str(pid)]).returncode != 0, f"{pid} still runs"
    assert snapshot(host) == before
    assert host.run(["ip", "netns", "list"]).stdout == ""


@pytest.fixture(scope="module")
def world(testbed_host):
    with outside_world(testbed_host) as w:
        yield w


def test_http_page_from_the_host(testbed_host, world):
    assert fetch(testbed_host) == (True, outside.HTTP_PAGE)
    # Straight from the host, no NAT involved: the server sees the host's upstream address.
    assert world.http_clients(testbed_host)[-1] == outside.HOST_UPSTREAM_ADDR


def test_dns_name_resolves_and_the_mirror_name_still_points_where_hosts_says(testbed_host, world):
    r = testbed_host.run(["getent", "hosts", outside.UPSTREAM_NAME])
    assert r.returncode == 0 and r.stdout.split() == [outside.HTTP_ADDR, outside.UPSTREAM_NAME]
    assert fetch(testbed_host, f"http://{outside.UPSTREAM_NAME}/") == (True, outside.HTTP_PAGE)
    # /etc/hosts first: the mirror's name still points where the host's file says (the
    # testbed's forwarder on 127.0.0.1, the VM's gateway)
    hosts = testbed_host.run(["cat", "/etc/hosts"]).stdout.splitlines()
    mirror = [ln.split()[0] for ln in hosts if "deb.debian.org" in ln.split()[1:]]
    r = testbed_host.run(["getent", "hosts", "deb.debian.org"])
    assert mirror and r.stdout.split()[0] == mirror[0]
    conf = testbed_host.run(["cat", "/etc/resolv.conf"]).stdout
    assert [ln.split()[1] for ln in conf.splitlines() if ln.startswith("nameserver")] == \
        [outside.DNS_ADDR]


def test_the_upstream_routes_nothing_back(testbed_host, world):
    routes = world.upstream_run(testbed_host, ["ip", "-4", "route", "show"]).stdout
    assert [line.split()[0] for line in routes.splitlines()] == [outside.UPSTREAM_NET]
    r = world.upstream_run(testbed_host, ["sysctl", "-n", "net.ipv4.ip_forward"])
    assert r.stdout.strip() == "0"
    # The lan cannot reach the internet directly either: only through the host.
    r = world.lan_run(testbed_host, ["ip", "route", "get", outside.HTTP_ADDR])
    assert r.returncode != 0 and "unreachable" in r.stderr


def test_lan_reaches_the_host(testbed_host, world):
    host = testbed_host
    # timeout: the listener ends by itself even if the test fails before connecting.
    listener = host.popen(["timeout", "30", "socat",
                           f"TCP-LISTEN:7000,bind={outside.HOST_LAN_ADDR},reuseaddr",
                           "SYSTEM:echo hello from the host"])
    try:
        for _ in range(100):
            if f"{outside.HOST_LAN_ADDR}:7000" in host.run(["ss", "-Hltn"]).stdout:
                break
            time.sleep(0.1)
        r = world.lan_run(host, ["socat", "-T5", "-", f"TCP:{outside.HOST_LAN_ADDR}:7000"],
                          input="")
        assert r.returncode == 0 and r.stdout == "hello from the host\n", str(r)
        assert listener.wait(timeout=10) == 0
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()
