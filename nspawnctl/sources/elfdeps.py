"""The shared-library closure of ELF files, found as the host's dynamic loader would find it.

Never by running `ldd`: that runs the binary's own loader (PT_INTERP), which a crafted binary
chooses.  The files are read with pyelftools (Debian's python3-pyelftools), from their program
headers and PT_DYNAMIC (what ld.so reads; section headers may be stripped).

The search follows ld.so(8), for each DT_NEEDED name without a slash:
  1. DT_RPATH of the object, then of the objects that loaded it up to the executable, when
     the object has no DT_RUNPATH;
  2. LD_LIBRARY_PATH: not used (it is this shell's, not the container's);
  3. DT_RUNPATH of the object;
  4. the directories of /etc/ld.so.conf (with its includes), standing in for ld.so.cache;
  5. the default and multiarch directories.
$ORIGIN (and ${ORIGIN}) expand to the object's directory, on the host to find the file and in
the tree to know where the loader will look for it there.  Entries with other tokens ($LIB,
$PLATFORM) or relative ones (relative to the working directory at run time) are skipped.
A candidate of another ELF class, machine or byte order is skipped, as ld.so skips it.

Every read is bounded: the number of ELF files read, of closure members, of program headers,
of dynamic tags, and the ld.so.conf files and their sizes.
"""

import glob
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..errors import Error, InvalidInput

MAX_ELF_READS = 20_000        # ELF files opened and parsed for one create
MAX_CLOSURE = 5_000           # libraries (and interpreters) brought in by the closure
MAX_PHDRS = 512               # program headers of one file (real ones have ~15)
MAX_DYN_TAGS = 4_096          # dynamic tags of one file (real ones have ~40)
MAX_CONF_FILES = 64           # ld.so.conf and the files its includes name
MAX_CONF_BYTES = 64 << 10     # bytes read of each of them
MAX_NAME = 4_096              # a path from a dynamic string table

ELF_MAGIC = b"\x7fELF"

# e_machine -> (the name os.uname() gives, the Debian multiarch triplet, human name)
MACHINES = {
    "EM_X86_64": ("x86_64", "x86_64-linux-gnu", "x86-64"),
    "EM_386": ("i686", "i386-linux-gnu", "i386"),
    "EM_AARCH64": ("aarch64", "aarch64-linux-gnu", "arm64"),
    "EM_ARM": ("armv7l", "arm-linux-gnueabihf", "arm"),
    "EM_PPC64": ("ppc64le", "powerpc64le-linux-gnu", "ppc64"),
    "EM_S390": ("s390x", "s390x-linux-gnu", "s390x"),
    "EM_RISCV": ("riscv64", "riscv64-linux-gnu", "riscv64"),
    "EM_MIPS": ("mips64", "mips64el-linux-gnuabi64", "mips"),
}
UNAME_MACHINE = {uname: em for em, (uname, _, _) in MACHINES.items()}
UNAME_MACHINE.update({"i386": "EM_386", "i586": "EM_386", "armv8l": "EM_ARM",
                      "armv7": "EM_ARM", "armv6l": "EM_ARM"})


@dataclass(frozen=True)
class Elf:
    """What the loader needs to know of one ELF file."""
    path: str
    elfclass: int                      # 32 or 64
    machine: str                       # e_machine as pyelftools names it, e.g. EM_X86_64
    little: bool
    etype: str                         # ET_EXEC, ET_DYN, ...
    interp: str | None = None
    needed: tuple[str, ...] = ()
    rpath: tuple[str, ...] = ()
    runpath: tuple[str, ...] = ()

    @property
    def loadable(self) -> bool:
        return self.etype in ("ET_EXEC", "ET_DYN")

    def kind(self) -> tuple[int, str, bool]:
        return self.elfclass, self.machine, self.little

    def arch(self) -> str:
        name = MACHINES.get(self.machine, (None, None, self.machine))[2]
        return f"{name} ({self.elfclass}-bit)"


def is_elf(path: str) -> bool:
    """True when path (a regular file, symlinks followed) starts with the ELF magic."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == ELF_MAGIC
    except OSError:
        return False


class OverBudget(Error):
    """Raised when the reads run out: never taken for an unusable candidate."""


class Budget:
    """How many more ELF files may be read, shared by every lookup of one create."""

    def __init__(self, reads: int = MAX_ELF_READS):
        self.reads = reads

    def take(self, path: str):
        if self.reads <= 0:
            raise OverBudget(f"too many ELF files to read (more than {MAX_ELF_READS}) at {path}",
                        hint="add fewer or smaller directories")
        self.reads -= 1


def read_elf(path: str, budget: Budget) -> Elf:
    """Parse path's ELF header, program headers and dynamic segment; Error if it is not a
    well-formed ELF file."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    budget.take(path)
    try:
        with open(path, "rb") as f:
            try:
                return _parse(ELFFile(f), path)
            except Error:
                raise
            except RecursionError:
                raise InvalidInput(f"{path} is not a valid ELF file (nested too deeply)") from None
            except (ELFError, struct.error, ValueError, KeyError, IndexError, TypeError,
                    AttributeError, UnicodeDecodeError, EOFError, AssertionError) as e:
                raise InvalidInput(f"{path} is not a valid ELF file ({_why(e)})",
                                   hint="is it truncated or damaged?") from None
            except Exception as e:  # construct's own errors (StreamError, ...) among them
                if type(e).__module__.startswith(("construct", "elftools")):
                    raise InvalidInput(f"{path} is not a valid ELF file ({_why(e)})",
                                       hint="is it truncated or damaged?") from None
                raise
    except OSError as e:
        raise Error(f"cannot read {path}: {e.strerror}") from None


def _why(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:120]


def _parse(elf, path: str) -> Elf:
    header = elf.header
    if header["e_phnum"] > MAX_PHDRS:
        raise InvalidInput(f"{path} is not a valid ELF file ({header['e_phnum']} program headers)")
    interp = None
    needed: list[str] = []
    rpath: list[str] = []
    runpath: list[str] = []
    from elftools.elf.dynamic import DynamicSegment
    for segment in elf.iter_segments():
        kind = segment["p_type"]
        if kind == "PT_INTERP":
            interp = _text(segment.get_interp_name(), path)
        elif kind == "PT_DYNAMIC" and isinstance(segment, DynamicSegment):
            for n, tag in enumerate(segment.iter_tags()):
                if n >= MAX_DYN_TAGS:
                    raise InvalidInput(f"{path} is not a valid ELF file (more than {MAX_DYN_TAGS} "
                                       "dynamic tags)")
                name = tag.entry.d_tag
                if name == "DT_NEEDED":
                    needed.append(_text(tag.needed, path))
                elif name == "DT_RPATH":
                    rpath.extend(_text(tag.rpath, path).split(":"))
                elif name == "DT_RUNPATH":
                    runpath.extend(_text(tag.runpath, path).split(":"))
                elif name == "DT_NULL":
                    break
    return Elf(path=path, elfclass=elf.elfclass, machine=str(header["e_machine"]),
               little=elf.little_endian, etype=str(header["e_type"]), interp=interp,
               needed=tuple(needed), rpath=tuple(p for p in rpath if p),
               runpath=tuple(p for p in runpath if p))


def _text(value, path: str) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "surrogateescape")
    if not isinstance(value, str) or not value or len(value) > MAX_NAME or "\0" in value:
        raise InvalidInput(f"{path} is not a valid ELF file (a bad name in its dynamic section)")
    return value


def host_machine() -> str:
    """The e_machine of this host's programs (os.uname; a 32-bit userland on a 64-bit kernel
    would need more, and Debian's multiarch is not that)."""
    machine = os.uname().machine
    return UNAME_MACHINE.get(machine, machine)


# --- the loader's search path ---------------------------------------------------------------

def ld_so_conf(path: str = "/etc/ld.so.conf") -> list[str]:
    """The directories /etc/ld.so.conf names, includes followed (globs relative to the file
    that includes them), in order, each file read once and at most MAX_CONF_FILES of them."""
    dirs: list[str] = []
    seen: set[str] = set()
    # a stack of lines still to read, so that an include's directories come where it stands
    pending: list[tuple[str, Iterator[str]]] = []
    files = 0

    def open_conf(name: str) -> Iterator[str] | None:
        nonlocal files
        real = os.path.realpath(name)
        if real in seen or files >= MAX_CONF_FILES:
            return None
        seen.add(real)
        files += 1
        try:
            with open(name, "rb") as f:
                data = f.read(MAX_CONF_BYTES)
        except OSError:
            return None
        return iter(data.decode("utf-8", "replace").splitlines())

    first = open_conf(path)
    if first is not None:
        pending.append((path, first))
    while pending:
        name, lines = pending[-1]
        line = next(lines, None)
        if line is None:
            pending.pop()
            continue
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("hwcap "):
            continue
        if line.startswith("include ") or line.startswith("include\t"):
            base = os.path.dirname(name)
            for pattern in line.split()[1:]:
                full = pattern if pattern.startswith("/") else os.path.join(base, pattern)
                for match in reversed(sorted(glob.glob(full))[:MAX_CONF_FILES]):
                    more = open_conf(match)
                    if more is not None:
                        pending.append((match, more))
            continue
        for entry in line.replace(",", " ").replace(":", " ").split():
            if entry.startswith("/") and entry not in dirs:
                dirs.append(os.path.normpath(entry))
    return dirs


def default_dirs(machine: str, elfclass: int) -> list[str]:
    triplet = MACHINES.get(machine, (None, None, None))[1]
    dirs = [f"/lib/{triplet}", f"/usr/lib/{triplet}"] if triplet else []
    if elfclass == 64:
        dirs += ["/lib64", "/usr/lib64"]
    return dirs + ["/lib", "/usr/lib"]


# --- the closure ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Place:
    """One file of the closure: where it is on the host, where it goes in the tree."""
    host: str      # the path the loader opens on the host (symlinks not resolved)
    tree: str      # the path it will open in the container
    why: str       # who needs it: "NAME, needed by PATH" or "the interpreter of PATH"


@dataclass
class Closure:
    """The libraries and interpreters that a set of ELF files need, each once."""
    budget: Budget = field(default_factory=Budget)
    conf_dirs: list[str] = field(default_factory=ld_so_conf)
    machine: str = field(default_factory=host_machine)
    places: dict[str, Place] = field(default_factory=dict)   # by tree path
    _elves: dict[str, Elf] = field(default_factory=dict)     # by host real path

    def elf(self, host: str) -> Elf:
        real = os.path.realpath(host)
        if real not in self._elves:
            self._elves[real] = read_elf(host, self.budget)
        return self._elves[real]

    def check_arch(self, elf: Elf, shown: str):
        if elf.machine != self.machine:
            here = MACHINES.get(self.machine, (None, None, self.machine))[2]
            raise InvalidInput(f"{shown} is an ELF file for another architecture: {elf.arch()}, "
                               f"this host runs {here}",
                               hint="add programs built for this host's architecture")

    def add(self, host: str, tree: str, shown: str | None = None):
        """The closure of the ELF file at host, which will be at tree in the container (a
        file the user added; not itself placed by the closure).  Iterative: a work list."""
        root = self.elf(host)
        if not root.loadable:
            return  # an object file or a core dump: data to the loader
        self.check_arch(root, shown or host)
        # (elf, its host path, its tree path, the RPATH chain of its loaders, host and tree)
        work: list[tuple[Elf, str, str, list]] = [(root, os.path.realpath(host), tree, [])]
        while work:
            elf, h, t, chain = work.pop()
            if elf.interp:
                self._interp(elf, h, work)
            # with a RUNPATH, neither its own RPATH nor its loaders' are searched
            own = [] if elf.runpath else self._expand(elf.rpath, h, t)
            rpaths = [] if elf.runpath else own + chain
            for name in elf.needed:
                found = self._find(name, elf, h, t, rpaths)
                if found is not None:  # else placed already
                    lib, lh, lt = found
                    work.append((lib, lh, lt, own + chain))

    def _interp(self, elf: Elf, h: str, work: list):
        path = os.path.normpath(elf.interp or "")
        if path in self.places:
            return
        if not os.path.isabs(path) or not os.path.isfile(path):
            raise Error(f"cannot find the program interpreter {elf.interp}, needed by {h}",
                        hint="is that program made for another system?")
        interp = self.elf(path)
        if interp.kind() != elf.kind():
            raise InvalidInput(f"the program interpreter {path} of {h} is {interp.arch()}, "
                               f"not {elf.arch()}")
        self._place(Place(path, path, f"the interpreter of {h}"))
        work.append((interp, path, path, []))

    def _expand(self, entries: tuple[str, ...], host: str, tree: str) -> list[tuple[str, str]]:
        """(host dir, tree dir) for each usable entry of an RPATH or RUNPATH."""
        out = []
        for entry in entries:
            h = entry.replace("${ORIGIN}", "$ORIGIN")
            t = h
            if "$ORIGIN" in h:
                h = h.replace("$ORIGIN", os.path.dirname(host))
                t = t.replace("$ORIGIN", os.path.dirname(tree))
            if "$" in h or not h.startswith("/"):
                continue
            out.append((os.path.normpath(h), os.path.normpath(t)))
        return out

    def _find(self, name: str, elf: Elf, h: str, t: str, rpaths: list[tuple[str, str]]):
        """(lib, host path, tree path) of DT_NEEDED name of elf, None when that tree path is
        placed already; Error when the loader would not find it."""
        if "/" in name:
            if not name.startswith("/"):
                raise InvalidInput(f"{h} needs {name}, a path relative to where it is run",
                                   hint="nspawnctl cannot tell where that will be")
            candidates = [(os.path.dirname(name), os.path.dirname(name))]
            name = os.path.basename(name)
        else:
            candidates = list(rpaths)
            candidates += self._expand(elf.runpath, h, t)
            candidates += [(d, d) for d in self.conf_dirs]
            candidates += [(d, d) for d in default_dirs(elf.machine, elf.elfclass)]
        searched: list[str] = []
        for host_dir, tree_dir in candidates:
            if host_dir in searched:
                continue
            searched.append(host_dir)
            path = os.path.join(host_dir, name)
            if not os.path.isfile(path) or not is_elf(path):
                continue
            try:
                lib = self.elf(path)
            except OverBudget:
                raise
            except Error:
                continue  # ld.so skips a file it cannot use, and so do we
            if lib.kind() != elf.kind() or lib.etype != "ET_DYN":
                continue
            tree = os.path.normpath(os.path.join(tree_dir, name))
            if tree in self.places:
                return None
            self._place(Place(path, tree, f"{name}, needed by {h}"))
            return lib, path, tree
        raise Error(f"cannot find library {name}, needed by {h}",
                    hint=f"searched {', '.join(searched[:8])}"
                         f"{' and more' if len(searched) > 8 else ''}; add it with --add")

    def _place(self, place: Place):
        if len(self.places) >= MAX_CLOSURE:
            raise InvalidInput(f"more than {MAX_CLOSURE} libraries needed",
                               hint="add fewer programs")
        self.places[place.tree] = place
