"""Where the unit files come from: the installed nspawnctl.units, or a source checkout's
units/ when nspawnctl runs from one without being installed."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nspawnctl.errors import Error
from nspawnctl.systemd import unitfiles

REPO = Path(__file__).resolve().parents[2]


def test_template_reads_the_shipped_unit():
    assert unitfiles.template("nspawnctl-recover.service") == \
        (REPO / "units/nspawnctl-recover.service").read_text()


def test_a_missing_unit_is_one_clear_error():
    with pytest.raises(Error, match="no-such.service is missing from its installation"):
        unitfiles.template("no-such.service")


def test_a_checkout_that_is_not_installed_reads_its_own_units(tmp_path):
    """As in the Vagrant VM, where `python3 -m pytest` runs in /vagrant: `nspawnctl` is the
    checkout's folder, which has no `units` subpackage (pyproject.toml maps units/ in at
    install time)."""
    shutil.copytree(REPO / "nspawnctl", tmp_path / "nspawnctl",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "units", tmp_path / "units")
    (tmp_path / "units/nspawnctl-recover.service").write_text("# this checkout's\n")
    # -I -S: no site-packages, so no installed or editable nspawnctl.units can answer.
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "from nspawnctl.systemd import unitfiles; "
            "print(unitfiles.template('nspawnctl-recover.service'), end='')")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "# this checkout's\n"
