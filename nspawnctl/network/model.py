"""What a network is: a bridge and its IPv4 subnet, checked once where it comes in.

Frozen values with one-line errors: everything after parsing can trust them.  The words a
container's settings use (network names, published ports) live in settings.networking.
"""

import ipaddress
from dataclasses import dataclass

from ..errors import Usage
from ..settings.networking import bridge_of, check_network_name


@dataclass(frozen=True)
class Network:
    """A bridge and its IPv4 subnet; the bridge holds the first host address (the gateway)."""
    name: str
    subnet: ipaddress.IPv4Network
    bridge: str

    @classmethod
    def make(cls, name: str, subnet) -> "Network":
        return cls(name, check_subnet(subnet), bridge_of(check_network_name(name)))

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.subnet.network_address + 1

    @property
    def prefixlen(self) -> int:
        return self.subnet.prefixlen


def check_subnet(value) -> ipaddress.IPv4Network:
    """An IPv4 subnet with room for a gateway and at least one container."""
    net: ipaddress.IPv4Network | ipaddress.IPv6Network
    if isinstance(value, ipaddress.IPv4Network):
        net = value
    else:
        try:
            net = ipaddress.ip_network(str(value), strict=True)
        except ValueError as exc:
            raise Usage(f"invalid subnet {value!r}: {exc}",
                        hint="give an IPv4 network such as 10.213.7.0/24") from None
    if net.version != 4:
        raise Usage(f"invalid subnet {value!r}: only IPv4 networks are supported")
    if net.prefixlen > 30:
        raise Usage(f"invalid subnet {value!r}: too small",
                    hint="a /30 or larger: a gateway and at least one container")
    if net.is_loopback or net.is_multicast or net.is_link_local or net.is_reserved \
            or net.is_unspecified:
        raise Usage(f"invalid subnet {value!r}: a special-purpose range")
    return net


