"""Benchmark: the CPU that health checks cost (issue 31), beside what the issue measures it by.

- Steady state: 50 running containers, each with `--health-cmd true` every 30 s (the default
  interval), their checks run as users get them: by the scheduler, nspawnctl-health.service
  (`nspawnctl health-scheduler`), which their units want.  The figure
  is the CPU of the whole systemd host (the usage_usec of its cgroup's cpu.stat: PID 1
  starting the scheduler, its forks that enter the containers, D-Bus, machined, journald,
  the check commands in the containers; nothing else of this machine) over windows of several
  intervals WITH the checks (A), less the same over as long windows with the same 50
  containers running and the scheduler stopped (B), per second of wall time: in % of one
  core, against the issue's aim, under 1 %.  The windows alternate A B B A ..., so the
  machine's other work (other sessions share it) and any drift hit both kinds alike; each
  A is paired with the B beside it.  A scheduler that starts while the containers run spreads
  their first checks over one interval (as containers started at different times spread
  them), so a window holds its share of checks, not a burst or none; the checks that
  finished in a window are counted by the scheduler (its STATUS=, `systemctl status`: "N
  checks run"), and a B window must have none.  Rows: the cost in %,
  the cost per check (A less B over the checks counted) against the aim's budget (1 % of a
  core over 50 checks per 30 s: 6 ms a check), where it went (per cgroup), the background,
  and what the rest of the machine ran meanwhile (/proc/stat less the systemd host's: the
  noise, which makes the same work take more CPU time, not a term of the difference).
- One check: `nspawnctl health NAME` (the check now, a process of its own) beside
  `nspawnctl exec NAME true`, interleaved, while the scheduler is stopped: wall time and CPU
  (the systemd host's
  cgroup, as above: what the command made others do counts).  They are run by a timer that
  runs inside the systemd host as a service of its own (`systemd-run --pipe`), so that the
  commands are in that cgroup (what `nsenter` starts is not); each figure includes that
  timer's start of a process (a few ms, alike for all).
- Against podman 4.3 (Debian 12's), on the machine around the systemd host (the host has no
  podman): `podman healthcheck run CTR` and `podman exec CTR true` on a busybox container
  imported from a local tarball (no registry) with `--health-cmd true`, interleaved round by
  round with the nspawnctl commands; CPU: the cgroup (v2) the podman commands, their conmon
  and the container all run in.  Here podman needs `--runtime runc` (crun 1.8 refuses this
  machine's hybrid cgroups: "cgroups in hybrid mode not supported, drop all controllers from
  cgroupv2") and `--ulimit nofile=1024:1024 --ulimit nproc=1024:1024` (its defaults are above
  the hard limits here, and raising one needs CAP_SYS_RESOURCE); `--network none`, so that it
  makes no bridge or firewall rule.  Where podman cannot run a container, the row says why.
  Podman's own schedule (a systemd timer per container) cannot run there, as there is no
  systemd: only its one check is compared.  A check the scheduler runs is no process of
  nspawnctl's own (one posix_spawn of the helper that enters the container): its cost is the
  steady state's per-check figure.

The containers are scratch busybox trees (`/bin/sh` and `/bin/true` as links of busybox, a
sleep as their command, network none): the figures are the checks' costs, not a container's.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests import imagetools

from .common import BenchError, Percent, Seconds, check, guarded, log

FLEET = [f"bench-hc{i:02d}" for i in range(1, 51)]
INTERVAL = 30  # the default --health-interval, as the issue says
CHECK = "true"
SCHEDULER = "nspawnctl-health.service"
AIM = 1.0  # % of one core, the issue's
CGROUP = "nspawnctl-bench-health"  # the podman side's cgroup, on the machine around
PODMAN_CTR = "nspawnctl-bench-hc"

# Where a window's CPU went: cgroups of the systemd host, by what runs in them.
# nspawnctl: the scheduler (its forks included, until they join a container's cgroups);
# containers: the check commands in them.
PARTS = (
    ("nspawnctl", (f"system.slice/{SCHEDULER}",)),
    ("PID 1", ("init.scope",)),
    ("containers", ("machine.slice",)),
    ("dbus+machined+journald", ("system.slice/dbus.service",
                                "system.slice/systemd-machined.service",
                                "system.slice/systemd-journald.service")),
)

# Prints the CPU time (usage_usec) of the cgroup tree at argv[1] ("": its root) and of the
# parts a window is broken into, with the clocks, as JSON.
SNAPSHOT = r"""
import json, os, sys, time
root = sys.argv[1]
def usage(d):
    try:
        with open(os.path.join(root, d, "cpu.stat")) as f:
            for line in f:
                key, value = line.split()
                if key == "usage_usec":
                    return int(value)
    except OSError:
        return None
out = {d: usage(d) for d in ("", "init.scope", "machine.slice")}
system = os.path.join(root, "system.slice")
for d in (os.listdir(system) if os.path.isdir(system) else []):
    if os.path.isdir(os.path.join(system, d)):
        out["system.slice/" + d] = usage("system.slice/" + d)
print(json.dumps({"usage": {k: v for k, v in out.items() if v is not None},
                  "monotonic": time.monotonic(), "realtime": time.time()}))
"""

# Runs each command of argv[1]'s spec once, in turn, and prints the wall seconds of each and
# the CPU seconds its cgroup (spec["stat"], a cpu.stat) used meanwhile and in `settle`
# seconds after (what it left others to do: a unit's cleanup, the journal's writes).  With
# spec["join"], it first moves itself into that cgroup, so what it runs is counted there.
CPU_TIMER = r"""
import json, os, subprocess, sys, time
spec = json.loads(sys.argv[1])
if spec.get("join"):
    with open(os.path.join(spec["join"], "cgroup.procs"), "w") as f:
        f.write(str(os.getpid()))
def usage():
    with open(spec["stat"]) as f:
        for line in f:
            key, value = line.split()
            if key == "usage_usec":
                return int(value)
out = {}
for key, argv in spec["commands"]:
    c0 = usage()
    t0 = time.perf_counter()
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    time.sleep(spec["settle"])
    c1 = usage()
    if p.returncode != 0:
        print(json.dumps({"error": f"{' '.join(argv)} exited {p.returncode}",
                          "tail": p.stdout[-1500:].decode(errors="replace")}))
        sys.exit(0)
    out[key] = {"wall": wall, "cpu": (c1 - c0) / 1e6}
print(json.dumps(out))
"""
SETTLE = 0.3


# --- the steady state ------------------------------------------------------------------------

@dataclass
class Window:
    """A stretch of wall time: kind A with the checks running, B with the scheduler stopped."""
    kind: str
    wall: float  # seconds
    usage: dict = field(default_factory=dict)  # cgroup ("" the whole host) -> CPU µs in it
    checks: int = 0  # checks that finished in it
    others: float = 0.0  # what the rest of the machine ran meanwhile, in % of one core


def steady_figures(windows: list[Window], containers: int, interval: float) -> dict:
    """The figures of windows taken in pairs (one A, one B each, side by side): per pair,
    the checks' cost in % of one core (A's CPU per second less B's), per check (A's CPU less
    B's rate over A's wall, over A's checks), the background (B), and the cost per part.
    A figure that cannot be true is a BenchError, not a row: a B window with checks, an A
    window with far from its share of checks, checks that cost nothing or less."""
    if len(windows) % 2 or not windows:
        raise BenchError(f"{len(windows)} windows: they come in pairs")
    out: dict = {"cost": [], "per_check": [], "background": [], "checks": [],
                 "others": [w.others for w in windows],
                 "parts": {name: [] for name, _ in PARTS} | {"other": []}}
    for i in range(0, len(windows), 2):
        pair = {w.kind: w for w in windows[i:i + 2]}
        if set(pair) != {"A", "B"}:
            raise BenchError(f"windows {i} and {i + 1} are not one A and one B")
        a, b = pair["A"], pair["B"]
        if b.checks:
            raise BenchError(f"{b.checks} checks ran while the scheduler was stopped")
        share = containers * a.wall / interval
        if not 0.8 * share <= a.checks <= 1.1 * share:
            raise BenchError(f"{a.checks} checks in {a.wall:.0f} s, not about {share:.0f}: "
                             "the scheduler does not run them as set")

        def rate(w: Window, keys) -> float:  # CPU µs per second of wall
            return sum(w.usage.get(k, 0) for k in keys) / w.wall

        cost = rate(a, [""]) - rate(b, [""])
        if cost <= 0:
            raise BenchError(f"the checks cost {cost / 1e4:.3f} % of a core: cannot be true")
        out["cost"].append(cost / 1e4)  # µs/s -> % of one core
        out["per_check"].append(cost * a.wall / a.checks / 1e6)
        out["background"].append(rate(b, [""]) / 1e4)
        out["checks"].append(a.checks)
        named = 0.0
        for name, keys in PARTS:
            part = rate(a, keys) - rate(b, keys)
            named += part
            out["parts"][name].append(part / 1e4)
        out["parts"]["other"].append((cost - named) / 1e4)
    return out


def cgroup_root(host) -> str:
    """The systemd host's cgroup v2 tree: the unified one beside v1 controllers (hybrid, as in
    the testbed here), else the only one; in the testbed, its root is the testbed's cgroup."""
    for root in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        if host.run(["test", "-e", f"{root}/cpu.stat"]).returncode == 0:
            return root
    raise BenchError("the systemd host has no cgroup v2 cpu.stat to read")


def snapshot(host, root: str) -> dict:
    return json.loads(check(host, ["python3", "-c", SNAPSHOT, root]))


def make_fleet(host):
    """The 50 containers, made and running (untimed); the scheduler stopped."""
    host.run(["nspawnctl", "remove", "--force", *FLEET], timeout=1200)
    log(f"health: making {len(FLEET)} containers with --health-cmd {CHECK} every {INTERVAL} s")
    check(host, ["sh", "-c", 'for n in "$@"; do nspawnctl create "$n" --from scratch '
                 "--add /bin/busybox --add /bin/busybox:/bin/sh --add /bin/busybox:/bin/true "
                 "--cmd '/bin/busybox sleep 1000000' --network none "
                 f"--health-cmd {CHECK} --health-interval {INTERVAL}s >/dev/null || exit 1; "
                 "done", "sh", *FLEET], timeout=1200)
    check(host, ["nspawnctl", "start", *FLEET], timeout=1200)
    out = check(host, ["machinectl", "list", "--no-legend"])
    running = {line.split()[0] for line in out.splitlines() if line.split()} & set(FLEET)
    if len(running) != len(FLEET):
        raise BenchError(f"only {len(running)} of {len(FLEET)} containers run")
    stop_scheduler(host)


def stop_scheduler(host):
    """The scheduler stopped (it ends the checks it runs as it stops)."""
    check(host, ["systemctl", "stop", SCHEDULER])


def start_scheduler(host):
    """The scheduler started: the fleet runs already, so their first checks spread over one
    interval (ops/health.py)."""
    check(host, ["systemctl", "start", SCHEDULER])


def checks_run(host) -> int:
    """The checks the scheduler ran since it started (its STATUS=: "checking N containers;
    M checks run"); 0 while it is stopped.  It sends its status every 10 s, and at once on
    SIGUSR1: asked, then read once it changed, or after a second when it stays the same (no
    check ran since it was last sent)."""
    before = _status(host)
    if not before:
        return 0
    check(host, ["systemctl", "kill", "-s", "USR1", SCHEDULER])
    text, asked = before, time.monotonic()
    while text == before and time.monotonic() < asked + 1.0:
        time.sleep(0.05)
        text = _status(host)
    words = text.split()
    if len(words) < 5 or not words[3].isdigit():
        raise BenchError(f"the scheduler's status is not what the bench reads: {text!r}")
    return int(words[3])


def _status(host) -> str:
    return check(host, ["systemctl", "show", "-p", "StatusText", "--value", SCHEDULER]).strip()


def passed(host):
    """Every container's last check passed (`list --json`): a check that cannot run ends
    early, and its cost would not be a check's."""
    shown = json.loads(check(host, ["nspawnctl", "list", "--json"]))
    rows = {row["name"]: row.get("health") or {} for row in shown if row["name"] in FLEET}
    failed = sorted(name for name in FLEET if rows.get(name, {}).get("state") != "healthy"
                    or rows[name].get("last_exit_status") != 0)
    if failed:
        said = rows.get(failed[0], {}).get("last_output", "")
        raise BenchError(f"{len(failed)} of {len(FLEET)} containers' checks did not pass "
                         f"({failed[0]}: {said!r})")


def machine_busy() -> tuple[float, float]:
    """This kernel's CPU seconds busy (not idle or waiting for I/O) and stolen by the
    hypervisor, all CPUs, since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / hz, ticks[7] / hz


def window(host, root: str, kind: str, seconds: float) -> Window:
    busy0, steal0 = machine_busy()
    ran0 = checks_run(host)
    first = snapshot(host, root)
    time.sleep(seconds)
    last = snapshot(host, root)
    ran1 = checks_run(host)
    busy1, steal1 = machine_busy()
    usage = {k: v - first["usage"].get(k, 0) for k, v in last["usage"].items()}
    wall = last["monotonic"] - first["monotonic"]
    ours = usage.get("", 0) / wall / 1e4
    others = max(0.0, (busy1 - busy0) / wall * 100 - ours)
    w = Window(kind, wall, usage, ran1 - ran0, others)
    log(f"  window {kind}: {w.wall:.1f} s, {w.checks} checks, the systemd host {ours:.2f} % "
        f"of one core; the rest of the machine {others:.1f} %, stolen "
        f"{(steal1 - steal0) / wall * 100:.1f} %")
    return w


def steady(host, pairs: int, seconds: float) -> list:
    root = cgroup_root(host)
    order = ("ABBA" * pairs)[:2 * pairs]
    log(f"health: {len(order)} windows of {seconds:.0f} s, {order}, checks on (A) and off (B)")
    windows: list[Window] = []
    running = False
    for kind in order:
        if kind == "A" and not running:
            start_scheduler(host)
        elif kind == "B" and running:
            stop_scheduler(host)
        running = kind == "A"
        windows.append(window(host, root, kind, seconds))
    passed(host)
    stop_scheduler(host)
    f = steady_figures(windows, len(FLEET), INTERVAL)
    parts = ", ".join(f"{name} {Percent(v):.2f}" for name, v in f["parts"].items())
    return [
        (f"health checks, {len(FLEET)} containers every {INTERVAL} s: CPU in % of one core "
         f"(aim: under {AIM:g} %)", Percent(f["cost"]), Percent([AIM]),
         f"{AIM:g} % of one core"),
        (f"health checks, {len(FLEET)} containers: CPU per check", Seconds(f["per_check"]),
         Seconds([AIM / 100 * INTERVAL / len(FLEET)]),
         f"the aim's budget: {AIM:g} % of a core over {len(FLEET)} checks per {INTERVAL} s"),
        ("health checks: where their CPU went, % of one core", parts, "-",
         f"medians, A less B, by cgroup; {min(f['checks'])}-{max(f['checks'])} checks in "
         f"each {seconds:.0f} s A window"),
        (f"background: the {len(FLEET)} containers, scheduler stopped, % of one core",
         Percent(f["background"]), "-", f"{len(f['background'])} B windows of {seconds:.0f} s"),
        ("the rest of the machine during the windows, % of one core",
         Percent(f["others"]), "-", "other sessions' work: the noise (2 cores: 200 %)"),
    ]


# --- one check -----------------------------------------------------------------------------

def in_host_timer(host, root: str, commands: list) -> dict:
    """One round of commands, timed by CPU_TIMER run as a service of the systemd host."""
    spec = {"stat": f"{root}/cpu.stat", "commands": commands, "settle": SETTLE}
    r = host.run(["systemd-run", "--quiet", "--wait", "--pipe", "--collect", "python3", "-c",
                  CPU_TIMER, json.dumps(spec)], input="", timeout=600)
    return _timer_result(r.stdout, str(r))


def _timer_result(stdout: str, said: str) -> dict:
    try:
        out = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise BenchError(f"timer failed: {said}") from None
    if "error" in out:
        raise BenchError(f"{out['error']}\n{out.get('tail', '')}")
    return out


class Podman:
    """A running busybox container of podman's with --health-cmd, on the machine around the
    systemd host, in a cgroup (v2) of its own with the podman commands timed: their CPU, the
    conmon that podman starts and the container's are all in it."""

    def __init__(self):
        self.work = Path(tempfile.mkdtemp(prefix="nspawnctl-bench-podman-", dir="/var/tmp"))
        self.podman = imagetools.Podman(self.work)
        self.cgroup: Path | None = None

    def start(self) -> str | None:
        """None when the container runs and a check of it passes, else why not (one line)."""
        if shutil.which("podman") is None:
            return "podman is not installed"
        unified = Path("/sys/fs/cgroup/unified")
        base = unified if (unified / "cgroup.procs").exists() else Path("/sys/fs/cgroup")
        if not (base / "cpu.stat").exists():
            return f"no cgroup v2 tree with cpu.stat at {base} to count podman's CPU in"
        self.cgroup = base / CGROUP
        self.cgroup.mkdir(exist_ok=True)
        tree = self.work / "tree"
        (tree / "bin").mkdir(parents=True)
        shutil.copy2(imagetools.BUSYBOX, tree / "bin/busybox")
        for applet in ("sh", "true", "sleep"):
            os.symlink("busybox", tree / "bin" / applet)
        try:
            self.podman.import_tree(tree, "localhost/nspawnctl-bench-hc:1",
                                    cmd='["/bin/sleep", "1000000"]')
        except subprocess.CalledProcessError as e:
            return f"podman import failed: {_last_line(e.stderr)}"
        failures = []
        # podman's default runtime first; then runc, which runs where crun refuses (above)
        for runtime in [None] + (["runc"] if shutil.which("runc") else []):
            self.podman = imagetools.Podman(self.work, runtime)
            p = self._run("run", "-d", "--name", PODMAN_CTR, "--network", "none",
                          f"--cgroup-parent=/{CGROUP}", "--ulimit", "nofile=1024:1024",
                          "--ulimit", "nproc=1024:1024", "--health-cmd", CHECK,
                          "--health-interval", f"{INTERVAL}s", "localhost/nspawnctl-bench-hc:1")
            if p.returncode == 0:
                p = self._run("healthcheck", "run", PODMAN_CTR)
                if p.returncode == 0:
                    return None
            failures.append(f"{runtime or 'its default runtime'}: {_last_line(p.stderr)}")
            self._run("rm", "-f", "-t", "0", PODMAN_CTR)
        return "; ".join(failures)

    def _run(self, *args) -> subprocess.CompletedProcess:
        """A podman command in the bench's cgroup (so the conmon it starts is counted)."""
        cgroup = self.cgroup

        def join():
            if cgroup is not None:
                (cgroup / "cgroup.procs").write_text(str(os.getpid()))

        return subprocess.run(self.podman.argv(*args), capture_output=True, text=True,
                              timeout=120, preexec_fn=join)

    def timed(self, commands: list) -> dict:
        assert self.cgroup is not None
        spec = {"stat": str(self.cgroup / "cpu.stat"), "join": str(self.cgroup),
                "commands": [(key, self.podman.argv(*args)) for key, args in commands],
                "settle": SETTLE}
        p = subprocess.run(["python3", "-c", CPU_TIMER, json.dumps(spec)],
                           capture_output=True, text=True, timeout=600)
        return _timer_result(p.stdout, p.stderr)

    def close(self):
        if shutil.which("podman") is not None:
            self._run("rm", "-f", "-t", "0", PODMAN_CTR)
            self.podman.cleanup()
        shutil.rmtree(self.work, ignore_errors=True)
        # podman's cgroupfs manager made our cgroup in every v1 hierarchy too
        for cgroup in {self.cgroup, *Path("/sys/fs/cgroup").glob(f"*/{CGROUP}")} - {None}:
            assert cgroup is not None
            if not cgroup.is_dir():
                continue
            for d in [*sorted((p for p in cgroup.rglob("*") if p.is_dir()), reverse=True),
                      cgroup]:
                try:
                    d.rmdir()
                except OSError as e:
                    log(f"health: could not remove cgroup {d}: {e}")


def _last_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[-1][:300] if lines else "no message"


def one_check(host, runs: int) -> list:
    root = cgroup_root(host)
    name = FLEET[0]
    ours = [("health", ["nspawnctl", "health", name]),
            ("exec", ["nspawnctl", "exec", name, CHECK])]
    theirs = [("healthcheck", ["healthcheck", "run", PODMAN_CTR]),
              ("exec", ["exec", PODMAN_CTR, CHECK])]
    podman = Podman()
    try:
        why_not = podman.start()
        if why_not:
            log(f"health: podman cannot run a container here: {why_not}")
        log(f"health: one check, {runs} rounds (2 more first, not counted)")
        samples: dict = {}
        for round_ in range(runs + 2):
            results = {f"ours {k}": v for k, v in in_host_timer(host, root, ours).items()}
            if not why_not:
                results |= {f"podman {k}": v for k, v in podman.timed(theirs).items()}
            if round_ >= 2:
                for key, v in results.items():
                    samples.setdefault(key, {"wall": [], "cpu": []})
                    samples[key]["wall"].append(v["wall"])
                    samples[key]["cpu"].append(v["cpu"])
    finally:
        podman.close()

    def s(key, what):
        return Seconds(samples[key][what])

    health, exec_ = f"nspawnctl health {name}", f"nspawnctl exec {name} {CHECK}"
    rows = [(f"one check, wall: {health}", s("ours health", "wall"), s("ours exec", "wall"),
             exec_),
            (f"one check, CPU of the systemd host: {health}", s("ours health", "cpu"),
             s("ours exec", "cpu"), exec_)]
    if why_not:
        rows.append(("one check, against podman healthcheck run", "not measured", "-",
                     f"podman cannot run a container here: {why_not}"[:200]))
        return rows
    rows += [(f"one check, wall: {health}", s("ours health", "wall"),
              s("podman healthcheck", "wall"), f"podman healthcheck run CTR ({CHECK})"),
             (f"one check, CPU: {health}", s("ours health", "cpu"),
              s("podman healthcheck", "cpu"), f"podman healthcheck run CTR ({CHECK})"),
             (f"exec, CPU: {exec_}", s("ours exec", "cpu"), s("podman exec", "cpu"),
              f"podman exec CTR {CHECK}")]
    return rows


def remove_fleet(host):
    log("health: removing the containers")
    host.run(["nspawnctl", "remove", "--force", *FLEET], timeout=1200)


def run(host, quick: bool = False) -> list:
    rows: list = []
    try:
        guarded(rows, f"health checks, {len(FLEET)} containers", "setup",
                lambda: make_fleet(host) or [])
        if rows:  # the only row setup adds says it failed: nothing to measure
            return rows
        guarded(rows, "one check", "nspawnctl exec NAME true",
                lambda: one_check(host, 5 if quick else 10))
        guarded(rows, f"health checks, {len(FLEET)} containers every {INTERVAL} s",
                f"{AIM:g} % of one core",
                lambda: steady(host, 2 if quick else 4, 2 * INTERVAL if quick else 3 * INTERVAL))
    finally:
        remove_fleet(host)
    return rows
