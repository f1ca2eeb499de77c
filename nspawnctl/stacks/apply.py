"""apply: make the host match a stack file, one step at a time.

Each step is a command nspawnctl already has (create, set, start, stop, enable, remove,
network create/remove), as safe as that command: a container is whole or absent whatever
moment apply is killed at, and the next apply plans again from what is there, so it finishes
the job.  The stack's record (record.py) is written before each step that makes or changes
something, so it always says what the file asked of what exists.  A failing step stops the
apply with one line naming it, and says what was done and what was not.
"""

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import Error
from ..ops import create, lifecycle, network, reconfigure, remove, volumes
from ..runtime.context import Context
from . import compose, model, plan, record, yamlfile
from .model import Stack, StackError

PAST = {plan.NETWORK_CREATE: "created network", plan.VOLUME_CREATE: "created volume",
        plan.CREATE: "created",
        plan.RECREATE: "recreated", plan.CHANGE: "changed", plan.RESTART: "restarted",
        plan.START: "started", plan.STOP: "stopped", plan.ENABLE: "enabled",
        plan.DISABLE: "disabled", plan.REMOVE: "removed", plan.NETWORK_REMOVE: "removed network"}


@dataclass
class Result:
    stack: str
    dry_run: bool
    steps: list[plan.Step] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {"stack": self.stack, "dry_run": self.dry_run, "changed": bool(self.steps),
                "steps": [s.to_json() for s in self.steps], "left": self.left,
                "warnings": self.warnings, "seconds": round(self.seconds, 3)}


def load_file(path: str, ignore_unsupported: bool = False,
              name: str | None = None) -> tuple[Stack, list[str]]:
    """The stack a file (native, or a compose file) asks for, and warnings (the compose keys
    left out with ignore_unsupported).  Every problem of the file at once, or none."""
    _text, doc, problems = yamlfile.read(path)
    warnings: list[str] = []
    if compose.is_compose(doc):
        base = Path(path).resolve().parent if path != "-" else Path.cwd()
        doc, more, said = compose.translate(doc, base, ignore_unsupported)
        problems += more
        warnings = [f"{path}:{line}" for line in said]
    default = name or doc.get("name") or yamlfile.source_name(path)
    if name:
        doc["name"] = name
    stack, more = model.load(doc, default if isinstance(default, str) else "")
    problems += more
    if problems:
        raise StackError(path, problems)
    return stack, warnings


def apply(ctx: Context, stack: Stack, prune: bool = False, dry_run: bool = False,
          filename: str = "the file", say=print) -> Result:
    """Make the host match stack (dry_run: only say how); say(line) for each step taken."""
    t0 = time.monotonic()
    paths = ctx.paths
    result = Result(stack.name, dry_run)
    with record.locked(paths, stack.name, ctx.report):
        kept = record.read(paths, stack.name)
        steps = plan.make(ctx, stack, kept, prune)
        if steps.problems:
            raise StackError(filename, steps.problems)
        result.left = steps.left
        result.warnings = steps.warnings
        if dry_run:
            result.steps = steps.steps
            result.seconds = time.monotonic() - t0
            return result
        done: list[plan.Step] = []
        removing = tuple(s.name for s in steps.steps if s.action == plan.REMOVE)
        for step in steps.steps:
            try:
                _take(ctx, stack, kept, step, removing)
            except Error as e:
                raise _failed(step, e, done, steps.steps[len(done) + 1:]) from None
            done.append(step)
            say(f"{PAST[step.action]} {step.name}{': ' + step.why if step.why else ''}")
        _finish(paths, stack, kept, steps)
        result.steps = done
    result.seconds = time.monotonic() - t0
    return result


def _take(ctx: Context, stack: Stack, kept: record.Record, step: plan.Step,
          removing: tuple[str, ...]) -> None:
    paths, name = ctx.paths, step.name
    if step.action == plan.NETWORK_CREATE:
        kept.networks[name] = stack.networks[name].record()  # intent: it is ours
        record.write(paths, kept)
        network.create_network(ctx, name, stack.networks[name].subnet)
    elif step.action == plan.VOLUME_CREATE:
        volumes.create(ctx, name)  # not recorded: apply never removes a volume
    elif step.action == plan.NETWORK_REMOVE:
        network.remove_network(ctx, name)
        del kept.networks[name]
        record.write(paths, kept)
    elif step.action in (plan.CREATE, plan.RECREATE):
        spec = stack.containers[name]
        if step.action == plan.RECREATE:
            remove.remove(ctx, name, force=True, along=tuple(stack.containers))
        kept.containers[name] = spec.record()
        record.write(paths, kept)
        _create(ctx, stack, name)
    elif step.action == plan.CHANGE:
        kept.containers[name] = stack.containers[name].record(_made_with(kept, name))
        record.write(paths, kept)
        reconfigure.set_config(ctx, name, {}, step.changes)
    elif step.action == plan.START:
        lifecycle.start(ctx, name)
    elif step.action == plan.STOP:
        lifecycle.stop(ctx, name)
    elif step.action == plan.RESTART:
        lifecycle.restart(ctx, name)
    elif step.action == plan.ENABLE:
        lifecycle.enable(ctx, name)
    elif step.action == plan.DISABLE:
        lifecycle.disable(ctx, name)
    elif step.action == plan.REMOVE:
        remove.remove(ctx, name, force=True, along=removing)
        kept.containers.pop(name, None)
        record.write(paths, kept)
    else:  # pragma: no cover - every action is above
        raise AssertionError(step.action)


def _create(ctx: Context, stack: Stack, name: str) -> None:
    spec = stack.containers[name]
    options = {model.CREATE_KEYS[k].option: v for k, v in spec.create.items()}
    source = options.pop("source", model.DEFAULT_SOURCE)
    use_overlay = options.pop("use_overlay", False)
    if "include" in options:
        options["include"] = ",".join(options["include"])
    cfg = dataclasses.replace(spec.config, stack=stack.name)
    request = create.make_request(ctx, **options)
    identity = spec.firstboot.identity()
    create.create(ctx, name, source, cfg, request, use_overlay=use_overlay,
                  identity=identity or None,
                  given=frozenset(spec.settings))  # health-cmd: none over an image's check


def _made_with(kept: record.Record, name: str) -> dict | None:
    """The first-boot keys the record says name's tree was made with (None: no record)."""
    old = kept.containers.get(name)
    return None if old is None else old.get("firstboot") or {}


def _finish(paths, stack: Stack, kept: record.Record, steps: plan.Plan) -> None:
    """The record once every step is done: the file's containers as the file says them, and
    the networks this stack made (those the file no longer lists stay, until --prune; those
    gone from the host are forgotten)."""
    # a tree made by this apply was recorded with the file's first-boot keys at its step
    containers = {n: s.record(_made_with(kept, n)) for n, s in stack.containers.items()}
    left = {n: r for n, r in kept.containers.items() if n not in containers}
    networks = {n: r for n, r in kept.networks.items() if n not in steps.forgotten}
    new = record.Record(stack.name, {**containers, **left}, networks)
    if new.to_json() != kept.to_json():
        record.write(paths, new)


def _failed(step: plan.Step, exc: Error, done: list[plan.Step],
            rest: list[plan.Step]) -> Error:
    said = f"{step.action} {step.name} failed: {exc.message}"
    did = ", ".join(f"{s.action} {s.name}" for s in done) or "nothing"
    undone = ", ".join(f"{s.action} {s.name}" for s in rest) or "nothing else"
    hint = (f"{exc.hint + '; ' if exc.hint else ''}done before it: {did}; not done: "
            f"{undone}; apply again once it is fixed")
    return type(exc)(said, hint=hint, exit_code=exc.exit_code)
