"""Benchmark: `nspawnctl pull` from a registry against `skopeo copy` + `umoci unpack` and
`podman pull` of the same image, side by side in one run.

    python tests/bench/bench_registry.py [--runs 3]          (as root, from the repo)

The registry is Debian's docker-registry on 127.0.0.1 (loopback only: no traffic leaves this
machine), plain HTTP, so every contender is given --tls-verify=false alike.  The image is
about 30 MB of gzip (a Debian slim's size) in four layers made of real files of this host:
busybox, Python's standard library, Perl's, and an application layer of its own; a second
image shares the first three.  Figures (each run cold: a fresh store for every contender):

- pull of the first image: nspawnctl (fetch into its blob store, check, unpack the base
  tree a create copies), skopeo copy to an OCI layout + umoci unpack, podman pull (its own
  storage, the driver it picks here);
- pull of the second image after the first: the time, and the bytes the registry sent
  (its access log), against the first's;
- peak RSS: the largest of nspawnctl and the processes it ran (getrusage of a wrapper),
  for this image and for one with a single layer of --big-mb MB.

nspawnctl runs its pull here, not a create (this machine is not a systemd host): a create
from a pulled image is that unpacked base tree copied, which bench_create measures for
every image.  Benchmarks report; they do not judge.
"""

import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests import imagetools  # noqa: E402
from tests.unit import imagebuild as ib  # noqa: E402

ADDR = "127.0.0.1:5987"
TOOLS = ("docker-registry", "skopeo", "umoci", "podman")
SOURCES = {"python": Path("/usr/lib/python3.11"), "perl": Path("/usr/share/perl")}
# Runs argv and prints the largest resident set among it and everything it waited for (kB).
WRAP = ("import resource, subprocess, sys\n"
        "rc = subprocess.call(sys.argv[1:])\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
        "sys.exit(rc)\n")


def log(message: str):
    print(f"bench_registry: {message}", file=sys.stderr, flush=True)


def tar_of(root: Path, *paths: Path) -> bytes:
    """An uncompressed layer of real files (GNU tar: numeric owners, as images carry them)."""
    out = subprocess.run(["tar", "--numeric-owner", "-C", str(root), "-cf", "-",
                          *[str(p.relative_to(root)) for p in paths]],
                         check=True, capture_output=True).stdout
    return out


def app_layer(seed: int) -> bytes:
    """An application of its own: 3 MB that do not compress, one per image."""
    data = random.Random(seed).randbytes(3 << 20)
    return ib.layer(ib.dir("app"), ib.file("app/blob", data), ib.file("app/version", b"%d" % seed))


def build_images(work: Path) -> dict[str, Path]:
    """Two OCI layouts (tag "1"): base layers shared, the last one each its own."""
    tree = work / "tree"
    imagetools.make_busybox_tree(tree)
    layers = [tar_of(tree, *sorted(tree.iterdir()))]
    for src in SOURCES.values():
        dest = tree / src.relative_to("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-a", str(src), str(dest)], check=True)
        layers.append(tar_of(tree, dest))
    out = {}
    for n in (1, 2):
        image = [*layers, app_layer(n)]
        config = ib.image_config([ib.sha256(t) for t in image], "amd64",
                                 Cmd=["/bin/sh"], Env=["PATH=/bin:/usr/bin"])
        ib.oci_layout(work / f"image{n}", image, ref="1", config=config)
        out[f"app{n}"] = work / f"image{n}"
    return out


class Registry:
    def __init__(self, work: Path):
        self.root = work / "registry"
        self.root.mkdir()
        (self.root / "config.yml").write_text(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: false\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.root}/data\n"
            f"http:\n  addr: {ADDR}\n")
        self.log = self.root / "access.log"
        self.proc = subprocess.Popen(["docker-registry", "serve", str(self.root / "config.yml")],
                                     stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while subprocess.run(["skopeo", "inspect", "--tls-verify=false",
                              f"docker://{ADDR}/none:1"], capture_output=True).stderr.find(
                b"connection refused") >= 0:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit(f"docker-registry did not start: {self.log.read_text()}")
            time.sleep(0.2)

    def push(self, layout: Path, repo: str):
        subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:1",
                        f"docker://{ADDR}/{repo}:1"], check=True)

    def mark(self) -> int:
        return len(self.log.read_text().splitlines())

    def blob_bytes(self, since: int) -> int:
        """Bytes of blobs sent (GET, 200) since a mark."""
        lines = self.log.read_text().splitlines()[since:]
        return sum(int(m.group(1)) for line in lines
                   if (m := re.search(r'"GET /v2/[^ ]+/blobs/sha256:[a-f0-9]{64} HTTP/[0-9.]+" '
                                      r'200 (\d+)', line)))

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def timed(argv: list[str], env=None) -> tuple[float, int]:
    """(seconds, peak RSS in kB) of argv."""
    os.sync()
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", WRAP, *argv], env=env, capture_output=True,
                       text=True, cwd=REPO)
    took = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{p.stdout}{p.stderr}")
    return took, int(p.stderr.strip().splitlines()[-1])


def big_rss(work: Path, registry: Registry, mb: int) -> tuple[str, str, str]:
    """Peak RSS of a pull of an image with one layer of mb MB (random: it does not
    compress), against the layer's size: memory must not grow with it."""
    payload = os.urandom(mb << 20)
    layers = [ib.layer(ib.dir("data"), ib.file("data/blob", payload))]
    del payload
    config = ib.image_config([ib.sha256(t) for t in layers], "amd64", Cmd=["/x"])
    ib.oci_layout(work / "big", layers, ref="1", config=config, compression="gzip")
    del layers
    registry.push(work / "big", "bench/big")
    env = dict(os.environ, NSPAWNCTL_ROOT=str(work / "nsbig"))
    seconds, kb = timed([sys.executable, "-m", "nspawnctl", "pull", "--tls-verify=false",
                         f"{ADDR}/bench/big:1"], env)
    shutil.rmtree(work / "nsbig")
    return (f"peak RSS pulling a {mb} MB layer", f"nspawnctl {kb / 1024:.0f} MB",
            f"({seconds:.1f} s)")


def run(runs: int = 3, big_mb: int = 0) -> list[tuple[str, str, str]]:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise SystemExit(f"bench_registry needs {', '.join(missing)}")
    with tempfile.TemporaryDirectory(prefix="bench-registry-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        images = build_images(work)
        registry = Registry(work)
        try:
            for repo, layout in images.items():
                registry.push(layout, f"bench/{repo}")
            sizes = {repo: sum(p.stat().st_size for p in (layout / "blobs/sha256").iterdir())
                     for repo, layout in images.items()}
            rows = measure(work, registry, runs, sizes)
            if big_mb:
                rows.append(big_rss(work, registry, big_mb))
            return rows
        finally:
            registry.stop()


def measure(work: Path, registry: Registry, runs: int, sizes: dict) -> list:
    one, two = f"{ADDR}/bench/app1:1", f"{ADDR}/bench/app2:1"
    nspawnctl = [sys.executable, "-m", "nspawnctl", "pull", "--tls-verify=false"]
    podman_base = ["podman", "--cgroup-manager=cgroupfs", "--events-backend=file"]
    took: dict[str, list[float]] = {k: [] for k in ("ours", "skopeo+umoci", "podman", "second")}
    rss: dict[str, int] = {}
    wire: dict[str, int] = {}
    driver = "?"
    resets = []
    # Nothing is removed until every run is done (bench_oci.py says why: on ext4 a tree
    # removed just before a run made that run seconds slower, whoever it was); each run's
    # trees start in a block group of their own where chattr +T takes.
    subprocess.run(["chattr", "+T", str(work)], capture_output=True)
    for r in range(runs):
        root = work / f"ns{r}"
        env = dict(os.environ, NSPAWNCTL_ROOT=str(root))
        mark = registry.mark()
        seconds, kb = timed([*nspawnctl, one], env)
        took["ours"].append(seconds)
        rss["ours"] = max(rss.get("ours", 0), kb)
        wire["first"] = registry.blob_bytes(mark)
        mark = registry.mark()
        seconds, kb = timed([*nspawnctl, two], env)
        took["second"].append(seconds)
        wire["second"] = registry.blob_bytes(mark)

        d = work / f"su{r}"
        d.mkdir()
        seconds, kb = timed(["sh", "-ec", f'skopeo copy -q --src-tls-verify=false '
                                          f'"docker://{one}" "oci:{d}/layout:1" && '
                             f'umoci unpack --image "{d}/layout:1" "{d}/bundle"'])
        took["skopeo+umoci"].append(seconds)
        rss["skopeo+umoci"] = max(rss.get("skopeo+umoci", 0), kb)

        p = work / f"pm{r}"
        store = ["--root", str(p / "storage"), "--runroot", str(p / "run")]
        seconds, kb = timed([*podman_base, *store, "pull", "-q", "--tls-verify=false", one])
        took["podman"].append(seconds)
        rss["podman"] = max(rss.get("podman", 0), kb)
        driver = subprocess.run([*podman_base, *store, "info", "--format",
                                 "{{.Store.GraphDriverName}}"], capture_output=True,
                                text=True).stdout.strip() or "?"
        resets.append([*podman_base, *store, "system", "reset", "--force"])
        log(f"run {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in took.items()))
    for argv in resets:
        subprocess.run(argv, capture_output=True)
    med = {k: statistics.median(v) for k, v in took.items()}

    def spread(k):
        v = took[k]
        return f"{min(v):.2f}/{med[k]:.2f}/{max(v):.2f} s"
    mb = sizes["app1"] / 1e6
    return [
        (f"cold pull of a {mb:.0f} MB 4-layer image", f"nspawnctl pull {spread('ours')}",
         f"skopeo copy + umoci unpack {spread('skopeo+umoci')}: "
         f"{med['ours'] / med['skopeo+umoci']:.2f}x"),
        ("", "", f"podman pull ({driver}) {spread('podman')}: "
                 f"{med['ours'] / med['podman']:.2f}x"),
        ("second image sharing 3 of its 4 layers", f"nspawnctl pull {spread('second')}",
         f"the first: {med['second'] / med['ours']:.2f}x; on the wire "
         f"{wire['second'] / 1e6:.1f} MB against {wire['first'] / 1e6:.1f} MB"),
        ("peak RSS (the largest process)", f"nspawnctl {rss['ours'] / 1024:.0f} MB",
         f"skopeo+umoci {rss['skopeo+umoci'] / 1024:.0f} MB, "
         f"podman {rss['podman'] / 1024:.0f} MB"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--big-mb", type=int, default=512, metavar="MB",
                        help="also the peak RSS of a pull of one layer this large (0: not)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_registry needs root (podman's and nspawnctl's stores)")
    rows = run(args.runs, args.big_mb)
    width = max(len(r[0]) for r in rows)
    for figure, ours, theirs in rows:
        print(f"{figure:<{width}}  {ours:<34}  {theirs}")


if __name__ == "__main__":
    main()


# --- inside the systemd host: create from a pulled image against from its archive ----------

IN_WORK = "/var/tmp/nspawnctl-bench-registry"


def create_rows(host, runs: int) -> list:
    """`create --from docker://REF` of an image already pulled against `create --from
    oci-archive:FILE` of the same image (the first image above), interleaved, each run from
    the same start (sync, caches dropped), inside the systemd host (tests/bench/__main__.py).
    The registry is a docker-registry on the host's loopback; with --pull missing (the
    default) the create asks it nothing."""
    from tests.bench.common import check, time_inside
    with tempfile.TemporaryDirectory(prefix="bench-registry-", dir="/var/tmp") as tmp:
        layout = build_images(Path(tmp))["app1"]
        check(host, ["rm", "-rf", IN_WORK])
        check(host, ["mkdir", "-p", IN_WORK])
        # made here, then copied in: skopeo resolves /proc/PID/root to this machine's "/"
        subprocess.run(["skopeo", "copy", "-q", f"oci:{layout}:1",
                        f"oci-archive:{tmp}/app.oci.tar"], check=True)
        shutil.copyfile(f"{tmp}/app.oci.tar", host.path(f"{IN_WORK}/app.oci.tar"))
    Path(host.path(f"{IN_WORK}/config.yml")).write_text(
        "version: 0.1\nlog:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {IN_WORK}/data\n"
        f"http:\n  addr: {ADDR}\n")
    ref = f"{ADDR}/bench/app1:1"
    check(host, ["systemd-run", "--unit=bench-registry", "--collect", "--quiet",
                 "docker-registry", "serve", f"{IN_WORK}/config.yml"])
    try:
        deadline = time.monotonic() + 20
        while host.run(["skopeo", "copy", "-q", "--dest-tls-verify=false",
                        f"oci-archive:{IN_WORK}/app.oci.tar",
                        f"docker://{ref}"]).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("docker-registry did not start in the systemd host")
            time.sleep(0.3)
        check(host, ["nspawnctl", "pull", "--tls-verify=false", ref])
        n = {"i": 0}

        def create(source: str):
            def one():
                n["i"] += 1
                name = f"bench-reg{n['i']}"
                s = time_inside(host, [["nspawnctl", "create", name, "--from", source,
                                        "--network", "none"]], cold=True)
                check(host, ["nspawnctl", "remove", name])
                return s
            return one
        pulled = create(f"docker://{ref}")
        archive = create(f"oci-archive:{IN_WORK}/app.oci.tar")
        from tests.bench.common import medians
        t_pulled, t_archive = medians([pulled, archive], runs)
        return [("create from an image pulled before (aim: ratio <= 1.1)", t_pulled, t_archive,
                 "create --from oci-archive: of the same image")]
    finally:
        host.run(["systemctl", "stop", "bench-registry"])
        host.run(["nspawnctl", "images", "rm", ref])
        host.run(["rm", "-rf", IN_WORK])
