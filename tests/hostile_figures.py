"""Peak RSS and time of nspawnctl on each hostile input of tests/unit/hostile.py, full size.

    python tests/hostile_figures.py [--only NAME,...] [--keep]

Each input is built in a temporary directory, then imported by a child process (a `tar:`
import, an OCI unpack, a tree walk) whose peak RSS (its own VmHWM, see hostile.PRINT_PEAK_RSS)
and wall time are printed with its outcome: the one-line error, or what it made.  Figures,
not pass/fail.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests/unit")]

import hostile  # noqa: E402
from imagebuild import file, layer, oci_layout, tar_tree, write_manifest  # noqa: E402

PRELUDE = f"""
import atexit, os, sys, time
atexit.register(lambda: {hostile.PRINT_PEAK_RSS})
sys.path[:0] = [{str(REPO)!r}, {str(REPO / 'tests/unit')!r}]
from pathlib import Path
from nspawnctl.errors import Error
from nspawnctl.sources import oci
from nspawnctl.formats import platforms
platforms.ARCHES[os.uname().machine] = "amd64"
"""

TAR = PRELUDE + """
from nspawnctl.sources.tarball import import_tar
tree = Path(sys.argv[2]); tree.mkdir()
try:
    import_tar(Path(sys.argv[1]), tree, warn=lambda w: None)
    print("imported", len(os.listdir(tree)), "top-level entries")
except Error as e:
    print("Error:", e)
"""

OCI = PRELUDE + """
tree = Path(sys.argv[2]); tree.mkdir()
try:
    c = oci.unpack_image(sys.argv[3] if len(sys.argv) > 3 else "oci", Path(sys.argv[1]), tree)
    print("unpacked", c.digest[:19])
except Error as e:
    print("Error:", e)
"""

DEEP = PRELUDE + """
from nspawnctl.fs import walk as fswalk
tree = Path(sys.argv[2]); tree.mkdir()
t = time.monotonic(); c = oci.unpack_image("oci", Path(sys.argv[1]), tree); t1 = time.monotonic()
size = fswalk.tree_size(tree); t2 = time.monotonic()
fswalk.remove_tree(tree); t3 = time.monotonic()
print(f"unpacked {t1 - t:.1f}s, tree_size {size} B {t2 - t1:.2f}s, remove_tree {t3 - t2:.1f}s;",
      "gone" if not tree.exists() else "LEFT")
"""

INSPECT = PRELUDE + """
try:
    print("found", oci.inspect_image("oci", Path(sys.argv[1])).digest[:19])
except Error as e:
    print("Error:", e)
"""

SWAP = PRELUDE + """
import shutil
from nspawnctl.sources.oci.source import image_base
path = Path(sys.argv[1])
base = image_base(f"oci-archive:{path}", None, lambda m: None)
os.replace(sys.argv[3], path)
tree = Path(sys.argv[2]); tree.mkdir()
try:
    base.build(tree)
    print("built", sorted(os.listdir(tree)))
except Error as e:
    print("Error:", e)
"""

DIRLINK = PRELUDE + """
from nspawnctl.store.commit import prepare_tree
from nspawnctl.sources.tarball import import_dir
src = Path(sys.argv[1]); tree = Path(sys.argv[2])
import_dir(src.parent / "link", tree)
prepare_tree(tree, "copy")
print("tree is a", "symlink" if tree.is_symlink() else "directory", "; source hostname:",
      (src / "etc/hostname").read_text().strip())
"""


def run(code: str, *args) -> tuple[str, float, int | None]:
    t0 = time.monotonic()
    child = subprocess.run([sys.executable, "-c", code, *map(str, args)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    elapsed = time.monotonic() - t0
    lines, rss = hostile.peak_rss(child.stdout)
    line = lines[-1] if lines else ""
    if child.returncode:
        line = f"exit {child.returncode}: {line}"
    return line, elapsed, rss


def mib(kib: int | None) -> str:
    return "died" if kib is None else f"{kib / 1024:.0f}M"


def gz(work: Path, name: str, chunks, kind="gzip") -> Path:
    return hostile.compress(chunks, work / name, kind)


def deep_image(work: Path, depth: int, compression: str | None = "gzip") -> Path:
    """Past ~7,000 levels the names alone are 100 times their gzip: a bomb by the ratio rule,
    so the deepest case is stored uncompressed."""
    oci_layout(work / f"deep{depth}", [hostile.deep_layer(depth)], compression=compression)
    return work / f"deep{depth}"


def oci_bomb(work: Path, chunks) -> Path:
    layer_path = gz(work, "layer.gz", chunks)
    import gzip
    import hashlib
    h = hashlib.sha256()
    with gzip.open(layer_path) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    hostile.oci_layout_with_blob(work / "ocibomb", layer_path, "sha256:" + h.hexdigest())
    return work / "ocibomb"


def fanout(work: Path, n: int) -> Path:
    root = work / "fanout"
    base = layer(file("f", b"x"))
    host = write_manifest(root, [base], arch="amd64").manifest
    other = write_manifest(root, [base], arch="arm64").manifest
    hostile.index_fanout(root, fanout=n, levels=4, host=host, other=other)
    return root


def swapped(work: Path) -> list:
    a, b = work / "a", work / "b"
    oci_layout(a, [layer(file("which", b"first"))])
    oci_layout(b, [layer(file("which", b"second"))])
    tar_tree(a, work / "img.tar")
    tar_tree(b, work / "b.tar")
    return [work / "img.tar", work / "tree", work / "b.tar"]


def dirlink(work: Path) -> list:
    src = work / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc/hostname").write_text("original\n")
    (work / "link").symlink_to(src)
    return [src, work / "tree"]


def cut_zstd(work: Path) -> Path:
    data = layer(file("etc/os-release", b"ID=x\n")) + bytes(10240)
    path = gz(work, "cut.tar.zst", [data], "zstd")
    path.write_bytes(path.read_bytes()[:-4])
    return path


GiB = 1 << 30
GNU = 1  # tarfile.GNU_FORMAT: base-256 sizes, for a header of 10 GiB
CASES = {
    # name: (what it is, how to build it -> args, child code)
    "pax-1g": ("pax header declaring 1 GiB (present), tar:",
               lambda w: [gz(w, "b.tgz", hostile.pax_bomb(GiB)), w / "t"], TAR),
    "longname-1g": ("GNU long-name header of 1 GiB, tar:",
                    lambda w: [gz(w, "b.tgz", hostile.longname_bomb(GiB)), w / "t"], TAR),
    "longlink-1g": ("GNU long-link header of 1 GiB, tar:",
                    lambda w: [gz(w, "b.tgz", hostile.longlink_bomb(GiB)), w / "t"], TAR),
    "pax-1g-oci": ("pax header of 1 GiB in a gzip OCI layer",
                   lambda w: [oci_bomb(w, hostile.pax_bomb(GiB)), w / "t"], OCI),
    "pax-chain": ("100,000 pax headers in a row, tar:",
                  lambda w: [gz(w, "b.tgz", hostile.pax_chain(100_000)), w / "t"], TAR),
    "global-flood": ("4,000 pax global headers of 64 KiB, tar:",
                     lambda w: [gz(w, "b.tgz", hostile.global_flood(4000)), w / "t"], TAR),
    "old-sparse": ("old GNU sparse map of 2M extension blocks (1 GiB), tar:",
                   lambda w: [gz(w, "b.tgz", hostile.old_sparse_bomb(2 << 20)), w / "t"], TAR),
    "sparse-1.0": ("GNU sparse 1.0 map of 256M numbers (512 MiB), tar:",
                   lambda w: [gz(w, "b.tgz", hostile.sparse10_bomb(256 << 20)), w / "t"], TAR),
    "entries-2m": ("2,000,000 entries (empty files named .wh.N: plain tarballs have no "
                   "whiteouts), tar:",
                   lambda w: [gz(w, "b.tgz", hostile.whiteout_flood(2_000_000, True)), w / "t"],
                   TAR),
    "entries-2m-oci": ("2,000,000 whiteouts of distinct names in a gzip OCI layer",
                       lambda w: [oci_bomb(w, hostile.whiteout_flood(2_000_000, True)), w / "t"],
                       OCI),
    "gzip-bomb": ("one file of 10 GiB of zeros (10 MiB gzip), tar:",
                  lambda w: [gz(w, "b.tgz", [hostile.header("z", b"0", 10 * GiB, fmt=GNU),
                                             *hostile.zeros(10 * GiB), hostile.end()]),
                             w / "t"], TAR),
    "zstd-bomb": ("one file of 10 GiB of zeros (zstd), tar:",
                  lambda w: [gz(w, "b.tzst", [hostile.header("z", b"0", 10 * GiB, fmt=GNU),
                                              *hostile.zeros(10 * GiB), hostile.end()], "zstd"),
                             w / "t"], TAR),
    "zstd-cut": ("zstd tarball cut 4 bytes short", lambda w: [cut_zstd(w), w / "t"], TAR),
    "deep-5000": ("OCI layer of 5,000 nested dirs: unpack, tree_size, remove_tree",
                  lambda w: [deep_image(w, 5000), w / "t"], DEEP),
    "deep-20000": ("uncompressed OCI layer of 20,000 nested dirs: unpack, size, remove",
                   lambda w: [deep_image(w, 20000, None), w / "t"], DEEP),
    "fanout-1000": ("index -> index x1000 -> ... 4 levels (10^9 paths), then the image",
                    lambda w: [fanout(w, 1000)], INSPECT),
    "swapped": ("oci-archive swapped between resolve and unpack", swapped, SWAP),
    "dir-symlink": ("dir: source given as a symlink; hostname written", dirlink, DIRLINK),
}


BASELINE = PRELUDE + """
print("nothing imported")
"""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--only")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(CASES)
    line, elapsed, rss = run(BASELINE)
    print(f"baseline: python + nspawnctl imported, nothing done: {mib(rss)} peak RSS, "
          f"{elapsed:.1f}s")
    print(f"{'input':14} {'size':>9} {'peak RSS':>9} {'time':>7}  outcome")
    for name in names:
        code = CASES[name][2]
        work = Path(tempfile.mkdtemp(prefix=f"hostile-{name}-"))
        try:
            built = CASES[name][1](work)
            size = sum(p.stat().st_size for p in work.rglob("*") if p.is_file())
            line, elapsed, rss = run(code, *built)
            print(f"{name:14} {size / 1e6:8.1f}M {mib(rss):>9} {elapsed:6.1f}s  "
                  f"{line[:200]}", flush=True)
        finally:
            if not args.keep:
                subprocess.run(["rm", "-rf", "--one-file-system", str(work)])


if __name__ == "__main__":
    main()
