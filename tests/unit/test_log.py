"""nspawnctl.log: debug lines under --debug (logging configured), warnings always."""

import subprocess
import sys

from nspawnctl import log
from nspawnctl.run import run


def test_commands_are_logged_once_debug_configured_logging(caplog):
    with caplog.at_level("DEBUG"):
        run(["true"])
    assert [r.getMessage() for r in caplog.records] == ["run: true"]


def test_without_debug_nothing_is_logged_and_warnings_still_print():
    code = ("import sys; from nspawnctl import log; log.debug('x', 'hidden %s', 1); "
            "assert 'logging' not in sys.modules; log.warning('x', 'shown %s', 2)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stderr == "shown 2\n"


def test_debug_is_a_no_op_until_logging_is_loaded(monkeypatch):
    monkeypatch.delitem(sys.modules, "logging")
    log.debug(__name__, "nothing to see")  # no logging module: returns, imports nothing
    assert "logging" not in sys.modules
