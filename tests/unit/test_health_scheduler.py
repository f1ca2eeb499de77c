"""The health checks' scheduler (ops/health.py Scheduler) against a fake machined: which
containers it checks, when, what it keeps and does.  The checks are real processes (their
commands run on this host: entering a container is confine.py's, proven in the testbed by
tests/integration/test_health.py); only the clock is real too, so intervals are 1 s."""

import os
import resource
import time
from dataclasses import replace

import pytest

from nspawnctl.errors import Error
from nspawnctl.ops import health as health_ops
from nspawnctl.runtime import health
from nspawnctl.runtime.incontainer import GRACE, Check, readable
from nspawnctl.settings.files import load_config, save_config
from nspawnctl.settings.model import ContainerConfig
from tests.unit.fakes import FakeBus, context

CHECKED = ContainerConfig(network="none", health_cmd=("sh", "-c", "exit 0"), health_interval=1,
                          health_retries=2)


class Machined(FakeBus):
    """machined with the machines in `running` (name -> when it started, time.time())."""

    def __init__(self):
        super().__init__(state="active")
        self.running: dict[str, float] = {}

    def list_machines(self):
        return [{"name": n, "class": "container", "service": "systemd-nspawn", "path": "/"}
                for n in self.running]

    def machine_properties(self, name):
        if name not in self.running:
            return None
        # a process that lives (the scheduler keeps a pidfd of the leader): this one
        return {"Leader": os.getpid(), "Timestamp": int(self.running[name] * 1e6)}


@pytest.fixture
def world(paths, monkeypatch):
    """A scheduler over a fake machined whose checks run their command here; started: the
    (name, monotonic time) of each check."""
    bus = Machined()
    started: list[tuple[str, float]] = []

    def start(name, cfg, leader, command, timeout, mounts=None):
        started.append((name, time.monotonic()))
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover
            os.setsid()
            os.dup2(write, 1)
            os.dup2(write, 2)
            os.execvp(command[0], command)
        os.close(write)
        return Check(pid, read, timeout)

    monkeypatch.setattr(health_ops.Check, "start", start)
    # A look each second, not each LOOK (10 s): the intervals here are 1 s, and a turn with
    # nothing due waits until the next look.
    monkeypatch.setattr(health_ops, "LOOK", 1.0)
    scheduler = health_ops.Scheduler(context(paths, bus))
    yield scheduler, bus, started
    scheduler.close()


def make(paths, name, cfg, started_ago=None, bus=None):
    paths.tree(name).mkdir(parents=True)
    save_config(paths, name, cfg)
    if started_ago is not None:
        bus.running[name] = time.time() - started_ago


def run_for(scheduler, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        scheduler.step()


def test_each_running_container_with_a_check_is_checked_at_its_interval(world, paths):
    scheduler, bus, started = world
    make(paths, "ok", CHECKED, 0, bus)
    make(paths, "sick", replace(CHECKED, health_cmd=("sh", "-c", "echo no db; exit 1"),
                                on_unhealthy="restart"), 0, bus)
    make(paths, "plain", ContainerConfig(network="none"), 0, bus)  # no check
    make(paths, "stopped", CHECKED)  # not running
    began = time.monotonic()
    run_for(scheduler, 3.5)
    times = [t - began for name, t in started if name == "ok"]
    assert len(times) == 3 and 0.8 < times[0] < 1.3, times  # 1 s after its start, then each 1 s
    assert all(0.9 < b - a < 1.2 for a, b in zip(times, times[1:])), times
    assert {name for name, _ in started} == {"ok", "sick"}
    assert health.load(paths, "ok").state == "healthy"
    sick = health.load(paths, "sick")
    assert (sick.state, sick.streak, sick.last_line()) == ("unhealthy", 3, "no db")
    # --on-unhealthy restart: once, at the `retries`-th failure, not at each one after
    assert [c for c in bus.calls if c[0] == "restart_unit"] == \
        [("restart_unit", ("systemd-nspawn@sick.service",))]
    assert scheduler.checks_run == 6


def test_a_new_container_is_checked_one_interval_after_its_start_and_running_ones_spread(
        world, paths):
    """Containers that ran before the scheduler started (its restart, or a check given by
    set) are overdue: their first checks spread over one interval, not all at once."""
    scheduler, bus, _ = world
    slow = replace(CHECKED, health_interval=30)
    make(paths, "new", slow, 10, bus)
    fleet = [f"c{i:02d}" for i in range(50)]
    for name in fleet:
        make(paths, name, slow, 45, bus)
    before, wall = time.monotonic(), time.time()
    scheduler.look()
    took = time.monotonic() - before + 0.01  # (a busy machine makes the look slow)
    first = 30 - (wall - bus.running["new"])  # (about 20: the 50 others took time to make)
    assert first - took <= scheduler.watched["new"].due - before <= first + took
    firsts = sorted(scheduler.watched[name].due - before for name in fleet)
    assert 0 <= firsts[0] and firsts[-1] <= 30 + took
    assert max(sum(1 for f in firsts if t <= f < t + 3) for t in range(28)) <= 10, firsts


def test_a_booted_container_without_a_command_is_checked_when_its_on_unhealthy_acts(
        world, paths, monkeypatch, tmp_path):
    """A booted container without --health-cmd is checked by what its systemd says
    (`systemctl is-system-running` in it, here a file's word), at its interval, when
    --on-unhealthy asks for an action: degraded once it ran is unhealthy, `retries` times in
    a row restarts it; without an action it is not checked."""
    scheduler, bus, started = world
    said = tmp_path / "system-state"
    said.write_text("running\n")
    monkeypatch.setattr(health, "SYSTEM_STATE", ["cat", str(said)])
    booted = ContainerConfig(network="none", boot=True, health_interval=1, health_retries=2)
    make(paths, "watched", replace(booted, on_unhealthy="restart"), 0, bus)
    make(paths, "unwatched", booted, 0, bus)
    run_for(scheduler, 1.6)
    state = health.load(paths, "watched")
    assert (state.state, state.output) == ("healthy", "systemd: running")
    said.write_text("degraded\n")
    run_for(scheduler, 2.2)
    state = health.load(paths, "watched")
    assert (state.state, state.output) == ("unhealthy", "systemd: degraded")
    assert state.streak >= 2
    assert [c for c in bus.calls if c[0] == "restart_unit"] == \
        [("restart_unit", ("systemd-nspawn@watched.service",))]
    said.write_text("running\nrm -rf /\n")  # not one word it knows: not reachable
    run_for(scheduler, 1.1)
    assert health.load(paths, "watched").output == "systemd: unreachable"
    assert health.load(paths, "unwatched") is None
    assert {n for n, _ in started} == {"watched"}


def test_a_slow_check_holds_up_no_other(world, paths):
    scheduler, bus, started = world
    make(paths, "slow", replace(CHECKED, health_cmd=("sleep", "5"), health_timeout=10), 1, bus)
    make(paths, "quick", CHECKED, 0, bus)
    run_for(scheduler, 3.4)
    assert len([n for n, _ in started if n == "quick"]) == 3
    assert health.load(paths, "slow") is None  # still running: nothing kept yet


def test_a_check_past_its_timeout_is_ended_and_counts_as_failed(world, paths):
    scheduler, bus, _ = world
    make(paths, "hung", replace(CHECKED, health_cmd=("sleep", "30"), health_timeout=1,
                                health_interval=5), 4.8, bus)  # its first check in 0.2 s
    began = time.monotonic()
    run_for(scheduler, 2.0)  # due at 0.2 s, started by 0.7 s (its slack), ended at 1.7 s
    state = health.load(paths, "hung")
    assert state.streak == 1 and state.exit_status is None
    assert state.last_line() == "the check took longer than 1s"
    assert time.monotonic() - began < 4.5  # ended at its timeout, and GRACE at most


def test_a_check_that_ignores_sigterm_holds_up_no_other_while_it_is_given_time(world, paths):
    """Past its timeout a check gets SIGTERM, and SIGKILL GRACE seconds later: a deadline of
    its own in the scheduler's wait, not a wait of the scheduler's, so the other containers'
    checks go on meanwhile."""
    scheduler, bus, started = world
    make(paths, "stubborn", replace(CHECKED, health_cmd=("sh", "-c", "trap '' TERM; sleep 30"),
                                    health_timeout=1, health_interval=5), 4.8, bus)
    make(paths, "quick", CHECKED, 0, bus)
    began = time.monotonic()
    while health.load(paths, "stubborn") is None and time.monotonic() - began < 10:
        scheduler.step()
    took = time.monotonic() - began
    # due at 0.2 s, started by 0.7 s (its slack), SIGTERM at its timeout, SIGKILL GRACE later
    assert 0.2 + 1 + GRACE - 0.1 < took < 0.7 + 1 + GRACE + 0.3
    assert health.load(paths, "stubborn").last_line() == "the check took longer than 1s"
    quick = [t for n, t in started if n == "quick" and t > began + 1.2]
    assert len(quick) >= 2  # checked each second meanwhile
    assert all(b - a < 1 + 0.15 for a, b in zip(quick, quick[1:]))


def test_set_is_read_from_the_file_and_a_stopped_container_is_let_go(world, paths):
    scheduler, bus, started = world
    make(paths, "c1", replace(CHECKED, health_cmd=("sleep", "10"), health_timeout=20), 0.9, bus)
    run_for(scheduler, 0.3)
    running = scheduler.watched["c1"].check
    assert running is not None
    # set --health-cmd: the check of the old command ends, the new one runs an interval on
    save_config(paths, "c1", replace(load_config(paths, "c1"), health_cmd=("true",),
                                     health_interval=2))
    time.sleep(0.01)
    scheduler.look()
    assert running.done and scheduler.watched["c1"].check is None
    assert 1.9 < scheduler.watched["c1"].due - time.monotonic() <= 2
    # set --health-cmd none: no more checks
    save_config(paths, "c1", replace(load_config(paths, "c1"), health_cmd=()))
    scheduler.look()
    assert scheduler.watched["c1"].due == float("inf")
    # a stop: forgotten, its running check ended
    save_config(paths, "c1", replace(load_config(paths, "c1"), health_cmd=("sleep", "10")))
    scheduler.look()
    scheduler.watched["c1"].due = 0
    scheduler.step()
    running = scheduler.watched["c1"].check
    del bus.running["c1"]
    scheduler.next_look = 0
    scheduler.step()
    assert "c1" not in scheduler.watched and running.done


def test_a_container_that_cannot_be_checked_is_said_once(world, paths, monkeypatch, capsys):
    scheduler, bus, _ = world

    def refuse(*args, **kwargs):
        raise Error("cannot enter the container (pid 1004): No such process")

    monkeypatch.setattr(health_ops.Check, "start", refuse)
    make(paths, "gone", CHECKED, 5, bus)
    run_for(scheduler, 2.5)
    said = capsys.readouterr().err.splitlines()
    assert said == ["gone: its check cannot run: cannot enter the container (pid 1004): "
                    "No such process"]


def test_a_container_without_a_user_namespace_is_never_entered(world, paths, capsys):
    scheduler, bus, started = world
    make(paths, "host-root", replace(CHECKED, boot=False, private_users=False), 5, bus)
    run_for(scheduler, 1.2)
    assert started == []
    assert "runs without a user namespace" in capsys.readouterr().err


def test_what_the_container_wrote_reaches_the_journal_escaped(world, paths, capsys):
    scheduler, bus, _ = world
    make(paths, "c1", replace(CHECKED, health_cmd=("printf", "\\033[2Jforged\\n")), 0.8, bus)
    run_for(scheduler, 0.5)
    assert capsys.readouterr().err == "c1: healthy: \\x1b[2Jforged\n"


def test_machined_is_asked_once_a_run_not_once_a_check(world, paths, monkeypatch):
    """The run (leader, start time) is kept while the leader lives (a pidfd of it): a check
    asks machined nothing; a new leader (a restart) is asked for, and its checks start afresh
    in the state kept."""
    scheduler, bus, started = world
    leader = os.fork()
    if leader == 0:  # pragma: no cover
        time.sleep(60)
        os._exit(0)
    asked = []
    leaders = {"c1": leader}

    def machine_properties(name):
        asked.append(name)
        return {"Leader": leaders[name], "Timestamp": int(bus.running[name] * 1e6)}

    monkeypatch.setattr(bus, "machine_properties", machine_properties)
    make(paths, "c1", CHECKED, 0.8, bus)  # first check in 0.2 s, then every 1 s
    run_for(scheduler, 2.5)
    assert len(started) == 3 and asked == ["c1"]
    assert health.load(paths, "c1").started == f"{leader}@{int(bus.running['c1'] * 1e6)}"
    os.kill(leader, 9)
    os.waitpid(leader, 0)
    leaders["c1"] = os.getpid()  # restarted: another leader
    bus.running["c1"] = time.time()
    run_for(scheduler, 1.0)
    assert asked == ["c1", "c1"]
    assert health.load(paths, "c1").started == f"{os.getpid()}@{int(bus.running['c1'] * 1e6)}"


def test_checks_due_about_the_same_time_start_in_one_wake_up_and_never_drift(
        world, paths, monkeypatch):
    """A check may start up to a tenth of its interval late (ACCURACY at most), so the ones
    due within that share one wake-up (as systemd's timers' AccuracySec= coalesces them);
    the next is due an interval after the last was due, not after it started: no drift."""
    scheduler, bus, started = world
    monkeypatch.setattr(health_ops, "LOOK", 60.0)  # only the checks wake it
    every = replace(CHECKED, health_interval=10)  # 1 s of slack
    make(paths, "a", every, 9.0, bus)  # due in 1.0 s
    make(paths, "b", every, 8.5, bus)  # due in 1.5 s: inside a's slack
    make(paths, "c", every, 6.0, bus)  # due in 4.0 s: one of its own
    began = time.monotonic()
    run_for(scheduler, 5.5)
    at = {name: t - began for name, t in started}
    assert sorted(at) == ["a", "b", "c"], started
    assert abs(at["a"] - at["b"]) < 0.1, at  # one wake-up for both
    assert 1.4 < at["a"] < 2.1 and 4.0 < at["c"] < 5.1, at  # never later than the slack
    due_a = scheduler.watched["a"].due - began
    assert 10.9 < due_a < 11.1, due_a  # an interval after it was due, not after it ran


def test_the_status_is_sent_seldom_but_at_once_when_the_containers_change(
        world, paths, monkeypatch):
    scheduler, bus, _ = world
    sent = []
    monkeypatch.setattr(health_ops, "notify", sent.append)
    make(paths, "c1", CHECKED, 0.8, bus)
    run_for(scheduler, 2.5)  # its checks at 0.2, 1.2 and 2.2 s
    assert sent == ["STATUS=checking 1 container; 0 checks run"]
    scheduler.report_now = True  # SIGUSR1
    scheduler.step()
    ran = scheduler.checks_run
    assert ran >= 3 and sent[-1] == f"STATUS=checking 1 container; {ran} checks run"
    make(paths, "c2", CHECKED, 0.5, bus)
    scheduler.next_look = 0
    scheduler.step()
    assert sent[-1] == f"STATUS=checking 2 containers; {scheduler.checks_run} checks run"
    assert len(sent) == 3


def test_descriptors_past_1024_are_waited_on(monkeypatch):
    """The scheduler holds about ten descriptors a container: select() takes none past
    1023, poll does."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 2048:
        pytest.fail(f"this test needs a hard RLIMIT_NOFILE of 2048 or more, not {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (2048, hard))
    read, write = os.pipe()
    try:
        os.dup2(read, 1500)
        assert readable([1500], 0) == set()
        os.write(write, b"x")
        assert readable([1500], 1) == {1500}
    finally:
        for fd in (read, write, 1500):
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_stopped_container_is_let_go_at_once_and_sighup_looks_at_once(world, paths,
                                                                         monkeypatch):
    """Its leader's end wakes the scheduler (a pidfd), which lets it go at once, not at its
    next look; SIGHUP (`set` changed a check) makes it look at once."""
    scheduler, bus, started = world
    monkeypatch.setattr(health_ops, "LOOK", 60.0)
    leader = os.fork()
    if leader == 0:  # pragma: no cover
        time.sleep(60)
        os._exit(0)
    leaders = {"c1": leader, "c2": os.getpid()}
    monkeypatch.setattr(bus, "machine_properties", lambda name: None if name not in bus.running
                        else {"Leader": leaders[name],
                              "Timestamp": int(bus.running[name] * 1e6)})
    make(paths, "c1", replace(CHECKED, health_interval=30), 0, bus)
    scheduler.look()  # (a step would wait for its first check, 30 s on)
    assert "c1" in scheduler.watched and scheduler.watched["c1"].leader is not None
    scheduler.next_look = time.monotonic() + 60
    del bus.running["c1"]
    os.kill(leader, 9)
    os.waitpid(leader, 0)
    began = time.monotonic()
    scheduler.step()
    assert "c1" not in scheduler.watched and time.monotonic() - began < 1
    make(paths, "c2", CHECKED, 0, bus)  # (its next look is a minute on)
    scheduler.reload()
    began = time.monotonic()
    scheduler.step()  # looks, then waits for c2's first check, 1 s on
    assert "c2" in scheduler.watched and time.monotonic() - began < 5


def test_machined_failing_for_a_moment_is_no_crash(world, paths, monkeypatch, capsys):
    """A machine that goes between machined's two answers (its path, then its properties)
    is one that stopped; a look that fails is said, and the next one asks again."""
    scheduler, bus, _ = world
    make(paths, "c1", CHECKED, 0.5, bus)

    def gone(name):
        raise Error(f"machine {name}: Unknown object")

    monkeypatch.setattr(bus, "machine_properties", gone)
    scheduler.look()
    assert "c1" not in scheduler.watched

    def broken():
        raise Error("cannot connect to the system bus")

    monkeypatch.setattr(bus, "list_machines", broken)
    scheduler.next_look = 0
    scheduler.step()
    assert "cannot see which containers run: cannot connect" in capsys.readouterr().err
