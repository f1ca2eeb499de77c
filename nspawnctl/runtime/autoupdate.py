"""Auto-update: a container made from a registry image (--auto-update registry) gets the
image its reference names now, its tree replaced whole, its settings kept, and is rolled back
when it is not healthy (ops/autoupdate.py is the command).

    [1/4] stop, snapshot            the snapshot is what a rollback puts back
    [2/4] copy the new image's tree a clone of the new base tree in staging, given the
                                    container's identity (hostname, machine-id) as create does;
                                    swapped with the tree in one rename, and the settings
                                    record the new image (the .nspawn file's image comment)
    [3/4] start                     only if it ran before
    [4/4] health check              healthy() below; else: rollback to the snapshot, and say why

The engine is the upgrade's (runtime/upgrade.py: Phase, drive, the record, finish_interrupted):
AUTO_UPDATE is a second table of phases for it.  Its recorded phases are the upgrade's own
words with the upgrade's own undos (the stop's: start it again and drop the snapshot; the
swap's: roll back to the snapshot, settings included), so a record of either table is undone
alike, and the record names its table (TABLES) so `recover` and the next run finish it with
the right one.  A SIGKILL at any moment leaves the old tree and settings (before the swap) or,
after it, a record that rolls back to them: a container never boots an unchecked image.

Only the tree changes: the settings (.nspawn file, drop-ins: address, ports, binds, env,
limits, the command and environment the image gave at create) are the container's and stay as
they are; the image comment is the only line that changes.
"""

import time
from collections.abc import Callable
from dataclasses import replace

from ..errors import Usage
from ..fs.copy import clone_tree
from ..fs.files import sync_filesystem
from ..settings.files import load_config, save_config
from ..settings.model import ContainerConfig
from ..store.commit import prepare_tree
from ..store.hold import require_stopped
from ..systemd.bus import guest_state
from . import upgrade
from .lifecycle import is_active
from .upgrade import Phase, StepFailed, Upgrade

REGISTRY_PREFIX = "docker://"
# made_from's flags that take a value (ops/create.py made_from writes them so)
_VALUED = ("--add", "--cmd", "--mirror", "--variant", "--arch", "--bootstrapper", "--include",
           "--platform", "--pull")
# how long a single-command container must keep running after its start to count as healthy:
# its command failing at once is what a broken image most often does
SETTLE_SECONDS = 3.0


class AutoUpdate(Upgrade):
    """An auto-update as it goes: the upgrade's state, and the new image's base tree."""

    def __init__(self, held, image, key: str, settle: float = SETTLE_SECONDS,
                 gate: Callable[[str], str | None] | None = None, **kwargs):
        super().__init__(held, table="auto-update", **kwargs)
        self.image = image  # the new base tree's directory (held by the caller)
        self.key = key      # its key: the container's image record after the swap
        self.settle = settle
        self.boot = True
        # The container's own --health-cmd, run by the caller's tier (ops/execute.py, which
        # runtime/ does not import): NAME -> None when it passed, else why not.
        self.gate = gate


def source_of(cfg: ContainerConfig) -> dict | None:
    """How a registry container was made, from its made_from record: the reference (without
    docker://), --platform, --tls-verify, --overlay; None when it was not made from a registry
    image (or before nspawnctl recorded how)."""
    if not cfg.made_from or not cfg.made_from[0].startswith(REGISTRY_PREFIX):
        return None
    said: dict = {"ref": cfg.made_from[0][len(REGISTRY_PREFIX):], "platform": None,
                  "tls_verify": None, "overlay": False}
    words = iter(cfg.made_from[1:])
    for word in words:
        if word in _VALUED:
            value = next(words, None)
            if word == "--platform":
                said["platform"] = value
        elif word in ("--tls-verify", "--no-tls-verify"):
            said["tls_verify"] = word == "--tls-verify"
        elif word == "--overlay":
            said["overlay"] = True
    return said


def require_updatable(name: str, cfg: ContainerConfig):
    """Refuse --auto-update registry where auto-update could not do it (create and set, before
    anything is written): a tree not made from a registry image, or an --overlay one."""
    if cfg.auto_update != "registry":
        return
    said = source_of(cfg)
    if said is None:
        raise Usage(f"--auto-update registry needs a container made from a registry image, "
                    f"and {name} was made "
                    + (f"from {cfg.made_from[0][:80]}" if cfg.made_from
                       else "before nspawnctl recorded how"),
                    hint="make it with --from docker://REGISTRY/REPO:TAG")
    if said["overlay"]:
        raise Usage(f"--auto-update registry does not replace the base of an --overlay "
                    f"container ({name})", hint="make it without --overlay")


def healthy(up: Upgrade) -> str | None:
    """Whether the container started by an auto-update is healthy: None when it is, else
    why not.  THE one place the decision is made: a booted
    container's systemd reached running (degraded only when it was degraded before), as for
    upgrade; a single command's unit is still active SETTLE seconds after its start; and then
    its --health-cmd passes (the gate), when it has one."""
    assert isinstance(up, AutoUpdate)
    if up.boot:
        if not (up.state == "running" or (up.state == "degraded" and up.before == "degraded")):
            return f"its systemd is {up.state}, was {up.before}"
    else:
        deadline = time.monotonic() + up.settle
        while is_active(up.ctx.bus, up.name):
            if time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        else:
            return "its command exited"
    return up.gate(up.name) if up.gate is not None else None


# -- the phases ---------------------------------------------------------------------------------

def _note(up: Upgrade):
    """Whether it runs (and a booted one's state, for the health check)."""
    assert isinstance(up, AutoUpdate)
    up.was_running = is_active(up.ctx.bus, up.name)
    up.boot = load_config(up.paths, up.name, dropin=False).boot
    if up.was_running and up.boot:
        up.before = guest_state(up.name)


def _stage_tree(up: Upgrade):
    """A clone of the new base tree in staging, given the container's hostname and a fresh
    machine-id (store/commit.py prepare_tree, as create gives them)."""
    assert isinstance(up, AutoUpdate) and up.holding and up.stage is not None
    cfg = load_config(up.paths, up.name, dropin=False)
    built = up.stage / "tree"
    clone_tree(up.image / "tree", built, trusted=True)
    prepare_tree(built, cfg.hostname or up.name)
    sync_filesystem(built)
    up.copy = built, up.paths.tree(up.name)
    require_stopped(up.ctx.bus, up.name)  # held, but a start may have come before the hold


def _swap(up: Upgrade):
    """The new tree swapped in, then its image recorded (a kill in between: the record says
    swapped, and recovery puts the snapshot's tree and settings back together)."""
    assert isinstance(up, AutoUpdate)
    upgrade._swap(up)
    cfg = load_config(up.paths, up.name, dropin=False)
    save_config(up.paths, up.name, replace(cfg, image=up.key))


def _start(up: Upgrade):
    if up.was_running:
        upgrade._start(up)


def _check(up: Upgrade):
    if not up.was_running:
        up.report(f"{up.name} was stopped: not started, not checked")
        return
    why = healthy(up)
    if why is not None:
        raise StepFailed(f"health check ({why})", "")


AUTO_UPDATE = (
    #     label                            do           undo
    Phase(None,                            _note),
    Phase("stop, snapshot {up.tag}",       upgrade._stop_and_snapshot, upgrade._start_again,
          record="install", held=True),
    Phase("copy the new image's tree",     _stage_tree, held=True),
    Phase(None,                            _swap,       upgrade._roll_back, record="swapped",
          held=True, kept=True),
    Phase("start",                         _start),
    Phase("health check",                  _check),
)

# every table of phases by the word a record names it with (Upgrade.table)
TABLES = {"upgrade": upgrade.PHASES, "auto-update": AUTO_UPDATE}
