"""Where containers live: locking, staging, atomic install and removal.

A container exists exactly when its tree /var/lib/machines/NAME exists.  Everything else
(settings, drop-ins) is written before the tree is renamed into place on create, and removed
after the tree is renamed away on remove, so the rename is the one commit point and an
interrupted command leaves either the whole container or none of it.  Leftovers of a killed
command (staging directories, settings without a tree) are swept by the next command.
"""

import contextlib
import os
from pathlib import Path

from .. import log
from ..errors import Conflict, Error, NotFound
from ..fs.files import fsync_dir, mkdir_private, rename_noreplace, sync_filesystem
from ..fs.locks import flocked, owner_is_dead, owner_token, unlink_lock
from ..fs.mounts import mounts_under
from ..fs.walk import remove_tree
from ..names import check_name
from ..network.state import NetworkState
from ..paths import Paths, service_unit
from ..settings import credentials, running
from ..settings.dropin import DROPIN_NAME, LIVE_DROPINS, OUR_DROPINS
from ..settings.files import remove_health_timer_dropin
from . import overlay, snapshots

# The first line of the .nspawn files nspawnctl writes (nspawnfile.HEADER) says whose they are.
OWNED_MARK = "# Settings of an nspawnctl container"


class Store:
    def __init__(self, paths: Paths):
        self.paths = paths

    # names and existence

    def names(self) -> list[str]:
        """Every container tree in the machines directory (also ones machinectl made)."""
        try:
            entries = sorted(os.scandir(self.paths.machines), key=lambda e: e.name)
        except FileNotFoundError:
            return []
        return [e.name for e in entries
                if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)]

    def exists(self, name: str) -> bool:
        return os.path.lexists(self.paths.tree(name))

    def require(self, name: str) -> str:
        check_name(name)
        if not self.exists(name):
            raise NotFound(f"no container named {name!r}",
                           hint="see 'nspawnctl list' for the containers there are")
        return name

    def require_absent(self, name: str):
        check_name(name)
        if self.exists(name):
            raise Conflict(f"a container named {name!r} already exists",
                           hint=f"pick another name or remove it: nspawnctl remove {name}")

    # locking

    @contextlib.contextmanager
    def lock(self, name: str):
        """Hold NAME's lock; a second command on the same name fails at once."""
        def busy():
            raise Conflict(
                f"container {name!r} is busy: another nspawnctl command is working on it")

        self._make_roots()
        self.paths.locks.mkdir(parents=True, exist_ok=True)
        path = self.paths.locks / f"{name}.lock"
        with flocked(path, busy):
            self.sweep(name, locked=True)
            try:
                yield
            finally:
                if not self.exists(name):  # removed, or never made: no file to keep
                    unlink_lock(path)

    def _make_roots(self):
        """/var/lib/machines and /var/lib/nspawnctl, 0700 when nspawnctl creates them."""
        mkdir_private(self.paths.machines)
        mkdir_private(self.paths.state)

    # staging

    @contextlib.contextmanager
    def staging(self, parent: Path, label: str):
        """A private (0700) directory next to where the result goes, deleted unless kept.

        The caller renames what it built out of it; whatever is still inside on exit, also on
        an exception or Ctrl-C, is deleted.  The pid in its name lets a later run spot the
        leftovers of a SIGKILLed one.
        """
        self._make_roots()
        area = self.paths.staging_in(parent)
        area.mkdir(parents=True, exist_ok=True, mode=0o700)
        import tempfile  # here: with shutil and random, 4 ms that list and stop do not need
        path = Path(tempfile.mkdtemp(prefix=f"{label}.{owner_token()}.", dir=area))
        try:
            yield path
        finally:
            # What cannot go (something mounted in it) stays for a sweep once this process is
            # gone: the command's own outcome stands, with a warning that says why.
            _try_delete(f"staging directory {path}", remove_tree, path)

    def sweep(self, name: str | None = None, locked: bool = False) -> list[str]:
        """Remove staging dirs of dead processes and settings left without a tree; returns
        what it removed.

        Settings without a tree are also what a create in progress looks like just before its
        commit, so they are removed only under the name's lock (held by the caller, or taken
        here without waiting: a busy name is someone else's business).

        Nothing the sweep cannot delete fails the command that sweeps: it goes on past it and
        says, as a warning line, what it could not delete and why; the next sweep tries again.
        """
        removed: list[str] = []

        def delete(what: str, how, *args, **kwargs):
            if _try_delete(what, how, *args, **kwargs):
                removed.append(what)

        # overlays stage in machines; pulls in the blob store; volumes beside them
        for parent in (self.paths.machines, self.paths.images, self.paths.pulled,
                       self.paths.volumes):
            area = self.paths.staging_in(parent)
            for entry in _listdir(area):
                if _owner_is_dead(entry):
                    delete(f"staging directory {area / entry}", remove_tree, area / entry)
        dropins = self._dropin_dirs()
        # write_atomic's temporary files (.FILE.OWNER.tmp) of commands killed while writing
        for directory in [self.paths.nspawn, self.paths.units, self.paths.pulled,
                          *dropins.values()]:
            for entry in _listdir(directory):
                if entry.startswith(".") and entry.endswith(".tmp") and _owner_is_dead(entry):
                    delete(f"temporary file {directory / entry}", _unlink, directory / entry)
        if name is not None and locked:
            if not self.exists(name):  # (not counted: most often there is nothing)
                _try_delete(f"the settings of {name} (it has no tree)", self.remove_settings,
                            name, only_ours=True)
            return removed
        for n in [name] if name else self._settings_names(dropins):
            if not self.exists(n):
                with contextlib.suppress(Error):  # busy: another command's business
                    delete(f"the settings of {n} (it has no tree)", self._sweep_locked, n)
        return removed

    def _sweep_locked(self, name: str):
        with self.lock(name):  # lock() sweeps name once it holds it
            pass

    def _dropin_dirs(self) -> dict[str, Path]:
        """The systemd-nspawn@NAME.service.d directories there are, by NAME."""
        prefix, suffix = "systemd-nspawn@", ".service.d"
        return {f[len(prefix):-len(suffix)]: self.paths.units / f
                for f in _listdir(self.paths.units) if f.startswith(prefix) and f.endswith(suffix)}

    def _settings_names(self, dropins: dict[str, Path]) -> set[str]:
        """Names that have settings, drop-ins, overlay layers or address leases (with or
        without a tree: a create killed after taking its lease has nothing else yet)."""
        names = {f[:-len(".nspawn")] for f in _listdir(self.paths.nspawn)
                 if f.endswith(".nspawn")}
        names.update(n for n, d in dropins.items() if os.path.exists(d / DROPIN_NAME))
        names.update(n for n in _listdir(self.paths.overlays) if not n.startswith("."))
        names.update(snapshots.names(self.paths))
        with contextlib.suppress(Error):  # an unreadable registry is said by network commands
            names.update(NetworkState(self.paths.state / "network").holders())
        return names

    # install and remove

    def install(self, staged_tree: Path, name: str):
        """Move a complete tree into place: the commit point of create.

        Durable in this order: the tree's files and the settings (written before) reach the
        disk first (one syncfs), then the rename, then the directory that holds it; so after
        a power cut the container is whole or absent, never a tree of empty files."""
        self._make_roots()
        sync_filesystem(staged_tree)
        try:
            rename_noreplace(staged_tree, self.paths.tree(name))
        except FileExistsError:
            raise Conflict(f"a container named {name!r} already exists") from None
        fsync_dir(self.paths.machines)

    def remove(self, name: str) -> int:
        """Delete NAME's tree, settings and snapshots; returns how many snapshots went.
        Never follows a symlink out of the store, nor into anything mounted inside it."""
        tree = self.paths.tree(name)
        if overlay.is_overlay(self.paths, name):
            overlay.release(self.paths, name)  # the overlay's upper layer is removed below
        mounted = mounts_under(tree)
        if mounted:
            raise Conflict(f"something is still mounted in the tree of {name}: {mounted[-1]}",
                           hint="unmount it first")
        with self.staging(self.paths.machines, f"remove-{name}") as trash:
            # The rename is the commit point: from here on the container is gone for everyone,
            # and if we die the trash is swept as a dead process's staging directory.
            os.rename(tree, trash / "tree")
            fsync_dir(self.paths.machines)
            count = snapshots.take_all(self.paths, name, trash)
            self.remove_settings(name)
        return count

    def remove_settings(self, name: str, only_ours: bool = False):
        """Everything of NAME but its tree; with only_ours (sweeping a name whose tree is
        gone) a .nspawn file or mount unit nspawnctl did not write stays.  The drop-in files
        nspawnctl names are always ours, and so are its address leases."""
        nspawn = self.paths.nspawn_file(name)
        if not only_ours or _is_ours(nspawn):
            with contextlib.suppress(FileNotFoundError):
                nspawn.unlink()
        dropin = self.paths.dropin_dir(name)
        for ours in OUR_DROPINS:
            with contextlib.suppress(FileNotFoundError):
                (dropin / ours).unlink()
        remove_health_timer_dropin(self.paths, name)
        with contextlib.suppress(FileNotFoundError):  # its last health check
            (self.paths.health / f"{name}.json").unlink()
        NetworkState(self.paths.state / "network").release(name)
        credentials.remove(self.paths, name)  # the values (0600) its settings named
        running.forget(self.paths, name)  # a next container of that name starts afresh
        with contextlib.suppress(OSError):
            dropin.rmdir()  # only when nothing of the user's is left in it
        self.clear_live_limits(name)
        if not only_ours:  # the next container of that name starts from /etc, not from these
            control = self.paths.control_dir(name)
            with contextlib.suppress(FileNotFoundError):
                for entry in os.scandir(control):
                    _unlink(Path(entry.path))
            with contextlib.suppress(OSError):
                control.rmdir()
        overlay.remove_files(self.paths, name, only_ours)
        if not self.exists(name):  # a remove killed before it took them: they go too
            snapshots.sweep(self.paths, name)
        with contextlib.suppress(FileNotFoundError):  # an interrupted upgrade's record
            os.unlink(self.paths.state / "upgrades" / f"{name}.json")

    def clear_live_limits(self, name: str) -> bool:
        """Delete the runtime drop-ins of the live limits a `set` applied to the running unit,
        so that the drop-in in /etc decides again (after a daemon-reload).  True when there
        were some."""
        control = self.paths.control_dir(name)
        cleared = False
        for live in LIVE_DROPINS:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(control / live)
                cleared = True
        with contextlib.suppress(OSError):
            control.rmdir()
        return cleared


def _try_delete(what: str, delete, *args, **kwargs) -> bool:
    """delete(*args, **kwargs); an OSError is a warning line saying what and why, no more.
    True when it was deleted."""
    try:
        delete(*args, **kwargs)
    except OSError as e:
        where = f" ({e.filename})" if e.filename and str(e.filename) not in what else ""
        log.warning(__name__, "warning: could not delete %s: %s%s", what,
                    e.strerror or str(e) or type(e).__name__, where)
        return False
    return True


def _unlink(path: Path):
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _owner_is_dead(entry: str) -> bool:
    """For LABEL.OWNER.RANDOM (staging) and .FILE.OWNER.tmp (write_atomic), OWNER an
    fs.locks.owner_token(): is its owner gone?  LABEL and FILE may hold dots (names do), RANDOM
    and tmp never do."""
    try:
        return owner_is_dead(entry.rsplit(".", 2)[-2])
    except (IndexError, ValueError):
        return False


def _is_ours(path: Path) -> bool:
    try:
        with open(path) as f:
            return f.readline().startswith(OWNED_MARK)
    except OSError:
        return False


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


def is_enabled(paths: Paths, name: str) -> bool:
    """Whether NAME starts at boot (enabled for machines.target)."""
    return os.path.lexists(paths.units / "machines.target.wants" / service_unit(name))
