"""Named volumes: volume create, list, inspect, remove."""

from pathlib import Path

import click

from ..ops import volumes
from . import Group, completion, jsonview, pass_app
from .options import json_option
from .output import megabytes, print_json, print_table, results


@click.group("volume", cls=Group)
def volume_group():
    """Named volumes: data that outlives its containers, mounted with --volume NAME:/PATH
    (create, list, inspect, remove, export and import are the subcommands)."""


@volume_group.command("create")
@click.argument("name")
@json_option()
@pass_app
def volume_create(app, name, as_json):
    """Create volume NAME, empty."""
    made = jsonview.view("volume", volumes.create(app.ctx, name))
    if as_json:
        return print_json(made)
    click.echo(f"created volume {name} ({made['path']})")


@volume_group.command("list")
@json_option()
@pass_app
def volume_list(app, as_json):
    """List volumes, their size and the containers that mount them."""
    rows = jsonview.views("volume", volumes.list_volumes(app.ctx))
    if not as_json:
        for row in rows:
            row["size"] = megabytes(row["size"])
            row["created"] = jsonview.short_time(row["created"])
    print_table(rows, ["name", "size", "created", "containers"], as_json)


@volume_group.command("inspect")
@click.argument("name", shell_complete=completion.volumes)
@json_option()
@pass_app
def volume_inspect(app, name, as_json):
    """Show volume NAME: where its data is, its size, the containers that mount it."""
    row = jsonview.view("volume", volumes.inspect(app.ctx, name))
    if as_json:
        return print_json(row)
    click.echo(f"name: {row['name']}\npath: {row['path']}\nsize: {megabytes(row['size'])}\n"
               f"created: {jsonview.short_time(row['created']) or '-'}\n"
               f"containers: {', '.join(row['containers']) or '-'}")


@volume_group.command("remove")
@click.argument("names", nargs=-1, required=True, shell_complete=completion.volumes)
@json_option()
@pass_app
def volume_remove(app, names, as_json):
    """Remove volumes and their data; refused while a container mounts one."""
    with results("volume_removed", as_json) as removed:
        for name in names:
            gone = volumes.remove(app.ctx, name)
            removed.append({"name": name, "size": gone["size"]})
            if not as_json:
                click.echo(f"removed volume {name} ({megabytes(gone['size'])})")


@volume_group.command("export")
@click.argument("name", shell_complete=completion.volumes)
@click.argument("file", type=click.Path(path_type=Path), shell_complete=completion.files)
@json_option()
@pass_app
def volume_export(app, name, file, as_json):
    """Write volume NAME's files to FILE as a tar, owners as containers see them."""
    done = jsonview.view("volume_exported", volumes.export(app.ctx, name, file))
    if as_json:
        return print_json(done)
    click.echo(f"exported volume {name} to {file} ({done['entries']} entries, "
               f"{megabytes(done['size'])})")


@volume_group.command("import")
@click.argument("name")
@click.argument("file", type=click.Path(path_type=Path), shell_complete=completion.files)
@json_option()
@pass_app
def volume_import(app, name, file, as_json):
    """Create volume NAME from the tar FILE (as volume export writes it)."""
    made = jsonview.view("volume", volumes.import_(app.ctx, name, file))
    if as_json:
        return print_json(made)
    click.echo(f"imported volume {name} from {file} ({megabytes(made['size'])})")
