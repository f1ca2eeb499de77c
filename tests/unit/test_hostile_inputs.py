"""Hostile tar streams for the unpacker, built here (hostile.py): each is refused with one
line that names the entry and the limit, within bounded memory, or, where legitimate (a tree
thousands of levels deep), unpacked like any other.

tests/hostile_figures.py runs these inputs at full size and prints peak RSS and time."""

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import hostile
import pytest
from imagebuild import chardev, layer

from nspawnctl.errors import Error
from nspawnctl.fs import resolve as fsresolve
from nspawnctl.fs import walk as fswalk
from nspawnctl.sources import unpack
from nspawnctl.sources.unpack import apply_layer

REPO = Path(__file__).resolve().parents[2]
fast_tmp, few_fds = hostile.fast_tmp, hostile.few_fds


class Counting(io.RawIOBase):
    """A stream of generated chunks that counts what was read from it, and fails a read of
    more than 64 MiB at once (what an unchecked header size asks for)."""

    def __init__(self, chunks):
        self.chunks, self.buf, self.taken = iter(chunks), bytearray(), 0

    def readable(self):
        return True

    def read(self, n=-1):
        assert n is not None and 0 <= n <= 64 << 20, f"a read of {n} bytes at once"
        while len(self.buf) < n:
            chunk = next(self.chunks, None)
            if chunk is None:
                break
            self.buf += chunk
        out = bytes(self.buf[:n])
        del self.buf[:n]
        self.taken += len(out)
        return out


def refused(chunks, tmp_path, **kw) -> tuple[Error, int]:
    stream = Counting(chunks)
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    with pytest.raises(Error) as e:
        apply_layer(stream, root, **kw)
    assert "\n" not in e.value.message
    return e.value, stream.taken


# -- headers: every size a header declares is checked before it is read ---------------------

@pytest.mark.parametrize("bomb,kind", [(hostile.pax_bomb, "pax extended"),
                                       (hostile.longname_bomb, "GNU long name"),
                                       (hostile.longlink_bomb, "GNU long link name")])
def test_header_declaring_a_gigabyte_is_refused_before_it_is_read(bomb, kind, tmp_path):
    e, taken = refused(bomb(1 << 30), tmp_path)
    name = "PaxHeaders/f" if "pax" in kind else "././@LongLink"
    assert e.message == (f"layer header at byte 0 ({name!r}) declares a {kind} header of "
                         f"{1 << 30} bytes, more than the limit of {unpack.MAX_HEADER_BYTES}")
    assert taken <= 2 * unpack.COPY_CHUNK  # the read-ahead of one chunk, not the gigabyte


def test_header_at_the_limit_is_read(tmp_path):
    name = "n" * (unpack.MAX_HEADER_BYTES - 1)
    record = hostile.pax_record("comment", name[:unpack.MAX_HEADER_BYTES - 100])
    data = (hostile.header("PaxHeaders/f", tarfile.XHDTYPE, len(record)) + hostile.padded(record)
            + hostile.file_entry("f") + hostile.end())
    root = tmp_path / "root"
    root.mkdir()
    apply_layer(io.BytesIO(data), root)
    assert (root / "f").read_bytes() == b"x"


def test_chain_of_extension_headers_is_refused(tmp_path):
    e, _ = refused(hostile.pax_chain(5000), tmp_path)  # tarfile recurses once per header
    assert f"more than the limit of {unpack.MAX_HEADER_CHAIN}" in e.message
    assert "in a row" in e.message


def test_global_headers_are_bounded_together(tmp_path):
    e, _ = refused(hostile.global_flood(100), tmp_path)
    assert f"pax global headers to more than the limit of {unpack.MAX_HEADER_BYTES}" \
        in e.message


@pytest.mark.parametrize("bomb", [lambda: hostile.old_sparse_bomb(100_000),
                                  lambda: hostile.sparse10_bomb(10_000_000)],
                         ids=["old-gnu-sparse", "gnu-sparse-1.0"])
def test_sparse_maps_are_bounded(bomb, tmp_path):
    e, taken = refused(bomb(), tmp_path)
    assert f"sparse map of more than {unpack.MAX_HEADER_BYTES} bytes" in e.message
    assert taken <= 4 * unpack.COPY_CHUNK


def test_reader_refuses_an_unbounded_read():
    reader = unpack.ForwardReader(io.BytesIO(b"x" * 10))
    for n in (-1, None, unpack.MAX_READ + 1):
        with pytest.raises(Error, match="more than the limit"):
            reader.read(n)


def run_child(code: str, *args) -> tuple[str, int]:
    """Run code in a fresh python; return its last line of output and its peak RSS in KiB."""
    paths = [str(REPO), str(REPO / "tests/unit")]
    script = f"import sys\nsys.path[:0] = {paths!r}\n{code}\n{hostile.PRINT_PEAK_RSS}"
    out = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines, rss = hostile.peak_rss(out.stdout)
    assert rss is not None, out.stdout[-2000:]
    return lines[-1] if lines else "", rss


IMPORT_ONLY = """
from nspawnctl.errors import Error
from nspawnctl.sources.tarball import import_tar
print("imported")
"""

IMPORT_TAR = """
from pathlib import Path
from nspawnctl.errors import Error
from nspawnctl.sources.tarball import import_tar
tree = Path(sys.argv[2]); tree.mkdir()
try:
    import_tar(Path(sys.argv[1]), tree, warn=lambda w: None)
    print("imported")
except Error as e:
    print("Error:", e)
"""


def test_child_peak_is_its_own():
    """The child's peak leaves out its parent's memory: this process holds 64 MiB more when
    it starts the child, and the child's peak does not move (ru_maxrss would, by 64 MiB)."""
    _, before = run_child("print('nothing')")
    ballast = b"x" * (64 << 20)  # written, so resident
    _, after = run_child("print('nothing')")
    del ballast
    assert abs(after - before) < 8 << 10, f"{before >> 10} MiB, then {after >> 10} MiB"


@pytest.fixture(scope="module")
def idle_peak() -> int:
    """The peak RSS in KiB of a child that imports the unpacker and does nothing with it."""
    return run_child(IMPORT_ONLY)[1]


@pytest.mark.parametrize("bomb", [hostile.pax_bomb, hostile.longname_bomb])
def test_header_bomb_memory_in_a_child(bomb, tmp_path, idle_peak):
    """256 MiB declared and there (a 256 KiB gzip): refused in about the memory of a run that
    only imports (measured: 4 MiB more, for the 1 MiB read-ahead and gzip's buffers)."""
    path = hostile.compress(bomb(256 << 20), tmp_path / "bomb.tar.gz")
    assert path.stat().st_size < 1 << 20
    line, rss = run_child(IMPORT_TAR, path, tmp_path / "tree")
    assert line.startswith("Error: cannot import") and "more than the limit of 1048576" in line
    assert rss < idle_peak + (32 << 10), f"peak RSS {rss >> 10} MiB, {idle_peak >> 10} MiB idle"


# -- entries --------------------------------------------------------------------------------

def test_entry_count_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(unpack, "MAX_ENTRIES", 100)
    e, _ = refused(hostile.whiteout_flood(1000), tmp_path)
    assert e.message == "layer has more than 100 entries (the limit), at '.wh.nothing'"


def test_distinct_paths_are_bounded(tmp_path, monkeypatch):
    """One entry 200 levels deep is 200 paths the layer must remember for its whiteouts."""
    monkeypatch.setattr(unpack, "MAX_ENTRIES", 100)
    data = hostile.tar_of([("/".join(["d"] * 200) + "/f", tarfile.REGTYPE)])
    e, _ = refused([data], tmp_path)
    assert "more than 100 distinct paths (the limit)" in e.message


def test_warnings_are_bounded(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    warnings = apply_layer(io.BytesIO(layer(*[chardev(f"dev{i}") for i in range(300)])), root)
    assert len(warnings) == unpack.MAX_WARNINGS + 1
    assert warnings[-1] == f"... and {300 - unpack.MAX_WARNINGS} more warnings"


# -- trees thousands of levels deep (more than Python's recursion limit) --------------------

DEPTH = 5000  # paths of 10,000 bytes, past PATH_MAX; hostile_figures.py goes to 20,000 levels


@pytest.mark.parametrize("resolver,depth", [("openat2", DEPTH), ("walk", 1500)])
def test_deep_layer_unpacks(fast_tmp, monkeypatch, few_fds, resolver, depth):
    """Each entry's parent is reached from the last one's: no PATH_MAX, no descriptor per
    level (few_fds), and the directory modes are set at the end all the same."""
    assert depth > sys.getrecursionlimit()
    monkeypatch.setattr(fsresolve, "HAVE_OPENAT2", None if resolver == "openat2" else False)
    root = fast_tmp / "root"
    root.mkdir()
    apply_layer(io.BytesIO(hostile.deep_layer(depth)), root)
    bottom = "/".join(["d"] * depth)
    assert hostile.listdir_deep(root, bottom) == ["bottom"]
    fd = os.open(root, os.O_RDONLY)
    try:
        for _ in range(depth):
            nfd = os.open("d", os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
        assert os.stat(".", dir_fd=fd).st_mode & 0o777 == 0o755
    finally:
        os.close(fd)
    fswalk.remove_tree(root)


def test_deep_whiteouts_and_replacements(fast_tmp, few_fds):
    """A second layer writes under the deep tree behind an opaque whiteout (kept: its own), a
    third replaces the top directory with a file (the whole deep tree removed)."""
    root = fast_tmp / "root"
    root.mkdir()
    apply_layer(io.BytesIO(hostile.deep_layer(3000)), root)
    half = "/".join(["d"] * 1500)
    second = hostile.tar_of([("d/.wh..wh..opq", tarfile.REGTYPE), (half + "/new", tarfile.REGTYPE)])
    apply_layer(io.BytesIO(second), root)
    assert hostile.listdir_deep(root, half) == ["new"]
    apply_layer(io.BytesIO(hostile.tar_of([("d", tarfile.REGTYPE)])), root)
    assert os.listdir(root) == ["d"] and (root / "d").is_file()


# -- the end of the archive ------------------------------------------------------------------

GOOD = hostile.tar_of([("etc", tarfile.DIRTYPE), ("etc/os-release", tarfile.REGTYPE),
                       ("etc/hostname", tarfile.REGTYPE)])


def test_layer_cut_at_an_entry_boundary(tmp_path):
    """No end-of-archive block: it was cut short, whatever tarfile thinks."""
    cut = GOOD[:GOOD.index(b"etc/hostname") // 512 * 512]
    e, _ = refused([cut], tmp_path)
    assert e.message == "layer is truncated: it ends without tar's end-of-archive block"


def test_layer_with_a_corrupt_header_in_the_middle(tmp_path):
    data = bytearray(GOOD)
    data[GOOD.index(b"etc/hostname") + 1] ^= 1  # breaks that header's checksum
    e, _ = refused([bytes(data)], tmp_path)
    assert "truncated" in e.message
