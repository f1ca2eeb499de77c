"""auto-update: the containers marked --auto-update registry get the image their reference
names now (runtime/autoupdate.py replaces the tree and rolls back when it is not healthy);
--enable-timer and --disable-timer: units/nspawnctl-auto-update.timer runs it daily.

Each container's reference is looked up first (the manifest only, no blob: what --dry-run
says comes from the same question), compared with the image it was made from (its image
record: the manifest digest that keys its base tree), and only a container whose reference
names another image is pulled for and replaced.  One container's failure is its line; the
others go on."""

from collections.abc import Callable

from ..errors import Error, Usage
from ..runtime import upgrade as engine
from ..runtime.autoupdate import AUTO_UPDATE, TABLES, AutoUpdate, require_updatable, source_of
from ..runtime.context import Context
from ..runtime.lifecycle import TIMEOUT
from ..settings.files import load_config
from ..sources.registry.pull import lookup, pull
from ..sources.registry.source import pulled_base
from ..store.images import held_image
from ..systemd.unitfiles import install, render
from .common import require_root

SERVICE = "nspawnctl-auto-update.service"
TIMER = "nspawnctl-auto-update.timer"


def marked(ctx: Context, names: list[str]) -> list[str]:
    """The containers to update: those named (each must be marked, checked before any is
    touched), else every marked one."""
    if not names:
        return [n for n in ctx.store.names() if _marked(ctx, n)]
    for name in names:
        ctx.store.require(name)
        if not _marked(ctx, name):
            raise Usage(f"{name} is not marked for auto-update",
                        hint=f"mark it: nspawnctl set {name} --auto-update registry")
    return names


def _marked(ctx: Context, name: str) -> bool:
    try:
        return load_config(ctx.paths, name, dropin=False).auto_update == "registry"
    except Error:
        return False  # settings a hand edit broke: not ours to update


def auto_update(ctx: Context, names: list[str], dry_run: bool = False,
                timeout: float = TIMEOUT,
                gate: Callable[[str], str | None] | None = None) -> list[dict]:
    """One row per container: name, reference, image (before), new_image, action
    (updated, up-to-date, would-update, rolled-back, failed) and a message for the failures.
    gate: NAME -> None when its --health-cmd passes, else why not (ops/health.health_gate,
    given by the command: ops modules do not import each other)."""
    require_root()
    rows = []
    for name in marked(ctx, list(dict.fromkeys(names))):
        row = {"name": name, "reference": None, "image": None, "new_image": None,
               "action": "failed", "message": None}
        try:
            _update(ctx, name, row, dry_run, timeout, gate)
        except Error as exc:
            row["message"] = exc.message
            if "rolled back" in exc.message:
                row["action"] = "rolled-back"
        rows.append(row)
    return rows


def _update(ctx: Context, name: str, row: dict, dry_run: bool, timeout: float,
            gate: Callable[[str], str | None] | None = None):
    if not dry_run and name in engine.interrupted(ctx.paths):
        with ctx.holding(name) as held:  # a killed run's first: its record, not the tag, says
            engine.finish_interrupted(held, tables=TABLES)
    cfg = load_config(ctx.paths, name, dropin=False)
    require_updatable(name, cfg)
    said = source_of(cfg)
    assert said is not None
    row.update(reference=said["ref"], image=cfg.image)
    current = lookup(ctx.paths, said["ref"], platform=said["platform"],
                     tls_verify=said["tls_verify"])
    key = "oci-" + current.digest.replace(":", "-")  # as sources/oci/source.py keys it
    row["new_image"] = key
    if key == cfg.image:
        row["action"] = "up-to-date"
        return
    if dry_run:
        row["action"] = "would-update"
        return
    with ctx.holding(name) as held:
        engine.finish_interrupted(held, tables=TABLES)
        pulled = pull(ctx.paths, said["ref"], policy="always", platform=said["platform"],
                      tls_verify=said["tls_verify"], report=ctx.report)
        base = pulled_base(ctx.paths, pulled.record, ctx.report, check_run=False)
        row["new_image"] = base.key  # the tag may have moved again since the lookup
        if base.key == load_config(ctx.paths, name, dropin=False).image:
            row["action"] = "up-to-date"
            return
        with held_image(ctx.paths, base.key, base.meta, base.build, ctx.report) as (image, _):
            up = AutoUpdate(held, image, base.key, timeout=timeout, gate=gate)
            engine.drive(up, AUTO_UPDATE)
    row["action"] = "updated"


def set_timer(ctx: Context, enable: bool) -> dict:
    """Install, enable and start the daily timer (or stop and disable it)."""
    require_root()
    bus = ctx.bus
    if enable:
        changed = install(ctx.paths.units, SERVICE, render(SERVICE))
        changed |= install(ctx.paths.units, TIMER, render(TIMER))
        if changed:
            bus.reload()
        bus.enable_units([TIMER])
        bus.start_unit(TIMER)
    else:
        if (ctx.paths.units / TIMER).exists():
            bus.disable_units([TIMER])
            bus.stop_unit(TIMER)
    return {"name": TIMER, "enabled": enable}
