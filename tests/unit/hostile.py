"""Hostile inputs, built here: header bombs, sparse-map bombs, deep trees, entry floods, index
fan-outs.  Streams are generators of byte chunks, so a 1 GiB declared (and present) header
costs the builder no memory; compress() writes them to a file as they come.

Used by test_hostile_inputs.py (small counts) and tests/hostile_figures.py (full size, peak
RSS and time of each in a child process)."""

import gzip
import io
import json
import os
import resource
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from imagebuild import (
    MTIME,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    image_config,
    write_blob,
    write_index,
)

BLOCK = tarfile.BLOCKSIZE

# Code that prints a child's peak RSS in KiB as "peak-rss N": VmHWM, the high-water mark of
# its own memory since its exec.  Not getrusage's or wait4's ru_maxrss: that also keeps the
# peak of the memory the child had before its exec, a copy of its parent's, so a child of a
# large pytest "peaks" at pytest's size (CI once failed on it).
PRINT_PEAK_RSS = ("print('peak-rss', next(line.split()[1] for line in open('/proc/self/status')"
                  " if line.startswith('VmHWM:')), flush=True)")


def peak_rss(output: str) -> tuple[list[str], int | None]:
    """Split a child's output into its lines before the peak-rss line, and that peak in KiB
    (None if the child died before printing it)."""
    lines = output.strip().splitlines()
    if lines and lines[-1].startswith("peak-rss "):
        return lines[:-1], int(lines[-1].split()[1])
    return lines, None


def header(name: str, type_: bytes, size: int = 0, linkname: str = "", mode: int = 0o644,
           fmt: int = tarfile.USTAR_FORMAT) -> bytes:
    """One 512-byte tar header, whatever size it declares."""
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode, info.mtime, info.linkname = type_, size, mode, MTIME, linkname
    info.uname = info.gname = ""
    data = info.tobuf(fmt, "utf-8", "surrogateescape")
    assert len(data) == BLOCK, "header() makes one block: keep names under 100 bytes"
    return data


def pax_record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n".encode()
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n += 1
    return str(n).encode() + body


def padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def end() -> bytes:
    return bytes(2 * BLOCK)


def zeros(n: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    while n > 0:
        yield bytes(min(chunk, n))
        n -= chunk


def file_entry(name: str, data: bytes = b"x") -> bytes:
    return header(name, tarfile.REGTYPE, len(data)) + padded(data)


# -- header bombs: a special header that declares `declared` bytes, which follow --------------

def header_bomb(type_: bytes, declared: int, name: str = "././@LongLink") -> Iterator[bytes]:
    yield header(name, type_, declared)
    yield from zeros(declared + (-declared % BLOCK))
    yield file_entry("after")
    yield end()


def pax_bomb(declared: int) -> Iterator[bytes]:
    return header_bomb(tarfile.XHDTYPE, declared, "PaxHeaders/f")


def longname_bomb(declared: int) -> Iterator[bytes]:
    return header_bomb(tarfile.GNUTYPE_LONGNAME, declared)


def longlink_bomb(declared: int) -> Iterator[bytes]:
    return header_bomb(tarfile.GNUTYPE_LONGLINK, declared)


def pax_chain(count: int) -> Iterator[bytes]:
    """count pax extended headers in a row before one entry: tarfile recurses once for each."""
    record = padded(pax_record("comment", "x" * 400))
    one = header("PaxHeaders/f", tarfile.XHDTYPE, len(record.rstrip(b"\0"))) + record
    for _ in range(count):
        yield one
    yield file_entry("f")
    yield end()


def global_flood(count: int, each: int = 64 << 10) -> Iterator[bytes]:
    """count pax global headers of distinct keys, an entry after each: tarfile keeps them all,
    and copies them for every entry that follows."""
    for i in range(count):
        record = pax_record(f"nspawnctl.flood.{i}", "x" * (each - 64))
        yield header("GlobalHead", tarfile.XGLTYPE, len(record)) + padded(record)
        yield file_entry(f"f{i}")
    yield end()


def _gnu_sparse_header(name: str, size: int) -> bytearray:
    buf = bytearray(header(name, tarfile.REGTYPE, size, fmt=tarfile.GNU_FORMAT))
    buf[156:157] = tarfile.GNUTYPE_SPARSE
    buf[482] = 1                                             # isextended
    buf[483:495] = b"%011o\0" % (1 << 20)                    # origsize (realsize)
    buf[148:156] = b" " * 8
    buf[148:156] = b"%06o\0 " % tarfile.calc_chksums(bytes(buf))[0]
    return buf


def old_sparse_bomb(blocks: int) -> Iterator[bytes]:
    """An old-GNU sparse file whose map goes on for `blocks` extension blocks."""
    yield bytes(_gnu_sparse_header("sparse", 0))
    entry = b"%011o\0%011o\0" % (1, 1)
    ext = bytearray(entry * 21 + bytes(BLOCK - 21 * 24))
    ext[504] = 1
    ext = bytes(ext)
    for _ in range(blocks):
        yield ext
    last = bytearray(ext)
    last[504] = 0
    yield bytes(last)
    yield end()


def sparse10_bomb(numbers: int) -> Iterator[bytes]:
    """A GNU sparse 1.0 file whose map (at the start of its data) lists `numbers` numbers."""
    records = b"".join(pax_record(k, v) for k, v in [
        ("GNU.sparse.major", "1"), ("GNU.sparse.minor", "0"), ("GNU.sparse.name", "sparse"),
        ("GNU.sparse.realsize", "1048576")])
    yield header("PaxHeaders/sparse", tarfile.XHDTYPE, len(records)) + padded(records)
    data_size = len(str(numbers // 2)) + 1 + 2 * numbers
    yield header("GNUSparseFile.0/sparse", tarfile.REGTYPE, data_size)
    yield str(numbers // 2).encode() + b"\n"
    left = 2 * numbers
    while left:
        n = min(left, 1 << 20)
        yield b"1\n" * (n // 2)
        left -= n
    yield bytes(-(data_size) % BLOCK)
    yield end()


# -- trees and floods -----------------------------------------------------------------------

def deep_entries(depth: int, name: str = "d", prefix: str = "") -> list[tuple[str, bytes]]:
    """(name, tar type) of depth nested directories and one file at the bottom."""
    out, path = [], prefix
    for _ in range(depth):
        path = f"{path}/{name}" if path else name
        out.append((path, tarfile.DIRTYPE))
    out.append((f"{path}/bottom", tarfile.REGTYPE))
    return out


def tar_of(entries: Iterable[tuple[str, bytes]], data: bytes = b"x") -> bytes:
    """An uncompressed PAX tar of (name, type) entries (long names become pax headers)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, type_ in entries:
            info = tarfile.TarInfo(name)
            info.type, info.mtime = type_, MTIME
            info.mode = 0o755 if type_ == tarfile.DIRTYPE else 0o644
            if type_ == tarfile.REGTYPE:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def deep_layer(depth: int) -> bytes:
    return tar_of(deep_entries(depth))


def whiteout_flood(count: int, distinct: bool = False) -> Iterator[bytes]:
    """count whiteouts of nothing: entries that cost the unpacker almost no work each.  With
    distinct names they compress less, so the entry limit comes before the ratio's."""
    one = header(".wh.nothing", tarfile.REGTYPE)
    for i in range(count):
        yield header(f".wh.n{i}", tarfile.REGTYPE) if distinct else one
    yield end()


# -- writing them ---------------------------------------------------------------------------

def compress(chunks: Iterable[bytes], path: Path, kind: str | None = "gzip") -> Path:
    """Write the stream to path, compressed as it comes (gzip -9: zeros shrink about 1000 times)."""
    with open(path, "wb") as out:
        if kind == "gzip":
            with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9, mtime=0) as gz:
                for chunk in chunks:
                    gz.write(chunk)
        elif kind == "zstd":
            import zstandard
            with zstandard.ZstdCompressor(level=1, write_checksum=True).stream_writer(
                    out, closefd=False) as z:
                for chunk in chunks:
                    z.write(chunk)
        elif kind is None:
            for chunk in chunks:
                out.write(chunk)
        else:
            raise ValueError(kind)
    return path


def oci_layout_with_blob(root: Path, layer_path: Path, diff_id: str,
                         media_type: str = "application/vnd.oci.image.layer.v1.tar+gzip",
                         arch: str = "amd64") -> dict:
    """A one-image OCI layout whose single layer is the file layer_path (moved in)."""
    import hashlib
    h = hashlib.sha256()
    with open(layer_path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    blob = root / "blobs" / "sha256" / h.hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    size = layer_path.stat().st_size
    layer_path.rename(blob)
    layer = {"mediaType": media_type, "digest": f"sha256:{h.hexdigest()}", "size": size}
    config = write_blob(root, json.dumps(image_config([diff_id], arch)).encode(), OCI_CONFIG)
    manifest = write_blob(root, json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                            "config": config, "layers": [layer]}).encode(),
                          OCI_MANIFEST)
    write_index(root, [manifest])
    return manifest


def stream_sha256(chunks: Iterable[bytes]) -> str:
    import hashlib
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
    return "sha256:" + h.hexdigest()


def index_fanout(root: Path, fanout: int, levels: int, host: dict, other: dict) -> None:
    """index.json -> index 1 -> ... each naming the next `fanout` times; the deepest names a
    manifest of another platform `fanout` times; index.json then names the host manifest.
    Looked through naively, that is fanout**(levels-1) visits of the deepest index."""
    child = write_blob(root, json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                         "manifests": [other] * fanout}).encode(), OCI_INDEX)
    for _ in range(levels - 1):
        child = write_blob(root, json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                             "manifests": [child] * fanout}).encode(), OCI_INDEX)
    write_index(root, [child, host])


# -- fixtures the hostile test files share (assign them in a test module to use them) --------

ROOT = os.geteuid() == 0


@pytest.fixture
def fast_tmp(tmp_path):
    """A directory on tmpfs where there is one: creating 5000 directories on a disk with a
    journal takes seconds, and depth, not the filesystem, is what these tests are about."""
    from nspawnctl.fs import walk as fswalk
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    path = Path(tempfile.mkdtemp(dir=base)) if base else tmp_path / "fast"
    path.mkdir(exist_ok=True)
    yield path
    fswalk.remove_tree(path)


@pytest.fixture
def few_fds():
    """At most 64 descriptors: no walk may hold one per level."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def tmpfs_in():
    """Mount a tmpfs holding a file "precious" on a directory (root only); unmounted after."""
    mounted = []

    def mount(path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        if subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(path)]).returncode != 0:
            pytest.skip("cannot mount a tmpfs here")
        mounted.append(path)
        (path / "precious").write_text("keep")
        return path
    if not ROOT:
        pytest.skip("mounting needs root")
    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", str(path)])


def deep_dirs(top: Path, depth: int, name: str = "d", each=None) -> None:
    """Make depth nested directories under top, fd-relative (no path is ever too long);
    each(fd) is called in every one."""
    fd = os.open(top, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir(name, dir_fd=fd)
            nfd = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nfd
            if each:
                each(fd)
    finally:
        os.close(fd)


def listdir_deep(root: Path, rel: str) -> list[str]:
    """os.listdir of a path too long for one syscall, reached one component at a time."""
    fd = os.open(root, os.O_RDONLY)
    try:
        for part in rel.split("/"):
            nfd = os.open(part, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
        return os.listdir(fd)
    finally:
        os.close(fd)
