"""Benchmark: the lifecycle, beside machinectl doing the same.

- `nspawnctl start --wait NAME` vs `machinectl start NAME` followed by what a user runs to know
  the container is up: `systemctl -M NAME is-system-running --wait`, retried every 50 ms until
  the container's bus answers (running or degraded), the same condition and cadence as nspawnctl.
- `nspawnctl stop NAME` vs `machinectl poweroff NAME` followed by polling
  `systemctl is-active systemd-nspawn@NAME.service` every 50 ms until inactive.
  Start and stop alternate on one container; a first, untimed boot does the first-boot work.
- `nspawnctl list` with 20 containers: stopped (vs `machinectl list-images`, which lists the
  same trees, and vs the floor of any click program); then with 20 and with 50 running (vs
  `machinectl list`).  Booting them needs more inotify instances than the kernel default
  gives: the runner raises fs.inotify.max_user_instances for the run.
- CLI start-up: `nspawnctl --version` and `--help` vs the floor of any click program (the same
  Python running `import click`), and vs `machinectl --version`.
"""

from .bench_create import ensure_base
from .common import ENV, BenchError, Seconds, check, guarded, log, medians, time_inside

NAME = "bench-life"
UP = ("running", "degraded")
DOWN = ("inactive", "failed")
FLEET = [f"bench-l{i:02d}" for i in range(1, 51)]
STOPPED = 20  # listed stopped, then running; the rest join them for the second running list


def _ensure(host, name):
    if host.run(["test", "-d", f"/var/lib/machines/{name}"]).returncode != 0:
        check(host, ["nspawnctl", "create", name], timeout=1200)


def start_stop(host, runs: int) -> list:
    ensure_base(host)
    _ensure(host, NAME)
    log(f"start/stop: {runs} runs each of nspawnctl and machinectl on one container")
    host.run(["nspawnctl", "stop", NAME], env=ENV)
    check(host, ["nspawnctl", "start", "--wait", NAME])  # first boot: machine-id and such
    check(host, ["nspawnctl", "stop", NAME])
    unit = f"systemd-nspawn@{NAME}.service"
    samples = {k: [] for k in ("ns_start", "ns_stop", "mc_start", "mc_stop")}
    for _ in range(runs):
        samples["ns_start"].append(time_inside(host, [["nspawnctl", "start", "--wait", NAME]]))
        samples["ns_stop"].append(time_inside(host, [["nspawnctl", "stop", NAME]]))
        samples["mc_start"].append(time_inside(
            host, [["machinectl", "start", NAME]],
            until=["systemctl", "-M", NAME, "is-system-running", "--wait"], until_ok=UP))
        samples["mc_stop"].append(time_inside(
            host, [["machinectl", "poweroff", NAME]],
            until=["systemctl", "is-active", unit], until_ok=DOWN))
    s = {k: Seconds(v) for k, v in samples.items()}
    return [("start --wait, until its systemd runs (aim: ratio < 1.1)", s["ns_start"],
             s["mc_start"], "machinectl start + is-system-running --wait"),
            ("stop, until the unit is inactive", s["ns_stop"], s["mc_stop"],
             "machinectl poweroff + poll is-active")]


def network_start(host, runs: int) -> list:
    """start --wait on the default network (bridge, ExecStartPost= giving it its address,
    resolv.conf and hosts) beside the same container with --network none, interleaved."""
    ensure_base(host)
    pair = {"net": "bench-net", "none": "bench-nonet"}
    for key, name in pair.items():
        if host.run(["test", "-d", f"/var/lib/machines/{name}"]).returncode != 0:
            extra = ["--network", "none"] if key == "none" else []
            check(host, ["nspawnctl", "create", name, *extra], timeout=1200)
        host.run(["nspawnctl", "stop", name], env=ENV)
        check(host, ["nspawnctl", "start", "--wait", name])  # first boot work, untimed
        check(host, ["nspawnctl", "stop", name])
    log(f"start --wait: {runs} runs each on the default network and with --network none")
    samples: dict = {k: [] for k in pair}
    for _ in range(runs):
        for key, name in pair.items():
            samples[key].append(time_inside(host, [["nspawnctl", "start", "--wait", name]]))
            check(host, ["nspawnctl", "stop", name])
    for name in pair.values():
        host.run(["nspawnctl", "remove", "--force", name], env=ENV)
    net, none = Seconds(samples["net"]), Seconds(samples["none"])
    return [(f"start --wait, default network (aim: at most 0.1 s more; here "
             f"{float(net) - float(none):+.3f} s)", net, none,
             "nspawnctl start --wait, --network none")]


def _meminfo_mb(host, field="MemAvailable") -> int:
    for line in check(host, ["cat", "/proc/meminfo"]).splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) // 1024
    return 0


def listing(host, runs: int) -> list:
    ensure_base(host)
    first = FLEET[:STOPPED]
    log(f"list: creating {len(first)} containers from the cached base")
    for name in first:
        _ensure(host, name)
    rows = []
    n = len(first)

    def ns_list():
        return time_inside(host, [["nspawnctl", "list"]])

    def mc_images():
        return time_inside(host, [["machinectl", "list-images"]])

    def mc_list():
        return time_inside(host, [["machinectl", "list"]])

    python = interpreter(host)

    def floor():
        return time_inside(host, [[python, "-c", "import click"]])

    t_ns, t_mc, t_floor = medians([ns_list, mc_images, floor], runs)
    rows.append((f"list, {n} containers, all stopped (aim < 0.1 s)", t_ns, t_mc,
                 "machinectl list-images"))
    rows.append((f"list, {n} containers, all stopped (aim: ratio <= 1.2)", t_ns, t_floor,
                 f"{python} -c 'import click'"))

    # ~21 MB each when idle (the density test's figure); ask for a wide margin.
    if _meminfo_mb(host) < 60 * len(FLEET):
        raise BenchError(f"not enough free memory to boot {len(FLEET)} containers")
    for fleet in (first, FLEET):
        for name in fleet:
            _ensure(host, name)
        log(f"list: booting {len(fleet)} containers")
        r = host.run(["nspawnctl", "start", "--wait", *fleet], timeout=1200, env=ENV)
        running = sum(1 for line in check(host, ["machinectl", "list", "--no-legend"])
                      .splitlines() if line.split() and line.split()[0] in FLEET)
        if r.returncode != 0:
            log(f"list: only {running} of {len(fleet)} booted: {r.stderr.strip()[-300:]}")
        t_ns, t_mc = medians([ns_list, mc_list], runs)
        rows.append((f"list, {len(fleet)} containers, {running} running (aim: ratio <= 1.0)",
                     t_ns, t_mc, "machinectl list"))
    log("list: removing the containers")
    host.run(["nspawnctl", "remove", "--force", *FLEET], timeout=1200, env=ENV)
    return rows


def interpreter(host) -> str:
    """The Python that runs nspawnctl (its script's #! line): the floor's interpreter."""
    script = check(host, ["sh", "-c", "command -v nspawnctl"]).strip()
    first = check(host, ["head", "-n1", script]).strip()
    return first[2:].split()[0] if first.startswith("#!") else "python3"


def startup(host, runs: int) -> list:
    """nspawnctl --version and --help beside the floor of any click program: the same Python
    importing click and nothing else (and machinectl --version, a C program, for scale)."""
    python = interpreter(host)
    floor = [python, "-c", "import click"]
    listed = check(host, ["nspawnctl", "list", "--json"])
    if listed.strip() != "[]":
        raise BenchError("start-up is timed with no container on the host; there are some: "
                         f"{listed[:200]}")
    t_ver, t_help, t_list, t_floor, t_mc = medians(
        [lambda: time_inside(host, [["nspawnctl", "--version"]]),
         lambda: time_inside(host, [["nspawnctl", "--help"]]),
         lambda: time_inside(host, [["nspawnctl", "list"]]),
         lambda: time_inside(host, [floor]),
         lambda: time_inside(host, [["machinectl", "--version"]])], runs)
    anchor = f"{python} -c 'import click'"
    return [("CLI start-up, --version (aim: ratio <= 1.2)", t_ver, t_floor, anchor),
            ("CLI start-up, --help (aim: ratio <= 1.2)", t_help, t_floor, anchor),
            ("CLI start-up, list with no container (aim: ratio <= 1.2)", t_list, t_floor,
             anchor),
            ("CLI start-up, --version", t_ver, t_mc, "machinectl --version")]


def run(host, quick: bool = False) -> list:
    runs = 3 if quick else 5
    rows: list = []
    guarded(rows, "CLI start-up (--version)", "machinectl --version",
            lambda: startup(host, 2 * runs))
    guarded(rows, "start --wait / stop", "machinectl", lambda: start_stop(host, runs))
    guarded(rows, "start --wait, default network", "--network none",
            lambda: network_start(host, runs))
    guarded(rows, f"list, {STOPPED} and {len(FLEET)} containers", "machinectl list",
            lambda: listing(host, 2 * runs))
    return rows
