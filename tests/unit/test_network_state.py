"""network.state: subnet picking, overlap refusal, stable leases, the registry file."""

import ipaddress
import json
import subprocess
import sys

import pytest

from nspawnctl.errors import Error
from nspawnctl.network.state import NetworkState, parse_pool

NET = ipaddress.IPv4Network
IP = ipaddress.IPv4Address


def state(tmp_path, routes=(), pool="192.0.2.0/24,198.51.100.0/24,203.0.113.0/24",
          default=None):
    return NetworkState(tmp_path / "network", pool=pool, default_subnet=default,
                        routes=lambda: [(NET(r), dev) for r, dev in routes])


def test_pool_is_cut_in_24s_and_smaller_blocks_stay_whole():
    assert parse_pool("192.0.2.0/23") == [NET("192.0.2.0/24"), NET("192.0.3.0/24")]
    assert parse_pool("192.0.2.0/25, 192.0.2.128/25") == [NET("192.0.2.0/25"),
                                                          NET("192.0.2.128/25")]
    for bad in ("", "192.0.2.1/24", "nonsense", "127.0.0.0/8"):
        with pytest.raises(Error):
            parse_pool(bad)


def test_pool_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("NSPAWNCTL_SUBNET_POOL", "203.0.113.0/24")
    monkeypatch.setenv("NSPAWNCTL_DEFAULT_SUBNET", "198.51.100.0/24")
    s = NetworkState(tmp_path, routes=lambda: [])
    assert s.get("default").subnet == NET("198.51.100.0/24")
    assert s.create("web").subnet == NET("203.0.113.0/24")


def test_default_network_is_made_on_first_use(tmp_path):
    s = state(tmp_path)
    assert s.networks() == []
    net = s.get("default")
    assert (net.name, net.bridge, net.subnet) == ("default", "nsc-default", NET("192.0.2.0/24"))
    assert s.networks() == [net]
    assert s.get("default") == net


def test_create_picks_the_first_free_subnet(tmp_path):
    s = state(tmp_path)
    assert s.create("a").subnet == NET("192.0.2.0/24")
    assert s.create("b").subnet == NET("198.51.100.0/24")
    s.remove("a")
    assert s.create("c").subnet == NET("192.0.2.0/24")
    assert [n.name for n in s.networks()] == ["b", "c"]


def test_pool_subnets_the_host_routes_to_are_skipped(tmp_path):
    s = state(tmp_path, routes=[("192.0.2.0/24", "eth0"), ("198.51.100.7/32", "eth1")])
    assert s.create("a").subnet == NET("203.0.113.0/24")
    with pytest.raises(Error) as err:
        s.create("b")
    assert "no free subnet" in err.value.message


def test_our_own_bridges_routes_are_no_conflict(tmp_path):
    # after a reboot the bridge of "a" may still route its subnet: that is not the host's
    s = state(tmp_path, routes=[("192.0.2.0/24", "nsc-a")])
    assert s.create("a").subnet == NET("192.0.2.0/24")


@pytest.mark.parametrize("subnet, routes, why", [
    ("192.0.2.0/25", [("192.0.2.0/24", "eth0")], "the host's route to 192.0.2.0/24 (dev eth0)"),
    ("192.0.2.0/24", [("192.0.2.64/26", None)], "the host's route to 192.0.2.64/26"),
    ("192.0.2.0/24", [("192.0.2.9/32", "eth0")], "192.0.2.9/32"),
])
def test_a_given_subnet_that_overlaps_a_route_is_refused(tmp_path, subnet, routes, why):
    s = state(tmp_path, routes=routes)
    with pytest.raises(Error) as err:
        s.create("a", subnet)
    assert why in err.value.message
    assert "\n" not in err.value.message
    assert s.networks() == []


def test_two_long_names_whose_bridges_collide_are_refused(tmp_path, monkeypatch):
    """A 20-bit hash of names sharing 5 characters can collide: the second network is
    refused with one line rather than sharing (and later deleting) the first's bridge."""
    import nspawnctl.network.model
    import nspawnctl.network.state
    same = lambda name: "nsc-react_00000" if name.startswith("react") else "nsc-" + name  # noqa: E731
    monkeypatch.setattr(nspawnctl.network.state, "bridge_of", same)
    monkeypatch.setattr(nspawnctl.network.model, "bridge_of", same)
    s = state(tmp_path)
    s.create("react-express", "192.0.2.0/25")
    with pytest.raises(Error) as err:
        s.create("react-express-2", "192.0.2.128/25")
    assert "share bridge nsc-react_00000 with network 'react-express'" in err.value.message
    assert [n.name for n in s.networks()] == ["react-express"]


def test_a_subnet_that_overlaps_another_network_is_refused(tmp_path):
    s = state(tmp_path)
    s.create("a", "192.0.2.0/24")
    with pytest.raises(Error) as err:
        s.create("b", "192.0.2.128/25")
    assert "network 'a' (192.0.2.0/24)" in err.value.message
    with pytest.raises(Error) as err:
        s.create("a", "198.51.100.0/24")
    assert "exists already" in err.value.message


def test_two_networks_of_the_documentation_pool(tmp_path):
    s = state(tmp_path, pool="192.0.2.0/25,192.0.2.128/25")
    assert s.get("default").subnet == NET("192.0.2.0/25")
    assert s.create("b").subnet == NET("192.0.2.128/25")


def test_leases_are_stable_until_released(tmp_path):
    s = state(tmp_path)
    net = s.create("a", "192.0.2.0/29")  # gateway .1, hosts .2-.6
    assert s.lease("a", "web") == IP("192.0.2.2")
    assert s.lease("a", "db") == IP("192.0.2.3")
    assert s.lease("a", "web") == IP("192.0.2.2")
    # a fresh object (another command) sees the same
    again = state(tmp_path)
    assert again.lease("a", "db") == IP("192.0.2.3")
    assert again.leases("a") == {"db": IP("192.0.2.3"), "web": IP("192.0.2.2")}
    assert again.leased("web") == [(net, IP("192.0.2.2"))]
    assert again.hosts_for("a") == [(IP("192.0.2.2"), "web"), (IP("192.0.2.3"), "db")]
    again.release("web")
    assert again.leases("a") == {"db": IP("192.0.2.3")}
    assert again.leased("web") == []
    assert again.lease("a", "new") == IP("192.0.2.2")
    assert again.lease("a", "web") == IP("192.0.2.4")


def test_a_full_network_says_so(tmp_path):
    s = state(tmp_path)
    s.create("a", "192.0.2.0/30")  # gateway .1, one container .2
    s.lease("a", "one")
    with pytest.raises(Error) as err:
        s.lease("a", "two")
    assert "full" in err.value.message


def test_lease_in_the_default_network_makes_it(tmp_path):
    s = state(tmp_path)
    assert s.lease("default", "web") == IP("192.0.2.2")
    assert [n.name for n in s.networks()] == ["default"]


def test_lease_checks_names(tmp_path):
    s = state(tmp_path)
    with pytest.raises(Error):
        s.lease("nosuch", "web")
    with pytest.raises(Error):
        s.lease("default", "../etc")


def test_remove_is_refused_while_leases_remain(tmp_path):
    s = state(tmp_path)
    s.create("a")
    s.lease("a", "web")
    with pytest.raises(Error) as err:
        s.remove("a")
    assert "in use by web" in err.value.message
    s.release("web")
    s.remove("a")
    assert s.networks() == []
    with pytest.raises(Error):
        s.remove("a")
    with pytest.raises(Error):
        s.get("a")


def test_registry_is_json_and_only_rewritten_on_change(tmp_path):
    s = state(tmp_path)
    s.create("a", "192.0.2.0/24")
    s.lease("a", "web")
    path = tmp_path / "network/networks.json"
    data = json.loads(path.read_text())
    assert data == {"networks": {"a": {"subnet": "192.0.2.0/24"}},
                    "leases": {"a": {"web": "192.0.2.2"}}}
    mtime = path.stat().st_mtime_ns
    s.lease("a", "web")
    s.get("a")
    assert path.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in path.parent.iterdir()) == ["lock", "networks.json"]


def test_a_failed_change_writes_nothing(tmp_path):
    s = state(tmp_path)
    s.create("a", "192.0.2.0/30")
    s.lease("a", "one")
    before = (tmp_path / "network/networks.json").read_text()
    with pytest.raises(Error):
        s.lease("a", "two")
    assert (tmp_path / "network/networks.json").read_text() == before


def test_unreadable_registry_is_one_line(tmp_path):
    (tmp_path / "network").mkdir()
    (tmp_path / "network/networks.json").write_text("{nope")
    with pytest.raises(Error) as err:
        state(tmp_path).networks()
    assert "not a network registry" in err.value.message


_LEASE_MANY = """
import sys
from nspawnctl.network.state import NetworkState
s = NetworkState(sys.argv[1], pool="192.0.2.0/24", routes=lambda: [])
for name in sys.argv[2:]:
    print(name, s.lease("default", name))
"""


def test_concurrent_leases_never_share_an_address(tmp_path):
    # Separate processes (not a fork pool: forking a pytest process can deadlock on a lock
    # another thread held), each leasing ten names at once with the others.
    path = tmp_path / "network"
    procs = [subprocess.Popen([sys.executable, "-c", _LEASE_MANY, str(path),
                               *[f"c{i}-{j}" for j in range(10)]],
                              stdout=subprocess.PIPE, text=True) for i in range(6)]
    got = []
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        got += [tuple(line.split()) for line in out.splitlines()]
    addresses = [a for _, a in got]
    assert len(set(addresses)) == len(addresses) == 60
    assert NetworkState(path, pool="192.0.2.0/24", routes=lambda: []).leases("default") == \
        {n: IP(a) for n, a in got}
