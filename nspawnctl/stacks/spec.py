"""spec: existing containers as the stack file that `apply` turns back into them.

A spec is short: it says only what differs from what create does by default, in the CLI's
text forms that model.py's parsers read back.  Four things are not in a container's
settings and come from records:
- how its tree was made (create-only keys: from, add, cmd, include, ...): the stack's record
  for a stack's container (what apply compares the file against, so applying the spec to
  its own stack changes nothing), else the container's made_from record (ops/create.py);
- which part of its env is its image's: create puts the image's Env first (sources/oci/
  source.py), so printing it would make apply add it twice; the image's Env is kept in its
  base tree's meta.json, which `images prune` keeps while a container uses it;
- whether it runs (state) and starts at boot (enabled);
- the first-boot keys a stack's container was made with (its stack's record): timezone,
  locale, and ssh-key as the store's file of its key; never a root password (a warning
  says it is left out), and none for a container create made (it keeps no record of them).
What cannot be known is said, one line per container, and nothing is printed.  Before it is
printed, the file is read back as apply reads it and must give the same settings: a value
that does not survive the trip is an error here, never a silently different container.
"""

from dataclasses import dataclass, field
from typing import Any

from ..errors import Error, InvalidInput
from ..names import check_name, check_stack_name
from ..network.containers import network_state
from ..runtime.context import Context
from ..settings import credentials
from ..settings.files import load_config
from ..settings.firstboot import SSH_KEY
from ..settings.model import (
    CLI_SETTINGS,
    HEALTHY,
    NETWORK_MODES,
    ContainerConfig,
    Setting,
    dependencies,
    parse_cli,
)
from ..settings.networking import DEFAULT as DEFAULT_NETWORK
from ..store.containers import is_enabled
from ..store.images import image_dir, read_meta
from . import model, plan, record, yamlfile
from .firstboot import PASSWORD_KEYS
from .model import CREATE_KEYS, DEFAULT_SOURCE

# What create makes when no option is given: a spec leaves these out.
CREATE_DEFAULTS = ContainerConfig(**parse_cli({}, creating=True))
IMAGE_PREFIX = plan.IMAGE_PREFIX
_FLAGS = {f"--{k}": k for k in CREATE_KEYS if k != "from"}


@dataclass
class Spec:
    """The file (as data, in the order it is printed) and what it cannot hold (warnings)."""
    doc: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    def text(self) -> str:
        return yamlfile.dump(self.doc)


def spec(ctx: Context, names: list[str], stack_name: str | None = None) -> Spec:
    """The stack file for containers names (and the networks they use).  name: is
    stack_name, else the stack all of them belong to, else left out (apply then names the
    stack after the file)."""
    paths = ctx.paths
    if stack_name:
        check_stack_name(stack_name)
    names = list(dict.fromkeys(check_name(n) for n in names))
    for name in names:
        ctx.store.require(name)
    configs = {n: load_config(paths, n) for n in names}
    running = plan.active(ctx, names)
    problems: list[Error] = []
    warnings: list[str] = []
    containers: dict[str, dict] = {}
    records: dict[str, record.Record] = {}
    for name in _order(configs):
        cfg = configs[name]
        stacked = None
        if cfg.stack:
            if cfg.stack not in records:
                records[cfg.stack] = record.read(paths, cfg.stack)
            stacked = records[cfg.stack].containers.get(name)
        try:
            containers[name] = container_keys(
                cfg, stacked, _image_env(paths, cfg), running=name in running,
                enabled=is_enabled(paths, name), image_check=_image_check(paths, cfg))
            boot = first_boot_keys(paths, name, cfg, stacked, warnings)
            given = [c for c in cfg.credentials if "ssh-key" not in boot or c.name != SSH_KEY]
            containers[name].pop("credential", None)  # container_keys': names only
            if given:  # never a value: the file in the store that holds it
                containers[name]["credential"] = [credentials.spelled(paths, name, c)
                                                  for c in given]
            containers[name].update(boot)
        except Error as e:
            problems.append(InvalidInput(f"{name}: {e.message}", hint=e.hint))
    if len(problems) == 1:
        raise problems[0]
    if problems:  # every container's problem at once, as apply says a file's
        raise InvalidInput("\n".join(p.message for p in problems))
    stacks = {cfg.stack for cfg in configs.values()}
    title = stack_name or (stacks.pop() if len(stacks) == 1 else None)
    doc: dict[str, Any] = {"name": title} if title else {}
    nets = _networks(ctx, configs)
    if nets:
        doc["networks"] = nets
    doc["containers"] = containers
    check(doc, configs)
    return Spec(doc, warnings + _outside(configs))


_HINT = ("a container made before nspawnctl kept how (create --from ...) cannot be "
         "described; write its keys by hand")


def container_keys(cfg: ContainerConfig, stacked: dict | None, image_env: tuple | None,
                   running: bool = False, enabled: bool = False,
                   image_check: bool = False) -> dict[str, Any]:
    """One container's keys: create-only keys, the settings create would not give it, state
    and enabled.  stacked: its stack's record of it (create: and settings: as the file said
    them), or None; image_env: its image's Env (() without an image, None: not known);
    image_check: its image has a Healthcheck, which create takes unless told none."""
    keys: dict[str, Any] = dict(create_keys(cfg, stacked))
    own_env = _own_env(cfg, image_env, stacked)
    for s in CLI_SETTINGS:
        value = {"env": own_env, "after": _after(cfg), "requires": _healthy(
            cfg, cfg.requires)}.get(s.name, getattr(cfg, s.name))
        if s.name == "health_cmd" and not value and image_check:
            keys["health-cmd"] = "none"  # made without its image's check: so is a new one
            continue
        if value == getattr(CREATE_DEFAULTS, s.name):
            continue
        assert s.flag
        if value is None:  # unset, where create sets one (made before it did)
            raise Error(f"{s.flag} is not set, and a stack file cannot say that (create "
                        f"sets {s.show(getattr(CREATE_DEFAULTS, s.name))})",
                        hint=f"nspawnctl set NAME {s.flag} VALUE first")
        keys[s.flag[2:]] = setting_value(s, value)
    if not running:
        keys["state"] = "stopped"
    if enabled:
        keys["enabled"] = True
    return keys


def first_boot_keys(paths, name: str, cfg: ContainerConfig, stacked: dict | None,
                    warnings: list[str]) -> dict[str, Any]:
    """The first-boot keys a stack's container was made with, as its stack's record keeps
    them (stacks/firstboot.py): the zone and the locale; ssh-key as the file in the
    credentials store that holds the key (its digest is what the record keeps).  A root
    password is never written out: said in warnings.  A container no stack made: none (create
    keeps no record of them; its ssh key is its credential)."""
    recorded = (stacked or {}).get("firstboot") or {}
    keys: dict[str, Any] = {k: recorded[k] for k in ("timezone", "locale") if k in recorded}
    key = next((c for c in cfg.credentials if c.name == SSH_KEY), None)
    if "ssh-key" in recorded and key is not None:
        keys["ssh-key"] = credentials.spelled(paths, name, key).partition("=@")[2]
    for secret in (k for k in PASSWORD_KEYS if k in recorded):
        warnings.append(f"{name} was made with {secret}, which is not in this file: a root "
                        "password is never written out (its hash is in the tree's "
                        "/etc/shadow); add the key by hand for a container made again")
    return keys


def create_keys(cfg: ContainerConfig, stacked: dict | None) -> dict[str, Any]:
    """How its tree is made, as a stack file says it."""
    if stacked is not None and isinstance(stacked.get("create"), dict):
        said = stacked["create"]  # exactly what apply compares the next file with
    elif cfg.made_from:
        said = parse_made_from(cfg.made_from)
    else:
        raise Error("how it was made is not known (it was made before nspawnctl recorded "
                    "create's --from and options)", hint=_HINT)
    # in one order whatever they come from (the stack's record sorts them)
    return {k: said[k] for k in sorted(said, key=_create_order)}


def _create_order(key: str) -> int:
    return list(CREATE_KEYS).index(key) if key in CREATE_KEYS else len(CREATE_KEYS)


def parse_made_from(words: tuple[str, ...]) -> dict[str, Any]:
    """The made_from record (ops/create.py made_from) as create keys."""
    source, *rest = words
    keys: dict[str, Any] = {} if source == DEFAULT_SOURCE else {"from": source}
    flags = iter(rest)
    for flag in flags:
        negated = flag.startswith("--no-") and f"--{flag[5:]}" in _FLAGS
        key = _FLAGS.get(f"--{flag[5:]}" if negated else flag)
        if key is None:
            raise Error(f"its made_from record has {flag!r}, which create does not take")
        kind = CREATE_KEYS[key].kind
        if kind is bool:
            keys[key] = not negated
            continue
        value = next(flags, None)
        if value is None or negated:
            raise Error(f"its made_from record ends in {flag!r} without a value")
        if key == "include":
            keys[key] = value.split(",")
        elif kind is list:
            keys.setdefault(key, []).append(value)
        else:
            keys[key] = value
    return keys


def setting_value(s: Setting, value: Any) -> Any:
    """A setting's value as a stack file spells it: the CLI's text (a list for a repeatable
    setting), a number where the text is one, true/false for a switch."""
    if s.switch:
        return bool(value)
    if s.multiple:
        return [s.show(v) for v in value]
    return _number(s.show(value))


def _number(text: str) -> Any:
    """'256' as 256 and '1.5' as 1.5 (model.py reads either back as the same text)."""
    for kind in (int, float):
        try:
            if str(kind(text)) == text:
                return kind(text)
        except ValueError:
            pass
    return text


def _after(cfg: ContainerConfig) -> tuple[str, ...]:
    """--after without what --requires adds to it, when that gives the same order; NAME:healthy
    for those waited for that are not required (requires: says it of those)."""
    own = tuple(n for n in cfg.after if n not in cfg.requires)
    if ContainerConfig(after=own, requires=cfg.requires).after != cfg.after:
        own = cfg.after
    return _healthy(cfg, own, but=cfg.requires)


def _healthy(cfg: ContainerConfig, names: tuple[str, ...],
             but: tuple[str, ...] = ()) -> tuple[str, ...]:
    """names, NAME:healthy for those cfg waits for the health of (not those in but)."""
    return tuple(n + HEALTHY if n in cfg.wait_healthy and n not in but else n for n in names)


def _image_env(paths, cfg: ContainerConfig) -> tuple[str, ...] | None:
    """The Env its image gave it (() for a tree that is not an image's; None: not known, a
    base cached before nspawnctl kept it)."""
    if not (cfg.image or "").startswith(IMAGE_PREFIX):
        return ()
    meta = read_meta(image_dir(paths, cfg.image or "")) or {}
    env = meta.get("env")
    if isinstance(env, list) and all(isinstance(e, str) for e in env):
        return tuple(env)
    return None


def _image_check(paths, cfg: ContainerConfig) -> bool:
    """Whether its image has a Healthcheck (False: not an image's tree, none, or not known:
    a base cached before nspawnctl kept that)."""
    if not (cfg.image or "").startswith(IMAGE_PREFIX):
        return False
    return (read_meta(image_dir(paths, cfg.image or "")) or {}).get("health_check") is True


def _own_env(cfg: ContainerConfig, image_env: tuple | None,
             stacked: dict | None) -> tuple[str, ...]:
    """The part of its env that is not its image's: what the file or create --env gave."""
    if image_env is None and stacked is not None:
        filed = tuple((stacked.get("settings") or {}).get("env") or ())
        if cfg.env[len(cfg.env) - len(filed):] == filed:
            return filed
    if image_env is None:
        raise Error("the env its image gave it is not known (its base tree was cached before "
                    "nspawnctl kept it), so its own env cannot be told apart",
                    hint="write its keys by hand: env: without the variables its image "
                         "sets (nspawnctl status NAME shows them all)")
    if cfg.env[:len(image_env)] != image_env:
        raise Error("its env does not begin with its image's any more (set --env replaced "
                    "it); apply always gives a container its image's env",
                    hint="set --env with the image's env first, or write the file by hand")
    return cfg.env[len(image_env):]


def _order(configs: dict[str, ContainerConfig]) -> list[str]:
    """The containers, each after those it is ordered after (given order otherwise), so
    apply makes them in an order create accepts."""
    left, done = dict(configs), []
    while left:
        ready = [n for n, c in left.items() if not any(d in left for d in dependencies(c))]
        for name in ready or list(left):  # a cycle (hand edits): the given order
            done.append(name)
            del left[name]
    return done


def _networks(ctx: Context, configs: dict[str, ContainerConfig]) -> dict[str, dict]:
    state = network_state(ctx.paths)
    nets = {}
    for cfg in configs.values():
        net = cfg.network
        if net in NETWORK_MODES or net == DEFAULT_NETWORK or net in nets:
            continue
        nets[net] = {"subnet": str(state.get(net).subnet)}
    return nets


def _outside(configs: dict[str, ContainerConfig]) -> list[str]:
    """Containers they are ordered after that the spec does not hold: apply needs them on
    the host."""
    return [f"{name} is ordered after {dep}, which is not in this spec: apply needs it on "
            "the host" for name, cfg in configs.items() for dep in dependencies(cfg)
            if dep not in configs]


def check(doc: dict[str, Any], configs: dict[str, ContainerConfig]) -> None:
    """The file, read as apply reads it, gives every setting the containers have (their
    image's env aside): else a value did not survive its text form, and saying so beats
    printing a file that makes another container."""
    parsed, problems = yamlfile.parse(yamlfile.dump(doc))
    stack, more = model.load(parsed, "spec")
    problems += more
    if problems:
        raise Error("spec made a file apply refuses: " + problems[0].text("spec"))
    for name, cfg in configs.items():
        got = stack.containers[name].config
        differ = [f"{s.flag}" for s in CLI_SETTINGS if s.name != "env"
                  and getattr(got, s.name) != getattr(cfg, s.name)]
        if got.wait_healthy != cfg.wait_healthy:
            differ.append(f"--after NAME{HEALTHY}")
        wanted_env = tuple(doc["containers"][name].get("env", ()))
        if tuple(got.env) != wanted_env:
            differ.append("--env")
        if differ:
            raise Error(f"{name}: {', '.join(differ)} cannot be said in a stack file as "
                        "it is set")

