"""Health checks: `health NAME` (a check now), the gate auto-update keeps a new image by, and
the scheduler that checks every running container with a --health-cmd at its interval, and
every booted one without whose --on-unhealthy acts (scheduled(): its check is
`systemctl is-system-running`), (`nspawnctl health-scheduler`, the process of
units/nspawnctl-health.service).

One scheduler for all containers, not a timer and a service per container: a check started by
a timer was a Python process, its imports and a bus connection every interval, about 0.15 s of
CPU a check, 27 % of a core for 50 containers every 30 s (docs/benchmarks.md).  The scheduler
is one process that stays: one bus connection, the host's cgroup hierarchies read once, what a
container's run is (its leader, its namespaces and cgroups) found once a run, and a check is
one posix_spawn of a small helper that enters the container (confine.spawn_entered), or
systemd-run in a booted one.
It runs the checks of all containers at once, each bounded by its timeout, never one after
another.  What a check found is kept as `health NAME` keeps it
(runtime/health.py); --on-unhealthy acts as `health NAME` acts, except that a stop is
`nspawnctl stop NAME` in a process of its own, so that a container that takes its time to
power off holds up no other's checks.

Which containers it checks it learns from machined every LOOK seconds (which machines run)
and from their .nspawn files (whether each has a check, and which): a stat each look, read
again when it changed.  `set` of a running container's check tells it (SIGHUP: `systemctl
reload nspawnctl-health`), and so does a container's start (its drop-in's ExecStartPost=),
so that it looks at once; a pidfd of each leader says at once when a container stopped.  A
container's first check is one interval after its start, the next one interval after that,
as the timers did (OnActiveSec=, OnUnitActiveSec=); the containers that already run when the
scheduler starts get their first checks spread over one interval.

What it costs is mostly how often it wakes, not what it does awake: on the VMs here a look
(machined's ListMachines, through dbus-daemon) took 0.3 ms of CPU in a tight loop and 5 ms
once a second, all three processes woken from idle (docs/benchmarks.md, "Health checks").
So it wakes seldom: a look every LOOK seconds, not each second; a check may start up to a
tenth of its interval late (at most ACCURACY seconds), so that the checks due about the same
time start in one wake-up, as systemd's timers coalesce theirs (AccuracySec=); its status
goes to systemd at most every STATUS_EVERY seconds.
"""

import contextlib
import gc
import os
import resource
import signal
import sys
import time
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

from ..confine import Entry, cgroup_mounts, opened
from ..errors import Conflict, Error
from ..paths import service_unit
from ..run import start
from ..runtime import health as health_state
from ..runtime.context import Context
from ..runtime.health import Health
from ..runtime.incontainer import Check, readable
from ..runtime.lifecycle import stop
from ..settings.files import load_config
from ..settings.model import ContainerConfig, scheduled
from ..systemd.notify import notify
from ..text import shown
from ..times import now


def probe(ctx: Context, name: str, cfg: ContainerConfig, pid: int, command: list[str],
          timeout: float) -> tuple[int | None, str]:
    """Run command in running NAME (leader pid) as exec would, its output (both streams,
    MAX_OUTPUT bytes of it kept) captured instead of shown: (its exit status, or None when it
    took longer than timeout; what it wrote)."""
    _require_user_namespace(name, cfg)
    return Check.start(name, cfg, pid, command, timeout).wait()


def _require_user_namespace(name: str, cfg: ContainerConfig):
    if not cfg.boot and not cfg.private_users:
        raise Error(f"{name} runs without a user namespace: its health check would run as "
                    "the host's root", hint=f"nspawnctl set {name} --private-users")


def health(ctx: Context, name: str) -> Health:
    """Run NAME's health check now and keep what it found (runtime/health.py); with
    --on-unhealthy, act when this check made it unhealthy.  The check runs as `exec` runs a
    command: in a booted container a unit of its own systemd, else entered confined.  Without
    a --health-cmd a booted container is healthy when its systemd says running, a single
    command while it runs."""
    ctx.store.require(name)
    cfg = load_config(ctx.paths, name, dropin=False)
    props = ctx.bus.machine_properties(name)
    if props is None:
        raise Conflict(f"{name} is not running", hint=f"start it first: nspawnctl start {name}")
    prev = health_state.load(ctx.paths, name)
    degraded, status = False, None
    if cfg.health_cmd:
        status, output = probe(ctx, name, cfg, int(props["Leader"]), list(cfg.health_cmd),
                               cfg.health_timeout)
        ok = status == 0
    else:
        ok, output, degraded = health_state.without_check(cfg, name, prev,
                                                          health_state.run_of(props))
    state = _recorded(ctx, name, cfg, props, prev, ok, output, status, degraded)
    if state.action is not None:
        _act(ctx, name, state.action, lambda: stop(ctx, name))
    return state


def _recorded(ctx: Context, name: str, cfg: ContainerConfig, props: dict,
              prev: Health | None, ok: bool, output: str, status: int | None,
              degraded: bool = False) -> Health:
    """The state after this check, kept (before any action: a restart may end the process
    that asked for it), with the action --on-unhealthy asks for when this check made it
    unhealthy."""
    in_start_period = time.time() - int(props.get("Timestamp") or 0) / 1e6 \
        < cfg.health_start_period
    state, crossed = health_state.advance(prev, cfg, health_state.run_of(props), ok, output,
                                          status, now(), in_start_period, degraded)
    if crossed and cfg.on_unhealthy != "none":
        state = replace(state, action=cfg.on_unhealthy)
    health_state.save(ctx.paths, name, state)
    return state


def _act(ctx: Context, name: str, action: str, stop_it):
    """--on-unhealthy.  restart: a job of systemd's on the container's unit, not waited for
    (the process that runs the check is not part of the container's unit: the job does not
    end it).  stop: stop_it(), as `nspawnctl stop` stops it (a single command's exit 1 for
    the stop is no failure; terminated after the stop timeout).  kill: SIGKILL to all its
    processes."""
    unit = service_unit(name)
    if action == "restart":
        ctx.bus.restart_unit(unit)
    elif action == "stop":
        stop_it()
    elif action == "kill":
        ctx.bus.kill_unit(unit, signal.SIGKILL)


def health_gate(ctx: Context, name: str, timeout: float) -> str | None:
    """Whether NAME, just started, passes its --health-cmd: None when it has none or a check
    passed, else why not.  For auto-update's decision to keep a new image: the check runs as
    `health` runs it (probe), every interval, up to retries failures in a row once the start
    period is over, within timeout; nothing is recorded and --on-unhealthy is not acted on
    (the caller rolls back instead)."""
    cfg = load_config(ctx.paths, name, dropin=False)
    if not cfg.health_cmd:
        return None
    started = time.monotonic()
    deadline = started + timeout
    failures, output = 0, ""
    while True:
        props = ctx.bus.machine_properties(name)
        if props is None:
            return "it stopped before its health check passed"
        status, output = probe(ctx, name, cfg, int(props["Leader"]), list(cfg.health_cmd),
                               cfg.health_timeout)
        if status == 0:
            return None
        if time.monotonic() - started >= cfg.health_start_period:
            failures += 1
        if failures >= cfg.health_retries or time.monotonic() >= deadline:
            last = output.strip().splitlines()[-1:] or ["no output"]
            said = f"{'timed out' if status is None else f'exit {status}'}: {last[0][:200]}"
            if failures >= cfg.health_retries:
                return f"its health check failed {failures} times in a row ({said})"
            return f"its health check did not pass within {timeout:g} s ({said})"
        time.sleep(max(0.0, min(cfg.health_interval, deadline - time.monotonic())))


# ---------------------------------------------------------------- the scheduler

LOOK = 10.0  # seconds between two looks at which containers run and at their settings
ACCURACY = 3.0  # at most this late (s), a tenth of its interval at most, so checks coalesce
STATUS_EVERY = 10.0  # seconds between two STATUS= (each is work for PID 1); SIGUSR1: now


@dataclass
class _Watched:
    """A running container with a check, as the scheduler follows it: its settings (and the
    stat of its .nspawn file they were read at), when its next check is due (monotonic), its
    check while one runs, and its run: machined's properties of it, kept while its leader
    lives (leader: a pidfd of the leader, readable once it ended), so that a check asks
    machined nothing."""

    cfg: ContainerConfig
    stamp: tuple
    due: float
    check: Check | None = None
    checked_run: dict | None = None  # the run the running check belongs to
    run: dict | None = None
    leader: int | None = None
    entry: Entry | None = None  # the way into it (a container that is not booted), this run
    said: str = ""  # the last problem logged, so a container that cannot be checked is
    #                  said once, not at each interval

    def let_go(self):
        """Its check ended and its leader's pidfd closed: no longer followed."""
        if self.check is not None:
            self.check.kill()
            self.check = self.checked_run = None
        self.forget_run()

    def forget_run(self):
        if self.leader is not None:
            os.close(self.leader)
        if self.entry is not None:
            self.entry.close()
        self.run = self.leader = self.entry = None


class Scheduler:
    """The checks of every running container with a --health-cmd (the module docstring)."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.watched: dict[str, _Watched] = {}
        self.mounts = cgroup_mounts()
        self.stops: list = []  # `nspawnctl stop` processes --on-unhealthy stop started
        self.checks_run = 0
        self.next_look = 0.0
        self._status = ""
        self._said_at = -STATUS_EVERY
        self.wake: int | None = None  # readable on a signal (signal.set_wakeup_fd)
        self.report_now = False

    def serve(self):
        """Until SIGTERM (systemctl stop): a look each LOOK, the checks that are due started,
        the ones that run followed.  Its checks are ended with it.  SIGUSR1: its status to
        systemd now (`systemctl kill -s USR1 nspawnctl-health`, then `systemctl status`)."""
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        signal.signal(signal.SIGUSR1, lambda *_: setattr(self, "report_now", True))
        signal.signal(signal.SIGHUP, lambda *_: self.reload())
        self.wake, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)  # a signal ends the wait in step() at once
        # About ten descriptors a container it follows: systemd gives services a soft limit
        # of 1024 (for select's sake; this waits with poll), and the hard one is far above.
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        # What was made so far (imports, the bus) is never freed: kept out of the collector's
        # passes, which would write to every page of it and so copy each one again in the
        # parent after each fork of a check.
        gc.freeze()
        # Ready only now, its handlers set: systemd counts it active from here on, and `set`
        # and `systemctl reload` signal it only then (SIGHUP's default action would end it).
        notify("READY=1")
        try:
            while True:
                self.step()
        finally:
            self.close()

    def reload(self):
        """Look at once (SIGHUP: `set` changed a running container's check)."""
        self.next_look = 0.0

    def close(self):
        """Its running checks ended: they are in the containers' cgroups, not the
        scheduler's, so systemd's stop of it would not end them."""
        for watched in self.watched.values():
            watched.let_go()

    def step(self):
        """One turn: look (at most each LOOK), start what is due, wait until the next thing to
        do (a check's output or end, its deadline, the latest start of the next due check, the
        next look, a leader's end, a signal), follow the checks that had something to say.
        Nothing is polled in between: a check is waited for by its pipe and a pidfd of its
        process, a container by a pidfd of its leader."""
        clock = time.monotonic()
        if clock >= self.next_look:
            self.next_look = clock + LOOK
            try:
                self.look()
            except Error as e:  # machined or the bus, for a moment: the next look asks again
                _log(f"cannot see which containers run: {e.message}")
        for name, watched in self.watched.items():
            if watched.check is None and watched.due <= time.monotonic():
                self._start(name, watched)
        waits = {fd: name for name, w in self.watched.items() if w.check is not None
                 for fd in w.check.waits()}
        leaders = {w.leader: name for name, w in self.watched.items() if w.leader is not None}
        wake = min([self.next_look,
                    *(w.due + _slack(w.cfg) for w in self.watched.values() if w.check is None),
                    *(w.check.deadline for w in self.watched.values() if w.check is not None)])
        ready = readable([*waits, *leaders, *([self.wake] if self.wake is not None else [])],
                         wake - time.monotonic())
        if self.wake in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(self.wake, 64)
        for fd in ready & leaders.keys():
            self._leader_ended(leaders[fd])
        clock = time.monotonic()
        for name in {waits[fd] for fd in ready if fd in waits} | {
                n for n, w in self.watched.items()
                if w.check is not None and w.check.deadline <= clock}:
            watched = self.watched.get(name)
            if watched is not None and watched.check is not None and watched.check.pump():
                self._finish(name, watched)
        if self.stops:
            self.stops = [p for p in self.stops if p.poll() is None]
        self._say_status()

    def look(self):
        """Which containers run (machined), which of them have a check (their settings, read
        again when their file changed), and a first check one interval after the start of a
        container not followed yet."""
        running = {m["name"] for m in self.ctx.bus.list_machines() if m["class"] == "container"}
        for name in [n for n in self.watched if n not in running]:
            self._forget(name)
        for name in sorted(running):
            try:
                stamp = _stamp(self.ctx.paths.nspawn_file(name))
            except OSError:
                self._forget(name)  # not one of ours (or gone meanwhile)
                continue
            watched = self.watched.get(name)
            if watched is not None and watched.stamp == stamp:
                continue
            try:
                cfg = load_config(self.ctx.paths, name, dropin=False)
            except Error as e:
                _log(f"{name}: its settings cannot be read, no check: {e.message}")
                cfg = ContainerConfig()  # no check until the file changes again
            if not scheduled(cfg):
                self._forget(name)
                self.watched[name] = _Watched(cfg, stamp, float("inf"))  # to stat, not check
                continue
            if watched is not None and scheduled(watched.cfg):
                # set changed it: the next check one new interval from now (a timer restarted)
                changed = (cfg.health_cmd, cfg.health_interval) != \
                    (watched.cfg.health_cmd, watched.cfg.health_interval)
                watched.cfg, watched.stamp = cfg, stamp
                if changed:
                    watched.due = time.monotonic() + cfg.health_interval
                    if watched.check is not None:  # what it finds is the old check's
                        watched.check.kill()
                        watched.check = watched.checked_run = None
                continue
            self._forget(name)
            watched = _Watched(cfg, stamp, float("inf"))
            run = self._run(name, watched)
            if run is None:
                continue  # stopped meanwhile
            first = cfg.health_interval - (time.time() - int(run.get("Timestamp") or 0) / 1e6)
            if first < 0:
                # Overdue: the scheduler starts after the container (a restart of it, or set
                # gave a running container its check).  Spread over one interval, by name, so
                # that 50 containers do not all check at once and then every interval.
                first = zlib.crc32(name.encode()) / 2**32 * cfg.health_interval
            watched.due = time.monotonic() + first
            self.watched[name] = watched

    def _run(self, name: str, watched: _Watched) -> dict | None:
        """machined's properties of the run NAME is in: the ones kept while its leader lives,
        else asked again (a restart, or its first check)."""
        if watched.leader is not None and not readable([watched.leader], 0):
            return watched.run
        watched.forget_run()
        try:
            run = self.ctx.bus.machine_properties(name)
        except Error:
            return None  # gone between machined's two answers (a stop): as if not running
        if run is None:
            return None
        try:
            leader = os.pidfd_open(int(run["Leader"]))
        except OSError:
            return None  # ended meanwhile: the next look or check asks again
        if readable([leader], 0):  # ended, machined has not seen it yet
            os.close(leader)
            return None
        watched.leader, watched.run = leader, run
        return run

    def _leader_ended(self, name: str):
        """NAME's leader ended: let go of it when it stopped (its count in the status at
        once), else follow its new run (a restart that was quick)."""
        watched = self.watched.get(name)
        if watched is not None and self._run(name, watched) is None:
            self._forget(name)

    def _start(self, name: str, watched: _Watched):
        # The next one an interval after this one was due (it may start a little late:
        # ACCURACY), so the lateness does not add up; after a long stall (a suspend), an
        # interval from now.
        clock = time.monotonic()
        watched.due += watched.cfg.health_interval
        if watched.due <= clock:
            watched.due = clock + watched.cfg.health_interval
        try:
            run = self._run(name, watched)
            if run is None:
                return
            _require_user_namespace(name, watched.cfg)
            if not watched.cfg.boot and watched.entry is None:
                watched.entry = opened(int(run["Leader"]), self.mounts)
            command = list(watched.cfg.health_cmd) or health_state.SYSTEM_STATE
            watched.check = Check.start(name, watched.cfg, int(run["Leader"]), command,
                                        watched.cfg.health_timeout, watched.entry)
            watched.checked_run = run
        except Error as e:
            self._say(name, watched, f"its check cannot run: {e.message}")

    def _finish(self, name: str, watched: _Watched):
        check, run = watched.check, watched.checked_run
        watched.check = watched.checked_run = None
        assert check is not None and run is not None
        self.checks_run += 1
        prev = health_state.load(self.ctx.paths, name)
        if watched.cfg.health_cmd:
            ok, output, status, degraded = check.status == 0, check.output(), check.status, False
        else:  # a booted container's systemd, as health_state.without_check() judges it
            said = health_state.system_state_said(check.output())
            ok, output, degraded = health_state.judged(prev, health_state.run_of(run), said)
            status = None
        try:
            state = _recorded(self.ctx, name, watched.cfg, run, prev, ok, output, status,
                              degraded)
            if prev is None or prev.state != state.state:
                _log(f"{name}: {state.state}"
                     + (f": {shown(state.last_line())}" if state.last_line() else ""))
            if state.action is not None:
                _log(f"{name}: unhealthy after {state.streak} failed checks: {state.action}")
                _act(self.ctx, name, state.action, lambda: self.stops.append(start(
                    [sys.executable, "-m", "nspawnctl", "stop", name])))
            watched.said = ""
        except Error as e:
            self._say(name, watched, e.message)

    def _forget(self, name: str):
        watched = self.watched.pop(name, None)
        if watched is not None:
            watched.let_go()

    def _say(self, name: str, watched: _Watched, message: str):
        if message != watched.said:
            _log(f"{name}: {message}")
            watched.said = message

    def _say_status(self):
        """systemctl status shows how many containers it checks and how many checks it ran
        (sd_notify's STATUS=): sent when the containers changed, else at most every
        STATUS_EVERY seconds (each message is work for PID 1), and at once on SIGUSR1."""
        checked = sum(1 for w in self.watched.values() if scheduled(w.cfg))
        containers = f"checking {checked} container{'' if checked == 1 else 's'}"
        status = f"{containers}; {self.checks_run} checks run"
        if status != self._status and (
                self.report_now or not self._status.startswith(f"{containers};")
                or time.monotonic() >= self._said_at + STATUS_EVERY):
            notify(f"STATUS={status}")
            self._status, self._said_at = status, time.monotonic()
        self.report_now = False


def _slack(cfg: ContainerConfig) -> float:
    """How late a check may start: a tenth of its interval, at most ACCURACY seconds."""
    return min(ACCURACY, cfg.health_interval / 10)


def _log(line: str):
    """A line of the scheduler's journal (its stderr)."""
    print(line, file=sys.stderr, flush=True)


def _stamp(path: Path) -> tuple:
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def serve(ctx: Context):
    """`nspawnctl health-scheduler`: the scheduler, until SIGTERM."""
    with contextlib.suppress(KeyboardInterrupt):
        Scheduler(ctx).serve()
