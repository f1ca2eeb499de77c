"""Day two: snapshots, rollback, cp."""

import click

from ..ops import copy, snapshot
from . import Group, completion, jsonview, pass_app
from .options import json_option
from .output import megabytes, print_json, print_record, print_table


class DefaultGroup(Group):
    """A group whose first argument, when it names no subcommand, goes to a default one:
    `snapshot NAME [TAG]` creates, `snapshot rm|list|rollback ...` do the rest.  A container
    named like a subcommand is reached through `snapshot create NAME`."""

    default = "create"

    def resolve_command(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = [self.default, *args]
        return super().resolve_command(ctx, args)

    def shell_complete(self, ctx, incomplete):
        # `snapshot NAME` makes one: the containers besides the subcommands
        return [*super().shell_complete(ctx, incomplete),
                *completion.containers(ctx, None, incomplete)]

    def parse_args(self, ctx, args):
        # `snapshot --stop NAME`: options before NAME belong to create, not to the group
        if args and args[0].startswith("-") and args[0] not in ("-h", "--help"):
            args = [self.default, *args]
        return super().parse_args(ctx, args)


def _snapshot_rows(rows: list[dict], as_json: bool) -> None:
    rows = jsonview.views("snapshot", rows, read=True)
    if not as_json:
        for row in rows:
            row["size"] = f"{(row['size'] or 0) / 1e6:.1f} MB"
            row["created"] = (row["created"] or "").replace("T", " ").removesuffix("Z")
            row["volumes"] = ",".join(row["volumes"]) or "-"
    print_table(rows, ["tag", "method", "size", "created", "volumes"], as_json)


@click.group("snapshot", cls=DefaultGroup)
def snapshot_group():
    """Snapshots of a container's tree and settings: snapshot NAME [TAG] makes one
    (create, list, rm and rollback are the subcommands)."""





@snapshot_group.command("create")
@click.argument("name", shell_complete=completion.containers)
@click.argument("tag", required=False)
@click.option("--stop", "stop_if_needed", is_flag=True,
              help="Where a running container cannot be frozen, stop it for the copy and "
                   "start it again.")
@click.option("--with-volumes", "with_volumes", is_flag=True,
              help="Copy the named volumes NAME mounts too, in the same moment (refused "
                   "while another running container mounts one).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_app
def snapshot_create(app, name, tag, stop_if_needed, with_volumes, as_json):
    """Snapshot NAME as TAG (default: the UTC time, e.g. 20261128T192500Z)."""
    info = jsonview.view("snapshot", snapshot.snapshot(app.ctx, name, tag,
                                                       stop_if_needed=stop_if_needed,
                                                       with_volumes=with_volumes), read=True)
    if as_json:
        print_record(info, True)
    else:
        held = f", volumes {', '.join(info['volumes'])}" if info["volumes"] else ""
        click.echo(f"snapshot {info['tag']} of {name} ({info['method']}, "
                   f"{info['size'] / 1e6:.1f} MB{held})")


@snapshot_group.command("list")
@click.argument("name", shell_complete=completion.containers)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def snapshot_list(app, name, as_json):
    """List NAME's snapshots with their size and time."""
    _snapshot_rows(snapshot.list_snapshots(app.ctx, name), as_json)


@snapshot_group.command("rm")
@click.argument("name", shell_complete=completion.containers)
@click.argument("tag", shell_complete=completion.snapshot_tags)
@json_option()
@pass_app
def snapshot_rm(app, name, tag, as_json):
    """Remove NAME's snapshot TAG."""
    meta = snapshot.remove_snapshot(app.ctx, name, tag)
    if as_json:
        print_json(jsonview.view("snapshot_removed",
                                 {"name": name, "tag": tag, "size": meta.get("size")}))
        return
    click.echo(f"removed snapshot {tag} of {name} ({megabytes(meta.get('size'))})")


@snapshot_group.command("rollback")
@click.argument("name", shell_complete=completion.containers)
@click.argument("tag", shell_complete=completion.snapshot_tags)
@click.option("--with-volumes", "with_volumes", is_flag=True,
              help="Put back the named volumes the snapshot holds too (refused while another "
                   "running container mounts one); without it they are left as they are.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_app
def snapshot_rollback(app, name, tag, with_volumes, as_json):
    """Put NAME back as snapshot TAG holds it (tree and settings); a running container is
    stopped and started again.  The snapshot stays."""
    info = jsonview.view("rolled_back", snapshot.rollback(app.ctx, name, tag,
                                                          with_volumes=with_volumes))
    if as_json:
        print_record(info, True)
    else:
        held = f", volumes {', '.join(info['volumes'])}" if info["volumes"] else ""
        click.echo(f"{name} rolled back to {tag} ({info['method']}{held})"
                   + (f": {info['state']}" if info["restarted"] else ""))




@click.command()
@click.argument("src", shell_complete=completion.files)
@click.argument("dst", shell_complete=completion.files)
@click.option("--preserve-owner", is_flag=True,
              help="Out of a container: keep owners and groups as they are on disk (the "
                   "container's user-namespace range), and set-ID bits of ids in that range.")
@json_option()
@pass_app
def cp(app, src, dst, preserve_owner, as_json):
    """Copy a file or directory into or out of a container, running or stopped: one side is
    NAME:/PATH.  A copy in is owned as the container sees it (owners mapped through its user
    namespace); a copy out belongs to the invoking user (sudo's SUDO_UID/SUDO_GID), without
    set-ID bits, file capabilities or device nodes.  A path in the container never leads out
    of its tree, whatever the container does meanwhile."""
    info = copy.copy(app.ctx, src, dst, preserve_owner=preserve_owner)
    if as_json:
        print_json(jsonview.view("copied", info))
        return
    click.echo(f"copied {info['from']} to {info['to']}")
