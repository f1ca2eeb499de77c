"""The Ansible collection (ansible/, issue 30) on the real systemd: Debian's ansible-core in
the testbed builds and installs the collection from this checkout, and playbooks run with
`ansible-playbook -c local -i localhost,`: a first run creates, a second reports changed=0,
--check reports the change and makes none, --diff shows it, state=absent removes, and a bad
parameter or a container made by hand fails with the CLI's one line.  The connection plugin
runs tasks inside a container.  Containers are scratch busybox trees (as test_stacks.py's)."""

import json
import re

import pytest

from tests import outside
from tests.integration.helpers import listing, wait_for

pytestmark = pytest.mark.integration

DIR = "/root/ansible-test"
HTTPD = "/bin/busybox httpd -f -p 80 -h /www"
PORT = 18091


def container_play(state="running", memory="64M"):
    """A play: a network, a container (busybox httpd, published), and an inline stack with a
    network and a container on it.  What one task makes, no other task uses: in check mode
    nothing is made, and a later task's own dry run would find it missing."""
    gone = "absent" if state == "absent" else "present"
    return f"""
- hosts: localhost
  gather_facts: false
  tasks:
    - name: the network
      nspawnctl.containers.network:
        name: ansnet
        subnet: 203.0.113.0/24
        state: {gone}
    - name: the container
      nspawnctl.containers.container:
        name: ans-web
        state: {state}
        from: scratch
        add: [/bin/busybox, "{DIR}/www:/www"]
        cmd: {HTTPD}
        port: ["{PORT}:80"]
        memory: {memory}
        env:
          MODE: prod
        enabled: true
    - name: the stack
      nspawnctl.containers.stack:
        name: ans-stack
        state: {gone}
        definition:
          name: ans-stack
          networks:
            ansback:
              subnet: 198.51.100.0/24
          containers:
            ans-db:
              from: scratch
              add: [/bin/busybox]
              cmd: /bin/busybox sleep 100000
              network: ansback
"""


@pytest.fixture(scope="module")
def ansible(host, nspawnctl):
    """ansible-playbook in the testbed with the collection built from this checkout (bound
    at /usr/src/nspawnctl) installed; the module's containers, stack and network removed at
    its end."""
    host.run(["mkdir", "-p", f"{DIR}/www", f"{DIR}/build"])
    host.path(f"{DIR}/www/index.html").write_text("hello from ansible\n")
    built = host.run(["ansible-galaxy", "collection", "build", "--force", "--output-path",
                      f"{DIR}/build", "/usr/src/nspawnctl/ansible"])
    assert built.returncode == 0, str(built)
    tarball = built.stdout.strip().split()[-1]
    installed = host.run(["ansible-galaxy", "collection", "install", "--force", tarball])
    assert installed.returncode == 0, str(installed)

    def playbook(text, *flags, target="localhost", connection="local", raw=False):
        host.path(f"{DIR}/play.yml").write_text(text)
        r = host.run(["ansible-playbook", "-c", connection, "-i", f"{target},", "-v", *flags,
                      f"{DIR}/play.yml"], timeout=600,
                     env={"ANSIBLE_PYTHON_INTERPRETER": "auto_silent",
                          "ANSIBLE_CALLBACK_FORMAT_PRETTY": "false",
                          "ANSIBLE_REMOTE_TMP": "/root/.ansible/tmp",
                          "ANSIBLE_NOCOLOR": "1"})
        return r if raw else Run(r)

    yield playbook
    for name in ("ans-web", "ans-stack", "ans-sh"):
        nspawnctl("apply", "-f", "-", "--prune", input=f"name: {name}\n", check=False)
    nspawnctl("remove", "--force", "ans-hand", check=False)
    nspawnctl("network", "remove", "ansnet", check=False)  # ansback: ans-stack's


class Run:
    """An ansible-playbook run, read from the default callback's -v output (Debian's
    ansible-core has no json callback: it is in ansible.posix): its exit status, its recap
    (ok, changed, failed, unreachable...) and each task's result (one line of JSON, after
    its status) by task name."""

    RESULT = re.compile(r"^(ok|changed|fatal|skipping): \[[^]]+\](?:: [A-Z!]+)? => (\{.*\})$")

    def __init__(self, r):
        self.raw = r
        self.rc = r.returncode
        self.tasks, task = {}, None
        self.stats: dict = {}
        for line in r.stdout.splitlines():
            if line.startswith("TASK ["):
                task = line[len("TASK ["):line.rindex("]")]
            elif (m := self.RESULT.match(line)) and task is not None:
                self.tasks[task] = json.loads(m.group(2))
            elif re.match(r"^\S+\s+: ok=", line):
                self.stats = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}
        assert self.stats, str(r)

    def __repr__(self):  # pytest shows an assertion's message object by its repr
        lines = self.raw.stdout.splitlines()
        said = [x for x in lines if x.startswith(("fatal:", "failed:")) or ": ok=" in x]
        return "\n".join([" ".join(self.raw.argv), *said, self.raw.stderr[-2000:]])


def networks(nspawnctl):
    return [n["name"] for n in json.loads(nspawnctl("network", "list", "--json").stdout)]


def status(nspawnctl, name):
    return json.loads(nspawnctl("status", name, "--json").stdout)


def test_playbook_creates_converges_checks_diffs_and_removes(host, nspawnctl, ansible):
    # --check first: the change is reported, with the plan as the diff, and nothing is made
    r = ansible(container_play(), "--check", "--diff")
    assert r.rc == 0 and r.stats["changed"] == 3, r
    # the callback prints a diff on its own, out of the result: the plan's lines
    for line in ("+network ansnet: subnet 203.0.113.0/24", "create ans-web: from scratch",
                 "create network ansback: subnet 198.51.100.0/24", "create ans-db: from scratch"):
        assert f"\n{line}\n" in r.raw.stdout, (line, r)
    assert not {"ans-web", "ans-db"} & set(listing(nspawnctl))
    assert not {"ansnet", "ansback"} & set(networks(nspawnctl))
    # the first run creates all three, running, enabled, limited, serving
    r = ansible(container_play())
    assert r.rc == 0 and r.stats["changed"] == 3 and r.stats["failed"] == 0, r
    web = status(nspawnctl, "ans-web")
    assert (web["state"], web["enabled"], web["stack"]) == ("running", True, "ans-web")
    assert web["limits"]["memory"] == 64 * 1024 * 1024, web["limits"]
    assert r.tasks["the container"]["container"]["name"] == "ans-web"
    assert status(nspawnctl, "ans-db")["stack"] == "ans-stack"
    assert {"ansnet", "ansback"} <= set(networks(nspawnctl))
    wait_for(lambda: outside.fetch(host, f"http://127.0.0.1:{PORT}/", timeout=2)
             == (True, "hello from ansible\n"), timeout=20, what="the page")
    # the second run changes nothing
    r = ansible(container_play())
    assert r.rc == 0 and r.stats["changed"] == 0, r
    # a change: --check --diff says it (on screen too) and leaves the limit as it was
    r = ansible(container_play(memory="128M"), "--check", "--diff", raw=True)
    assert r.returncode == 0 and re.search(r"\bchanged=1\b", r.stdout), str(r)
    assert "\nchange ans-web: memory" in r.stdout, r.stdout
    assert status(nspawnctl, "ans-web")["limits"]["memory"] == 64 * 1024 * 1024
    r = ansible(container_play(memory="128M"))
    assert r.rc == 0 and r.stats["changed"] == 1, r
    assert status(nspawnctl, "ans-web")["limits"]["memory"] == 128 * 1024 * 1024
    # stopped, then present: present keeps it stopped
    r = ansible(container_play(state="stopped", memory="128M"))
    assert r.rc == 0 and r.stats["changed"] == 1, r
    assert status(nspawnctl, "ans-web")["state"] == "stopped"
    r = ansible(container_play(state="present", memory="128M"))
    assert r.rc == 0 and r.stats["changed"] == 0, r
    # absent: --check removes nothing, then all of it goes, and again changes nothing
    r = ansible(container_play(state="absent"), "--check")
    assert r.rc == 0 and r.stats["changed"] == 3, r
    assert {"ans-web", "ans-db"} <= set(listing(nspawnctl))
    r = ansible(container_play(state="absent"))
    assert r.rc == 0 and r.stats["changed"] == 3, r
    assert not {"ans-web", "ans-db"} & set(listing(nspawnctl))
    assert not {"ansnet", "ansback"} & set(networks(nspawnctl))
    r = ansible(container_play(state="absent"))
    assert r.rc == 0 and r.stats["changed"] == 0, r


def test_bad_parameters_fail_with_the_clis_line(host, nspawnctl, ansible):
    r = ansible(container_play(memory="lots"))
    assert r.rc != 0 and r.stats["failed"] == 1, r
    # the CLI's own line for the same value in a one-line (JSON) stack on stdin, as the
    # module gives it: the task's message is that line, whole and alone
    cli = nspawnctl("apply", "-f", "-", check=False,
                    input='{"name": "ans-web", "containers": {"ans-web": {"memory": "lots"}}}')
    assert cli.returncode == 5 and cli.stderr.count("\n") == 1, str(cli)
    assert r.tasks["the container"]["msg"] == cli.stderr.strip(), (r.tasks, cli.stderr)
    assert "ans-web" not in listing(nspawnctl)
    # a container of that name made by hand: apply's refusal, and it is left as it was
    nspawnctl("create", "ans-hand", "--from", "scratch", "--add", "/bin/busybox", "--cmd",
              "/bin/busybox sleep 100000")
    hand = ("- hosts: localhost\n  gather_facts: false\n  tasks:\n"
            "    - name: the container\n      nspawnctl.containers.container:\n"
            "        name: ans-hand\n        from: scratch\n        add: [/bin/busybox]\n")
    r = ansible(hand)
    assert r.rc != 0, r
    msg = r.tasks["the container"]["msg"]
    assert msg.startswith("nspawnctl: ") and "ans-hand" in msg and "\n" not in msg, msg
    assert status(nspawnctl, "ans-hand")["stack"] is None


def test_connection_plugin_runs_tasks_inside_a_container(host, nspawnctl, ansible):
    """raw runs through exec (its exit status passed back), script through cp then exec;
    the container is a busybox tree whose /bin/sh is busybox (no Python: raw and script).
    The remote temporary directory is on the tree's disk (cp writes there, not into the
    running container's tmpfs /tmp: a script put under /tmp was not found)."""
    host.path(f"{DIR}/inside.sh").write_text("#!/bin/sh\necho made inside > /tmp/made\n"
                                              "echo script ran in $(cat /etc/hostname)\n")
    r = ansible("- hosts: localhost\n  gather_facts: false\n  tasks:\n"
                "    - name: the container\n      nspawnctl.containers.container:\n"
                "        name: ans-sh\n        from: scratch\n"
                "        add: [/bin/busybox, '/bin/busybox:/bin/sh']\n"
                "        cmd: /bin/busybox sleep 100000\n")
    assert r.rc == 0 and r.stats["changed"] == 1, r
    play = ("- hosts: ans-sh\n  gather_facts: false\n  tasks:\n"
            "    - name: raw\n      raw: echo hello from $(hostname)\n"
            f"    - name: script\n      script: {DIR}/inside.sh\n"
            "    - name: failing\n      raw: exit 7\n      ignore_errors: true\n")
    r = ansible(play, target="ans-sh", connection="nspawnctl.containers.nspawnctl")
    assert r.rc == 0, r
    assert r.tasks["raw"]["stdout"].strip() == "hello from ans-sh", r.tasks["raw"]
    assert "script ran in ans-sh" in r.tasks["script"]["stdout"], r.tasks["script"]
    assert r.tasks["failing"]["rc"] == 7 and r.stats["ignored"] == 1, r.tasks["failing"]
    made = nspawnctl("exec", "ans-sh", "--", "/bin/busybox", "cat", "/tmp/made")
    assert made.stdout == "made inside\n"
    # a container that is not running: nspawnctl's line, as the host being unreachable
    nspawnctl("stop", "ans-sh")
    r = ansible(play, target="ans-sh", connection="nspawnctl.containers.nspawnctl")
    assert r.rc != 0 and r.stats["unreachable"] == 1, r
    assert r.tasks["raw"]["msg"].startswith("nspawnctl: "), r.tasks["raw"]


def snapshot_play(state, tag="t1"):
    return ("- hosts: localhost\n  gather_facts: false\n  tasks:\n"
            "    - name: the snapshot\n      nspawnctl.containers.snapshot:\n"
            f"        name: ans-snap\n        tag: {tag}\n        state: {state}\n")


def test_snapshot_module_takes_rolls_back_and_removes(host, nspawnctl, made, ansible):
    """The snapshot module on a stopped busybox tree: present once (then ok), --check makes
    none, rolled_back puts the tree back, absent removes (then ok); a missing tag fails with
    the CLI's line."""
    made("ans-snap", "--from", "scratch", "--add", "/bin/busybox")

    def tags():
        return [s["tag"] for s in json.loads(nspawnctl("snapshot", "list", "ans-snap",
                                                       "--json").stdout)]

    r = ansible(snapshot_play("present", tag="t0"), "--check")
    assert r.rc == 0 and r.stats["changed"] == 1 and tags() == [], r
    r = ansible(snapshot_play("present"))
    assert r.rc == 0 and r.stats["changed"] == 1 and tags() == ["t1"], r
    r = ansible(snapshot_play("present"))
    assert r.rc == 0 and r.stats["changed"] == 0, r
    marker = host.path("/var/lib/machines/ans-snap/marker")
    marker.write_text("after the snapshot\n")
    r = ansible(snapshot_play("rolled_back"))
    assert r.rc == 0 and r.stats["changed"] == 1, r
    assert not marker.exists()
    r = ansible(snapshot_play("rolled_back", tag="nope"))
    assert r.rc != 0 and "has no snapshot 'nope'" in r.tasks["the snapshot"]["msg"], r
    r = ansible(snapshot_play("absent"))
    assert r.rc == 0 and r.stats["changed"] == 1 and tags() == [], r
    r = ansible(snapshot_play("absent"))
    assert r.rc == 0 and r.stats["changed"] == 0, r
