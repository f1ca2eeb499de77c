"""A container's settings, each declared once.

Every field of ContainerConfig carries its Setting: the CLI flag and help, the parser of what
users type, where it lives (a .nspawn key or a unit drop-in property, with the D-Bus property
that applies it live), when a change takes effect, and how `list` and `status` show it.  The
CLI options of `create` and `set`, the .nspawn file, the drop-in, the live update, `status`
and the restart decision are all derived from these declarations (mkosi's config.py is the
model).  Adding a setting is one field here plus its tests; tests/unit/test_settings_table.py
walks the table.

The defaults are those of systemd's own systemd-nspawn@.service template (--boot, -U,
--network-veth, no Restart=), so a container with default settings behaves exactly like one
machinectl would start.
"""

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

from ..errors import Usage
from ..names import check_name, check_stack_name
from ..paths import service_unit
from ..times import check_rfc3339
from . import credentials, health, keys
from .networking import DEFAULT as DEFAULT_NETWORK
from .networking import PROTOCOLS, Port, bridge_of, check_network_name, parse_port
from .values import (
    check_choice,
    check_hostname,
    check_path,
    check_text,
    check_user,
    format_cpu_quota,
    format_size,
    format_span,
    parse_bind,
    parse_cpu_quota,
    parse_cpus,
    parse_env,
    parse_seconds,
    parse_size,
    parse_span,
    parse_tasks,
    parse_volume,
)

# systemd-nspawn's Timezone= modes (systemd.nspawn(5), 252).
TIMEZONE_MODES = ("off", "copy", "bind", "symlink", "delete", "auto")
# Network modes besides the names of nspawnctl networks ("default" is one of those).
NETWORK_MODES = ("host", "none", "veth")
# systemd's Restart= values, all of them, so a hand edit systemd takes is read too.
RESTART_POLICIES = ("no", "on-success", "on-failure", "on-abnormal", "on-watchdog", "on-abort",
                    "always")
# systemd-nspawn@.service sets no Restart=, so systemd's own default (no) applies; a reboot
# from inside still restarts through RestartForceExitStatus=133.
DEFAULT_RESTART = "no"
# D-Bus spells "no limit" as the largest uint64.
UINT64_INFINITY = 2**64 - 1
# What TasksMax= falls back to when ours is removed: systemd-nspawn@.service's value.
TEMPLATE_TASKS_MAX = 16384
USEC_PER_SEC = 1_000_000
# systemd-nspawn@.service keeps systemd's default TimeoutStartSec= of 90 s, and systemd kills a
# container whose systemd-nspawn has not said READY by then.  When many containers start at
# once (enabled ones at the host's boot, a fleet started together), they wait on each other:
# systemd-nspawn takes the host's /etc/.pwd.lock to pick a UID range, and a first start chowns
# its tree meanwhile.  In the VM tier 50 first starts at once came up one every 20-40 s, and
# with 90 s the later ones were killed.  New containers get 5 minutes; `set --start-timeout`
# changes it.
CREATE_START_TIMEOUT = 300


class Apply(enum.Enum):
    """When a changed setting takes effect on a running container."""
    LIVE = "live"        # at once: a D-Bus property of the running unit
    RELOAD = "reload"    # with the daemon-reload `set` does (the unit's restart policy)
    FIREWALL = "firewall"  # at once: nspawnctl's firewall table is rewritten
    RESTART = "restart"  # at the next start: systemd-nspawn reads its .nspawn file then
    RECORD = "record"    # never: a record nspawnctl keeps (the base image)


@dataclass(frozen=True)
class Setting:
    """One container setting, declared once; see the module docstring."""

    help: str
    flag: str | None = None               # CLI option; None: not settable from the CLI
    metavar: str | None = None
    parse: Callable[[str], Any] | None = None   # CLI text -> value (each item if multiple)
    multiple: bool = False                # repeatable option; the value is a tuple
    choices: tuple[str, ...] | None = None
    switch: bool = False                  # a --flag/--no-flag pair
    check: Callable[[Any], Any] | None = None   # raises Error for a value no file can hold
    nspawn: keys.NspawnKey | None = None
    unit: keys.UnitKey | None = None
    apply: Apply = Apply.RESTART
    limit: bool = False                   # a resource limit: in list's LIMITS column
    show: Callable[[Any], str] = str      # one value as list/status text
    json: Callable[[Any], Any] | None = None  # a set value as status --json shows it
    create_default: Any = None            # what `create` uses when the flag is not given
    # Repeatable settings that `set` edits item by item instead of replacing: --no-FLAG TEXT
    # removes the items `removes(item, TEXT)` matches; a new item replaces those with its key.
    removes: Callable[[Any, str], bool] | None = None
    key: Callable[[Any], Any] | None = None
    name: str = ""                        # the field's name: filled in below

    @property
    def public(self) -> str:
        """Its one name wherever a user sees it (table columns, status lines, JSON keys, the
        LIMITS column): the long name of its flag, so `--memory` is `memory` everywhere and
        never memory_max or mem; the field's name only for what no flag sets."""
        return (self.flag[2:] if self.flag else self.name).replace("-", "_")

    def to_json(self, value: Any) -> Any:
        """The value as `status --json` shows it: a list (of text, [] when empty) for a
        repeatable setting, else its value (None when unset)."""
        if value is not None and self.json is not None:
            return self.json(value)
        if isinstance(value, tuple):
            return [self.show(v) for v in value]
        return value


def _setting(default: Any, **declaration: Any) -> Any:
    return field(default=default, metadata={"setting": Setting(**declaration)})


def _check_each(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda values: [check(v) for v in values]


def _check_positive_int(what: str) -> Callable[[Any], Any]:
    def check(value):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise Usage(f"invalid {what} {value!r}: expected a positive integer")
    return check


def _check_span(value: Any) -> None:
    """Whole seconds, or math.inf for no limit (a start timeout)."""
    if value != math.inf:
        _check_positive_int("time span")(value)


def _check_restart(value: str) -> str:
    return check_choice(value, RESTART_POLICIES, "restart policy")


def _check_cpus(value: Any) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise Usage(f"invalid CPU quota {value!r}: expected a positive number of CPUs")


def _check_network(value: str) -> str:
    if value in NETWORK_MODES:
        return value
    check_text(value, "network")
    return check_network_name(value)


def _check_image(value: str) -> None:
    check_text(value, "image name")
    if not value.strip():
        raise Usage("invalid image name: it is empty")


def _port_matches(port: Port, text: str) -> bool:
    """set --no-port 8080 removes every port published on host port 8080; 8080/udp only
    the UDP one."""
    number, _, proto = text.partition("/")
    if not (number.isascii() and number.isdigit()) or proto not in ("", *PROTOCOLS):
        raise Usage(f"invalid --no-port {text!r}: expected HOSTPORT[/tcp|/udp]")
    return port.host_port == int(number) and proto in ("", port.proto)


def _name_matches(name: str, text: str) -> bool:
    return name == check_name(text)


# --after NAME:healthy, --requires NAME:healthy: the one condition a dependency takes.
HEALTHY = ":healthy"


def parse_dependency(text: str) -> str:
    """--after/--requires NAME or NAME:healthy, as given (ContainerConfig splits the
    condition off into wait_healthy, so order, cycles and stacks see names only)."""
    name, sep, condition = text.partition(":")
    if sep and condition != HEALTHY[1:]:
        raise Usage(f"invalid dependency {text[:80]!r}: expected NAME or NAME{HEALTHY}")
    check_name(name)
    return text


def dependency_name(text: str) -> str:
    """The container a --after/--requires item names (its condition left off)."""
    return text.partition(":")[0]


def format_units(names: tuple[str, ...]) -> str:
    """Container names as the unit names After=/Requires= take."""
    return " ".join(service_unit(n) for n in names)


def parse_units(text: str) -> tuple[str, ...]:
    """The containers an After=/Requires= line names; other units (a hand edit) are not ours
    to model and are left out."""
    prefix, suffix = service_unit("|").split("|")
    return tuple(check_name(u[len(prefix):-len(suffix)]) for u in text.split()
                 if u.startswith(prefix) and u.endswith(suffix) and len(u) > len(prefix + suffix))


def dependencies(cfg: "ContainerConfig") -> tuple[str, ...]:
    """The containers cfg's container is ordered after (required ones included)."""
    return tuple(dict.fromkeys(cfg.requires + cfg.after))


def _live_limit(value: int | None) -> int:
    return UINT64_INFINITY if value is None else value


def _check_memory(value: Any) -> None:
    """Bytes, or a percentage of the host's memory as parse_size keeps it ('50%')."""
    if isinstance(value, str):
        if parse_size(value) != value:
            raise Usage(f"invalid memory max {value!r}: expected bytes or a percentage")
        return
    _check_positive_int("memory max")(value)


def _live_memory(value: int | str | None) -> int | tuple[str, int]:
    """MemoryMax as D-Bus takes it: bytes, or a percentage as MemoryMaxScale (a share of
    2^32, what systemd itself turns MemoryMax=50% into)."""
    if isinstance(value, str):
        return ("MemoryMaxScale", min(round(float(value[:-1]) / 100 * 2**32), 2**32 - 1))
    return _live_limit(value)


@dataclass(frozen=True)
class ContainerConfig:
    """Everything nspawnctl decides about one container.

    `boot` and `command` mirror nspawn's Boot= and Parameters=: with boot the command
    (normally empty) is extra arguments for the tree's init; without boot it is the one
    program to run (OCI images).
    """

    boot: bool = _setting(
        True, help="Boot the tree's init (off: run the command alone).",
        nspawn=keys.Flag("Exec", "Boot"))
    command: tuple[str, ...] = _setting(
        (), help="The command (or the init's arguments).", check=_check_each(
            lambda arg: check_text(arg, "command argument")),
        nspawn=keys.Words("Exec", "Parameters"))
    private_users: bool = _setting(
        True, flag="--private-users", switch=True,
        help="Run in a user namespace of its own (default: on).",
        nspawn=keys.PrivateUsers())
    network: str = _setting(
        "veth", flag="--network", metavar="MODE", parse=_check_network,
        create_default=DEFAULT_NETWORK, check=_check_network,
        help="default (nspawnctl's default network), none (loopback only), host (the host's "
             "network) or the name of a network made with `nspawnctl network create`.",
        nspawn=keys.NetworkMode(bridge_of, check_network_name))
    binds: tuple = _setting(
        (), flag="--bind", metavar="SRC[:DST][:ro][:idmap]", parse=parse_bind, multiple=True,
        help="Bind-mount a host path (repeatable); idmap: uid N inside is uid N on the host "
             "(systemd 250 and later).", nspawn=keys.Binds())
    volumes: tuple = _setting(
        (), flag="--volume", metavar="NAME:/PATH[:ro]", parse=parse_volume, multiple=True,
        help="Mount named volume NAME (nspawnctl volume create) at PATH, owners kept as the "
             "container sees them (repeatable; set --no-volume NAME removes it).",
        nspawn=keys.Volumes(), key=lambda v: v.dest, removes=lambda v, text: v.name == text)
    env: tuple[str, ...] = _setting(
        (), flag="--env", metavar="K=V", parse=parse_env, multiple=True,
        help="Set an environment variable (repeatable).", check=_check_each(parse_env),
        nspawn=keys.Words("Exec", "Environment", check=parse_env, one_per_line=True))
    working_dir: str | None = _setting(
        None, help="The working directory of the command.",
        check=lambda v: check_path(v, "working directory"),
        nspawn=keys.Text("Exec", "WorkingDirectory",
                         check=lambda v: check_path(v, "working directory")))
    user: str | None = _setting(
        None, help="The user the command runs as.", check=check_user,
        nspawn=keys.Text("Exec", "User", check=check_user))
    ports: tuple = _setting(
        (), flag="--port", metavar="[HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|/udp]",
        parse=parse_port, multiple=True, apply=Apply.FIREWALL,
        help="Publish a container port on the host, also on 127.0.0.1 (repeatable; "
             "set --no-port HOSTPORT[/PROTO] removes one).",
        nspawn=keys.Ports(parse_port),
        key=lambda p: (p.host_ip, p.host_port, p.proto), removes=_port_matches)
    hostname: str | None = _setting(
        None, flag="--hostname", help="Hostname inside (default: the container name).",
        check=check_hostname, nspawn=keys.Text("Exec", "Hostname", check=check_hostname))
    memory_max: int | str | None = _setting(
        None, flag="--memory", parse=parse_size, limit=True, show=format_size,
        help="Memory limit (MemoryMax), e.g. 512M, 512MB, 1g, or 50% of the host's memory; "
             "'infinity' for none.",
        check=_check_memory, apply=Apply.LIVE,
        unit=keys.UnitKey("MemoryMax", format_size, parse_size, "MemoryMax", _live_memory))
    cpu_quota: float | None = _setting(
        None, flag="--cpus", parse=parse_cpus, limit=True, show=lambda v: f"{v:g}",
        help="CPU quota in CPUs, e.g. 1.5.", check=_check_cpus, apply=Apply.LIVE,
        unit=keys.UnitKey("CPUQuota", format_cpu_quota, parse_cpu_quota, "CPUQuotaPerSecUSec",
                          lambda v: UINT64_INFINITY if v is None else round(v * USEC_PER_SEC)))
    tasks_max: int | None = _setting(
        None, flag="--tasks", parse=parse_tasks, limit=True,
        help="Maximum number of tasks (TasksMax).", check=_check_positive_int("tasks limit"),
        apply=Apply.LIVE,
        unit=keys.UnitKey("TasksMax", str, parse_tasks, "TasksMax",
                          lambda v: TEMPLATE_TASKS_MAX if v is None else v))
    restart: str = _setting(
        DEFAULT_RESTART, flag="--restart", choices=RESTART_POLICIES, apply=Apply.RELOAD,
        help="Restart policy of the unit.",
        check=_check_restart, unit=keys.UnitKey("Restart", str, _check_restart))
    start_timeout: int | float | None = _setting(
        None, flag="--start-timeout", metavar="SPAN", parse=parse_seconds, apply=Apply.RELOAD,
        create_default=CREATE_START_TIMEOUT, check=_check_span, show=format_span,
        json=lambda v: None if v == math.inf else v,  # JSON has no infinity: null, no limit
        help="How long systemd lets the container take to start before it kills it "
             f"(TimeoutStartSec), e.g. 300 or 10min, or 'infinity'; new containers get "
             f"{CREATE_START_TIMEOUT // 60}min.",
        unit=keys.UnitKey("TimeoutStartSec", format_span, parse_span))
    # The health check: records of nspawnctl's, read by its health units (runtime/health.py).
    health_cmd: tuple[str, ...] = _setting(
        (), flag="--health-cmd", metavar="CMD", parse=health.parse_command,
        apply=Apply.RECORD, show=health.show_command, json=list,
        check=health.check_setting,
        help="A command run in the container (by its /bin/sh) to check it is healthy: exit "
             "status 0 is healthy; 'none' removes the check.",
        nspawn=keys.CommentWords("nspawnctl-health-cmd"))
    health_interval: int = _setting(
        health.DEFAULT_INTERVAL, flag="--health-interval", metavar="SPAN",
        parse=health.parse_interval, apply=Apply.RECORD, show=format_span,
        check=health.check_seconds("health interval"),
        help=f"How often the check runs, e.g. 30s or 1min (default "
             f"{health.DEFAULT_INTERVAL}s).",
        nspawn=keys.Record("nspawnctl-health-interval", health.parse_interval,
                           health.DEFAULT_INTERVAL))
    health_timeout: int = _setting(
        health.DEFAULT_TIMEOUT, flag="--health-timeout", metavar="SPAN",
        parse=health.parse_timeout, apply=Apply.RECORD, show=format_span,
        check=health.check_seconds("health timeout"),
        help=f"How long one check may take before it counts as failed (default "
             f"{health.DEFAULT_TIMEOUT}s).",
        nspawn=keys.Record("nspawnctl-health-timeout", health.parse_timeout,
                           health.DEFAULT_TIMEOUT))
    health_retries: int = _setting(
        health.DEFAULT_RETRIES, flag="--health-retries", metavar="N",
        parse=health.parse_retries, apply=Apply.RECORD, check=health.check_retries,
        help=f"Failed checks in a row that make it unhealthy (default "
             f"{health.DEFAULT_RETRIES}).",
        nspawn=keys.Record("nspawnctl-health-retries", health.parse_retries,
                           health.DEFAULT_RETRIES))
    health_start_period: int = _setting(
        health.DEFAULT_START_PERIOD, flag="--health-start-period", metavar="SPAN",
        parse=health.parse_start_period, apply=Apply.RECORD, show=format_span,
        check=health.check_seconds("health start period", zero=True),
        help="Time after the start in which failed checks do not count (default 0s).",
        nspawn=keys.Record("nspawnctl-health-start-period", health.parse_start_period,
                           health.DEFAULT_START_PERIOD))
    on_unhealthy: str = _setting(
        "none", flag="--on-unhealthy", choices=health.ON_UNHEALTHY, apply=Apply.RECORD,
        check=health.check_on_unhealthy,
        help="What to do when it becomes unhealthy: none (only report), restart, stop or "
             "kill (SIGKILL) the container.",
        nspawn=keys.Record("nspawnctl-on-unhealthy", health.check_on_unhealthy, "none"))
    after: tuple[str, ...] = _setting(
        (), flag="--after", metavar="NAME[:healthy]", parse=parse_dependency, multiple=True,
        apply=Apply.RELOAD,
        help="Start after container NAME when both start; NAME:healthy: only once NAME is "
             "healthy, within this one's start timeout (repeatable; set --no-after NAME "
             "removes one).", check=_check_each(parse_dependency),
        unit=keys.UnitKey("After", format_units, parse_units, section="Unit"),
        key=dependency_name, removes=_name_matches)
    requires: tuple[str, ...] = _setting(
        (), flag="--requires", metavar="NAME[:healthy]", parse=parse_dependency,
        multiple=True, apply=Apply.RELOAD,
        help="Start container NAME first (implies --after; NAME:healthy as --after's) and "
             "stop with it (repeatable; set --no-requires NAME removes one).",
        check=_check_each(parse_dependency),
        unit=keys.UnitKey("Requires", format_units, parse_units, section="Unit"),
        key=dependency_name, removes=_name_matches)
    # The containers of --after/--requires NAME:healthy.  A record, read at each start by the
    # unit's ExecStartPre (units/container-wait-healthy.conf: `nspawnctl wait NAME
    # --dependencies`), so no name is written into a command line of the unit; the order
    # itself stays After=/Requires= (healthy implies after).
    wait_healthy: tuple[str, ...] = _setting(
        (), help="The containers it starts after only once they are healthy (--after "
                 "NAME:healthy, --requires NAME:healthy).", apply=Apply.RELOAD,
        check=_check_each(check_name), nspawn=keys.CommentWords("nspawnctl-wait-healthy"))
    # -- credentials (issue 32): names here, values in nspawnctl's 0600 store (credentials.py)
    credentials: tuple = _setting(
        (), flag="--credential", metavar="NAME=VALUE|NAME=@FILE",
        parse=credentials.parse_credential, multiple=True,
        help="Hand the container a credential, which its services read through systemd's "
             "$CREDENTIALS_DIRECTORY (repeatable; @FILE copies that file's content, which "
             "keeps the value off command lines; shown by NAME only; set --no-credential "
             "NAME removes one).",
        nspawn=keys.Credentials(), key=lambda c: c.name, removes=credentials.removes)
    timezone_mode: str | None = _setting(
        None, help="systemd-nspawn's Timezone=: None leaves its default (auto: the host's "
                   "zone follows into the container at each start); create --timezone "
                   "sets off, so the zone written into the tree stays.",
        check=lambda v: check_choice(v, TIMEZONE_MODES, "Timezone= mode"),
        nspawn=keys.Text("Exec", "Timezone",
                         check=lambda v: check_choice(v, TIMEZONE_MODES, "Timezone= mode")))
    image: str | None = _setting(
        None, help="The cached base tree it was made from.", apply=Apply.RECORD,
        check=_check_image, nspawn=keys.Comment("nspawnctl-image"))
    created: str | None = _setting(
        None, help="When it was made (create, clone): RFC 3339 UTC; None for containers "
                   "made before nspawnctl kept it.", apply=Apply.RECORD,
        check=lambda v: check_rfc3339(v, "creation time"),
        nspawn=keys.Comment("nspawnctl-created"))
    stack: str | None = _setting(
        None, help="The stack (nspawnctl apply) that made it and owns it; None: not a "
                   "stack's.", apply=Apply.RECORD, check=check_stack_name,
        nspawn=keys.Comment("nspawnctl-stack"))
    made_from: tuple[str, ...] = _setting(
        (), help="How its tree was made: create's --from and the options that said how "
                 "(--add, --cmd, --include, ...), as create took them; () for containers "
                 "made before nspawnctl kept it.  `spec` turns it back into a stack file.",
        apply=Apply.RECORD, check=_check_each(lambda w: check_text(w, "create option")),
        nspawn=keys.CommentWords("nspawnctl-made-from"))
    # what `nspawnctl auto-update` does for it: "registry" (a container made from a registry
    # image, runtime/autoupdate.py refuses others) or None; --auto-update none unsets it
    auto_update: str | None = _setting(
        None, flag="--auto-update", choices=("registry", "none"), apply=Apply.RECORD,
        parse=lambda v: None if v == "none" else v,
        check=lambda v: check_choice(v, ("registry",), "auto-update policy"),
        help="registry: `nspawnctl auto-update` replaces its tree when its image's tag names "
             "a new image, and rolls back when it is not healthy; none: never (default).",
        nspawn=keys.Comment("nspawnctl-auto-update"))

    def __post_init__(self):
        for s in SETTINGS:
            value = getattr(self, s.name)
            if s.multiple or isinstance(value, list):
                # lists from callers become tuples, so the object stays hashable
                value = tuple(value)
                object.__setattr__(self, s.name, value)
            if s.check is not None and value is not None:
                s.check(value)
        # a volume's bind is idmapped exactly when there is a user namespace (VolumeMount)
        object.__setattr__(self, "volumes", tuple(
            v if v.idmap == self.private_users else replace(v, idmap=self.private_users)
            for v in self.volumes))
        # NAME:healthy (from the CLI, a stack file, compose) is NAME, and NAME waited for
        healthy = list(self.wait_healthy)
        for which in ("after", "requires"):
            items = getattr(self, which)
            healthy += [dependency_name(n) for n in items if n.endswith(HEALTHY)]
            object.__setattr__(self, which, tuple(dict.fromkeys(map(dependency_name, items))))
        object.__setattr__(self, "wait_healthy", tuple(dict.fromkeys(healthy)))
        # Requires= alone starts both at once: a required container is also one to start
        # after (systemd.unit(5) says to pair them), so --requires implies --after, and so
        # does waiting for one's health.
        missing = tuple(n for n in self.requires + self.wait_healthy if n not in self.after)
        if missing:
            object.__setattr__(self, "after", self.after + tuple(dict.fromkeys(missing)))
        if self.ports and self.network in NETWORK_MODES:
            raise Usage(f"published ports need an nspawnctl network, not --network "
                        f"{self.network}", hint="use --network default or a network of "
                                                "`nspawnctl network create`")
        seen = set()
        for port in self.ports:
            if (port.host_ip, port.host_port, port.proto) in seen:
                raise Usage(f"port {port.host_port}/{port.proto} is published twice")
            seen.add((port.host_ip, port.host_port, port.proto))


def _declare() -> tuple[Setting, ...]:
    table = []
    for f in fields(ContainerConfig):
        table.append(replace(f.metadata["setting"], name=f.name))
    return tuple(table)


SETTINGS: tuple[Setting, ...] = _declare()
NSPAWN_SETTINGS = tuple(s for s in SETTINGS if s.nspawn is not None)
UNIT_SETTINGS = tuple(s for s in SETTINGS if s.unit is not None)
CLI_SETTINGS = tuple(s for s in SETTINGS if s.flag is not None)
# The table is whole: every setting lives in exactly one file.
assert all((s.nspawn is None) != (s.unit is None) for s in SETTINGS)


# ---------------------------------------------------------------- what the table derives

def parse_cli(options: dict[str, Any], creating: bool = False) -> dict[str, Any]:
    """The changes the CLI options ask for (click's values by setting name): only the options
    given, and when creating the create_default of those not given.  Each text goes through
    its setting's parser."""
    changes = {}
    for s in CLI_SETTINGS:
        given = options.get(s.name)
        if given is None or (s.multiple and not given):
            if creating and s.create_default is not None:
                changes[s.name] = s.create_default
            continue
        if s.multiple:
            changes[s.name] = tuple(s.parse(v) if s.parse else v for v in given)
        elif s.parse is not None:
            changes[s.name] = s.parse(given)
        else:
            changes[s.name] = given
    return changes


def given_settings(options: dict[str, Any]) -> frozenset[str]:
    """The settings (by name) the CLI options give, also those given their default value:
    what create's options say wins over what an image says (--health-cmd none over its
    Healthcheck; sources/oci/source.py apply_image_config)."""
    return frozenset(s.name for s in CLI_SETTINGS if options.get(s.name) is not None
                     and not (s.multiple and not options[s.name]))  # as parse_cli tells


def edit(cfg: ContainerConfig, options: dict[str, Any]) -> ContainerConfig:
    """cfg changed as `set` asks: given settings replace the old values, except those edited
    item by item (ports), where new items join the old ones and --no-FLAG removes some."""
    changes = parse_cli(options)
    touched: set[str] = set()  # the dependencies given or removed (--after, --requires)
    for s in CLI_SETTINGS:
        if s.key is None or s.removes is None:
            continue
        removals = options.get(f"no_{s.name}") or ()
        if s.name not in changes and not removals:
            continue
        added = changes.get(s.name, ())
        if s.name in ("after", "requires"):
            touched |= {dependency_name(n) for n in (*added, *removals)}
        replaced = {s.key(item) for item in added}
        kept = []
        for item in getattr(cfg, s.name):
            if s.key(item) in replaced or any(s.removes(item, text) for text in removals):
                continue
            kept.append(item)
        for text in removals:  # a removal that matches nothing is a mistake worth saying
            if not any(s.removes(item, text) for item in getattr(cfg, s.name)):
                raise Usage(f"nothing to remove: no {s.flag} {text} is set")
        changes[s.name] = tuple(kept) + tuple(added)
    # A dependency given again (or removed) says its condition again: `set --after db`
    # after `--after db:healthy` no longer waits for db's health, and --no-after db ends it.
    if touched & set(cfg.wait_healthy):
        changes["wait_healthy"] = tuple(n for n in cfg.wait_healthy if n not in touched)
    return replace(cfg, **changes)


def describe(cfg: ContainerConfig) -> dict[str, Any]:
    """Every setting as `status` and `--json` show it, keyed by its public name."""
    return {s.public: s.to_json(getattr(cfg, s.name)) for s in SETTINGS}


LIMITS = tuple(s for s in SETTINGS if s.limit)


def limits(cfg: ContainerConfig) -> dict[str, Any]:
    """The resource limits as values, keyed by public name (None: not limited), e.g.
    {'memory': 536870912, 'cpus': 1.5, 'tasks': None}."""
    return {s.public: getattr(cfg, s.name) for s in LIMITS}


def limits_text(values: dict[str, Any]) -> str | None:
    """list's LIMITS column for limits(cfg): 'memory=512M cpus=1.5 tasks=256', or None
    without limits."""
    parts = [f"{s.public}={s.show(values[s.public])}" for s in LIMITS
             if values.get(s.public) is not None]
    return " ".join(parts) or None


def needs_restart(old: ContainerConfig, new: ContainerConfig) -> list[str]:
    """Names of the changed settings that take effect only at the next start."""
    return [s.public for s in SETTINGS
            if s.apply is Apply.RESTART and getattr(old, s.name) != getattr(new, s.name)]


def live_properties(cfg: ContainerConfig) -> list[tuple[str, int]]:
    """(D-Bus property, value) pairs that apply cfg's live settings to a running unit (pystemd
    knows each property's signature).  Every one is given, unset ones as "no limit", so that
    removing a limit while the container runs takes effect too."""
    pairs = []
    for s in UNIT_SETTINGS:
        if s.unit is not None and s.unit.dbus and s.unit.live:
            value = s.unit.live(getattr(cfg, s.name))  # (property, value) when it picks one
            pairs.append(value if isinstance(value, tuple) else (s.unit.dbus, value))
    return pairs


def scheduled(cfg: ContainerConfig) -> bool:
    """Whether the scheduler checks a running container with these settings at its interval:
    one with a --health-cmd, and a booted one without, when --on-unhealthy asks for an
    action (its health is its systemd's: acted on as `health NAME` acts).  Without either,
    `health`, `status` and `wait` ask its systemd when they run."""
    return bool(cfg.health_cmd) or (cfg.boot and cfg.on_unhealthy != "none")
