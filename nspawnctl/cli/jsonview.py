"""What --json prints, defined once per thing: a container (list, status, create), an image,
a network, a snapshot, and each command's result.

A script reads one type per key wherever the key appears: every entry has every key of its
kind (None only where a value can be absent by nature: an OS name a tree does not say, a
limit not set), a list is a list even when empty ([], never null), times are RFC 3339 UTC
text (times.py), sizes are bytes (integers), limits are values (bytes, CPUs), not text.
view() holds what an operation returns to its kind's keys; tests/unit/test_jsonview.py runs
every command's JSON through check(), so a key of another type, or one left out, fails there
before it reaches a script.  A setting's key is its public name (settings/model.py).

This is the schema scripts rely on (issue 30): PRINTED_BY says which command prints which
kind, SCHEMA_VERSION its version, and docs/json.md's list of kinds is rendered from here
(reference()), a unit test holding the page to it.
"""

import math
import types
import typing
from dataclasses import fields
from typing import Any

from ..times import rfc3339

# ------------------------------------------------------------ the types a key may have


class Null:
    """SPEC or None."""

    def __init__(self, spec):
        self.spec = spec

    def __repr__(self):
        return f"Null({self.spec!r})"


NUMBER = "number"  # an int or a float (CPUs, seconds)
TIME = "time"      # RFC 3339 UTC text, 2026-12-06T12:00:00Z
TEXT = [str]       # a list of text
BYTES = "bytes"    # an int; a limit given as a percentage of the host's memory (50%) is
                   # shown as the bytes it means on this host, as systemd works it out
OBJECT = "object"  # an object whose keys vary: setting -> value (pending)


# A container's last health check (runtime/health.py): state starting, healthy or unhealthy;
# failing_streak: failed checks in a row; last_output: what the check wrote (its first 4 KiB);
# last_action: what --on-unhealthy did after it (restart, stop, kill), if anything
_HEALTH = {"state": str, "failing_streak": int, "last_output": str, "last_check": Null(TIME),
           "last_exit_status": Null(int), "last_action": Null(str)}


def _setting_spec(setting, annotation) -> Any:
    """A setting's JSON type, from its field's annotation (so a new setting needs no entry
    here): a repeatable one is a list of text, a time a TIME."""
    if setting.name == "created":
        return Null(TIME)
    args = set(typing.get_args(annotation)) if isinstance(annotation, types.UnionType) \
        else {annotation}
    nullable = type(None) in args
    args.discard(type(None))
    if any(a is tuple or typing.get_origin(a) is tuple for a in args):
        return TEXT
    if args == {int, str}:  # --memory: bytes, or a percentage of the host's memory
        return Null(BYTES) if nullable else BYTES
    spec: Any = NUMBER if float in args else args.pop() if len(args) == 1 else NUMBER
    return Null(spec) if nullable else spec


def _settings() -> dict[str, Any]:
    from ..settings.model import SETTINGS, ContainerConfig
    annotations = {f.name: f.type for f in fields(ContainerConfig)}
    return {s.public: _setting_spec(s, annotations[s.name]) for s in SETTINGS}


def _limits() -> dict[str, Any]:
    from ..settings.model import LIMITS
    every = _settings()
    return {s.public: every[s.public] for s in LIMITS}


def _container() -> dict[str, Any]:
    every = _settings()
    return {"name": str, "state": str, "os": Null(str), "address": TEXT,
            **{k: every[k] for k in ("port", "image", "after", "requires", "created",
                                     "stack")},
            "enabled": bool, "limits": _limits(), "pending": OBJECT,
            "health": Null(_HEALTH)}  # null: no --health-cmd, or not running


def _status() -> dict[str, Any]:
    return {**_container(), **_settings(), "unit": str, "unit_state": str, "leader": Null(int),
            "tree": str, "overlay": Null(str), "memory_current": Null(int),
            "exposed_ports": TEXT, "volumes": TEXT, "result": Null(str), "log": TEXT}


def _inspect() -> dict[str, Any]:
    return {**_status(), "nspawn_file": {"path": str, "text": str},
            "unit_files": [{"path": str, "text": str}]}


_IMAGE = {"repository": Null(str), "tag": Null(str), "digest": Null(str),
          "platform": Null(str), "index": Null(str), "key": str, "source": Null(str),
          "suite": Null(str), "size": Null(int), "download": Null(int), "created": Null(TIME),
          "unpacked": bool, "containers": TEXT}

_NETWORK = {"name": str, "subnet": str, "gateway": str, "bridge": str, "containers": TEXT}

# volumes: the named volumes it holds (snapshot --with-volumes; [] without), counted in size
_SNAPSHOT = {"name": str, "tag": str, "method": str, "size": int, "created": TIME,
             "running": Null(bool), "frozen_seconds": Null(NUMBER),
             "stopped_seconds": Null(NUMBER), "lower": Null(str), "volumes": TEXT}

_CREATED = {"name": str, "source": str, "method": str, "image": Null(str),
            "cached": Null(bool), "boot": Null(bool), "why": Null(str), "command": TEXT,
            "added": TEXT, "address": TEXT, "created": TIME, "seconds": NUMBER,
            "state": Null(str)}  # create --start, run: the state it was started to

_PULLED = {"name": str, "digest": str, "platform": str, "index": Null(str), "key": str,
           "cached": bool, "fetched_blobs": int, "blobs": int, "fetched_bytes": int,
           "seconds": NUMBER, "unpacked": bool}

_UPGRADED = {"name": str, "state": str, "snapshot": Null(str), "snapshot_method": Null(str)}

# auto-update: one row per container; action: updated, up-to-date, would-update (--dry-run),
# rolled-back (the new image was not healthy) or failed (message says why)
_AUTO_UPDATED = {"name": str, "reference": Null(str), "image": Null(str),
                 "new_image": Null(str), "action": str, "message": Null(str)}

# volumes: the volumes put back (rollback --with-volumes; [] without)
_ROLLED_BACK = {"name": str, "tag": str, "method": str, "restarted": bool,
                "state": Null(str), "settings_changed": bool, "volumes": TEXT}

_EXPORTED = {"name": str, "file": str, "format": str, "compression": Null(str),
             "frozen": bool, "seconds": NUMBER, "entries": int, "bytes": int, "size": int,
             "mode": str, "skipped": TEXT, "layer": Null(str), "layer_size": Null(int),
             "config": Null(str), "manifest": Null(str)}


_APPLIED = {"stack": str, "dry_run": bool, "changed": bool,
            "steps": [{"action": str, "kind": str, "name": str, "why": Null(str)}],
            "left": TEXT, "warnings": TEXT, "seconds": NUMBER}

# start, stop, restart: the state it is in now; changed: false when it already was (start of a
# running container, stop of a stopped one)
_CHANGED = {"name": str, "state": str, "changed": bool}

_ENABLED = {"name": str, "enabled": bool}  # enable, disable

_KILLED = {"name": str, "signal": int}

# set: what it changed takes effect now (running: limits and ports applied live) or at the
# next start; restart_for: the settings a running container gets only after a restart
_CONFIGURED = {"name": str, "changed": bool, "running": bool, "restart_for": TEXT}

# volumes: the named volumes it mounted, which stay (volume remove removes them)
_REMOVED = {"name": str, "stopped": bool, "dry_run": bool,
            "snapshots": [{"tag": str, "size": Null(int)}], "volumes": TEXT}

# path: its data directory on the host, what containers mount; containers: those whose
# settings mount it
_VOLUME = {"name": str, "path": str, "created": Null(TIME), "size": Null(int),
           "containers": TEXT}

_VOLUME_REMOVED = {"name": str, "size": Null(int)}

# volume export: the tar's entries, its uncompressed bytes, the file's size
_VOLUME_EXPORTED = {"name": str, "file": str, "entries": int, "bytes": int, "size": int}

_CLONED = {"name": str, "from": str, "method": str}

_RENAMED = {"name": str, "from": str, "enabled": bool}

_NETWORK_REMOVED = {"name": str}

_SNAPSHOT_REMOVED = {"name": str, "tag": str, "size": Null(int)}

# images rm, images prune: the pulled names forgotten, the base trees removed, the blobs
# nothing needs any more (with --dry-run: what would go)
_IMAGES_REMOVED = {"names": TEXT, "trees": [{"key": str, "size": Null(int)}], "blobs": int,
                   "bytes": int, "dry_run": bool}

_COPIED = {"from": str, "to": str}

_DOCTOR = {"ok": bool, "checks": [{"name": str, "ok": bool, "severity": str, "message": str,
                                   "fix": Null(str)}]}

_RECOVERED = {"done": TEXT}

# stats: one sample; a figure the host has no cgroup for is null
_USAGE = {"name": str, "cpu_percent": Null(NUMBER), "memory_bytes": Null(int), "pids": Null(int),
          "net_rx_bytes": Null(int), "net_tx_bytes": Null(int)}

# top: one process; uid as the container sees it (null: no user there, the overflow user),
# command its words (as a container's)
_PROCESS = {"pid": int, "cpid": int, "ppid": int, "uid": Null(int), "state": str, "rss": int,
            "cpu_seconds": NUMBER, "started": Null(TIME), "command": TEXT}

_VERSION = {"version": str, "schema_version": int}

_HEALTH_CHECKED = {"name": str, **_HEALTH}

# wait: the state waited for, reached after seconds
_WAITED = {"name": str, "state": str, "seconds": NUMBER}

# The version of what this module defines, which `nspawnctl version --json` says.  A key is
# added without a new version (a script ignores keys it does not know); a key renamed,
# retyped or removed, or a kind's shape changed, makes the next one: docs/json.md says so.
SCHEMA_VERSION = 1


_FIXED: dict[str, dict[str, Any]] = {
    "image": _IMAGE, "network": _NETWORK, "snapshot": _SNAPSHOT, "created": _CREATED,
    "pulled": _PULLED, "auto_updated": _AUTO_UPDATED,
    "upgraded": _UPGRADED, "rolled_back": _ROLLED_BACK,
    "exported": _EXPORTED, "applied": _APPLIED, "changed": _CHANGED, "enabled": _ENABLED,
    "killed": _KILLED, "configured": _CONFIGURED, "removed": _REMOVED, "cloned": _CLONED,
    "renamed": _RENAMED, "network_removed": _NETWORK_REMOVED,
    "snapshot_removed": _SNAPSHOT_REMOVED, "images_removed": _IMAGES_REMOVED,
    "copied": _COPIED, "doctor": _DOCTOR, "recovered": _RECOVERED, "usage": _USAGE,
    "process": _PROCESS, "version": _VERSION, "health": _HEALTH_CHECKED, "waited": _WAITED,
    "volume": _VOLUME, "volume_removed": _VOLUME_REMOVED, "volume_exported": _VOLUME_EXPORTED}


def schema(kind: str) -> dict[str, Any]:
    """The keys of KIND and the type of each."""
    made = {"container": _container, "status": _status, "inspect": _inspect}
    if kind in made:
        return made[kind]()
    return _FIXED[kind]


# Each kind and the commands that print it: a list ([...]) where a command takes several
# names and prints one entry per name.  docs/json.md is rendered from this (reference());
# tests/unit/test_jsonview.py holds every command with --json to one of these.
PRINTED_BY: dict[str, str] = {
    "container": "list: [...]",
    "status": "status",
    "inspect": "inspect (always JSON)",
    "image": "images: [...]",
    "network": "network list: [...]; network create",
    "snapshot": "snapshot list, snapshots: [...]; snapshot create",
    "created": "create, run",
    "pulled": "pull",
    "auto_updated": "auto-update: [...]",
    "upgraded": "upgrade",
    "rolled_back": "rollback, snapshot rollback",
    "exported": "export",
    "applied": "apply",
    "usage": "stats: [...]",
    "process": "top: [...]",
    "changed": "start, stop, restart: [...]",
    "enabled": "enable, disable: [...] (and auto-update --enable-timer or --disable-timer: "
               "one, the timer unit's)",
    "killed": "kill: [...]",
    "configured": "set",
    "removed": "remove: [...]",
    "cloned": "clone",
    "renamed": "rename",
    "network_removed": "network remove: [...]",
    "snapshot_removed": "snapshot rm",
    "images_removed": "images rm, images prune",
    "copied": "cp",
    "doctor": "doctor",
    "recovered": "recover",
    "version": "version",
    "health": "health",
    "waited": "wait",
    "volume": "volume list: [...]; volume create, volume inspect, volume import",
    "volume_removed": "volume remove: [...]",
    "volume_exported": "volume export",
}

KINDS = tuple(PRINTED_BY)

# ------------------------------------------------------------ the kinds as docs/json.md shows them

BEGIN = "<!-- kinds: rendered by nspawnctl/cli/jsonview.py reference(); do not edit by hand -->"
END = "<!-- end of kinds -->"


def reference() -> str:
    """docs/json.md's list of kinds, rendered from the kinds themselves, so the page cannot
    drift from what commands print: tests/unit/test_jsonview.py fails when they differ
    (`python -m nspawnctl.cli.jsonview` prints it)."""
    out = [BEGIN, "", f"Schema version: **{SCHEMA_VERSION}**", ""]
    for kind in KINDS:
        out += [f"### {kind}", "", f"Printed by: {PRINTED_BY[kind]}", "",
                "| key | type |", "|---|---|"]
        out += [f"| `{key}` | {text} |" for key, text in _rows(schema(kind))]
        out.append("")
    return "\n".join([*out, END]) + "\n"


def _rows(spec: dict, prefix: str = ""):
    for key, want in spec.items():
        yield prefix + key, _type_name(want)
        inner = want.spec if isinstance(want, Null) else want
        if isinstance(inner, dict):
            yield from _rows(inner, f"{prefix}{key}.")
        elif isinstance(inner, list) and isinstance(inner[0], dict):
            yield from _rows(inner[0], f"{prefix}{key}[].")


_NAMES = {str: "text", int: "integer", bool: "boolean", NUMBER: "number",
          TIME: "time (RFC 3339 UTC text)", BYTES: "bytes (integer)",
          OBJECT: "object (its keys vary)"}


def _type_name(spec) -> str:
    if isinstance(spec, Null):
        return f"{_type_name(spec.spec)} or null"
    if isinstance(spec, list):
        return "list of objects" if isinstance(spec[0], dict) else \
            f"list of {_type_name(spec[0])}"
    if isinstance(spec, dict):
        return "object"
    return _NAMES[spec]


# ------------------------------------------------------------ holding a value to its kind


def view(kind: str, row: dict, read: bool = False) -> dict:
    """ROW as KIND's JSON: exactly its keys, in its order; a key left out is None (a list
    []), an epoch time RFC 3339.  A key KIND does not have is a bug here, not a user's
    problem: it raises; but a row READ from a record on disk (a snapshot's meta.json, maybe
    of an older nspawnctl) may hold keys no longer shown."""
    spec = schema(kind)
    unknown = set(row) - set(spec)
    if unknown and not read:
        raise KeyError(f"{kind} has no key {', '.join(sorted(unknown))}")
    return {key: _hold(want, row.get(key)) for key, want in spec.items()}


def views(kind: str, rows: list[dict], read: bool = False) -> list[dict]:
    return [view(kind, row, read) for row in rows]


def short_time(text: str | None) -> str | None:
    """A view's time in a table: 2026-12-06 12:00 (UTC)."""
    return None if text is None else f"{text[:10]} {text[11:16]}"


def _hold(spec, value):
    if isinstance(spec, Null):
        return None if value is None else _hold(spec.spec, value)
    if isinstance(spec, list):
        return [] if value is None else list(value)
    if isinstance(spec, dict):
        return {key: _hold(want, (value or {}).get(key)) for key, want in spec.items()}
    if spec == TIME and isinstance(value, (int, float)) and not isinstance(value, bool):
        return rfc3339(value)
    if spec == BYTES and isinstance(value, str) and value.endswith("%"):
        from ..settings.values import size_in_bytes
        return size_in_bytes(value)
    if spec == OBJECT:
        return dict(value or {})
    return value


def check(spec, value, where: str = "$") -> list[str]:
    """What in VALUE is not as SPEC says (for the tests): one line per problem."""
    if isinstance(spec, Null):
        return [] if value is None else check(spec.spec, value, where)
    if isinstance(spec, list):
        if not isinstance(value, list):
            return [f"{where}: {value!r} is not a list"]
        return [p for i, item in enumerate(value) for p in check(spec[0], item, f"{where}[{i}]")]
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            return [f"{where}: {value!r} is not an object"]
        problems = [f"{where}: key {k!r} missing" for k in spec if k not in value]
        problems += [f"{where}: key {k!r} is not one of its kind's" for k in value
                     if k not in spec]
        return problems + [p for k, want in spec.items() if k in value
                           for p in check(want, value[k], f"{where}.{k}")]
    if spec == TIME:
        from ..errors import Error
        from ..times import check_rfc3339
        try:
            check_rfc3339(value)
        except Error:
            return [f"{where}: {value!r} is not an RFC 3339 UTC time"]
        return []
    if spec == NUMBER:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) \
            and math.isfinite(value)
    elif spec == OBJECT:
        ok = isinstance(value, dict)
    elif spec is int or spec == BYTES:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, spec)
    return [] if ok else [f"{where}: {value!r} is not {getattr(spec, '__name__', spec)}"]


if __name__ == "__main__":
    print(reference(), end="")
