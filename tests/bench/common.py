"""What the benchmarks share: timing commands inside the testbed, medians, the one table.

Timings are taken inside the systemd host (the testbed) by a small Python timer that runs there,
so nsenter and the trip in are not part of any figure: a figure is the wall time of the commands
as a user would type them on that host, from the first exec to the last exit (plus, for
"until" figures, the polling a user would do to see the result).
"""

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Runs inside the testbed (python3 is part of it).  Reads a JSON spec on stdin:
#   before: [argv...]   untimed, e.g. sync (so no one pays for another run's writeback)
#   steps:  [argv...]   timed, in order, each must exit 0
#   until:  argv        after the steps, rerun (every `interval` s) until its stdout is in
#                       until_ok; the time until then is part of the figure
# Prints {"seconds": S} or {"error": ...}.
TIMER = r"""
import json, subprocess, sys, time
spec = json.load(sys.stdin)
def run(argv):
    return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, errors="replace")
def fail(argv, p, what="failed"):
    print(json.dumps({"error": f"{' '.join(argv)} {what} (exit {p.returncode if p else '-'})",
                      "tail": ((p.stdout + p.stderr)[-1500:] if p else "")}))
    sys.exit(0)
for argv in spec.get("before", []):
    p = run(argv)
    if p.returncode != 0:
        fail(argv, p)
t0 = time.perf_counter()
for argv in spec.get("steps", []):
    p = run(argv)
    if p.returncode != 0:
        fail(argv, p)
until = spec.get("until")
if until:
    deadline = t0 + spec.get("timeout", 120)
    while True:
        p = run(until)
        if p.stdout.strip() in spec["until_ok"]:
            break
        if time.perf_counter() > deadline:
            fail(until, p, "never said " + "/".join(spec["until_ok"]))
        time.sleep(spec.get("interval", 0.05))
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""


# The testbed mounts the source read-only, so Python could not cache its bytecode and would
# compile nspawnctl's modules on every command (15-20 ms each time); an installed nspawnctl has
# its .pyc files.  A cache directory of their own gives the commands what an install has.
ENV = {"PYTHONPYCACHEPREFIX": "/var/cache/nspawnctl-bench-pycache"}


class BenchError(Exception):
    pass


class Median(float):
    """The median of samples, which it remembers (the table shows their min-max)."""
    samples: list

    def __new__(cls, samples):
        self = super().__new__(cls, statistics.median(samples))
        self.samples = list(samples)
        return self


class Seconds(Median):
    def __str__(self):
        return fmt_seconds(self)


class MB(float):
    def __str__(self):
        return f"{self:.0f} MB"


def fmt_seconds(s: float) -> str:
    if s < 1:
        return f"{s:.3f} s"
    if s < 100:
        return f"{s:.2f} s"
    return f"{s:.1f} s"


def drop_caches():
    """Write back and forget the page cache, dentries and inodes, machine-wide (the testbed
    shares this kernel; its own /proc/sys is read-only, so it is done from here)."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def time_inside(host, steps, *, before=(), until=None, until_ok=(), interval=0.05,
                timeout=600, cold: bool = False) -> float:
    """Seconds the steps (and the polling of `until`) take inside the host.

    cold: after `before`, sync and drop every cache (drop_caches) so the steps read what they
    need from the disk, as they would the first time after a boot: two contenders timed so
    start alike, whatever the other one left in the cache or in writeback."""
    if cold:
        for argv in before:
            check(host, argv, timeout=timeout)
        before = ()
        drop_caches()
    spec = {"before": [list(map(str, a)) for a in before],
            "steps": [list(map(str, a)) for a in steps],
            "until": list(map(str, until)) if until else None,
            "until_ok": list(until_ok), "interval": interval, "timeout": timeout}
    r = host.run(["python3", "-c", TIMER], input=json.dumps(spec), timeout=timeout + 60,
                 env=ENV)
    try:
        out = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise BenchError(f"timer failed: {r}") from None
    if "error" in out:
        raise BenchError(f"{out['error']}\n{out.get('tail', '')}")
    return out["seconds"]


def check(host, argv, timeout=600) -> str:
    """Run an untimed setup command inside; its stdout, or BenchError."""
    r = host.run(list(map(str, argv)), timeout=timeout, env=ENV)
    if r.returncode != 0:
        raise BenchError(f"setup step failed:\n{r}")
    return r.stdout


def du_mb(host, path: str) -> MB:
    return MB(int(check(host, ["du", "-sm", path]).split()[0]))


def medians(contenders, runs: int, say: bool = False) -> list[Seconds]:
    """Each contender() -> seconds, run `runs` times, interleaved so noise hits all alike.
    say: log every sample as it comes (for long runs, so that a min or max far from the
    median can be traced to its run)."""
    samples = [[] for _ in contenders]
    for run in range(1, runs + 1):
        for i, fn in enumerate(contenders):
            samples[i].append(fn())
            if say:
                log(f"  {getattr(fn, '__name__', i)} run {run}: {samples[i][-1]:.2f} s")
    return [Seconds(s) for s in samples]


# The benchmarks that failed in this run: the table still shows what ran, and the run then
# exits non-zero (finish), so a broken benchmark is never taken for a report.
FAILED: list[str] = []


def guarded(rows: list, figure: str, anchor: str, fn):
    """Run fn() -> rows to add; a failure becomes one row saying why and is counted in FAILED:
    the other benchmarks still run, and the run fails at the end."""
    try:
        rows.extend(fn())
    except Exception as exc:  # noqa: BLE001 - reported in the table, the run goes on
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        detail = getattr(exc, "stderr", None) or ""  # a CalledProcessError's own words
        if isinstance(detail, bytes):
            detail = detail.decode(errors="replace")
        print(f"bench: {figure}: {exc}\n{detail[-1500:]}".rstrip(), flush=True)
        rows.append((figure, f"failed: {first[:60]}", "-", anchor))
        FAILED.append(f"{figure}: {first}")


def finish(rows: list, info: dict) -> int:
    """Print the table of what ran; the exit status: 1 when a benchmark failed, saying which
    (last, on stderr, where a CI log's reader looks), else 0."""
    print()
    print(table(rows, info), flush=True)
    if not FAILED:
        return 0
    print(f"bench: {len(FAILED)} benchmark(s) FAILED, so this run is no report:"
          + "".join(f"\n  {f}" for f in FAILED), file=sys.stderr, flush=True)
    return 1


def log(message: str):
    print(f"bench: {message}", flush=True)


# --- the machine ---------------------------------------------------------------------------

def machine(host=None) -> dict:
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 2**20:.0f} GiB"
    except OSError:
        pass
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpus": f"{os.cpu_count()} ({cpu})",
        "memory": mem,
        "kernel": platform.release(),
        "/var": _fstype("/var"),
        "load": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }
    if host is not None:
        r = host.run(["findmnt", "-n", "-o", "FSTYPE", "-T", "/var/lib/machines"])
        if r.returncode == 0:
            info["/var/lib/machines (on the systemd host)"] = r.stdout.strip()
        r = host.run(["sh", "-c", "systemctl --version | head -1"])
        if r.returncode == 0:
            info["systemd"] = r.stdout.strip()
    return info


def _fstype(path: str) -> str:
    try:
        out = subprocess.run(["findmnt", "-n", "-o", "FSTYPE,SOURCE", "-T", path],
                             capture_output=True, text=True).stdout.split()
        return " ".join(out[:1]) or "?"
    except OSError:
        return "?"


# --- the table -----------------------------------------------------------------------------

class Rate(Median):
    """A median rate in MB/s (higher is faster)."""

    def __str__(self):
        return f"{self:.0f} MB/s"


class Percent(Median):
    """A median share of one CPU, in % (100 % is one core busy all along)."""

    def __str__(self):
        return f"{self:.2f} %"


def _cell(value) -> str:
    """The median, and the spread when there were several runs: 'median (min-max)'."""
    if isinstance(value, MB):
        return str(value)
    samples = getattr(value, "samples", [])
    if isinstance(value, Rate):
        spread = f" ({min(samples):.0f}-{max(samples):.0f})" if len(samples) > 1 else ""
        return f"{value}{spread}"
    if isinstance(value, Percent):
        spread = f" ({min(samples):.2f}-{max(samples):.2f})" if len(samples) > 1 else ""
        return f"{value}{spread}"
    if isinstance(value, float):
        spread = (f" ({fmt_seconds(min(samples))}-{fmt_seconds(max(samples))})"
                  if len(samples) > 1 else "")
        return fmt_seconds(value) + spread
    return str(value)


def ratio(ours, theirs) -> str:
    if isinstance(ours, float) and isinstance(theirs, float) and theirs > 0:
        return f"{ours / theirs:.2f}"
    return "-"


def table(rows, info: dict) -> str:
    """One Markdown table (pasteable into docs/benchmarks.md) with the machine it ran on."""
    head = ["figure", "nspawnctl", "anchor", "anchor value", "ratio", "n"]
    body = []
    for figure, ours, theirs, anchor in rows:
        runs = max(len(getattr(ours, "samples", [])), len(getattr(theirs, "samples", [])))
        body.append([figure, _cell(ours), anchor, _cell(theirs), ratio(ours, theirs),
                     str(runs) if runs else "-"])
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    right = {1, 3, 4, 5}

    def line(cells):
        return "| " + " | ".join(c.rjust(w) if i in right else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if i in right else ("-" * (w + 2))
                         for i, w in enumerate(widths)) + "|"
    out = [line(head), sep] + [line(r) for r in body]
    out.append("")
    out.append("Measured " + "; ".join(f"{k}: {v}" for k, v in info.items()) + ".")
    out.append("Medians of n runs (ratio = nspawnctl / anchor; below 1 is faster or smaller). "
               "Benchmarks report, they do not judge.")
    return "\n".join(out)
