"""What Tab offers for nspawnctl's arguments: container names, networks, snapshot tags and
cached images, through click's own completion.

The scripts `nspawnctl install-extras` writes for bash, zsh and fish (extras.py) run
`nspawnctl` again at every Tab with _NSPAWNCTL_COMPLETE set; click walks the command line and
asks the callbacks here for the values of the argument under the cursor.  They read the
store's files and machined's runtime directory only: no D-Bus and no pystemd, so a Tab
answers at once, also for a user who may not talk to systemd.  They never raise: a
completion that fails offers nothing, where a traceback would land in the user's command line.
Values the commands would refuse (a directory in /var/lib/machines that is no valid name)
are not offered.
"""

import functools
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ..errors import Error

if TYPE_CHECKING:
    from ..paths import Paths

Completer = Callable[..., list]


def _quiet(complete: Completer) -> Completer:
    @functools.wraps(complete)
    def wrapper(ctx, param, incomplete: str) -> list:
        try:
            return complete(ctx, param, incomplete)
        except Exception:  # see the module docstring
            return []
    return wrapper


def _offer(values: Iterable[str], incomplete: str, check: Callable[[str], object],
           given: Iterable[str] = ()) -> list:
    """values that start with incomplete and pass check, once each, without those given."""
    from click.shell_completion import CompletionItem  # here: only a Tab needs it
    given = set(given)
    offered = []
    for value in dict.fromkeys(values):
        if not value.startswith(incomplete) or value in given:
            continue
        try:
            check(value)
        except Error:
            continue
        offered.append(CompletionItem(value))
    return offered


def _given(ctx, param) -> tuple[str, ...]:
    """What the command line already holds for a repeatable argument (start a b <Tab>)."""
    value = ctx.params.get(param.name) if param is not None else None
    return tuple(value) if isinstance(value, (list, tuple)) else ()


def _names(paths: "Paths") -> list[str]:
    from ..store.containers import Store
    return Store(paths).names()


def _running(paths: "Paths") -> set[str]:
    """The machines machined has registered: a file per machine in its runtime directory
    (beside systemd's own runtime files, so under NSPAWNCTL_ROOT too).  A hint, not a check:
    reading it costs nothing, where asking machined means D-Bus."""
    machined = paths.control.parent / "machines"
    try:
        return {e.name for e in os.scandir(machined) if ":" not in e.name and e.is_file()}
    except OSError:
        return set()


def _paths() -> "Paths":
    from ..paths import Paths  # here: cli.py imports this module at start-up
    return Paths.from_env()


@_quiet
def containers(ctx, param, incomplete: str) -> list:
    """Every container (running or not)."""
    from ..names import check_name
    return _offer(_names(_paths()), incomplete, check_name, _given(ctx, param))


@_quiet
def other_containers(ctx, param, incomplete: str) -> list:
    """The containers but the one the command is about (set web --after <Tab>)."""
    # click parses `set web --after` without its value as far as the option: web is then
    # left among the context's unparsed arguments
    this = ctx.params.get("name") or next(iter(ctx.args), None)
    return [n for n in containers(ctx, param, incomplete) if n.value != this]


@_quiet
def running_containers(ctx, param, incomplete: str) -> list:
    """The running containers that match; all that match when none of those runs (a
    container stopped meanwhile, or machined's directory unreadable, still completes)."""
    from ..names import check_name
    paths = _paths()
    names = _offer(_names(paths), incomplete, check_name, _given(ctx, param))
    running = _running(paths)
    return [n for n in names if n.value in running] or names


@_quiet
def networks(ctx, param, incomplete: str) -> list:
    """nspawnctl's networks (the default one once it is made)."""
    from ..network.state import NetworkState
    from ..settings.networking import check_network_name
    made = [n.name for n in NetworkState(_paths().state / "network").networks()]
    return _offer(made, incomplete, check_network_name, _given(ctx, param))


@_quiet
def network_modes(ctx, param, incomplete: str) -> list:
    """What --network takes: default, none, host or a network's name."""
    from ..settings.networking import DEFAULT, RESERVED
    made = networks(ctx, None, incomplete)
    modes = [w for w in (DEFAULT, *RESERVED) if w not in {n.value for n in made}]
    return _offer(modes, incomplete, str) + made


@_quiet
def volumes(ctx, param, incomplete: str) -> list:
    """Named volumes (volume create); for --volume, NAME: ready for its path."""
    from ..names import check_volume_name
    from ..store.volumes import names
    made = names(_paths())
    if param is not None and param.name in ("volumes", "no_volumes") and ":" not in incomplete:
        from click.shell_completion import CompletionItem
        offered = _offer(made, incomplete, check_volume_name)
        return [CompletionItem(f"{item.value}:") for item in offered] \
            if param.name == "volumes" else offered
    return _offer(made, incomplete, check_volume_name, _given(ctx, param))


@_quiet
def snapshot_tags(ctx, param, incomplete: str) -> list:
    """The snapshots of the container named before the tag (rollback NAME TAG)."""
    from ..names import check_name
    from ..store.snapshots import check_tag, list_snapshots
    name = check_name(ctx.params.get("name") or "")
    tags = [str(row.get("tag")) for row in list_snapshots(_paths(), name)]
    return _offer(tags, incomplete, check_tag)


@_quiet
def image_sources(ctx, param, incomplete: str) -> list:
    """create --from: the sources of the cached base trees (what `images` lists), which
    create again from the cache."""
    from ..store.images import list_images
    sources = [str(row["source"]) for row in list_images(_paths(), {})
               if row.get("source")]
    return _offer(sorted(sources), incomplete, _printable)


@_quiet
def pulled_images(ctx, param, incomplete: str) -> list:
    """pull REF, images rm REF, logout REGISTRY: the names pulled so far (for logout, their
    registries), as `images` lists them."""
    from ..store.blobs import BlobStore
    names = [r.name for r in BlobStore(_paths()).records()]
    if param is not None and param.name == "registry":
        names = sorted({n.split("/", 1)[0] for n in names})
    return _offer(sorted(set(names)), incomplete, _printable)


def _printable(text: str) -> None:
    """A value fit for a completion line (each value is one line of click's protocol)."""
    if not text.isprintable():
        raise Error(f"unprintable value {text!r}")


@_quiet
def files(ctx, param, incomplete: str) -> list:
    """The shell's own file name completion."""
    from click.shell_completion import CompletionItem
    return [CompletionItem(incomplete, type="file")]


# The container settings' options (settings/model.py) that name something Tab can find.
_FOR_SETTING: dict[str, Completer] = {
    "network": network_modes, "after": other_containers, "requires": other_containers,
    "no_after": other_containers, "no_requires": other_containers, "binds": files,
    "volumes": volumes, "no_volumes": volumes,
}


def for_setting(name: str) -> Completer | None:
    """The completion of a setting's option (its name in the settings table; no_NAME for
    set's --no-FLAG), or None for click's own (choices, or nothing)."""
    return _FOR_SETTING.get(name)
