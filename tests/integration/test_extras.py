"""`man nspawnctl` and Tab on a real systemd host, as provision.sh installs them: the page
shows every command, and bash, through bash-completion's own loader, completes a real running
container's name (machined registered it), a network and a snapshot tag."""

import pytest

from nspawnctl.cli import cli, extras
from tests.unit.test_manpage import _visible_commands

pytestmark = pytest.mark.integration

INSTALLED = ["/" + extras.MAN_PAGE, *("/" + p for p in extras.COMPLETIONS.values())]

# bash-completion loads /usr/local/share/bash-completion/completions/nspawnctl by the
# command's name, as at an interactive Tab; then the completion function it registered runs
# on the words given.
TAB = r"""
. /usr/share/bash-completion/bash_completion
_completion_loader nspawnctl
complete -p nspawnctl >&2
COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
func=$(complete -p nspawnctl | sed -n 's/.* -F \([^ ]*\) .*/\1/p')
"$func" nspawnctl
printf '%s\n' "${COMPREPLY[@]}"
"""


def tab(host, *words) -> list[str]:
    """What Tab offers after `nspawnctl WORDS...` (the last word: what is typed so far)."""
    result = host.run(["bash", "-c", TAB, "bash", "nspawnctl", *words])
    assert result.returncode == 0, str(result)
    assert "_nspawnctl_completion" in result.stderr, str(result)
    return result.stdout.split()


def test_provisioning_installed_the_page_and_the_scripts(host):
    for path in INSTALLED:
        assert host.run(["test", "-s", path]).returncode == 0, path


def test_man_shows_every_command(host, nspawnctl):
    nspawnctl("install-extras")  # this checkout's commands (the testbed's tree is cached)
    result = host.run(["man", "--warnings=w", "nspawnctl"],
                      env={"MANPAGER": "cat", "MANWIDTH": "100"})
    assert result.returncode == 0 and result.stderr == "", str(result)
    assert result.stdout.startswith("NSPAWNCTL(1)")
    commands = _visible_commands(cli, "nspawnctl")  # walked from click, not the generator
    assert len(commands) > 25
    for command in commands:
        assert f"\n   {command} " in result.stdout, command


@pytest.fixture(scope="module")
def tabbed(nspawnctl, made):
    """tab-run runs, tab-stop does not and has snapshots; a network tabnet."""
    busybox = ("--from", "scratch", "--add", "/bin/busybox", "--network", "none")
    made("tab-run", *busybox, "--cmd", "/bin/busybox sleep 3600")
    made("tab-stop", *busybox, "--cmd", "/bin/busybox true")
    nspawnctl("start", "tab-run")
    nspawnctl("snapshot", "tab-stop", "before-php")
    nspawnctl("snapshot", "tab-stop", "nightly")
    nspawnctl("network", "create", "tabnet")
    yield
    nspawnctl("network", "remove", "tabnet", check=False)


def test_tab_completes_container_names(host, tabbed):
    assert tab(host, "start", "tab") == ["tab-run", "tab-stop"]
    assert tab(host, "status", "tab-s") == ["tab-stop"]


def test_tab_offers_the_running_container_to_stop_and_exec(host, tabbed):
    assert tab(host, "stop", "tab") == ["tab-run"]
    assert tab(host, "exec", "tab") == ["tab-run"]


def test_tab_completes_snapshot_tags_and_networks(host, tabbed):
    assert tab(host, "rollback", "tab-stop", "") == ["before-php", "nightly"]
    assert tab(host, "snapshot", "rm", "tab-stop", "n") == ["nightly"]
    assert tab(host, "network", "remove", "tab") == ["tabnet"]
    assert "tabnet" in tab(host, "set", "tab-stop", "--network", "")
