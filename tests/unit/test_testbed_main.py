"""`python -m tests.testbed --keep` ended with SIGTERM tears its testbed down (a fake one)."""

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import contextlib, sys
    from tests import testbed

    class FakeTestbed:
        leader = 1

    @contextlib.contextmanager
    def open_host():
        try:
            yield FakeTestbed()
        finally:
            print("torn down", flush=True)

    testbed.Testbed, testbed.open_host = FakeTestbed, open_host
    testbed.main(["--keep"])
""")


def test_sigterm_tears_a_kept_testbed_down():
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("testbed up:")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert out == "torn down\n", err
    # 0, or -SIGINT when the signal came before pause(): an interrupt after the teardown
    assert proc.returncode != -signal.SIGTERM
