"""The README's examples, read as a tour (tests/readme_examples.py): every command parses as
nspawnctl parses it, and no command names a container that an earlier one removed or renamed
away.  tests/integration/test_readme_tour.py runs them all, in order, in the testbed."""

import click
import pytest

from nspawnctl.cli import cli
from tests.readme_examples import commands


def parsed(argv: list[str]) -> tuple[str, dict]:
    """(command path, its parameters) as click parses argv; a bad option raises."""
    ctx = cli.make_context("nspawnctl", list(argv))
    command, path = cli, []
    args = ctx.protected_args + ctx.args
    while isinstance(command, click.Group) and args:
        name, sub, args = command.resolve_command(ctx, args)  # as the group itself does
        assert name is not None and sub is not None
        path.append(name)
        ctx = sub.make_context(name, list(args), parent=ctx)
        command, args = sub, ctx.protected_args + ctx.args
    return " ".join(path), ctx.params


def gone_names(tour: list[list[str]]) -> list[str]:
    """Commands that name a container an earlier command removed (or renamed away) and no
    later create made again: what the tour cannot run in order."""
    gone: set[str] = set()
    wrong = []
    for argv in tour:
        try:
            path, params = parsed(argv)
        except click.UsageError:
            continue  # test_every_example_parses says so
        named = set()
        for key in ("name", "names", "src", "old", "source", "dest"):
            value = params.get(key)
            for v in (value if isinstance(value, (list, tuple)) else [value]):
                if isinstance(v, str):
                    named.add(v.split(":", 1)[0])
        if path in ("create", "run", "clone"):
            gone.discard(params.get("name") or params.get("dst"))
        elif named & gone:
            wrong.append(" ".join(argv))
        if path == "remove":
            gone.update(params["names"])
        elif path == "rename":
            gone.add(params["old"])
            gone.discard(params["new"])
    return wrong


def test_the_readme_has_a_tour():
    tour = commands()
    assert len(tour) > 20
    assert tour[0] == ["create", "web"]
    assert ["create", "tiny-web", "--from", "scratch", "--add", "/bin/busybox", "--add",
            "/srv/www:/www", "--cmd", "/bin/busybox httpd -f -p 80 -h /www"] in tour


@pytest.mark.parametrize("argv", commands(), ids=" ".join)
def test_every_example_parses(argv):
    parsed(argv)


def test_no_example_names_a_container_the_tour_removed():
    assert gone_names(commands()) == []


def test_the_check_sees_a_removed_container_used():
    text = ("```console\n$ sudo nspawnctl create web\n"
            "$ sudo nspawnctl stop web && sudo nspawnctl remove web\n"
            "$ sudo nspawnctl export web web.tar   # gone\n```\n")
    assert commands(text) == [["create", "web"], ["stop", "web"], ["remove", "web"],
                              ["export", "web", "web.tar"]]
    assert gone_names(commands(text)) == ["export web web.tar"]
