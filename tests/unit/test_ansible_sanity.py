"""`ansible-test sanity` on the collection (ansible/, issue 30), the tests of it that run
offline: a copy of the collection at ansible_collections/nspawnctl/containers (where
ansible-test wants it), a HOME of the test's own, and every sanity test but those that make a
virtualenv and bootstrap pip into it from ci-files.testing.ansible.com (SKIPPED; they passed
by hand with Debian's checkers, docs/ansible.md)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

COLLECTION = Path(__file__).resolve().parents[2] / "ansible"
# Each needs a virtualenv with pip from the network.
SKIPPED = ("ansible-doc", "import", "pep8", "pylint", "runtime-metadata", "validate-modules",
           "yamllint")


def sanity(tmp_path, *tests: str, source: Path = COLLECTION) -> subprocess.CompletedProcess:
    where = tmp_path / "ansible_collections" / "nspawnctl" / "containers"
    shutil.copytree(source, where, ignore=shutil.ignore_patterns("__pycache__", "output"))
    (tmp_path / "home").mkdir(parents=True)
    skips = [a for t in SKIPPED for a in ("--skip-test", t)]
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    return subprocess.run(["ansible-test", "sanity", "--python", python, *skips,
                           *[a for t in tests for a in ("--test", t)]],
                          cwd=where, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, HOME=str(tmp_path / "home")))


@pytest.fixture
def ansible_test():
    if not shutil.which("ansible-test"):
        pytest.skip("ansible-test is not installed (Makefile TEST_PACKAGES: ansible-core)")


def test_offline_sanity_tests_pass(tmp_path, ansible_test):  # noqa: ARG001
    r = sanity(tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ran = [line for line in r.stdout.splitlines() if line.startswith("Running sanity test")]
    assert len(ran) >= 20, r.stdout  # the offline ones all ran, none was left out by mistake


def test_the_sanity_run_finds_a_module_that_breaks_a_rule(tmp_path, ansible_test):  # noqa: ARG001
    """The same run fails on a copy whose module has an assert (no-assert's rule), so the
    pass above is the collection's, not a run that checks nothing."""
    module = COLLECTION / "plugins" / "modules" / "network.py"
    broken = tmp_path / "broken"
    shutil.copytree(COLLECTION, broken, ignore=shutil.ignore_patterns("__pycache__"))
    text = (broken / "plugins/modules/network.py").read_text()
    (broken / "plugins/modules/network.py").write_text(
        text.replace("def main():\n", "def main():\n    assert True\n", 1))
    assert module.read_text() != (broken / "plugins/modules/network.py").read_text()
    r = sanity(tmp_path / "run", "no-assert", source=broken)
    assert r.returncode != 0 and "network.py" in r.stdout + r.stderr, r.stdout + r.stderr
