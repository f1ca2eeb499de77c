"""NSPAWNCTL_ROOT moves files only: under it, no command may change the host's network.

A host namespace of its own (one network namespace of this machine, never this machine's own)
holds a real nspawnctl network, made by the library as `nspawnctl network create` would: its
bridge with an enslaved port, the firewall table, the sysctls.  Then nspawnctl runs there as a
user would, under a relocated root whose registry knows no network at all: every command that
would touch the host's network must refuse with one line, and the bridge, its port, the table
and the sysctls must be exactly as they were.  Today's code applied the relocated registry to
the host: the real bridge deleted, the table replaced by an empty one (issue 26, item 8).
"""

import json
import os
import subprocess
import sys

import pytest

from tests.netns.lab import REPO, Lab

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

SUBNET = "192.0.2.0/28"
REFUSED = "nspawnctl: the host's network is not changed under a relocated root"


@pytest.fixture
def host(tmp_path):
    lab = Lab(tmp_path)
    lab.add_ns("host")
    try:
        lab.in_host(_make_network, SUBNET)
        lab.ip("host", "link", "add", "vb-keep", "type", "veth", "peer", "name", "keep-peer")
        lab.ip("host", "link", "set", "vb-keep", "master", "nsc-keep", "up")
        yield lab
    finally:
        lab.down()


def _make_network(subnet):
    from nspawnctl.network import bridge, firewall
    from nspawnctl.network.model import Network
    from nspawnctl.settings.networking import parse_port
    net = Network.make("keep", subnet)
    bridge.ensure_bridge(net)
    firewall.apply([net], [("192.0.2.2", parse_port("8080:80"))])


def snapshot(lab) -> dict:
    """The host namespace's network as nspawnctl could change it."""
    links = json.loads(lab.ip("host", "-j", "-d", "link").stdout)
    addrs = json.loads(lab.ip("host", "-j", "addr").stdout)
    sysctls = lab.exec("host", "sh", "-c", "grep -r . /proc/sys/net/ipv4/ip_forward "
                       "/proc/sys/net/ipv4/conf/*/route_localnet "
                       "/proc/sys/net/ipv6/conf/*/disable_ipv6 "
                       "/proc/sys/net/ipv6/conf/*/accept_ra", check=True).stdout
    return {
        "links": sorted((link["ifname"], link.get("master"), link.get("linkinfo", {})
                         .get("info_kind")) for link in links),
        "ipv4": sorted((a["ifname"], i["local"], i["prefixlen"]) for a in addrs
                       for i in a["addr_info"] if i["family"] == "inet"),
        "table": lab.nft("host", "-j", "list", "table", "inet", "nspawnctl").stdout,
        "sysctls": sysctls,
    }


def nspawnctl(lab, root, *args) -> subprocess.CompletedProcess:
    """nspawnctl ARGS in the host namespace, as a user runs it, under NSPAWNCTL_ROOT=root
    (and no system bus: nothing of this machine's systemd either)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "NSPAWNCTL_ROOT": str(root),
           "DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent"}
    return subprocess.run(["ip", "netns", "exec", lab.ns("host"), sys.executable, "-m",
                           "nspawnctl", *args], env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("args", [
    ["network", "apply"],                      # the boot unit's and ExecReload='s command
    ["network", "create", "other"],
    ["network", "remove", "keep"],             # unknown under the root: it used to re-apply
    ["network", "remove", "default"],
    ["network", "attach", "x"],
    ["create", "x", "--from", "scratch", "--add", "/bin/true"],   # the default network
    ["create", "x", "--from", "scratch", "--add", "/bin/true", "--network", "keep"],
    ["create", "x", "--from", "scratch", "--add", "/bin/true", "--port", "8081:80"],
])
def test_commands_that_would_change_the_hosts_network_refuse(host, tmp_path, args):
    root = tmp_path / "root"
    before = snapshot(host)
    r = nspawnctl(host, root, *args)
    assert snapshot(host) == before, f"{args} changed the host's network: {r.stderr}"
    lines = r.stderr.splitlines()
    assert r.returncode == 1 and lines and lines[0].startswith(REFUSED), str(r)
    assert lines[1:] == ["hint: unset NSPAWNCTL_ROOT, or use --network none, host or veth"]
    assert "Traceback" not in r.stderr
    assert not (root / "var/lib/machines/x").exists()  # nothing half made


def test_files_only_commands_still_work_under_a_relocated_root(host, tmp_path):
    """The reason NSPAWNCTL_ROOT exists: a container of files, with no network of nspawnctl's,
    is made and listed under it; the host's network is left as it was."""
    root = tmp_path / "root"
    before = snapshot(host)
    r = nspawnctl(host, root, "create", "x", "--from", "scratch", "--add", "/bin/true",
                  "--network", "none")
    assert r.returncode == 0, str(r)
    assert (root / "var/lib/machines/x").is_dir()
    r = nspawnctl(host, root, "network", "list", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == [], str(r)
    assert snapshot(host) == before
