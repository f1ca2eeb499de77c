"""Stacks: apply a file that describes containers and networks (and spec, its inverse)."""

import sys

import click

from ..errors import CHANGES
from ..stacks import apply as stacks
from ..stacks import spec as stack_spec
from . import completion, jsonview, pass_app
from .output import print_record


@click.command("apply")
@click.option("-f", "--file", "path", required=True, metavar="FILE",
              help="The stack file (YAML; '-' reads standard input), or a compose file.")
@click.option("--dry-run", is_flag=True,
              help="Print the plan and change nothing; exit 0 when the host matches the "
                   f"file, {CHANGES} when there is something to do.")
@click.option("--prune", is_flag=True,
              help="Remove the containers and networks this stack made that the file no "
                   "longer lists (without it, they are named and left).")
@click.option("--name", "stack_name", metavar="NAME",
              help="The stack's name (default: the file's name: key, else its file name "
                   "without the extension).")
@click.option("--ignore-unsupported", is_flag=True,
              help="Compose files: go on without the keys nspawnctl cannot honour (each is "
                   "said), instead of refusing the file.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_app
def apply_command(app, path, dry_run, prune, stack_name, ignore_unsupported, as_json):
    """Make this host's containers and networks match a stack file: create what is missing,
    change what differs (live where set is), start and stop; --dry-run shows the plan.

    The file's containers take create's and set's options by their long names, and from,
    state (running or stopped) and enabled; docs/stacks.md has the format.  A second apply
    of the same file changes nothing.  Containers another stack or a person made are never
    touched.
    """
    stack, warnings = stacks.load_file(path, ignore_unsupported, stack_name)
    for line in warnings:
        click.echo(f"warning: {line}", err=True)
    say = (lambda _line: None) if as_json else click.echo
    result = stacks.apply(app.ctx, stack, prune=prune, dry_run=dry_run, filename=path,
                          say=say)
    for line in result.warnings:  # the plan's: what the file asks that apply does not do
        click.echo(f"warning: {line}", err=True)
    result.warnings = warnings + result.warnings
    if as_json:
        print_record(jsonview.view("applied", result.to_json()), True)
    else:
        if dry_run:
            for step in result.steps:
                click.echo(f"would {step.text()}")
        if not result.steps:
            click.echo(f"stack {stack.name}: nothing to do, the host matches the file")
        for what in result.left:
            click.echo(f"left {what}: no longer in the file (apply --prune removes it)")
    if dry_run and result.steps:
        sys.exit(CHANGES)


@click.command("spec")
@click.argument("names", nargs=-1, required=True, metavar="NAME...",
                shell_complete=completion.containers)
@click.option("--name", "stack_name", metavar="NAME",
              help="The stack's name (name:) in the file (default: the stack the containers "
                   "all belong to, else none: apply names it after the file).")
@pass_app
def spec_command(app, names, stack_name):
    """Print a stack file (YAML) that apply turns back into containers NAME..., with the
    networks they use; only what differs from create's defaults.

    Dependencies come first.  The part of a container's env its image gave is left out
    (apply gives it again).  A container made before nspawnctl kept how it was made is
    refused with one line.
    """
    made = stack_spec.spec(app.ctx, list(names), stack_name)
    for line in made.warnings:
        click.echo(f"warning: {line}", err=True)
    click.echo(made.text(), nl=False)
