"""The network commands: network create, list, remove, and what the units run (apply, watch,
attach).  What containers on networks need is network/containers.py's."""

from ..errors import Conflict, Error, NotFound
from ..network import bridge, firewall
from ..network.containers import (
    apply_host,
    attach,
    ensure_host_unit,
    network_state,
    require_host_network,
)
from ..network.model import Network
from ..run import need_tool, stream
from ..runtime.context import Context
from ..settings.networking import DEFAULT, check_network_name
from ..systemd.notify import notify


def attach_running(ctx: Context, name: str):
    """attach() for the running container NAME, whose leader machined knows."""
    require_host_network(ctx.paths)
    props = ctx.bus.machine_properties(name)
    if props is None:
        raise Conflict(f"{name} is not running: nothing to attach")
    attach(ctx.paths, name, int(props["Leader"]), ctx.report)


# ---------------------------------------------------------------- networks themselves

def create_network(ctx: Context, name: str, subnet: str | None) -> Network:
    paths = ctx.paths
    require_host_network(paths)
    state = network_state(paths)
    try:
        net = state.create(name, subnet)
    except Error:
        apply_host(paths)  # a create killed after its commit left the bridge unmade
        raise
    apply_host(paths)
    ensure_host_unit(paths, ctx.bus)  # brings it up again at boot
    return net


def remove_network(ctx: Context, name: str):
    paths = ctx.paths
    require_host_network(paths)
    state = network_state(paths)
    if name not in {net.name for net in state.networks()}:
        apply_host(paths)  # a remove killed after its commit left the bridge behind
        if name != DEFAULT:  # the default network is made on first use: never missing
            check_network_name(name)
            raise NotFound(f"no network named {name!r}", hint="see: nspawnctl network list")
    users = [c for c in state.leases(name)]
    if users:
        other = "OTHER" if name == DEFAULT else DEFAULT  # not back onto the one going
        raise Conflict(f"network {name} still has containers: {', '.join(users)}",
                       hint=f"remove them or move them: nspawnctl set NAME --network {other}")
    net = state.get(name) if name != DEFAULT or name in {n.name for n in state.networks()} \
        else None
    state.remove(name)
    if net is not None:
        bridge.remove_bridge(net.bridge)
    apply_host(paths)


def list_networks(ctx: Context) -> list[dict]:
    paths = ctx.paths
    state = network_state(paths)
    rows = []
    for net in state.networks():
        leases = state.leases(net.name)
        rows.append({"name": net.name, "subnet": str(net.subnet), "bridge": net.bridge,
                     "gateway": str(net.gateway), "containers": sorted(leases)})
    return rows



# ---------------------------------------------------------------- at boot and after reloads

def watch(ctx: Context):
    """Bring the host side up, tell systemd we are ready, then put the firewall table back
    whenever something deletes it (`nft flush ruleset`, a reload of nftables.service).  Our
    own apply deletes and re-adds the table in one transaction, so it is present again by
    the time its events are read: only a table that stays gone is re-applied."""
    paths = ctx.paths
    require_host_network(paths)
    apply_host(paths)
    notify("READY=1")
    proc = stream([need_tool("nft", "nftables"), "monitor", "tables"])
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(f"delete table {firewall.FAMILY} {firewall.TABLE}") \
                and not firewall.present():
            apply_host(paths)
            notify("STATUS=firewall table restored")
    raise Error(f"nft monitor ended (exit {proc.wait()})")
