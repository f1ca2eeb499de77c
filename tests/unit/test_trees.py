"""fs/walk.py's tree walks on hostile trees: deeper than Python's recursion limit and PATH_MAX,
full of symlinks that lead out, with filesystems mounted inside.  remove_tree and tree_size
hold one descriptor whatever the depth, never follow a symlink, and stop at a mount."""

import errno
import hashlib
import itertools
import os
import stat
import struct
import subprocess
import sys
from pathlib import Path

import hostile
import pytest

from nspawnctl.errors import Error
from nspawnctl.fs import copy as fscopy
from nspawnctl.fs import walk as fswalk

fast_tmp, few_fds, tmpfs_in = hostile.fast_tmp, hostile.few_fds, hostile.tmpfs_in

DEPTH = 5000  # paths of 10,000 bytes: past PATH_MAX, and past the recursion limit


def test_deep_tree_sizes_and_removes_without_recursion(fast_tmp, few_fds):
    assert DEPTH > sys.getrecursionlimit()
    tree = fast_tmp / "deep"
    tree.mkdir()

    def fill(fd):
        os.symlink("/etc", "escape", dir_fd=fd)  # never followed
        with open(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as f:
            f.write(b"x")
    hostile.deep_dirs(tree, DEPTH, "a", fill)
    assert fswalk.tree_size(tree) >= DEPTH * 512  # a block for each level's file at least
    fswalk.remove_tree(tree)
    assert not tree.exists() and os.path.exists("/etc/os-release")


def test_tree_size_leaves_out_other_filesystems(tmp_path, tmpfs_in):
    (tmp_path / "t").mkdir()
    empty = fswalk.tree_size(tmp_path / "t")
    mounted = tmpfs_in(tmp_path / "t" / "m")
    (mounted / "big").write_bytes(os.urandom(1 << 20))
    assert fswalk.tree_size(tmp_path / "t") < empty + (1 << 20)


def test_remove_tree_refuses_mounts(tmp_path, tmpfs_in):
    mounted = tmpfs_in(tmp_path / "t" / "a" / "m")
    (tmp_path / "t/a/file").write_text("x")
    with pytest.raises(OSError, match="a filesystem is mounted there"):
        fswalk.remove_tree(tmp_path / "t")
    parent = os.open(tmp_path, os.O_RDONLY)
    try:  # the walk's own check, without the mount table's
        with pytest.raises(OSError, match="a filesystem is mounted there"):
            fswalk.remove_tree_at(parent, "t")
    finally:
        os.close(parent)
    assert (mounted / "precious").read_text() == "keep"


def test_remove_tree_refuses_a_bind_mount_of_the_same_filesystem(tmp_path, tmpfs_in):
    """st_dev cannot tell a bind mount of the same filesystem; openat2's RESOLVE_NO_XDEV can."""
    (tmp_path / "source").mkdir()
    (tmp_path / "source/precious").write_text("keep")
    (tmp_path / "t/m").mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(tmp_path / "source"), str(tmp_path / "t/m")],
                   check=True)
    try:
        parent = os.open(tmp_path, os.O_RDONLY)
        try:
            with pytest.raises(OSError, match="a filesystem is mounted there"):
                fswalk.remove_tree_at(parent, "t")
        finally:
            os.close(parent)
    finally:
        subprocess.run(["umount", str(tmp_path / "t/m")], check=True)
    assert (tmp_path / "source/precious").read_text() == "keep"


def test_remove_tree_never_follows_symlinks(tmp_path):
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "sub/f").write_text("keep")
    tree = tmp_path / "tree"
    (tree / "a").mkdir(parents=True)
    (tree / "a/link").symlink_to(outside)
    (tree / "a/sublink").symlink_to(outside / "sub")
    fswalk.remove_tree(tree)
    assert not tree.exists() and (outside / "sub/f").read_text() == "keep"
    link = tmp_path / "toplink"
    link.symlink_to(outside)
    fswalk.remove_tree(link)  # the link goes, not what it names
    assert not os.path.lexists(link) and (outside / "sub/f").exists()


# -- clone_tree: cp -a for trusted trees (past PATH_MAX the copier), the copier for the rest ----

CAPABILITY = struct.pack("<5I", 0x02000001, 1 << 13, 0, 0, 0)  # v2, effective: cap_net_raw
ACL = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in [  # u::rwx,u:1234:rwx,...
    (1, 7, 2**32 - 1), (2, 7, 1234), (4, 5, 2**32 - 1), (0x10, 7, 2**32 - 1), (0x20, 5, 2**32 - 1)])


def set_xattr(path: str, key: str, value: bytes) -> bool:
    """Set an extended attribute where the filesystem (and our privilege) allows."""
    try:
        os.setxattr(path, key, value, follow_symlinks=False)
        return True
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EPERM):
            raise
        return False


def describe(dirfd: int, name: str, inodes: dict) -> tuple:
    st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    proc = f"/proc/self/fd/{dirfd}/{name}"
    xattrs = sorted((k, os.getxattr(proc, k, follow_symlinks=False))
                    for k in os.listxattr(proc, follow_symlinks=False))
    content: object = None
    if stat.S_ISLNK(st.st_mode):
        content = os.readlink(name, dir_fd=dirfd)
    elif stat.S_ISREG(st.st_mode):
        with open(os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dirfd), "rb") as f:
            content = hashlib.sha256(f.read()).hexdigest()
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        content = st.st_rdev
    link = None  # which of the tree's hard-linked inodes, in the order they are met
    if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
        link = inodes.setdefault((st.st_dev, st.st_ino), len(inodes))
    return (name, stat.filemode(st.st_mode), st.st_nlink, st.st_uid, st.st_gid, st.st_mtime_ns,
            content, link, xattrs)


def listing(top: Path):
    """A tree's entries, described one directory at a time, depth first in name order, with
    one descriptor whatever the depth (compare two trees with list(), or zip for deep ones)."""
    inodes: dict = {}
    parent = os.open(top.parent, os.O_RDONLY)
    try:
        cursor = fswalk.DirCursor(parent, top.name)
    finally:
        os.close(parent)
    with cursor:
        yield [describe(cursor.fd, ".", inodes)]
        for subdirs in fswalk.walk(cursor):
            entries = [describe(cursor.fd, n, inodes) for n in sorted(os.listdir(cursor.fd))]
            yield entries
            subdirs.extend(e[0] for e in reversed(entries) if e[1].startswith("d"))


def same_trees(a: Path, b: Path) -> bool:
    return all(x == y for x, y in itertools.zip_longest(listing(a), listing(b)))


def test_deep_tree_clones(fast_tmp, few_fds):
    """cp -a fails past PATH_MAX; clone_tree then copies the tree itself, hard links (one
    across 1000 levels), symlinks, FIFOs, owners, modes, times and capabilities included."""
    root = fast_tmp / "root"
    root.mkdir()
    level, first = 0, []

    def fill(fd):
        nonlocal level
        level += 1
        with open(os.open("f", os.O_WRONLY | os.O_CREAT, 0o640, dir_fd=fd), "wb") as f:
            f.write(b"level %d" % level)
        os.symlink("../f", "s", dir_fd=fd)
        if hostile.ROOT:
            os.chown("s", 1000 + level, 1000, dir_fd=fd, follow_symlinks=False)
        if level % 1000 == 1:  # linked 1000 levels further down
            os.link("f", "g", src_dir_fd=fd, dst_dir_fd=fd)
            first.append(os.dup(fd))
        elif level % 1000 == 0:
            os.link("g", "h", src_dir_fd=first[-1], dst_dir_fd=fd)
            os.close(first.pop())
        if level == DEPTH:
            os.mkfifo("fifo", dir_fd=fd)
            set_xattr(f"/proc/self/fd/{fd}/f", "security.capability", CAPABILITY)
            set_xattr(f"/proc/self/fd/{fd}", "user.note", b"bottom")
            os.chmod(fd, 0o555)
    hostile.deep_dirs(root, DEPTH, "d", fill)
    assert fscopy.clone_tree(root, fast_tmp / "copy", trusted=True) == "copy"
    assert same_trees(root, fast_tmp / "copy")
    assert fscopy.clone_tree(root, fast_tmp / "copy2") == "copy"
    assert same_trees(root, fast_tmp / "copy2")


def small_tree(top: Path):
    """Every kind of entry and metadata cp -a keeps, in a few files."""
    for d in ("bin", "etc", "dev", "run", "tmp", "ro", "sgid"):
        (top / d).mkdir(parents=True)
    (top / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (top / "etc/empty").touch()
    (top / "etc" / os.fsdecode(b"caf\xe9")).write_bytes(os.urandom(3 << 20))
    (top / "bin/su").write_bytes(b"su")
    (top / "bin/prog").write_bytes(b"prog")
    (top / "bin/ping").write_bytes(b"ping")
    os.link(top / "bin/su", top / "bin/su-link")
    os.link(top / "bin/prog", top / "etc/prog-link")
    os.link(top / "bin/prog", top / "tmp/prog-link")
    (top / "ro/file").write_text("read only")
    (top / "abs").symlink_to("/etc/passwd")
    (top / "rel").symlink_to("etc/passwd")
    (top / "dangling").symlink_to("nowhere")
    os.mkfifo(top / "run/fifo")
    os.mknod(top / "run/sock", stat.S_IFSOCK | 0o755)
    set_xattr(str(top / "bin/ping"), "security.capability", CAPABILITY)
    set_xattr(str(top / "etc/passwd"), "user.origin", b"test")
    set_xattr(str(top / "etc"), "user.origin", b"dir")
    set_xattr(str(top / "etc/passwd"), "system.posix_acl_access", ACL)
    set_xattr(str(top / "tmp"), "system.posix_acl_default", ACL)
    if hostile.ROOT:
        os.mknod(top / "dev/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        os.mknod(top / "dev/vda", stat.S_IFBLK | 0o660, os.makedev(254, 0))
        os.chown(top / "bin/prog", 1234, 5678)
        os.chown(top / "rel", 1234, 5678, follow_symlinks=False)
        os.chown(top / "sgid", 1000, 1000)
    os.chmod(top / "bin/su", 0o4755)
    os.chmod(top / "bin/prog", 0o6711)
    os.chmod(top / "tmp", 0o1777)
    os.chmod(top / "sgid", 0o2775)
    os.chmod(top / "ro/file", 0o444)
    os.chmod(top / "ro", 0o555)
    t = 1_000_000_000_123_456_789
    for path in sorted(top.rglob("*"), key=lambda p: -len(p.parts)) + [top]:  # dirs last
        t += 1_000_000_007
        os.utime(path, ns=(t, t), follow_symlinks=False)


def test_tree_copy_is_what_cp_makes(fast_tmp):
    """The copier (fscopy.copy_at), on an ordinary tree: the same as cp -a's copy."""
    small_tree(fast_tmp / "tree")
    fscopy.clone_tree(fast_tmp / "tree", fast_tmp / "cp", trusted=True)
    fscopy.clone_tree(fast_tmp / "tree", fast_tmp / "walk")
    cp, walk, tree = (list(listing(fast_tmp / n)) for n in ("cp", "walk", "tree"))
    assert cp == tree and walk == tree
    xattrs = {e[0]: dict(e[8]) for entries in tree for e in entries}
    assert xattrs["ping"].get("security.capability") == CAPABILITY or not hostile.ROOT
    assert xattrs["passwd"].get("system.posix_acl_access") == ACL


def test_tree_copy_stops_at_a_mount_and_when_full(tmp_path, tmpfs_in):
    tmpfs_in(tmp_path / "t" / "m")
    with pytest.raises(Error, match=r"^copying the tree failed in .*/t: a filesystem is "
                       r"mounted there \(m\)$"):
        fscopy.clone_tree(tmp_path / "t", tmp_path / "c")
    small = tmpfs_in(tmp_path / "small")
    subprocess.run(["mount", "-o", "remount,size=1m", str(small)], check=True)
    (tmp_path / "big").mkdir()
    (tmp_path / "big/f").write_bytes(bytes(2 << 20))
    with pytest.raises(Error) as e:
        fscopy.clone_tree(tmp_path / "big", small / "copy")
    assert e.value.message == f"no space left on the filesystem of {small}"
