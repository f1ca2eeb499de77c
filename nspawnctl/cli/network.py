"""nspawnctl's networks: network create, list, remove (and the units' apply, watch, attach)."""


import click

from ..ops import network
from . import Group, completion, jsonview, pass_app
from .options import json_option
from .output import print_json, print_table, results


@click.group("network", cls=Group)
def network_group():
    """nspawnctl's networks: containers on one network reach each other by name, and the
    outside through NAT; containers on different networks cannot reach each other."""


@network_group.command("create")
@click.argument("name")
@click.option("--subnet", metavar="CIDR", help="Its IPv4 subnet (default: a free one).")
@json_option()
@pass_app
def network_create(app, name, subnet, as_json):
    """Create network NAME (a bridge nsc-NAME, hashed when NAME is long, and its subnet)."""
    net = network.create_network(app.ctx, name, subnet)
    if as_json:  # as network list shows it: no container on it yet
        print_json(jsonview.view("network", {
            "name": net.name, "subnet": str(net.subnet), "gateway": str(net.gateway),
            "bridge": net.bridge, "containers": []}))
        return
    click.echo(f"created network {net.name} ({net.subnet}, bridge {net.bridge})")


@network_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def network_list(app, as_json):
    """List networks and their containers."""
    print_table(jsonview.views("network", network.list_networks(app.ctx)),
                ["name", "subnet", "gateway", "bridge", "containers"], as_json)


@network_group.command("remove")
@click.argument("names", nargs=-1, required=True, shell_complete=completion.networks)
@json_option()
@pass_app
def network_remove(app, names, as_json):
    """Remove networks that no container uses."""
    with results("network_removed", as_json) as done:
        for name in names:
            network.remove_network(app.ctx, name)
            done.append({"name": name})
            if not as_json:
                click.echo(f"removed network {name}")


@network_group.command("apply", hidden=True)
@pass_app
def network_apply(app):
    """Bring the host side of every network up to date (bridges, firewall table)."""
    network.apply_host(app.ctx.paths)


@network_group.command("watch", hidden=True)
@pass_app
def network_watch(app):
    """Apply, then put the firewall table back whenever it is deleted (the boot unit)."""
    network.watch(app.ctx)


@network_group.command("attach", hidden=True)
@click.argument("name")
@pass_app
def network_attach(app, name):
    """Configure a just-started container's network (its unit's ExecStartPost=)."""
    network.attach_running(app.ctx, name)
