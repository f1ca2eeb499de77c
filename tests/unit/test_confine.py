"""confine.py: what `exec` into a single-command container puts on the entered process."""

import ctypes
import os
import resource
import subprocess

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
    procs = confine._opened_procs(os.getpid(), mounts)
    try:
        return confine.join(procs, os.getpid())
    finally:
        for _, fd in procs:
            os.close(fd)


def test_join_cgroups_writes_this_process_into_every_hierarchy(tmp_path):
    cgroups = fake_hierarchies(tmp_path, os.getpid())
    joined = joined_at(tmp_path)
    assert len(joined) == len(cgroups)
    for _id, controllers, path in cgroups:
        procs = tmp_path / (controllers or "unified") / path.lstrip("/") / "cgroup.procs"
        assert procs.read_text() == "0"  # cgroupfs takes 0 for the process that writes it


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


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="enters namespaces: needs root "
                                "(make test runs as root)")


def own_entry(**changes) -> confine.Entry:
    """The Entry of this very process as the "leader" (with no_user_namespace), for the
    real helper to enter."""
    entry = confine.opened(os.getpid())
    for key, value in changes.items():
        setattr(entry, key, value)
    return entry


@pytest.fixture
def no_user_namespace(monkeypatch):
    """No user namespace to enter: a process cannot join the one it is in (EINVAL)."""
    monkeypatch.setattr(confine, "NAMESPACES", tuple(ns for ns in confine.NAMESPACES
                                                     if ns != "user"))


def spawned(entry: confine.Entry, argv: list[str]) -> tuple[int, str]:
    """(exit status, output) of argv run by spawn_entered into entry."""
    read, write = os.pipe()
    try:
        pid = confine.spawn_entered(entry, argv, ENV, write)
    finally:
        os.close(write)
    status = os.waitpid(pid, 0)[1]  # our own child: it is not a relay's
    with os.fdopen(read) as out:
        return os.waitstatus_to_exitcode(status), out.read()


@needs_root
def test_spawn_entered_is_one_child_of_ours_and_gives_our_pid_namespace_back(
        monkeypatch, no_user_namespace):
    """The health scheduler's way in (spawn_entered): one child of ours, the helper, whose
    exec is the command (a session leader, stdin /dev/null, its output on out), and this
    process's own PID namespace set back for its next children once the child is spawned."""
    in_parent = []
    real = confine._setns

    def setns(fd):
        in_parent.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(confine, "_setns", setns)
    entry = own_entry()
    try:
        status, out = spawned(entry, ["sh", "-c", "read x; echo in $$ $x "
                                      "$(cut -d' ' -f6 /proc/self/stat); exit 7"])
    finally:
        entry.close()
    assert status == 7
    words = out.split()
    assert words[0] == "in" and words[1] == words[2]  # no $x: stdin was /dev/null; sid = pid
    own = os.readlink("/proc/self/ns/pid")
    assert in_parent == [own, own]  # the container's (here ours), then ours back


@needs_root
def test_the_command_gets_the_leaders_bounding_set_and_no_descriptor_of_ours(
        no_user_namespace):
    """The capabilities the leader lacks are dropped from the bounding set, and nothing the
    helper was given (namespaces, root, cgroup.procs) nor any inheritable descriptor of ours
    reaches the command: only its stdin, stdout and stderr."""
    ours = confine.bounding_set(os.getpid())
    lacks = 1 << 21 | 1 << 16  # sys_admin, sys_module
    leaked = os.open("/", os.O_RDONLY)  # inheritable, as a careless caller might leave one
    entry = own_entry(mask=ours & ~lacks)
    try:
        status, out = spawned(entry, ["sh", "-c", "grep CapBnd /proc/self/status; "
                                      "ls /proc/$$/fd"])
    finally:
        entry.close()
        os.close(leaked)
    assert status == 0
    lines = out.split("\n")
    assert int(lines[0].split()[1], 16) == ours & ~lacks
    assert sorted(lines[1:-1]) == ["0", "1", "2"]


@needs_root
def test_the_command_gets_the_leaders_limit_of_open_files_not_ours(no_user_namespace):
    """The health scheduler raises its own limit of open files (about ten a container it
    follows); what it starts in a container gets the leader's, as the container's own
    processes have it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lower = min(soft, hard, 1000) - 1
    resource.setrlimit(resource.RLIMIT_NOFILE, (lower, hard))
    try:
        entry = own_entry()  # the "leader", at `lower`
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # as the scheduler does
        try:
            status, out = spawned(entry, ["sh", "-c", "ulimit -n"])
        finally:
            entry.close()
        assert (status, out.strip()) == (0, str(lower))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@needs_root
def test_a_command_that_cannot_run_says_so_as_exec_does(no_user_namespace, tmp_path):
    """127 and one line when it is not found in PATH, 126 when it is no program (no shell
    runs it instead, as os.execvpe runs none for exec)."""
    script = tmp_path / "no-program"
    script.write_text("echo ran by a shell\n")
    script.chmod(0o755)
    entry = own_entry()
    try:
        missing = spawned(entry, ["no-such-program"])
        no_program = spawned(entry, [str(script)])
    finally:
        entry.close()
    assert missing == (127, "nspawnctl: cannot run no-such-program in the container: "
                            "No such file or directory\n")
    assert no_program == (126, f"nspawnctl: cannot run {script} in the container: "
                               "Exec format error\n")


@needs_root
def test_the_helper_is_non_dumpable_before_it_joins_anything_and_closes_before_exec(
        monkeypatch, no_user_namespace, tmp_path):
    """From its first setns until its exec the helper holds host descriptors in the
    container's user namespace, where the container's root could ptrace it (runc's
    CVE-2016-9962): strace shows it non-dumpable before its first cgroup write or setns,
    and every descriptor but 0-2 closed before the command's exec."""
    trace = tmp_path / "trace"
    wrapper = tmp_path / "traced-helper"
    wrapper.write_text(f"#!/bin/sh\nexec strace -qq -o {trace} -e trace=prctl,setns,write,"
                       f"close_range,execve,chroot {confine.HELPER} \"$@\"\n")
    wrapper.chmod(0o755)
    monkeypatch.setattr(confine, "HELPER", wrapper)
    entry = own_entry()
    try:
        status, _ = spawned(entry, ["true"])
    finally:
        entry.close()
    assert status == 0
    calls = [line.split("(")[0] for line in trace.read_text().splitlines()]
    calls = calls[calls.index("execve") + 1:]  # after the helper's own exec
    assert calls[0] == "prctl"
    assert "PR_SET_DUMPABLE, SUID_DUMP_DISABLE" in trace.read_text().splitlines()[1]
    assert calls.index("write") < calls.index("setns") < calls.index("chroot")
    assert calls.index("close_range") < len(calls) - 1 - calls[::-1].index("execve")
    assert calls[-1] == "execve"


def test_the_helper_refuses_a_bad_command_line_with_one_line():
    """Its command line is ours, but a slip (a descriptor that is not open, no "--") must not
    run anything: 125 and one line."""
    for args in (["0", "1:1", "9999", "9999", "-", "-", "-", "--", "true"],
                 ["x", "1:1", "3", "3", "-", "-", "-", "--", "true"],
                 ["0", "1:1", "3", "3", "-", "-", "-", "true"]):
        out = subprocess.run([confine.HELPER, *args], capture_output=True, text=True)
        assert out.returncode == 125, args
        assert out.stdout == "" and out.stderr.count("\n") == 1
        assert out.stderr.startswith("nspawnctl: nspawnctl-enter: ")


def test_the_helper_is_built_from_its_source_as_it_is():
    """make venv builds it; a test run of a changed source against an old build would prove
    the old one."""
    source = confine.HELPER.with_name(confine.HELPER.name + ".c")
    assert confine.HELPER.stat().st_mtime >= source.stat().st_mtime, "run: make helper"


@needs_root
def test_the_command_runs_in_the_leaders_cgroup(no_user_namespace):
    """The helper joins the cgroups it is given (the leader's) before anything else: here a
    cgroup made beside ours in the unified (or else the systemd) hierarchy stands for the
    leader's."""
    mounts = confine.cgroup_mounts()
    key = frozenset() if frozenset() in mounts else frozenset({"name=systemd"})
    name = "unified" if key == frozenset() else "name=systemd"
    mine = next(line.split(":", 2)[2] for line in confine._lines("/proc/self/cgroup")
                if line.split(":", 2)[1] == ("" if name == "unified" else name))
    leaders = f"{mine.rstrip('/')}/nspawnctl-test-{os.getpid()}"
    directory = mounts[key] / leaders.lstrip("/")
    directory.mkdir()
    try:
        procs = os.open(directory / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
        entry = own_entry()
        for _, fd in entry.procs:
            os.close(fd)
        entry.procs = [(name, procs)]
        try:
            status, out = spawned(entry, ["cat", "/proc/self/cgroup"])
        finally:
            entry.close()
        assert status == 0
        assert any(line.endswith(f":{leaders}") for line in out.splitlines()), out
    finally:
        directory.rmdir()


@needs_root
def test_a_leader_with_the_least_limit_of_open_files_gets_checked_all_the_same(
        no_user_namespace):
    """The limit comes from the leader, which the container's root may lower as far as it
    likes: the helper opens nothing once it set it, so the command is run all the same,
    with the limit its container chose (at 0, the container's own loader cannot open a
    library: its error, not the helper's)."""
    entry = own_entry(nofile=(4, 4))
    try:
        status, out = spawned(entry, ["sh", "-c", "ulimit -n; echo ran"])
        entry.nofile = (0, 0)
        status0, out0 = spawned(entry, ["sh", "-c", "echo ran"])
    finally:
        entry.close()
    assert (status, out.split()) == (0, ["4", "ran"])
    assert status0 == 127 and "error while loading shared libraries" in out0
    assert not out0.startswith("nspawnctl:")
