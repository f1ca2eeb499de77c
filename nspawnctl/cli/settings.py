"""Changing a container's settings: set."""

import click

from ..errors import Usage
from ..ops import reconfigure
from . import completion, jsonview, pass_app
from .options import config_options, json_option
from .output import print_json


@click.command("set")
@click.argument("name", shell_complete=completion.containers)
@config_options(editing=True)
@json_option()
@pass_app
def set_(app, name, as_json, **options):
    """Change a container's settings; limits and ports apply at once if it runs."""
    # (a switch turned off is False: a change too)
    if all(v is None or v == () for v in options.values()):
        raise Usage("nothing to change", hint="see 'nspawnctl set --help'")
    done = reconfigure.set_settings(app.ctx, name, options)
    if as_json:
        print_json(jsonview.view("configured", done))
        return
    for line in reconfigure.said(done):
        click.echo(line)
