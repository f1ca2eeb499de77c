"""The README and docs/: every relative link leads to a file that exists and, with an anchor,
to a heading of that file; every page of docs/ is reachable from the README; the README's two
commands are targets of the Makefile."""

import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def links(page: Path) -> list[str]:
    """The targets of page's Markdown links, outside code blocks and inline code."""
    text = re.sub(r"`[^`\n]*`", "", FENCE.sub("", page.read_text()))
    return LINK.findall(text)


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives page's headings: lower case, punctuation dropped but '-' and
    '_', spaces as '-' (a repeated heading gets -1, -2, ...)."""
    found: set[str] = set()
    for line in FENCE.sub("", page.read_text()).splitlines():
        heading = re.match(r"#{1,6} (.+)", line)
        if not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
        n, unique = 0, slug
        while unique in found:
            n += 1
            unique = f"{slug}-{n}"
        found.add(unique)
    return found


def broken(page: Path) -> list[str]:
    wrong = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):  # https:, mailto:: not ours to check
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if REPO not in linked.parents and linked != REPO:
            wrong.append(f"{target}: outside the repository")
        elif not linked.exists():
            wrong.append(f"{target}: no such file")
        elif anchor and (linked.suffix != ".md" or anchor not in anchors(linked)):
            wrong.append(f"{target}: no heading #{anchor} in {linked.name}")
    return wrong


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_link_resolves(page):
    assert broken(page) == []


def test_the_check_finds_a_broken_file_and_a_broken_anchor(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs/a.md").write_text("# A page\n\n## How to read it\n")
    readme = tmp_path / "README.md"
    readme.write_text("[ok](docs/a.md#how-to-read-it) [gone](docs/b.md) "
                      "[anchor](docs/a.md#nowhere) `[code](docs/c.md)` [self](#a-page)\n"
                      "```\n[fenced](docs/d.md)\n```\n# A page\n")
    assert broken(readme) == ["docs/b.md: no such file",
                              "docs/a.md#nowhere: no heading #nowhere in a.md"]


def test_every_page_of_docs_is_linked_from_the_readme():
    # reachable: linked from the README, or from a page that is (docs/json.md from
    # scripting.md)
    linked, todo = set(), [REPO / "README.md"]
    while todo:
        page = todo.pop()
        for target in links(page):
            path = target.partition("#")[0]
            if path and not re.match(r"[a-z]+:", path):
                found = (page.parent / path).resolve()
                if found not in linked and found.suffix == ".md" and found.exists():
                    linked.add(found)
                    todo.append(found)
    assert [p.name for p in PAGES[1:] if p not in linked] == []


def test_the_readme_s_two_commands_are_makefile_targets():
    first_block = FENCE.search((REPO / "README.md").read_text()).group(0)
    commands = re.findall(r"^make (\w+)", first_block, re.M)
    assert commands == ["demo", "test"]
    makefile = (REPO / "Makefile").read_text()
    for target in commands:
        assert re.search(rf"^{target}:", makefile, re.M), target


def test_the_readme_names_every_command():
    import click

    from nspawnctl.cli import ALIASES, cli
    section = (REPO / "README.md").read_text().split("## Commands", 1)[1].split("\n- ", 1)[0]
    named = {item.split()[0] for item in re.findall(r"`([^`]+)`", section)}
    ctx = click.Context(cli)
    # podman's names (rm, ps) are the same commands: --help shows them beside those
    visible = {name for name in cli.list_commands(ctx)
               if not cli.get_command(ctx, name).hidden and name not in ALIASES}
    assert named == visible
