"""Containers on nspawnctl's networks: their addresses, the host side (bridges and the firewall
table) and the container side at every start; the services the operations share
(ops/network.py holds the network commands themselves).

A container whose network setting names an nspawnctl network ("default" or one made with
`nspawnctl network create`) holds a lease on it from its create on: a stable address, which it
keeps across restarts and reboots until it leaves the network or is removed.  The host side is
rendered from nspawnctl's state, whole, every time something changes (bridges are made if
missing, the firewall table replaced in one transaction), so it can also be brought back at
boot or after a firewall reload by running `nspawnctl network apply` (units/
nspawnctl-network.service).  The container side (address, route, resolv.conf, /etc/hosts) is
set by `attach`, which the container's unit runs as ExecStartPost= at every start, however it
was started.
"""

import errno
import ipaddress
from collections.abc import Callable
from pathlib import Path

from ..errors import Conflict, Error, Usage
from ..fs.files import mkdir_private
from ..fs.locks import flocked
from ..paths import Paths
from ..settings import running
from ..settings.files import load_config
from ..settings.model import NETWORK_MODES, ContainerConfig
from ..settings.networking import Port
from ..systemd.bus import Bus
from ..systemd.unitfiles import install, render
from . import bridge, firewall, inside, resolv
from .model import Network
from .state import NetworkState

HOST_UNIT = "nspawnctl-network.service"
HOSTS_BEGIN = "# nspawnctl: containers of network {network} (rewritten by nspawnctl)"
HOSTS_END = "# nspawnctl: end"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
FORWARDING_OFF = "IPv4 forwarding is off: containers on nspawnctl networks cannot reach out"
# Its own sysctl.d file, so that it survives a reboot and no other setting is overwritten.
FORWARDING_FILE = "/etc/sysctl.d/60-nspawnctl-ip-forward.conf"
FORWARDING_FIX = (f"echo 'net.ipv4.ip_forward = 1' > {FORWARDING_FILE} && "
                  f"sysctl -p {FORWARDING_FILE}")


def network_state(paths: Paths) -> NetworkState:
    return NetworkState(paths.state / "network")


def managed(cfg: ContainerConfig) -> bool:
    """Whether cfg puts the container on an nspawnctl network (not host, none or bare veth)."""
    return cfg.network not in NETWORK_MODES


def require_host_network(paths: Paths):
    """Refuse to change the host's network from a relocated root's registry.

    Bridge names (15 bytes: no room for a root's tag), the table, ip_forward and the boot unit
    are one for the whole machine, and a relocated registry knows nothing of the host's
    networks: applying it deleted the host's real bridges and emptied its table.  Relocated
    roots hold containers of files (the unit tests'), never a host network."""
    if paths.relocated:
        raise Error("the host's network is not changed under a relocated root "
                    "(NSPAWNCTL_ROOT): its nsc-* bridges and firewall table are the whole "
                    "machine's", hint="unset NSPAWNCTL_ROOT, or use --network none, host or "
                                      "veth")


# ---------------------------------------------------------------- joining and leaving

def join(paths: Paths, name: str, cfg: ContainerConfig,
         keep: str | None = None) -> ipaddress.IPv4Address | None:
    """Lease NAME an address on cfg's network (made first if it is the default one), after
    checking that its ports are free; the host side is then brought up to date.  Leaves any
    other network NAME was on, but keep: the one it runs on until a restart moves it (its
    address stays its own, and its ports go there meanwhile).  Returns the address, or None
    when cfg has no nspawnctl network."""
    state = network_state(paths)
    if managed(cfg) or state.leased(name):
        require_host_network(paths)
    if managed(cfg):
        state.get(cfg.network)  # refuses an unknown network (changing nothing); makes default
    check_ports(paths, name, cfg)
    if any(net.name not in (cfg.network, keep) for net, _ in state.leased(name)):
        state.release(name, keep=(cfg.network,) + ((keep,) if keep else ()))
    if not managed(cfg):
        return None
    return state.lease(cfg.network, name)


def settle(paths: Paths, name: str, cfg: ContainerConfig) -> bool:
    """At a start: the settings saved are what runs now, so the record of the last run goes,
    and the network it ran on until this start (kept by join) with it; its peers' hosts files
    and the firewall follow.  Returns whether it left a network.  Cheap when there is nothing
    to do (a file read), as it runs before every start."""
    running.forget(paths, name)
    state = network_state(paths)
    if not any(net.name != cfg.network for net, _ in state.leased(name)):
        return False
    require_host_network(paths)
    state.release(name, keep=(cfg.network,))
    apply_host(paths)
    write_all_hosts(paths)
    return True


def joined(paths: Paths, bus: Bus, name: str, cfg: ContainerConfig):
    """After a container joined cfg's network (create, clone): the boot unit installed, its
    ports published, its peers able to find it by name."""
    require_host_network(paths)
    ensure_host_unit(paths, bus)
    if cfg.ports:
        apply_host(paths)  # its ports are published from now on
    else:
        # nothing of its own to publish: the host side only has to be there (a fresh default
        # network's bridge).  Applying it all again cost a warm create ~0.12 s (netlink).
        ensure_host(paths, cfg)
    # The others learn its name now; its own hosts file is written when it starts, so the
    # fresh tree holds nothing nspawnctl did not have to write (an --overlay upper layer stays
    # its identity alone).
    write_hosts(paths, network_state(paths).get(cfg.network), skip=name)


def check_ports(paths: Paths, name: str, cfg: ContainerConfig):
    """Refuse ports another container publishes, and ports a host process holds (its
    traffic would be taken from it)."""
    mine = {(p.host_ip, p.host_port, p.proto) for p in cfg.ports}
    if not mine:
        return
    for other, _address, port in publications(paths):
        if other == name:
            continue
        for ip, number, proto in mine:
            if number == port.host_port and proto == port.proto \
                    and None in (ip, port.host_ip) or (ip, number, proto) == (
                        port.host_ip, port.host_port, port.proto):
                raise Conflict(f"port {number}/{proto} is already published by container "
                               f"{other}", hint=f"see nspawnctl status {other}")
    for port in cfg.ports:
        holder = _held_by_host(port)
        if holder:
            raise Conflict(f"port {port.host_port}/{port.proto} is in use on the host "
                           f"({holder})", hint="stop what listens there, or pick another port")


def _held_by_host(port: Port) -> str | None:
    """Whether a host socket holds the port: binding it ourselves is the kernel's own test."""
    import socket  # here: 2 ms of start-up that only publishing a port needs
    kind = socket.SOCK_STREAM if port.proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind((port.host_ip or "0.0.0.0", port.host_port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"{port.host_ip or '*'}:{port.host_port} is bound by a process"
            if exc.errno == errno.EADDRNOTAVAIL:
                raise Usage(f"{port.host_ip} is not an address of this host",
                            hint="publish on one of its addresses, or leave HOSTIP out") \
                    from None
            raise
    return None


# ---------------------------------------------------------------- the host side

def publications(paths: Paths) -> list[tuple[str, str, Port]]:
    """(container, address, port) for every published port of every container."""
    state = network_state(paths)
    found = []
    for name in state.holders():  # only a container with a lease can publish a port
        try:
            cfg = load_config(paths, name)
        except Error:
            continue
        # its ports apply at once; its network at its next start: until then, to the
        # address it runs with
        on = running.effective(cfg, running.read(paths, name))
        if not cfg.ports or not managed(on):
            continue
        for net, address in state.leased(name):
            if net.name == on.network:
                found += [(name, str(address), port) for port in cfg.ports]
    return found


def apply_host(paths: Paths):
    """Bridges for every network and the firewall table for every published port: the whole
    host side, from nspawnctl's state (idempotent; what the boot unit runs).  Under a lock, so
    that two commands never load their views of the state in the wrong order."""
    require_host_network(paths)
    state = network_state(paths)
    mkdir_private(paths.state)
    state.dir.mkdir(parents=True, exist_ok=True)
    with flocked(state.dir / "host.lock", lambda: None):
        networks = state.networks()
        for net in networks:
            bridge.ensure_bridge(net)
        # bridges of networks that are gone (a `network remove` killed after its commit)
        for name in set(bridge.bridges()) - {net.bridge for net in networks}:
            bridge.remove_bridge(name)
        firewall.apply(networks, [(address, port) for _, address, port in publications(paths)],
                       resolv.container_nameservers_for_host())


def ensure_host(paths: Paths, cfg: ContainerConfig):
    """Before a start: cfg's bridge must exist (systemd-nspawn refuses to start without it) and
    the firewall table must be loaded; apply the host side when either is missing."""
    require_host_network(paths)
    net = network_state(paths).get(cfg.network)
    if not bridge.exists(net.bridge) or not firewall.present():
        apply_host(paths)


def ensure_host_unit(paths: Paths, bus: Bus):
    """Install units/nspawnctl-network.service (brings the host side up at boot and after a
    firewall reload), enable it and start it; nothing when it is already so."""
    require_host_network(paths)
    changed = install(paths.units, HOST_UNIT, render(HOST_UNIT))
    if changed:
        bus.reload()
        bus.enable_units([HOST_UNIT])
    if bus.active_state(HOST_UNIT) != "active":
        bus.start_unit(HOST_UNIT)


def forwarding_on(path: Path | None = None) -> bool:
    """Whether the host forwards IPv4 (bridge.ensure_bridge turns it on; a sysctl reload or an
    admin may turn it off again).  Unreadable counts as on: doctor says more."""
    try:
        return (path or IP_FORWARD).read_text().strip() == "1"
    except OSError:
        return path is None


def reach_warnings() -> list[str]:
    """Why containers on nspawnctl networks cannot reach out, as doctor says it, one line each
    with the fix: what a start or an upgrade checks on its way (a /proc read and one
    ruleset listing), so that the user hears it there and not from apt's "Temporary failure
    resolving" later."""
    lines = [] if forwarding_on() else [f"{FORWARDING_OFF}; turn it on: {FORWARDING_FIX}"]
    return lines + forward_warnings()


def forward_warnings() -> list[str]:
    """Other tables' forward chains that would drop the containers' traffic (firewall.py's
    forward_blockers), one line each with the command that lets it through."""
    try:
        return firewall.forward_blockers()
    except Error:
        return []  # no nftables to ask: doctor says so


def attach(paths: Paths, name: str, leader: int, report: Callable[[str], None] | None = None):
    """Configure a just-started container of an nspawnctl network from outside: its address
    and default route inside its network namespace, its resolv.conf and /etc/hosts in its
    tree.  Runs as ExecStartPost= of its unit (by `nspawnctl network attach NAME`)."""
    require_host_network(paths)
    cfg = load_config(paths, name)
    if not managed(cfg):
        return
    state = network_state(paths)
    net = state.get(cfg.network)
    settle(paths, name, cfg)  # started however (machinectl too): off the network it ran on
    address = state.lease(cfg.network, name)
    # The table gone (flushed by someone since), or opening DNS at other resolvers than the
    # ones the container is given now (the host's resolv.conf changed): bring it up to date.
    if firewall.offered_dns() != sorted(resolv.container_nameservers_for_host(),
                                        key=ipaddress.IPv4Address):
        apply_host(paths)
    inside.configure_container(leader, address, net.prefixlen, net.gateway)
    tree = paths.tree(name)
    text = resolv.container_resolv_conf_for_host()
    if text is None:
        if report:
            report(f"warning: {name}: the host has no usable DNS server to give it")
    else:
        resolv.write_etc_file(tree, "resolv.conf", text)
    # Its own hosts file only: the others learnt its name when it joined (create, set).
    write_hosts(paths, net, only=name)


def write_all_hosts(paths: Paths):
    for net in network_state(paths).networks():
        write_hosts(paths, net)


def write_hosts(paths: Paths, net: Network, only: str | None = None,
                skip: str | None = None):
    """Every container of net (or only that one) finds the others by name: a block in each
    one's /etc/hosts, kept apart from the rest of the file, which stays the container's own."""
    state = network_state(paths)
    mkdir_private(paths.state)
    state.dir.mkdir(parents=True, exist_ok=True)
    # Under the host lock: two creates at once must not write each other's stale view last.
    with flocked(state.dir / "host.lock", lambda: None):
        _write_hosts(paths, state, net, only, skip)


def _write_hosts(paths: Paths, state: NetworkState, net: Network, only: str | None,
                 skip: str | None):
    block = [HOSTS_BEGIN.format(network=net.name)]
    block += [f"{address}\t{name}" for address, name in state.hosts_for(net.name)]
    block.append(HOSTS_END)
    for name in state.leases(net.name):
        if (only is not None and name != only) or name == skip:
            continue
        tree = paths.tree(name)
        try:
            old = resolv.read_etc_file(tree, "hosts") or ""
            text = merge_hosts(old, block)
            if text != old:
                resolv.write_etc_file(tree, "hosts", text)
        except (Error, OSError):
            # a container removed meanwhile (its lease goes with it), or whose /etc is no
            # directory: nothing to write there
            continue


def merge_hosts(old: str, block: list[str]) -> str:
    """old with nspawnctl's block replaced (or added at the end)."""
    lines = old.splitlines()
    out, inside_block = [], False
    for line in lines:
        if line.startswith(HOSTS_BEGIN.split("{")[0]):
            inside_block = True
            continue
        if inside_block:
            if line == HOSTS_END:
                inside_block = False
            continue
        out.append(line)
    if not any(line.split()[1:2] == ["localhost"] for line in out if line.strip()):
        out.insert(0, "127.0.0.1\tlocalhost")
    return "\n".join(out + block) + "\n"
