"""Order between containers (store/order.py): names that exist, no cycles, no orphans on
remove; and the boot-time recovery (ops/host.py) on a store a crash left behind."""

import os

import pytest

from nspawnctl.errors import Error
from nspawnctl.ops import host
from nspawnctl.settings.files import save_config
from nspawnctl.settings.model import ContainerConfig
from nspawnctl.store import order, overlay
from nspawnctl.systemd import bootunits


def make(paths, name, **settings):
    paths.tree(name).mkdir(parents=True)
    save_config(paths, name, ContainerConfig(network="none", **settings))


def test_order_needs_existing_containers(paths):
    make(paths, "db")
    order.check(paths, "web", ContainerConfig(requires=("db",), after=("db",)))
    with pytest.raises(Error) as error:
        order.check(paths, "web", ContainerConfig(after=("cache",)))
    assert error.value.message == "no container named 'cache' to order web after"
    with pytest.raises(Error) as error:
        order.check(paths, "db", ContainerConfig(requires=("db",)))
    assert "after itself" in error.value.message


def test_order_refuses_a_cycle_naming_it(paths):
    make(paths, "db", after=("cache",))
    make(paths, "cache", requires=("web",))
    make(paths, "web")
    with pytest.raises(Error) as error:
        order.check(paths, "web", ContainerConfig(requires=("db",)))
    assert error.value.message.endswith("makes a cycle: web -> db -> cache -> web")
    order.check(paths, "other", ContainerConfig(requires=("db", "web")))  # a diamond is fine


def test_dependents_are_what_remove_would_orphan(paths):
    make(paths, "db")
    make(paths, "web", requires=("db",))
    make(paths, "worker", after=("db",))
    assert order.dependents(paths, "db") == ["web", "worker"]
    assert order.dependents(paths, "db", ignoring=("web", "worker")) == []
    assert order.dependents(paths, "web") == []


def test_install_units_enables_recovery_once(paths):
    assert bootunits.install_units(paths)
    unit = (paths.units / bootunits.RECOVER_UNIT).read_text()
    assert "ExecStart=" in unit and " -m nspawnctl recover" in unit
    assert f"RequiresMountsFor={paths.machines} {paths.state}" in unit
    dropin = paths.units / bootunits.TEMPLATE_DROPINS / bootunits.RECOVER_DROPIN
    assert "After=nspawnctl-recover.service" in dropin.read_text()
    for target in bootunits.WANTED_BY:
        assert os.readlink(paths.units / f"{target}.wants" / bootunits.RECOVER_UNIT) == \
            str(paths.units / bootunits.RECOVER_UNIT)
    assert not bootunits.install_units(paths)  # a second install changes nothing


def test_recover_rolls_back_a_cut_create_and_forward_a_cut_overlay(paths):
    make(paths, "whole")
    # a create cut before its commit: settings, no tree
    save_config(paths, "half", ContainerConfig(network="none"))
    # an overlay create cut after its commit, before its mount unit was enabled
    lower = paths.images / "k/tree"
    lower.mkdir(parents=True)
    overlay.write_unit(paths, "ov", lower)
    paths.tree("ov").mkdir(parents=True)
    # a staging directory of a command of another boot
    stale = paths.staging_in(paths.machines) / f"create-x.{os.getpid()}-{'0' * 12}.abc"
    stale.mkdir(parents=True)
    done = host.recover(paths)
    assert not paths.nspawn_file("half").exists() and not stale.exists()
    assert paths.nspawn_file("whole").exists()
    assert os.path.islink(overlay.wants_link(paths, "ov"))
    assert any("the settings of half" in line for line in done)
    assert any(str(stale) in line for line in done)
    assert "enabled the mount unit of overlay container ov" in done
    assert host.recover(paths) == []  # whole now: nothing more to do
