"""What apply will do: the host as it is, against the stack file, as a list of steps.

Reading only (no step is taken here), so `apply --dry-run` prints exactly the plan that
`apply` carries out.  What the host makes impossible (a name taken by a container that is not
this stack's, a network the file names that does not exist, a port another container holds)
is a problem with the file's line, found here, before anything changes.
"""

from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import Error
from ..network.containers import check_ports, managed, network_state
from ..paths import service_unit
from ..runtime.context import Context
from ..settings import running as running_record
from ..settings.files import load_config
from ..settings.model import (
    CLI_SETTINGS,
    HEALTHY,
    ContainerConfig,
    dependencies,
    needs_restart,
)
from ..settings.networking import DEFAULT as DEFAULT_NETWORK
from ..settings.running import effective
from ..store import order as host_order
from ..store import volumes
from ..store.containers import is_enabled
from . import firstboot
from .model import ContainerSpec, Stack, order
from .record import Record
from .yamlfile import Problem

# The settings an image's Healthcheck gives (settings/health.py image_healthcheck).
IMAGE_HEALTH = ("health_cmd", "health_interval", "health_timeout", "health_retries",
                "health_start_period")
IMAGE_PREFIX = "oci-"  # the base-tree key of an image (sources/oci/source.py resolved_base)

# What a step does, in the order a plan takes them.
NETWORK_CREATE = "create network"
VOLUME_CREATE = "create volume"
CREATE = "create"
RECREATE = "recreate"
CHANGE = "change"
RESTART = "restart"
START = "start"
STOP = "stop"
ENABLE = "enable"
DISABLE = "disable"
REMOVE = "remove"
NETWORK_REMOVE = "remove network"


@dataclass(frozen=True)
class Step:
    action: str
    name: str
    why: str = ""
    changes: dict[str, Any] = field(default_factory=dict)  # CHANGE: setting name -> value

    @property
    def kind(self) -> str:
        if self.action == VOLUME_CREATE:
            return "volume"
        return "network" if self.action in (NETWORK_CREATE, NETWORK_REMOVE) else "container"

    def text(self) -> str:
        return f"{self.action} {self.name}{': ' + self.why if self.why else ''}"

    def to_json(self) -> dict:
        return {"action": self.action, "kind": self.kind, "name": self.name,
                "why": self.why or None}


@dataclass
class Plan:
    stack: Stack
    steps: list[Step] = field(default_factory=list)
    left: list[str] = field(default_factory=list)    # what --prune would remove, as text
    problems: list[Problem] = field(default_factory=list)
    # networks the record names that are gone from the host (removed by hand), forgotten
    forgotten: list[str] = field(default_factory=list)
    # what the file asks that apply does not do, said (first-boot keys changed)
    warnings: list[str] = field(default_factory=list)

    def add(self, action: str, name: str, why: str = "", **kw) -> None:
        self.steps.append(Step(action, name, why, **kw))


def make(ctx: Context, stack: Stack, record: Record, prune: bool) -> Plan:
    """The steps that make the host match stack (record: what it made before)."""
    plan = Plan(stack)
    paths, store = ctx.paths, ctx.store
    existing = set(store.names())
    configs: dict[str, ContainerConfig] = {}
    for name in existing:
        try:
            configs[name] = load_config(paths, name)
        except Error:
            pass  # broken settings: not a stack's we could tell; its own commands say so
    nets = {n.name: n for n in network_state(paths).networks()}
    _networks(plan, stack, nets)
    for name in stack.volumes:  # made when missing; one there already is used as it is
        if not volumes.exists(paths, name):
            plan.add(VOLUME_CREATE, name)
    up = active(ctx, existing) if existing else set()
    starts, stops, enables = [], [], []
    stopped: set[str] = set()  # made again: systemd stops what requires them (Requires=)
    for name in order(stack):
        spec = stack.containers[name]
        _check_host(plan, spec, stack, existing, nets, paths, configs)
        cfg = configs.get(name)
        running = name in up and not stopped & set(cfg.requires if cfg else ())
        if name in existing and cfg is None:
            plan.problems.append(Problem(spec.line, f"containers.{name}",
                                         "a container of that name exists and its settings "
                                         "cannot be read: not this stack's to change"))
            continue
        if cfg is not None and cfg.stack != stack.name:
            owner = f"stack {cfg.stack}'s" if cfg.stack else "not made by a stack"
            plan.problems.append(Problem(spec.line, f"containers.{name}",
                                         f"a container of that name exists, {owner}: "
                                         "apply never touches another's container"))
            continue
        # A container of this stack's with no record (a record removed by hand) keeps its
        # tree: nothing says how it was made, and a new tree would lose its data.
        old = record.containers.get(name)
        made = cfg is None or (old is not None and old.get("create") != spec.create)
        if cfg is None:
            plan.add(CREATE, name, _source_text(spec))
            running = False
        elif made:
            plan.add(RECREATE, name, _create_changes(old or {}, spec))
            running = False
            stopped.add(name)
        else:
            if old is not None:  # its tree keeps what it was made with: said, not done
                differ = firstboot.differ(old.get("firstboot") or {}, spec.firstboot.record)
                if differ:
                    plan.warnings.append(firstboot.said(name, differ))
            changes = changed_settings(cfg, spec, old)
            new = replace(cfg, **changes)
            if changes:
                why = ", ".join(sorted(_public(n) for n in changes))
                plan.add(CHANGE, name, why, changes=changes)
            # Against what it runs with, not what is saved: a `set` (or an apply killed
            # before its restart) may have saved settings that wait for one.
            later = needs_restart(effective(cfg, running_record.read(paths, name)), new) \
                if running else []
            if later and spec.state == "running":
                # systemd restarts what requires it too: the plan says so
                with_it = [n for n in order(stack)
                           if name in stack.containers[n].config.requires]
                plan.add(RESTART, name, f"for {', '.join(later)}" + (
                    f" ({', '.join(with_it)}, which require{'s' if len(with_it) == 1 else ''}"
                    " it, with it)" if with_it else ""))
        if spec.state == "running" and not running:
            starts.append(name)
        elif spec.state == "stopped" and running:
            stops.append(name)
        enabled = not made and is_enabled(paths, name)  # a new tree's unit is not enabled
        if spec.enabled != enabled:
            enables.append(name)
    for name in reversed(stops):
        plan.add(STOP, name)
    for name in starts:
        plan.add(START, name)
    for name in enables:
        plan.add(ENABLE if stack.containers[name].enabled else DISABLE, name)
    _gone(plan, stack, record, configs, prune, set(nets))
    return plan


def _networks(plan: Plan, stack: Stack, nets: dict) -> None:
    for net in stack.networks.values():
        have = nets.get(net.name)
        if have is None:
            plan.add(NETWORK_CREATE, net.name, f"subnet {net.subnet}" if net.subnet else "")
        elif net.subnet and str(have.subnet) != net.subnet:
            plan.problems.append(Problem(net.line, f"networks.{net.name}.subnet",
                                         f"network {net.name} exists with subnet "
                                         f"{have.subnet}, not {net.subnet}: remove it first "
                                         "(nspawnctl network remove) or change the file"))


def _check_host(plan: Plan, spec: ContainerSpec, stack: Stack, existing: set[str],
                nets: dict, paths, configs: dict[str, ContainerConfig]) -> None:
    """What the host must have for spec: the networks and containers it names that are not
    the file's, and the ports it publishes free."""
    where = f"containers.{spec.name}"
    network = spec.config.network
    if managed(spec.config) and network != DEFAULT_NETWORK and network not in nets \
            and network not in stack.networks:
        plan.problems.append(Problem(spec.line, f"{where}.network",
                                     f"no network named {network!r}, in the file or on this "
                                     "host"))
    for mount in spec.config.volumes:
        if mount.name not in stack.volumes and not volumes.exists(paths, mount.name):
            plan.problems.append(Problem(spec.line, f"{where}.volume",
                                         f"no volume named {mount.name!r}, in the file "
                                         "(volumes:) or on this host"))
    for dep in dependencies(spec.config):
        if dep not in stack.containers and dep not in existing:
            plan.problems.append(Problem(spec.line, where, f"ordered after {dep!r}: no such "
                                                           "container, in the file or on "
                                                           "this host"))
    for dep in spec.config.wait_healthy:
        # The file's health-cmd for dep, else what dep is on the host.  One the file makes
        # without a health-cmd key is its image's to say (its Healthcheck, whether it boots):
        # the file cannot tell before the image is there, so create refuses it then
        # (store/order.py), with the same line.
        filed, have = stack.containers.get(dep), configs.get(dep)
        if filed is not None and filed.config.health_cmd:
            continue
        if have is not None and not host_order.has_health(have):
            plan.problems.append(Problem(spec.line, f"{where}.after",
                                         f"{dep}{HEALTHY}: {host_order.no_health(dep)}"))
    if spec.config.ports:
        try:
            check_ports(paths, spec.name, spec.config)
        except Error as e:
            if spec.name not in e.message:  # a port of its own older self is no conflict
                plan.problems.append(Problem(spec.line, f"{where}.port", e.message))


def active(ctx: Context, names) -> set[str]:
    """The containers among names whose units run (or are on their way up)."""
    units = ctx.bus.list_units([service_unit(n) for n in names])
    up = {u["name"] for u in units if u["active_state"] in ("active", "activating",
                                                            "reloading")}
    return {n for n in names if service_unit(n) in up}


def _gone(plan: Plan, stack: Stack, record: Record, configs: dict, prune: bool,
          there: set[str]) -> None:
    """What the stack made that the file no longer lists: removed with --prune, else said.
    (there: the networks on the host; one the stack made and someone removed is forgotten.)"""
    gone = [n for n, cfg in sorted(configs.items())
            if cfg.stack == stack.name and n not in stack.containers]
    # containers that need others first: the dependents go first
    gone.sort(key=lambda n: -len([o for o in gone if n in dependencies(configs[o])]))
    nets = [n for n in sorted(record.networks) if n not in stack.networks and n in there]
    plan.forgotten = [n for n in sorted(record.networks)
                      if n not in stack.networks and n not in there]
    if prune:
        for name in gone:
            plan.add(REMOVE, name, "no longer in the file")
        for name in nets:
            plan.add(NETWORK_REMOVE, name, "no longer in the file")
    else:
        plan.left = [f"container {n}" for n in gone] + [f"network {n}" for n in nets]


def changed_settings(cfg: ContainerConfig, spec: ContainerSpec,
                     old: dict | None) -> dict[str, Any]:
    """The settings (by name) whose value in cfg differs from what the file asks; each one's
    new value.  A setting the file does not give is create's default; env keeps what the
    image set (the part of cfg's env the file did not give at the last apply: without a
    record of that, what it gives now), and so does an image's health check (its
    Healthcheck, read at create) while the file does not give that setting and did not at
    the last apply: a compose service's image check, which others wait for (NAME:healthy),
    is not dropped by the next apply.  ssh-key's credential is a first-boot key's: the
    container keeps the one it was made with (firstboot.py)."""
    wanted = {s.name: getattr(spec.config, s.name) for s in CLI_SETTINGS}
    wanted["wait_healthy"] = spec.config.wait_healthy  # after's and requires' NAME:healthy
    if (cfg.image or "").startswith(IMAGE_PREFIX):
        given = {*spec.settings, *((old or {}).get("settings") or {})}
        for name in IMAGE_HEALTH:
            if name not in given:
                wanted[name] = getattr(cfg, name)
    filed = tuple(old.get("settings", {}).get("env", ())) if old is not None \
        else spec.config.env
    wanted["env"] = _image_env(cfg.env, filed) + spec.config.env
    if "ssh-key" in {*spec.firstboot.record, *((old or {}).get("firstboot") or {})}:
        # a first-boot key: the container keeps the one it was made with (firstboot.py)
        wanted["credentials"] = firstboot.keep_ssh_key(wanted["credentials"], cfg.credentials)
    return {k: v for k, v in wanted.items() if getattr(cfg, k) != v}


def _image_env(env: tuple[str, ...], filed: tuple[str, ...]) -> tuple[str, ...]:
    """The part of a container's env its image gave: create puts the image's first and the
    file's after (sources/oci/source.py apply_image_config)."""
    if filed and env[-len(filed):] == filed:
        return env[:-len(filed)]
    if not filed:
        return env
    keys = {e.partition("=")[0] for e in filed}
    return tuple(e for e in env if e.partition("=")[0] not in keys)


def _public(name: str) -> str:
    return next((s.flag[2:] for s in CLI_SETTINGS if s.name == name and s.flag), name)


def _source_text(spec: ContainerSpec) -> str:
    return f"from {spec.source}"


def _create_changes(old: dict, spec: ContainerSpec) -> str:
    before = old.get("create", {})
    keys = sorted(k for k in {*before, *spec.create} if before.get(k) != spec.create.get(k))
    return f"{', '.join(keys)} changed: its tree is made again"
