"""The network operations' own logic: hosts blocks, port edits and conflicts (no root)."""

from pathlib import Path

import pytest

from nspawnctl.errors import Error
from nspawnctl.network import containers as network
from nspawnctl.ops import network as network_ops
from nspawnctl.settings.model import ContainerConfig, edit
from nspawnctl.settings.networking import parse_port
from tests.unit.fakes import FakeBus, context

BLOCK = [network.HOSTS_BEGIN.format(network="default"), "192.0.2.2\ta", "192.0.2.3\tb",
         network.HOSTS_END]


def test_hosts_block_is_added_and_the_rest_kept():
    old = "127.0.0.1\tlocalhost\n10.0.0.9\tmine  # the container's own\n"
    new = network.merge_hosts(old, BLOCK)
    assert new.startswith(old)
    assert new.endswith("\n".join(BLOCK) + "\n")


def test_hosts_block_is_replaced_not_repeated():
    once = network.merge_hosts("127.0.0.1\tlocalhost\n", BLOCK)
    changed = BLOCK[:2] + BLOCK[3:]  # b left
    twice = network.merge_hosts(once, changed)
    assert twice.count(network.HOSTS_END) == 1
    assert "\tb" not in twice and "\ta" in twice
    assert network.merge_hosts(twice, changed) == twice  # idempotent


def test_hosts_gets_localhost_when_it_has_none():
    assert network.merge_hosts("", BLOCK).splitlines()[0] == "127.0.0.1\tlocalhost"


def on_default(*ports):
    return ContainerConfig(network="default", ports=tuple(parse_port(p) for p in ports))


def test_set_adds_ports_and_no_port_removes_them():
    cfg = on_default("8080:80", "127.0.0.1:5353:53/udp")
    assert [str(p) for p in edit(cfg, {"ports": ("9000:90",)}).ports] == \
        ["8080:80/tcp", "127.0.0.1:5353:53/udp", "9000:90/tcp"]
    assert [str(p) for p in edit(cfg, {"no_ports": ("8080",)}).ports] == \
        ["127.0.0.1:5353:53/udp"]
    assert [str(p) for p in edit(cfg, {"no_ports": ("5353/udp",)}).ports] == ["8080:80/tcp"]
    with pytest.raises(Error, match="nothing to remove"):  # 5353 is published for udp only
        edit(cfg, {"no_ports": ("5353/tcp",)})


def test_no_port_that_matches_nothing_is_an_error():
    with pytest.raises(Error, match="nothing to remove"):
        edit(on_default("8080:80"), {"no_ports": ("9999",)})
    with pytest.raises(Error, match="invalid --no-port"):
        edit(on_default("8080:80"), {"no_ports": ("80/sctp",)})


def test_a_port_given_again_replaces_the_old_mapping():
    cfg = edit(on_default("8080:80"), {"ports": ("8080:81",)})
    assert [str(p) for p in cfg.ports] == ["8080:81/tcp"]


def test_ports_need_a_network_and_are_unique():
    with pytest.raises(Error, match="need an nspawnctl network"):
        ContainerConfig(network="host", ports=(parse_port("80:80"),))
    with pytest.raises(Error, match="published twice"):
        on_default("80:80", "80:81")


@pytest.mark.parametrize("mine, theirs, clash", [
    ("8080:80", "8080:80", True),
    ("8080:80", "127.0.0.1:8080:80", True),    # all addresses include 127.0.0.1
    ("127.0.0.1:8080:80", "8080:80", True),
    ("127.0.0.1:8080:80", "127.0.0.2:8080:80", False),
    ("8080:80/udp", "8080:80/tcp", False),
    ("8081:80", "8080:80", False),
])
def test_ports_published_by_another_container_are_refused(monkeypatch, mine, theirs, clash):
    monkeypatch.setattr(network, "publications",
                        lambda paths: [("other", "192.0.2.9", parse_port(theirs))])
    monkeypatch.setattr(network, "_held_by_host", lambda port: None)
    cfg = on_default(mine)
    if clash:
        with pytest.raises(Error, match="already published by container other"):
            network.check_ports(None, "me", cfg)
    else:
        network.check_ports(None, "me", cfg)


# --- a relocated root never drives the host's network (issue 26, item 8) ----------------------

def test_only_the_hosts_own_paths_are_not_relocated(tmp_path, monkeypatch):
    from nspawnctl.paths import Paths
    assert not Paths.under(Path("/")).relocated
    monkeypatch.delenv("NSPAWNCTL_ROOT", raising=False)
    assert not Paths.from_env().relocated
    for root in (tmp_path, Path("//"), Path("/proc/1/root"), Path("")):
        monkeypatch.setenv("NSPAWNCTL_ROOT", str(root))
        assert Paths.from_env().relocated, root


def relocated_paths(tmp_path, monkeypatch):
    """Paths under tmp_path, with every way to the host's network made to fail the test."""
    from nspawnctl.network import bridge, firewall
    from nspawnctl.paths import Paths

    def touched(*args, **kwargs):
        raise AssertionError("the host's network was touched under a relocated root")
    for module, names in ((bridge, ("ensure_bridge", "remove_bridge", "bridges", "set_sysctl")),
                          (firewall, ("apply", "remove", "present"))):
        for name in names:
            monkeypatch.setattr(module, name, touched)
    return Paths.under(tmp_path)


@pytest.mark.parametrize("call", [
    lambda p: network.apply_host(p),
    lambda p: network.ensure_host(p, ContainerConfig(network="default")),
    lambda p: network.ensure_host_unit(p, FakeBus()),
    lambda p: network_ops.create_network(context(p), "n1", None),
    lambda p: network_ops.remove_network(context(p), "default"),
    lambda p: network.attach(p, "x", 1),
    lambda p: network_ops.attach_running(context(p), "x"),
    lambda p: network.join(p, "x", ContainerConfig(network="default")),
    lambda p: network.joined(p, FakeBus(), "x", ContainerConfig(network="default")),
    lambda p: network_ops.watch(context(p)),
])
def test_host_network_operations_refuse_under_a_relocated_root(tmp_path, monkeypatch, call):
    paths = relocated_paths(tmp_path, monkeypatch)
    with pytest.raises(Error, match="not changed under a relocated root") as caught:
        call(paths)
    assert "\n" not in caught.value.message
    assert not (tmp_path / "var/lib/nspawnctl/network/networks.json").exists()  # nothing made


def test_joining_no_network_under_a_relocated_root_is_fine(tmp_path, monkeypatch):
    paths = relocated_paths(tmp_path, monkeypatch)
    assert network.join(paths, "x", ContainerConfig(network="none")) is None


# --- IPv6 off on the host's side of nspawnctl's links (issue 26, item 5) ----------------------

def test_ipv6_off_writes_both_knobs_once_and_skips_a_kernel_without_ipv6(tmp_path, monkeypatch):
    from nspawnctl.network import bridge
    monkeypatch.setattr(bridge, "PROC_SYS", tmp_path)
    assert bridge.ipv6_off("nsc-a") is False  # no /proc/sys/net/ipv6: nothing to turn off
    conf = tmp_path / "net/ipv6/conf/nsc-a"
    conf.mkdir(parents=True)
    (conf / "disable_ipv6").write_text("0\n")
    (conf / "accept_ra").write_text("1\n")
    assert bridge.ipv6_off("nsc-a") is True
    assert (conf / "disable_ipv6").read_text() == "1\n"
    assert (conf / "accept_ra").read_text() == "0\n"
    assert bridge.ipv6_off("nsc-a") is False  # idempotent


@pytest.mark.parametrize("offered, applied", [
    (["198.51.100.53"], False),       # the table opens what the container is given
    (None, True),                     # no table (flushed): brought back
    (["192.0.2.53"], True),           # the host's resolvers changed since the last apply
    ([], True),
])
def test_a_start_brings_the_table_up_to_date_with_the_resolvers(monkeypatch, tmp_path,
                                                                offered, applied):
    from nspawnctl.network import firewall, inside, resolv
    from nspawnctl.network.model import Network
    from nspawnctl.paths import Paths
    calls = []
    net = Network.make("default", "192.0.2.0/25")

    class State:
        def get(self, name):
            return net

        def lease(self, network, name):
            return "192.0.2.2"

        def leased(self, name):  # on no other network (settle: nothing to leave)
            return [(net, "192.0.2.2")]
    monkeypatch.setattr(network, "load_config", lambda paths, name: on_default())
    monkeypatch.setattr(network, "network_state", lambda paths: State())
    monkeypatch.setattr(network, "apply_host", lambda paths: calls.append("apply"))
    monkeypatch.setattr(network, "write_hosts", lambda *args, **kwargs: None)
    monkeypatch.setattr(firewall, "offered_dns", lambda: offered)
    monkeypatch.setattr(resolv, "container_nameservers_for_host", lambda: ["198.51.100.53"])
    monkeypatch.setattr(resolv, "container_resolv_conf_for_host", lambda: None)
    monkeypatch.setattr(inside, "configure_container", lambda *args: calls.append("inside"))
    network.attach(Paths.under(Path("/")), "x", 1)
    assert calls == (["apply", "inside"] if applied else ["inside"])
