"""A container's side of its network: address, lo and host0 up, default route.

Runs at every container start (an ExecStartPost= of its unit, in the host's namespaces),
once systemd-nspawn has made the veth pair: host0 inside, its peer enslaved to the bridge.
Only rtnl.py's netlink socket enters the container's network namespace; nothing else of
this process does, and nothing here imports pyroute2 (see rtnl.py for why).
"""

import ipaddress

from ..errors import Conflict, Error


def configure_container(leader_pid: int, address, prefixlen: int, gateway,
                        ifname: str = "host0", hairpin: bool = True) -> list[str]:
    """Give the container of leader_pid its address on ifname and a default route via
    gateway, with ifname and lo up.  Idempotent: returns what it changed ([] the second
    time).

    IPv6 is turned off on ifname before it comes up, and on its peer (the bridge port, in
    this namespace) as on the bridge (bridge.ipv6_off): nspawnctl's networks are IPv4 only,
    and with the kernel's defaults a neighbour's root sending router advertisements on the
    bridge would give the container a default route and an address through that neighbour.
    hairpin turns on hairpin mode on the port: with br_netfilter (bridge-nf-call-iptables=1,
    the kernel's default once the module is loaded) a container's connection to its own
    published port is DNAT'ed back to the port it came in by, and a bridge drops such frames
    unless the port is in hairpin mode.
    """
    from .bridge import ipv6_off  # without pyroute2: bridge.py imports it where it uses it
    from .rtnl import IFF_UP, IFLA_LINK, IFLA_MASTER, Rtnl, ipv6_off_in

    address = str(ipaddress.IPv4Address(str(address)))
    gateway = str(ipaddress.IPv4Address(str(gateway)))
    iface = ipaddress.IPv4Interface(f"{address}/{prefixlen}")
    changed = []
    netns = f"/proc/{int(leader_pid)}/ns/net"
    try:
        inner = Rtnl(netns)
    except FileNotFoundError:
        raise Conflict(f"no process {leader_pid}: the container is not running") from None
    with inner:
        lo = inner.link("lo")
        link = inner.link(ifname)
        if link is None:
            raise Error(f"the container has no interface {ifname}",
                        hint="its .nspawn file needs [Network] Bridge= (or VirtualEthernet=)")
        if lo is not None and not lo.flags & IFF_UP:
            inner.set_up(lo)
            changed.append("lo up")
        if (address, prefixlen) not in inner.addresses(link.index):
            inner.add_address(link.index, address, prefixlen,
                              str(iface.network.broadcast_address))
            changed.append(f"{ifname} {iface}")
        if not link.flags & IFF_UP:
            try:
                inner.no_ipv6_link_local(link)
            except OSError:
                pass  # a kernel without IPv6: nothing to keep off
            ipv6_off_in(netns, ifname)
            inner.set_up(link)
            changed.append(f"{ifname} up")
        if inner.default_routes() != [(gateway, link.index)]:
            inner.replace_default_route(gateway, link.index)
            changed.append(f"default via {gateway}")
        peer = link.u32(IFLA_LINK)  # the peer's index, in its own (our) namespace
    if peer:
        with Rtnl() as outer:
            port = outer.link(index=peer)
            # the peer is ours only if it points back at ifname and sits on a bridge
            if port is not None and port.u32(IFLA_LINK) == link.index and port.u32(IFLA_MASTER):
                if ipv6_off(port.name):
                    changed.append(f"{port.name} IPv6 off")
                if hairpin and not port.hairpin:
                    outer.set_hairpin(port.index)
                    changed.append(f"{port.name} hairpin")
    return changed

