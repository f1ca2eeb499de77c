"""ops.lifecycle (runtime.lifecycle) and ops.remove against a fake Bus: what a command must never change."""

import contextlib
import shutil

import pytest

from nspawnctl.errors import Error
from nspawnctl.ops import execute, lifecycle, reconfigure
from nspawnctl.ops import remove as remove_op
from nspawnctl.runtime import lifecycle as runtime_lifecycle
from nspawnctl.settings.files import save_config
from nspawnctl.settings.model import ContainerConfig
from nspawnctl.settings.networking import parse_port
from nspawnctl.store.containers import Store
from tests.unit.fakes import FakeBus, context


@pytest.fixture
def paths(private_root):
    p = private_root
    (p.tree("c1") / "etc").mkdir(parents=True)
    (p.tree("c1") / "etc/os-release").write_text("ID=debian\n")
    return p


@pytest.fixture
def stuck(monkeypatch):
    """A unit that never leaves "active", whatever is asked of it."""
    monkeypatch.setattr(runtime_lifecycle, "_wait_settled", lambda bus, unit, timeout: False)
    return FakeBus(state="active")


def test_stop_fails_when_the_unit_outlives_sigkill(paths, stuck):
    with pytest.raises(Error) as err:
        lifecycle.stop(context(paths, stuck), "c1")
    assert "still active after SIGKILL" in err.value.message
    assert "\n" not in err.value.message and err.value.hint
    assert ("kill_unit", ("systemd-nspawn@c1.service", 9)) in stuck.calls


def test_stop_kills_at_its_timeout_instead_of_stopping_again(paths, stuck, monkeypatch):
    """A second stop job would run on to systemd's own TimeoutStopSec= and race its kill
    (CI: a rollback then found the unit not yet settled and refused to swap the tree)."""
    ctx = context(paths, stuck)
    with pytest.raises(Error):
        lifecycle.stop(ctx, "c1")
    asked = [call for call, _args in stuck.calls if call in ("stop_unit", "kill_unit")]
    assert asked == ["stop_unit", "kill_unit"], stuck.calls


def test_remove_force_keeps_the_tree_of_a_container_still_running(paths, stuck, monkeypatch):
    monkeypatch.setattr(remove_op, "stop", lambda *a, **k: True)  # a stop that claims success
    with pytest.raises(Error, match="still running"):
        remove_op.remove(context(paths, stuck), "c1", force=True)
    assert paths.tree("c1").is_dir()


def test_remove_force_keeps_the_tree_when_stop_fails(paths, stuck):
    with pytest.raises(Error, match="after SIGKILL"):
        remove_op.remove(context(paths, stuck), "c1", force=True)
    assert paths.tree("c1").is_dir()


@pytest.mark.parametrize("command", [lifecycle.enable, lifecycle.disable])
def test_enable_and_disable_link_under_the_containers_lock(paths, monkeypatch, command):
    held = []

    class LockCheckingBus(FakeBus):
        def enable_units(self, units):
            self.check()

        def disable_units(self, units):
            self.check()

        def check(self):
            try:
                with Store(paths).lock("c1"):
                    held.append(False)
            except Error:
                held.append(True)  # busy: this command holds it

    command(context(paths, LockCheckingBus()), "c1")
    assert held == [True]


@pytest.mark.parametrize("command", [lifecycle.enable, lifecycle.disable])
def test_enable_and_disable_recheck_the_container_under_its_lock(paths, monkeypatch, command):
    bus = FakeBus()
    real_lock = Store.lock

    @contextlib.contextmanager
    def lock_after_a_remove(self, name):
        shutil.rmtree(paths.tree(name))  # a remove that won the race for the lock
        with real_lock(self, name):
            yield

    monkeypatch.setattr(Store, "lock", lock_after_a_remove)
    with pytest.raises(Error, match="no container named"):
        command(context(paths, bus), "c1")
    assert not [call for call in bus.calls if call[0].endswith("_units")]


def live_limit_dropins(paths, name):
    control = paths.control_dir(name)
    control.mkdir(parents=True)
    (control / "50-MemoryMax.conf").write_text("[Service]\nMemoryMax=536870912\n")
    (control / "50-CPUQuota.conf").write_text("[Service]\nCPUQuota=50%\n")
    return control


def test_paths_control_is_under_nspawnctl_root(paths):
    assert paths.control_dir("c1") == (paths.machines.parents[2]
                                       / "run/systemd/system.control/systemd-nspawn@c1.service.d")


def test_remove_deletes_the_units_runtime_dropins(paths, monkeypatch):
    control = live_limit_dropins(paths, "c1")
    (control / "50-Delegate.conf").write_text("[Service]\nDelegate=yes\n")
    remove_op.remove(context(paths, FakeBus(state="inactive")), "c1")
    assert not paths.tree("c1").exists()
    assert not control.exists()


@pytest.mark.parametrize("saved", [None, 512 << 20])
def test_set_on_a_stopped_container_clears_the_live_limits_before_the_reload(paths,
                                                                             monkeypatch, saved):
    save_config(paths, "c1", ContainerConfig(memory_max=saved))
    control = live_limit_dropins(paths, "c1")
    (control / "50-Delegate.conf").write_text("[Service]\nDelegate=yes\n")  # not nspawnctl's
    seen = []

    class Stopped(FakeBus):
        def reload(self):
            seen.append(sorted(p.name for p in control.iterdir()))

    reconfigure.set_config(context(paths, Stopped(state="inactive")), "c1",
                           {"memory_max": "infinity"})
    assert seen == [["50-Delegate.conf"]]


def test_set_on_a_running_container_keeps_the_live_limits(paths, monkeypatch):
    control = live_limit_dropins(paths, "c1")
    reconfigure.set_config(context(paths, FakeBus(state="active")), "c1", {"memory_max": "1G"})
    assert (control / "50-CPUQuota.conf").exists()


def test_exec_in_a_single_command_container_needs_nothing_in_its_tree(paths, monkeypatch):
    """No env(1) inside: a tree from scratch has none.  The environment is given to the
    entered process itself, and the command runs as given."""
    save_config(paths, "c1", ContainerConfig(boot=False, command=("/bin/app",),
                                             env=("MODE=prod", "PATH=/opt/bin")))
    monkeypatch.setattr(execute, "leader", lambda bus, name: 4242)
    ran = []
    monkeypatch.setattr(execute, "enter", lambda pid, command, env, **options: ran.append(
        (pid, command, env)) or 0)
    assert execute.exec_(context(paths), "c1", ["app", "--x"]) == 0
    assert ran == [(4242, ["app", "--x"], {"PATH": "/opt/bin", "MODE": "prod"})]


class RecordingBus(FakeBus):
    """FakeBus that keeps set_unit_properties' runtime flag too."""

    def set_unit_properties(self, unit, properties, runtime=False):
        self.calls.append(("set_unit_properties", (unit, list(properties), runtime)))


@pytest.mark.parametrize("state", ["active", "inactive"])
def test_an_unchanged_set_rolls_a_killed_one_forward(paths, monkeypatch, state):
    """What a `set --memory 512M --port 8080:80` killed after it saved the settings leaves: the
    files say 512M and the port, the running unit and the firewall do not yet (a stopped unit
    may still have the runtime drop-ins of an older live set, which override /etc).  The same
    `set` again finds nothing to change in the files and brings the rest up to them."""
    save_config(paths, "c1", ContainerConfig(network="default", memory_max=512 << 20,
                                             ports=(parse_port("8080:80"),)))
    control = live_limit_dropins(paths, "c1")
    bus = RecordingBus(state=state)
    applied = []
    monkeypatch.setattr(reconfigure.network, "apply_host", lambda p: applied.append(p))
    said = reconfigure.set_config(context(paths, bus), "c1",
                                  {"memory_max": "512M", "ports": ("8080:80",)})
    assert said == ["c1: nothing changed"]
    assert applied == [paths]  # the firewall table rendered again from the saved ports
    if state == "active":
        assert bus.calls == [("set_unit_properties", (
            "systemd-nspawn@c1.service",
            [("MemoryMax", 536870912), ("CPUQuotaPerSecUSec", 2**64 - 1), ("TasksMax", 16384)],
            True))]
        assert (control / "50-MemoryMax.conf").exists()  # the live set's own, kept
    else:
        assert [c[0] for c in bus.calls] == ["reload"]
        assert not control.exists()  # what the saved files say decides at the next start


@pytest.mark.parametrize("forwarding, warned", [("0\n", True), ("1\n", False)])
def test_start_on_a_nat_network_says_when_forwarding_is_off(paths, monkeypatch, tmp_path,
                                                           forwarding, warned):
    """doctor's check, made where it matters: a container on an nspawnctl network starts,
    unable to reach out, and the user hears why (one line, with doctor's fix) now, not from
    apt's 'Temporary failure resolving' later."""
    from nspawnctl.network import containers as network
    from nspawnctl.ops.doctor import Probe, check_forwarding
    save_config(paths, "c1", ContainerConfig(network="default"))
    monkeypatch.setattr(network, "ensure_host", lambda paths, cfg: None)
    monkeypatch.setattr(network, "forward_warnings", lambda: [])
    proc = tmp_path / "ip_forward"
    proc.write_text(forwarding)
    monkeypatch.setattr(network, "IP_FORWARD", proc)
    lines: list[str] = []
    ctx = context(paths, FakeBus(), report=lines.append)
    with ctx.holding("c1") as held:
        runtime_lifecycle.request_start(held)
    said = [line for line in lines if "forwarding" in line]
    assert len(said) == warned, lines
    if warned:
        doctor = check_forwarding(Probe(root=tmp_path / "none"))  # no file: off, doctor says
        assert said[0] == f"warning: {doctor.message}; turn it on: {doctor.fix}"
        assert "\n" not in said[0]


def test_a_start_that_ran_out_of_inotify_instances_points_at_doctor(paths, monkeypatch):
    log = "Failed to create control group inotify object: Too many open files"
    monkeypatch.setattr(runtime_lifecycle, "_journal_tail", lambda name, lines=10: log)
    error = runtime_lifecycle._start_failed(context(paths, FakeBus()), "c1")
    assert error.hint.splitlines()[0].startswith("the host's inotify limit is used up")
    assert "nspawnctl doctor" in error.hint and log in error.hint
