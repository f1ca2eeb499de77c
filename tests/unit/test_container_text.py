"""What a container's root writes and nspawnctl shows: read inside the tree, once, bounded, and
printed escaped (issue 26: the class "anything a container's root can write is hostile").

`list` shows each container's OS name from its os-release.  Read by path from the host, a
container's root could make that file a FIFO (every `nspawnctl list` hangs), a symlink to a
host file, or gigabytes; and the name it holds could carry escape sequences that rewrite the
admin's terminal or a line break that forges a row of the table.
"""

import os
import threading

import pytest

from nspawnctl import cli
from nspawnctl.ops.inventory import os_release


def _tree(tmp_path):
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "usr/lib").mkdir(parents=True)
    (tree / "usr/lib/os-release").write_text('ID=debian\nPRETTY_NAME="Debian 12"\n')
    return tree


def _within(seconds, fn):
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("value", fn()), daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "it blocked"
    return result["value"]


def test_a_fifo_does_not_block_list(tmp_path):
    tree = _tree(tmp_path)
    os.mkfifo(tree / "etc/os-release")
    assert _within(5, lambda: os_release(tree))["ID"] == "debian"  # /usr/lib's, as os-release(5)


def test_links_resolve_inside_the_tree(tmp_path):
    tree = _tree(tmp_path)
    host = tmp_path / "host-secret"
    host.write_text("ID=secret\nPRETTY_NAME=the host's file\n")
    os.symlink(str(host), tree / "etc/os-release")  # absolute: means the tree's own path
    assert os_release(tree)["ID"] == "debian"
    (tree / "etc/os-release").unlink()
    os.symlink("../../../../../../../.." + str(host), tree / "etc/os-release")
    assert os_release(tree)["ID"] == "debian"


def test_a_directory_link_does_not_lead_out(tmp_path):
    tree = _tree(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "os-release").write_text("ID=outside\n")
    (tree / "etc").rmdir()
    os.symlink(str(outside), tree / "etc")
    assert os_release(tree)["ID"] == "debian"


def test_a_huge_file_is_not_read(tmp_path):
    tree = _tree(tmp_path)
    with open(tree / "etc/os-release", "wb") as f:
        f.write(b"ID=big\n")
        f.truncate(1 << 30)  # sparse: 1 GiB
    assert os_release(tree)["ID"] == "debian"


def test_what_a_container_wrote_is_shown_escaped():
    evil = "\x1b]0;owned\x07Debian\nweb2 running"
    shown = cli._cell(evil)
    assert "\x1b" not in shown and "\x07" not in shown and "\n" not in shown
    assert shown == "\\x1b]0;owned\\x07Debian\\nweb2 running"
    assert cli._cell(["ok", "a\u2028b"]) == "ok,a\\u2028b"
    assert cli._cell("Debian GNU/Linux 12 (bookworm)") == "Debian GNU/Linux 12 (bookworm)"


def test_messages_keep_their_lines_and_lose_escapes():
    hint = "its log says:\n\x1b[2Jline\twith tab"
    assert cli._shown(hint, keep=cli._LINES) == "its log says:\n\\x1b[2Jline\twith tab"


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
