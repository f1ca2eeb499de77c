"""What a container's network settings may say: the name of a network and a published port.

Plain values checked once where they come in (one-line errors); the settings that hold
them and the network package that carries them out both take them from here.
"""

import hashlib
import ipaddress
import re
from dataclasses import dataclass

from ..errors import Usage

BRIDGE_PREFIX = "nsc-"
IFNAMSIZ = 16  # kernel interface names: 15 bytes and a NUL
SHORT_NAME = IFNAMSIZ - 1 - len(BRIDGE_PREFIX)  # 11: "nsc-" + name fits as it is
MAX_NAME = 63  # a DNS label's length: compose files name networks like hosts
DEFAULT = "default"
# Words of the network *mode* setting (--network default|none|host|NAME): never a network.
RESERVED = ("none", "host")
PROTOCOLS = ("tcp", "udp")
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")


def check_network_name(name: str) -> str:
    """name if it can name a network, else Error saying why."""
    if not name:
        raise Usage("network name is empty")
    if len(name) > MAX_NAME:
        raise Usage(f"invalid network name {name!r}: longer than {MAX_NAME} characters")
    if name in RESERVED:
        raise Usage(f"invalid network name {name!r}: a reserved word",
                    hint="'none' and 'host' are network modes, not networks")
    if not _NAME.fullmatch(name):
        raise Usage(f"invalid network name {name!r}",
                    hint="use lower-case letters, digits and '-', not at either end")
    return name


def bridge_of(name: str) -> str:
    """The bridge of network `name`: "nsc-" + name when that fits the kernel's 15-byte
    interface names, else "nsc-" + its first 5 characters + "_" + 5 hex digits of its hash.
    A network name never holds "_", so a long name's bridge cannot be a short name's; two
    long names sharing a bridge (a 1 in 2**20 chance for a shared prefix) are refused when
    the second network is made."""
    if len(name) <= SHORT_NAME:
        return BRIDGE_PREFIX + name
    digest = hashlib.blake2s(name.encode(), digest_size=8).hexdigest()
    return f"{BRIDGE_PREFIX}{name[:5]}_{digest[:5]}"


@dataclass(frozen=True)
class Port:
    """A published port: HOST_IP:HOST_PORT on the host goes to CONTAINER_PORT in the
    container.  host_ip None means every address of the host, 127.0.0.1 included."""
    host_ip: str | None
    host_port: int
    container_port: int
    proto: str = "tcp"

    def __str__(self) -> str:
        head = f"{self.host_ip}:" if self.host_ip else ""
        return f"{head}{self.host_port}:{self.container_port}/{self.proto}"


def parse_port(text: str) -> Port:
    """Port from "[HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|/udp]" (docker run -p's form)."""
    def bad(why: str, hint: str = "use [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|/udp], "
                                  "e.g. 127.0.0.1:8080:80/tcp"):
        return Usage(f"invalid published port {text!r}: {why}", hint=hint)

    spec, proto = text, "tcp"
    if "/" in text:
        spec, proto = text.rsplit("/", 1)
        if proto not in PROTOCOLS:
            raise bad(f"unknown protocol {proto!r}", hint="tcp or udp")
    parts = spec.split(":")
    if len(parts) == 2:
        host_ip = None
    elif len(parts) == 3:
        host_ip = parts[0]
        try:
            addr = ipaddress.ip_address(host_ip)
        except ValueError:
            raise bad(f"{host_ip!r} is not an IP address") from None
        if addr.version != 4:
            raise bad(f"{host_ip!r} is not an IPv4 address",
                      hint="containers have IPv4 addresses only")
        if addr.is_multicast or addr == ipaddress.IPv4Address("255.255.255.255"):
            raise bad(f"{host_ip!r} is not a unicast address")
        host_ip = None if addr.is_unspecified else str(addr)
    else:
        raise bad("wrong number of ':'")
    host_port, container_port = (_port_number(p, bad) for p in parts[-2:])
    return Port(host_ip, host_port, container_port, proto)


def _port_number(value: str, bad) -> int:
    if not value.isascii() or not value.isdigit():
        raise bad(f"{value!r} is not a port number")
    n = int(value)
    if not 1 <= n <= 65535:
        raise bad(f"port {n} is out of range", hint="ports are 1 to 65535")
    return n
