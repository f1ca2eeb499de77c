"""Networking as a user meets it, in the testbed with its outside world (tests/outside.py):
addresses, NAT, DNS, published ports (also from 127.0.0.1), names, isolation, the loopback
guard, firewall reloads, doctor, bad input, and nothing left behind.

All traffic stays inside the testbed: containers on 192.0.2.0/24 (tests/testbed.py), the
"internet" on 203.0.113.0/24 and the LAN on 198.51.100.0/25, namespaces the tests make.
"""

import ipaddress
import json
import re
import shutil
import subprocess
import time

import pytest

from nspawnctl.settings.networking import bridge_of
from tests import imagetools, outside
from tests.integration.helpers import listing, wait_for
from tests.testbed import DEFAULT_SUBNET
from tests.unit import imagebuild as ib

pytestmark = pytest.mark.integration

APPLETS = ("sh", "cat", "echo", "env", "sleep", "httpd", "wget", "nslookup", "ls", "true",
           "timeout")
SEGFAULT = 139  # Debian's busybox-static wget crashes with -T: bound it with timeout instead
PAGE = b"hello from busybox\n"


def busybox_web_layer() -> bytes:
    """busybox serving PAGE on port 80 (httpd in the foreground is the container's command)."""
    busybox = imagetools.BUSYBOX.read_bytes()
    return ib.layer(
        ib.dir("bin"), ib.file("bin/busybox", busybox, 0o755),
        *[ib.symlink(f"bin/{applet}", "busybox") for applet in APPLETS],
        ib.dir("usr"), ib.dir("usr/bin"), ib.dir("etc"), ib.file("etc/os-release", b"ID=busybox\n"),
        ib.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"),
        ib.file("etc/group", b"root:x:0:\n"),
        ib.dir("www"), ib.file("www/index.html", PAGE), ib.dir("tmp", 0o1777))


@pytest.fixture(scope="module")
def web_image(host, tmp_path_factory):
    from nspawnctl.sources.oci import parse_platform
    work = tmp_path_factory.mktemp("netimg")
    layers = [busybox_web_layer()]
    config = ib.image_config([ib.sha256(t) for t in layers], parse_platform(None).architecture,
                             Entrypoint=["/bin/httpd", "-f", "-p", "80", "-h", "/www"],
                             Cmd=None, Env=["PATH=/bin"], WorkingDir="/", User=None,
                             ExposedPorts={"80/tcp": {}}, Volumes=None)
    ib.oci_layout(work / "web", layers, config=config)
    archive = ib.tar_tree(work / "web", work / "web.tar")
    shutil.copyfile(archive, host.path("/root/web.tar"))
    yield "oci-archive:/root/web.tar"
    host.run(["rm", "-f", "/root/web.tar"])


@pytest.fixture(scope="module")
def world(host):
    if not outside.isolated(host):
        pytest.skip("the outside world is made only in the testbed or the VM tier's VM")
    with outside.outside_world(host) as w:
        yield w




def wget_fails(nspawnctl, name, url):
    """A GET from container NAME that must fail by the network (refused, unreachable, timed
    out), not because the client broke."""
    r = nspawnctl("exec", name, "--", "timeout", "-s", "KILL", "3", "wget", "-q", "-O", "-",
                  url, check=False)
    assert r.returncode not in (0, SEGFAULT), str(r)
    return r


def address_of(nspawnctl, name) -> str:
    (address,) = listing(nspawnctl)[name]["address"]
    return address


def leader(nspawnctl, name) -> str:
    return str(json.loads(nspawnctl("status", name, "--json").stdout)["leader"])


def in_container_netns(host, nspawnctl, name):
    """A runner for outside.fetch that sends from inside the container's network."""
    pid = leader(nspawnctl, name)
    return lambda argv: host.run(["nsenter", "-t", pid, "-n", *argv])


def lan(host):
    return lambda argv: host.run(["ip", "netns", "exec", outside.LAN_NS, *argv])


def http_get_bash(url_host: str) -> list[str]:
    """GET / with bash's /dev/tcp (the default image has no curl, wget or python)."""
    return ["bash", "-c", f"exec 3<>/dev/tcp/{url_host}/80 && "
                          "printf 'GET / HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n' >&3 && cat <&3"]


# --- a booted container on the default network -------------------------------------------

def test_booted_container_gets_address_route_dns_and_nat(host, nspawnctl, world, made):
    name = made("netboot")
    nspawnctl("start", name)
    address = address_of(nspawnctl, name)
    assert ipaddress.ip_address(address) in ipaddress.ip_network(DEFAULT_SUBNET)
    status = json.loads(nspawnctl("status", name, "--json").stdout)
    assert status["address"] == [address] and status["network"] == "default"

    routes = host.run(["nsenter", "-t", leader(nspawnctl, name), "-n", "ip", "-4", "route"])
    assert "default via 192.0.2.1 dev host0" in routes.stdout, str(routes)
    resolv = nspawnctl("exec", name, "--", "cat", "/etc/resolv.conf").stdout
    assert f"nameserver {outside.DNS_ADDR}" in resolv
    assert "127.0.0." not in resolv
    r = nspawnctl("exec", name, "--", "getent", "hosts", outside.UPSTREAM_NAME)
    assert r.stdout.split()[0] == outside.HTTP_ADDR

    # egress by name, through NAT: the upstream sees the host's address, not the container's
    r = nspawnctl("exec", name, "--", *http_get_bash(outside.UPSTREAM_NAME))
    assert outside.HTTP_PAGE.strip() in r.stdout
    clients = world.http_clients(host)
    assert clients and set(clients) == {outside.HOST_UPSTREAM_ADDR}, clients

    # the host resolves the container's name (libnss-mymachines), to IPv4 only
    r = host.run(["getent", "hosts", name])
    assert r.returncode == 0 and r.stdout.split()[0] == address, str(r)

    # the address is stable across restarts
    nspawnctl("restart", name)
    assert address_of(nspawnctl, name) == address
    r = nspawnctl("exec", name, "--", *http_get_bash(outside.HTTP_ADDR))
    assert outside.HTTP_PAGE.strip() in r.stdout


# --- a single-command (OCI) container, its published ports ----------------------------------

def test_oci_container_egress_and_published_ports(host, nspawnctl, world, made, web_image):
    name = made("web", "--from", web_image, "--port", "8080:80", "--port", "127.0.0.1:8081:80")
    nspawnctl("start", name)
    row = listing(nspawnctl)[name]
    assert row["port"] == ["8080:80/tcp", "127.0.0.1:8081:80/tcp"]

    r = nspawnctl("exec", name, "--", "wget", "-q", "-O", "-", f"http://{outside.UPSTREAM_NAME}/")
    assert r.stdout == outside.HTTP_PAGE
    r = nspawnctl("exec", name, "--", "nslookup", outside.UPSTREAM_NAME, check=False)
    assert outside.HTTP_ADDR in r.stdout

    page = PAGE.decode()
    # from another machine on the LAN, from the host's own addresses, and from 127.0.0.1
    assert outside.fetch(host, f"http://{outside.HOST_LAN_ADDR}:8080/", runner=lan(host)) \
        == (True, page)
    for address in (outside.HOST_LAN_ADDR, outside.HOST_UPSTREAM_ADDR, "127.0.0.1"):
        assert outside.fetch(host, f"http://{address}:8080/") == (True, page), address
    assert outside.fetch(host, "http://127.0.0.1:8081/") == (True, page)
    # published on 127.0.0.1 only: not on the LAN
    ok, _ = outside.fetch(host, f"http://{outside.HOST_LAN_ADDR}:8081/", timeout=2,
                          runner=lan(host))
    assert not ok

    # ports change while it runs
    r = nspawnctl("set", name, "--no-port", "8081", "--port", "8082:80")
    assert "applied" in r.stdout
    assert outside.fetch(host, "http://127.0.0.1:8082/") == (True, page)
    ok, _ = outside.fetch(host, "http://127.0.0.1:8081/", timeout=2)
    assert not ok
    assert listing(nspawnctl)[name]["port"] == ["8080:80/tcp", "8082:80/tcp"]


# --- networks: names inside one, nothing across two ---------------------------------------

def test_containers_find_each_other_by_name_and_networks_are_isolated(
        host, nspawnctl, world, made, web_image):
    nspawnctl("network", "create", "n1", "--subnet", "192.0.2.128/26")
    # n2's name is too long for "nsc-" + name: its bridge is hashed, and everything below
    # (NAT, isolation, the network read back from the .nspawn file) goes through it
    n2 = "backend-of-the-shop"
    nspawnctl("network", "create", n2, "--subnet", "192.0.2.192/27")
    try:
        a = made("na", "--from", web_image, "--network", "n1")
        b = made("nb", "--from", web_image, "--network", "n1")
        c = made("nc", "--from", web_image, "--network", n2)
        for name in (a, b, c):
            nspawnctl("start", name)
        r = nspawnctl("exec", a, "--", "wget", "-q", "-O", "-", f"http://{b}/")
        assert r.stdout == PAGE.decode()
        r = nspawnctl("exec", b, "--", "wget", "-q", "-O", "-", f"http://{a}/")
        assert r.stdout == PAGE.decode()
        # across networks: neither by address nor by name
        wget_fails(nspawnctl, c, f"http://{address_of(nspawnctl, a)}/")
        wget_fails(nspawnctl, c, f"http://{a}/")
        # control: the same client reaches the outside, so its failures above are isolation
        r = nspawnctl("exec", c, "--", "wget", "-q", "-O", "-", outside.HTTP_URL)
        assert r.stdout == outside.HTTP_PAGE
        networks = {n["name"]: n for n in json.loads(
            nspawnctl("network", "list", "--json").stdout)}
        assert networks["n1"]["containers"] == [a, b] and networks[n2]["containers"] == [c]
        bridge = networks[n2]["bridge"]
        assert bridge == bridge_of(n2) and bridge in host.run(["ip", "-o", "link"]).stdout
        assert json.loads(nspawnctl("status", c, "--json").stdout)["network"] == n2

        r = nspawnctl.fails("network", "remove", "n1")
        assert "still has containers" in r.error
    finally:
        for name in ("na", "nb", "nc"):
            nspawnctl("remove", "--force", name, check=False)
    nspawnctl("network", "remove", "n1", n2)
    links = host.run(["ip", "-o", "link"]).stdout
    assert "nsc-n1" not in links and bridge_of(n2) not in links


# --- the loopback guard ------------------------------------------------------------------------

def test_lan_cannot_reach_the_hosts_loopback_services(host, nspawnctl, world):
    """route_localnet is on for nspawnctl's bridges; with it on everywhere (kube-proxy does
    that), a LAN machine could send to the host's 127.0.0.1 services: the guard stops it."""
    server = host.popen(["socat", "TCP-LISTEN:7777,bind=127.0.0.1,reuseaddr,fork",
                         "SYSTEM:echo secret"])
    run_lan = lan(host)
    saved = host.run(["sysctl", "-n", "net.ipv4.conf.all.route_localnet"]).stdout.strip()
    try:
        wait_for(lambda: host.run(["socat", "-", "TCP:127.0.0.1:7777"]).stdout.strip()
                 == "secret", what="the loopback service")
        host.run(["sysctl", "-w", "net.ipv4.conf.all.route_localnet=1",
                  f"net.ipv4.conf.{outside.HOST_LAN_LINK}.route_localnet=1"])
        # the LAN machine sends to 127.0.0.1 through the host, as an attacker would
        run_lan(["ip", "addr", "flush", "dev", "lo"])
        run_lan(["sysctl", "-w", "net.ipv4.conf.all.route_localnet=1"])
        run_lan(["ip", "route", "add", "127.0.0.0/8", "via", outside.HOST_LAN_ADDR])

        def probe():
            return run_lan(["socat", "-T", "2", "-", "TCP:127.0.0.1:7777,connect-timeout=2"])

        assert "secret" not in probe().stdout  # the guard holds
        # control: without nspawnctl's guard chain the same probe gets through
        for chain in ("guard", "input"):
            host.run(["nft", "delete", "chain", "inet", "nspawnctl", chain])
        assert "secret" in probe().stdout, "the probe cannot show the guard working"
    finally:
        host.run(["sysctl", "-w", f"net.ipv4.conf.all.route_localnet={saved}"])
        server.kill()
        server.wait()
        nspawnctl("network", "apply")
    assert host.run(["nft", "list", "chain", "inet", "nspawnctl", "guard"]).returncode == 0


# --- a container's root against the host (issue 26, items 5 and 6) -----------------------------

SERVERS = "/usr/src/nspawnctl/tests/netns/servers.py"  # the worktree, bound into the testbed
RP_FILTER = ("net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter",
             "net.ipv4.conf.nsc-default.rp_filter")
RA_PREFIX = "2001:db8:26::/64"


def as_container_root(host, nspawnctl, name):
    """A runner of argv as the root of container NAME: in its user namespace (when it has one
    of its own) and network namespace, with the testbed's tools (the image has no python)."""
    pid = leader(nspawnctl, name)
    own = host.run(["readlink", f"/proc/{pid}/ns/user", "/proc/self/ns/user"]).stdout.split()
    userns = ["-U"] if own[0] != own[1] else []
    return lambda argv: host.run(["nsenter", "-t", pid, *userns, "-n", *argv])


def host_ipv6(host, bridge) -> dict:
    return {"default routes": host.run(["ip", "-6", "route", "show", "default"]).stdout,
            "bridge addresses": host.run(["ip", "-6", "addr", "show", "dev", bridge]).stdout}


def test_a_containers_router_advertisement_gives_the_host_nothing(host, nspawnctl, world, made,
                                                                   web_image):
    """The container's root turns IPv6 on for its own host0 (nspawnctl turned it off), takes
    a link-local address and advertises itself as a router: the host takes no route and no
    address.  The control: with the bridge at the kernel's defaults and without the guard and
    input chains (deleting the whole table would bring nspawnctl-network.service's watch to
    put it back), the same advertisement is taken."""
    name = made("ra", "--from", web_image)
    nspawnctl("start", name)
    root = as_container_root(host, nspawnctl, name)
    bridge = "nsc-default"
    r = root(["sysctl", "-w", "net.ipv6.conf.host0.disable_ipv6=0"])
    assert r.returncode == 0, str(r)
    r = root(["ip", "addr", "add", "fe80::bad/64", "dev", "host0", "nodad"])
    assert r.returncode == 0, str(r)
    advertise = ["python3", SERVERS, "ra", "host0", RA_PREFIX]
    try:
        r = root(advertise)
        assert r.returncode == 0, str(r)
        time.sleep(1)
        assert host_ipv6(host, bridge) == {"default routes": "", "bridge addresses": ""}
        assert host.run(["sysctl", "-n", f"net.ipv6.conf.{bridge}.disable_ipv6"]
                        ).stdout.strip() == "1"
        # the control
        host.run(["sysctl", "-w", f"net.ipv6.conf.{bridge}.disable_ipv6=0",
                  f"net.ipv6.conf.{bridge}.accept_ra=1"])
        for chain in ("guard", "input"):
            host.run(["nft", "delete", "chain", "inet", "nspawnctl", chain])

        def taken():
            root(advertise)
            return "fe80::bad" in host_ipv6(host, bridge)["default routes"]
        wait_for(taken, timeout=10, what="the control: the host taking the advertisement")
    finally:
        nspawnctl("network", "apply")
    assert host_ipv6(host, bridge) == {"default routes": "", "bridge addresses": ""}


def test_the_host_is_closed_to_a_containers_root(host, nspawnctl, world, made, web_image):
    """A host service on every address answers the LAN, never a container (on the gateway,
    the LAN address, over TCP or UDP); the container's DNS and egress keep working."""
    name = made("probe", "--from", web_image)
    nspawnctl("start", name)
    host.run(["mkdir", "-p", "/run/host-service"])
    server = host.popen(["python3", "-m", "http.server", "--bind", "::", "--directory",
                         "/run/host-service", "7778"], stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: outside.fetch(host, f"http://{outside.HOST_LAN_ADDR}:7778/",
                                       runner=lan(host))[0], what="the host's service")
        for address in ("192.0.2.1", outside.HOST_LAN_ADDR, outside.HOST_UPSTREAM_ADDR):
            wget_fails(nspawnctl, name, f"http://{address}:7778/")
        root = as_container_root(host, nspawnctl, name)
        ok, _ = outside.fetch(host, "http://192.0.2.1:7778/", timeout=2, runner=root)
        assert not ok
        # what it is given still works: DNS (the outside's resolver), egress through NAT
        r = nspawnctl("exec", name, "--", "wget", "-q", "-O", "-", f"http://{outside.UPSTREAM_NAME}/")
        assert r.stdout == outside.HTTP_PAGE
        # the control: without the input chain the container gets in (the chain, not the
        # table: nspawnctl-network.service puts a deleted table back)
        host.run(["nft", "delete", "chain", "inet", "nspawnctl", "input"])
        r = nspawnctl("exec", name, "--", "timeout", "-s", "KILL", "3", "wget", "-q", "-O",
                      "/dev/null", "http://192.0.2.1:7778/", check=False)
        assert r.returncode == 0, str(r)
    finally:
        server.kill()
        server.wait()
        nspawnctl("network", "apply")


def test_forged_sources_from_a_containers_root_never_reach_a_published_port(
        host, nspawnctl, world, made, web_image):
    """The root of a container on another network sends datagrams with forged sources to a
    published port (rp_filter 0 on the host, so that the table is what is tested): none
    arrives; one with its own address does."""
    nspawnctl("network", "create", "nx", "--subnet", "192.0.2.224/28")
    log = "/run/forged.log"
    receiver, saved = None, {}
    try:
        victim = made("victim", "--from", web_image, "--port", "5399:5399/udp")
        attacker = made("forger", "--from", web_image, "--network", "nx")
        for name in (victim, attacker):
            nspawnctl("start", name)
        saved = {key: host.run(["sysctl", "-n", key]).stdout.strip() for key in RP_FILTER}
        host.run(["sysctl", "-w", *[f"{key}=0" for key in RP_FILTER],
                  "net.ipv4.conf.nsc-nx.rp_filter=0"])
        host.run(["rm", "-f", log])
        receiver = host.popen(["nsenter", "-t", leader(nspawnctl, victim), "-n", "python3",
                               SERVERS, "udp", victim, "0.0.0.0", "5399", log],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert receiver.stdout.readline().strip() == "ready"
        root = as_container_root(host, nspawnctl, attacker)
        own = address_of(nspawnctl, attacker)
        for source in ("198.51.100.7", address_of(nspawnctl, victim), "192.0.2.1"):
            r = root(["python3", SERVERS, "forge", source, outside.HOST_LAN_ADDR, "5399",
                      f"forged:{source}"])
            assert r.returncode == 0, str(r)
        r = root(["python3", SERVERS, "forge", own, outside.HOST_LAN_ADDR, "5399", "genuine"])
        assert r.returncode == 0, str(r)

        def seen():
            return [line.split(" ", 1)[1] for line in
                    host.run(["cat", log]).stdout.splitlines()]
        wait_for(lambda: "genuine" in seen(), timeout=10, what="the genuine datagram")
        time.sleep(0.5)
        assert seen() == ["genuine"]
    finally:
        if saved:
            host.run(["sysctl", "-w", *[f"{key}={value}" for key, value in saved.items()]])
        if receiver is not None:
            receiver.kill()
            receiver.wait()
        for name in ("victim", "forger"):
            nspawnctl("remove", "--force", name, check=False)
        nspawnctl("network", "remove", "nx", check=False)


def test_a_relocated_root_leaves_the_hosts_network_alone(host, nspawnctl, world, made,
                                                         web_image):
    """Issue 26, item 8: under NSPAWNCTL_ROOT, commands that would change the host's network
    refuse with one line, and the real bridges and table are as they were."""
    made("real", "--from", web_image, "--port", "8130:80")  # a bridge, a rule to lose

    def state():
        return (host.run(["ip", "-o", "link", "show", "type", "bridge"]).stdout,
                host.run(["nft", "list", "table", "inet", "nspawnctl"]).stdout)
    before = state()
    assert "nsc-default" in before[0]
    env = {"NSPAWNCTL_ROOT": "/tmp/relocated"}
    try:
        for args in (["network", "apply"], ["network", "create", "elsewhere"],
                     ["create", "x", "--from", "scratch", "--add", "/bin/true"]):
            r = host.run(["nspawnctl", *args], env=env)
            assert r.returncode == 1, str(r)
            assert r.stderr.startswith("nspawnctl: the host's network is not changed under a "
                                       "relocated root"), str(r)
            assert state() == before, args
        # nor are the machine's units of the same names: the tree and files there are not
        # theirs (an old nspawnctl started, stopped and reloaded the real ones)
        host.run(["mkdir", "-p", "/tmp/relocated/var/lib/machines/real"])
        for args in (["start", "real"], ["kill", "real"], ["enable", "real"]):
            r = host.run(["nspawnctl", *args], env=env)
            assert r.returncode == 1, str(r)
            assert r.stderr.startswith("nspawnctl: systemd is not asked about containers "
                                       "under a relocated root"), str(r)
        unit = "systemd-nspawn@real.service"
        assert host.run(["systemctl", "is-active", unit]).stdout.strip() == "inactive"
        assert host.run(["systemctl", "is-enabled", unit]).stdout.strip() != "enabled"
    finally:
        host.run(["rm", "-rf", "/tmp/relocated"])


# --- the host's firewall reloaded --------------------------------------------------------------

def test_firewall_flush_is_repaired_without_restarting_containers(host, nspawnctl, world,
                                                                  made, web_image):
    name = made("reload", "--from", web_image, "--port", "8090:80")
    nspawnctl("start", name)
    unit = f"systemd-nspawn@{name}.service"
    started = host.run(["systemctl", "show", "-P", "ExecMainPID", unit]).stdout
    assert outside.fetch(host, "http://127.0.0.1:8090/")[0]
    host.run(["nft", "flush", "ruleset"])
    wait_for(lambda: host.run(["nft", "list", "table", "inet", "nspawnctl"]).returncode == 0,
             timeout=10, what="the table to come back")
    assert outside.fetch(host, "http://127.0.0.1:8090/") == (True, PAGE.decode())
    r = nspawnctl("exec", name, "--", "wget", "-q", "-O", "-", outside.HTTP_URL)
    assert r.stdout == outside.HTTP_PAGE
    assert host.run(["systemctl", "show", "-P", "ExecMainPID", unit]).stdout == started


# --- doctor, and a FORWARD policy of drop -------------------------------------------------

def test_doctor_and_a_forward_drop_policy(host, nspawnctl, world, made, web_image):
    r = nspawnctl("doctor", check=False)
    assert r.returncode == 0, str(r)
    checks = {c["name"]: c for c in json.loads(nspawnctl("doctor", "--json",
                                                         check=False).stdout)["checks"]}
    assert checks["ip forwarding"]["ok"]
    name = made("fwd", "--from", web_image)
    host.run(["nft", "add", "table", "ip", "filter"])
    host.run(["nft", "add chain ip filter FORWARD "
              "{ type filter hook forward priority 0 ; policy drop ; }"])
    try:
        r = nspawnctl("doctor", check=False)
        assert r.returncode == 1, str(r)
        line = next(line for line in r.stdout.splitlines() if "ip filter FORWARD" in line)
        assert line.startswith("error")
        fix = r.stdout.splitlines()[r.stdout.splitlines().index(line) + 1]
        assert fix.strip().startswith("fix: ")
        # start says why egress will not work, and what to run
        r = nspawnctl("start", name)
        assert "table ip filter chain FORWARD" in r.stderr and "drop" in r.stderr, str(r)
        wget_fails(nspawnctl, name, outside.HTTP_URL)
        # the printed fix works
        r = host.run(["sh", "-c", fix.strip()[len("fix: "):]])
        assert r.returncode == 0, str(r)
        r = nspawnctl("exec", name, "--", "wget", "-q", "-O", "-", outside.HTTP_URL, check=False)
        assert r.stdout == outside.HTTP_PAGE, (str(r), host.run(["nft", "list", "ruleset"]))
        assert r.stdout == outside.HTTP_PAGE
    finally:
        host.run(["nft", "delete", "table", "ip", "filter"])


# --- bad input: one line, nothing changed --------------------------------------------------

@pytest.mark.parametrize("args, says", [
    (["create", "bad1", "--port", "0:80"], "out of range"),
    (["create", "bad1", "--port", "80:65536"], "out of range"),
    (["create", "bad1", "--port", "80:80/sctp"], "unknown protocol"),
    (["create", "bad1", "--network", "host", "--port", "80:80"], "need an nspawnctl network"),
    (["create", "bad1", "--network", "none", "--port", "80:80"], "need an nspawnctl network"),
    (["create", "bad1", "--network", "nosuchnet"], "no network named 'nosuchnet'"),
    (["network", "create", "a" * 64], "longer than 63"),
    (["network", "create", "up", "--subnet", "203.0.113.0/24"], "overlaps"),
    (["network", "create", "dup", "--subnet", DEFAULT_SUBNET], "overlaps"),
    (["network", "create", "bad", "--subnet", "192.0.2.0/33"], "invalid subnet"),
    (["network", "remove", "nosuchnet"], "no network named"),
])
def test_bad_network_input(host, nspawnctl, world, args, says):
    before = host.run(["sh", "-c", "ls /var/lib/machines; nspawnctl network list; "
                                   "nft list table inet nspawnctl"]).stdout
    r = nspawnctl.fails(*args)
    assert says in r.error, r.error
    after = host.run(["sh", "-c", "ls /var/lib/machines; nspawnctl network list; "
                                  "nft list table inet nspawnctl"]).stdout
    assert after == before


def test_taken_ports_are_refused(host, nspawnctl, world, made, web_image):
    made("owner", "--from", web_image, "--port", "8100:80")
    r = nspawnctl.fails("create", "thief", "--from", web_image, "--port", "8100:80")
    assert "already published by container owner" in r.error
    squatter = host.popen(["socat", "TCP-LISTEN:8101,reuseaddr,fork", "SYSTEM:true"])
    try:
        wait_for(lambda: ":8101 " in host.run(["ss", "-Htln"]).stdout, what="socat listening")
        r = nspawnctl.fails("create", "thief", "--from", web_image, "--port", "8101:80")
        assert "in use on the host" in r.error
        r = nspawnctl.fails("set", "owner", "--port", "8101:80")
        assert "in use on the host" in r.error
    finally:
        squatter.kill()
        squatter.wait()
    assert "thief" not in listing(nspawnctl)


# --- nothing left -------------------------------------------------------------------------------

def test_remove_leaves_no_interface_rule_or_lease(host, nspawnctl, world, web_image):
    nspawnctl("create", "gone", "--from", web_image, "--port", "8110:80")
    nspawnctl("start", "gone")
    address = address_of(nspawnctl, "gone")

    def in_table() -> bool:
        # the address as a whole: the anti-spoofing ranges (192.0.2.2-192.0.2.126) hold
        # other addresses as text (192.0.2.12 is the start of 192.0.2.126)
        table = host.run(["nft", "list", "table", "inet", "nspawnctl"]).stdout
        return re.search(rf"(?<![\d.]){re.escape(address)}(?![\d])", table) is not None
    assert "vb-gone" in host.run(["ip", "-o", "link"]).stdout
    assert in_table()
    nspawnctl("remove", "--force", "gone")
    assert "vb-gone" not in host.run(["ip", "-o", "link"]).stdout
    assert not in_table()
    leases = json.loads(nspawnctl("network", "list", "--json").stdout)
    assert all("gone" not in n["containers"] for n in leases)


# --- a reboot of the host ----------------------------------------------------------------------

@pytest.mark.reboot
def test_enabled_container_comes_back_with_its_address_and_port(host, nspawnctl, made,
                                                                web_image):
    if not host.can_reboot:
        pytest.skip("only the testbed can be rebooted from a test")
    name = made("rebooted", "--from", web_image, "--port", "8120:80")
    nspawnctl("enable", name)
    nspawnctl("start", name)
    address = address_of(nspawnctl, name)
    host.reboot()
    wait_for(lambda: listing(nspawnctl)[name]["state"] == "running", what=f"{name} at boot")
    assert address_of(nspawnctl, name) == address
    wait_for(lambda: outside.fetch(host, "http://127.0.0.1:8120/")[0], timeout=20,
             what="the published port after the reboot")
    r = host.run(["systemctl", "is-active", "nspawnctl-network.service"])
    assert r.stdout.strip() == "active"
    nspawnctl("disable", name)
