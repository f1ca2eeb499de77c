"""Benchmark: `nspawnctl export` of the default container beside `tar -c` and
`machinectl export-tar` of the same tree (aim: at most 1.1x).

The same work for every contender: the whole tree read (owners numeric, xattrs kept: export
always writes them, so tar is given --xattrs), one uncompressed tarball written on the same
filesystem, and that file synced before the clock stops (export fsyncs its file before the
rename that makes it appear; tar and machinectl are followed by `sync FILE`).  The container
was started once, so its tree is stored in its UID range, as a used container's is.  Runs
are interleaved; the output file is deleted and everything synced, untimed, before each run.
The oci-archive row adds hashing the layer (sha256) to the same work.
"""

from .common import Seconds, check, guarded, log, time_inside

NAME = "bench-export"
WORK = "/var/lib/machines/.bench-export"  # the machines filesystem, where exports go too
TREE = f"/var/lib/machines/{NAME}"


def _prepare(host):
    if host.run(["test", "-d", TREE]).returncode != 0:
        check(host, ["nspawnctl", "create", NAME], timeout=1200)
    check(host, ["nspawnctl", "start", "--wait", NAME])  # chowned into its UID range
    check(host, ["nspawnctl", "stop", NAME])
    check(host, ["mkdir", "-p", WORK])


def exports(host, runs: int) -> list:
    _prepare(host)
    out = f"{WORK}/out.tar"
    contenders = {
        "nspawnctl": [["nspawnctl", "export", NAME, out]],
        "oci": [["nspawnctl", "export", NAME, out, "--format", "oci-archive"]],
        "tar": [["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", TREE,
                 "-cf", out, "."], ["sync", out]],
        "machinectl": [["machinectl", "export-tar", NAME, out], ["sync", out]],
    }
    log(f"export: {runs} runs each of nspawnctl export, tar -c and machinectl export-tar")
    samples: dict = {k: [] for k in contenders}
    sizes: dict = {}
    for _ in range(runs):
        for key, steps in contenders.items():
            samples[key].append(time_inside(host, steps, before=[["rm", "-f", out], ["sync"]]))
            sizes[key] = int(check(host, ["stat", "-c", "%s", out]))
    check(host, ["rm", "-rf", WORK])
    s = {k: Seconds(v) for k, v in samples.items()}
    mb = {k: f"{v / 1e6:.0f} MB" for k, v in sizes.items()}
    return [
        (f"export of the default container, .tar ({mb['nspawnctl']}; aim: ratio <= 1.1)",
         s["nspawnctl"], s["tar"], f"tar -c --xattrs + sync ({mb['tar']})"),
        ("export of the default container, .tar", s["nspawnctl"], s["machinectl"],
         f"machinectl export-tar + sync ({mb['machinectl']})"),
        (f"export --format oci-archive ({mb['oci']}, layer hashed)", s["oci"], s["tar"],
         "tar -c --xattrs + sync"),
    ]


def run(host, quick: bool = False) -> list:
    rows: list = []
    guarded(rows, "export of the default container", "tar -c",
            lambda: exports(host, 3 if quick else 5))
    host.run(["nspawnctl", "remove", "--force", NAME])
    return rows
