"""A resolved image: its verified manifest (or docker entry), config and layers, and what
nspawnctl needs from the config to run it."""

from dataclasses import dataclass

from ...errors import Error, InvalidInput
from ...settings.health import image_healthcheck
from .layout import Descriptor, check_digest


@dataclass(frozen=True)
class ImageConfig:
    """What nspawnctl needs from an image: its cache key and how to run it."""

    digest: str  # the manifest's digest (the image ID for legacy docker archives)
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()  # "KEY=VALUE"
    working_dir: str | None = None
    user: str | None = None
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    architecture: str = ""
    os: str = ""
    # its Healthcheck as settings (settings/health.py image_healthcheck), as (field, value)
    health: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class Image:
    """A verified manifest (or legacy docker entry) with its config and layers to apply.

    Layers are (name in the layout, descriptor or None for docker archives, diff_id): what
    unpacking checks each layer against, whatever the layout holds by then.
    """

    digest: str
    config: dict
    layers: tuple[tuple[str, Descriptor | None, str], ...]


def check_diff_ids(config: dict, count: int) -> list[str]:
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or len(diff_ids) != count:
        raise Error(f"image config lists {len(diff_ids) if isinstance(diff_ids, list) else 'no'} "
                    f"layer diff_ids for {count} layers")
    return [check_digest(d, "layer diff_id") for d in diff_ids]


def image_config(image: Image) -> ImageConfig:
    cfg = image.config.get("config") or {}
    if not isinstance(cfg, dict):
        raise InvalidInput("image config 'config' is not an object")

    def strings(key: str) -> tuple[str, ...]:
        value = cfg.get(key) or []
        if isinstance(value, dict):  # ExposedPorts and Volumes are sets: {"80/tcp": {}}
            value = list(value)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidInput(f"image config {key} is not a list of strings")
        return tuple(value)

    def string(key: str) -> str | None:
        value = cfg.get(key)
        if value is not None and not isinstance(value, str):
            raise InvalidInput(f"image config {key} is not a string")
        return value or None

    return ImageConfig(
        digest=image.digest, entrypoint=strings("Entrypoint"), cmd=strings("Cmd"),
        env=strings("Env"), working_dir=string("WorkingDir"), user=string("User"),
        exposed_ports=strings("ExposedPorts"), volumes=strings("Volumes"),
        health=tuple(image_healthcheck(cfg.get("Healthcheck")).items()),
        architecture=str(image.config.get("architecture", "")),
        os=str(image.config.get("os", "")))
