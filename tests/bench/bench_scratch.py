"""Benchmark: the size on disk of containers from scratch, beside the smallest other ways to get
the same program running with nspawnctl.

- busybox (Debian's busybox-static, static): `create --from scratch --add /bin/busybox`, beside
  the default image plus the package (estimated: the default container's tree, measured, plus
  busybox-static's Installed-Size from dpkg, as installing it there would add), and beside the
  matching OCI image: a one-layer image of the same busybox with a few applet links and an
  os-release (as tests/integration/test_oci_containers.py builds it), created with
  `create --from oci-archive:` and measured the same way.
- python3 with its standard library: `create --from scratch --add /usr/bin/python3 --add
  /usr/lib/python3.11`, beside the default image plus the python3 packages (the default
  tree plus the Installed-Size of each python3 package not already in it).

Sizes are `du -s --block-size=1` of the container's tree inside the testbed.  One run each:
sizes do not vary.
"""

from .bench_create import BASE, ensure_base
from .common import ENV, MB, check, guarded, log

PYTHON_PACKAGES = ("python3", "python3.11", "python3-minimal", "python3.11-minimal",
                   "libpython3.11-minimal", "libpython3.11-stdlib", "media-types",
                   "libpython3-stdlib", "libmpdec3", "libsqlite3-0", "libreadline8",
                   "readline-common", "libncursesw6")
OCI_ARCHIVE = "/var/tmp/nspawnctl-bench-busybox-oci.tar"


class MiB(MB):
    def __str__(self):
        return f"{self:.2f} MiB"


def tree_mib(host, name: str) -> MiB:
    out = check(host, ["du", "-s", "--block-size=1", f"/var/lib/machines/{name}"])
    return MiB(int(out.split()[0]) / (1 << 20))


def installed_mib(host, packages, in_tree: str | None = None) -> MiB:
    """dpkg's Installed-Size (KiB) of the packages the testbed has, less those dpkg in tree
    (a container's root) says are installed there already."""
    have = set()
    if in_tree:
        r = host.run(["dpkg-query", f"--admindir={in_tree}/var/lib/dpkg", "-W",
                      "-f=${Package}\\n"], env=ENV)
        have = set(r.stdout.split())
    r = host.run(["dpkg-query", "-W", "-f=${Package} ${Installed-Size}\\n",
                  *[p for p in packages if p not in have]], env=ENV)
    kib = sum(int(size) for line in r.stdout.splitlines()
              if len(parts := line.split()) == 2 and (size := parts[1]).isdigit())
    return MiB(kib / 1024)


def busybox_oci_archive(host) -> str:
    """A one-layer OCI archive of the testbed's busybox, built here and copied in."""
    import tempfile
    from pathlib import Path

    from nspawnctl.sources.oci import parse_platform
    from tests.unit import imagebuild as ib

    busybox = host.path("/bin/busybox").read_bytes()
    applets = ("sh", "echo", "cat", "httpd")
    layers = [ib.layer(
        ib.dir("bin"), ib.file("bin/busybox", busybox, 0o755),
        *[ib.symlink(f"bin/{a}", "busybox") for a in applets],
        ib.dir("etc"), ib.file("etc/os-release", b"ID=busybox\n"),
        ib.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"),
        ib.file("etc/group", b"root:x:0:\n"), ib.dir("tmp", 0o1777))]
    config = ib.image_config([ib.sha256(t) for t in layers], parse_platform(None).architecture,
                             Entrypoint=["/bin/busybox", "httpd", "-f", "-p", "80"], Cmd=None,
                             Env=["PATH=/bin"], WorkingDir="/", User=None, ExposedPorts=None,
                             Volumes=None)
    with tempfile.TemporaryDirectory() as work:
        ib.oci_layout(Path(work) / "bb", layers, config=config)
        archive = ib.tar_tree(Path(work) / "bb", Path(work) / "bb.tar")
        host.path(OCI_ARCHIVE).write_bytes(archive.read_bytes())
    return f"oci-archive:{OCI_ARCHIVE}"


def sizes(host) -> list:
    ensure_base(host)
    default = tree_mib(host, BASE)
    base_tree = f"/var/lib/machines/{BASE}"
    rows: list = []
    for name in ("bench-sbb", "bench-spy", "bench-obb"):
        host.run(["nspawnctl", "remove", "--force", name], env=ENV)

    log("scratch: busybox")
    check(host, ["nspawnctl", "create", "bench-sbb", "--from", "scratch",
                 "--add", "/bin/busybox", "--network", "none"])
    ours = tree_mib(host, "bench-sbb")
    figure = "scratch busybox-static, size on disk"
    rows.append((figure, ours, MiB(default + installed_mib(host, ["busybox-static"])),
                 "default image + busybox-static (dpkg Installed-Size)"))
    log("scratch: the matching OCI image")
    check(host, ["nspawnctl", "create", "bench-obb", "--from", busybox_oci_archive(host),
                 "--network", "none"])
    rows.append((figure, ours, tree_mib(host, "bench-obb"),
                 "busybox OCI image (one layer) created from oci-archive:"))

    log("scratch: python3 and its standard library")
    check(host, ["nspawnctl", "create", "bench-spy", "--from", "scratch",
                 "--add", "/usr/bin/python3", "--add", "/usr/lib/python3.11",
                 "--network", "none"])
    rows.append(("scratch python3 + stdlib, size on disk", tree_mib(host, "bench-spy"),
                 MiB(default + installed_mib(host, PYTHON_PACKAGES, in_tree=base_tree)),
                 "default image + python3 packages (dpkg Installed-Size)"))
    for name in ("bench-sbb", "bench-spy", "bench-obb"):
        host.run(["nspawnctl", "remove", "--force", name], env=ENV)
    host.run(["rm", "-f", OCI_ARCHIVE])
    return rows


def run(host, quick: bool = False) -> list:
    rows: list = []
    guarded(rows, "scratch sizes", "default image + package", lambda: sizes(host))
    return rows
