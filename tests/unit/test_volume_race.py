"""`volume remove` against a command giving a container that volume at the same moment
(create --volume, set --volume), on a private root: each side paused at its worst moment,
between its check and its write, while the other runs.  Never may both succeed: a
container's settings would then name a volume that is gone (it would not start, and its
writes meant for the volume would have nowhere to go)."""

import shutil
import threading
import time

import pytest

from nspawnctl.errors import Conflict, Error, NotFound
from nspawnctl.ops import create as create_ops
from nspawnctl.ops import reconfigure
from nspawnctl.ops import volumes as volume_ops
from nspawnctl.settings.files import load_config, save_config
from nspawnctl.settings.model import ContainerConfig
from nspawnctl.settings.values import parse_volume
from nspawnctl.store import volumes
from nspawnctl.systemd import nspawn
from tests.unit.fakes import context

TRUE = shutil.which("true") or "/bin/true"
WAIT = 20  # seconds: far more than either side needs


@pytest.fixture
def paths(private_root, monkeypatch):
    monkeypatch.setattr(nspawn, "nspawn_version", lambda: 252)
    volumes.create(private_root, "data")
    return private_root


def give_create(ctx):
    """create c1 --from scratch --add true --network none --volume data:/srv."""
    cfg = ContainerConfig(network="none", volumes=(parse_volume("data:/srv"),))
    create_ops.create(ctx, "c1", "scratch", cfg, create_ops.make_request(ctx, adds=(TRUE,)))


def give_set(ctx):
    """set c1 --volume data:/srv."""
    reconfigure.set_config(ctx, "c1", {"volumes": ("data:/srv",)})


def make_c1(paths, how):
    if how is give_set:  # set's container is there already, without the volume
        (paths.machines / "c1").mkdir(parents=True)
        save_config(paths, "c1", ContainerConfig(network="none"))


def outcome(action) -> str | Error:
    try:
        action()
    except Error as e:
        return e
    return "done"


def no_container_without_its_volume(paths):
    """The invariant: a container whose settings mount data exists only with data."""
    if (paths.machines / "c1").is_dir() and load_config(paths, "c1").volumes:
        assert volumes.exists(paths, "data"), \
            "c1's settings mount volume data, which volume remove deleted"


@pytest.mark.parametrize("give", [give_create, give_set], ids=["create", "set"])
def test_remove_between_the_givers_check_and_its_write(paths, monkeypatch, give):
    """The giver checked that data exists and is about to write the settings that name it
    (create: its commit; set: its save) when volume remove runs.  Before the fix remove found
    no user (the settings did not name it yet), deleted the volume, and the giver wrote."""
    make_c1(paths, give)
    at_write, go = threading.Event(), threading.Event()
    module, name = (create_ops, "finish") if give is give_create else (reconfigure,
                                                                      "save_config")
    write = getattr(module, name)

    def paused(*args, **kwargs):
        at_write.set()
        assert go.wait(WAIT)
        return write(*args, **kwargs)

    monkeypatch.setattr(module, name, paused)
    ctx = context(paths)
    given: list = []
    giver = threading.Thread(target=lambda: given.append(outcome(lambda: give(ctx))))
    giver.start()
    assert at_write.wait(WAIT), "the giver never reached its write"
    removed = outcome(lambda: volume_ops.remove(ctx, "data"))
    go.set()
    giver.join(WAIT)
    no_container_without_its_volume(paths)
    # the giver holds the volume from its check to its write: remove is refused at once
    assert given == ["done"], given
    assert isinstance(removed, Conflict) and "volume 'data' is busy" in removed.message, \
        removed
    assert load_config(paths, "c1").volumes == (parse_volume("data:/srv"),)
    # and afterwards, the container is a user remove sees
    removed = outcome(lambda: volume_ops.remove(ctx, "data"))
    assert isinstance(removed, Conflict) and "used by c1" in removed.message, removed


@pytest.mark.parametrize("give", [give_create, give_set], ids=["create", "set"])
def test_the_giver_between_removes_check_and_its_rename(paths, monkeypatch, give):
    """volume remove found no user and is about to rename the volume away when the giver
    runs.  Before the fix the giver's check passed (the volume was still there) and it
    wrote; then remove deleted the volume."""
    make_c1(paths, give)
    checked, go = threading.Event(), threading.Event()
    users = volumes.users

    def paused(*args, **kwargs):
        found = users(*args, **kwargs)
        checked.set()
        assert go.wait(WAIT)
        return found

    monkeypatch.setattr(volumes, "users", paused)
    waiting = threading.Event()
    ctx = context(paths, report=lambda line: waiting.set() if "waiting for volume data"
                  in line else None)
    removed: list = []
    remover = threading.Thread(target=lambda: removed.append(
        outcome(lambda: volume_ops.remove(context(paths), "data"))))
    remover.start()
    assert checked.wait(WAIT), "remove never reached its check"
    given: list = []
    giver = threading.Thread(target=lambda: given.append(outcome(lambda: give(ctx))))
    giver.start()
    deadline = time.monotonic() + WAIT
    while not waiting.is_set() and giver.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    go.set()
    remover.join(WAIT)
    giver.join(WAIT)
    no_container_without_its_volume(paths)
    # the giver waited for remove, then found the volume gone: refused, nothing written
    assert waiting.is_set(), "the giver did not wait for volume remove"
    assert removed == ["done"], removed
    assert len(given) == 1 and isinstance(given[0], NotFound) and \
        "no volume named 'data'" in given[0].message, given
    assert not (paths.machines / "c1").is_dir() if give is give_create else \
        load_config(paths, "c1").volumes == ()
