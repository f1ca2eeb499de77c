"""confine.py: what `exec` into a single-command container puts on the entered process."""

import os

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
        fstype = "cgroup" if controllers else "cgroup2"
        options = f"rw,{controllers}" if controllers else "rw,nsdelegate"
        lines.append(f"{40 + i} 31 0:{40 + i} / {root} rw,relatime - {fstype} cgroup {options}")
    (tmp_path / "mountinfo").write_text("\n".join(lines) + "\n")
    return cgroups


def test_join_cgroups_writes_this_pid_into_every_hierarchy(tmp_path):
    cgroups = fake_hierarchies(tmp_path, os.getpid())
    joined = confine.join_cgroups_of(os.getpid(), mountinfo=str(tmp_path / "mountinfo"))
    assert len(joined) == len(cgroups)
    for _id, controllers, path in cgroups:
        procs = tmp_path / (controllers or "unified") / path.lstrip("/") / "cgroup.procs"
        assert procs.read_text() == str(os.getpid())


def test_join_cgroups_fails_when_no_hierarchy_takes_it(tmp_path):
    (tmp_path / "mountinfo").write_text("31 23 0:28 / /nowhere rw - tmpfs tmpfs rw\n")
    with pytest.raises(Error) as error:
        confine.join_cgroups_of(os.getpid(), mountinfo=str(tmp_path / "mountinfo"))
    assert "cannot join the cgroup" in error.value.message
