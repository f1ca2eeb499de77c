"""What there is: list, status, images."""

import datetime

import click

from ..ops import images, inventory
from . import App, completion, pass_app
from .output import cell, print_record, print_table, shown


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def list_(app, as_json):
    """List every container, running or not."""
    rows = inventory.list_containers(app.ctx)
    if not as_json:
        for row in rows:
            _mark_pending(row, ["address"], "pending")
    print_table(rows, ["name", "state", "os", "address", "ports", "image", "enabled", "limits"],
                as_json)


@click.command()
@click.argument("name", shell_complete=completion.containers)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def status(app, name, as_json):
    """Show one container in detail."""
    record = inventory.status(app.ctx, name)
    log = None if as_json else record.pop("log")
    if not as_json:
        _mark_pending(record, list(record["pending"]), "pending after restart")
        record.pop("pending")
    print_record(record, as_json)
    if log:
        click.echo("log:")
        for line in log:
            click.echo(f"  {shown(line)}")




def _mark_pending(row: dict, keys: list[str], words: str):
    """A setting saved for the next start, shown beside the value in force:
    'address 10.0.0.2 (pending after restart: 10.99.0.3)'."""
    for key in keys:
        if key in row["pending"]:
            row[key] = f"{cell(row[key])} ({words}: {cell(row['pending'][key])})"


@click.group("images", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def images_group(ctx, as_json):
    """List pulled images and cached base trees (see also: images rm, images prune)."""
    if ctx.invoked_subcommand:
        return
    rows = images.list_images(ctx.ensure_object(App).ctx)
    if not as_json:
        for row in rows:
            row["repository"] = row["repository"] or row["source"]
            row["digest"] = (row["digest"] or row["key"]).removeprefix("sha256:")[:12]
            row["size"] = "-" if row["size"] is None else f"{row['size'] / 1e6:.0f} MB"
            row["created"] = datetime.datetime.fromtimestamp(row["created"]).strftime(
                "%Y-%m-%d %H:%M")
            row["containers"] = row["used_by"]
    print_table(rows, ["repository", "tag", "digest", "size", "created", "containers"],
                as_json)


@images_group.command("rm")
@click.argument("ref", shell_complete=completion.pulled_images)
@pass_app
def images_rm(app, ref):
    """Remove a pulled image (REF as pulled, or a base tree's key) no container uses."""
    done = images.remove(app.ctx, ref)
    click.echo(f"removed {', '.join(done['names'] or done['trees'] or [ref])}: "
               f"{len(done['trees'])} base tree(s), {done['blobs']} blob(s) "
               f"({done['bytes'] / 1e6:.1f} MB)")


@images_group.command("prune")
@pass_app
def images_prune(app):
    """Remove cached base trees no container uses, and blobs no pulled image needs."""
    done = images.prune(app.ctx)
    removed = done["trees"]
    click.echo(f"removed {len(removed)} base tree(s)" + "".join(f"\n  {k}" for k in removed)
               + (f"\nremoved {done['blobs']} blob(s) ({done['bytes'] / 1e6:.1f} MB)"
                  if done["blobs"] else ""))
