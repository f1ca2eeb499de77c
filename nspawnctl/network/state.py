"""The registry of networks and address leases: one JSON file, changed under a lock.

The kernel knows a bridge and its addresses only while they exist; which subnet a network
has and which address a container gets must outlive reboots and stopped containers.  A lease
is for ever (until release): a container keeps its address, so the names other containers
resolve and the ports published to it stay right.  Every change rereads the file under an
flock and replaces it atomically, so concurrent starts never hand out one address twice and
a killed command leaves the old registry or the new one.
"""

import contextlib
import ipaddress
import json
import os
from collections.abc import Callable
from pathlib import Path

from ..errors import Conflict, Error, InvalidInput, NotFound, Usage
from ..fs.files import write_atomic
from ..fs.locks import flocked
from ..names import check_name
from ..settings.networking import BRIDGE_PREFIX, DEFAULT, bridge_of, check_network_name
from .model import Network, check_subnet

POOL_ENV = "NSPAWNCTL_SUBNET_POOL"
DEFAULT_SUBNET_ENV = "NSPAWNCTL_DEFAULT_SUBNET"
# A private range that Docker (172.17+/16, 192.168+), libvirt (192.168.122) and most home and
# office LANs (10.0/16, 192.168/16) leave alone; /24 each: 256 networks of 253 containers.
DEFAULT_POOL = "10.213.0.0/16"
POOL_PREFIX = 24

Route = tuple[ipaddress.IPv4Network, str | None]  # destination, device name (None: several)


def parse_pool(text: str) -> list[ipaddress.IPv4Network]:
    """Candidate subnets of a pool: comma-separated blocks, each cut into /24s (a block
    smaller than a /24 is one subnet), e.g. "192.0.2.0/25,192.0.2.128/25"."""
    subnets: list[ipaddress.IPv4Network] = []
    for block in (b.strip() for b in text.split(",")):
        if not block:
            continue
        try:
            net = ipaddress.IPv4Network(block, strict=True)
        except ValueError as exc:
            raise Usage(f"invalid subnet pool {text!r}: {exc}",
                        hint=f"{POOL_ENV} is a comma-separated list of IPv4 networks, "
                             f"e.g. {DEFAULT_POOL}") from None
        check_subnet(net)
        subnets.extend(net.subnets(new_prefix=max(net.prefixlen, POOL_PREFIX)))
    if not subnets:
        raise Usage(f"invalid subnet pool {text!r}: empty")
    return subnets


def host_routes() -> list[Route]:
    """Every IPv4 route of this network namespace (all tables) but the default ones, with its
    device: a network must not take a range the host already reaches some other way."""
    from pyroute2 import IPRoute  # ~130 ms: only when a subnet is chosen
    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        routes = []
        for r in ipr.get_routes(family=2):  # every table: main, local, policy ones
            dst = r.get_attr("RTA_DST")
            if not dst or r["dst_len"] == 0:
                continue
            net = ipaddress.IPv4Network(f"{dst}/{r['dst_len']}", strict=False)
            routes.append((net, names.get(r.get_attr("RTA_OIF"))))
    return routes


class NetworkState:
    """Networks and leases kept in DIR/networks.json (DIR/lock serialises changes).

    pool and default_subnet default to $NSPAWNCTL_SUBNET_POOL and $NSPAWNCTL_DEFAULT_SUBNET;
    routes() lists the host's routes (host_routes above; tests pass their own).
    """

    def __init__(self, dirpath: Path, *, pool: str | None = None,
                 default_subnet: str | None = None,
                 routes: Callable[[], list[Route]] = host_routes):
        self.dir = Path(dirpath)
        self.file = self.dir / "networks.json"
        self.pool_text = pool or os.environ.get(POOL_ENV) or DEFAULT_POOL
        self.default_subnet = default_subnet or os.environ.get(DEFAULT_SUBNET_ENV) or None
        self._routes = routes

    # --- reading -------------------------------------------------------------------------

    def networks(self) -> list[Network]:
        """The networks that exist (the default one once it has been used), by name."""
        data = self._read()
        return [self._network(name, data) for name in sorted(data["networks"])]

    def get(self, name: str) -> Network:
        """The network called name; the default network is made on first use."""
        data = self._read()
        if name in data["networks"]:
            return self._network(name, data)
        if name == DEFAULT:
            with self._changing() as data:
                self._ensure_default(data)
                return self._network(name, data)
        check_network_name(name)
        raise NotFound(f"no network named {name!r}",
                       hint=f"create it: nspawnctl network create {name}")

    def leases(self, network: str) -> dict[str, ipaddress.IPv4Address]:
        """Container name -> address, for one network."""
        leases = self._read()["leases"].get(network, {})
        return {c: ipaddress.IPv4Address(a) for c, a in sorted(leases.items())}

    def leased(self, container: str) -> list[tuple[Network, ipaddress.IPv4Address]]:
        """The (network, address) pairs a container holds, without taking anything."""
        data = self._read()
        return [(self._network(net, data), ipaddress.IPv4Address(leases[container]))
                for net, leases in sorted(data["leases"].items()) if container in leases]

    def all_leases(self) -> dict[tuple[str, str], ipaddress.IPv4Address]:
        """(network, container) -> address for every lease, from one read of the registry."""
        return {(net, c): ipaddress.IPv4Address(a)
                for net, leases in self._read()["leases"].items() for c, a in leases.items()}

    def holders(self) -> set[str]:
        """Every container that holds a lease on any network."""
        return {c for leases in self._read()["leases"].values() for c in leases}

    def hosts_for(self, network: str) -> list[tuple[ipaddress.IPv4Address, str]]:
        """(address, name) of every container of a network, by address: its hosts file."""
        return sorted((ip, name) for name, ip in self.leases(network).items())

    # --- changing ------------------------------------------------------------------------

    def create(self, name: str, subnet=None) -> Network:
        """A new network: the given subnet, or the first free one of the pool.  A subnet that
        overlaps another network or a route of the host is refused."""
        check_network_name(name)
        if name == DEFAULT and subnet is None:
            return self.get(DEFAULT)
        wanted = check_subnet(subnet) if subnet is not None else None
        with self._changing() as data:
            if name in data["networks"]:
                raise Conflict(f"network {name!r} exists already",
                               hint=f"its subnet is {data['networks'][name]['subnet']}")
            twin = [other for other in data["networks"] if bridge_of(other) == bridge_of(name)]
            if twin:
                raise Conflict(f"network {name!r} would share bridge {bridge_of(name)} with "
                               f"network {twin[0]!r}", hint="choose another name")
            chosen = self._place(data, wanted)
            data["networks"][name] = {"subnet": str(chosen)}
            return self._network(name, data)

    def remove(self, name: str):
        """Forget a network; refused while a container holds an address in it."""
        with self._changing() as data:
            if name not in data["networks"]:
                raise NotFound(f"no network named {name!r}", hint="see: nspawnctl network list")
            holders = sorted(data["leases"].get(name, {}))
            if holders:
                raise Conflict(f"network {name!r} is in use by {', '.join(holders)}",
                               hint="remove those containers or move them to another network")
            del data["networks"][name]
            data["leases"].pop(name, None)

    def lease(self, network: str, container: str) -> ipaddress.IPv4Address:
        """The container's address in network: the one it had, else the lowest free one."""
        check_name(container)
        with self._changing() as data:
            if network == DEFAULT:
                self._ensure_default(data)
            elif network not in data["networks"]:
                check_network_name(network)
                raise NotFound(f"no network named {network!r}",
                               hint=f"create it: nspawnctl network create {network}")
            leases = data["leases"].setdefault(network, {})
            if container in leases:
                return ipaddress.IPv4Address(leases[container])
            net = self._network(network, data)
            taken = {ipaddress.IPv4Address(a) for a in leases.values()} | {net.gateway}
            for address in net.subnet.hosts():
                if address not in taken:
                    leases[container] = str(address)
                    return address
            raise Conflict(f"network {network!r} is full: {len(leases)} containers in "
                           f"{net.subnet}", hint="create another network with a larger subnet")

    def rename(self, old: str, new: str):
        """Move old's addresses to new, in one write of the registry (rename)."""
        check_name(new)
        with self._changing() as data:
            for leases in data["leases"].values():
                if old in leases:
                    leases[new] = leases.pop(old)

    def release(self, container: str, keep: tuple[str, ...] = ()) -> list[str]:
        """Give back every address the container holds (when it is removed), or all but those
        on the networks in keep; returns the networks it left."""
        left = []
        with self._changing() as data:
            for net in list(data["leases"]):
                if net in keep or container not in data["leases"][net]:
                    continue
                left.append(net)
                data["leases"][net].pop(container, None)
                if not data["leases"][net]:
                    del data["leases"][net]
        return left

    # --- the file ------------------------------------------------------------------------

    def _read(self) -> dict:
        try:
            text = self.file.read_text()
        except FileNotFoundError:
            return {"networks": {}, "leases": {}}
        try:
            data = json.loads(text)
            data.setdefault("networks", {})
            data.setdefault("leases", {})
            return data
        except (ValueError, AttributeError):
            raise InvalidInput(f"{self.file} is not a network registry (unreadable JSON)",
                               hint="move it away; networks and addresses will be chosen afresh"
                               ) from None

    @contextlib.contextmanager
    def _changing(self):
        """The registry to change in the with-block, under the lock; written back (atomically)
        when the block ends without an exception and changed something."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with flocked(self.dir / "lock", on_busy=lambda: None):  # wait: changes are quick
            data = self._read()
            before = json.dumps(data, sort_keys=True)
            yield data
            if json.dumps(data, sort_keys=True) != before:
                write_atomic(self.file, json.dumps(data, sort_keys=True, indent=1) + "\n")

    # --- choosing subnets ----------------------------------------------------------------

    @staticmethod
    def _network(name: str, data: dict) -> Network:
        return Network.make(name, data["networks"][name]["subnet"])

    def _ensure_default(self, data: dict):
        if DEFAULT not in data["networks"]:
            wanted = check_subnet(self.default_subnet) if self.default_subnet else None
            data["networks"][DEFAULT] = {"subnet": str(self._place(data, wanted))}

    def _place(self, data: dict, wanted: ipaddress.IPv4Network | None) -> ipaddress.IPv4Network:
        """wanted if it is free, else the first free subnet of the pool."""
        ours = {name: ipaddress.IPv4Network(n["subnet"]) for name, n in data["networks"].items()}
        routes = [(net, dev) for net, dev in self._routes()
                  if not (dev or "").startswith(BRIDGE_PREFIX)]
        if wanted is not None:
            conflict = _conflict(wanted, ours, routes)
            if conflict:
                raise Conflict(f"subnet {wanted} overlaps {conflict}",
                               hint="choose another subnet")
            return wanted
        for candidate in parse_pool(self.pool_text):
            if not _conflict(candidate, ours, routes):
                return candidate
        raise Error(f"no free subnet left in the pool {self.pool_text}",
                    hint=f"set {POOL_ENV} to a larger or another range, or give a subnet")


def _conflict(subnet, ours: dict, routes: list[Route]) -> str | None:
    for name, net in sorted(ours.items()):
        if subnet.overlaps(net):
            return f"network {name!r} ({net})"
    for net, dev in routes:
        if subnet.overlaps(net):
            return f"the host's route to {net}" + (f" (dev {dev})" if dev else "")
    return None
