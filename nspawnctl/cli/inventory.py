"""What there is: list, status, images."""

import click

from ..ops import images, inventory
from ..settings.model import limits_text
from . import App, completion, jsonview, pass_app
from .output import print_record, print_table


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def list_(app, as_json):
    """List every container, running or not."""
    rows = jsonview.views("container", inventory.list_containers(app.ctx))
    if not as_json:
        for row in rows:
            row["limits"] = limits_text(row["limits"])
    print_table(rows, ["name", "state", "os", "address", "port", "image", "enabled", "limits"],
                as_json)


@click.command()
@click.argument("name", shell_complete=completion.containers)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def status(app, name, as_json):
    """Show one container in detail."""
    record = jsonview.view("status", inventory.status(app.ctx, name))
    if not as_json:
        record["limits"] = limits_text(record["limits"])
    print_record(record, as_json)




@click.group("images", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def images_group(ctx, as_json):
    """List pulled images and cached base trees (see also: images rm, images prune)."""
    if ctx.invoked_subcommand:
        return
    rows = jsonview.views("image", images.list_images(ctx.ensure_object(App).ctx))
    if not as_json:
        for row in rows:
            row["repository"] = row["repository"] or row["source"]
            row["digest"] = (row["digest"] or row["key"]).removeprefix("sha256:")[:12]
            row["size"] = "-" if row["size"] is None else f"{row['size'] / 1e6:.0f} MB"
            row["created"] = jsonview.short_time(row["created"])
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
