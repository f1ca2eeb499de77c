"""What there is: list, status, inspect, stats, top, images."""

import sys

import click

from ..ops import images, inventory
from ..settings.model import limits_text
from . import App, Group, completion, jsonview, pass_app
from .options import json_option
from .output import cell, megabytes, print_json, print_record, print_table, shown


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def list_(app, as_json):
    """List every container, running or not."""
    raw = inventory.list_containers(app.ctx)
    rows = jsonview.views("container", raw)
    if not as_json:
        for row, said in zip(rows, raw):
            row["limits"] = limits_text(said["limits"])  # 50% as given, not its bytes
            _mark_pending(row, ["address"], "pending")
    columns = ["name", "state", "os", "address", "port", "image", "enabled", "limits"]
    if any(row["stack"] for row in rows):  # a STACK column only where stacks are used
        columns.insert(1, "stack")
    if any(row["health"] for row in rows):  # a HEALTH column only where checks are set
        if not as_json:
            for row in rows:
                row["health"] = row["health"] and row["health"]["state"]
        columns.insert(columns.index("state") + 1, "health")
    print_table(rows, columns, as_json)


@click.command()
@click.argument("name", shell_complete=completion.containers)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def status(app, name, as_json):
    """Show one container in detail."""
    raw = inventory.status(app.ctx, name)
    record = jsonview.view("status", raw)
    log = None if as_json else record.pop("log")
    if not as_json:
        record["limits"] = limits_text(raw["limits"])
        _show_settings(record, raw)
        _mark_pending(record, list(record["pending"]), "pending after restart")
        record.pop("pending")
        record["health"] = _health_text(record["health"])
    print_record(record, as_json)
    if log:
        click.echo("log:")
        for line in log:
            click.echo(f"  {shown(line)}")


@click.command()
@click.argument("name", shell_complete=completion.containers)
@click.option("--json", "as_json", is_flag=True, default=True, hidden=True)
@pass_app
def inspect(app, name, as_json):
    """Show one container as JSON: all that status shows, and its .nspawn file and unit.

    As podman inspect, always JSON (--json is accepted and changes nothing); the unit is
    the file systemd runs it from and each drop-in, in the order systemd reads them.
    """
    print_record(jsonview.view("inspect", inventory.inspect(app.ctx, name)), True)


@click.command()
@click.argument("names", nargs=-1, shell_complete=completion.running_containers)
@click.option("--stream/--no-stream", default=None,
              help="Print again every --interval until Ctrl-C, or once.  Default: stream "
                   "on a terminal (as podman stats), once into a pipe or file, or with "
                   "--json.")
@click.option("--interval", "-i", type=click.FloatRange(min=0.1, max=3600), default=1.0,
              show_default=True, help="Seconds between samples (CPU %% is over this time).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one sample, a list).")
@pass_app
def stats(app, names, stream, interval, as_json):
    """Show what running containers use: CPU, memory, processes, network.

    Every running container, or those named.  CPU % is of one CPU (two busy CPUs: 200);
    figures the host has no cgroup for (memory on a host whose v1 memory controller
    systemd cannot use) show as - (null in JSON).
    """
    if stream is None:
        stream = not as_json and sys.stdout.isatty()
    tty = sys.stdout.isatty()
    from ..ops import stats as usage  # here: list and status need none of it
    for rows in usage.stats(app.ctx, list(names), interval):
        if as_json:
            print_table(jsonview.views("usage", rows), [], True)
        else:
            if stream and tty:
                click.echo("\x1b[H\x1b[2J", nl=False)  # the last table redrawn in place
            print_table([_usage_row(r) for r in rows],
                        ["name", "cpu", "memory", "pids", "net rx", "net tx"], False)
        if not stream:
            return


def _usage_row(row: dict) -> dict:
    return {"name": row["name"],
            "cpu": None if row["cpu_percent"] is None else f"{row['cpu_percent']:.2f}%",
            "memory": _size(row["memory_bytes"]), "pids": row["pids"],
            "net rx": _size(row["net_rx_bytes"]), "net tx": _size(row["net_tx_bytes"])}


def _size(value: int | None) -> str | None:
    if value is None:
        return None
    shown = float(value)
    for unit in ("B", "kB", "MB", "GB"):
        if shown < 1000 or unit == "GB":
            return f"{shown:.0f} {unit}" if unit == "B" else f"{shown:.1f} {unit}"
        shown /= 1000
    return None


@click.command()
@click.argument("name", shell_complete=completion.running_containers)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def top(app, name, as_json):
    """Show the processes running in container NAME.

    PID is as this host numbers it, CPID as the container does; USER is the user id inside
    the container; TIME is the CPU time it used.
    """
    from ..ops import stats as usage
    rows = jsonview.views("process", usage.top(app.ctx, name))
    if not as_json:
        rows = [{**r, "user": r["uid"], "rss": _size(r["rss"]),
                 "command": " ".join(r["command"]),
                 "time": f"{int(r['cpu_seconds']) // 60}:{r['cpu_seconds'] % 60:05.2f}"}
                for r in rows]
    print_table(rows, ["pid", "cpid", "ppid", "user", "state", "rss", "time", "command"],
                as_json)


def _health_text(health: dict | None) -> str | None:
    """'unhealthy (failing streak 2): the check's last line'."""
    if health is None:
        return None
    lines = health["last_output"].strip().splitlines()
    streak = f" (failing streak {health['failing_streak']})" if health["failing_streak"] else ""
    return f"{health['state']}{streak}{': ' + lines[-1][:200] if lines else ''}"


def _show_settings(record: dict, raw: dict):
    """A setting's value in status text as its flag takes it (--memory: 512M, 50%), where
    JSON has its value (bytes)."""
    from ..settings.model import SETTINGS
    for s in SETTINGS:
        value = raw.get(s.public)
        if s.show is not str and s.public in record and value is not None \
                and not isinstance(value, list):
            record[s.public] = s.show(value)
        elif s.show is not str and isinstance(value, list) and not s.multiple and value:
            record[s.public] = s.show(tuple(value))  # --health-cmd: as the flag takes it


def _mark_pending(row: dict, keys: list[str], words: str):
    """A setting saved for the next start, shown beside the value in force:
    'address 10.0.0.2 (pending after restart: 10.99.0.3)'."""
    for key in keys:
        if key in row["pending"]:
            row[key] = f"{cell(row[key])} ({words}: {cell(row['pending'][key])})"


@click.group("images", cls=Group, invoke_without_command=True)
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
@click.option("--dry-run", is_flag=True, help="Say what would be removed, and remove nothing.")
@json_option()
@pass_app
def images_rm(app, ref, dry_run, as_json):
    """Remove a pulled image (REF as pulled, or a base tree's key) no container uses."""
    done = images.remove(app.ctx, ref, dry_run=dry_run)
    if as_json:
        return _removed_json(done, dry_run)
    trees = [f"base tree {key} ({megabytes(done['tree_sizes'][key])})" for key in done["trees"]]
    click.echo(f"{'would remove' if dry_run else 'removed'} "
               f"{', '.join(done['names'] or done['trees'] or [ref])}: "
               + ", ".join([*trees, _blobs(done)]))


@images_group.command("prune")
@click.option("--dry-run", is_flag=True, help="Say what would be removed, and remove nothing.")
@json_option()
@pass_app
def images_prune(app, dry_run, as_json):
    """Remove cached base trees no container uses, and blobs no pulled image needs."""
    done = images.prune(app.ctx, dry_run=dry_run)
    if as_json:
        return _removed_json(done, dry_run)
    verb = "would remove" if dry_run else "removed"
    trees, sizes = done["trees"], done["tree_sizes"]
    total = sum(size or 0 for size in sizes.values())
    click.echo(f"{verb} {_count(len(trees), 'base tree')}"
               + (f" ({megabytes(total)}):" if trees else ""))
    for key in trees:
        click.echo(f"  {key}  {megabytes(sizes[key])}")
    if done["blobs"]:
        click.echo(f"{verb} {_blobs(done)}")


def _removed_json(done: dict, dry_run: bool):
    print_json(jsonview.view("images_removed", {
        "names": done["names"], "blobs": done["blobs"], "bytes": done["bytes"],
        "dry_run": dry_run,
        "trees": [{"key": key, "size": done["tree_sizes"][key]} for key in done["trees"]]}))


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _blobs(done: dict) -> str:
    return f"{_count(done['blobs'], 'blob')} ({megabytes(done['bytes'])})"
