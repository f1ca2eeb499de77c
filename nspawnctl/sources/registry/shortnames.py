"""Short names ("debian", "library/debian:12") resolved as podman resolves them, from the same
files (containers-registries.conf(5), containers-registries.conf.d(5)).

The files: ~/.config/containers/registries.conf when it exists (then only the user's drop-in
directory), else /etc/containers/registries.conf with /etc/containers/registries.conf.d/*.conf
and the user's ~/.config/containers/registries.conf.d/*.conf, in that order; later files
replace unqualified-search-registries and short-name-mode, and add to (or erase, with "")
aliases.  The aliases podman records after a prompt (/var/cache/containers/
short-name-aliases.conf for root) come first.  skopeo reads the same files for mirrors,
insecure and blocked registries: nspawnctl only needs the names.

Resolution (containers/image's pkg/shortnames): a fully qualified name is itself; a short
name that has an alias is the alias (its tag or digest kept); else it is tried under each
unqualified-search registry.  When that leaves several candidates nspawnctl never guesses:
podman prompts on a terminal and, without one, refuses in "enforcing" mode and tries every
registry in turn in "permissive" mode (its default); nspawnctl refuses, naming the
candidates, in both.  Only "disabled" (the admin's explicit "try them all") tries each in
turn, as podman does.
"""

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import Error, InvalidInput, NotFound, Usage
from ...fs.files import read_small_text
from .reference import Reference, is_domain, parse

SYSTEM_CONF = Path("/etc/containers/registries.conf")
SYSTEM_DIR = Path("/etc/containers/registries.conf.d")
USER_CONF = ".config/containers/registries.conf"
USER_DIR = ".config/containers/registries.conf.d"
ROOT_ALIAS_CACHE = Path("/var/cache/containers/short-name-aliases.conf")
USER_ALIAS_CACHE = ".cache/containers/short-name-aliases.conf"
MODES = ("enforcing", "permissive", "disabled")
MAX_DROP_INS = 1000


@dataclass
class Alias:
    value: Reference | None   # None: erased by a later file ("")
    origin: str


@dataclass
class Conf:
    """What the registries.conf files say about short names."""

    search: list[str] = field(default_factory=list)
    search_origin: str = ""
    aliases: dict[str, Alias] = field(default_factory=dict)
    cached_aliases: dict[str, Alias] = field(default_factory=dict)  # podman's records first
    mode: str = "permissive"
    files: list[str] = field(default_factory=list)

    def alias(self, name: str) -> Alias | None:
        found = self.cached_aliases.get(name) or self.aliases.get(name)
        return found if found is not None and found.value is not None else None


def conf_files(home: Path | None = None, etc: Path = SYSTEM_CONF,
               etc_dir: Path = SYSTEM_DIR) -> tuple[Path, list[Path]]:
    """(the main file, the drop-in files in the order they apply), as containers/image finds
    them for this user."""
    home = Path(os.environ.get("HOME", "/root")) if home is None else home
    user_conf, user_dir = home / USER_CONF, home / USER_DIR
    if user_conf.exists():
        main, dirs = user_conf, [user_dir]
    else:
        main, dirs = etc, [etc_dir, user_dir]
    drop_ins: list[Path] = []
    for d in dirs:
        try:
            names = sorted(e.name for e in os.scandir(d) if e.name.endswith(".conf")
                           and e.is_file())
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as e:
            raise Error(f"cannot read {d}: {e.strerror}") from None
        if len(names) > MAX_DROP_INS:
            raise InvalidInput(f"{d} holds more than {MAX_DROP_INS} files")
        drop_ins += [d / n for n in names]
    return main, drop_ins


def alias_cache_file(home: Path | None = None) -> Path:
    if os.geteuid() == 0:
        return ROOT_ALIAS_CACHE
    home = Path(os.environ.get("HOME", "/root")) if home is None else home
    return home / USER_ALIAS_CACHE


def load(main: Path | None = None, drop_ins: list[Path] | None = None,
         alias_cache: Path | None = None) -> Conf:
    """The configuration from the files (this user's, by default)."""
    if main is None:
        main, found = conf_files()
        drop_ins = found if drop_ins is None else drop_ins
    conf = Conf()
    text = read_small_text(main, "registries configuration")
    if text is not None:
        _apply(conf, _toml(text, main), main, drop_in=False)
    for path in drop_ins or []:
        text = read_small_text(path, "registries configuration")
        if text is not None:
            _apply(conf, _toml(text, path), path, drop_in=True)
    cache = alias_cache if alias_cache is not None else alias_cache_file()
    text = read_small_text(cache, "short-name aliases")
    if text is not None:
        doc = _toml(text, cache)
        conf.cached_aliases = _aliases(doc.get("aliases", {}), cache)
    return conf


def _toml(text: str, path: Path) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InvalidInput(f"{path} is not valid TOML: {e}",
                           hint="podman and skopeo read this file too: fix it there") from None


def _apply(conf: Conf, doc: dict, path: Path, drop_in: bool):
    conf.files.append(str(path))
    v1 = doc.get("registries")
    v2_keys = {"unqualified-search-registries", "registry", "aliases", "short-name-mode"}
    if isinstance(v1, dict):
        if drop_in:
            raise InvalidInput(f"{path}: a drop-in must use the version 2 format",
                               hint="see containers-registries.conf.d(5)")
        if v2_keys & set(doc):
            raise InvalidInput(f"{path} mixes the version 1 and version 2 formats",
                               hint="see containers-registries.conf(5)")
        search = v1.get("search", {})
        doc = {"unqualified-search-registries": search.get("registries", [])
               if isinstance(search, dict) else []}
    if "unqualified-search-registries" in doc:
        search = doc["unqualified-search-registries"]
        if not isinstance(search, list) or not all(isinstance(r, str) for r in search):
            raise InvalidInput(f"{path}: unqualified-search-registries is not a list of names")
        for registry in search:
            _check_registry(registry, path)
        conf.search, conf.search_origin = list(search), str(path)
    if "short-name-mode" in doc and doc["short-name-mode"] != "":
        mode = doc["short-name-mode"]
        if mode not in MODES:
            raise InvalidInput(f"{path}: invalid short-name-mode {str(mode)[:40]!r}",
                               hint=f"use one of: {', '.join(MODES)}")
        conf.mode = mode
    if "aliases" in doc:
        conf.aliases.update(_aliases(doc["aliases"], path))


def _check_registry(registry: str, path: Path):
    if not is_domain(registry):
        raise InvalidInput(f"{path}: invalid unqualified-search registry {registry[:80]!r}",
                           hint="a search registry is HOST[:PORT]")


def _aliases(table: object, path: Path) -> dict[str, Alias]:
    if not isinstance(table, dict):
        raise InvalidInput(f"{path}: [aliases] is not a table")
    out = {}
    for name, value in table.items():
        try:
            key = parse(name)
        except Error:
            key = None
        if key is None or not key.short or key.tag or key.digest:
            raise InvalidInput(f"{path}: invalid short name {name[:80]!r} in [aliases]",
                               hint="an alias's name is a short name without tag or digest")
        if not isinstance(value, str):
            raise InvalidInput(f"{path}: the alias of {name!r} is not a string")
        if value == "":
            out[key.path] = Alias(None, str(path))
            continue
        try:
            target = parse(value)
        except Error:
            target = None
        if target is None or target.short or target.tag or target.digest:
            raise InvalidInput(
                f"{path}: invalid alias {value[:80]!r} for {name!r}",
                hint="an alias is a fully qualified name without tag or digest, e.g. "
                     "docker.io/library/debian")
        out[key.path] = Alias(parse(value, normalize=True), str(path))
    return out


@dataclass(frozen=True)
class Resolved:
    candidates: tuple[Reference, ...]   # to try in order (several only in "disabled" mode)
    why: str                            # for the user: how a short name was resolved


def resolve(ref: Reference, conf: Conf) -> Resolved:
    """The references a user's reference may be pulled from (see the module docstring)."""
    if not ref.short:
        return Resolved((ref,), "")
    alias = conf.alias(ref.path)
    if alias is not None:
        assert alias.value is not None
        return Resolved((ref.with_repository(alias.value.repository),),
                        f"resolved {ref.path!r} as an alias ({alias.origin})")
    if not conf.search:
        where = conf.search_origin or (conf.files[0] if conf.files else str(SYSTEM_CONF))
        raise NotFound(f"short name {ref.path!r} did not resolve to an alias and no "
                       f"unqualified-search registries are defined in {where}",
                       hint=f"name the image in full, e.g. docker.io/library/{ref.path}, or add "
                         "an alias or unqualified-search-registries (containers-registries"
                         ".conf(5))")
    candidates = tuple(ref.with_repository(f"{registry}/{ref.path}") for registry in conf.search)
    why = f"resolved {ref.path!r} with the unqualified-search registries ({conf.search_origin})"
    if len(candidates) == 1 or conf.mode == "disabled":
        return Resolved(candidates, why)
    raise Usage(f"short name {ref.path!r} is ambiguous: it could be "
                + ", ".join(c.name for c in candidates),
                hint="name the image in full, or give it an alias in /etc/containers/"
                     "registries.conf.d/ (short-name-mode " + conf.mode + " never guesses)")


def local_candidates(ref: Reference, conf: Conf) -> list[Reference]:
    """Where an image pulled earlier under a short name may be recorded, in podman's order
    (containers/image's ResolveLocally): its alias, localhost/, each search registry.  No
    ambiguity here: the first one pulled is the one meant, as podman looks it up."""
    if not ref.short:
        return [ref]
    found = []
    alias = conf.alias(ref.path)
    if alias is not None and alias.value is not None:
        found.append(ref.with_repository(alias.value.repository))
    for registry in ["localhost", *conf.search]:
        found.append(ref.with_repository(f"{registry}/{ref.path}"))
    return found
