"""Compose files as stacks: the part of the Compose specification that maps onto nspawnctl,
translated into the native stack format (stacks/model.py validates that).

The translation keeps meaning or refuses: every key it cannot honour is a problem naming it
(or, with --ignore-unsupported, a warning line), never dropped silently; the spec's own
exceptions are `version` (obsolete) and `x-*` extension keys, which Compose itself ignores.
Each produced key keeps the line of the compose key it came from, so the native validator's
errors point into the compose file.  All problems are collected, not only the first.

Where nspawnctl's model differs from Docker's, the choice is made here once:
- a compose `command` alone runs as the arguments of the image's ENTRYPOINT: it is `args`
  (create --args); with an `entrypoint` beside it, entrypoint + command is `cmd`, exactly
  what Docker runs;
- every service runs its command (`boot: false`), as Docker runs it, never the tree's init;
- a service on no network joins nspawnctl's `default` network, where containers find each
  other by name (Compose's project-wide `default` network plays that part);
- `image: nginx:1.25` means docker.io/library/nginx:1.25 to Docker, not a short name that
  registries.conf resolves: it is written out in full;
- `restart: always` and `unless-stopped` bring a container back when the host (Docker's
  daemon) starts again: they also set `enabled: true`;
- Compose interpolates `$VAR` and `${VAR}` from the environment it runs in, and nspawnctl
  does not: such a value is refused, `$$` (a literal `$`) becomes `$`;
- a secret (top-level `secrets: NAME: file: PATH`, a service's `secrets:`) is what Docker
  Compose makes of it: the host's file bound read-only at /run/secrets/NAME (or the
  target), with `idmap`, so its owner and mode inside are the host's (a root-owned 0600 file
  is root's alone inside, as under Docker, not nobody's).  Not a systemd credential:
  systemd-nspawn puts those in /run/host/credentials, 0400 and root's, and names them in
  $CREDENTIALS_DIRECTORY, which a compose service neither reads nor, when it runs as
  another user, could; and /run is a tmpfs, so no link in the tree reaches them.  A secret
  from the environment (`environment:`) is refused, as interpolation is.
"""

import math
import os
import re
import shlex
import stat
from pathlib import Path
from typing import Any

from ..errors import Error
from ..fs.files import read_small_text
from ..names import check_volume_name
from ..settings import health
from ..settings.model import HEALTHY
from ..settings.networking import parse_port
from ..settings.values import (
    format_size,
    parse_bind,
    parse_cpus,
    parse_env,
    parse_size,
    parse_volume,
)
from ..sources.registry.reference import parse as parse_reference
from .yamlfile import Doc, Problem, Seq

MAX_RANGE = 100        # ports of one range expanded into that many fixed ports
MAX_PORTS = 1000       # published ports of one service, ranges expanded
ENV_FILE_MAX = 256 * 1024
# Compose's interpolation: $$ is a literal $, $NAME and ${...} are variables.
_DOLLAR = re.compile(r"\$(\$|\{|[_a-zA-Z][_a-zA-Z0-9]*)")
_RANGE = re.compile(r"([0-9]+)(?:-([0-9]+))?")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# a secret's name, as Docker takes it: a file's name under /run/secrets
_SECRET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")
SECRETS_DIR = "/run/secrets"
# compose restart -> (systemd Restart=, started when the host starts)
_RESTART = {"no": ("no", False), "always": ("always", True), "on-failure": ("on-failure", False),
            "unless-stopped": ("always", True)}
_PULL = {"always": "always", "never": "never", "missing": "missing",
         "if_not_present": "missing"}


def is_compose(doc: Doc) -> bool:
    """A compose file has services:, a stack file containers:."""
    return "services" in doc


def translate(doc: Doc, base_dir: Path, ignore_unsupported: bool
              ) -> tuple[Doc, list[Problem], list[str]]:
    """The native stack of a compose file (its directory base_dir: relative binds and env
    files are there), every problem found, and a warning line for each key left out because
    of ignore_unsupported (and for what is honoured only in part).  A warning reads
    'LINE: KEY: MESSAGE', so 'FILE:' before it reads as a problem does."""
    return _Translator(base_dir, ignore_unsupported).run(doc)


def _doc(line: int) -> Doc:
    made = Doc()
    made.line = line
    return made


def _put(doc: Doc, key: str, value: Any, line: int):
    doc[key] = value
    doc.lines[key] = line


def _seq(line: int, items: list[tuple[Any, int]]) -> Seq:
    made = Seq(v for v, _ in items)
    made.line = line
    made.lines = [n for _, n in items]
    return made


def _is_extension(key: str) -> bool:
    return key.startswith("x-")


class _Translator:
    def __init__(self, base_dir: Path, ignore_unsupported: bool):
        self.base_dir = Path(os.path.abspath(base_dir))
        self.ignore = ignore_unsupported
        self.problems: list[Problem] = []
        self.warnings: list[str] = []
        self.names: dict[str, str] = {}            # service -> its container's name
        self.native_networks = _doc(0)             # the networks to make
        self.network_names: dict[str, str] = {}   # compose network -> its name on the host
        self.said: set[str] = set()                # keys of values refused for a $VAR
        self.declared_volumes: set[str] = set()    # the top-level volumes: named volumes
        # the top-level secrets: name -> its host file (None: left out, --ignore-unsupported)
        self.secrets: dict[str, str | None] = {}

    # ------------------------------------------------------------------ reporting

    def problem(self, line: int, key: str, message: str):
        if key in self.said:  # a value refused for its $VAR is not refused again
            return
        self.problems.append(Problem(line, key, message))

    def warn(self, line: int, key: str, message: str):
        self.warnings.append(f"{line}: {key}: {message}")

    def unsupported(self, line: int, key: str, why: str = "", instead: str = "") -> bool:
        """Refuse a key nspawnctl cannot honour, or with ignore_unsupported say it is left
        out (or what is done instead); True when the caller may go on without it."""
        if self.ignore:
            self.warn(line, key, f"not supported by nspawnctl{why}; "
                                 f"{instead or 'left out'} (--ignore-unsupported)")
            return True
        self.problem(line, key, f"not supported by nspawnctl{why} (--ignore-unsupported to go "
                                f"on {instead or 'without it'})")
        return False

    def other_keys(self, doc: Doc, where: str, known: tuple[str, ...]):
        for key in doc:
            if key not in known and not _is_extension(key):
                self.unsupported(doc.line_of(key), f"{where}.{key}")

    def expect(self, value: Any, kind: type | tuple[type, ...], line: int, key: str,
               what: str) -> bool:
        """Whether value is of kind (bool is no number here); a problem if not."""
        if isinstance(value, kind) and not (isinstance(value, bool) and bool not in
                                            (kind if isinstance(kind, tuple) else (kind,))):
            return True
        self.problem(line, key, f"expected {what}, not {_shown(value)}")
        return False

    def listed(self, svc: Doc, where: str, name: str, what: str) -> tuple[Seq, int] | None:
        """A service's list-valued key (ports, volumes, secrets) and its line; None when it is
        absent or not a list (a problem then)."""
        if name not in svc:
            return None
        value, line = svc[name], svc.line_of(name)
        if not self.expect(value, Seq, line, f"{where}.{name}", what):
            return None
        return value, line

    # ------------------------------------------------------------------ the file

    def run(self, doc: Doc) -> tuple[Doc, list[Problem], list[str]]:
        self.interpolate(doc)
        out = _doc(doc.line)
        for key in doc:
            line = doc.line_of(key)
            if key in ("services", "networks", "version") or _is_extension(key):
                continue  # version: obsolete, as the spec says; x-*: extensions, ignored
            if key == "name":
                if self.expect(doc[key], str, line, key, "the project's name as text"):
                    _put(out, "name", doc[key], line)
            elif key == "containers":
                self.problem(line, key, "a stack file's key in a compose file (services:): "
                                        "write the file in one format")
            elif key == "volumes":
                self.named_volumes(doc, out)
            elif key == "secrets":
                self.declared_secrets(doc["secrets"], line)
            else:
                self.unsupported(line, key)
        self.networks_of(doc)
        services = doc.get("services")
        if not isinstance(services, Doc):
            self.problem(doc.line_of("services"), "services", "expected a mapping of "
                         f"services, not {_shown(services)}")
            return out, self.problems, self.warnings
        self.names = self.container_names(services)
        if self.native_networks:
            _put(out, "networks", self.native_networks, doc.line_of("networks"))
        containers = _doc(services.line)
        for name, service in services.items():
            line = services.line_of(name)
            if not isinstance(service, Doc):
                self.problem(line, f"services.{name}", f"expected a mapping, not "
                             f"{_shown(service)}")
                continue
            _put(containers, self.names[name], self.service(name, service, line), line)
        _put(out, "containers", containers, doc.line_of("services"))
        return out, self.problems, self.warnings

    def interpolate(self, top: Doc):
        """Compose's $-syntax in every value (not keys, as the spec says): $$ -> $, and a
        variable is a problem; x-* subtrees are Compose's to ignore.  A loop, not recursion:
        however deep the file nests, no RecursionError."""
        todo: list[tuple[Any, str]] = [(top, "")]
        while todo:
            node, where = todo.pop()
            if isinstance(node, Doc):
                # the names of services and networks are the user's: x-web is a service
                names = where in ("services", "networks")
                places = [(k, f"{where}.{k}" if where else k, node.line_of(k)) for k in node
                          if names or not _is_extension(k)]
            elif isinstance(node, Seq):
                places = [(i, f"{where}[{i}]", node.line_of(i)) for i in range(len(node))]
            else:
                continue
            for place, path, line in places:
                node[place] = self.text_of(node[place], path, line)
                todo.append((node[place], path))

    def text_of(self, value: Any, key: str, line: int) -> Any:
        if not isinstance(value, str) or "$" not in value:
            return value
        variables = [m.group() for m in _DOLLAR.finditer(value) if m.group(1) != "$"]
        if variables:
            self.problem(line, key, f"{variables[0]}: compose's variables ($VAR, ${{VAR}}) "
                                    "are not supported by nspawnctl: write the value (or $$ "
                                    "for a $)")
            self.said.add(key)
            return value
        return _DOLLAR.sub(lambda m: "$" if m.group(1) == "$" else m.group(), value)

    def container_names(self, services: Doc) -> dict[str, str]:
        """service -> its container's name: container_name, else the service's name."""
        names: dict[str, str] = {}
        seen: dict[str, str] = {}
        for name, service in services.items():
            own = service.get("container_name") if isinstance(service, Doc) else None
            if own is not None and not self.expect(
                    own, str, service.line_of("container_name"),
                    f"services.{name}.container_name", "a name"):
                own = None
            names[name] = own or name
            if names[name] in seen:
                self.problem(services.line_of(name), f"services.{name}",
                             f"its container's name {names[name]} is also service "
                             f"{seen[names[name]]}'s")
            seen[names[name]] = name
        return names

    # ------------------------------------------------------------------ networks

    def networks_of(self, doc: Doc):
        """Top-level networks -> the native networks to make (native_networks), and what each
        compose network is called on the host (network_names); external ones are the
        host's, not made."""
        self.native_networks = _doc(doc.line_of("networks"))
        self.network_names = {"default": "default"}
        declared = doc.get("networks")
        if declared is None:
            return
        if not isinstance(declared, Doc):
            self.problem(doc.line_of("networks"), "networks", f"expected a mapping of "
                         f"networks, not {_shown(declared)}")
            return
        for name, network in declared.items():
            key, line = f"networks.{name}", declared.line_of(name)
            if network is None:
                network = _doc(line)
            if not isinstance(network, Doc):
                self.problem(line, key, f"expected a mapping, not {_shown(network)}")
                continue
            own = network.get("name", name)
            if not self.expect(own, str, network.line_of("name"), f"{key}.name", "a name"):
                continue
            self.network_names[name] = own
            if network.get("external"):
                self.other_keys(network, key, ("name", "external"))
                continue  # the host's: left as it is
            made = self.network(network, key)
            if own == "default":
                if made:
                    self.problem(line, key, "the default network is nspawnctl's, shared "
                                            "by every container: give this one a name "
                                            "(networks.default.name) to configure it")
                continue
            _put(self.native_networks, own, made, line)

    def network(self, network: Doc, key: str) -> Doc:
        made = _doc(network.line)
        for option, value in network.items():
            line, where = network.line_of(option), f"{key}.{option}"
            if option in ("name", "external") or _is_extension(option):
                continue
            if option == "driver":
                if value != "bridge":
                    self.unsupported(line, where, ": nspawnctl networks are bridges")
            elif option in ("internal", "enable_ipv6") and value is False:
                pass  # what nspawnctl networks are
            elif option == "enable_ipv4" and value is True:
                pass
            elif option == "attachable":
                pass  # any container may join an nspawnctl network
            elif option == "ipam":
                subnet = self.ipam(value, line, where)
                if subnet is not None:
                    _put(made, "subnet", subnet[0], subnet[1])
            else:
                self.unsupported(line, where)
        return made

    def ipam(self, ipam: Any, line: int, key: str) -> tuple[str, int] | None:
        if not isinstance(ipam, Doc):
            self.problem(line, key, f"expected a mapping, not {_shown(ipam)}")
            return None
        found = None
        for option, value in ipam.items():
            where, at = f"{key}.{option}", ipam.line_of(option)
            if option == "driver" and value == "default" or _is_extension(option):
                continue
            if option != "config":
                self.unsupported(at, where)
                continue
            if not self.expect(value, Seq, at, where, "a list"):
                continue
            if len(value) > 1:
                self.unsupported(at, where, ": more than one subnet")
            for i, entry in enumerate(value[:1]):
                entry_at = value.line_of(i)
                if not self.expect(entry, Doc, entry_at, f"{where}[{i}]", "a mapping"):
                    continue
                self.other_keys(entry, f"{where}[{i}]", ("subnet",))
                subnet = entry.get("subnet")
                if subnet is not None and self.expect(subnet, str, entry.line_of("subnet"),
                                                      f"{where}[{i}].subnet", "a subnet"):
                    found = (subnet, entry.line_of("subnet"))
        return found

    # ------------------------------------------------------------------ a service

    def service(self, name: str, svc: Doc, line: int) -> Doc:
        """One service as a native container; line: its name's."""
        where = f"services.{name}"
        out = _doc(line)
        handled = ("image", "command", "entrypoint", "environment", "env_file", "ports",
                   "volumes", "networks", "network_mode", "depends_on", "restart", "mem_limit",
                   "cpus", "pids_limit", "deploy", "hostname", "container_name", "platform",
                   "pull_policy", "expose", "healthcheck", "secrets")
        self.other_keys(svc, where, handled)
        if "expose" in svc:  # containers of one nspawnctl network reach each other's ports
            self.expect(svc["expose"], Seq, svc.line_of("expose"), f"{where}.expose",
                        "a list of ports")
        self.image(svc, where, out, line)
        _put(out, "boot", False, svc.lines.get("image", line))
        self.command(svc, where, out)
        self.environment(svc, where, out)
        self.ports(svc, where, out)
        self.volumes(svc, where, out)
        self.service_secrets(svc, where, out)
        self.service_network(svc, where, out, line)
        self.depends_on(svc, where, out)
        self.restart(svc, where, out)
        self.limits(svc, where, out)
        self.healthcheck(svc, where, out)
        for key in ("hostname", "platform"):
            if key in svc and self.expect(svc[key], str, svc.line_of(key), f"{where}.{key}",
                                          "text"):
                _put(out, key, svc[key], svc.line_of(key))
        if "pull_policy" in svc:
            policy, at = svc["pull_policy"], svc.line_of("pull_policy")
            if isinstance(policy, str) and policy in _PULL:
                _put(out, "pull", _PULL[policy], at)
            else:
                self.unsupported(at, f"{where}.pull_policy", f": {_shown(policy)} (always, "
                                 "never, missing are)")
        return out

    def image(self, svc: Doc, where: str, out: Doc, line: int):
        if "image" not in svc:
            self.problem(line, where, "no image: nspawnctl runs images from a registry and "
                                          "does not build them")
            return
        image, line = svc["image"], svc.line_of("image")
        if not self.expect(image, str, line, f"{where}.image", "an image reference"):
            return
        try:
            # Docker's meaning: a name without a registry is Docker Hub's
            ref = parse_reference(image, normalize=True)
        except Error as e:
            self.problem(line, f"{where}.image", e.message)
            return
        _put(out, "from", f"docker://{ref.name}", line)

    def words(self, value: Any, line: int, key: str) -> list[tuple[str, int]] | None:
        """A command or entrypoint: a string split as a shell would (Compose does, and runs
        no shell), or a list of words."""
        if isinstance(value, str):
            try:
                return [(w, line) for w in shlex.split(value)]
            except ValueError as e:
                self.problem(line, key, f"cannot split {value!r}: {e}")
                return None
        if isinstance(value, Seq):
            words = []
            for i, word in enumerate(value):
                if not self.expect(word, str, value.line_of(i), f"{key}[{i}]", "a word"):
                    return None
                words.append((word, value.line_of(i)))
            return words
        self.problem(line, key, f"expected a command (text or a list), not {_shown(value)}")
        return None

    def command(self, svc: Doc, where: str, out: Doc):
        entrypoint, command = svc.get("entrypoint"), svc.get("command")
        at = svc.line_of("entrypoint" if entrypoint is not None else "command")
        first = self.words(entrypoint, at, f"{where}.entrypoint") if entrypoint is not None \
            else []
        rest = self.words(command, svc.line_of("command"), f"{where}.command") \
            if command is not None else []
        if first is None or rest is None:
            return
        if entrypoint is None and command is not None:
            # Compose: the image's ENTRYPOINT with these arguments, which create --args is
            # (the ENTRYPOINT is known only once the image is pulled)
            if not rest:
                self.problem(svc.line_of("command"), f"{where}.command",
                             "nothing to run (an empty command)")
                return
            _put(out, "args", _seq(svc.line_of("command"), rest), svc.line_of("command"))
            return
        if entrypoint is None and command is None:
            return  # the image's own ENTRYPOINT and CMD, as Compose runs them
        if not first + rest:
            self.problem(at, f"{where}.entrypoint" if entrypoint is not None
                         else f"{where}.command", "nothing left to run (both empty)")
            return
        _put(out, "cmd", _seq(at, first + rest), at)

    # ------------------------------------------------------------------ environment

    def environment(self, svc: Doc, where: str, out: Doc):
        env: dict[str, tuple[str, int]] = {}
        if "env_file" in svc:
            self.env_files(svc["env_file"], svc.line_of("env_file"), f"{where}.env_file", env)
        if "environment" in svc:
            self.env_entries(svc["environment"], svc.line_of("environment"),
                             f"{where}.environment", env)
        if env:
            _put(out, "env", _seq(svc.line_of("environment" if "environment" in svc
                                              else "env_file"),
                                  [(f"{k}={v}", n) for k, (v, n) in env.items()]),
                 svc.line_of("environment" if "environment" in svc else "env_file"))

    def add_env(self, env: dict, name: str, value: str, line: int, key: str):
        if not _ENV_NAME.fullmatch(name):
            self.problem(line, key, f"invalid environment variable name {name!r}: letters, "
                                    "digits and _, not starting with a digit")
            return
        try:
            parse_env(f"{name}={value}")
        except Error as e:
            self.problem(line, key, e.message)
            return
        env.pop(name, None)  # a later one wins, and stands where it is said
        env[name] = (value, line)

    def env_entries(self, value: Any, line: int, key: str, env: dict):
        unset = ("no value: compose takes it from the environment it runs in, nspawnctl does "
                 "not: give NAME=VALUE")
        if isinstance(value, Seq):
            for i, entry in enumerate(value):
                at, where = value.line_of(i), f"{key}[{i}]"
                if not self.expect(entry, str, at, where, "NAME=VALUE"):
                    continue
                name, sep, text = entry.partition("=")
                if not sep:
                    self.problem(at, where, unset)
                    continue
                self.add_env(env, name, text, at, where)
        elif isinstance(value, Doc):
            for name, text in value.items():
                at, where = value.line_of(name), f"{key}.{name}"
                if text is None:
                    self.problem(at, where, unset)
                elif isinstance(text, bool):
                    self.problem(at, where, "a YAML boolean (true, yes, on...): quote it, "
                                            "as compose asks, to say which text it is")
                elif isinstance(text, (int, float, str)):
                    self.add_env(env, name, str(text), at, where)
                else:
                    self.problem(at, where, f"expected text, not {_shown(text)}")
        else:
            self.problem(line, key, f"expected a list of NAME=VALUE or a mapping, not "
                                    f"{_shown(value)}")

    def env_files(self, value: Any, line: int, key: str, env: dict):
        entries = value if isinstance(value, Seq) else _seq(line, [(value, line)])
        for i, entry in enumerate(entries):
            at = entries.line_of(i)
            where = f"{key}[{i}]" if isinstance(value, Seq) else key
            required, raw = True, False
            if isinstance(entry, Doc):
                self.other_keys(entry, where, ("path", "required", "format"))
                required = entry.get("required", True)
                raw = entry.get("format") == "raw"
                if entry.get("format") not in (None, "raw"):
                    self.problem(entry.line_of("format"), f"{where}.format",
                                 f"unknown format {_shown(entry.get('format'))} (raw is one)")
                    continue
                if not isinstance(required, bool):
                    self.problem(entry.line_of("required"), f"{where}.required",
                                 "expected true or false")
                    continue
                entry = entry.get("path")
            if not self.expect(entry, str, at, where, "a file's path"):
                continue
            path = Path(os.path.normpath(self.base_dir / entry))
            try:
                text = read_small_text(path, "env file", ENV_FILE_MAX)
            except Error as e:
                self.problem(at, where, e.message)
                continue
            if text is None:
                if required:
                    self.problem(at, where, f"no such file: {path}")
                continue
            self.env_file(text, path, raw, at, where, env)

    def env_file(self, text: str, path: Path, raw: bool, line: int, key: str, env: dict):
        """The simple part of compose's .env format: NAME=VALUE lines, comments and blank
        lines; a value in single quotes as it is.  Anything that needs compose's quoting,
        escapes or interpolation is refused, naming the file's line."""
        for number, entry in enumerate(text.splitlines(), 1):
            stripped = entry.strip()
            if not stripped or stripped.startswith("#"):
                continue
            name, sep, value = stripped.partition("=")
            name = name.strip()
            where = f"{path}:{number}"
            if not sep or not _ENV_NAME.fullmatch(name):
                self.problem(line, key, f"{where}: expected NAME=VALUE")
                continue
            if not raw:
                if len(value) >= 2 and value[0] == value[-1] == "'" and \
                        not any(c in value[1:-1] for c in "'\\"):
                    value = value[1:-1]
                elif any(c in value for c in "\"'\\$#") or value != value.strip():
                    self.problem(line, key, f"{where}: quotes, escapes, $ and comments after "
                                            "a value are not supported here: write "
                                            "NAME=VALUE, or NAME='VALUE' for a value as it is")
                    continue
            self.add_env(env, name, value, line, key)

    # ------------------------------------------------------------------ ports

    def ports(self, svc: Doc, where: str, out: Doc):
        given = self.listed(svc, where, "ports", "a list of ports")
        if given is None:
            return
        value, line = given
        made: list[tuple[str, int]] = []
        for i, port in enumerate(value):
            at, key = value.line_of(i), f"{where}.ports[{i}]"
            if isinstance(port, str):
                found = self.short_port(port, at, key)
            elif isinstance(port, Doc):
                found = self.long_port(port, key)
            elif isinstance(port, int) and not isinstance(port, bool):
                self.problem(at, key, f"{port}: a container port alone is published on a "
                                      "port the host picks; nspawnctl publishes fixed ports "
                                      "only: give \"HOSTPORT:CONTAINERPORT\" (quoted: YAML "
                                      "reads 22:22 unquoted as the number 1342)")
                continue
            else:
                self.problem(at, key, f"expected a port, not {_shown(port)}")
                continue
            for text in found:
                try:
                    parse_port(text)
                except Error as e:
                    self.problem(at, key, e.message)
                    continue
                made.append((text, at))
            if len(made) > MAX_PORTS:  # said before ranges expand to millions
                self.problem(at, key, f"more than {MAX_PORTS} published ports in this service")
                return
        if made:
            _put(out, "port", _seq(line, made), line)

    def short_port(self, text: str, line: int, key: str) -> list[str]:
        """'[[IP:]HOST:]CONTAINER[/PROTO]', either port a range -> native port texts."""
        spec, _, proto = text.partition("/")
        host_ip = ""
        if spec.startswith("["):
            host_ip, bracket, spec = spec[1:].partition("]:")
            if not bracket:
                self.problem(line, key, f"{text!r}: expected [IP]:HOST:CONTAINER")
                return []
            parts = spec.split(":")
        else:
            parts = spec.rsplit(":", 2)
            if len(parts) == 3:
                host_ip = parts.pop(0)
        if len(parts) == 1 or parts[0] == "":
            self.problem(line, key, f"{text!r}: a container port alone is published on a port "
                                    "the host picks; nspawnctl publishes fixed ports only: "
                                    "give HOSTPORT:CONTAINERPORT")
            return []
        if len(parts) != 2:
            self.problem(line, key, f"{text!r}: expected [[IP:]HOSTPORT:]CONTAINERPORT")
            return []
        return self.port_pairs(host_ip, parts[0], parts[1], proto or "tcp", line, key)

    def long_port(self, port: Doc, key: str) -> list[str]:
        # name and app_protocol only describe the port; mode host/ingress is one host's same
        self.other_keys(port, key, ("target", "published", "host_ip", "protocol", "mode",
                                    "name", "app_protocol"))
        if port.get("mode", "host") not in ("host", "ingress"):
            self.problem(port.line_of("mode"), f"{key}.mode", "expected host or ingress")
            return []
        values = []
        for field, kind in (("target", "a port"), ("published", "a host port")):
            value = port.get(field)
            if value is None:
                self.problem(port.line, key, f"no {field}" + (
                    ": a port the host picks; nspawnctl publishes fixed ports only"
                    if field == "published" else ""))
                return []
            if not self.expect(value, (int, str), port.line_of(field), f"{key}.{field}", kind):
                return []
            values.append(str(value))
        host_ip, proto = port.get("host_ip", ""), port.get("protocol", "tcp")
        if not self.expect(host_ip, str, port.line_of("host_ip"), f"{key}.host_ip",
                           "an IP address") or \
                not self.expect(proto, str, port.line_of("protocol"), f"{key}.protocol",
                                "tcp or udp"):
            return []
        return self.port_pairs(host_ip, values[1], values[0], proto, port.line, key)

    def port_pairs(self, host_ip: str, host: str, container: str, proto: str, line: int,
                   key: str) -> list[str]:
        """Host and container ports (either a range of as many) -> one native port text per
        pair; a host range for one container port is Docker picking one: refused."""
        ranges = []
        for text in (host, container):
            match = _RANGE.fullmatch(text.strip())
            if not match:
                self.problem(line, key, f"{text!r} is not a port number or range")
                return []
            first = int(match.group(1))
            last = int(match.group(2)) if match.group(2) else first
            if last < first or last > 65535:
                self.problem(line, key, f"{text!r}: not a range of ports (1 to 65535)")
                return []
            ranges.append(range(first, last + 1))
        hosts, containers = ranges
        if len(hosts) != len(containers):
            self.problem(line, key, f"{host}:{container}: the host port is picked from a range; "
                                    "nspawnctl publishes fixed ports only: give ranges of as "
                                    "many ports on both sides")
            return []
        if len(hosts) > MAX_RANGE:
            self.problem(line, key, f"{host}: a range of {len(hosts)} ports; at most "
                                    f"{MAX_RANGE} are published one by one")
            return []
        suffix = "" if proto == "tcp" else f"/{proto}"
        ip = f"{host_ip}:" if host_ip else ""
        return [f"{ip}{h}:{c}{suffix}" for h, c in zip(hosts, containers)]

    # ------------------------------------------------------------------ volumes

    def named_volumes(self, doc: Doc, out: Doc):
        """The top-level volumes: named volumes (nspawnctl volume), made when missing.  A
        driver and its options, labels or a name of another project are not nspawnctl's."""
        value, line = doc["volumes"], doc.line_of("volumes")
        if value is None:
            return
        if not self.expect(value, Doc, line, "volumes", "a mapping of volume names"):
            return
        made = _doc(line)
        for name, body in value.items():
            at, key = value.line_of(name), f"volumes.{name}"
            if body is not None and not (isinstance(body, Doc) and not body):
                if not self.unsupported(at, key, ": a volume's options (a plain name is)"):
                    continue
            try:
                check_volume_name(name)
            except Error as e:
                self.problem(at, key, e.message)
                continue
            _put(made, name, None, at)
            self.declared_volumes.add(name)
        if made:
            _put(out, "volumes", made, line)

    def volumes(self, svc: Doc, where: str, out: Doc):
        given = self.listed(svc, where, "volumes", "a list of mounts")
        if given is None:
            return
        value, line = given
        made, named = [], []
        for i, volume in enumerate(value):
            at, key = value.line_of(i), f"{where}.volumes[{i}]"
            # a named volume's mount (NAME:PATH, type: volume), "" when refused, None: a bind
            if isinstance(volume, str):
                mount = self.named_mount(volume, at, key)
                bind = self.short_volume(volume, at, key) if mount is None else None
            elif isinstance(volume, Doc):
                mount = self.named_long_mount(volume, key)
                bind = self.long_volume(volume, key) if mount is None else None
            else:
                self.problem(at, key, f"expected a mount, not {_shown(volume)}")
                continue
            try:
                if mount:
                    named.append((str(parse_volume(mount)), at))
                elif bind is not None:
                    parse_bind(bind)
                    made.append((bind, at))
            except Error as e:
                self.problem(at, key, e.message)
        if made:
            _put(out, "bind", _seq(line, made), line)
        if named:
            _put(out, "volume", _seq(line, named), line)

    def named_mount(self, text: str, line: int, key: str) -> str | None:
        """NAME:PATH[:ro|rw] -> the volume key's NAME:PATH[:ro] when NAME is a declared
        named volume (compose refuses one that is not); None when text is a bind."""
        parts = text.split(":")
        if len(parts) < 2 or parts[0].startswith(("/", ".", "~")):
            return None
        if parts[0] not in self.declared_volumes:
            self.problem(line, key, f"{parts[0]} is not a named volume of the file's "
                                    "(volumes:)")
            return ""
        modes = parts[2].split(",") if len(parts) == 3 else []
        for mode in modes:
            if mode not in ("ro", "rw", "z", "Z") and \
                    not self.unsupported(line, key, f": mode {mode}"):
                return ""
        return ":".join(parts[:2]) + (":ro" if "ro" in modes else "")

    def named_long_mount(self, volume: Doc, key: str) -> str | None:
        """type: volume, source: NAME, target: PATH -> NAME:PATH[:ro]; None for others."""
        if volume.get("type") != "volume":
            return None
        self.other_keys(volume, key, ("type", "source", "target", "read_only", "volume"))
        source, target = volume.get("source"), volume.get("target")
        readonly = volume.get("read_only", False)
        if not (self.expect(source, str, volume.line_of("source"), f"{key}.source",
                            "a volume's name")
                and self.expect(target, str, volume.line_of("target"), f"{key}.target",
                                "a path")
                and self.expect(readonly, bool, volume.line_of("read_only"),
                                f"{key}.read_only", "true or false")):
            return ""
        if source not in self.declared_volumes:
            self.problem(volume.line_of("source"), f"{key}.source",
                         f"{source} is not a named volume of the file's (volumes:)")
            return ""
        return f"{source}:{target}" + (":ro" if readonly else "")

    def host_path(self, source: str, line: int, key: str) -> str | None:
        """A bind's host path: absolute, or relative to the compose file's directory
        (lexically, as compose resolves it); a name is a named volume."""
        if source.startswith("/"):
            return os.path.normpath(source)
        if source.startswith("."):
            return os.path.normpath(self.base_dir / source)
        if source.startswith("~"):
            self.problem(line, key, f"{source}: give the host path in full, or relative to "
                                    "the compose file (./...)")
            return None
        self.unsupported(line, key, f": {source} is a named volume (host paths are: "
                                    "/path or ./path)")
        return None

    def short_volume(self, text: str, line: int, key: str) -> str | None:
        parts = text.split(":")
        if len(parts) == 1:
            self.unsupported(line, key, f": {text} is an anonymous volume (binds are: "
                                        "HOSTPATH:PATH)")
            return None
        if len(parts) > 3:
            self.problem(line, key, f"{text!r}: expected HOSTPATH:PATH[:MODE] (paths without "
                                    "':')")
            return None
        source = self.host_path(parts[0], line, key)
        readonly = False
        for mode in (parts[2].split(",") if len(parts) == 3 else ()):
            if mode in ("ro", "rw"):
                readonly = mode == "ro"
            elif mode not in ("z", "Z"):  # SELinux labels: nspawnctl does not relabel
                if not self.unsupported(line, key, f": mode {mode}"):
                    return None
        if source is None:
            return None
        return f"{source}:{parts[1]}" + (":ro" if readonly else "")

    def long_volume(self, volume: Doc, key: str) -> str | None:
        self.other_keys(volume, key, ("type", "source", "target", "read_only", "bind"))
        kind = volume.get("type")
        if kind != "bind":
            self.unsupported(volume.line_of("type"), f"{key}.type",
                             f": {_shown(kind)} mounts (bind is)")
            return None
        source, target = volume.get("source"), volume.get("target")
        readonly = volume.get("read_only", False)
        if not (self.expect(source, str, volume.line_of("source"), f"{key}.source",
                            "a host path")
                and self.expect(target, str, volume.line_of("target"), f"{key}.target",
                                "a path")
                and self.expect(readonly, bool, volume.line_of("read_only"),
                                f"{key}.read_only", "true or false")):
            return None
        options = volume.get("bind")
        if options is not None:
            if not self.expect(options, Doc, volume.line_of("bind"), f"{key}.bind",
                               "a mapping"):
                return None
            self.other_keys(options, f"{key}.bind", ("create_host_path", "selinux"))
        assert isinstance(source, str)
        path = self.host_path(source, volume.line_of("source"), f"{key}.source")
        return None if path is None else f"{path}:{target}" + (":ro" if readonly else "")

    # ------------------------------------------------------------------ secrets

    def declared_secrets(self, value: Any, line: int):
        """The top-level secrets: each a host file (file:, relative to the compose file's
        directory), bound where a service's secrets say (service_secrets)."""
        if value is None:
            return
        if not self.expect(value, Doc, line, "secrets", "a mapping of secrets"):
            return
        for name, body in value.items():
            at, key = value.line_of(name), f"secrets.{name}"
            if not _SECRET_NAME.fullmatch(name):
                self.problem(at, key, f"invalid secret name {_shown(name)}: letters, digits "
                                      "and . _ -, starting with a letter or digit")
                continue
            if not self.expect(body, Doc, at, key, "a mapping (file: PATH)"):
                continue
            self.secrets[name] = None
            for option in body:
                where = f"{key}.{option}"
                if option == "environment":
                    self.unsupported(body.line_of(option), where, ": compose reads the value "
                                     "from the environment it runs in, and nspawnctl does not "
                                     "(put it in a file: file: PATH)")
                elif option == "external":
                    self.unsupported(body.line_of(option), where, ": a secret of a swarm "
                                     "(give file: PATH)")
                elif option != "file" and not _is_extension(option):
                    self.unsupported(body.line_of(option), where)
            if "file" in body:
                self.secrets[name] = self.secret_file(body["file"], body.line_of("file"),
                                                      f"{key}.file")
            elif not any(k in body for k in ("environment", "external")):
                self.problem(at, key, "no file: (a secret is file: PATH)")

    def secret_file(self, value: Any, line: int, key: str) -> str | None:
        """A secret's host file: a regular file, its path as compose resolves it."""
        if not self.expect(value, str, line, key, "a file's path"):
            return None
        path = os.path.normpath(self.base_dir / value)
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):
                self.problem(line, key, f"not a regular file: {path}")
                return None
        except OSError as e:
            self.problem(line, key, f"{path}: {e.strerror}")
            return None
        return path

    def service_secrets(self, svc: Doc, where: str, out: Doc):
        """A service's secrets (NAME, or source: and target:) as read-only, idmapped binds
        of their files at /run/secrets/NAME (or the target: a name there, or a path)."""
        given = self.listed(svc, where, "secrets", "a list of secrets")
        if given is None:
            return
        value, line = given
        made: list[tuple[str, int]] = []
        targets: dict[str, str] = {}
        for i, entry in enumerate(value):
            at, key = value.line_of(i), f"{where}.secrets[{i}]"
            if isinstance(entry, Doc):
                # uid, gid, mode: Docker Compose itself does not set them for a file's
                # secret (a bind keeps the file's own)
                self.other_keys(entry, key, ("source", "target"))
                if not self.ignore and any(k not in ("source", "target")
                                           and not _is_extension(k) for k in entry):
                    continue  # refused (said)
                name, target = entry.get("source"), entry.get("target", entry.get("source"))
                if not (self.expect(name, str, entry.line_of("source"), f"{key}.source",
                                    "a secret's name")
                        and self.expect(target, str, entry.line_of("target"),
                                        f"{key}.target", "a file's name or path")):
                    continue
            elif self.expect(entry, str, at, key, "a secret's name (or source: and target:)"):
                name = target = entry
            else:
                continue
            assert isinstance(name, str) and isinstance(target, str)
            if name not in self.secrets:
                self.problem(at, key, f"no secret {name} in the top-level secrets")
                continue
            path = self.secrets[name]
            if path is None:  # refused up there (said once), or left out: said here too
                if self.ignore:
                    self.warn(at, key, f"secret {name} is left out (secrets.{name} is not "
                                       "supported)")
                continue
            dest = os.path.normpath(os.path.join(SECRETS_DIR, target))
            if not target or ".." in target.split("/") or dest in ("/", SECRETS_DIR):
                self.problem(at, key, f"invalid target {_shown(target)}: a file's name in "
                                      f"{SECRETS_DIR}, or an absolute path without '..'")
                continue
            if dest in targets:
                self.problem(at, key, f"{dest} is secret {targets[dest]}'s too")
                continue
            targets[dest] = name
            bind = f"{path}:{dest}:ro:idmap"
            try:
                parse_bind(bind)
            except Error as e:
                self.problem(at, key, e.message)
                continue
            made.append((bind, at))
        if made:  # after the volumes' binds
            binds = out.get("bind") or _seq(line, [])
            at = out.lines.get("bind", line)
            _put(out, "bind", _seq(at, [*zip(binds, binds.lines), *made]), at)

    # ------------------------------------------------------------------ order, network

    def service_network(self, svc: Doc, where: str, out: Doc, line: int):
        networks, mode = svc.get("networks"), svc.get("network_mode")
        if mode is not None:
            at = svc.line_of("network_mode")
            if networks is not None:
                self.problem(at, f"{where}.network_mode", "given with networks: compose "
                                                          "takes one or the other")
            elif mode in ("host", "none"):
                _put(out, "network", mode, at)
            else:
                self.unsupported(at, f"{where}.network_mode", f": {_shown(mode)} (host and "
                                 "none are)")
            return
        if networks is None:  # Compose's project network; nspawnctl's default is shared
            _put(out, "network", self.network_names["default"], line)
            return
        at = svc.line_of("networks")
        if isinstance(networks, Seq):
            names = [(n, networks.line_of(i), f"{where}.networks[{i}]")
                     for i, n in enumerate(networks)]
        elif isinstance(networks, Doc):
            names = []
            for n, options in networks.items():
                if options is not None and not (isinstance(options, Doc) and not options):
                    if isinstance(options, Doc):
                        for option in options:
                            if not _is_extension(option):
                                self.unsupported(options.line_of(option),
                                                 f"{where}.networks.{n}.{option}")
                    else:
                        self.problem(networks.line_of(n), f"{where}.networks.{n}",
                                     f"expected a mapping, not {_shown(options)}")
                names.append((n, networks.line_of(n), f"{where}.networks.{n}"))
        else:
            self.problem(at, f"{where}.networks", f"expected a list or mapping of networks, "
                                                  f"not {_shown(networks)}")
            return
        if len(names) != 1:
            self.problem(at, f"{where}.networks", f"{len(names)} networks: a container is on "
                                                  "one network in nspawnctl")
            return
        name, line, key = names[0]
        if not self.expect(name, str, line, key, "a network's name"):
            return
        if name not in self.network_names:
            self.problem(line, key, f"no network {name} in the top-level networks")
            return
        _put(out, "network", self.network_names[name], line)

    def depends_on(self, svc: Doc, where: str, out: Doc):
        if "depends_on" not in svc:
            return
        value, line = svc["depends_on"], svc.line_of("depends_on")
        after: list[tuple[str, int]] = []
        requires: list[tuple[str, int]] = []
        if isinstance(value, Seq):
            entries = [(n, value.line_of(i), f"{where}.depends_on[{i}]", None)
                       for i, n in enumerate(value)]
        elif isinstance(value, Doc):
            entries = [(n, value.line_of(n), f"{where}.depends_on.{n}", options)
                       for n, options in value.items()]
        else:
            self.problem(line, f"{where}.depends_on", f"expected a list or mapping of "
                                                      f"services, not {_shown(value)}")
            return
        for name, at, key, options in entries:
            if not self.expect(name, str, at, key, "a service's name"):
                continue
            if name not in self.names:
                self.problem(at, key, f"no service {name}")
                continue
            target = self.names[name]
            if options is not None:
                if not self.expect(options, Doc, at, key, "a mapping"):
                    continue
                self.other_keys(options, key, ("condition", "restart", "required"))
                condition = options.get("condition", "service_started")
                cond_at = options.line_of("condition")
                if condition == "service_healthy":
                    # started once target is healthy: --after/--requires NAME:healthy
                    target += HEALTHY
                elif condition == "service_completed_successfully":
                    if not self.unsupported(cond_at, f"{key}.condition", f" ({condition}): "
                                            "nspawnctl does not wait for a container to "
                                            "finish", instead=f"ordered after {target} only"):
                        continue
                elif condition != "service_started":
                    self.problem(cond_at, f"{key}.condition", f"unknown condition "
                                 f"{_shown(condition)}")
                    continue
                for flag in ("restart", "required"):
                    if flag in options and not self.expect(options[flag], bool,
                                                           options.line_of(flag),
                                                           f"{key}.{flag}", "true or false"):
                        continue
                # restart: true: stopped and restarted with it, as systemd's Requires=
                if options.get("restart") is True:
                    requires.append((target, options.line_of("restart")))
            after.append((target, at))
        if after:
            _put(out, "after", _seq(line, after), line)
        if requires:
            _put(out, "requires", _seq(line, requires), line)

    # ------------------------------------------------------------------ healthcheck

    def healthcheck(self, svc: Doc, where: str, out: Doc):
        """compose's healthcheck as the health-* keys: test as a string or CMD-SHELL is the
        shell line --health-cmd takes, CMD's words are quoted into one; NONE or disable:
        true is no check; the durations are systemd's spelling of them (30s, 1m30s)."""
        if "healthcheck" not in svc:
            return
        value, line, key = svc["healthcheck"], svc.line_of("healthcheck"), f"{where}.healthcheck"
        if not self.expect(value, Doc, line, key, "a mapping"):
            return
        self.other_keys(value, key, ("test", "interval", "timeout", "retries", "start_period",
                                     "disable"))
        if "disable" in value and self.expect(value["disable"], bool, value.line_of("disable"),
                                              f"{key}.disable", "true or false") \
                and value["disable"]:
            _put(out, "health-cmd", "none", value.line_of("disable"))
            return
        if "test" in value:
            test, at = value["test"], value.line_of("test")
            command = self.health_test(test, at, f"{key}.test")
            if command is None:
                return
            _put(out, "health-cmd", command, at)
        for name, native, parse in (
                ("interval", "health-interval", health.parse_interval),
                ("timeout", "health-timeout", health.parse_timeout),
                ("start_period", "health-start-period", health.parse_start_period),
                ("retries", "health-retries", health.parse_retries)):
            if name not in value:
                continue
            item, at = value[name], value.line_of(name)
            if not self.expect(item, (str, int), at, f"{key}.{name}", "a duration" if
                               name != "retries" else "a number"):
                continue
            try:
                parse(str(item))
            except Error as e:
                self.problem(at, f"{key}.{name}", e.message)
                continue
            _put(out, native, str(item) if name != "retries" else item, at)

    def health_test(self, test: Any, at: int, key: str) -> str | None:
        """A healthcheck's test as --health-cmd's text; None: refused."""
        if isinstance(test, str):
            command = test
        elif isinstance(test, Seq) and test and all(isinstance(w, str) for w in test) \
                and (test[0] == "NONE" or (test[0] == "CMD" and len(test) > 1)
                     or (test[0] == "CMD-SHELL" and len(test) == 2)):
            if test[0] == "NONE":
                return "none"
            command = test[1] if test[0] == "CMD-SHELL" else shlex.join(list(test[1:]))
        else:
            self.problem(at, key, f"expected a command, or a list starting with CMD, "
                                  f"CMD-SHELL or NONE, not {_shown(test)}")
            return None
        try:
            health.parse_command(command)
        except Error as e:
            self.problem(at, key, e.message)
            return None
        return command

    # ------------------------------------------------------------------ restart, limits

    def restart(self, svc: Doc, where: str, out: Doc):
        if "restart" not in svc:
            return
        value, line = svc["restart"], svc.line_of("restart")
        if value is False:
            value = "no"  # YAML 1.1 reads an unquoted no as false
        policy = value.partition(":")[0] if isinstance(value, str) else None
        retries = value.partition(":")[2] if isinstance(value, str) else ""
        if policy not in _RESTART or (retries and (policy != "on-failure" or not (
                retries.isascii() and retries.isdigit()))):
            self.problem(line, f"{where}.restart", f"unknown policy {_shown(value)}: expected "
                         "no, always, on-failure[:N] or unless-stopped")
            return
        if retries:
            self.warn(line, f"{where}.restart", f"on-failure:{retries}: restarted on every "
                      "failure, within systemd's start rate limit, not at most "
                      f"{retries} times")
        restart, at_boot = _RESTART[policy]
        _put(out, "restart", restart, line)
        if at_boot:  # Docker starts these again when its daemon (the host) starts
            _put(out, "enabled", True, line)

    def limits(self, svc: Doc, where: str, out: Doc):
        """mem_limit, cpus, pids_limit and deploy.resources.limits, which must agree where
        both are given (as compose requires)."""
        given: dict[str, list[tuple[Any, int, str]]] = {"memory": [], "cpus": [], "tasks": []}
        for key, native in (("mem_limit", "memory"), ("cpus", "cpus"), ("pids_limit", "tasks")):
            if key in svc:
                given[native].append((svc[key], svc.line_of(key), f"{where}.{key}"))
        if "deploy" in svc:
            self.deploy(svc["deploy"], svc.line_of("deploy"), f"{where}.deploy", given)
        for native, values in given.items():
            parsed = []
            for value, line, key in values:
                result = self.limit(native, value, line, key)
                if result is not None:
                    parsed.append((result, line, key))
            if len({p[0] for p in parsed}) > 1:
                self.problem(parsed[1][1], parsed[1][2], f"differs from {parsed[0][2]}: "
                                                         "compose requires them to agree")
            elif parsed and parsed[0][0] != "":
                _put(out, native, parsed[0][0], parsed[0][1])

    def limit(self, native: str, value: Any, line: int, key: str) -> Any:
        """A limit as the native key takes it; "" for compose's "no limit"; None: refused."""
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            self.problem(line, key, f"expected a number, not {_shown(value)}")
            return None
        try:
            if native == "memory":
                size = parse_size(str(value))
                if not isinstance(size, int):
                    raise Error(f"invalid size {value!r}: expected bytes, or a number with b, "
                                "k, m or g")
                return format_size(size)
            if native == "cpus":
                text = str(value).strip()
                if re.fullmatch(r"0*(\.0*)?", text) and text not in ("", "."):
                    return ""  # compose: 0.000 means no limit
                cpus = parse_cpus(text)
                if cpus is None or not math.isfinite(cpus):
                    raise Error(f"invalid CPU count {value!r}")
                return cpus
            if value in (-1, "-1"):
                return ""  # compose: -1 means no limit
            if isinstance(value, float) or not str(value).isascii() or \
                    not str(value).isdigit() or int(value) <= 0:
                raise Error(f"invalid task limit {value!r}: expected a positive integer or -1")
            return int(value)
        except Error as e:
            self.problem(line, key, e.message)
            return None

    def deploy(self, deploy: Any, line: int, key: str, given: dict):
        if not self.expect(deploy, Doc, line, key, "a mapping"):
            return
        for option, value in deploy.items():
            at, where = deploy.line_of(option), f"{key}.{option}"
            if _is_extension(option) or (option == "replicas" and value == 1):
                continue
            if option != "resources":
                self.unsupported(at, where)
                continue
            if not self.expect(value, Doc, at, where, "a mapping"):
                continue
            self.other_keys(value, where, ("limits",))
            limits = value.get("limits")
            if limits is None or not self.expect(limits, Doc, value.line_of("limits"),
                                                 f"{where}.limits", "a mapping"):
                continue
            self.other_keys(limits, f"{where}.limits", ("memory", "cpus", "pids"))
            for name, native in (("memory", "memory"), ("cpus", "cpus"), ("pids", "tasks")):
                if name in limits:
                    given[native].append((limits[name], limits.line_of(name),
                                          f"{where}.limits.{name}"))


def _shown(value: Any) -> str:
    """A value as a problem names it: its text, or what kind of thing it is."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (Doc, dict)):
        return "a mapping"
    if isinstance(value, (Seq, list)):
        return "a list"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    text = str(value)
    return repr(text if len(text) <= 60 else text[:60] + "...")
