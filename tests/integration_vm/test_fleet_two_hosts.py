"""One playbook run driving two real hosts (issue 30): the VM (its own kernel, systemd as PID 1)
and a testbed (a booted systemd in a container, as the integration tier's), both over ssh from
this machine as Ansible's control node.  The collection is built from this checkout and
installed into a directory of the test's own; the same stack is brought up on both hosts, a
second run reports changed=0 on both, and state=absent takes it away from both.

The control node runs in libvirtd's network namespace (vm.inside_ns), where the VM is; the
testbed is reached through its own network namespace, its sshd on its loopback (ssh's
ProxyCommand enters it by the testbed's PID).  No traffic leaves those namespaces."""

import json
import os
import re
import shlex
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests import testbed as testbeds
from tests.conftest import session_log
from tests.integration_vm.test_remote_host_vm import ssh_config

REPO = Path(__file__).resolve().parents[2]
NAME = "fleet-box"
STACK = "fleet"
TB_KEY = "/root/.ssh/nspawnctl-fleet-key"
# What the collection and the stack need of each host: the busybox of busybox-static.
BUSYBOX = "/bin/busybox"

PLAY = """
- hosts: fleet
  gather_facts: false
  tasks:
    - name: the stack
      nspawnctl.containers.stack:
        name: {stack}
        state: {state}
        prune: true
        definition:
          name: {stack}
          containers:
            {name}:
              from: scratch
              add: [{busybox}]
              cmd: {busybox} sleep 1000000
              memory: 64M
              env: [ROLE=fleet]
"""


@pytest.fixture(scope="module")
def second_host(request):
    """A testbed beside the VM, sshd running and a key of the test's authorized for root."""
    with testbeds.open_host(log=session_log(request)) as bed:
        if not isinstance(bed, testbeds.Testbed):
            pytest.skip("this host runs systemd itself: the second host is a testbed")
        r = bed.run(["sh", "-ec", f"install -d -m 700 /root/.ssh; rm -f {TB_KEY} {TB_KEY}.pub; "
                     f"ssh-keygen -q -t ed25519 -N '' -f {TB_KEY}; "
                     f"cat {TB_KEY}.pub >> /root/.ssh/authorized_keys; systemctl start ssh"])
        assert r.returncode == 0, str(r)
        yield bed


@pytest.fixture(scope="module")
def playbook(vm, second_host):
    """playbook(state, *flags): one ansible-playbook run over both hosts from this machine;
    the result and its recap per host."""
    cfg = ssh_config(vm.vagrant("ssh-config").stdout)
    r = vm.run(["sh", "-ec", "install -d -m 700 /root/.ssh && "
                "cp /home/vagrant/.ssh/authorized_keys /root/.ssh/authorized_keys"])
    assert r.returncode == 0, str(r)
    with tempfile.TemporaryDirectory(prefix="nspawnctl-fleet-") as home:
        home_path = Path(home)
        # the testbed's key, read through its root, for the control node
        key = home_path / "testbed-key"
        key.write_bytes(second_host.path(TB_KEY).read_bytes())
        key.chmod(0o600)
        built = subprocess.run(["ansible-galaxy", "collection", "build", "--force",
                                "--output-path", home, str(REPO / "ansible")],
                               capture_output=True, text=True, timeout=300)
        assert built.returncode == 0, built.stderr
        tarball = built.stdout.strip().split()[-1]
        env = dict(os.environ, ANSIBLE_HOME=f"{home}/ansible",
                   ANSIBLE_COLLECTIONS_PATH=f"{home}/collections",
                   ANSIBLE_LOCAL_TEMP=f"{home}/tmp", ANSIBLE_SSH_CONTROL_PATH_DIR=f"{home}/cp",
                   ANSIBLE_REMOTE_TMP="/root/.ansible/tmp", ANSIBLE_NOCOLOR="1",
                   ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_CALLBACK_FORMAT_PRETTY="false")
        installed = subprocess.run(["ansible-galaxy", "collection", "install", "--force", "-p",
                                    f"{home}/collections", tarball],
                                   capture_output=True, text=True, timeout=300, env=env)
        assert installed.returncode == 0, installed.stderr
        common = ("-F /dev/null -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                  "-o IdentitiesOnly=yes")
        proxy = f"nsenter -t {second_host.leader} -n socat - TCP:127.0.0.1:22"
        vm_key = cfg["IdentityFile"].strip('"')
        def host(address, port, key, args):
            return {"ansible_host": address, "ansible_port": int(port),
                    "ansible_ssh_private_key_file": str(key), "ansible_ssh_common_args": args}

        inventory = {"fleet": {
            "hosts": {
                "vm": host(cfg["HostName"], cfg.get("Port", "22"), vm_key, common),
                "testbed": host("127.0.0.1", 22, key,
                                f"{common} -o ProxyCommand={shlex.quote(proxy)}")},
            "vars": {"ansible_user": "root", "ansible_python_interpreter": "/usr/bin/python3"}}}
        # JSON is YAML: the inventory plugin reads it as such, no INI quoting in the way
        (home_path / "hosts.yml").write_text(json.dumps(inventory))

        def run(state, *flags):
            (home_path / "play.yml").write_text(PLAY.format(stack=STACK, state=state, name=NAME,
                                                           busybox=BUSYBOX))
            t0 = time.monotonic()
            p = subprocess.run(vm.inside_ns(["ansible-playbook", "-i", f"{home}/hosts.yml", "-v",
                                             *flags, f"{home}/play.yml"]),
                               capture_output=True, text=True, timeout=900, env=env)
            return FleetRun(p, time.monotonic() - t0)

        yield run
        run("absent")


class FleetRun:
    """An ansible-playbook run over the fleet: exit status, recap per host, seconds."""

    def __init__(self, p, seconds):
        self.rc, self.out, self.seconds = p.returncode, p.stdout + p.stderr, seconds
        self.recap = {m.group(1): {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
                      for m in re.finditer(r"^(\S+)\s+: (ok=.*)$", p.stdout, re.M)}

    def __repr__(self):
        return f"ansible-playbook exit {self.rc} in {self.seconds:.1f} s:\n{self.out[-4000:]}"


def containers(host) -> dict:
    """NAME's row of `nspawnctl list --json` on host (the VM or the testbed), or None."""
    r = host.run(["nspawnctl", "list", "--json"])
    assert r.returncode == 0, str(r)
    return next((c for c in json.loads(r.stdout) if c["name"] == NAME), None)


def test_one_playbook_brings_up_one_stack_on_two_hosts(playbook, vm, second_host, figures):
    first = playbook("present")
    assert first.rc == 0, first
    assert set(first.recap) == {"vm", "testbed"}, first
    for host in ("vm", "testbed"):
        assert first.recap[host]["changed"] == 1 and first.recap[host]["failed"] == 0, first
    for host in (vm, second_host):
        row = containers(host)
        assert row is not None and row["state"] == "running", row
        assert row.get("stack") == STACK, row

    again = playbook("present")
    assert again.rc == 0, again
    for host in ("vm", "testbed"):
        assert again.recap[host]["changed"] == 0 and again.recap[host]["ok"] == 1, again

    gone = playbook("absent")
    assert gone.rc == 0, gone
    for host in ("vm", "testbed"):
        assert gone.recap[host]["changed"] == 1, gone
    assert containers(vm) is None and containers(second_host) is None
    figures("fleet: one playbook over two hosts (VM + testbed), first run",
            f"{first.seconds:.1f} s")
    figures("fleet: the same playbook again (changed=0 on both)", f"{again.seconds:.1f} s")
