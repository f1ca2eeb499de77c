"""What a container's root writes and nspawnctl shows is printed escaped (issue 26: the class
"anything a container's root can write is hostile"; how it is read: test_os_release.py).

`list` shows each container's OS name from its os-release, a hint shows lines of its log,
upgrade's progress shows apt's lines from inside it: any of them could carry escape sequences
that rewrite the admin's terminal, or a line break that forges a row of the table.
"""

import pytest

from nspawnctl import cli
from nspawnctl.cli import output


def test_what_a_container_wrote_is_shown_escaped():
    evil = "\x1b]0;owned\x07Debian\nweb2 running"
    shown = output._cell(evil)
    assert "\x1b" not in shown and "\x07" not in shown and "\n" not in shown
    assert shown == "\\x1b]0;owned\\x07Debian\\nweb2 running"
    assert output._cell(["ok", "a\u2028b"]) == "ok,a\\u2028b"
    assert output._cell("Debian GNU/Linux 12 (bookworm)") == "Debian GNU/Linux 12 (bookworm)"


def test_messages_keep_their_lines_and_lose_escapes():
    hint = "its log says:\n\x1b[2Jline\twith tab"
    assert output.shown(hint, keep=output.LINES) == "its log says:\n\\x1b[2Jline\twith tab"


def test_an_error_with_escapes_is_printed_escaped(monkeypatch, capsys):
    from nspawnctl.errors import Error

    def boom(**kw):
        raise Error("bad \x1b]0;x\x07 value", hint="log:\n\x1b[31mred")
    monkeypatch.setattr(cli.cli, "main", boom)
    monkeypatch.setattr(cli.sys, "argv", ["nspawnctl", "list"])
    with pytest.raises(SystemExit) as exit:
        cli.main()
    assert exit.value.code == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err
    assert err == "nspawnctl: bad \\x1b]0;x\\x07 value\nhint: log:\n\\x1b[31mred\n"
