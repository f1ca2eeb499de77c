"""The health check's settings: what --health-* take and refuse, how they are kept in the
.nspawn file, and an OCI image's Healthcheck read as podman reads it (hostile input)."""

import pytest
from click.testing import CliRunner

from nspawnctl.cli import App, cli
from nspawnctl.errors import INVALID_INPUT, USAGE, Error
from nspawnctl.ops import create
from nspawnctl.settings import health
from nspawnctl.settings.model import ContainerConfig, given_settings
from nspawnctl.settings.nspawnfile import parse_nspawn, render_nspawn, update_nspawn
from nspawnctl.sources.oci.source import apply_image_config
from tests.unit.fakes import FakeBus, context


def test_a_command_runs_by_the_shell_and_none_removes_it():
    assert health.parse_command("test -e /ok") == ("/bin/sh", "-c", "test -e /ok")
    assert health.parse_command("none") == ()
    assert health.show_command(("/bin/sh", "-c", "test -e /ok")) == "test -e /ok"
    assert health.show_command(("curl", "-f", "http://x/a b")) == "curl -f 'http://x/a b'"


@pytest.mark.parametrize("parse, text, says", [
    (health.parse_command, "", "it is empty"),
    (health.parse_command, "   ", "it is empty"),
    (health.parse_command, "true\ntouch /x", "line breaks"),
    (health.parse_command, "x" * 5000, "longer than 4096"),
    (health.parse_interval, "0", "positive number of seconds"),
    (health.parse_interval, "0s", "positive number of seconds"),
    (health.parse_interval, "infinity", "expected a number of seconds"),
    (health.parse_interval, "2d", "more than a day"),
    (health.parse_interval, "soon", "invalid time span"),
    (health.parse_timeout, "0", "positive number of seconds"),
    (health.parse_retries, "0", "from 1 to 1000"),
    (health.parse_retries, "-1", "from 1 to 1000"),
    (health.parse_retries, "99999999999999999999", "from 1 to 1000"),
    (health.parse_start_period, "infinity", "expected a number of seconds"),
])
def test_bad_values_are_one_line_each(parse, text, says):
    with pytest.raises(Error, match=says) as e:
        parse(text)
    assert e.value.exit_code == USAGE and "\n" not in e.value.message


def test_spans_are_whole_seconds_and_a_start_period_may_be_zero():
    assert health.parse_interval("2") == 2
    assert health.parse_interval("1min 30s") == 90
    assert health.parse_interval("500ms") == 1  # rounded up, as systemd's timers take it
    assert health.parse_start_period("0") == 0
    assert health.parse_retries("2") == 2


def test_the_records_round_trip_and_defaults_write_nothing():
    plain = render_nspawn(ContainerConfig())
    assert "health" not in plain and "unhealthy" not in plain
    cfg = ContainerConfig(health_cmd=health.parse_command("test -e /ok"), health_interval=2,
                          health_timeout=7, health_retries=2, health_start_period=9,
                          on_unhealthy="restart")
    text = render_nspawn(cfg)
    assert "# nspawnctl-health-interval: 2\n" in text
    assert parse_nspawn(text) == cfg
    assert parse_nspawn(update_nspawn(text, ContainerConfig())) == ContainerConfig()


def test_a_hand_edited_record_systemd_would_not_take_is_left_and_the_default_holds():
    text = render_nspawn(ContainerConfig()) + "# nspawnctl-health-interval: 0\n" \
        "# nspawnctl-on-unhealthy: explode\n"
    cfg = parse_nspawn(text)
    assert cfg.health_interval == 30 and cfg.on_unhealthy == "none"


def test_the_config_refuses_what_no_parser_would_make():
    with pytest.raises(Error):
        ContainerConfig(health_interval=0)
    with pytest.raises(Error):
        ContainerConfig(health_cmd=("",))
    with pytest.raises(Error):
        ContainerConfig(on_unhealthy="reboot")


# ---------------------------------------------------------------- an image's Healthcheck

def test_an_images_healthcheck_as_podman_reads_it():
    assert health.image_healthcheck(None) == {}
    assert health.image_healthcheck({"Test": ["NONE"]}) == {}
    assert health.image_healthcheck({"Test": ["CMD", "curl", "-f", "http://localhost/"],
                                     "Interval": 10_000_000_000, "Timeout": 1_500_000_000,
                                     "Retries": 4, "StartPeriod": 0}) == {
        "health_cmd": ("curl", "-f", "http://localhost/"), "health_interval": 10,
        "health_timeout": 2, "health_retries": 4}
    assert health.image_healthcheck({"Test": ["CMD-SHELL", "pg_isready || exit 1"]}) == {
        "health_cmd": ("/bin/sh", "-c", "pg_isready || exit 1")}


@pytest.mark.parametrize("value", [
    [], "CMD true", {"Test": "CMD true"}, {"Test": ["CMD"]}, {"Test": ["CMD", ""]},
    {"Test": ["CMD", 1]}, {"Test": ["SHELL", "x"]}, {"Test": ["CMD-SHELL", "a", "b"]},
    {"Test": ["CMD", "a\nb"]}, {"Test": ["CMD", "x" * 5000]}, {"Test": ["CMD"] + ["x"] * 300},
    {"Test": ["CMD", "true"], "Interval": -1}, {"Test": ["CMD", "true"], "Interval": 1.5},
    {"Test": ["CMD", "true"], "Interval": 10**30}, {"Test": ["CMD", "true"], "Retries": True},
    {"Test": ["CMD", "true"], "Retries": 10**9}, {"Test": ["CMD", "true"], "Timeout": "5s"},
])
def test_a_hostile_healthcheck_is_refused_as_the_images_content(value):
    with pytest.raises(Error) as e:
        health.image_healthcheck(value)
    assert e.value.exit_code == INVALID_INPUT and "\n" not in e.value.message


class _Image:
    env = ()
    working_dir = None
    health = (("health_cmd", ("check",)), ("health_interval", 10), ("health_retries", 4))


def test_create_takes_the_images_check_unless_its_options_say_otherwise():
    cfg = apply_image_config(ContainerConfig(), _Image(), False, ("app",))
    assert (cfg.health_cmd, cfg.health_interval, cfg.health_retries) == (("check",), 10, 4)
    mine = apply_image_config(ContainerConfig(health_retries=9), _Image(), False, ("app",))
    assert (mine.health_cmd, mine.health_retries) == (("check",), 9)
    own = apply_image_config(ContainerConfig(health_cmd=("/bin/sh", "-c", "x")), _Image(),
                             False, ("app",))
    assert (own.health_cmd, own.health_interval) == (("/bin/sh", "-c", "x"), 30)


def test_a_given_health_cmd_none_leaves_out_the_images_check():
    """--health-cmd none at create (a stack's health-cmd: none, compose's disable: true) is
    no check, whatever the image's Healthcheck says, as podman's --health-cmd none."""
    cfg = apply_image_config(ContainerConfig(health_cmd=health.parse_command("none")), _Image(),
                             False, ("app",), given={"health_cmd"})
    assert (cfg.health_cmd, cfg.health_interval, cfg.health_retries) == ((), 30, 3)
    assert not render_nspawn(cfg).count("nspawnctl-health")


def test_an_option_given_at_its_default_value_wins_over_the_image():
    cfg = apply_image_config(ContainerConfig(health_interval=30), _Image(), False, ("app",),
                             given={"health_interval"})
    assert (cfg.health_cmd, cfg.health_interval, cfg.health_retries) == (("check",), 30, 4)


def test_given_settings_are_the_options_given_also_at_their_defaults():
    options = {"health_cmd": "none", "health_interval": "30s", "health_retries": None,
               "after": (), "ports": ("8080:80",), "memory": None}
    assert given_settings(options) == {"health_cmd", "health_interval", "ports"}


def test_create_on_the_command_line_says_which_settings_it_was_given(private_root,
                                                                       monkeypatch):
    app = App()
    app._ctx = context(private_root, FakeBus())
    seen: dict = {}
    monkeypatch.setattr(create, "create", lambda ctx, name, source, cfg, request, **kw:
                        seen.update(cfg=cfg, **kw) or {"method": "copy", "seconds": 0.1})
    r = CliRunner().invoke(cli, ["create", "web", "--from", "oci-archive:/img.tar",
                                 "--health-cmd", "none", "--health-retries", "3"], obj=app)
    assert r.exit_code == 0, r.output
    assert {"health_cmd", "health_retries"} <= seen["given"]
    assert "health_interval" not in seen["given"] and seen["cfg"].health_cmd == ()
