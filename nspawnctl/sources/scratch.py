"""A root tree from scratch (`--from scratch --add PATH[:DEST]...`): only what was added, the
shared libraries and program interpreters its ELF files need (elfdeps.py), and the few files
a program expects to find (scratch_files/: passwd, group, nsswitch.conf, hosts, os-release,
plus /tmp, /root and /usr, which systemd-nspawn looks for).

Two steps, so that bad input fails before anything is made: plan() reads the host (the added
paths, iteratively, and the ELF files) into a plan of tree paths, and make_tree() writes the
plan into an empty staging directory.  Every planned path's parents are directories of the
plan, so writing never goes through a symlink: a link that an added directory brings is
written as a link and nothing is put under it.

A file added by name is copied with its symlinks resolved (`--add /usr/bin/python3` gives
the program, not a dangling link); a directory is copied as it is, its links kept as links,
without crossing into other filesystems, and with the closure of every ELF file in it.
Files that are one file on the host (the interpreter, found as /lib64/ld-linux-x86-64.so.2
and as libc's /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2) are hard links in the tree.
"""

import os
import stat
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .. import __version__
from ..errors import Conflict, Error, NotFound, Usage
from . import base, elfdeps
from .base import Request, Source, split_cmd

MAX_FILES = 200_000           # entries of the tree
MAX_BYTES = 8 << 30           # bytes copied into it
MAX_LINK_HOPS = 40            # as the kernel's ELOOP
SEARCH_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")

# the files every scratch tree gets unless an --add brings its own
BASE_FILES = ("passwd", "group", "nsswitch.conf", "hosts", "os-release")


@dataclass(frozen=True)
class Entry:
    kind: str                  # "dir", "file" or "link"
    mode: int = 0o755
    src: str | None = None     # a file's host path
    target: str | None = None  # a link's target
    text: str | None = None    # a file made here (the base files)
    size: int = 0


@dataclass
class Plan:
    entries: dict[str, Entry] = field(default_factory=dict)   # by absolute tree path
    command: tuple[str, ...] = ()
    bytes: int = 0
    added: list[str] = field(default_factory=list)            # what --add named, for info

    def put(self, path: str, entry: Entry, *, replace: bool = False) -> bool:
        """Plan entry at path (parents as directories); False when path is planned already
        and not replace.  Error when a parent is planned as something else than a directory."""
        old = self.entries.get(path)
        if old is not None:
            if not replace:
                return False
            if (old.kind == "dir") != (entry.kind == "dir"):
                raise Usage(f"two different things to put at {path}: a directory and a "
                            f"{'symlink' if 'link' in (old.kind, entry.kind) else 'file'}",
                            hint="give one of them another DEST (--add PATH:DEST)")
        self._parents(path)
        if len(self.entries) >= MAX_FILES:
            raise Usage(f"more than {MAX_FILES} files to add", hint="add less")
        if entry.size:
            self.bytes += entry.size - (old.size if old else 0)
            if self.bytes > MAX_BYTES:
                raise Usage(f"more than {MAX_BYTES >> 30} GiB to add", hint="add less")
        self.entries[path] = entry
        return True

    def _parents(self, path: str):
        parent = os.path.dirname(path)
        missing = []
        while parent != "/":
            have = self.entries.get(parent)
            if have is not None:
                if have.kind != "dir":
                    raise Usage(f"cannot put {path} in the tree: {parent} is a "
                                f"{'symlink' if have.kind == 'link' else 'file'} there",
                                hint="choose another DEST for one of them")
                break
            missing.append(parent)
            parent = os.path.dirname(parent)
        for p in missing:
            self.entries[p] = Entry("dir", 0o755)

    def resolve(self, path: str) -> str | None:
        """path in the planned tree with its symlinks followed, or None when it leads out of
        the plan (or loops)."""
        for _ in range(MAX_LINK_HOPS):
            entry = self.entries.get(path)
            if entry is None:
                # a parent may be a link
                parts = path.strip("/").split("/")
                for i in range(1, len(parts)):
                    head = "/" + "/".join(parts[:i])
                    e = self.entries.get(head)
                    if e is not None and e.kind == "link":
                        path = _join_link(head, e.target or "") + "/" + "/".join(parts[i:])
                        path = os.path.normpath(path)
                        break
                else:
                    return None
                continue
            if entry.kind != "link":
                return path
            path = _join_link(path, entry.target or "")
        return None


def _join_link(link: str, target: str) -> str:
    return os.path.normpath(target if target.startswith("/") else
                            os.path.join(os.path.dirname(link), target))


def parse_add(spec: str) -> tuple[str, str]:
    """PATH[:DEST] -> (host path, absolute normalised tree path)."""
    path, sep, dest = spec.partition(":")
    if not path:
        raise Usage(f"invalid --add {spec!r}: expected PATH[:DEST]")
    if not sep:
        dest = os.path.abspath(path)
    if not dest.startswith("/") or "\0" in dest:
        raise Usage(f"invalid --add {spec!r}: DEST must be an absolute path in the container")
    if ".." in dest.split("/"):
        raise Usage(f"invalid --add {spec!r}: DEST must not contain '..'")
    dest = os.path.normpath(dest)
    if dest == "/" or dest.startswith("//"):
        dest = "/" + dest.lstrip("/")
    return path, dest


def plan(adds: tuple[str, ...] | list[str], cmd: str | None,
         closure: elfdeps.Closure | None = None, report=print) -> Plan:
    """Read what the adds name (and what their ELF files need) into a Plan; Error on the
    first bad input, before anything is written."""
    if not adds:
        raise Usage("--from scratch needs something to put in the tree",
                    hint="add a program: --add /path/to/program")
    closure = closure or elfdeps.Closure()
    result = Plan()
    elves: list[tuple[str, str, str]] = []    # (host path, tree path, as the user named it)
    executables: list[str] = []
    for spec in adds:
        host, dest = parse_add(spec)
        try:
            st = os.stat(host)  # symlinks followed: an added link brings what it names
        except FileNotFoundError:
            raise NotFound(f"no such file or directory: {host}",
                           hint="--add takes a path on this host") from None
        except OSError as e:
            raise Error(f"cannot add {host}: {e.strerror}") from None
        if stat.S_ISDIR(st.st_mode):
            if os.path.realpath(host) == "/":
                raise Usage(f"{host} is the host's root directory",
                            hint="add the programs and directories it needs instead")
            if dest == "/":
                result.entries["/"] = Entry("dir", stat.S_IMODE(st.st_mode))
            else:
                result.put(dest, Entry("dir", stat.S_IMODE(st.st_mode)), replace=True)
            elves += _walk(result, host, dest, report)
        elif stat.S_ISREG(st.st_mode):
            if dest == "/":
                raise Usage(f"invalid --add {spec!r}: a file cannot be the root directory")
            old = result.entries.get(dest)
            if old is not None and old.src and os.path.realpath(old.src) != \
                    os.path.realpath(host):
                raise Usage(f"two files to put at {dest}: {old.src} and {host}",
                            hint="give one of them another DEST (--add PATH:DEST)")
            result.put(dest, _file_entry(host, st), replace=True)
            if elfdeps.is_elf(host):
                elves.append((host, dest, host))
            if st.st_mode & 0o111 and dest not in executables:
                executables.append(dest)
        else:
            raise Usage(f"cannot add {host}: not a regular file or directory")
        result.added.append(f"{host}:{dest}")
    for host, dest, shown in elves:
        closure.add(host, dest, shown)
    for place in closure.places.values():
        try:
            st = os.stat(place.host)
        except OSError as e:
            raise Error(f"cannot read {place.host} ({place.why}): {e.strerror}") from None
        result.put(place.tree, _file_entry(place.host, st))  # what was added wins
    _base_files(result)
    result.command = _command(result, cmd, executables)
    return result


def _file_entry(host: str, st: os.stat_result) -> Entry:
    return Entry("file", stat.S_IMODE(st.st_mode), src=host, size=st.st_size)


def _walk(result: Plan, top: str, dest: str, report) -> list[tuple[str, str, str]]:
    """Plan the directory top at dest, iteratively; returns its ELF files."""
    elves = []
    top_dev = os.stat(top).st_dev
    stack = [(top, dest)]
    while stack:
        host_dir, tree_dir = stack.pop()
        items = []
        try:
            with os.scandir(host_dir) as it:
                for item in it:  # one directory's entries, bounded like the whole tree's
                    items.append(item)
                    if len(items) + len(result.entries) > MAX_FILES:
                        raise Usage(f"more than {MAX_FILES} files to add", hint="add less")
        except OSError as e:
            raise Error(f"cannot read {host_dir}: {e.strerror}") from None
        for item in sorted(items, key=lambda e: e.name):
            host = os.path.join(host_dir, item.name)
            tree = tree_dir.rstrip("/") + "/" + item.name
            st = item.stat(follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                result.put(tree, Entry("link", target=os.readlink(host)), replace=True)
            elif stat.S_ISDIR(st.st_mode):
                if st.st_dev != top_dev:
                    report(f"warning: {host} is another filesystem, left empty")
                    result.put(tree, Entry("dir", stat.S_IMODE(st.st_mode)))
                    continue
                result.put(tree, Entry("dir", stat.S_IMODE(st.st_mode)), replace=True)
                stack.append((host, tree))
            elif stat.S_ISREG(st.st_mode):
                result.put(tree, _file_entry(host, st), replace=True)
                if st.st_size >= 64 and elfdeps.is_elf(host):
                    elves.append((host, tree, host))
            else:
                report(f"warning: {host} is not a file, directory or link: left out")
    return elves


def _base_files(result: Plan):
    files = resources.files("nspawnctl.sources") / "scratch_files"
    for name in BASE_FILES:
        text = (files / name).read_text()
        if name == "os-release":
            text = text.replace("{version}", __version__)
        result.put(f"/etc/{name}", Entry("file", 0o644, text=text))
    result.put("/tmp", Entry("dir", 0o1777))
    result.put("/root", Entry("dir", 0o700))
    # systemd-nspawn refuses to run a command in a tree without /usr ("doesn't look like it
    # has an OS tree"), even an empty one
    result.put("/usr", Entry("dir", 0o755))


def _command(result: Plan, cmd: str | None, executables: list[str]) -> tuple[str, ...]:
    if cmd is None:
        if len(executables) == 1:
            return (executables[0],)
        raise Usage("--from scratch needs --cmd: "
                    + ("no executable file was added" if not executables else
                       f"{len(executables)} executable files were added"),
                    hint="say what to run, e.g. --cmd '/bin/program --option'")
    argv = split_cmd(cmd)
    program = argv[0]
    candidates = [program] if "/" in program else [f"{d}/{program}" for d in SEARCH_PATH]
    for candidate in candidates:
        if not candidate.startswith("/"):
            break
        found = result.resolve(os.path.normpath(candidate))
        if found is not None:
            entry = result.entries[found]
            if entry.kind == "file" and entry.mode & 0o111:
                return argv
    raise Usage(f"--cmd runs {program}, which was not added",
                hint=f"add it (--add PATH{':' + program if program.startswith('/') else ''})"
                     " or run one of the added programs")


# --- writing the tree -------------------------------------------------------------------------

def make_tree(result: Plan, tree: str):
    """Write the plan into tree, which must not exist.  Parents come before children (sorted
    paths), and every parent is a directory made here: nothing follows a link."""
    os.mkdir(tree, 0o755)
    root = result.entries.get("/")
    links: dict[tuple[int, int], str] = {}   # host file -> its first copy in the tree
    modes: list[tuple[str, int]] = []
    for path in sorted(result.entries):
        if path == "/":
            continue
        entry = result.entries[path]
        out = tree + path
        if entry.kind == "dir":
            os.mkdir(out, 0o700)
            modes.append((out, entry.mode))
        elif entry.kind == "link":
            os.symlink(entry.target or "", out)
        elif entry.text is not None:
            _write(out, entry.text.encode(), entry.mode)
        else:
            _copy(entry, out, links)
    for out, mode in reversed(modes):  # after their content: a 0555 directory is filled first
        os.chmod(out, mode)
    os.chmod(tree, root.mode if root else 0o755)


def _write(out: str, data: bytes, mode: int):
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _copy(entry: Entry, out: str, links: dict):
    src = entry.src or ""
    try:
        fin = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise Error(f"cannot read {src}: {e.strerror}") from None
    try:
        st = os.fstat(fin)
        if not stat.S_ISREG(st.st_mode):
            raise Conflict(f"{src} changed while it was added: no longer a regular file")
        first = links.get((st.st_dev, st.st_ino))
        if first is not None:
            os.link(first, out)
            return
        fout = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                       0o600)
        try:
            left = entry.size  # what was planned (and counted), not what it has grown to
            while left > 0:
                n = os.sendfile(fout, fin, None, min(left, 1 << 24))
                if n == 0:
                    break
                left -= n
            os.fchmod(fout, entry.mode)
        except OSError as e:
            if e.errno == 28:  # ENOSPC
                raise Error("no space left to make the tree",
                            hint="free some space, e.g. nspawnctl images prune") from None
            raise
        finally:
            os.close(fout)
        links[(st.st_dev, st.st_ino)] = out
    finally:
        os.close(fin)


class ScratchSource(Source):
    kind = syntax = "scratch"
    summary = "only what --add puts in, with the libraries its programs need"
    takes_cmd = takes_adds = True

    def plan(self, rest: str, request: Request) -> base.Plan:
        planned = plan(request.adds, request.cmd, report=request.report)  # refused now

        def build(tree: Path) -> dict:
            make_tree(planned, str(tree))
            return {"method": "scratch", "command": list(planned.command),
                    "added": planned.added}
        return base.Plan(build=build, command=planned.command, boot=False)
