"""The settings table: each setting declared once in settings/model.py, and everything derived
from it (CLI options, .nspawn file, drop-in, live properties, status, restart decision) agrees."""

import json
from dataclasses import replace

import click
import pytest
from click.testing import CliRunner

from nspawnctl import cli
from nspawnctl.cli import options as cli_options
from nspawnctl.paths import Paths
from nspawnctl.settings.files import load_config, save_config
from nspawnctl.settings.model import (
    CLI_SETTINGS,
    SETTINGS,
    Apply,
    ContainerConfig,
    describe,
    limits,
    limits_text,
    live_properties,
    needs_restart,
    parse_cli,
)
from nspawnctl.settings.networking import DEFAULT as DEFAULT_NETWORK

FLAGGED = [s for s in CLI_SETTINGS]
SETTING = {s.name: s for s in SETTINGS}

# Each flag as a user types it, what `status --json` then shows for it, and whether a running
# container has to restart for it: written out by hand, not computed from the settings table
# under test (the restart column from systemd-nspawn: it reads its .nspawn file only at start;
# limits are unit properties changed live, ports nspawnctl's firewall, the rest unit settings
# a daemon-reload applies).
EXPECTED: dict[str, tuple[list[str], object, bool]] = {
    "private_users": (["--no-private-users"], False, True),
    "network": (["--network", "host"], "host", True),
    "binds": (["--bind", "/srv/a:/a:ro", "--bind", "/srv/b"], ["/srv/a:/a:ro", "/srv/b:/srv/b"],
              True),
    "env": (["--env", "MODE=prod", "--env", "A=b c"], ["MODE=prod", "A=b c"], True),
    "volumes": (["--volume", "data:/srv/data", "--volume", "conf:/etc/app:ro"],
                ["data:/srv/data", "conf:/etc/app:ro"], True),
    "ports": (["--port", "8080:80", "--port", "127.0.0.1:5353:53/udp"],
              ["8080:80/tcp", "127.0.0.1:5353:53/udp"], False),
    "hostname": (["--hostname", "web.example"], "web.example", True),
    "memory_max": (["--memory", "512M"], 536870912, False),
    "cpu_quota": (["--cpus", "1.5"], 1.5, False),
    "tasks_max": (["--tasks", "256"], 256, False),
    "restart": (["--restart", "on-failure"], "on-failure", False),
    "start_timeout": (["--start-timeout", "10min"], 600, False),
    "after": (["--after", "db", "--after", "cache"], ["db", "cache"], False),
    "requires": (["--requires", "db"], ["db"], False),
    "health_cmd": (["--health-cmd", "test -e /ok"], ["/bin/sh", "-c", "test -e /ok"], False),
    "health_interval": (["--health-interval", "2min"], 120, False),
    "health_timeout": (["--health-timeout", "10"], 10, False),
    "health_retries": (["--health-retries", "5"], 5, False),
    "health_start_period": (["--health-start-period", "1min 30s"], 90, False),
    "on_unhealthy": (["--on-unhealthy", "restart"], "restart", False),
    # by name only: the value is never shown (tests/unit/test_credential_setting.py)
    "credentials": (["--credential", "db.password=s3cret", "--credential", "token=x"],
                    ["db.password", "token"], True),
    "auto_update": (["--auto-update", "registry"], "registry", False),
}
# The other settings a value needs (ports are published only from a network of nspawnctl's).
EXAMPLES_NEED: dict[str, dict] = {"ports": {"network": DEFAULT_NETWORK}}


def cli_args(setting) -> list[str]:
    """The command line that sets `setting` to its example."""
    return EXPECTED[setting.name][0]


def through_cli(args: list[str]) -> dict:
    """The changes click + the table make of args, as `create` and `set` get them."""
    seen = {}

    @click.command()
    @cli_options.config_options()
    def probe(**options):
        seen.update(parse_cli(options))

    result = CliRunner().invoke(probe, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return seen


def test_every_setting_is_declared_once_with_a_home():
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names))
    for s in SETTINGS:
        assert (s.nspawn is None) != (s.unit is None), s.name
        if s.apply is Apply.LIVE:
            assert s.unit is not None and s.unit.dbus and s.unit.live, s.name


@pytest.mark.parametrize("setting", FLAGGED, ids=[s.name for s in FLAGGED])
def test_setting_round_trips_cli_files_status_json(setting, tmp_path):
    assert setting.name in EXPECTED, f"{setting.name} needs an example to be tested"
    changes = through_cli(cli_args(setting))
    assert list(changes) == [setting.name]
    cfg = ContainerConfig(**EXAMPLES_NEED.get(setting.name, {}), **changes)
    assert getattr(cfg, setting.name) != getattr(ContainerConfig(), setting.name)

    # files: written by save_config, read back by load_config, as every command does
    paths = _paths(tmp_path)
    save_config(paths, "c1", cfg)
    assert load_config(paths, "c1") == cfg

    # status --json: JSON that parses back to itself
    shown = describe(cfg)
    assert json.loads(json.dumps(shown)) == shown


def test_every_flag_has_its_expected_values():
    assert sorted(EXPECTED) == sorted(s.name for s in FLAGGED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_status_json_shows_what_was_set(name):
    args, expected, _ = EXPECTED[name]
    assert describe(ContainerConfig(**EXAMPLES_NEED.get(name, {}), **through_cli(args)))[
        PUBLIC[name]] == expected


# A setting's one name, as a user types it (issue 34: --memory was mem= in list's LIMITS and
# memory_max in status); written out by hand.
PUBLIC = {"private_users": "private_users", "network": "network", "binds": "bind", "env": "env",
          "volumes": "volume",
          "ports": "port", "hostname": "hostname", "memory_max": "memory", "cpu_quota": "cpus",
          "tasks_max": "tasks", "restart": "restart", "start_timeout": "start_timeout",
          "after": "after", "requires": "requires", "health_cmd": "health_cmd",
          "health_interval": "health_interval", "health_timeout": "health_timeout",
          "health_retries": "health_retries", "health_start_period": "health_start_period",
          "on_unhealthy": "on_unhealthy", "credentials": "credential",
          "auto_update": "auto_update"}


def test_a_setting_is_shown_under_its_flags_name_everywhere():
    assert {s.name: s.public for s in FLAGGED} == PUBLIC
    cfg = ContainerConfig(**through_cli(["--memory", "512M", "--cpus", "1.5", "--tasks", "9"]))
    assert set(describe(cfg)) >= set(PUBLIC.values())
    assert not set(describe(cfg)) & (set(PUBLIC) - set(PUBLIC.values()))
    assert limits(cfg) == {"memory": 536870912, "cpus": 1.5, "tasks": 9}
    assert limits_text(limits(cfg)) == "memory=512M cpus=1.5 tasks=9"
    assert limits_text(limits(ContainerConfig())) is None


def test_status_json_of_a_start_timeout_of_infinity_and_of_nothing_set():
    # JSON has no infinity, and one type per key: no limit is null, as for memory
    assert describe(ContainerConfig(**through_cli(["--start-timeout", "infinity"])))[
        "start_timeout"] is None
    unset = describe(ContainerConfig())
    assert [unset[n] for n in ("bind", "port", "memory", "hostname", "start_timeout")] == \
        [[], [], None, None, None]


def _paths(root):
    return Paths(machines=root / "machines", nspawn=root / "nspawn", units=root / "units",
                 state=root / "state", cache=root / "cache")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_restart_decision(name):
    """needs_restart names exactly the changed settings a running container must restart for."""
    args, _, restart = EXPECTED[name]
    base = ContainerConfig(**EXAMPLES_NEED.get(name, {}))
    cfg = replace(base, **through_cli(args))
    assert needs_restart(base, cfg) == ([SETTING[name].public] if restart else [])
    if SETTING[name].apply is Apply.LIVE:
        assert live_properties(cfg) != live_properties(ContainerConfig())


def test_every_flag_is_on_create_and_set():
    for command in ("create", "set"):
        cmd = cli.load(command)
        params = {p.name for p in cmd.get_params(click.Context(cmd))}
        assert {s.name for s in FLAGGED} <= params, command


def test_unknown_keys_and_user_dropins_survive_a_rewrite(tmp_path):
    paths = _paths(tmp_path)
    save_config(paths, "c1", ContainerConfig())
    nspawn = paths.nspawn_file("c1")
    nspawn.write_text(nspawn.read_text() + "\n[Exec]\nKillSignal=SIGTERM\n# mine\n")
    mine = paths.dropin_dir("c1") / "90-mine.conf"
    mine.write_text("[Service]\nNice=5\n")
    save_config(paths, "c1", replace(ContainerConfig(), hostname="h", memory_max=1 << 30))
    assert "KillSignal=SIGTERM" in nspawn.read_text() and "# mine" in nspawn.read_text()
    assert mine.read_text() == "[Service]\nNice=5\n"
    assert load_config(paths, "c1").hostname == "h"


def test_clone_keeps_hand_edits_and_user_dropins(tmp_path):
    paths = _paths(tmp_path)
    save_config(paths, "src", ContainerConfig(memory_max=1 << 30))
    nspawn = paths.nspawn_file("src")
    nspawn.write_text(nspawn.read_text() + "\n[Exec]\nKillSignal=SIGINT\n")
    (paths.dropin_dir("src") / "90-mine.conf").write_text("[Service]\nNice=5\n")
    copied = save_config(paths, "dst", load_config(paths, "src"), like="src")
    assert "KillSignal=SIGINT" in paths.nspawn_file("dst").read_text()
    assert copied == [paths.dropin_dir("dst") / "90-mine.conf"]
    assert copied[0].read_text() == "[Service]\nNice=5\n"
    assert load_config(paths, "dst") == load_config(paths, "src")


def test_failed_create_gives_back_the_users_nspawn_file(tmp_path):
    from nspawnctl.errors import Error
    from nspawnctl.store.commit import finish
    from nspawnctl.store.containers import Store
    paths = _paths(tmp_path)
    paths.nspawn.mkdir(parents=True)
    mine = "[Exec]\nKillSignal=SIGINT\n"
    paths.nspawn_file("c1").write_text(mine)
    paths.tree("c1").mkdir(parents=True)  # the commit (rename into place) will fail
    stage = tmp_path / "stage"
    (stage / "tree").mkdir(parents=True)
    with pytest.raises(Error, match="already exists"):
        finish(Store(paths), stage, "c1", ContainerConfig(memory_max=1 << 30), "c1")
    assert paths.nspawn_file("c1").read_text() == mine
    assert not (paths.dropin_dir("c1")).exists()
