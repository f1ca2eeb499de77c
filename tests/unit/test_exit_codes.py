"""Exit codes say what went wrong (errors.py; issue 34): a command line that is wrong 2 (as
click's own parse errors), no such thing 3, it exists already / is in use / in the wrong
state 4, an input's content refused 5, any other failure 1.  One command per kind, as a user
runs it; and a look through the source that no 'no such ...' or 'already exists' is raised
as a plain Error, whose code is 1."""

import ast
from pathlib import Path

import pytest

from nspawnctl.errors import CONFLICT, FAILURE, INVALID_INPUT, NOT_FOUND, USAGE
from nspawnctl.paths import Paths
from nspawnctl.settings.dropin import DROPIN_NAME
from tests.unit.test_cli import assert_error, make_tree, nspawnctl

SOURCE = Path(__file__).resolve().parents[2] / "nspawnctl"


def test_a_bad_option_value_is_a_usage_error_like_clicks(tmp_path):
    make_tree(tmp_path, "x")
    assert_error(nspawnctl(tmp_path, "set", "x", "--memory", "lots"),
                 "nspawnctl: invalid size 'lots'", USAGE)
    result = nspawnctl(tmp_path, "set", "x", "--restart", "sometimes")  # click's own
    assert result.returncode == USAGE and "Traceback" not in result.stderr, result
    assert_error(nspawnctl(tmp_path, "create", "bad/name"), "nspawnctl: invalid container", USAGE)


@pytest.mark.parametrize("args", [["status", "nope"], ["snapshot", "list", "nope"],
                                  ["start", "nope"], ["kill", "nope"]])
def test_no_such_container_is_not_found(tmp_path, args):
    assert_error(nspawnctl(tmp_path, *args), "nspawnctl: no container named 'nope'", NOT_FOUND)


def test_an_existing_name_is_a_conflict(tmp_path):
    make_tree(tmp_path, "x")
    assert_error(nspawnctl(tmp_path, "create", "x"),
                 "nspawnctl: a container named 'x' already exists", CONFLICT)


def test_a_settings_file_it_cannot_read_is_invalid_input(tmp_path):
    make_tree(tmp_path, "x")
    dropin = Paths.under(tmp_path).dropin_dir("x")
    dropin.mkdir(parents=True)
    (dropin / DROPIN_NAME).write_text("[Service]\nMemoryMax=lots\n")
    assert_error(nspawnctl(tmp_path, "status", "x"), "nspawnctl: x: invalid MemoryMax=",
                 INVALID_INPUT)


def test_anything_else_is_a_failure(tmp_path):
    make_tree(tmp_path, "x")
    assert_error(nspawnctl(tmp_path, "list"),
                 "nspawnctl: systemd is not asked about containers under a relocated root",
                 FAILURE)


# The words of a message that say which kind of failure it is: such a message raised as a
# plain Error (code 1) is a script's 'no such container' that looks like any failure.
KINDS = {"NotFound": ("no such ", "no container named", "no network named", "no image ",
                      " has no snapshot"),
         "Conflict": ("already exists", "exists already", " is busy", " is in use",
                      " is used by", "still has containers", " is running", "is not running",
                      "already has a snapshot", "already published")}


def _plain_errors(tree: ast.AST):
    """(line, text) of each Error(...) call: its message's literal parts."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id == "Error" and node.args:
            first = node.args[0]
            parts = first.values if isinstance(first, ast.JoinedStr) else [first]
            text = "".join(p.value for p in parts
                           if isinstance(p, ast.Constant) and isinstance(p.value, str))
            yield node.lineno, text


def test_no_kind_of_failure_is_raised_with_the_generic_code():
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        for line, text in _plain_errors(ast.parse(path.read_text(), str(path))):
            for kind, words in KINDS.items():
                if any(w in text for w in words):
                    found.append(f"{path.relative_to(SOURCE)}:{line}: {text!r} is a {kind}")
    assert found == []
