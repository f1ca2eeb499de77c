"""nspawnctl(1): it renders without a warning, it holds every command and every container
setting (walked from click here, not from the generator), and install-extras puts it and the
completion scripts in place once."""

import os
import re
import shutil
import subprocess

import click
import pytest

from nspawnctl.cli import cli, extras, manpage
from nspawnctl.settings.model import CLI_SETTINGS


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    path = tmp_path_factory.mktemp("man") / "nspawnctl.1"
    path.write_text(manpage.render(cli))
    return path


def _needs(tool: str):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (make deps installs it)")


def test_groff_renders_it_without_a_warning(page):
    _needs("groff")
    out = subprocess.run(["groff", "-man", "-ww", "-z", str(page)], capture_output=True,
                         text=True, timeout=60)
    assert (out.returncode, out.stderr) == (0, "")


def test_man_shows_it_without_a_warning(page):
    _needs("man")
    out = subprocess.run(["man", "--warnings=w", "-l", str(page)], capture_output=True,
                         text=True, timeout=60, env=dict(os.environ, MANPAGER="cat",
                                                         MANWIDTH="80", LC_ALL="C.UTF-8"))
    assert (out.returncode, out.stderr) == (0, "")
    assert out.stdout.startswith("NSPAWNCTL(1)")


def _visible_commands(group: click.Group, path: str) -> list[str]:
    found = []
    ctx = click.Context(group, info_name="nspawnctl")
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        found.append(f"{path} {name}")
        if isinstance(command, click.Group):
            found += _visible_commands(command, f"{path} {name}")
    return found


def _headings(text: str) -> list[str]:
    """The .SS lines' command names, unescaped: "nspawnctl snapshot rm"."""
    names = []
    for line in text.splitlines():
        if line.startswith(".SS "):
            words = line[4:].strip('"').replace("\\-", "-").split()
            names.append(" ".join(w for w in words if re.fullmatch(r"[a-z][a-z-]*", w)))
    return names


def test_every_command_has_its_section(page):
    commands = _visible_commands(cli, "nspawnctl")
    assert len(commands) > 25  # the walk found the group's commands
    headings = _headings(page.read_text())
    assert sorted(headings) == sorted(commands)


def test_every_option_of_every_command_is_in_it(page):
    text = page.read_text().replace("\\-", "-")
    ctx = click.Context(cli, info_name="nspawnctl")
    for name in _visible_commands(cli, "nspawnctl"):
        command, sub_ctx = cli, ctx
        for word in name.split()[1:]:
            command = command.get_command(sub_ctx, word)
            sub_ctx = click.Context(command, info_name=word, parent=sub_ctx)
        for param in command.get_params(sub_ctx):
            if isinstance(param, click.Option) and not param.hidden:
                for opt in param.opts:
                    assert f"\\fB{opt}\\fR" in text, (name, opt)


def test_every_container_setting_is_described_once_with_when_it_applies(page):
    text = page.read_text().replace("\\-", "-")
    settings = text.split(".SH CONTAINER SETTINGS", 1)[1].split(".SH ", 1)[0]
    # exec's --env is podman's option of that name (the command's environment), not the
    # setting: its section is left out of the count
    exec_ = re.search(r'\.SS "nspawnctl exec .*?(?=\.SS )', text, re.S)
    assert exec_ and "--env" in exec_[0]
    others = text.replace(exec_[0], "")
    for setting in CLI_SETTINGS:
        assert others.count(f"\\fB{setting.flag}\\fR") == 1, setting.flag
        entry = settings.split(f"\\fB{setting.flag}\\fR", 1)[1].split(".TP", 1)[0]
        assert manpage.TAKES_EFFECT[setting.apply].replace("\\-", "-") in entry, setting.flag


def test_text_that_roff_would_take_as_markup_is_escaped():
    assert manpage._esc(".TH x\n'br\nback\\slash -x é") == \
        "\\&.TH x\n\\&'br\nback\\eslash \\-x \\[u00E9]"


def test_install_extras_writes_each_file_once(tmp_path):
    written = extras.install(cli, tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == sorted(
        [extras.MAN_PAGE, *extras.COMPLETIONS.values()])
    for path in written:
        assert path.stat().st_mode & 0o777 == 0o644
    assert (tmp_path / extras.MAN_PAGE).read_text() == manpage.render(cli)
    bash = (tmp_path / extras.COMPLETIONS["bash"]).read_text()
    assert "_NSPAWNCTL_COMPLETE=bash_complete" in bash and bash.rstrip().endswith(
        "_nspawnctl_completion_setup;")
    assert extras.install(cli, tmp_path) == []  # the same content: nothing is written
    (tmp_path / extras.MAN_PAGE).write_text("stale\n")
    assert extras.install(cli, tmp_path) == [tmp_path / extras.MAN_PAGE]


def test_install_extras_is_one_line_where_it_cannot_write(tmp_path):
    from nspawnctl.errors import Error
    (tmp_path / "usr").write_text("a file where a directory goes")
    with pytest.raises(Error, match="^cannot write .*: Not a directory"):
        extras.install(cli, tmp_path)
