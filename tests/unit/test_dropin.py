"""The unit drop-in, live unit properties and what needs a restart."""

import math
from dataclasses import replace

import pytest

from nspawnctl.errors import Error
from nspawnctl.settings.dropin import parse_dropin, render_dropin
from nspawnctl.settings.model import (
    TEMPLATE_TASKS_MAX,
    UINT64_INFINITY,
    ContainerConfig,
    describe,
    parse_bind,
    parse_cpus,
    parse_size,
)
from nspawnctl.settings.model import live_properties as unit_properties
from nspawnctl.settings.model import needs_restart as diff_needs_restart
from nspawnctl.settings.values import format_cpu_quota

LIMITED = ContainerConfig(memory_max=parse_size("512M"), cpu_quota=parse_cpus("1.5"),
                          tasks_max=256, restart="on-failure")


def service_lines(text):
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines[0] == "[Unit]"
    return lines[lines.index("[Service]"):]


HOLD_ASSERTION = "AssertPathExists=!/run/nspawnctl/holds/%i"


def unit_lines(text):
    """The [Unit] settings besides the hold assertion every drop-in has (see below)."""
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines[1] == HOLD_ASSERTION, lines
    return lines[2:lines.index("[Service]")]


def test_every_dropin_asserts_its_container_is_not_held():
    # store/hold.py: while nspawnctl swaps a tree, a start by anyone fails this assertion
    for cfg in (ContainerConfig(), LIMITED):
        assert HOLD_ASSERTION in render_dropin(cfg).splitlines()
    assert "AssertPathExists=!/x/run/nspawnctl/holds/%i" in render_dropin(
        ContainerConfig(), holds="/x/run/nspawnctl/holds").splitlines()


def test_render_dropin_with_everything_set():
    assert service_lines(render_dropin(LIMITED)) == [
        "[Service]", "MemoryMax=512M", "CPUQuota=150%", "TasksMax=256", "Restart=on-failure"]


def test_render_dropin_only_writes_what_is_set():
    # Restart=no is the template's own default: nothing to write.
    assert service_lines(render_dropin(ContainerConfig())) == ["[Service]"]
    assert service_lines(render_dropin(ContainerConfig(tasks_max=10))) == ["[Service]", "TasksMax=10"]


def test_render_dropin_has_no_stray_specifiers():
    # Unit files expand %-specifiers; only CPUQuota='s own percent sign may appear.
    text = "\n".join(service_lines(render_dropin(LIMITED)))
    assert text.count("%") == 1 and "CPUQuota=150%" in text


@pytest.mark.parametrize("cfg", [
    ContainerConfig(),
    LIMITED,
    ContainerConfig(memory_max=parse_size("1.5G"), restart="always"),
    ContainerConfig(memory_max=4097, cpu_quota=parse_cpus("0.3333")),
    ContainerConfig(cpu_quota=parse_cpus("12"), tasks_max=1),
    ContainerConfig(start_timeout=math.inf), ContainerConfig(start_timeout=600),
])
def test_dropin_round_trip(cfg):
    assert replace(ContainerConfig(), **parse_dropin(render_dropin(cfg))) == cfg


@pytest.mark.parametrize("cpus, text", [(1.5, "150%"), (1, "100%"), (0.3333, "33.33%"),
                                        (0.05, "5%"), (16, "1600%")])
def test_format_cpu_quota(cpus, text):
    assert format_cpu_quota(cpus) == text


def test_parse_dropin_reads_hand_edits():
    text = "[Unit]\nDescription=x\n[Service]\n  MemoryMax = 1G \nCPUQuota=50%\nTasksMax=infinity\nOther=1\n"
    assert parse_dropin(text) == {"memory_max": 1 << 30, "cpu_quota": 0.5,
                                  "tasks_max": None, "restart": "no", "start_timeout": None,
                                  "after": (),
                                  "requires": ()}


@pytest.mark.parametrize("value, expected", [
    ("infinity", math.inf), ("0", math.inf), ("2d", 172800), ("1min 30s", 90)])
def test_parse_dropin_reads_start_timeouts_as_systemd_does(value, expected):
    """Hand edits systemd takes are read, not refused: a day is the CLI's limit, not the file's."""
    cfg = replace(ContainerConfig(), **parse_dropin(f"[Service]\nTimeoutStartSec={value}\n"))
    assert cfg.start_timeout == expected
    assert f"TimeoutStartSec={'infinity' if expected == math.inf else expected}" in \
        service_lines(render_dropin(cfg))
    assert describe(cfg)["start_timeout"] == (None if expected == math.inf else expected)


@pytest.mark.parametrize("policy", ["on-abnormal", "on-abort", "on-success", "on-watchdog"])
def test_parse_dropin_reads_every_restart_policy_systemd_has(policy):
    cfg = replace(ContainerConfig(), **parse_dropin(f"[Service]\nRestart={policy}\n"))
    assert cfg.restart == policy
    assert f"Restart={policy}" in service_lines(render_dropin(cfg))


def test_dropin_orders_after_other_containers():
    cfg = ContainerConfig(after=("cache", "db"), requires=("db",))
    text = render_dropin(cfg)
    assert unit_lines(text) == ["After=systemd-nspawn@cache.service systemd-nspawn@db.service",
                                "Requires=systemd-nspawn@db.service"]
    # Requires= alone would start both at once: requiring implies ordering
    assert ContainerConfig(requires=("db",)).after == ("db",)
    assert unit_lines(render_dropin(ContainerConfig(requires=("db",)))) == [
        "After=systemd-nspawn@db.service", "Requires=systemd-nspawn@db.service"]
    assert service_lines(text) == ["[Service]"]
    assert replace(ContainerConfig(), **parse_dropin(text)) == cfg


def test_parse_dropin_adds_up_order_lines_and_leaves_other_units_out():
    text = ("[Unit]\nAfter=systemd-nspawn@a.service network.target\n"
            "After=systemd-nspawn@b.service\nRequires=\n[Service]\nAfter=x\n")
    values = parse_dropin(text)
    assert values["after"] == ("a", "b") and values["requires"] == ()


def test_parse_dropin_refuses_a_bad_container_name():
    with pytest.raises(Error) as error:
        parse_dropin("[Unit]\nAfter=systemd-nspawn@-bad.service\n")
    assert "-bad" in error.value.message


@pytest.mark.parametrize("line", ["MemoryMax=lots", "CPUQuota=1.5", "CPUQuota=x%",
                                  "TasksMax=-1", "Restart=sometimes",
                                  "TimeoutStartSec=soon", "TimeoutStartSec=600000y"])
def test_parse_dropin_rejects_bad_values_naming_them(line):
    with pytest.raises(Error) as error:
        parse_dropin(f"[Service]\n{line}\n")
    assert line.partition("=")[2] in error.value.message


def test_unit_properties():
    assert unit_properties(LIMITED) == [("MemoryMax", 512 << 20),
                                        ("CPUQuotaPerSecUSec", 1_500_000),
                                        ("TasksMax", 256)]


def test_unit_properties_lift_unset_limits():
    assert unit_properties(ContainerConfig()) == [("MemoryMax", UINT64_INFINITY),
                                                  ("CPUQuotaPerSecUSec", UINT64_INFINITY),
                                                  ("TasksMax", TEMPLATE_TASKS_MAX)]


def test_diff_needs_restart():
    old = ContainerConfig()
    assert diff_needs_restart(old, old) == []
    assert diff_needs_restart(old, LIMITED) == []
    assert diff_needs_restart(old, replace(old, image="x")) == []
    new = replace(old, network="host", binds=(parse_bind("/a"),), env=("A=1",), memory_max=1 << 30)
    assert diff_needs_restart(old, new) == ["network", "bind", "env"]
