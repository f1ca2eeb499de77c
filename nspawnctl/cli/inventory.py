"""What there is: list, status, images."""

import datetime

import click

from ..ops import images, inventory
from . import App, completion, pass_app
from .output import print_record, print_table


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def list_(app, as_json):
    """List every container, running or not."""
    rows = inventory.list_containers(app.ctx)
    print_table(rows, ["name", "state", "os", "address", "ports", "image", "enabled", "limits"],
                as_json)


@click.command()
@click.argument("name", shell_complete=completion.containers)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def status(app, name, as_json):
    """Show one container in detail."""
    print_record(inventory.status(app.ctx, name), as_json)




@click.group("images", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def images_group(ctx, as_json):
    """List cached base trees (see also: images prune)."""
    if ctx.invoked_subcommand:
        return
    rows = images.list_images(ctx.ensure_object(App).ctx)
    if not as_json:
        for row in rows:
            row["size"] = f"{row['size'] / 1e6:.0f} MB"
            row["created"] = datetime.datetime.fromtimestamp(row["created"]).strftime(
                "%Y-%m-%d %H:%M")
    print_table(rows, ["key", "source", "size", "created", "containers"], as_json)


@images_group.command("prune")
@pass_app
def images_prune(app):
    """Remove cached base trees no container uses."""
    removed = images.prune(app.ctx)
    click.echo(f"removed {len(removed)} base tree(s)" + "".join(f"\n  {k}" for k in removed))
