"""A container's settings on disk: its .nspawn file and unit drop-in, read and written as one
ContainerConfig.  The unit is the ordinary systemd-nspawn@NAME.service."""

from dataclasses import replace

from ..fsutil import write_atomic
from ..paths import Paths
from .dropin import DROPIN_NAME, parse_dropin, render_dropin
from .model import ContainerConfig
from .nspawnfile import parse_nspawn, render_nspawn, update_nspawn


def load_config(paths: Paths, name: str) -> ContainerConfig:
    """The settings NAME runs with; systemd's defaults where no file says otherwise."""
    cfg = ContainerConfig()
    try:
        cfg = parse_nspawn(paths.nspawn_file(name).read_text(), cfg)
    except FileNotFoundError:
        pass
    try:
        cfg = replace(cfg, **parse_dropin((paths.dropin_dir(name) / DROPIN_NAME).read_text()))
    except FileNotFoundError:
        pass
    return cfg


def save_config(paths: Paths, name: str, cfg: ContainerConfig):
    """Write cfg, editing an existing .nspawn file in place so hand edits survive."""
    nspawn = paths.nspawn_file(name)
    try:
        text = update_nspawn(nspawn.read_text(), cfg)
    except FileNotFoundError:
        text = render_nspawn(cfg)
    write_atomic(nspawn, text)
    write_atomic(paths.dropin_dir(name) / DROPIN_NAME, render_dropin(cfg))
