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
    live_properties,
    needs_restart,
    parse_cli,
)
from nspawnctl.settings.networking import DEFAULT as DEFAULT_NETWORK

FLAGGED = [s for s in CLI_SETTINGS]

# What the command line of each flagged setting gives in the round trips below (a switch:
# ("yes",) or ("no",)), and the other settings that value needs.
EXAMPLES: dict[str, tuple[str, ...]] = {
    "private_users": ("no",),
    "network": ("host",),
    "binds": ("/srv/a:/a:ro", "/srv/b"),
    "env": ("MODE=prod", "A=b c"),
    "ports": ("8080:80", "127.0.0.1:5353:53/udp"),
    "hostname": ("web.example",),
    "memory_max": ("512M",),
    "cpu_quota": ("1.5",),
    "tasks_max": ("256",),
    "restart": ("on-failure",),
    "start_timeout": ("10min", "infinity"),
    "after": ("db", "cache"),
    "requires": ("db",),
}
EXAMPLES_NEED: dict[str, dict] = {"ports": {"network": DEFAULT_NETWORK}}


def cli_args(setting) -> list[str]:
    """The command line that sets `setting` to its example."""
    example = EXAMPLES[setting.name]
    if setting.switch:
        return [setting.flag if example == ("yes",) else f"--no-{setting.flag[2:]}"]
    return [arg for value in example for arg in (setting.flag, value)]


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
    assert setting.name in EXAMPLES, f"{setting.name} needs an example to be tested"
    changes = through_cli(cli_args(setting))
    assert list(changes) == [setting.name]
    cfg = ContainerConfig(**EXAMPLES_NEED.get(setting.name, {}), **changes)
    assert getattr(cfg, setting.name) != getattr(ContainerConfig(), setting.name)

    # files: written by save_config, read back by load_config, as every command does
    paths = _paths(tmp_path)
    save_config(paths, "c1", cfg)
    assert load_config(paths, "c1") == cfg

    # status and --json: the value as the table shows it, and JSON that parses back
    shown = json.loads(json.dumps(describe(cfg)))[setting.name]
    assert shown == setting.to_json(getattr(cfg, setting.name))
    if isinstance(getattr(cfg, setting.name), tuple):
        assert shown == [setting.show(v) for v in getattr(cfg, setting.name)]


def _paths(root):
    return Paths(machines=root / "machines", nspawn=root / "nspawn", units=root / "units",
                 state=root / "state", cache=root / "cache")


@pytest.mark.parametrize("setting", FLAGGED, ids=[s.name for s in FLAGGED])
def test_restart_decision_follows_the_declaration(setting):
    base = ContainerConfig(**EXAMPLES_NEED.get(setting.name, {}))
    cfg = replace(base, **through_cli(cli_args(setting)))
    later = needs_restart(base, cfg)
    assert later == ([setting.name] if setting.apply is Apply.RESTART else [])
    if setting.apply is Apply.LIVE:
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
