"""Benchmark: nspawnctl's image unpacker against `umoci unpack` on the same image.

    python tests/bench/bench_oci.py [--tree DIR] [--runs 3]

Without --tree, a realistic tree is made by copying real files from this host
(Python's standard library and site packages, documentation, busybox).  The tree
becomes an image with podman (import, then save as an OCI archive) and skopeo
(an OCI layout for umoci).  Each unpacker runs --runs times into a fresh
directory, interleaved; the table shows min, median and max, and the log the load
average at each run (other work on the machine shows in both).  Benchmarks report;
they do not judge.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import imagetools  # noqa: E402

from nspawnctl.sources.oci import unpack_image  # noqa: E402

DEFAULT_SOURCES = [Path("/usr/lib/python3"), Path("/usr/lib/python3.11"), Path("/usr/share/perl"),
                   Path("/usr/lib/x86_64-linux-gnu/perl")]
DEFAULT_BYTES = 150 << 20


def default_tree(root: Path) -> Path:
    """About 150 MB of real files: whole source directories until the budget is used."""
    imagetools.make_busybox_tree(root)
    total = 0
    for src in DEFAULT_SOURCES:
        if src.is_dir() and total < DEFAULT_BYTES:
            imagetools.copy_tree([src], root)
            total = du(root)
    return root


def du(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def times(contenders: list, runs: int, scratch: Path) -> list[list[float]]:
    """Seconds of each run of each contender(dest), runs interleaved so disk noise hits all
    alike.

    Dirty pages of the previous run are written back (sync) before each timed run,
    so no one pays for someone else's writeback.  Every run unpacks into a new directory
    and the trees go only with scratch, at the end: ext4 without a journal (as where this
    was written) skips, one at a time, the inodes freed in the last minutes when it
    allocates one, so removing a run's 8,000 files just before the next run cost that run
    seconds of kernel time (perf: most of its cycles in ext4's recently_deleted), whoever
    it was.  scratch gets ext4's "top of a directory hierarchy" attribute (chattr +T, where
    it can) so that each run's tree starts in a block group of its own.
    """
    subprocess.run(["chattr", "+T", str(scratch)], capture_output=True)  # best effort
    took: list[list[float]] = [[] for _ in contenders]
    for r in range(runs):
        for i, fn in enumerate(contenders):
            dest = scratch / f"run{r}-{i}"
            dest.mkdir(mode=0o700)
            os.sync()
            start = time.perf_counter()
            fn(dest)
            took[i].append(time.perf_counter() - start)
            print(f"bench_oci: contender {i} run {len(took[i])}: {took[i][-1]:.2f} s, load "
                  f"average {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)
    return took


def build_image(tree: Path, work: Path) -> tuple[Path, Path]:
    """(oci-archive from podman, OCI layout with tag "bench" from skopeo)."""
    podman = imagetools.Podman(work)
    try:
        name = podman.import_tree(tree, "localhost/nspawnctl-bench:1")
        archive = podman.save(name, "oci-archive", work / "bench.tar")
    finally:
        podman.cleanup()
    layout = imagetools.skopeo_to_oci_dir(f"oci-archive:{archive}", work / "layout", "bench")
    return archive, layout


def run(tree: Path | None, runs: int = 3) -> list[tuple[str, list[float], list[float]]]:
    """Figures as (name, nspawnctl seconds, umoci seconds), each the seconds of every run."""
    missing = imagetools.missing_tools()
    if missing:
        raise SystemExit(f"bench_oci needs {', '.join(missing)}")
    with tempfile.TemporaryDirectory(prefix="bench-oci-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        tree = tree or default_tree(work / "tree")
        archive, layout = build_image(tree, work)
        size_tree, size_archive = du(tree) >> 20, archive.stat().st_size >> 20
        scratch = work / "scratch"
        scratch.mkdir()

        def umoci(dest: Path) -> None:
            subprocess.run(["umoci", "unpack", "--image", f"{layout}:bench", dest / "bundle"],
                           check=True, capture_output=True)

        label = f"unpack {size_archive} MB gzip image of a {size_tree} MB tree"
        umoci_s, layout_s, archive_s = times([
            umoci,
            lambda d: unpack_image("oci", layout, d, ref="bench"),
            lambda d: unpack_image("oci-archive", archive, d),
        ], runs, scratch)
        return [(f"{label} (OCI layout)", layout_s, umoci_s),
                (f"{label} (oci-archive)", archive_s, umoci_s)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, help="root tree to make the image of")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows = run(args.tree, args.runs)
    width = max(len(r[0]) for r in rows)
    print(f"{'figure':<{width}}  {'nspawnctl min/median/max':>24}  {'umoci min/median/max':>22}"
          f"  {'ratio':>5}")
    for name, ours, theirs in rows:
        def spread(t):
            return f"{min(t):.2f}/{statistics.median(t):.2f}/{max(t):.2f} s"
        ratio = statistics.median(ours) / statistics.median(theirs)
        print(f"{name:<{width}}  {spread(ours):>24}  {spread(theirs):>22}  {ratio:>5.2f}")


if __name__ == "__main__":
    main()
