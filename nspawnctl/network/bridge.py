"""nspawnctl's bridges: one per network, named nsc-NAME, holding the network's gateway.

systemd-nspawn (Bridge= in a container's .nspawn file) makes the veth pair and enslaves its
host side to the bridge; the bridge must exist, be up and hold the gateway address first.
Only links named nsc-* are ever created, changed or deleted here.
"""

import os
from pathlib import Path

from ..errors import Conflict, Error
from ..settings.networking import BRIDGE_PREFIX
from .model import Network

PROC_SYS = Path("/proc/sys")


def ensure_bridge(net: Network):
    """Make net's bridge exist, hold exactly its gateway/prefix, and be up; turn on IPv4
    forwarding and route_localnet on it, and IPv6 off (before it is up).  Idempotent: a
    second call changes nothing.

    route_localnet lets the host send a connection to 127.0.0.1 on to a container (a port
    published from 127.0.0.1, DNAT'ed in the output hook and masqueraded on its way out:
    the kernel refuses a 127.x source on any other device otherwise).  It also lets packets
    for 127.x in from the bridge, which firewall.py's loopback guard drops before routing.
    ip_forward is machine-wide: like Docker, libvirt and LXC, the host becomes a router.
    """
    import socket  # with pyroute2, here: neither is needed at start-up

    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    gateway = str(net.gateway)
    with IPRoute() as ipr:
        index = _index(ipr, net.bridge)
        if index is None:
            try:
                ipr.link("add", ifname=net.bridge, kind="bridge")
            except NetlinkError as exc:
                if exc.code != 17:  # EEXIST: another nspawnctl made it meanwhile
                    raise Error(f"cannot create bridge {net.bridge}: {exc.args[1]}") from None
            index = _index(ipr, net.bridge)
        link = ipr.get_links(index)[0]
        info = link.get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info else None
        if kind != "bridge":
            raise Conflict(f"{net.bridge} exists but is not a bridge ({kind or 'no kind'})",
                           hint=f"nspawnctl owns the names {BRIDGE_PREFIX}*: rename or "
                                f"delete that link")
        ipv6_off(net.bridge)
        have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                for a in ipr.get_addr(family=socket.AF_INET, index=index)}
        for address, prefixlen in have - {(gateway, net.prefixlen)}:
            ipr.addr("del", index=index, address=address, prefixlen=prefixlen)
        if (gateway, net.prefixlen) not in have:
            ipr.addr("add", index=index, address=gateway, prefixlen=net.prefixlen,
                     broadcast=str(net.subnet.broadcast_address))
        if not link["flags"] & 1:  # IFF_UP
            ipr.link("set", index=index, state="up")
    set_sysctl("net/ipv4/ip_forward", "1")
    set_sysctl(f"net/ipv4/conf/{net.bridge}/route_localnet", "1")


def remove_bridge(name: str):
    """Delete bridge NAME (one of ours: nsc-*) if it exists; systemd-nspawn removes the veth
    links it made."""
    assert name.startswith(BRIDGE_PREFIX), name
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        index = _index(ipr, name)
        if index is not None:
            ipr.link("del", index=index)


def exists(name: str) -> bool:
    """Whether link NAME exists: a file test, no netlink (it runs before every start)."""
    return os.path.exists(f"/sys/class/net/{name}")


def bridges() -> list[str]:
    """Names of the bridges nspawnctl owns (nsc-*) that exist now."""
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        names = (link.get_attr("IFLA_IFNAME") for link in ipr.get_links())
        return sorted(n for n in names if n and n.startswith(BRIDGE_PREFIX))


def ipv6_off(ifname: str) -> bool:
    """Turn IPv6 off on the host's side of a link of nspawnctl's (a bridge, a bridge port):
    no address, no router advertisements taken.  The networks are IPv4 only, and with the
    kernel's defaults (accept_ra=1 wherever IPv6 forwarding is off) one router advertisement
    from a container's root gave the host a default route and an address through that
    container, and host services on [::] answered on the bridge's link-local address.  The
    firewall table drops IPv6 from the bridges too (firewall.py): either holds alone.
    Nothing to do on a kernel without IPv6.  True when something changed."""
    if not (PROC_SYS / "net/ipv6/conf" / ifname).is_dir():
        return False
    changed = set_sysctl(f"net/ipv6/conf/{ifname}/accept_ra", "0")
    return set_sysctl(f"net/ipv6/conf/{ifname}/disable_ipv6", "1") or changed


def set_sysctl(key: str, value: str) -> bool:
    """Write /proc/sys/KEY (this network namespace's) unless it already holds value; True
    when it was written."""
    path = PROC_SYS / key
    try:
        if path.read_text().strip() == value:
            return False
        path.write_text(value + "\n")
        return True
    except OSError as exc:
        raise Error(f"cannot set {key.replace('/', '.')}={value}: {exc.strerror}",
                    hint="run as root") from None


def _index(ipr, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None
