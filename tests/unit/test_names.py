"""names.check_name: systemd's machine-name rules, checked before a name becomes a path."""

import pytest

from nspawnctl.errors import USAGE, Error
from nspawnctl.names import MAX_LENGTH, check_name

GOOD = [
    "a", "0", "web", "web-1", "web_1", "_private", "Debian12", "a-", "a.b", "a.b.c",
    "web.example.org", "a.-b", "x" * 64, "a" * 31 + "." + "b" * 32,
]

BAD = [
    ("", "empty"),
    ("x" * 65, "longer than 64"),
    ("a" * 32 + "." + "b" * 32, "longer than 64"),
    ("a/b", None), ("/", None), ("../etc", None), ("a/", None),
    (".host", "reserved"),
    ("-x", None), ("--help", None),
    (".x", None), (".", None), ("..", None),
    ("a..b", None), ("a.", None), ("a.b.", None),
    ("a b", None), ("a\tb", None), ("a\n", None), ("\na", None), ("a\x00b", None),
    ("caf\u00e9", None), ("a:b", None), ("a@b", None), ("a\\b", None), ("a*", None),
    ("$(id)", None), ("a;b", None),
]


@pytest.mark.parametrize("name", GOOD)
def test_good_names_pass_unchanged(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name, why", BAD)
def test_bad_names_are_refused(name, why):
    with pytest.raises(Error) as info:
        check_name(name)
    err = info.value
    assert err.exit_code == USAGE  # a name given on the command line
    assert "\n" not in err.message.replace(repr(name), "")  # one line (the repr escapes)
    if name:
        assert repr(name) in err.message
    if why:
        assert why in err.message


def test_max_length_is_hostname_max():
    assert MAX_LENGTH == 64


def test_bad_characters_come_with_a_hint():
    with pytest.raises(Error) as info:
        check_name("a/b")
    assert info.value.hint and "-" in info.value.hint
