"""A container's health state: the rules from one check to the next (podman's states), the
state file (bounded, written whole, unreadable ones ignored), the health units' files, and
what status/list/--json show."""

import json
import os
import signal
from dataclasses import replace

import pytest

from nspawnctl.cli import jsonview
from nspawnctl.ops import reconfigure
from nspawnctl.paths import Paths
from nspawnctl.runtime import health
from nspawnctl.runtime.incontainer import Check
from nspawnctl.settings.dropin import HEALTH_DROPIN_NAME
from nspawnctl.settings.files import load_config, save_config
from nspawnctl.settings.model import ContainerConfig
from nspawnctl.systemd.bootunits import install_units
from tests.unit.fakes import FakeBus, context

CFG = ContainerConfig(health_cmd=("/bin/sh", "-c", "test -e /ok"), health_retries=3)
RUN = "100@1"


def step(prev, ok, run=RUN, start_period=False, cfg=CFG):
    return health.advance(prev, cfg, run, ok, "out", 0 if ok else 1, "2026-12-06T12:00:00Z",
                          start_period)


def test_retries_failures_in_a_row_make_it_unhealthy_and_act_once():
    state, acts = step(None, True)
    assert (state.state, state.streak, acts) == ("healthy", 0, False)
    seen = []
    for _ in range(5):
        state, acts = step(state, False)
        seen.append((state.state, state.streak, acts))
    assert seen == [("healthy", 1, False), ("healthy", 2, False), ("unhealthy", 3, True),
                    ("unhealthy", 4, False), ("unhealthy", 5, False)]
    state, acts = step(state, True)
    assert (state.state, state.streak, acts) == ("healthy", 0, False)


def test_a_success_resets_the_streak():
    state, _ = step(None, False)
    state, _ = step(state, False)
    state, _ = step(state, True)
    state, acts = step(state, False)
    assert (state.state, state.streak, acts) == ("healthy", 1, False)


def test_it_is_starting_until_a_first_success_and_the_start_period_forgives():
    state, _ = step(None, False)
    assert (state.state, state.streak) == ("starting", 1)
    state, acts = step(None, False, start_period=True)
    state, acts = step(state, False, start_period=True)
    assert (state.state, state.streak, acts) == ("starting", 0, False)
    # once healthy, a failure in the start period counts
    state, _ = step(state, True, start_period=True)
    state, _ = step(state, False, start_period=True)
    assert (state.state, state.streak) == ("healthy", 1)


def test_a_new_run_of_the_container_starts_afresh():
    state = health.Health(state="unhealthy", streak=7, started=RUN)
    state, acts = step(state, False, run="200@2")
    assert (state.state, state.streak, state.started, acts) == ("starting", 1, "200@2", False)


def test_output_is_bounded_whatever_the_bytes():
    text = health.bounded(b"\xff" * 10 + b"x" * 10_000)
    assert len(text) <= health.MAX_OUTPUT and text.startswith("\ufffd")


def _paths(root):
    return Paths(machines=root / "machines", nspawn=root / "nspawn", units=root / "units",
                 state=root / "state", cache=root / "cache", control=root / "control",
                 holds=root / "run/holds")


def test_the_state_file_is_whole_readable_and_unreadable_ones_are_ignored(tmp_path):
    paths = _paths(tmp_path)
    assert health.load(paths, "c1") is None
    state, _ = step(None, False)
    health.save(paths, "c1", state)
    path = health.state_file(paths, "c1")
    assert health.load(paths, "c1") == state and path.stat().st_mode & 0o777 == 0o644
    for junk in ("{", "[]", json.dumps({"state": "sick"}), "x" * 100_000,
                 json.dumps({"state": "healthy", "streak": "1"})):
        path.write_text(junk)
        assert health.load(paths, "c1") is None, junk


def test_the_json_object_is_the_schemas(tmp_path):
    state, _ = step(None, False)
    shown = {"name": "c1", **state.to_json()}
    assert jsonview.check(jsonview.schema("health"), jsonview.view("health", shown)) == []
    assert jsonview.check(jsonview.schema("container")["health"], state.to_json()) == []


def test_a_check_makes_the_unit_want_the_scheduler_and_a_timer_of_before_goes(tmp_path):
    """The container's unit wants the scheduler while the scheduler has something to check
    in it (model.scheduled())."""
    paths = _paths(tmp_path)
    legacy = paths.health_timer_dropin_dir("c1") / "50-nspawnctl.conf"  # stop 39's
    legacy.parent.mkdir(parents=True)
    legacy.write_text("[Timer]\nOnActiveSec=7\n")
    save_config(paths, "c1", replace(CFG, health_interval=7))
    wants = paths.dropin_dir("c1") / "70-nspawnctl-health.conf"
    assert "Wants=nspawnctl-health.service" in wants.read_text()
    assert not legacy.parent.exists()
    save_config(paths, "c1", ContainerConfig())  # the check removed: it goes
    assert not wants.exists()
    # booted without a command, checked by its systemd's state when --on-unhealthy acts
    save_config(paths, "c1", ContainerConfig(boot=True, on_unhealthy="restart"))
    assert "Wants=nspawnctl-health.service" in wants.read_text()
    save_config(paths, "c1", ContainerConfig(boot=True))
    assert not wants.exists()


def test_the_scheduler_is_installed_with_the_boot_units_and_the_timers_go(tmp_path):
    paths = _paths(tmp_path)
    paths.units.mkdir(parents=True)
    for old in ("nspawnctl-health@.service", "nspawnctl-health@.timer"):
        (paths.units / old).write_text("[Unit]\n")
    install_units(paths)
    service = (paths.units / "nspawnctl-health.service").read_text()
    assert "-m nspawnctl health-scheduler" in service and "@" + "PYTHON@" not in service
    assert "Type=notify" in service and "Restart=on-failure" in service
    assert not (paths.units / "nspawnctl-health@.timer").exists()
    assert not (paths.units / "nspawnctl-health@.service").exists()
    assert not install_units(paths)  # a second install changes nothing


def test_removing_a_container_takes_its_health_files(tmp_path):
    from nspawnctl.store.containers import Store
    paths = _paths(tmp_path)
    save_config(paths, "c1", CFG)
    health.save(paths, "c1", health.Health())
    Store(paths).remove_settings("c1")
    assert not paths.health_timer_dropin_dir("c1").exists()
    assert not health.state_file(paths, "c1").exists()
    assert not os.path.exists(paths.dropin_dir("c1"))


@pytest.mark.parametrize("system, first, ok", [
    ("running", True, True), ("degraded", True, True), ("starting", True, False),
    ("running", False, True), ("degraded", False, False), (None, True, False)])
def test_without_a_command_systemd_says_and_degraded_only_when_it_booted_so(
        monkeypatch, system, first, ok):
    monkeypatch.setattr(health, "guest_state", lambda name: system)
    prev = None if first else health.Health(state="healthy", started=RUN, degraded_ok=False)
    assert health.without_check(ContainerConfig(), "c1", prev, RUN)[0] is ok
    assert health.without_check(ContainerConfig(boot=False), "c1", prev, RUN)[0] is True


class _Systemd:
    """A booted container's systemd, as without_check asks it (guest_state)."""

    def __init__(self, monkeypatch):
        self.state = "running"
        monkeypatch.setattr(health, "guest_state", lambda name: self.state)


BOOTED = ContainerConfig(health_retries=1)  # booted, no --health-cmd: each check decides


def check_booted(prev, run=RUN):
    """One `health` of a booted container without a command, as ops/execute.py runs it."""
    ok, output, degraded = health.without_check(BOOTED, "c1", prev, run)
    return health.advance(prev, BOOTED, run, ok, output, None, "2026-12-06T12:00:00Z", False,
                          degraded)[0]


def test_degraded_after_running_stays_unhealthy_check_after_check(monkeypatch):
    """Found running, then degraded: unhealthy, and still at the next check (it was not
    degraded at its last healthy check); running again is healthy."""
    systemd = _Systemd(monkeypatch)
    state = check_booted(None)
    assert (state.state, state.degraded_ok) == ("healthy", False)
    systemd.state = "degraded"
    seen = []
    for _ in range(3):
        state = check_booted(state)
        seen.append(state.state)
    assert seen == ["unhealthy"] * 3
    systemd.state = "running"
    assert check_booted(state).state == "healthy"


def test_degraded_from_the_boot_on_is_its_normal_until_a_check_finds_it_running(monkeypatch):
    systemd = _Systemd(monkeypatch)
    systemd.state = "starting"  # not healthy yet: still the boot
    state = check_booted(None)
    assert state.state == "unhealthy"
    state = replace(state, state="starting")  # (with more retries it would still be starting)
    systemd.state = "degraded"
    for _ in range(2):
        state = check_booted(state)
        assert (state.state, state.degraded_ok) == ("healthy", True)
    systemd.state = "maintenance"  # a failing check keeps what the last healthy one found
    state = check_booted(state)
    assert (state.state, state.degraded_ok) == ("unhealthy", True)
    systemd.state = "degraded"
    assert check_booted(state).state == "healthy"
    systemd.state = "running"
    state = check_booted(state)
    systemd.state = "degraded"
    assert check_booted(state).state == "unhealthy"
    assert check_booted(state, run="200@2").state == "healthy"  # a new run: afresh


class _MachineBus:
    def machine_properties(self, name):
        return {"Leader": 100, "Timestamp": 1}


def test_wait_for_healthy_goes_by_the_checks_kept_of_this_run(tmp_path, monkeypatch):
    """`wait --for healthy` (is_healthy) of a booted container without a command agrees
    with `health`: degraded once a check of this run found it running is not healthy."""
    paths = _paths(tmp_path)
    save_config(paths, "c1", BOOTED)
    systemd = _Systemd(monkeypatch)
    systemd.state = "degraded"
    assert health.is_healthy(paths, _MachineBus(), "c1")  # no check yet: how it boots
    health.save(paths, "c1", health.Health(state="healthy", started=RUN, degraded_ok=False))
    assert not health.is_healthy(paths, _MachineBus(), "c1")
    health.save(paths, "c1", health.Health(state="healthy", started="7@7"))  # another run's
    assert health.is_healthy(paths, _MachineBus(), "c1")


@pytest.mark.parametrize("command", ["none", "test -e /other"])
def test_set_another_check_or_none_starts_afresh(private_root, monkeypatch, command):
    """set --health-cmd none on a running container: no check in its files, and what the
    old check found forgotten; another command: the old command's results forgotten too
    (`wait --for healthy` waits for the new).  The scheduler, running, is told to read the
    files again now (SIGHUP; it would at its next look)."""
    paths = private_root
    monkeypatch.setattr(reconfigure, "require_root", lambda: None)
    paths.tree("c1").mkdir(parents=True)
    save_config(paths, "c1", replace(CFG, network="none"))
    assert (paths.dropin_dir("c1") / HEALTH_DROPIN_NAME).exists()
    health.save(paths, "c1", health.Health(state="healthy", started=RUN))
    bus = FakeBus(state="active")
    reconfigure.set_config(context(paths, bus), "c1", {"health_cmd": command})
    assert bool(load_config(paths, "c1").health_cmd) is (command != "none")
    assert (paths.dropin_dir("c1") / HEALTH_DROPIN_NAME).exists() is (command != "none")
    assert not health.state_file(paths, "c1").exists()
    assert [c for c in bus.calls if "nspawnctl-health" in str(c)] == \
        [("kill_unit", ("nspawnctl-health.service", signal.SIGHUP))]


def test_set_gives_a_running_container_its_first_check_and_starts_the_scheduler(
        private_root, monkeypatch):
    """Its drop-in wants the scheduler only at its next start: set starts it now (a start
    of a unit that runs is nothing)."""
    paths = private_root
    monkeypatch.setattr(reconfigure, "require_root", lambda: None)
    paths.tree("c1").mkdir(parents=True)
    save_config(paths, "c1", ContainerConfig(network="none"))
    bus = FakeBus(state="active")
    reconfigure.set_config(context(paths, bus), "c1", {"health_cmd": "true"})
    assert ("start_unit", ("nspawnctl-health.service",)) in bus.calls


# ---------------------------------------------------------------- the check's output and timeout

def _spawn(script: str, timeout: float) -> Check:
    """A check as Check.start makes one (its output on a pipe, a session of its own)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover
        os.setsid()
        os.dup2(write, 1)
        os.execvp("sh", ["sh", "-c", script])
    os.close(write)
    return Check(pid, read, timeout)


def test_a_check_that_takes_too_long_is_ended_and_has_no_status():
    import time
    began = time.monotonic()
    status, output = _spawn("echo begun; exec sleep 30", 0.5).wait()
    assert output == "begun\nthe check took longer than 0.5s" and status is None
    assert time.monotonic() - began < 5


def test_a_chatty_check_is_kept_to_its_bound_and_its_status_passes():
    status, output = _spawn("head -c 1000000 /dev/zero; exit 3", 20).wait()
    assert len(output) == health.MAX_OUTPUT and status == 3


def test_what_a_check_wrote_just_before_it_ended_is_kept():
    for _ in range(20):
        assert _spawn("echo last words", 20).wait() == (0, "last words\n")
