"""What there is: list, status, images."""

import datetime

import click

from ..ops import images, inventory
from . import App, Group, completion, pass_app
from .output import megabytes, print_record, print_table


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




@click.group("images", cls=Group, invoke_without_command=True)
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
@click.option("--dry-run", is_flag=True, help="Say what would be removed, and remove nothing.")
@pass_app
def images_rm(app, ref, dry_run):
    """Remove a pulled image (REF as pulled, or a base tree's key) no container uses."""
    done = images.remove(app.ctx, ref, dry_run=dry_run)
    trees = [f"base tree {key} ({megabytes(done['tree_sizes'][key])})" for key in done["trees"]]
    click.echo(f"{'would remove' if dry_run else 'removed'} "
               f"{', '.join(done['names'] or done['trees'] or [ref])}: "
               + ", ".join([*trees, _blobs(done)]))


@images_group.command("prune")
@click.option("--dry-run", is_flag=True, help="Say what would be removed, and remove nothing.")
@pass_app
def images_prune(app, dry_run):
    """Remove cached base trees no container uses, and blobs no pulled image needs."""
    done = images.prune(app.ctx, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    trees, sizes = done["trees"], done["tree_sizes"]
    total = sum(size or 0 for size in sizes.values())
    click.echo(f"{verb} {_count(len(trees), 'base tree')}"
               + (f" ({megabytes(total)}):" if trees else ""))
    for key in trees:
        click.echo(f"  {key}  {megabytes(sizes[key])}")
    if done["blobs"]:
        click.echo(f"{verb} {_blobs(done)}")


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _blobs(done: dict) -> str:
    return f"{_count(done['blobs'], 'blob')} ({megabytes(done['bytes'])})"
