"""A container's settings on disk: its .nspawn file and unit drop-in, read and written as one
ContainerConfig.  The unit is the ordinary systemd-nspawn@NAME.service."""

from dataclasses import replace
from pathlib import Path

from ..errors import Error, InvalidInput, refused_content
from ..fs.files import read_small_text, write_atomic
from ..paths import Paths
from ..systemd.unitfiles import install, render
from . import credentials
from .dropin import (
    CREDENTIALS_DROPIN_NAME,
    DROPIN_NAME,
    HEALTH_DROPIN_NAME,
    HEALTH_TIMER_DROPIN_NAME,
    NETWORK_DROPIN_NAME,
    OUR_DROPINS,
    WAIT_HEALTHY_DROPIN_NAME,
    parse_dropin,
    render_dropin,
)
from .model import NETWORK_MODES, ContainerConfig, scheduled
from .nspawnfile import parse_nspawn, render_nspawn, update_nspawn


def load_config(paths: Paths, name: str, dropin: bool = True) -> ContainerConfig:
    """The settings NAME runs with; systemd's defaults where no file says otherwise.

    dropin=False reads the .nspawn file alone: all that commands needing only what
    systemd-nspawn reads (boot, env, user namespace) use, so that a drop-in a hand edit broke
    does not stop them too (stop, exec, shell, logs, and list's other columns)."""
    cfg = ContainerConfig()
    text = read_small_text(paths.nspawn_file(name), f"{name}'s settings file")
    if text is not None:
        try:
            cfg = parse_nspawn(text, cfg)
        except Error as exc:
            raise refused_content(exc) from None
    if cfg.credentials:  # by the digest of what the store holds: a same value is no change
        cfg = replace(cfg, credentials=tuple(
            replace(c, digest=credentials.stored_digest(paths, name, c.name))
            for c in cfg.credentials))
    if not dropin:
        return cfg
    path = paths.dropin_dir(name) / DROPIN_NAME
    text = read_small_text(path, f"{name}'s unit drop-in")
    if text is None:
        return cfg
    try:
        return replace(cfg, **parse_dropin(text, where=str(path)))
    except Error as exc:
        raise InvalidInput(
            f"{name}: {exc.message}",
            hint="nspawnctl reads there only the values its own options write; fix or "
                 "remove that line (then: systemctl daemon-reload), or put such a "
                 "setting in a drop-in of your own beside it") from None


def save_config(paths: Paths, name: str, cfg: ContainerConfig,
                like: str | None = None) -> list[Path]:
    """Write cfg, editing an existing .nspawn file in place so hand edits survive.

    With `like` (clone), the .nspawn file starts from that container's, so keys nspawnctl does
    not model are kept, and the user's own drop-ins beside ours are copied.  Returns those
    copies, which a failed create must delete with the rest.
    """
    nspawn = paths.nspawn_file(name)
    text = render_nspawn(cfg)
    for start in [nspawn] + ([paths.nspawn_file(like)] if like else []):
        old = read_small_text(start, "settings file")
        if old is not None:
            text = update_nspawn(old, cfg)
            break
    # the values before the files that name them: a crash between leaves a value unused
    credentials.save(paths, name, cfg.credentials, like=like)
    write_atomic(nspawn, text)
    write_atomic(paths.dropin_dir(name) / DROPIN_NAME, render_dropin(cfg, str(paths.holds)))
    handed = credentials.render_dropin(paths, cfg.credentials)
    if handed is None:
        (paths.dropin_dir(name) / CREDENTIALS_DROPIN_NAME).unlink(missing_ok=True)
    else:
        write_atomic(paths.dropin_dir(name) / CREDENTIALS_DROPIN_NAME, handed)
    network = paths.dropin_dir(name) / NETWORK_DROPIN_NAME
    if cfg.network in NETWORK_MODES:
        network.unlink(missing_ok=True)
    else:
        install(paths.dropin_dir(name), NETWORK_DROPIN_NAME, render("container-network.conf"))
    save_health_units(paths, name, cfg)
    waits = paths.dropin_dir(name) / WAIT_HEALTHY_DROPIN_NAME
    if cfg.wait_healthy:
        install(paths.dropin_dir(name), WAIT_HEALTHY_DROPIN_NAME,
                render("container-wait-healthy.conf"))
    else:
        waits.unlink(missing_ok=True)
    copied = []
    if like:
        for source in _user_dropins(paths.dropin_dir(like)):
            target = paths.dropin_dir(name) / source.name
            content = read_small_text(source, f"{like}'s drop-in")
            if content is None:
                continue  # removed meanwhile
            write_atomic(target, content, mode=source.stat().st_mode & 0o7777)
            copied.append(target)
    return copied


def save_health_units(paths: Paths, name: str, cfg: ContainerConfig):
    """When the scheduler checks it (model.scheduled(): a --health-cmd, or booted with an
    --on-unhealthy action), the container's unit wants the health checks' scheduler
    (units/nspawnctl-health.service); else the file is not there.  A timer drop-in of
    before the scheduler (stop 39) goes either way."""
    wants = paths.dropin_dir(name) / HEALTH_DROPIN_NAME
    remove_health_timer_dropin(paths, name)
    if not scheduled(cfg):
        wants.unlink(missing_ok=True)
        return
    install(paths.dropin_dir(name), HEALTH_DROPIN_NAME, render("container-health.conf"))


def remove_health_timer_dropin(paths: Paths, name: str):
    """The drop-in nspawnctl wrote for NAME's health timer before there was one scheduler."""
    timer = paths.health_timer_dropin_dir(name)
    (timer / HEALTH_TIMER_DROPIN_NAME).unlink(missing_ok=True)
    try:
        timer.rmdir()
    except OSError:
        pass  # gone already, or the user's own drop-ins are in it


def _user_dropins(directory: Path) -> list[Path]:
    """The *.conf files in a drop-in directory that nspawnctl did not write."""
    try:
        entries = sorted(directory.iterdir())
    except FileNotFoundError:
        return []
    return [p for p in entries if p.name.endswith(".conf") and p.name not in OUR_DROPINS
            and p.is_file() and not p.is_symlink()]
