"""nspawnctl's one nftables table, `inet nspawnctl`: NAT, isolation, published ports, and the
host closed to containers.

The whole table is rendered from the networks and publications and loaded in one
transaction that adds, deletes and re-adds it, so a reload never leaves half a table and never
touches another table.  Rules (per network N with bridge B, subnet S and container addresses
C, S without its network, gateway and broadcast addresses):

- the guard (prerouting, before conntrack and NAT): what never gets in, whatever the host's
  rp_filter says (systemd's default is loose, which lets any source through that the default
  route could reach):
  - forged sources: from B only C, and C only from B.  Published ports are DNAT'ed from
    anywhere, so a check after DNAT (it was in forward, after the accept of published ports)
    let a container of another network reach them with any source address;
  - IPv6: nspawnctl's networks are IPv4 only, and bridge.py turns IPv6 off on the host's side
    of every link; nothing IPv6 from a container reaches the host (router advertisements:
    a default route and an address through the container), nor goes into a bridge (leak);
  - the loopback guard: route_localnet (needed for 127.0.0.1 publishing, bridge.py) also
    lets the kernel route packets *for* 127.x that arrive on B to the host's loopback
    services (kubernetes#90259).  Any packet for 127.0.0.0/8 arriving on another device than
    lo is dropped, and no packet with a 127.x source leaves through B (leak).
- the host (input): a container reaches the host only for what nspawnctl hands it, DNS at the
  resolvers written into its resolv.conf (the `dns` set: when one is a host address), and
  for answers to the host's own connections; everything else is refused, on every address of
  the host.  nspawnctl serves nothing else (no DHCP: addresses are set from outside).
- egress: S going out anywhere but B is masqueraded; B's traffic may go out (forward).
- isolation: nothing is forwarded from one nspawnctl bridge to another, and nothing enters
  B from outside unless it was DNAT'ed to a published port (or answers a connection).
- published ports: a packet for any local address of the host (`fib daddr type local`:
  the LAN address, the gateways, 127.0.0.1), or for HOST_IP if given, on HOST_PORT is
  DNAT'ed to the container, in prerouting (from elsewhere) and in output (from the host
  itself).  A connection from 127.x is masqueraded on its way into B (the container could
  not answer 127.0.0.1), as is a container's connection to a published port of its own
  network (hairpin: the answer must come back through the host to be un-NATed).

Another table's base chain can still drop what this one accepts (iptables-nft's
`ip filter FORWARD` with policy drop, left by Docker or ufw): forward_blockers() names them.
"""

import ipaddress

from ..errors import Error
from ..settings.networking import BRIDGE_PREFIX, Port
from .model import Network

FAMILY = "inet"
TABLE = "nspawnctl"
LOOPBACK = {"prefix": {"addr": "127.0.0.0", "len": 8}}
# Chain priorities, as numbers (the JSON parser of nftables 1.0.6 wants them so)
RAW, DSTNAT, FILTER, SRCNAT = -300, -100, 0, 100

Publication = tuple[str, Port]  # (container address, port)
DNS_SET = "dns"


def render(networks: list[Network], publications: list[Publication],
           dns: list[str] | tuple[str, ...] = ()) -> dict:
    """The nftables JSON batch that replaces table inet nspawnctl with these contents; dns:
    the resolvers containers are given (their resolv.conf), open to them on the host."""
    table = {"family": FAMILY, "name": TABLE}
    cmds: list[dict] = [{"add": {"table": table}}, {"delete": {"table": table}},
                        {"add": {"table": table}}]
    resolvers = sorted({str(ipaddress.IPv4Address(a)) for a in dns},
                       key=ipaddress.IPv4Address)
    cmds.append({"add": {"set": {**_in_table(), "name": DNS_SET, "type": "ipv4_addr"}}})
    if resolvers:
        cmds.append({"add": {"element": {**_in_table(), "name": DNS_SET, "elem": resolvers}}})

    def chain(name, kind, hook, prio):
        cmds.append({"add": {"chain": {**_in_table(), "name": name, "type": kind,
                                       "hook": hook, "prio": prio, "policy": "accept"}}})

    def rule(chain_name, comment, *expr):
        cmds.append({"add": {"rule": {**_in_table(), "chain": chain_name,
                                      "expr": list(expr), "comment": comment}}})

    # The same networks and ports make the same table, in whatever order they are listed.
    networks = sorted(networks, key=lambda n: n.name)
    publications = sorted(publications, key=lambda p: (p[1].proto, p[1].host_port,
                                                        p[1].host_ip or "", p[0]))
    bridges = [n.bridge for n in networks]

    chain("guard", "filter", "prerouting", RAW)
    rule("guard", "loopback guard: 127/8 only from lo (kubernetes#90259)",
         _match(_meta("iifname"), "lo", "!="), _ip("daddr", LOOPBACK), {"drop": None})
    if bridges:
        rule("guard", "no IPv6 from containers: the networks are IPv4 only",
             _match(_meta("iifname"), _set(bridges)), _match(_meta("nfproto"), "ipv6"),
             {"drop": None})
    for n in networks:
        rule("guard", f"{n.name}: only its containers' addresses come from {n.bridge}",
             _match(_meta("iifname"), n.bridge), _ip("saddr", _containers(n), "!="),
             {"drop": None})
        rule("guard", f"{n.name}: its containers' addresses come from {n.bridge} only",
             _match(_meta("iifname"), n.bridge, "!="), _ip("saddr", _containers(n)),
             {"drop": None})

    chain("prerouting", "nat", "prerouting", DSTNAT)
    chain("output", "nat", "output", DSTNAT)
    for address, port in publications:
        expr = _publication(address, port)
        rule("prerouting", f"publish {port}", *expr)
        rule("output", f"publish {port}", *expr)

    chain("postrouting", "nat", "postrouting", SRCNAT)
    if bridges:
        rule("postrouting", "a loopback connection into a network gets a source it can answer",
             _match(_meta("oifname"), _set(bridges)), _ip("saddr", LOOPBACK),
             {"masquerade": None})
    for n in networks:
        rule("postrouting", f"{n.name}: egress NAT", _ip("saddr", _prefix(n.subnet)),
             _match(_meta("oifname"), n.bridge, "!="), {"masquerade": None})
        rule("postrouting", f"{n.name}: hairpin to a published port",
             _ip("saddr", _prefix(n.subnet)), _match(_meta("oifname"), n.bridge),
             _match({"ct": {"key": "status"}}, "dnat", "in"), {"masquerade": None})

    chain("forward", "filter", "forward", FILTER)
    rule("forward", "answers", _match({"ct": {"key": "state"}}, ["established", "related"],
                                      "in"), {"accept": None})
    # Before any network's own rules: a published port is reached from anywhere, other
    # networks included (a hairpin from one network into another's port), whichever network
    # comes first; after them, one network's isolation rule would drop it or not by the order.
    if bridges:
        rule("forward", "published ports, from anywhere",
             _match(_meta("oifname"), _set(bridges)),
             _match({"ct": {"key": "status"}}, "dnat", "in"), {"accept": None})
    for n in networks:
        b = n.bridge
        others = [o for o in bridges if o != b]
        rule("forward", f"{n.name}: within the network", _match(_meta("iifname"), b),
             _match(_meta("oifname"), b), {"accept": None})
        if others:
            rule("forward", f"{n.name}: isolated from other networks",
                 _match(_meta("iifname"), b), _match(_meta("oifname"), _set(others)),
                 {"drop": None})
        rule("forward", f"{n.name}: out", _match(_meta("iifname"), b), {"accept": None})
        rule("forward", f"{n.name}: nothing else in", _match(_meta("oifname"), b),
             {"drop": None})

    chain("input", "filter", "input", FILTER)
    if bridges:
        into_host = _match(_meta("iifname"), _set(bridges))
        rule("input", "answers to the host's own connections", into_host,
             _match({"ct": {"key": "state"}}, ["established", "related"], "in"),
             {"accept": None})
        rule("input", "DNS at the resolvers containers are given", into_host,
             _ip("daddr", f"@{DNS_SET}"), _match(_meta("l4proto"), {"set": ["tcp", "udp"]}),
             _match({"payload": {"protocol": "th", "field": "dport"}}, 53), {"accept": None})
        rule("input", "nothing else of the host is open to containers", into_host,
             {"reject": None})

    # after NAT (srcnat is 100): whatever still has a loopback source must not leave
    chain("leak", "filter", "postrouting", SRCNAT + 1)
    if bridges:
        rule("leak", "loopback guard: no 127/8 source into a network",
             _match(_meta("oifname"), _set(bridges)), _ip("saddr", LOOPBACK), {"drop": None})
        rule("leak", "no IPv6 into a network",
             _match(_meta("oifname"), _set(bridges)), _match(_meta("nfproto"), "ipv6"),
             {"drop": None})
    return {"nftables": cmds}


def apply(networks: list[Network], publications: list[Publication],
          dns: list[str] | tuple[str, ...] = ()):
    """Load the table (one transaction: the old table or the new one, never half)."""
    _run(render(networks, publications, dns), "load nspawnctl's firewall table")


def remove():
    """Delete the table if it exists."""
    table = {"family": FAMILY, "name": TABLE}
    _run({"nftables": [{"add": {"table": table}}, {"delete": {"table": table}}]},
         "delete nspawnctl's firewall table")


def present() -> bool:
    rc, _, _ = _nft().json_cmd({"nftables": [{"list": {"table": _table()}}]})
    return rc == 0


def offered_dns() -> list[str] | None:
    """The resolvers the loaded table opens to containers (sorted), None without the table:
    a container start compares them with the ones it is given, which follow the host's
    resolv.conf."""
    rc, out, _ = _nft().json_cmd({"nftables": [{"list": {"set": {**_in_table(),
                                                                  "name": DNS_SET}}}]})
    if rc != 0:
        return None
    for item in out.get("nftables", []):
        if "set" in item:
            return sorted((str(e) for e in item["set"].get("elem", [])),
                          key=ipaddress.IPv4Address)
    return None


def forward_blockers(ruleset: dict | None = None) -> list[str]:
    """Other tables' forward base chains that drop by default and let nothing of ours
    through: each one line saying which, and what the admin can run.  Never changes them."""
    return [f"table {family} {table} chain {chain} drops forwarded packets (policy drop), so "
            f"containers cannot reach out nor be reached; let them through: "
            f"{forward_fix(family, table, chain)}"
            for family, table, chain in blocking_chains(ruleset)]


def blocking_chains(ruleset: dict | None = None) -> list[tuple[str, str, str]]:
    """(family, table, chain) of every other table's forward base chain with policy drop and
    no rule accepting nspawnctl's bridges.  ruleset is `nft -j list ruleset` (read here when
    not given).  An accept in our table ends only our chain: theirs still drops."""
    if ruleset is None:
        rc, ruleset, err = _nft().json_cmd({"nftables": [{"list": {"ruleset": None}}]})
        if rc != 0:
            raise Error(f"cannot read the firewall ruleset: {_first_line(err)}")
    items = ruleset.get("nftables", [])
    allowed = set()  # (family, table, chain) with a rule accepting nsc-* traffic
    for item in items:
        r = item.get("rule")
        if r and BRIDGE_PREFIX in repr(r.get("expr")) and "'accept'" in repr(r.get("expr")):
            allowed.add((r["family"], r["table"], r["chain"]))
    found = []
    for item in items:
        c = item.get("chain")
        if not c or c.get("hook") != "forward" or c.get("policy") != "drop":
            continue
        if c["family"] not in ("ip", "inet") or (c["family"], c["table"]) == (FAMILY, TABLE):
            continue
        key = (c["family"], c["table"], c["name"])
        if key not in allowed:
            found.append(key)
    return found


def forward_fix(family: str, table: str, chain: str) -> str:
    """The command that lets nspawnctl's traffic through a chain that drops it: iptables for
    iptables-nft's own `ip filter FORWARD` (rules nft adds there confuse `iptables -L`) where
    iptables is installed, nft otherwise."""
    import shutil  # here, not at start-up: only doctor's advice needs it
    if (family, table, chain) == ("ip", "filter", "FORWARD") and shutil.which("iptables"):
        return (f"iptables -I FORWARD -i {BRIDGE_PREFIX}+ -j ACCEPT && iptables -I FORWARD "
                f"-o {BRIDGE_PREFIX}+ -m conntrack --ctstate ESTABLISHED,RELATED,DNAT "
                f"-j ACCEPT")
    return (f"nft insert rule {family} {table} {chain} iifname \"{BRIDGE_PREFIX}*\" accept "
            f"&& nft insert rule {family} {table} {chain} oifname \"{BRIDGE_PREFIX}*\" "
            f"ct state established,related accept && nft insert rule {family} {table} "
            f"{chain} oifname \"{BRIDGE_PREFIX}*\" ct status dnat accept")


# --- JSON expression helpers --------------------------------------------------------------

def _table() -> dict:
    return {"family": FAMILY, "name": TABLE}


def _in_table() -> dict:
    return {"family": FAMILY, "table": TABLE}


def _meta(key: str) -> dict:
    return {"meta": {"key": key}}


def _match(left, right, op: str = "==") -> dict:
    return {"match": {"op": op, "left": left, "right": right}}


def _ip(field: str, right, op: str = "==") -> dict:
    return _match({"payload": {"protocol": "ip", "field": field}}, right, op)


def _containers(net: Network):
    """The addresses containers of net hold (state.py leases them): the subnet without its
    network, gateway and broadcast addresses."""
    first, last = net.gateway + 1, net.subnet.broadcast_address - 1
    return str(first) if first == last else {"range": [str(first), str(last)]}


def _prefix(subnet) -> dict:
    return {"prefix": {"addr": str(subnet.network_address), "len": subnet.prefixlen}}


def _set(names: list[str]):
    return {"set": list(names)} if len(names) > 1 else names[0]


def _publication(address: str, port: Port) -> list[dict]:
    expr = [_match(_meta("nfproto"), "ipv4"),
            _match({"fib": {"result": "type", "flags": ["daddr"]}}, "local")]
    if port.host_ip:
        expr.append(_ip("daddr", port.host_ip))
    expr.append(_match({"payload": {"protocol": port.proto, "field": "dport"}},
                       port.host_port))
    expr.append({"dnat": {"family": "ip", "addr": str(address),
                          "port": port.container_port}})
    return expr


def _nft():
    import nftables  # libnftables through ctypes: cheap, but only the firewall needs it
    nft = nftables.Nftables()
    nft.set_json_output(True)
    nft.set_handle_output(False)
    return nft


def _run(batch: dict, what: str):
    rc, _, err = _nft().json_cmd(batch)
    if rc != 0:
        raise Error(f"cannot {what}: {_first_line(err)}",
                    hint="nftables must be usable (root, a kernel with nf_tables)")


def _first_line(text) -> str:
    lines = [line for line in str(text or "").splitlines() if line.strip()]
    return lines[0] if lines else "unknown error"
