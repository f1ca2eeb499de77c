"""Changing a container's settings: set."""

import click

from ..errors import Usage
from ..ops import reconfigure
from . import completion, pass_app
from .options import config_options


@click.command("set")
@click.argument("name", shell_complete=completion.containers)
@config_options(editing=True)
@pass_app
def set_(app, name, **options):
    """Change a container's settings; limits and ports apply at once if it runs."""
    if not any(v for v in options.values() if v not in (None, ())):
        raise Usage("nothing to change", hint="see 'nspawnctl set --help'")
    for line in reconfigure.set_config(app.ctx, name, options):
        click.echo(line)
