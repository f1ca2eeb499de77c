"""The layer applier against an adversarial corpus built here.

Every case runs twice: with openat2(RESOLVE_IN_ROOT) and with the
component-by-component fallback walk.  Every case asserts its exact outcome
(a clear Error, or where the entry landed inside the tree) and that the
sentinel directory next to the tree, the target of every escape attempt, is
byte-for-byte unchanged.
"""

import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from imagebuild import MTIME, blockdev, chardev, dir, fifo, file, hardlink, layer, symlink

from nspawnctl.errors import Error
from nspawnctl.fs import resolve as fsresolve
from nspawnctl.sources.unpack import apply_layer

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="ownership, setuid and caps need root")
CAP_NET_RAW = bytes.fromhex("0100000200200000000000000000000000000000")  # v2, cap_net_raw+ep


@pytest.fixture(params=["openat2", "walk"])
def resolver(request, monkeypatch):
    monkeypatch.setattr(fsresolve, "HAVE_OPENAT2", None if request.param == "openat2" else False)
    yield request.param
    if request.param == "walk":
        assert fsresolve.HAVE_OPENAT2 is False


@dataclass
class Sandbox:
    base: Path
    root: Path
    outside: Path

    @property
    def o(self) -> str:
        return str(self.outside)


@pytest.fixture
def box(tmp_path) -> Sandbox:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("do not touch")
    (outside / "dir").mkdir()
    (outside / "dir" / "keep").write_text("keep")
    before = snapshot(tmp_path, skip=root)
    yield Sandbox(tmp_path, root, outside)
    assert snapshot(tmp_path, skip=root) == before, "something outside the tree changed"


def snapshot(base: Path, skip: Path) -> dict:
    result = {}
    for dirpath, dirnames, filenames in os.walk(base):
        if Path(dirpath) == skip or skip in Path(dirpath).parents:
            continue
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            if p == skip:
                continue
            st = p.lstat()
            content = p.read_bytes() if stat.S_ISREG(st.st_mode) else None
            result[str(p)] = (st.st_mode, st.st_uid, st.st_gid, st.st_nlink, st.st_mtime_ns,
                              content)
    return result


def apply(box: Sandbox, *layers: bytes, whiteouts=True) -> list[str]:
    warnings = []
    for tar in layers:
        warnings += apply_layer(io.BytesIO(tar), box.root, whiteouts=whiteouts)
    return warnings


def tree(root: Path) -> dict[str, str]:
    """path -> short description: 'f:content', 'd', 'l:target', 'p' (fifo)."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        rel = str(p.relative_to(root))
        if stat.S_ISLNK(st.st_mode):
            out[rel] = "l:" + os.readlink(p)
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = "d"
        elif stat.S_ISFIFO(st.st_mode):
            out[rel] = "p"
        else:
            out[rel] = "f:" + p.read_bytes().decode()
    return out


def inside(box: Sandbox, hostpath: str) -> str:
    """Where a host path lands when resolved inside the tree."""
    return hostpath.lstrip("/")


@dataclass(frozen=True)
class Case:
    id: str
    layers: Callable[[Sandbox], list[list]]
    error: str | None = None          # substring of the Error message
    expect: Callable[[Sandbox], dict] | None = None   # exact tree, when not an error
    warnings: tuple[str, ...] = ()    # substrings each present in some warning


def exact(**paths) -> Callable[[Sandbox], dict]:
    return lambda box: paths


def dirs(path: str) -> dict:
    """Every directory on the way to path, as tree() shows them."""
    parts = path.strip("/").split("/")
    return {"/".join(parts[:i]): "d" for i in range(1, len(parts) + 1)}


def with_outside(build: Callable[[str], dict]) -> Callable[[Sandbox], dict]:
    """An expected tree that names the host path of the sentinel (escapes landing inside)."""
    def expected(box):
        o = inside(box, box.o)
        return {**dirs(o), **build(o)}
    return expected


CASES = [
    # -- names ------------------------------------------------------------------------------
    Case("dotdot-name", lambda b: [[file("../outside/pwn", b"x")]], error="'..' component"),
    Case("dotdot-middle", lambda b: [[dir("a"), file("a/../../outside/pwn", b"x")]],
         error="'..' component"),
    Case("dotdot-dir", lambda b: [[dir("..")]], error="'..' component"),
    Case("absolute-name", lambda b: [[dir("/etc"), file("/etc/hostname", b"h")]],
         expect=exact(etc="d", **{"etc/hostname": "f:h"})),
    Case("absolute-host-path", lambda b: [[file(b.o + "/pwn", b"x")]],
         expect=with_outside(lambda o: {o + "/pwn": "f:x"})),
    Case("dot-prefixed", lambda b: [[dir("./"), dir("./a"), file("./a/./b", b"1")]],
         expect=exact(a="d", **{"a/b": "f:1"})),
    Case("implicit-parents", lambda b: [[file("a/b/c", b"1")]],
         expect=exact(a="d", **{"a/b": "d", "a/b/c": "f:1"})),
    # -- symlinked parents --------------------------------------------------------------------
    Case("symlink-parent-relative-same-layer",
         lambda b: [[symlink("l", "../outside"), file("l/pwn", b"x")]],
         expect=exact(l="l:../outside", outside="d", **{"outside/pwn": "f:x"})),
    Case("symlink-parent-absolute-same-layer",
         lambda b: [[symlink("l", b.o), file("l/secret", b"x")]],
         expect=with_outside(lambda o: {"l": "l:/" + o, o + "/secret": "f:x"})),
    Case("symlink-parent-across-layers",
         lambda b: [[symlink("l", b.o)], [file("l/dir/keep", b"x")]],
         expect=with_outside(lambda o: {"l": "l:/" + o, o + "/dir": "d",
                                        o + "/dir/keep": "f:x"})),
    Case("symlink-parent-deep-dotdot-across-layers",
         lambda b: [[dir("a"), symlink("a/up", "../../../../../../outside")],
                    [file("a/up/secret", b"x")]],
         expect=exact(a="d", outside="d", **{"a/up": "l:../../../../../../outside",
                                               "outside/secret": "f:x"})),
    Case("symlink-chain-to-outside",
         lambda b: [[symlink("a", "b"), symlink("b", "/c"), symlink("c", "../outside")],
                    [file("a/secret", b"x")]],
         expect=exact(a="l:b", b="l:/c", c="l:../outside", outside="d",
                      **{"outside/secret": "f:x"})),
    Case("symlink-loop", lambda b: [[symlink("a", "b"), symlink("b", "a"), file("a/x", b"x")]],
         error="cannot create the parent directory of 'a/x'"),
    Case("parent-is-a-file", lambda b: [[file("f", b"1"), file("f/x", b"x")]],
         error="cannot create the parent directory of 'f/x'"),
    Case("magic-link-parent", lambda b: [[symlink("p", "/proc/self/root" + b.o),
                                          file("p/secret", b"x")]],
         expect=lambda b: {"p": "l:/proc/self/root" + b.o,
                           **dirs("proc/self/root" + b.o), f"proc/self/root{b.o}/secret": "f:x"}),
    # -- the final component is never followed --------------------------------------------------
    Case("file-replaces-symlink-to-outside",
         lambda b: [[symlink("f", b.o + "/secret")], [file("f", b"mine", mode=0o600)]],
         expect=exact(f="f:mine")),
    Case("dir-replaces-symlink-to-outside",
         lambda b: [[symlink("d", b.o + "/dir"), dir("d", mode=0o777)]],
         expect=exact(d="d")),
    Case("symlink-target-kept-verbatim",
         lambda b: [[dir("bin"), symlink("bin/sh", "/bin/busybox"), symlink("x", "../../..")]],
         expect=exact(bin="d", x="l:../../..", **{"bin/sh": "l:/bin/busybox"})),
    # -- the root -----------------------------------------------------------------------------
    Case("root-replaced-by-symlink", lambda b: [[symlink(".", b.o)]],
         error="would replace the root directory"),
    Case("root-replaced-by-symlink-slash", lambda b: [[symlink("/", b.o)]],
         error="would replace the root directory"),
    Case("root-replaced-by-file", lambda b: [[file("./", b"x")]],
         error="would replace the root directory"),
    # -- hardlinks ---------------------------------------------------------------------------
    Case("hardlink-dotdot", lambda b: [[hardlink("h", "../outside/secret")]],
         error="'..' component"),
    Case("hardlink-absolute-host-path", lambda b: [[hardlink("h", b.o + "/secret")]],
         error="which is not in the tree"),
    Case("hardlink-through-symlinked-parent",
         lambda b: [[symlink("l", b.o), hardlink("h", "l/secret")]],
         error="which is not in the tree"),
    Case("hardlink-to-directory", lambda b: [[dir("d"), hardlink("h", "d")]],
         error="points to a directory"),
    Case("hardlink-to-root", lambda b: [[hardlink("h", "/")]], error="points to the root"),
    Case("hardlink-within-tree",
         lambda b: [[file("a", b"same"), hardlink("b", "a"), hardlink("/c", "/a")]],
         expect=exact(a="f:same", b="f:same", c="f:same")),
    Case("hardlink-to-symlink-links-the-symlink",
         lambda b: [[symlink("s", b.o + "/secret"), hardlink("h", "s")]],
         expect=lambda b: {"s": "l:" + b.o + "/secret", "h": "l:" + b.o + "/secret"}),
    # -- whiteouts ---------------------------------------------------------------------------
    Case("whiteout-empty", lambda b: [[file(".wh.")]], error="names no entry"),
    Case("whiteout-dot", lambda b: [[file("a/.wh..")]], error="names no entry"),
    Case("whiteout-dotdot", lambda b: [[file(".wh...")]], error="names no entry"),
    Case("whiteout-through-symlink-absolute",
         lambda b: [[symlink("l", b.o)], [file("l/.wh.secret"), file("l/.wh.dir")]],
         expect=lambda b: {"l": "l:" + b.o}),
    Case("whiteout-through-symlink-relative",
         lambda b: [[symlink("l", "../outside")], [file("l/.wh..wh..opq")]],
         expect=exact(l="l:../outside")),
    Case("whiteout-of-symlink-removes-the-link",
         lambda b: [[symlink("l", b.o + "/dir")], [file(".wh.l")]], expect=exact()),
    Case("whiteout-lower-file",
         lambda b: [[file("a", b"1"), file("b", b"2")], [file(".wh.a")]],
         expect=exact(b="f:2")),
    Case("whiteout-lower-dir",
         lambda b: [[dir("d"), dir("d/e"), file("d/e/f", b"1")], [file(".wh.d")]],
         expect=exact()),
    Case("whiteout-spares-same-layer",
         lambda b: [[file("a", b"old")], [file("a", b"new"), file(".wh.a")]],
         expect=exact(a="f:new")),
    Case("whiteout-spares-same-layer-children",
         lambda b: [[dir("d"), file("d/old", b"1")], [file("d/new", b"2"), file(".wh.d")]],
         expect=exact(d="d", **{"d/new": "f:2"})),
    Case("opaque-whiteout",
         lambda b: [[dir("d"), file("d/a", b"1"), dir("d/sub"), file("d/sub/x", b"1")],
                    [dir("d"), file("d/.wh..wh..opq"), file("d/c", b"3")]],
         expect=exact(d="d", **{"d/c": "f:3"})),
    Case("opaque-whiteout-after-entries",
         lambda b: [[dir("d"), file("d/a", b"1"), dir("d/sub"), file("d/sub/x", b"1")],
                    [file("d/c", b"3"), dir("d/sub"), file("d/.wh..wh..opq")]],
         expect=exact(d="d", **{"d/c": "f:3", "d/sub": "d"})),
    Case("opaque-whiteout-at-root",
         lambda b: [[file("a", b"1"), dir("d")], [file(".wh..wh..opq"), file("b", b"2")]],
         expect=exact(b="f:2")),
    Case("whiteout-missing-parent-is-noop", lambda b: [[file("no/such/.wh.x")]],
         expect=exact()),
    Case("whiteouts-off-are-files", lambda b: [[file(".wh.a", b"1")]],
         expect=exact(**{".wh.a": "f:1"})),
    Case("unknown-whiteout-metadata", lambda b: [[file(".wh..wh.plnk")]], expect=exact(),
         warnings=("unknown whiteout",)),
    # -- replacement ---------------------------------------------------------------------------
    Case("file-replaces-dir",
         lambda b: [[dir("d"), dir("d/e"), file("d/e/f", b"1")], [file("d", b"now a file")]],
         expect=exact(d="f:now a file")),
    Case("dir-replaces-file",
         lambda b: [[file("d", b"1")], [dir("d"), file("d/x", b"2")]],
         expect=exact(d="d", **{"d/x": "f:2"})),
    Case("symlink-replaces-dir-then-write-through",
         lambda b: [[dir("d"), file("d/x", b"1")], [symlink("d", "/e"), file("d/y", b"2")]],
         expect=exact(d="l:/e", e="d", **{"e/y": "f:2"})),
    Case("dir-merges-with-lower-dir",
         lambda b: [[dir("d"), file("d/a", b"1")], [dir("d", mode=0o700), file("d/b", b"2")]],
         expect=exact(d="d", **{"d/a": "f:1", "d/b": "f:2"})),
    Case("file-overwrites-file",
         lambda b: [[file("f", b"old")], [file("f", b"new")]], expect=exact(f="f:new")),
    # -- special files ---------------------------------------------------------------------------
    Case("device-nodes-skipped",
         lambda b: [[chardev("null"), blockdev("sda"), file("x", b"1")]],
         expect=exact(x="f:1"), warnings=("skipped device node '/null'",
                                          "skipped device node '/sda'")),
    Case("fifo-created", lambda b: [[fifo("p", mode=0o620)]], expect=exact(p="p")),
    # tar header fields end at the first NUL: what follows is never seen
    Case("nul-in-name", lambda b: [[file("a\x00/../outside", b"x")]], expect=exact(a="f:x")),
    Case("nul-in-symlink-target", lambda b: [[symlink("s", "/etc\x00/passwd")]],
         expect=exact(s="l:/etc")),
    Case("absurd-mtime", lambda b: [[file("f", b"x", mtime=10**30)]], error="is invalid"),
    # -- broken tars -------------------------------------------------------------------------
]
BROKEN = {
    "not-a-tar": (b"this is not a tar archive" * 100, "not a valid tar archive"),
    "truncated-in-file": (layer(file("big", b"x" * 5000))[:1024], "truncated"),
}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_adversarial(case: Case, box: Sandbox, resolver):
    layers = [layer(*entries) for entries in case.layers(box)]
    whiteouts = case.id != "whiteouts-off-are-files"
    if case.error:
        with pytest.raises(Error) as e:
            apply(box, *layers, whiteouts=whiteouts)
        assert case.error in e.value.message
        return
    warnings = apply(box, *layers, whiteouts=whiteouts)
    assert tree(box.root) == case.expect(box)
    for w in case.warnings:
        assert any(w in x for x in warnings), warnings


@pytest.mark.parametrize("data,message", BROKEN.values(), ids=BROKEN.keys())
def test_broken_tar(data, message, box: Sandbox):
    with pytest.raises(Error) as e:
        apply(box, data)
    assert message in e.value.message


def test_corpus_size():
    assert len(CASES) + len(BROKEN) >= 30


def test_openat2_is_used(box: Sandbox, monkeypatch):
    monkeypatch.setattr(fsresolve, "HAVE_OPENAT2", None)
    apply(box, layer(dir("a"), file("a/b", b"1")))
    assert fsresolve.HAVE_OPENAT2 is True


def test_openat2_enosys_falls_back(box: Sandbox, monkeypatch):
    def enosys(rootfd, path):
        raise OSError(38, "Function not implemented")
    monkeypatch.setattr(fsresolve, "HAVE_OPENAT2", None)
    monkeypatch.setattr(fsresolve, "_openat2_in_root", enosys)
    apply(box, layer(symlink("l", "../outside"), file("l/x", b"1")))
    assert fsresolve.HAVE_OPENAT2 is False
    assert (box.root / "outside/x").read_bytes() == b"1"


# -- metadata ------------------------------------------------------------------------------

def test_modes_and_times(box: Sandbox, resolver):
    apply(box, layer(dir("tmp", mode=0o1777, mtime=MTIME - 5), dir("ro", mode=0o555),
                     file("ro/f", b"1", mode=0o400), file("x", b"1", mode=0o751),
                     symlink("s", "x", mtime=MTIME - 9)))
    r = box.root
    assert stat.S_IMODE((r / "tmp").stat().st_mode) == 0o1777
    assert stat.S_IMODE((r / "ro").stat().st_mode) == 0o555
    assert stat.S_IMODE((r / "ro/f").stat().st_mode) == 0o400
    assert stat.S_IMODE((r / "x").stat().st_mode) == 0o751
    assert (r / "tmp").stat().st_mtime == MTIME - 5
    assert (r / "ro").stat().st_mtime == MTIME  # set after ro/f was written
    assert (r / "s").lstat().st_mtime == MTIME - 9


def test_root_entry_sets_root_mode(box: Sandbox):
    apply(box, layer(dir("./", mode=0o750), file("a", b"1")))
    assert stat.S_IMODE(box.root.stat().st_mode) == 0o750


@needs_root
def test_ownership_numeric_and_setuid_kept(box: Sandbox, resolver):
    apply(box, layer(dir("home", uid=1000, gid=1000, mode=0o2775),
                     file("su", b"#!", mode=0o4755, uid=0, gid=0),
                     file("home/sg", b"1", mode=0o6750, uid=4242, gid=4343),
                     symlink("home/l", "/nowhere", uid=77, gid=88),
                     fifo("home/p", uid=5, gid=6)))
    r = box.root
    st = (r / "home/sg").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (4242, 4343, 0o6750)
    assert stat.S_IMODE((r / "su").stat().st_mode) == 0o4755
    st = (r / "home").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1000, 0o2775)
    st = (r / "home/l").lstat()
    assert (st.st_uid, st.st_gid) == (77, 88)
    assert (r / "home/p").lstat().st_uid == 5


@needs_root
def test_xattrs_allowed_and_dropped(box: Sandbox):
    warnings = apply(box, layer(file("ping", b"elf", mode=0o755, uid=0, xattrs={
        "security.capability": CAP_NET_RAW, "user.note": b"hello",
        "trusted.evil": b"1", "security.selinux": b"system_u:object_r:bin_t:s0"})))
    p = box.root / "ping"
    assert os.getxattr(p, "security.capability") == CAP_NET_RAW
    names = os.listxattr(p)
    assert "trusted.evil" not in names
    assert any("dropped xattr trusted.evil" in w for w in warnings)
    assert any("dropped xattr security.selinux" in w for w in warnings)
    try:
        assert os.getxattr(p, "user.note") == b"hello"
    except OSError:
        assert any("user.note" in w for w in warnings)  # filesystem without user xattrs


def test_max_file_bytes(box: Sandbox):
    with pytest.raises(Error, match="more than 150 bytes of file data"):
        apply_layer(io.BytesIO(layer(file("a", b"x" * 100), file("b", b"y" * 100))), box.root,
                    max_file_bytes=150)


@needs_root
def test_absurd_uid(box: Sandbox):
    with pytest.raises(Error, match="is invalid"):
        apply(box, layer(file("f", b"x", uid=2**40)))
