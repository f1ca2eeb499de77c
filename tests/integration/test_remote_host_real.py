"""`nspawnctl --host` for real (issue 30): nspawnctl on the host, ssh to the host's own sshd on
127.0.0.1 (the testbed's loopback: its network namespace has nothing else), the nspawnctl
installed there doing the work.  A container from scratch is made, listed and exec'ed into over
ssh; exit statuses, stdin, a terminal and hostile arguments come through as they do locally;
an unreachable host is one line."""

import json
import os
from pathlib import Path

import pytest

from nspawnctl.errors import CHANGES, FAILURE

pytestmark = pytest.mark.integration

ALIAS = "nspawnctl-loop"  # an ssh_config alias: the key, known_hosts and the address
KEY = "/root/.ssh/nspawnctl-test-key"
PTYADMIN = Path(__file__).resolve().parents[1] / "ptyadmin.py"
BOX = "rbox"
BUSYBOX = "/bin/busybox"


def _replace(host, path: str, text: str | None):
    """Write path in the host (None: remove it)."""
    if text is None:
        host.path(path).unlink(missing_ok=True)
    else:
        host.path(path).write_text(text)


@pytest.fixture(scope="module")
def far(host):
    """sshd running, root's key authorized and an alias in root's ssh config for it; all put
    back as found at the end.  Yields the alias, for -H root@ALIAS."""
    if host.run(["test", "-x", "/usr/sbin/sshd"]).returncode != 0:
        pytest.skip("no sshd on this host (the testbed has openssh-server)")
    host.run(["mkdir", "-p", "-m", "700", "/root/.ssh"])
    host.run(["rm", "-f", KEY, f"{KEY}.pub"])
    assert host.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", KEY]).returncode == 0
    saved = {}
    for name in ("authorized_keys", "config"):
        path = host.path(f"/root/.ssh/{name}")
        saved[name] = path.read_text() if path.exists() else None
    _replace(host, "/root/.ssh/authorized_keys",
             (saved["authorized_keys"] or "") + host.path(f"{KEY}.pub").read_text())
    _replace(host, "/root/.ssh/config",
             f"Host {ALIAS}\n  HostName 127.0.0.1\n  IdentityFile {KEY}\n  IdentitiesOnly yes\n"
             f"  BatchMode yes\n  StrictHostKeyChecking accept-new\n"
             f"  UserKnownHostsFile {KEY}.known_hosts\n\n" + (saved["config"] or ""))
    was_active = host.run(["systemctl", "is-active", "ssh"]).returncode == 0
    assert host.run(["systemctl", "start", "ssh"]).returncode == 0
    try:
        r = host.run(["ssh", "-n", f"root@{ALIAS}", "true"], timeout=60)
        assert r.returncode == 0, str(r)
        yield f"root@{ALIAS}"
    finally:
        if not was_active:
            host.run(["systemctl", "stop", "ssh"])
        for name, text in saved.items():
            _replace(host, f"/root/.ssh/{name}", text)
        host.run(["rm", "-f", KEY, f"{KEY}.pub", f"{KEY}.known_hosts"])


@pytest.fixture(scope="module")
def box(host, nspawnctl, far):
    """A running busybox container from scratch, created and started over ssh."""
    remote = _remote(nspawnctl, far)
    r = remote("create", BOX, "--from", "scratch", "--add", BUSYBOX,
               "--cmd", f"{BUSYBOX} sleep infinity")
    assert r.returncode == 0, str(r)
    assert remote("start", BOX).returncode == 0
    yield remote
    nspawnctl("remove", "--force", BOX, check=False)


def _remote(nspawnctl, far):
    def remote(*args, input=None):
        return nspawnctl("--host", far, *args, input=input, check=False)
    return remote


def test_list_json_comes_back_whole(box, nspawnctl):
    r = box("list", "--json")
    assert r.returncode == 0, str(r)
    mine = [c for c in json.loads(r.stdout) if c["name"] == BOX]
    assert len(mine) == 1 and mine[0]["state"] == "running", r.stdout
    assert json.loads(r.stdout) == json.loads(nspawnctl("list", "--json").stdout)


def test_the_far_exit_status_is_ours(box):
    assert box("exec", BOX, "--", BUSYBOX, "sh", "-c", "exit 3").returncode == 3
    # 255 is also ssh's own failure: told apart by what ssh says (nothing, here)
    r = box("exec", BOX, "--", BUSYBOX, "sh", "-c", "exit 255")
    assert (r.returncode, r.stderr) == (255, "")
    r = box("status", "no-such-box")
    assert r.returncode == 3 and r.stderr.startswith("nspawnctl: "), str(r)


def test_stdin_goes_through_exec_i_and_apply_f_dash_only(box, host):
    r = box("exec", "-i", BOX, "--", BUSYBOX, "cat", input="one\ntwo\n")
    assert (r.returncode, r.stdout) == (0, "one\ntwo\n"), str(r)
    r = box("exec", BOX, "--", BUSYBOX, "cat", input="not read\n")  # without -i: nothing
    assert (r.returncode, r.stdout) == (0, ""), str(r)
    stack = (f"name: remote-dry\ncontainers:\n  rdry:\n    from: scratch\n"
             f"    add: [{BUSYBOX}]\n    cmd: {BUSYBOX} sleep infinity\n")
    r = box("apply", "-f", "-", "--dry-run", input=stack)
    assert r.returncode == CHANGES and "rdry" in r.stdout, str(r)
    assert host.run(["test", "-e", "/var/lib/machines/rdry"]).returncode != 0


def test_hostile_arguments_arrive_as_one_literal_word_each(box, host):
    words = ["a b; touch /tmp/pwned", "$(touch /tmp/pwned)", "`touch /tmp/pwned`",
             "'; touch /tmp/pwned; '", "x\ntouch /tmp/pwned", "*", "$HOME", "\\", "",
             "--debug", "> /tmp/pwned"]
    r = box("exec", BOX, "--", BUSYBOX, "printf", "[%s]", *words)
    assert r.returncode == 0, str(r)
    assert r.stdout == "".join(f"[{w}]" for w in words)
    for place in ("/tmp/pwned", f"/var/lib/machines/{BOX}/tmp/pwned"):
        assert host.run(["test", "-e", place]).returncode != 0, place


def test_exec_t_gets_our_terminal_only_when_we_have_one(box, host, far, nspawnctl):
    """On a terminal (ptyadmin's, 33x101), ssh -t: the far nspawnctl sees a terminal, so the
    command's pty takes its size, and the keys typed reach it.  Not on one: no ssh -t (ssh
    would warn that it cannot), and the command sees what exec -t gives it here without one."""
    work = "/root/remote-host-test"
    host.run(["mkdir", "-p", work])
    host.path(f"{work}/ptyadmin.py").write_bytes(PTYADMIN.read_bytes())
    os.chmod(host.path(f"{work}/ptyadmin.py"), 0o755)
    script = 'stty size; read line; echo "got $line"; exit 5'
    try:
        r = host.run(["python3", f"{work}/ptyadmin.py", "--when-screen", "33 101",
                      "--keys", "hello\\n", "--", "nspawnctl", "-H", far, "exec", "-it", BOX,
                      "--", BUSYBOX, "sh", "-c", script], timeout=120)
        report = json.loads(r.stdout)
        assert report["status"] == 5, report
        assert "got hello" in report["screen"], report
        assert report["restored"], report  # ssh's raw mode undone
    finally:
        host.run(["rm", "-rf", work])
    # not on a terminal: what exec -t does here without one, and no word from ssh about it
    command = ("exec", "-t", BOX, "--", BUSYBOX, "tty")
    here, there = nspawnctl(*command, check=False), box(*command)
    assert (there.returncode, there.stdout) == (here.returncode, here.stdout), f"{here}{there}"
    assert there.stderr == here.stderr == "", f"{here}{there}"


def test_an_unreachable_host_is_one_line(nspawnctl):
    r = nspawnctl.fails("-H", "root@127.0.0.1:1", "list")
    assert r.returncode == FAILURE
    assert r.error == ("nspawnctl: cannot reach root@127.0.0.1 over ssh: connect to host "
                       "127.0.0.1 port 1: Connection refused"), str(r)
    r = nspawnctl.fails("-H", "-oProxyCommand=touch /tmp/pwned", "list")
    assert r.returncode == 2 and "not [USER@]HOST" in r.error
