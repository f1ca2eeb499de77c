"""confine.py: what `exec` into a single-command container puts on the entered process."""

import ctypes
import os
import resource

import pytest

from nspawnctl import confine
from nspawnctl.errors import Error


def test_capability_names_are_the_kernels():
    assert confine.CAPABILITIES[21] == "sys_admin" and confine.CAPABILITIES[18] == "sys_chroot"
    assert confine.CAPABILITIES[40] == "checkpoint_restore" and len(confine.CAPABILITIES) == 41


def test_bounding_set_of_this_process():
    with open("/proc/self/status") as f:
        want = next(int(line.split()[1], 16) for line in f if line.startswith("CapBnd:"))
    assert confine.bounding_set(os.getpid()) == want
    with pytest.raises(Error):
        confine.bounding_set(2**22 + 7)  # no such process


def fake_hierarchies(tmp_path, pid):
    """A mountinfo naming directories under tmp_path as this host's cgroup hierarchies, with
    pid's cgroup directory made in each."""
    lines, cgroups = [], []
    with open(f"/proc/{pid}/cgroup") as f:
        cgroups = [line.rstrip("\n").split(":", 2) for line in f]
    for i, (_id, controllers, path) in enumerate(cgroups):
        root = tmp_path / (controllers or "unified")
        (root / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
        (root / path.lstrip("/") / "cgroup.procs").touch()  # as cgroupfs has it
        fstype = "cgroup" if controllers else "cgroup2"
        options = f"rw,{controllers}" if controllers else "rw,nsdelegate"
        lines.append(f"{40 + i} 31 0:{40 + i} / {root} rw,relatime - {fstype} cgroup {options}")
    (tmp_path / "mountinfo").write_text("\n".join(lines) + "\n")
    return cgroups


def joined_at(tmp_path) -> list[str]:
    """confine.join of this process into its own cgroups, as the mountinfo at tmp_path has
    the hierarchies (enter() joins the leader's so)."""
    mounts = confine.cgroup_mounts(str(tmp_path / "mountinfo"))
    return confine.join(confine.cgroup_procs(os.getpid(), mounts), os.getpid())


def test_join_cgroups_writes_this_pid_into_every_hierarchy(tmp_path):
    cgroups = fake_hierarchies(tmp_path, os.getpid())
    joined = joined_at(tmp_path)
    assert len(joined) == len(cgroups)
    for _id, controllers, path in cgroups:
        procs = tmp_path / (controllers or "unified") / path.lstrip("/") / "cgroup.procs"
        assert procs.read_text() == str(os.getpid())


def test_join_cgroups_fails_when_no_hierarchy_takes_it(tmp_path):
    (tmp_path / "mountinfo").write_text("31 23 0:28 / /nowhere rw - tmpfs tmpfs rw\n")
    with pytest.raises(Error) as error:
        joined_at(tmp_path)
    assert "cannot join the cgroup" in error.value.message


@pytest.fixture
def no_terminal():
    """Standard streams that are not terminals while the test runs (pytest may be run on one,
    and enter() would relay it): /dev/null in place of each that is."""
    saved = {fd: os.dup(fd) for fd in (0, 1, 2) if os.isatty(fd)}
    null = os.open(os.devnull, os.O_RDWR)
    for fd in saved:
        os.dup2(null, fd)
    os.close(null)
    yield
    for fd, copy in saved.items():
        os.dup2(copy, fd)
        os.close(copy)


def fake_entering(monkeypatch, tmp_path):
    """enter() on this process's own namespaces, with the steps that need root and a
    container faked; each setns made in a child appends the child's state to a file:
    "DUMPABLE SESSION-LEADER"."""
    record = tmp_path / "setns"
    parent = os.getpid()
    libc = ctypes.CDLL(None, use_errno=True)

    def fake_setns(fd):
        if os.getpid() != parent:
            with open(record, "a") as f:
                f.write(f"{libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)} "
                        f"{os.getsid(0) == os.getpid()}\n")

    monkeypatch.setattr(confine, "_setns", fake_setns)
    monkeypatch.setattr(confine, "join", lambda procs, pid: [])
    monkeypatch.setattr(os, "chroot", lambda path: None)
    monkeypatch.setattr(os, "setgroups", lambda groups: None)
    monkeypatch.setattr(os, "setresgid", lambda *ids: None)
    monkeypatch.setattr(os, "setresuid", lambda *ids: None)
    return record


PR_GET_DUMPABLE = 3
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


def test_the_child_is_a_non_dumpable_session_leader_before_it_joins(monkeypatch, tmp_path,
                                                                     no_terminal):
    """From its first setns until its exec the child holds host fds in the container's user
    namespace, where the container's root could ptrace it (runc's CVE-2016-9962): it is
    non-dumpable before it joins anything, and in a session of its own (no terminal of ours
    as its controlling terminal, issue 26 item 4)."""
    record = fake_entering(monkeypatch, tmp_path)
    assert confine.enter(os.getpid(), ["sh", "-c", "exit 5"], ENV) == 5
    joined = [ns for ns in confine.NAMESPACES if ns != "pid"]
    assert record.read_text().splitlines() == ["0 True"] * len(joined)


def test_exit_status_of_the_entered_command(monkeypatch, tmp_path, no_terminal):
    fake_entering(monkeypatch, tmp_path)
    assert confine.enter(os.getpid(), ["sh", "-c", "kill -TERM $$"], ENV) == 128 + 15
    assert confine.enter(os.getpid(), ["no-such-program"], ENV) == 127


def test_spawn_entered_is_one_child_of_ours_and_gives_our_pid_namespace_back(monkeypatch,
                                                                             tmp_path):
    """The health scheduler's way in (spawn_entered): one fork, whose child is the command
    (a session leader, non-dumpable before it joins anything, stdin /dev/null, its output on
    out), and this process's own PID namespace set back for its next children once the
    child is forked."""
    record = fake_entering(monkeypatch, tmp_path)
    in_parent = []
    real_fake = confine._setns
    parent = os.getpid()

    def setns(fd):
        if os.getpid() == parent:
            in_parent.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fake(fd)

    monkeypatch.setattr(confine, "_setns", setns)
    read, write = os.pipe()
    entry = confine.opened(os.getpid())
    pid = confine.spawn_entered(entry, ["sh", "-c", "read x; echo in $$ $x; exit 7"], ENV,
                                write)
    entry.close()
    os.close(write)
    status = os.waitpid(pid, 0)[1]  # our own child: it is not a relay's
    with os.fdopen(read) as out:
        assert out.read() == f"in {pid}\n"  # stdin was /dev/null: nothing read
    assert os.waitstatus_to_exitcode(status) == 7
    own = os.readlink("/proc/self/ns/pid")
    assert in_parent == [own, own]  # the container's (here ours), then ours back
    joined = [ns for ns in confine.NAMESPACES if ns != "pid"]
    assert record.read_text().splitlines() == ["0 True"] * len(joined)


def test_the_command_gets_the_leaders_limit_of_open_files_not_ours(monkeypatch, tmp_path):
    """The health scheduler raises its own limit of open files (about ten a container it
    follows); what it starts in a container gets the leader's, as the container's own
    processes have it."""
    fake_entering(monkeypatch, tmp_path)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lower = min(soft, hard, 1000) - 1
    resource.setrlimit(resource.RLIMIT_NOFILE, (lower, hard))
    try:
        entry = confine.opened(os.getpid())  # the "leader", at `lower`
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # as the scheduler does
        read, write = os.pipe()
        pid = confine.spawn_entered(entry, ["sh", "-c", "ulimit -n"], ENV, write)
        entry.close()
        os.close(write)
        os.waitpid(pid, 0)
        with os.fdopen(read) as out:
            assert out.read().strip() == str(lower)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
