"""What --json prints, defined once per thing: a container (list, status, create), an image,
a network, a snapshot, and each command's result.

A script reads one type per key wherever the key appears: every entry has every key of its
kind (None only where a value can be absent by nature: an OS name a tree does not say, a
limit not set), a list is a list even when empty ([], never null), times are RFC 3339 UTC
text (times.py), sizes are bytes (integers), limits are values (bytes, CPUs), not text.
view() holds what an operation returns to its kind's keys; tests/unit/test_jsonview.py runs
every command's JSON through check(), so a key of another type, or one left out, fails there
before it reaches a script.  A setting's key is its public name (settings/model.py).
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
            "enabled": bool, "limits": _limits(), "pending": OBJECT}


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

_SNAPSHOT = {"name": str, "tag": str, "method": str, "size": int, "created": TIME,
             "running": Null(bool), "frozen_seconds": Null(NUMBER),
             "stopped_seconds": Null(NUMBER), "lower": Null(str)}

_CREATED = {"name": str, "source": str, "method": str, "image": Null(str),
            "cached": Null(bool), "boot": Null(bool), "why": Null(str), "command": TEXT,
            "added": TEXT, "address": TEXT, "created": TIME, "seconds": NUMBER,
            "state": Null(str)}  # create --start, run: the state it was started to

_PULLED = {"name": str, "digest": str, "platform": str, "index": Null(str), "key": str,
           "cached": bool, "fetched_blobs": int, "blobs": int, "fetched_bytes": int,
           "seconds": NUMBER, "unpacked": bool}

_UPGRADED = {"name": str, "state": str, "snapshot": Null(str), "snapshot_method": Null(str)}

_ROLLED_BACK = {"name": str, "tag": str, "method": str, "restarted": bool,
                "state": Null(str), "settings_changed": bool}

_EXPORTED = {"name": str, "file": str, "format": str, "compression": Null(str),
             "frozen": bool, "seconds": NUMBER, "entries": int, "bytes": int, "size": int,
             "mode": str, "skipped": TEXT, "layer": Null(str), "layer_size": Null(int),
             "config": Null(str), "manifest": Null(str)}


_APPLIED = {"stack": str, "dry_run": bool, "changed": bool,
            "steps": [{"action": str, "kind": str, "name": str, "why": Null(str)}],
            "left": TEXT, "warnings": TEXT, "seconds": NUMBER}


def schema(kind: str) -> dict[str, Any]:
    """The keys of KIND and the type of each."""
    made = {"container": _container, "status": _status, "inspect": _inspect}
    if kind in made:
        return made[kind]()
    return {"image": _IMAGE, "network": _NETWORK, "snapshot": _SNAPSHOT,
            "created": _CREATED, "pulled": _PULLED, "upgraded": _UPGRADED,
            "rolled_back": _ROLLED_BACK, "exported": _EXPORTED,
            "applied": _APPLIED}[kind]


KINDS = ("container", "status", "inspect", "image", "network", "snapshot", "created",
         "pulled", "upgraded", "rolled_back", "exported", "applied")

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
