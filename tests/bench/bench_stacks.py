"""Benchmark: `nspawnctl apply -f FILE` (stacks, issue 29), beside what a user would run instead.

- No-op apply (the host already matches the file) of a stack of 10, 25 and 50 running
  containers (one stack, grown between the sizes, so the host holds exactly the stack),
  against `apply --dry-run` of the same file (the plan alone: what a no-op apply must cost at
  least; three times the runs, as both take a tenth of a second) and against N `nspawnctl
  status NAME` calls, one per container (the issue's fallback anchor: neither `docker
  compose` nor `podman-compose` can run in the testbed, see below).
  The per-container cost is the slope between 10 and 50.
- Creating a 20-container stack: apply of the file on a host without them, against the same
  20 containers made by hand: 20 `nspawnctl create` then 20 `nspawnctl start` (every create
  first, so no start waits on a create), and 20 `nspawnctl create --start` (the fewest
  commands).  Everything is removed between rounds, untimed.  apply runs the same operations
  in one process, so it saves the start-up of 39 (or 19) Python processes: about 0.1 s each.
  And, for what overlapping starts would give (apply takes its steps one by one): the 20
  creates, then one `nspawnctl start --no-wait` of all 20, polled until every unit is active.
- Whether apply uses both cores: its CPU time (user + sys, with what it waited for), and that
  of every process of the testbed (systemd and systemd-nspawn starting the units too; the
  kernel's own threads are not in it), over its wall time (2.00: both CPUs busy all along).

The containers are scratch busybox trees (`from: scratch`, `add: [/bin/busybox]`, a sleep as
their command, network none): made in a fraction of a second, so the figures are apply's own
costs and not an image's.  docker compose and podman-compose are no row: the testbed has
neither (nor docker or podman); on the machine around it podman 4.3 is installed but cannot
start a container (crun: setrlimit RLIMIT_NPROC: Operation not permitted), docker is a client
with no daemon and no compose plugin, and podman-compose is not installed.
"""

import json

from .common import ENV, BenchError, check, guarded, log, medians, time_inside

DIR = "/root/bench-stacks"
NOOP_STACK = "bench-noop"
CREATE_STACK = "bench-make"
SIZES = (10, 25, 50)
CREATED = 20
CMD = "/bin/busybox sleep 1000000"

# Runs argv inside the testbed, then prints its wall seconds, the CPU seconds (user + sys) of
# argv and everything it waited for, and those of every process of the testbed (systemd,
# machined and systemd-nspawn starting the units too): the times of the processes alive,
# with those of the children they reaped, after less before.  Not its cgroup's cpuacct: the
# testbed's systemd-nspawn runs in the cgroup of whoever started it, which here is this whole
# machine's, other work included.
CPU_TIMER = r"""
import json, os, resource, subprocess, sys, time
def testbed_cpu():
    total = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # gone meanwhile: its parent has its times
            total += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")
c0 = testbed_cpu()
t0 = time.perf_counter()
p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
wall = time.perf_counter() - t0
c1 = testbed_cpu()
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": p.returncode, "wall": wall, "cpu": r.ru_utime + r.ru_stime,
                  "testbed": c1 - c0, "err": p.stderr[-500:]}))
"""


def names(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i:02d}" for i in range(1, n + 1)]


def stack_text(stack: str, containers: list[str]) -> str:
    body = "".join(f"  {name}:\n    from: scratch\n    add: [/bin/busybox]\n"
                   f"    cmd: {CMD}\n    network: none\n" for name in containers)
    return f"name: {stack}\ncontainers:\n{body}"


def write_stack(host, stack: str, containers: list[str]) -> str:
    path = f"{DIR}/{stack}-{len(containers)}.yaml"
    check(host, ["mkdir", "-p", DIR])
    host.path(path).write_text(stack_text(stack, containers))
    return path


def prune(host, stack: str):
    """The stack emptied with --prune: its containers go (untimed)."""
    r = host.run(["nspawnctl", "apply", "-f", "-", "--prune"], input=f"name: {stack}\n",
                 timeout=1200, env=ENV)
    if r.returncode != 0:
        raise BenchError(f"pruning stack {stack} failed:\n{r}")


def _running(host, wanted: list[str]) -> int:
    out = check(host, ["machinectl", "list", "--no-legend"])
    return len({line.split()[0] for line in out.splitlines() if line.split()} & set(wanted))


def noop(host, runs: int) -> list:
    """No-op apply of 10, 25 and 50 containers beside --dry-run and N status calls."""
    fleet = names("bsn", max(SIZES))
    prune(host, NOOP_STACK)
    rows: list = []
    noops = {}
    for n in SIZES:
        path = write_stack(host, NOOP_STACK, fleet[:n])
        log(f"stacks: applying {n} containers (untimed)")
        check(host, ["nspawnctl", "apply", "-f", path], timeout=1200)
        if _running(host, fleet[:n]) != n:
            raise BenchError(f"only {_running(host, fleet[:n])} of {n} containers run")
        # the file matches: the plan is empty (exit 0), or the figure is no no-op
        check(host, ["nspawnctl", "apply", "-f", path, "--dry-run"])

        def apply_noop(path=path):
            return time_inside(host, [["nspawnctl", "apply", "-f", path]])

        def dry_run(path=path):
            return time_inside(host, [["nspawnctl", "apply", "-f", path, "--dry-run"]])

        def statuses(n=n):
            return time_inside(host, [["nspawnctl", "status", name] for name in fleet[:n]])

        # apply and its plan alone take a tenth of a second: three times the runs, so that
        # a busy moment of the machine does not decide their ratio
        t_apply, t_dry = medians([apply_noop, dry_run], 3 * runs)
        t_status, = medians([statuses], runs)
        noops[n] = t_apply
        aim = " (aim: at most 2 s)" if n == 50 else ""
        rows.append((f"apply, no-op, {n} running containers{aim}", t_apply, t_dry,
                     "apply --dry-run, same file"))
        rows.append((f"apply, no-op, {n} running containers", t_apply, t_status,
                     f"{n} x nspawnctl status NAME"))
    lo, hi = min(SIZES), max(SIZES)
    slope = (float(noops[hi]) - float(noops[lo])) / (hi - lo)
    # the minima too: the least disturbed runs, where a busy machine hides a slope this small
    least = (min(noops[hi].samples) - min(noops[lo].samples)) / (hi - lo)
    rows.append((f"apply, no-op: cost per container ({lo} to {hi})",
                 f"{slope * 1000:.1f} ms", "-",
                 f"slope of the medians; of the minima: {least * 1000:.1f} ms"))
    log("stacks: removing the no-op stack")
    prune(host, NOOP_STACK)
    return rows


def creating(host, runs: int) -> list:
    """apply of a 20-container stack on a host without them, against the same containers
    made by hand: 20 create then 20 start (the brief's anchor), and 20 `create --start` (the
    fewest commands); and apply's CPU time over its wall time."""
    fleet = names("bsc", CREATED)
    path = write_stack(host, CREATE_STACK, fleet)
    prune(host, CREATE_STACK)
    host.run(["nspawnctl", "remove", "--force", *fleet], timeout=1200, env=ENV)
    create = [["nspawnctl", "create", name, "--from", "scratch", "--add", "/bin/busybox",
               "--cmd", CMD, "--network", "none"] for name in fleet]
    by_hand = create + [["nspawnctl", "start", name] for name in fleet]
    create_start = [[*argv, "--start"] for argv in create]
    # what an apply whose starts overlapped could reach: every start asked at once, then
    # waited for until every unit is active (what `start` waits for, with machined knowing
    # the container, which it does before the unit is active)
    units = " ".join(f"systemd-nspawn@{name}.service" for name in fleet)
    count = ["sh", "-c", f"systemctl is-active {units} | grep -cx active || true"]
    cpu: dict[str, list[float]] = {"apply": [], "testbed": []}

    def made(seconds: float, who: str) -> float:
        """The containers all run (or the figure is of less work), then go, untimed."""
        if _running(host, fleet) != CREATED:
            raise BenchError(f"{who} left containers not running")
        prune(host, CREATE_STACK)
        host.run(["nspawnctl", "remove", "--force", *fleet], timeout=1200, env=ENV)
        return seconds

    def apply_file():
        return made(time_inside(host, [["nspawnctl", "apply", "-f", path]],
                                before=[["sync"]]), "apply")

    def hand():
        return made(time_inside(host, by_hand, before=[["sync"]]), "create + start")

    def hand_start():
        return made(time_inside(host, create_start, before=[["sync"]]), "create --start")

    def all_at_once():
        return made(time_inside(host, [*create, ["nspawnctl", "start", "--no-wait", *fleet]],
                                before=[["sync"]], until=count, until_ok=[str(CREATED)],
                                interval=0.01), "start --no-wait")

    def apply_cpu():
        check(host, ["sync"])
        r = host.run(["python3", "-c", CPU_TIMER, "nspawnctl", "apply", "-f", path],
                     timeout=1200, env=ENV)
        out = json.loads(r.stdout.strip().splitlines()[-1])
        if out["rc"] != 0:
            raise BenchError(f"apply failed: {out['err']}")
        cpu["apply"].append(out["cpu"] / out["wall"])
        cpu["testbed"].append(out["testbed"] / out["wall"])
        return made(out["wall"], "apply")

    log(f"stacks: creating {CREATED} containers, {runs} rounds each way")
    t_apply, t_hand, t_start, t_once = medians([apply_file, hand, hand_start, all_at_once],
                                               runs)
    medians([apply_cpu], max(2, runs // 2))
    rows = [(f"apply, creating {CREATED} containers (aim: ratio <= 1.1)", t_apply, t_hand,
             f"{CREATED} x create + {CREATED} x start, by hand"),
            (f"apply, creating {CREATED} containers", t_apply, t_start,
             f"{CREATED} x create --start, by hand"),
            (f"apply, creating {CREATED} containers", t_apply, t_once,
             f"{CREATED} x create, one start --no-wait of all, until all run")]
    for key, what in (("apply", "apply and what it waited for"),
                      ("testbed", "every process of the systemd host")):
        v = sorted(cpu[key])
        if v:
            rows.append((f"apply, creating {CREATED}: CPU (user+sys) / wall, {what}",
                         f"{v[len(v) // 2]:.2f} ({v[0]:.2f}-{v[-1]:.2f})", "-",
                         "2 CPUs: 2.00 would be both busy"))
    return rows


def run(host, quick: bool = False) -> list:
    runs = 3 if quick else 5
    rows: list = []
    guarded(rows, "apply, no-op", "apply --dry-run / status", lambda: noop(host, runs))
    guarded(rows, f"apply, creating {CREATED}", "create + start by hand",
            lambda: creating(host, runs))
    return rows

