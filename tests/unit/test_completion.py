"""Shell completion: what Tab offers, through click's completion API and through the scripts
install-extras writes, run by real bash, zsh and fish, all against a private root (no bus)."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.shell_completion import ShellComplete

from nspawnctl.cli import cli, extras
from nspawnctl.network.state import NetworkState
from nspawnctl.paths import Paths
from nspawnctl.settings.files import save_config
from nspawnctl.settings.model import ContainerConfig
from nspawnctl.store import snapshots

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A store with containers web, db and api (web runs), a network, two snapshots of web
    and a cached image, made by the store's own code where it has a writer (once: its
    commits sync the filesystem, which takes long on a busy machine)."""
    root = tmp_path_factory.mktemp("completion") / "root"
    p = Paths.under(root)
    for name in ("web", "db", "api"):
        (p.tree(name) / "etc").mkdir(parents=True)
        save_config(p, name, ContainerConfig())
    # what machined keeps for a running machine (and its unit: a link, not a machine)
    machined = p.control.parent / "machines"
    machined.mkdir(parents=True)
    (machined / "web").write_text("NAME=web\n")
    os.symlink("web", machined / "unit:systemd-nspawn@web.service")
    for tag in ("before-php", "nightly"):
        stage = root.parent / f"stage-{tag}"
        (stage / "snapshot").mkdir(parents=True)
        method = snapshots.copy_content(p, "web", stage / "snapshot")
        snapshots.commit(p, "web", tag, stage, {"method": method})
    NetworkState(p.state / "network", routes=lambda: []).create("backend")
    image = p.images / "0123abcd"
    image.mkdir(parents=True)
    (image / "meta.json").write_text(json.dumps({"source": "debootstrap:bookworm"}))
    return root


@pytest.fixture
def paths(store, tmp_path, monkeypatch) -> Paths:
    """A copy of that store of the test's own, as NSPAWNCTL_ROOT."""
    root = tmp_path / "root"
    shutil.copytree(store, root, symlinks=True)
    monkeypatch.setenv("NSPAWNCTL_ROOT", str(root))
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent")
    return Paths.from_env()


def complete(args: list[str], incomplete: str = "") -> list[str]:
    """What Tab offers after `nspawnctl ARGS INCOMPLETE`, through click's own API."""
    comp = ShellComplete(cli, {}, "nspawnctl", extras.COMPLETE_VAR)
    return [item.value for item in comp.get_completions(args, incomplete)]


@pytest.mark.parametrize("command", ["start", "remove", "enable", "disable", "status", "set",
                                     "upgrade", "clone", "export", "snapshot list", "snapshots",
                                     "snapshot create", "snapshot rm", "rollback", "inspect",
                                     "rename"])
def test_container_names_are_completed(paths, command):
    assert complete(command.split()) == ["api", "db", "web"]
    assert complete(command.split(), "w") == ["web"]


def test_what_is_no_container_is_not_offered(paths):
    (paths.machines / "bad name").mkdir()      # a directory no command would take
    (paths.machines / ".hidden").mkdir()
    (paths.machines / "afile").write_text("")
    assert complete(["start"]) == ["api", "db", "web"]


def test_names_already_given_are_not_offered_again(paths):
    assert complete(["start", "web", "db"]) == ["api"]


@pytest.mark.parametrize("command", ["stop", "restart", "kill", "exec", "shell", "logs",
                                     "stats", "top"])
def test_running_containers_come_first(paths, command):
    assert complete([command]) == ["web"]
    # none that runs matches: every container that does is offered
    assert complete([command], "d") == ["db"]


def test_snapshot_names_a_container_besides_its_subcommands(paths):
    offered = complete(["snapshot"])
    assert offered[:4] == ["create", "list", "rm", "rollback"]
    assert offered[4:] == ["api", "db", "web"]


@pytest.mark.parametrize("command", ["rollback", "snapshot rollback", "snapshot rm"])
def test_snapshot_tags_of_the_named_container(paths, command):
    assert complete([*command.split(), "web"]) == ["before-php", "nightly"]
    assert complete([*command.split(), "web"], "n") == ["nightly"]
    assert complete([*command.split(), "db"]) == []


def test_network_names(paths):
    assert complete(["network", "remove"]) == ["backend"]
    assert complete(["create", "x", "--network"]) == ["default", "none", "host", "backend"]
    assert complete(["set", "web", "--network"], "b") == ["backend"]


def test_order_options_name_the_other_containers(paths):
    assert complete(["set", "web", "--after"]) == ["api", "db"]
    assert complete(["set", "web", "--requires", "db", "--requires"]) == ["api"]


def test_cached_images_for_from(paths):
    assert complete(["create", "x", "--from"]) == ["debootstrap:bookworm"]


def test_files_where_a_path_goes(paths):
    comp = ShellComplete(cli, {}, "nspawnctl", extras.COMPLETE_VAR)
    for args in (["export", "web"], ["cp"], ["create", "x", "--add"], ["set", "x", "--bind"]):
        assert [i.type for i in comp.get_completions(args, "/tm")] == ["file"], args


def test_a_broken_store_offers_nothing_and_says_nothing(paths):
    (paths.state / "network/networks.json").write_text("{not json")
    assert complete(["network", "remove"]) == []
    assert complete(["create", "x", "--network"]) == ["default", "none", "host"]
    os.chmod(paths.machines, 0)
    try:
        if os.access(paths.machines, os.R_OK):  # root reads it anyway: move it instead
            os.chmod(paths.machines, 0o700)
            paths.machines.rename(paths.machines.with_name("gone"))
            paths.machines.write_text("not a directory")
        assert complete(["start"]) == []
        assert complete(["rollback", "web"]) == []
    finally:
        if paths.machines.is_dir():
            os.chmod(paths.machines, 0o700)


# Arguments that name something new (or a command to run): nothing to complete.
NEW = {("create", "name"), ("clone", "dst"), ("snapshot create", "tag"),
       ("network create", "name"), ("exec", "command"), ("shell", "command"),
       ("login", "registry"), ("run", "name"), ("rename", "new"),
       ("volume create", "name"), ("volume import", "name")}


def _arguments(group: click.Group, prefix: str = ""):
    ctx = click.Context(group, info_name="nspawnctl")
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            yield from _arguments(command, f"{path} ")
        for param in command.params:
            if isinstance(param, click.Argument) and not command.hidden:
                yield path, param


def test_every_argument_completes_something_or_is_new():
    """A new command's NAME argument cannot be left to click's default (which offers
    nothing): it is completed, or listed here as naming something new."""
    missing = [(path, param.name) for path, param in _arguments(cli)
               if param._custom_shell_complete is None and (path, param.name) not in NEW]
    assert missing == []


def test_completion_imports_no_pystemd(paths):
    """A Tab runs nspawnctl: it must not pay for pystemd (nor need a bus).  systemd/bus.py
    puts an empty stand-in for pystemd's package in sys.modules as it loads (so that
    pystemd's __init__ is never run): what counts is pystemd's own code, loaded or not."""
    code = ("import sys; from nspawnctl.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "loaded = lambda p: any(m == p and getattr(sys.modules[m], '__file__', None)\n"
            "                       or m.startswith(p + '.') for m in sys.modules)\n"
            "print(loaded('pystemd'), loaded('pyroute2'), file=sys.stderr)")
    env = dict(os.environ, PYTHONPATH=str(REPO), _NSPAWNCTL_COMPLETE="bash_complete",
               COMP_WORDS="nspawnctl stop ", COMP_CWORD="2")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.stdout == "plain,web\n"
    assert out.stderr == "False False\n"


# --- the installed scripts, in the real shells -----------------------------------------------

@pytest.fixture
def shell_env(paths, tmp_path):
    """install-extras into a private root, and an `nspawnctl` on PATH that runs this
    checkout (the scripts call nspawnctl by name, as a user's shell does)."""
    installed = tmp_path / "installed"
    extras.install(cli, installed)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "nspawnctl"
    shim.write_text(f"#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m nspawnctl \"$@\"\n")
    shim.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", HOME=str(tmp_path),
               XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_DATA_HOME=str(tmp_path / "data"))
    return installed, env


def _needs(tool: str):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (make deps installs it)")


BASH_COMPLETION = Path("/usr/share/bash-completion/bash_completion")


def test_bash_completes_container_names(shell_env):
    """bash-completion finds the script by the command's name where it looks (XDG_DATA_DIRS,
    here the private root's /usr/local/share), as at an interactive Tab."""
    _needs("bash")
    if not BASH_COMPLETION.exists():
        pytest.skip("bash-completion is not installed (make deps installs it)")
    installed, env = shell_env
    env["XDG_DATA_DIRS"] = str(installed / "usr/local/share")
    out = subprocess.run(
        ["bash", "-c", f". {BASH_COMPLETION}; _completion_loader nspawnctl; "
                       'COMP_WORDS=(nspawnctl start ""); COMP_CWORD=2; '
                       '_nspawnctl_completion nspawnctl; printf "%s\\n" "${COMPREPLY[@]}"'],
        env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["api", "db", "web"], out


def test_fish_completes_container_names(shell_env):
    """fish loads the script from its vendor directory (under XDG_DATA_DIRS: here the private
    root's /usr/share) at the first Tab."""
    _needs("fish")
    installed, env = shell_env
    env["XDG_DATA_DIRS"] = str(installed / "usr/share")
    out = subprocess.run(["fish", "-c", "complete -C 'nspawnctl rollback web '"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["before-php", "nightly"], out


def test_zsh_completes_at_the_first_tab_from_its_fpath(shell_env):
    """zsh autoloads _nspawnctl from its fpath at the first Tab: that Tab must complete."""
    _needs("zsh")
    installed, env = shell_env
    fpath = (installed / extras.COMPLETIONS["zsh"]).parent
    driver = f"""
zmodload zsh/zpty
zpty z 'PS1="> " zsh -f -i'
zpty -w z 'fpath=({fpath} $fpath); autoload -U compinit; compinit -u -D'
zpty -w -n z $'nspawnctl network remove \\t'
for i in {{1..100}}; do
    zpty -r -t z chunk && out+=$chunk
    [[ $out == *backend* ]] && break
    sleep 0.05
done
zpty -d z
print -r -- $out
"""
    started = time.monotonic()
    out = subprocess.run(["zsh", "-f", "-c", driver], env=env, capture_output=True,
                         text=True, timeout=60)
    assert "nspawnctl network remove backend" in out.stdout, out
    assert time.monotonic() - started < 30
