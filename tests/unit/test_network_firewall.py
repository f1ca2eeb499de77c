"""network.firewall: the rendered table, checked structurally (no nftables needed)."""

import json

import pytest

from nspawnctl.network import firewall
from nspawnctl.network.model import Network
from nspawnctl.settings.networking import parse_port

A = Network.make("a", "192.0.2.0/25")
B = Network.make("b", "192.0.2.128/25")
PUBS = [("192.0.2.2", parse_port("8080:80")),
        ("192.0.2.130", parse_port("127.0.0.1:5353:53/udp"))]


DNS = ["198.51.100.53", "192.0.2.200"]


def commands(networks=(A, B), pubs=PUBS, dns=DNS):
    return firewall.render(list(networks), list(pubs), dns)["nftables"]


def rules(chain, networks=(A, B), pubs=PUBS, dns=DNS):
    return [c["add"]["rule"] for c in commands(networks, pubs, dns)
            if "rule" in c.get("add", {}) and c["add"]["rule"]["chain"] == chain]


def has(rule, *fragments) -> bool:
    text = json.dumps(rule["expr"])
    return all(json.dumps(f)[1:-1] in text for f in fragments)


def matches(rule, key, right, op="=="):
    return {"match": {"op": op, "left": {"meta": {"key": key}}, "right": right}} in rule["expr"]


def test_one_transaction_recreates_only_our_table():
    cmds = commands()
    table = {"family": "inet", "name": "nspawnctl"}
    assert cmds[:3] == [{"add": {"table": table}}, {"delete": {"table": table}},
                        {"add": {"table": table}}]
    for c in cmds[3:]:
        (verb, body), = c.items()
        assert verb == "add"
        (kind, obj), = body.items()
        assert kind in ("set", "element", "chain", "rule")
        assert (obj["family"], obj["table"]) == ("inet", "nspawnctl")


def test_base_chains_hook_where_they_must():
    chains = {c["add"]["chain"]["name"]: c["add"]["chain"] for c in commands()
              if "chain" in c.get("add", {})}
    want = {"guard": ("filter", "prerouting", -300), "prerouting": ("nat", "prerouting", -100),
            "output": ("nat", "output", -100), "postrouting": ("nat", "postrouting", 100),
            "forward": ("filter", "forward", 0), "leak": ("filter", "postrouting", 101),
            "input": ("filter", "input", 0)}
    assert {n: (c["type"], c["hook"], c["prio"]) for n, c in chains.items()} == want
    assert all(c["policy"] == "accept" for c in chains.values())  # we never drop by default


def test_the_loopback_guard_is_first_and_drops_127_not_from_lo():
    guard = rules("guard")[0]
    assert matches(guard, "iifname", "lo", "!=")
    assert has(guard, {"payload": {"protocol": "ip", "field": "daddr"}},
               {"prefix": {"addr": "127.0.0.0", "len": 8}})
    assert guard["expr"][-1] == {"drop": None}
    leak = rules("leak")[0]
    assert matches(leak, "oifname", {"set": ["nsc-a", "nsc-b"]})
    assert has(leak, {"prefix": {"addr": "127.0.0.0", "len": 8}})
    assert leak["expr"][-1] == {"drop": None}
    # the guard is there even with no network at all
    assert len(rules("guard", networks=(), pubs=())) == 1


def test_egress_nat_and_hairpin_per_network():
    post = rules("postrouting")
    for n in (A, B):
        prefix = {"prefix": {"addr": str(n.subnet.network_address), "len": 25}}
        egress = [r for r in post if has(r, prefix) and matches(r, "oifname", n.bridge, "!=")]
        hairpin = [r for r in post if has(r, prefix) and matches(r, "oifname", n.bridge)
                   and has(r, {"ct": {"key": "status"}}, "dnat")]
        assert len(egress) == len(hairpin) == 1
        assert egress[0]["expr"][-1] == hairpin[0]["expr"][-1] == {"masquerade": None}
    loop = [r for r in post if has(r, {"prefix": {"addr": "127.0.0.0", "len": 8}})]
    assert len(loop) == 1 and matches(loop[0], "oifname", {"set": ["nsc-a", "nsc-b"]})


def test_networks_are_isolated_from_each_other():
    fwd = rules("forward")
    for n, other in ((A, B), (B, A)):
        iso = [r for r in fwd if matches(r, "iifname", n.bridge)
               and matches(r, "oifname", other.bridge)]
        assert len(iso) == 1 and iso[0]["expr"][-1] == {"drop": None}
        # and it comes before the accept of n's traffic going out
        out = [i for i, r in enumerate(fwd) if matches(r, "iifname", n.bridge)
               and r["expr"][-1] == {"accept": None} and len(r["expr"]) == 2]
        assert fwd.index(iso[0]) < out[0]
    # one network: no isolation rule, nothing to isolate from
    assert not [r for r in rules("forward", networks=(A,)) if "isolated" in r["comment"]]


def test_forward_answers_first_published_in_rest_of_inbound_dropped():
    """Answers first, then published ports from anywhere (into every network, from every
    other one too), before any network's drop, in whichever order the networks come: a
    network's isolation rule placed before another's published port dropped a hairpin from
    it into that port."""
    for networks in ((A, B), (B, A)):
        fwd = rules("forward", networks)
        assert has(fwd[0], {"ct": {"key": "state"}}) and fwd[0]["expr"][-1] == {"accept": None}
        dnat = [i for i, r in enumerate(fwd) if has(r, "dnat")
                and r["expr"][-1] == {"accept": None}]
        assert len(dnat) == 1
        assert matches(fwd[dnat[0]], "oifname", {"set": sorted([A.bridge, B.bridge])}) or \
            matches(fwd[dnat[0]], "oifname", {"set": [n.bridge for n in networks]})
        drops = [i for i, r in enumerate(fwd) if r["expr"][-1] == {"drop": None}]
        assert drops and dnat[0] < min(drops)
        for n in (A, B):  # and the rest of what comes into each network is dropped
            last = [i for i, r in enumerate(fwd) if matches(r, "oifname", n.bridge)
                    and len(r["expr"]) == 2 and r["expr"][-1] == {"drop": None}]
            assert len(last) == 1


def test_published_ports_in_prerouting_and_output():
    for chain in ("prerouting", "output"):
        tcp, udp = rules(chain)
        for r in (tcp, udp):
            assert has(r, {"fib": {"result": "type", "flags": ["daddr"]}}, "local")
        assert has(tcp, {"payload": {"protocol": "tcp", "field": "dport"}}, 8080)
        assert tcp["expr"][-1] == {"dnat": {"family": "ip", "addr": "192.0.2.2", "port": 80}}
        assert not has(tcp, {"protocol": "ip", "field": "daddr"})  # every host address
        assert has(udp, {"payload": {"protocol": "ip", "field": "daddr"}}, "127.0.0.1")
        assert has(udp, {"payload": {"protocol": "udp", "field": "dport"}}, 5353)
        assert udp["expr"][-1] == {"dnat": {"family": "ip", "addr": "192.0.2.130",
                                            "port": 53}}


def test_render_is_json_and_deterministic():
    """The same networks and ports, listed in another order (the state's, the machines
    directory's), make the same table, byte for byte."""
    table = json.dumps(firewall.render([A, B], PUBS))
    assert json.dumps(firewall.render([B, A], PUBS[::-1])) == table
    assert json.loads(table) == firewall.render([A, B], PUBS)


def ruleset(*items):
    return {"nftables": [{"metainfo": {"json_schema_version": 1}}, *items]}


def chain(family, table, name, hook="forward", policy="drop"):
    return {"chain": {"family": family, "table": table, "name": name, "handle": 1,
                      "type": "filter", "hook": hook, "prio": 0, "policy": policy}}


def test_forward_blockers_names_other_tables_dropping_forward():
    found = firewall.forward_blockers(ruleset(
        chain("ip", "filter", "FORWARD"),               # iptables-nft after Docker or ufw
        chain("inet", "firewalld", "filter_FORWARD"),
        chain("inet", "mine", "fwd", policy="accept"),  # accepts: no blocker
        chain("ip", "filter", "INPUT", hook="input"),   # not forwarding
        chain("bridge", "br", "fwd"),                   # bridge family: not routed traffic
        chain("inet", "nspawnctl", "forward"),          # our own
    ))
    assert len(found) == 2
    assert found[0].startswith("table ip filter chain FORWARD drops forwarded packets")
    assert "iptables -I FORWARD -i nsc-+ -j ACCEPT" in found[0]
    assert "nft insert rule inet firewalld filter_FORWARD iifname \"nsc-*\" accept" in found[1]
    assert all("\n" not in f for f in found)


def test_forward_blockers_accepts_a_chain_that_lets_ours_through():
    accept = {"rule": {"family": "ip", "table": "filter", "chain": "FORWARD", "handle": 3,
                       "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}},
                                           "right": "nsc-*"}}, {"accept": None}]}}
    assert firewall.forward_blockers(ruleset(chain("ip", "filter", "FORWARD"), accept)) == []


# --- issue 26: forged sources, IPv6, the host closed to containers ---------------------------

def sources(rule):
    return next(e["match"] for e in rule["expr"] if "match" in e and e["match"]["left"] ==
                {"payload": {"protocol": "ip", "field": "saddr"}})


def test_forged_sources_are_dropped_in_prerouting_before_nat_per_bridge():
    """Item 6: a check after DNAT let any source reach a published port.  From B come only
    its containers' addresses, and those come only from B: before conntrack and DNAT (the
    guard hooks at raw priority), whatever rp_filter says."""
    chains = {c["add"]["chain"]["name"]: c["add"]["chain"] for c in commands()
              if "chain" in c.get("add", {})}
    assert chains["guard"]["hook"] == "prerouting"
    assert chains["guard"]["prio"] < -200 < chains["prerouting"]["prio"]  # before conntrack
    guard = rules("guard")
    for n, want in ((A, {"range": ["192.0.2.2", "192.0.2.126"]}),
                    (B, {"range": ["192.0.2.130", "192.0.2.254"]})):
        (only_mine,) = [r for r in guard if matches(r, "iifname", n.bridge)]
        assert sources(only_mine) == {"op": "!=", "left": sources(only_mine)["left"],
                                      "right": want}
        assert only_mine["expr"][-1] == {"drop": None}
        (only_here,) = [r for r in guard if matches(r, "iifname", n.bridge, "!=")]
        assert sources(only_here)["op"] == "==" and sources(only_here)["right"] == want
        assert only_here["expr"][-1] == {"drop": None}
    # nothing judges sources after DNAT any more: it would come too late
    for chain in ("forward", "prerouting", "input"):
        assert not [r for r in rules(chain) if has(r, {"protocol": "ip", "field": "saddr"})]


def test_container_addresses_leave_out_network_gateway_and_broadcast():
    tiny = firewall._containers(Network.make("t", "192.0.2.0/30"))
    assert tiny == "192.0.2.2"  # a /30: one container
    assert firewall._containers(Network.make("t", "10.213.0.0/24")) == \
        {"range": ["10.213.0.2", "10.213.0.254"]}


def test_no_ipv6_from_or_into_a_network():
    (v6_in,) = [r for r in rules("guard") if has(r, "ipv6")]
    assert matches(v6_in, "iifname", {"set": ["nsc-a", "nsc-b"]})
    assert matches(v6_in, "nfproto", "ipv6") and v6_in["expr"][-1] == {"drop": None}
    (v6_out,) = [r for r in rules("leak") if has(r, "ipv6")]
    assert matches(v6_out, "oifname", {"set": ["nsc-a", "nsc-b"]})
    assert matches(v6_out, "nfproto", "ipv6") and v6_out["expr"][-1] == {"drop": None}
    # with one network the sets are one name
    (one,) = [r for r in rules("guard", networks=(A,)) if has(r, "ipv6")]
    assert matches(one, "iifname", "nsc-a")


def test_the_host_is_closed_to_containers_but_answers_and_dns():
    """Item 5: containers reach the host only for answers to its own connections and DNS at
    the resolvers they are given; the last rule refuses everything else from any bridge."""
    answers, dns, rest = rules("input")
    bridges = {"set": ["nsc-a", "nsc-b"]}
    for r in (answers, dns, rest):
        assert matches(r, "iifname", bridges)
    assert has(answers, {"ct": {"key": "state"}}, "established", "related")
    assert answers["expr"][-1] == {"accept": None}
    assert has(dns, {"payload": {"protocol": "ip", "field": "daddr"}}, "@dns")
    assert has(dns, {"payload": {"protocol": "th", "field": "dport"}}, 53)
    assert matches(dns, "l4proto", {"set": ["tcp", "udp"]})
    assert dns["expr"][-1] == {"accept": None}
    assert rest["expr"] == [rest["expr"][0], {"reject": None}]
    # no network: nothing to close
    assert rules("input", networks=(), pubs=()) == []


def test_the_dns_set_holds_the_resolvers_containers_are_given():
    def dns_set(dns):
        cmds = commands(dns=dns)
        (made,) = [c["add"]["set"] for c in cmds if "set" in c.get("add", {})]
        assert (made["name"], made["type"]) == ("dns", "ipv4_addr")
        return [e for c in cmds if "element" in c.get("add", {})
                for e in c["add"]["element"]["elem"]]
    assert dns_set(DNS + ["192.0.2.200"]) == ["192.0.2.200", "198.51.100.53"]  # once, sorted
    assert dns_set([]) == []  # an empty set: nothing open
    with pytest.raises(ValueError):
        dns_set(["fe80::1"])  # only IPv4 ever reaches the table
