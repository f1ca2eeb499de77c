"""Every benchmark of the project, each beside its anchor, in one run and one table.

    python -m tests.bench [--quick] [--only create,lifecycle,export,oci,health,...]   (as root, from the repo)

create and lifecycle run inside one booted systemd host (tests/testbed.py; this machine when
its PID 1 is systemd), with nspawnctl typed as a user would; the OCI unpacker runs on this
machine.  Figures are medians of n runs; --quick runs the slow cold bootstraps once.
Benchmarks report: nothing passes or fails on time.  A benchmark that breaks is a row saying
so, the others still run, and the run exits 1 after the table (a broken one is no report).
"""

import argparse
import inspect
import os
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests import sysctl, testbed  # noqa: E402
from tests.bench import bench_create, bench_lifecycle, bench_scratch, common  # noqa: E402


def oci_rows(quick: bool) -> list:
    from tests.bench import bench_oci
    kwargs = {"runs": 1 if quick else 3} if "runs" in inspect.signature(bench_oci.run).parameters \
        else {}
    rows = []
    for figure, ours, theirs in bench_oci.run(None, **kwargs):  # the seconds of every run
        rows.append((figure, common.Seconds(ours), common.Seconds(theirs), "umoci unpack"))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="one run of the slow cold bootstraps instead of three")
    parser.add_argument("--only",
                        default="create,lifecycle,oci,network,snapshot,scratch,export,registry,"
                                "stacks,health",
                        help="comma-separated subset of: create, lifecycle, oci, network, "
                             "snapshot, scratch, export, registry, stacks, health (or of "
                             "create only "
                             "warm-create, cold-create or incremental, of lifecycle only "
                             "startup)")
    args = parser.parse_args()
    only = set(args.only.split(","))
    if os.geteuid() != 0:
        print("benchmarks need root (they boot a systemd host and create containers)",
              file=sys.stderr)
        return 1

    t0 = time.monotonic()
    rows: list = []
    info: dict = {}
    try:
        run(args, only, rows, info)
    except Exception as exc:  # noqa: BLE001 - the table of what ran still prints; exit 1
        traceback.print_exc()
        common.FAILED.append(f"the run stopped: {type(exc).__name__}: {exc}")
    info["run took"] = f"{(time.monotonic() - t0) / 60:.1f} min"
    return common.finish(rows, info)


def run(args, only: set, rows: list, info: dict):
    """Every benchmark asked for, its rows into rows and what the machine is into info."""
    if {"create", "lifecycle", "warm-create", "cold-create", "incremental", "startup",
            "snapshot", "scratch", "export", "registry", "stacks", "health"} & only:
        # the list benchmark boots 20 containers: more than the kernel's default allows
        with sysctl.enough_inotify_instances(log=common.log), \
                testbed.open_host(log=common.log) as host:
            testbed.prepare_networks(host)
            info.update(common.machine(host))
            others = [d for d in testbed.RUNS.glob(testbed.RUN_PREFIX + "*")
                      if getattr(host, "run_dir", None) != d]
            info["other testbeds running"] = len(others)
            for argv in (["--version"], ["list"], ["images"], ["create", "--help"]):
                host.run(["nspawnctl", *argv], env=common.ENV)  # fill the bytecode cache
            if "create" in only:
                rows += bench_create.run(host, quick=args.quick)
            if "create" not in only and "warm-create" in only:
                common.guarded(rows, "warm create", "cp -a / machinectl clone",
                               lambda: bench_create.warm_create(host, 5))
            if "create" not in only and "cold-create" in only:  # with warm .deb caches
                common.guarded(rows, "cold create", "mmdebstrap, same packages",
                               lambda: bench_create.cold_create(
                                   host, 1 if args.quick else 3, warm_debs=True, state={}))
            if "create" not in only and "incremental" in only:
                common.guarded(rows, "incremental create", "cold create, same packages",
                               lambda: bench_create.incremental_create(
                                   host, 1 if args.quick else 3))
            if "lifecycle" in only:
                rows += bench_lifecycle.run(host, quick=args.quick)
            elif "startup" in only:
                common.guarded(rows, "CLI start-up", "python -c 'import click'",
                               lambda: bench_lifecycle.startup(host, 10))
            if "snapshot" in only:
                from tests.bench import bench_snapshot
                rows += bench_snapshot.run(host, quick=args.quick)
            if "scratch" in only:
                rows += bench_scratch.run(host, quick=args.quick)
            if "export" in only:
                from tests.bench import bench_export
                rows += bench_export.run(host, quick=args.quick)
            if "registry" in only:
                from tests.bench import bench_registry
                common.guarded(rows, "create from a pulled image",
                               "create --from oci-archive:",
                               lambda: bench_registry.create_rows(host, 3 if args.quick else 5))
            if "stacks" in only:
                from tests.bench import bench_stacks
                rows += bench_stacks.run(host, quick=args.quick)
            if "health" in only:
                from tests.bench import bench_health
                rows += bench_health.run(host, quick=args.quick)
    else:
        info.update(common.machine())
    if "oci" in only:
        common.log("OCI unpack vs umoci (on this machine)")
        common.guarded(rows, "unpack an OCI image", "umoci unpack",
                       lambda: oci_rows(args.quick))
    if "network" in only:
        common.log("published ports vs straight routing and socat (network namespaces here)")
        from tests.bench import bench_network
        common.guarded(rows, "TCP through a published port", "socat",
                       lambda: bench_network.run(args.quick))


if __name__ == "__main__":
    sys.exit(main())
