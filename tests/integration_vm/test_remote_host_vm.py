"""`nspawnctl -H` against another machine (issue 30): this checkout's nspawnctl runs here, on
the machine running the tests, and drives the VM over ssh as root: create, list --json, exec
with its exit status.  The VM is reached in its own network (libvirtd's namespace); root's ssh
config naming it lives in a mount namespace of the command's own (a directory bound over
/root), so this machine's /root is not touched."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

BUSYBOX = "/bin/busybox"
NAME = "hbox"
REPO = Path(__file__).resolve().parents[2]


def ssh_config(text: str) -> dict:
    """`vagrant ssh-config`'s KEY VALUE lines."""
    return dict(line.strip().split(None, 1) for line in text.splitlines()
                if len(line.strip().split(None, 1)) == 2)


@pytest.fixture(scope="module")
def near(vm):
    """near(*args): `nspawnctl -H root@vm ARGS` run here; the result."""
    cfg = ssh_config(vm.vagrant("ssh-config").stdout)
    r = vm.run(["sh", "-ec", "install -d -m 700 /root/.ssh && "
                "cp /home/vagrant/.ssh/authorized_keys /root/.ssh/authorized_keys"])
    assert r.returncode == 0, str(r)
    key = cfg["IdentityFile"].strip('"')
    with tempfile.TemporaryDirectory(prefix="nspawnctl-remote-") as home:
        os.makedirs(f"{home}/.ssh", mode=0o700)
        Path(f"{home}/.ssh/config").write_text(
            f"Host vm\n  HostName {cfg['HostName']}\n  Port {cfg.get('Port', '22')}\n"
            f"  IdentityFile {key}\n  IdentitiesOnly yes\n"
            "  BatchMode yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n")

        def near(*args):
            script = f'mount --bind {home} /root && exec "$@"'
            argv = vm.inside_ns(["unshare", "-m", "--propagation", "private", "sh", "-c", script,
                                 "sh", sys.executable, "-m", "nspawnctl", "-H", "root@vm",
                                 *args], cwd=REPO)
            return subprocess.run(argv, capture_output=True, text=True, timeout=900,
                                  env=dict(os.environ, PYTHONPATH=str(REPO)))
        yield near
        near("remove", "--force", NAME)


def test_create_list_and_exec_over_ssh(near):
    r = near("create", NAME, "--from", "scratch", "--add", BUSYBOX,
             "--cmd", f"{BUSYBOX} sleep infinity")
    assert r.returncode == 0, r.stderr
    assert near("start", NAME).returncode == 0
    r = near("list", "--json")
    mine = [c for c in json.loads(r.stdout) if c["name"] == NAME]
    assert len(mine) == 1 and mine[0]["state"] == "running", r.stdout
    r = near("exec", NAME, "--", BUSYBOX, "sh", "-c", "echo \"$1\"; exit 3", "sh", "a b; $(id)")
    assert (r.returncode, r.stdout) == (3, "a b; $(id)\n"), r.stderr
