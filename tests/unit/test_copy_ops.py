"""ops.copy on a private root: the container side resolved inside the tree (hostile symlinks
stay in it), owners mapped through the user namespace, bad input refused."""

import os
import stat

import pytest

from nspawnctl.errors import Error
from nspawnctl.ops.copy import copy, parse_side
from tests.unit.fakes import context

BASE = 0x10000 * 7  # the tree's root owner: a container booted with PrivateUsers=pick


@pytest.fixture
def paths(private_root):
    if os.geteuid() != 0:
        pytest.skip("owners can be mapped only by root")
    p = private_root
    tree = p.tree("c1")
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/os-release").write_text("ID=debian\n")
    os.chown(tree / "etc/os-release", BASE + 1000, BASE + 1000)
    for d in (tree, tree / "etc"):
        os.chown(d, BASE, BASE)
    return p


@pytest.fixture
def host_dir(tmp_path):
    d = tmp_path / "host"
    d.mkdir()
    (d / "secret").write_text("host secret\n")
    return d


def test_parse_side():
    assert parse_side("c1:/etc/x").name == "c1"
    assert parse_side("./a:b").name is None
    assert parse_side("/tmp/a").name is None
    with pytest.raises(Error, match="must be absolute"):
        parse_side("c1:etc/x")


def test_file_in_is_owned_by_the_containers_root_and_keeps_its_mode(paths, tmp_path):
    src = tmp_path / "tool"
    src.write_text("#!/bin/sh\n")
    os.chmod(src, 0o4755)
    copy(context(paths), str(src), "c1:/etc/")
    st = os.lstat(paths.tree("c1") / "etc/tool")
    assert (st.st_uid, st.st_gid) == (BASE, BASE)
    assert stat.S_IMODE(st.st_mode) == 0o4755  # chown dropped set-user-ID: put back
    copy(context(paths), str(src), "c1:/etc/renamed")
    assert (paths.tree("c1") / "etc/renamed").read_text() == "#!/bin/sh\n"
    assert not [n for n in os.listdir(paths.tree("c1") / "etc") if n.startswith(".")]


def owners(top) -> set:
    return {(st.st_uid, st.st_gid) for st in
            [os.lstat(top)] + [os.lstat(p) for p in top.rglob("*")]}


def test_directory_in_maps_owners_and_out_belongs_to_the_invoking_user(paths, tmp_path,
                                                                       monkeypatch):
    src = tmp_path / "conf"
    (src / "sub").mkdir(parents=True)
    (src / "sub/a").write_text("a\n")
    os.chown(src / "sub/a", 33, 33)
    copy(context(paths), str(src), "c1:/etc/conf")
    assert os.lstat(paths.tree("c1") / "etc/conf/sub/a").st_uid == BASE + 33
    # out, by root itself: root's; through sudo: sudo's caller's
    copy(context(paths), "c1:/etc", str(tmp_path / "out"))
    assert owners(tmp_path / "out") == {(0, 0)}
    monkeypatch.setenv("SUDO_UID", "1234")
    monkeypatch.setenv("SUDO_GID", "2345")
    copy(context(paths), "c1:/etc", str(tmp_path / "mine"))
    assert owners(tmp_path / "mine") == {(1234, 2345)}
    # --preserve-owner: as on disk, the container's range
    copy(context(paths), "c1:/etc", str(tmp_path / "kept"), preserve_owner=True)
    assert os.lstat(tmp_path / "kept/os-release").st_uid == BASE + 1000
    assert os.lstat(tmp_path / "kept/conf/sub/a").st_uid == BASE + 33
    assert os.lstat(tmp_path / "kept").st_uid == BASE
    with pytest.raises(Error, match="--preserve-owner is for a copy out"):
        copy(context(paths), str(src), "c1:/etc/conf2", preserve_owner=True)
    monkeypatch.setenv("SUDO_UID", "12x")
    with pytest.raises(Error, match="SUDO_UID='12x' is not a user or group id"):
        copy(context(paths), "c1:/etc", str(tmp_path / "bad"))
    assert not os.path.lexists(tmp_path / "bad")


def test_a_hostile_symlink_never_leads_out_of_the_tree(paths, host_dir, tmp_path):
    tree = paths.tree("c1")
    os.symlink(str(host_dir), tree / "etc/evil-dir")  # absolute: a host path, seen from here
    os.symlink(str(host_dir / "secret"), tree / "etc/evil-file")
    os.symlink("../../../../../../../../" + str(host_dir), tree / "etc/evil-dots")
    src = tmp_path / "payload"
    src.write_text("payload\n")
    # in: through the link to a directory of the host: it is resolved inside the tree, where
    # no such directory exists
    for dst in ("c1:/etc/evil-dir/x", "c1:/etc/evil-dots/x"):
        with pytest.raises(Error, match="does not exist in the container"):
            copy(context(paths), str(src), dst)
    with pytest.raises(Error, match="no such directory in the container"):
        copy(context(paths), str(src), "c1:/etc/evil-dir/")
    assert sorted(os.listdir(host_dir)) == ["secret"]
    assert os.path.islink(tree / "etc/evil-dir")
    # in, onto the link itself: the link is replaced, its target on the host untouched
    copy(context(paths), str(src), "c1:/etc/evil-file")
    assert (host_dir / "secret").read_text() == "host secret\n"
    assert not os.path.islink(tree / "etc/evil-file")
    # out: the link is copied as a link, never the host file it names
    os.symlink(str(host_dir / "secret"), tree / "etc/evil-out")
    copy(context(paths), "c1:/etc/evil-out", str(tmp_path / "got"))
    assert os.path.islink(tmp_path / "got")
    with pytest.raises(Error, match="No such file"):
        copy(context(paths), "c1:/etc/evil-dir/secret", str(tmp_path / "got2"))
    assert not os.path.lexists(tmp_path / "got2")


def test_bad_input(paths, tmp_path):
    src = tmp_path / "f"
    src.write_text("x")
    with pytest.raises(Error, match="one side of cp must be in a container"):
        copy(context(paths), str(src), str(tmp_path / "g"))
    with pytest.raises(Error, match="one side of cp must be in a container"):
        copy(context(paths), "c1:/etc/os-release", "c1:/etc/x")
    with pytest.raises(Error, match="no container named"):
        copy(context(paths), str(src), "ghost:/x")
    with pytest.raises(Error, match="/no/such does not exist in the container"):
        copy(context(paths), str(src), "c1:/no/such/file")
    with pytest.raises(Error, match="no such file"):
        copy(context(paths), str(tmp_path / "missing"), "c1:/etc/")
    with pytest.raises(Error, match="no such directory"):
        copy(context(paths), "c1:/etc/os-release", str(tmp_path / "nope/x"))


def test_a_killed_copys_temporary_is_deleted_by_the_next_copy_there(paths, tmp_path):
    etc = paths.tree("c1") / "etc"
    dead = etc / ".nspawnctl-cp.4194300.abcd.tmp"  # pid_max is at most 4194304
    (dead / "half").mkdir(parents=True)
    alive = etc / f".nspawnctl-cp.{os.getpid()}.beef.tmp"
    alive.write_text("in progress")
    src = tmp_path / "f"
    src.write_text("x")
    copy(context(paths), str(src), "c1:/etc/f")
    assert not dead.exists() and alive.exists()
