"""The .nspawn files nspawnctl writes, read by the real systemd-nspawn.

A busybox tree runs one command whose arguments, environment, working
directory and bind mounts come only from the rendered file: if our quoting or
syntax differed from systemd's, the command would see something else.
Needs root and systemd-nspawn; no booted systemd (--register=no --keep-unit).
"""

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from nspawnctl.settings.model import ContainerConfig
from nspawnctl.settings.nspawnfile import render_nspawn
from nspawnctl.settings.values import Bind

pytestmark = pytest.mark.integration

BUSYBOX = "/bin/busybox"
SETTINGS_DIR = Path("/run/systemd/nspawn")
SCRIPT = ('echo "FOO=[$FOO]"; echo "PWD=[$(pwd)]"; for a in "$@"; do echo "[$a]"; done; '
          'if touch /mnt/ro/x 2>/dev/null; then echo RO=writable; else echo RO=readonly; fi; '
          'touch /mnt/rw/x && echo RW=writable; '
          'read -r inside outside count < /proc/self/uid_map; echo "HOSTUID=$outside"')
ARGS = ("a b", 'c"d', "e'f", "g\"h'i", "back\\slash\\", "%i %n $HOME", "", "  padded  ")
FOO = ' spaces  "quotes" \'single\' back\\slash %n $HOME '


def _need(condition, why):
    if not condition:
        pytest.skip(why)


@pytest.fixture
def machine(tmp_path):
    """(name, tree, host dir) for a busybox tree; the settings file is removed after."""
    _need(os.geteuid() == 0, "needs root")
    _need(shutil.which("systemd-nspawn"), "needs systemd-nspawn")
    _need(os.path.exists(BUSYBOX), "needs busybox-static")
    name = f"nspawnctl-test-{uuid.uuid4().hex[:8]}"
    tree = tmp_path / name
    for sub in ("bin", "usr/lib", "srv/work dir", "mnt/ro", "mnt/rw"):
        (tree / sub).mkdir(parents=True)
    shutil.copy(BUSYBOX, tree / "bin/busybox")
    for applet in ("sh", "echo", "env", "id", "touch", "pwd"):
        (tree / "bin" / applet).symlink_to("busybox")
    (tree / "usr/lib/os-release").write_text("ID=nspawnctl-test\n")
    host = tmp_path / "host"
    (host / "ro").mkdir(parents=True)
    (host / "rw").mkdir()
    # With a user namespace the container's root is not the host's: let it write.
    (host / "rw").chmod(0o777)
    SETTINGS_DIR.mkdir(parents=True, exist_ok=True)
    yield name, tree, host
    (SETTINGS_DIR / f"{name}.nspawn").unlink(missing_ok=True)
    shutil.rmtree(SETTINGS_DIR / "propagate" / name, ignore_errors=True)


def run_container(name, tree, cfg, *extra):
    (SETTINGS_DIR / f"{name}.nspawn").write_text(render_nspawn(cfg))
    # No command: the Parameters= of the file are what runs.
    result = subprocess.run(["systemd-nspawn", "-q", "--register=no", "--keep-unit",
                             "-D", str(tree), f"--machine={name}", *extra],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.splitlines()


def command_config(host, **kwargs):
    return ContainerConfig(
        boot=False, command=("sh", "-c", SCRIPT, "x", *ARGS), env=(f"FOO={FOO}",),
        working_dir="/srv/work dir", network="host",
        binds=(Bind(str(host / "ro"), "/mnt/ro", True), Bind(str(host / "rw"), "/mnt/rw", False)),
        **kwargs)


def check_output(lines, userns):
    assert lines[0] == f"FOO=[{FOO}]"
    assert lines[1] == "PWD=[/srv/work dir]"
    assert lines[2:2 + len(ARGS)] == [f"[{a}]" for a in ARGS]
    assert lines[2 + len(ARGS):-1] == ["RO=readonly", "RW=writable"]
    # Container root is host root only without a user namespace.
    assert (lines[-1] != "HOSTUID=0") == userns, lines[-1]


def test_settings_reach_the_command_with_user_namespace(machine):
    name, tree, host = machine
    check_output(run_container(name, tree, command_config(host)), userns=True)


def test_settings_reach_the_command_without_user_namespace(machine):
    name, tree, host = machine
    check_output(run_container(name, tree, command_config(host, private_users=False)), userns=False)
    assert (host / "rw" / "x").exists() and not (host / "ro" / "x").exists()


def test_file_overrides_the_template_units_options(machine):
    """systemd-nspawn@.service runs --boot --network-veth -U --settings=override:
    the file's Boot=no, Parameters= and host network must win over them."""
    name, tree, host = machine
    (tree / "bin/cat").symlink_to("busybox")
    cfg = ContainerConfig(boot=False, command=("cat", "/proc/net/dev"), network="host")
    lines = run_container(name, tree, cfg, "--boot", "--network-veth", "-U", "--settings=override")
    host_ifaces = {line.split(":")[0].strip() for line in Path("/proc/net/dev").read_text().splitlines()[2:]}
    seen = {line.split(":")[0].strip() for line in lines[2:]}
    assert seen == host_ifaces
