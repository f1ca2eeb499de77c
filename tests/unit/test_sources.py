"""Sources of root trees are plugins (sources/base.py): a new one is a class and one entry in
SOURCES, and create, --from's help and its errors know it with nothing else changed."""

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from nspawnctl import cli, sources
from nspawnctl.errors import Error
from nspawnctl.settings.model import ContainerConfig
from nspawnctl.sources.base import Plan, Request, Source
from tests.unit.fakes import context

ROOT = os.geteuid() == 0


class Greeting(Source):
    """A made-up source: a tree holding one file that says hello to REST."""

    kind, syntax, summary = "hello", "hello:NAME", "a tree that greets NAME"

    def plan(self, rest: str, request: Request) -> Plan:
        if not rest.isalpha():
            raise Error(f"invalid name {rest!r} for hello:")

        def build(tree: Path) -> dict:
            (tree / "usr").mkdir(parents=True)
            (tree / "etc").mkdir()
            (tree / "greeting").write_text(f"hello {rest}\n")
            return {"method": "greeting"}
        return Plan(build=build, command=("/bin/true",), boot=False)


@pytest.fixture
def greeting(monkeypatch):
    monkeypatch.setitem(sources.SOURCES, "hello", Greeting())


@pytest.mark.skipif(not ROOT, reason="create needs root")
def test_a_new_source_is_one_class_and_one_entry(greeting, paths):
    from nspawnctl.ops.create import create
    info = create(context(paths), "g", "hello:world", ContainerConfig(network="none"),
                  Request(paths))
    assert info["method"] == "greeting"
    assert (paths.tree("g") / "greeting").read_text() == "hello world\n"
    assert "Parameters=/bin/true" in paths.nspawn_file("g").read_text()
    assert "Boot=no" in paths.nspawn_file("g").read_text()


def test_a_source_refuses_its_bad_values_before_anything_is_made(greeting, paths):
    from nspawnctl.ops.create import create
    with pytest.raises(Error, match="invalid name '1' for hello:"):
        create(context(paths), "g", "hello:1", ContainerConfig(network="none"), Request(paths))
    assert not paths.tree("g").exists()


def test_options_a_source_cannot_honour_are_refused_by_its_flags(greeting, paths):
    hello = sources.SOURCES["hello"]
    with pytest.raises(Error, match="--overlay needs a cached base tree"):
        sources.check(hello, Request(paths), overlay=True)
    with pytest.raises(Error, match="--add puts files in a tree made from scratch"):
        sources.check(hello, Request(paths, adds=("/bin/true",)), overlay=False)


def test_help_lists_every_source():
    out = CliRunner().invoke(cli.cli, ["create", "--help"]).output
    for source in sources.SOURCES.values():
        assert source.syntax in out and source.summary.split(",")[0] in out.replace("\n", " ")


def test_help_and_errors_know_a_new_source(greeting):
    from nspawnctl.cli import options
    assert "hello:NAME" in options.sources_help()
    assert "hello:NAME      " in options.sources_epilog()
    with pytest.raises(Error) as error:
        sources.lookup("nope:x")
    assert "hello:NAME" in (error.value.hint or "")


@pytest.mark.parametrize("text, kind, rest", [
    ("debootstrap:trixie", "debootstrap", "trixie"), ("tar:/x.tar", "tar", "/x.tar"),
    ("oci:/img:latest", "oci", "/img:latest"), ("scratch", "scratch", ""),
])
def test_lookup(text, kind, rest):
    source, got = sources.lookup(text)
    assert (source.kind, got) == (kind, rest)


@pytest.mark.parametrize("text", ["scratch:x", "tar:", "tar", "debootstrap", "", "nope:x"])
def test_lookup_refuses(text):
    with pytest.raises(Error, match="unknown source"):
        sources.lookup(text)
