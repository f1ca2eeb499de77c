"""A stack file, checked: the networks and containers it asks for.

The keys of a container are create's and set's options by their long names.  The settings
table (settings/model.py) gives most of them, so a new setting is a new key with no code
here; CREATE_KEYS are the options that say how the tree is made (only create takes them);
FIRSTBOOT_KEYS create's first-boot options (ssh-key, timezone...: firstboot.py says how a
change to one is handled); `state` and `enabled` say how it should run.  Values go through
the CLI's own parsers, and every problem of the file is collected, with its line and key,
before anything is changed.
"""

from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import INVALID_INPUT, Error
from ..names import check_name, check_stack_name, check_volume_name
from ..network.model import check_subnet
from ..settings.firstboot import SSH_KEY
from ..settings.model import CLI_SETTINGS, ContainerConfig, Setting, dependencies, parse_cli
from ..settings.networking import check_network_name
from . import firstboot
from .firstboot import FirstBoot
from .yamlfile import Doc, Problem, Seq

TOP_KEYS = ("name", "networks", "volumes", "containers")
NETWORK_KEYS = ("subnet",)
STATES = ("running", "stopped")
DEFAULT_SOURCE = "debootstrap:bookworm"


@dataclass(frozen=True)
class CreateKey:
    """An option only create takes: how the tree is made.  option: make_request's name."""
    option: str
    kind: type                       # str, bool, or list (of text)
    choices: tuple[str, ...] = ()


# key -> how it maps onto create (ops/create.py CREATE_OPTIONS, and --from, --overlay)
CREATE_KEYS: dict[str, CreateKey] = {
    "from": CreateKey("source", str),
    "include": CreateKey("include", list),
    "cmd": CreateKey("cmd", str),
    "args": CreateKey("args", str),
    "add": CreateKey("adds", list),
    "mirror": CreateKey("mirror", str),
    "variant": CreateKey("variant", str),
    "arch": CreateKey("arch", str),
    "slim": CreateKey("slim", bool),
    "bootstrapper": CreateKey("bootstrapper", str, ("auto", "mmdebstrap", "debootstrap")),
    "overlay": CreateKey("use_overlay", bool),
    "boot": CreateKey("boot", bool),
    "platform": CreateKey("platform", str),
    "pull": CreateKey("pull_policy", str, ("missing", "always", "never", "newer")),
    "tls-verify": CreateKey("tls_verify", bool),
}
# The settings table's keys: a flag's long name (--start-timeout: start-timeout).
SETTING_KEYS: dict[str, Setting] = {s.flag[2:]: s for s in CLI_SETTINGS if s.flag}
RUN_KEYS = ("state", "enabled")
# create's first-boot options (firstboot.py): used when the tree is made
FIRSTBOOT_KEYS = firstboot.KEYS


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    subnet: str | None = None
    line: int = 0

    def record(self) -> dict:
        return {"subnet": self.subnet}


@dataclass(frozen=True)
class ContainerSpec:
    """One container of the file.  create: create-only keys as the file gives them (text,
    bools, lists of text), settings: the settings table's keys as CLI text (what click would
    hand parse_cli, by setting name); config: what those settings make (create's defaults
    for the rest, and what the first-boot keys set: ssh-key's credential, Timezone=off);
    firstboot: the first-boot keys."""
    name: str
    create: dict[str, Any]
    settings: dict[str, Any]
    config: ContainerConfig
    state: str = "running"
    enabled: bool = False
    line: int = 0
    firstboot: FirstBoot = field(default_factory=FirstBoot)

    @property
    def source(self) -> str:
        return self.create.get("from", DEFAULT_SOURCE)

    def record(self, made_with: dict | None = None) -> dict:
        """What the stack's record keeps of it: enough to tell, at the next apply, whether a
        create-only key changed (the tree must be made again), which env the file set, and
        which first-boot keys its tree was made with: made_with (the record's, for a tree
        made before), else the file's.  Never a secret: credentials by name, first-boot
        secrets as digests (firstboot.py)."""
        settings = dict(self.settings)
        if "credentials" in settings:
            settings["credentials"] = [t.partition("=")[0] for t in settings["credentials"]]
        said = {"create": self.create, "settings": settings}
        boot = self.firstboot.record if made_with is None else made_with
        return {**said, "firstboot": boot} if boot else said


@dataclass
class Stack:
    name: str
    networks: dict[str, NetworkSpec] = field(default_factory=dict)
    containers: dict[str, ContainerSpec] = field(default_factory=dict)
    # named volumes the file makes when missing (name -> its line); never removed by apply:
    # a volume outlives its containers, also a stack's
    volumes: dict[str, int] = field(default_factory=dict)


class StackError(Error):
    """A file with problems: every one of them, each on a line of its own."""

    def __init__(self, filename: str, problems: list[Problem]):
        lines = [p.text(filename) for p in sorted(problems, key=lambda p: (p.line, p.key))]
        super().__init__("\n".join(lines) if len(lines) <= 1 else
                         f"{filename}: {len(lines)} problems, nothing was changed:\n"
                         + "\n".join(lines))
        self.problems = problems
        self.exit_code = INVALID_INPUT  # the file's content is refused


def load(doc: Doc, default_name: str) -> tuple[Stack, list[Problem]]:
    """The stack a native stack file's top mapping asks for, and every problem in it."""
    problems: list[Problem] = []
    say = _sayer(problems)
    for key in doc:
        if key not in TOP_KEYS:
            say(doc.line_of(key), key, f"unknown key (a stack file has {', '.join(TOP_KEYS)})")
    name = doc.get("name", default_name)
    try:
        check_stack_name(_text(name, "stack name"))
    except Error as e:
        say(doc.line_of("name"), "name", e.message if "name" in doc else
            f"{e.message}: give the stack a name (name:)")
        name = "invalid"
    stack = Stack(name)
    for net, body in _mapping(doc, "networks", say).items():
        network = _network(net, body, doc["networks"].line_of(net), say)
        if network:
            stack.networks[net] = network
    volumes = _mapping(doc, "volumes", say)
    for vname, body in volumes.items():
        line = volumes.line_of(vname)
        try:
            check_volume_name(vname)
        except Error as e:
            say(line, f"volumes.{vname}", e.message)
            continue
        if body is not None and body != Doc():
            say(line, f"volumes.{vname}", "a volume takes no keys (nothing, or {})")
            continue
        stack.volumes[vname] = line
    containers = _mapping(doc, "containers", say)
    for cname, body in containers.items():
        spec = _container(cname, body, containers.line_of(cname), say)
        if spec:
            stack.containers[cname] = spec
    _check_between(stack, say)
    return stack, problems


def _sayer(problems: list[Problem]):
    def say(line: int, key: str, message: str):
        problems.append(Problem(line, key, message))
    return say


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise Error(f"the {what} must be text, not {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    return {Doc: "a mapping", Seq: "a list", bool: "true/false", type(None): "nothing"}.get(
        type(value), type(value).__name__)


def _mapping(doc: Doc, key: str, say) -> Doc:
    value = doc.get(key)
    if value is None:
        return Doc()
    if not isinstance(value, Doc):
        say(doc.line_of(key), key, f"must be a mapping of names, not {_kind(value)}")
        return Doc()
    return value


def _network(name: str, body: Any, line: int, say) -> NetworkSpec | None:
    where = f"networks.{name}"
    ok = True
    try:
        check_network_name(name)
    except Error as e:
        say(line, where, e.message)
        ok = False
    if body is None:
        body = Doc()
    if not isinstance(body, Doc):
        say(line, where, f"must be a mapping (subnet:), not {_kind(body)}")
        return None
    for key in body:
        if key not in NETWORK_KEYS:
            say(body.line_of(key), f"{where}.{key}", "unknown key (a network has subnet)")
    subnet = body.get("subnet")
    if subnet is not None:
        try:
            subnet = str(check_subnet(_text(subnet, "subnet")))
        except Error as e:
            say(body.line_of("subnet"), f"{where}.subnet", e.message)
            ok = False
    return NetworkSpec(name, subnet, line) if ok else None


def _container(name: str, body: Any, line: int, say) -> ContainerSpec | None:
    where = f"containers.{name}"
    ok = True
    try:
        check_name(name)
    except Error as e:
        say(line, where, e.message)
        ok = False
    if body is None:
        body = Doc()
    if not isinstance(body, Doc):
        say(line, where, f"must be a mapping of options, not {_kind(body)}")
        return None
    create: dict[str, Any] = {}
    texts: dict[str, Any] = {}
    boot: dict[str, Any] = {}
    state, enabled = "running", False
    for key, value in body.items():
        at, path = body.line_of(key), f"{where}.{key}"
        spelled = key.replace("_", "-")
        try:
            if spelled in CREATE_KEYS:
                create[spelled] = _create_value(CREATE_KEYS[spelled], value)
            elif spelled in FIRSTBOOT_KEYS:
                boot[spelled] = firstboot.parse(spelled, _scalar_text(value))
            elif spelled in SETTING_KEYS:
                setting = SETTING_KEYS[spelled]
                texts[setting.name] = _setting_text(setting, value, body, key)
            elif key == "state":
                state = _choice(value, STATES, "state")
            elif key == "enabled":
                enabled = _bool(value)
            else:
                raise Error(f"unknown key; a container takes {', '.join(_all_keys())}")
        except Error as e:
            say(at, path, e.message)
            ok = False
    if not ok:
        return None
    try:
        config = ContainerConfig(**parse_cli(texts, creating=True))
    except Error as e:  # what only the whole says: ports without an nspawnctl network
        say(line, where, e.message)
        return None
    booted = _with_first_boot(config, boot, body, where, say)
    if booted is None:
        return None
    return ContainerSpec(name, create, texts, booted, state, enabled, line,
                         firstboot.make(name, boot))


def _with_first_boot(config: ContainerConfig, boot: dict[str, Any], body: Doc, where: str,
                     say) -> ContainerConfig | None:
    """config as create makes it with these first-boot keys (cli/containers.py _create):
    ssh-key's credential added, Timezone=off with a timezone (else systemd-nspawn would put
    the host's zone back at each start); None when two keys say the same thing."""
    written = [k for k in firstboot.KEYS if k in boot and k != "ssh-key"]
    if written and body.get("overlay") is True:
        say(body.line_of("overlay"), f"{where}.overlay", f"{', '.join(written)}: written "
            "into the tree, and an overlay's base is shared: not with overlay")
        return None
    if all(k in boot for k in firstboot.PASSWORD_KEYS):
        key = max(firstboot.PASSWORD_KEYS, key=lambda k: body.line_of(_given(body, k)))
        say(body.line_of(_given(body, key)), f"{where}.{_given(body, key)}",
            "root-password-hashed and root-password-file: give one of them")
        return None
    credential = boot.get("ssh-key")
    if credential is not None:
        if any(c.name == SSH_KEY for c in config.credentials):
            key = _given(body, "ssh-key")
            say(body.line_of(key), f"{where}.{key}", f"ssh-key and credential {SSH_KEY}=... "
                f"both give credential {SSH_KEY}: give one of them")
            return None
        config = replace(config, credentials=config.credentials + (credential,))
    if "timezone" in boot:
        config = replace(config, timezone_mode="off")
    return config


def _given(body: Doc, spelled: str) -> str:
    """The key as the file spells it (ssh_key or ssh-key)."""
    return next(k for k in body if k.replace("_", "-") == spelled)


def _all_keys() -> list[str]:
    return [*SETTING_KEYS, *CREATE_KEYS, *FIRSTBOOT_KEYS, *RUN_KEYS]


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Error(f"expected true or false, not {value!r}")
    return value


def _choice(value: Any, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise Error(f"invalid {what} {value!r}: expected {' or '.join(choices)}")
    return value


def _scalar_text(value: Any) -> str:
    """A YAML scalar as the CLI text it stands for: 512M, 1.5, 100; not lists, maps, bools."""
    if isinstance(value, bool) or value is None or isinstance(value, (Doc, Seq)):
        raise Error(f"expected a value, not {_kind(value)}")
    if isinstance(value, (int, float, str)):
        return str(value)
    raise Error(f"expected text or a number, not {_kind(value)}")


def _create_value(key: CreateKey, value: Any) -> Any:
    if key.kind is bool:
        return _bool(value)
    if key.kind is list:
        items = value if isinstance(value, Seq) else [value]
        texts = [_scalar_text(v) for v in items]
        for text in texts:
            if not text:
                raise Error("an empty item")
        return texts
    if key.option in ("cmd", "args") and isinstance(value, Seq):
        import shlex
        return shlex.join(_scalar_text(v) for v in value)
    text = _scalar_text(value)
    if key.choices:
        _choice(text, key.choices, key.option.replace("_", " "))
    return text


def _setting_text(setting: Setting, value: Any, body: Doc, key: str) -> Any:
    """A setting's value as click would give it, parsed once here so a bad one is said with
    its line (parse_cli parses it again for the config: the same parser, the same answer)."""
    if setting.switch:
        return _bool(value)
    if setting.multiple:
        items = value if isinstance(value, Seq) else [value]
        texts = tuple(_scalar_text(v) for v in items)
        for text in texts:
            if setting.parse:
                setting.parse(text)
        return texts
    text = _scalar_text(value)
    if setting.choices:
        _choice(text, setting.choices, setting.public)
    if setting.parse:
        setting.parse(text)
    return text


def _check_between(stack: Stack, say) -> None:
    """What no one container says alone: the order among them has no cycle, and no two
    publish the same host port.  (Names outside the file are the plan's to check: they
    depend on the host.)"""
    published: dict[tuple, str] = {}
    for spec in stack.containers.values():
        for port in spec.config.ports:
            key = (port.host_ip, port.host_port, port.proto)
            if key in published:
                say(spec.line, f"containers.{spec.name}.port",
                    f"port {port.host_port}/{port.proto} is published by "
                    f"{published[key]} too")
            published.setdefault(key, spec.name)
    cycle = find_cycle({n: dependencies(s.config) for n, s in stack.containers.items()})
    if cycle:
        first = stack.containers[cycle[0]]
        say(first.line, f"containers.{first.name}", "the order makes a cycle: "
            + " -> ".join(cycle))


def find_cycle(graph: dict[str, tuple[str, ...]]) -> list[str] | None:
    """One cycle of graph (edges to names outside it are ignored), as a path, or None."""
    colour = dict.fromkeys(graph, 0)
    for start in graph:
        if colour[start]:
            continue
        path = [start]
        todo = [iter(graph[start])]
        colour[start] = 1
        while todo:
            nxt = next((d for d in todo[-1] if d in graph), None)
            if nxt is None:
                colour[path.pop()] = 2
                todo.pop()
            elif colour[nxt] == 1:
                return path[path.index(nxt):] + [nxt]
            elif colour[nxt] == 0:
                colour[nxt] = 1
                path.append(nxt)
                todo.append(iter(graph[nxt]))
    return None


def order(stack: Stack) -> list[str]:
    """The file's containers, each after those it is ordered after (the file's order
    otherwise): the order to create and start them in.  The file has no cycle (load)."""
    left = dict(stack.containers)
    done: list[str] = []
    while left:
        ready = [n for n, s in left.items()
                 if not any(d in left for d in dependencies(s.config))]
        if not ready:  # a cycle: load said so; keep the file's order rather than loop
            ready = list(left)
        for name in ready:
            done.append(name)
            del left[name]
    return done
