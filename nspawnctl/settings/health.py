"""The values of a container's health check (--health-cmd, --health-interval, ...), as users
type them and as an OCI image's Healthcheck gives them.

They are records of nspawnctl's (comment lines of the .nspawn file, like the stack a container
belongs to): systemd never reads them; nspawnctl's health units do (runtime/health.py).  Each
is checked here against the strictest of its readers: the record line (no line breaks), the
timer drop-in the interval lands in (whole positive seconds) and the check's own run.
"""

import math
from collections.abc import Mapping
from typing import Any

from ..errors import InvalidInput, Usage
from .keys import quote_word
from .values import check_text, parse_span

# podman's defaults (HealthCheck* in podman-run(1)), but a start period of 0s as docker's.
DEFAULT_INTERVAL = 30
DEFAULT_TIMEOUT = 5
DEFAULT_RETRIES = 3
DEFAULT_START_PERIOD = 0
ON_UNHEALTHY = ("none", "restart", "stop", "kill")
# A check is a short command, not a script: the bound keeps one record line readable and an
# image's config from filling the settings file.
MAX_COMMAND = 4096       # bytes of all its words together
MAX_WORDS = 256
MAX_RETRIES = 1000
# A day: a longer interval, timeout or start period is a typo, not a slow service.
MAX_SPAN = 86400
# podman's CMD-SHELL: the text run by the container's /bin/sh.
SHELL = ("/bin/sh", "-c")


def check_command(words: tuple[str, ...], what: str = "health command") -> tuple[str, ...]:
    """A check's argv: a program then its arguments, each a line's text, bounded."""
    if not words or not words[0].strip():
        raise Usage(f"invalid {what}: it is empty", hint="give a command, or 'none' for no check")
    if len(words) > MAX_WORDS or sum(len(w.encode(errors="surrogatepass")) + 1
                                     for w in words) > MAX_COMMAND:
        raise Usage(f"invalid {what}: longer than {MAX_COMMAND} bytes or {MAX_WORDS} words")
    for word in words:
        check_text(word, what)
    return tuple(words)


def check_setting(words: tuple[str, ...]) -> None:
    """The setting's check: () is no health check."""
    if words:
        check_command(tuple(words))


def parse_command(text: str) -> tuple[str, ...]:
    """--health-cmd 'CMD': run by the container's /bin/sh, as podman's CMD-SHELL; 'none'
    removes the check (podman's spelling)."""
    if text.strip() == "none":
        return ()
    if not text.strip():
        raise Usage("invalid health command '': it is empty",
                    hint="give a command, or 'none' for no check")
    return check_command((*SHELL, text))


def show_command(words: tuple[str, ...]) -> str:
    """The check as --health-cmd takes it when it is a shell line; else its words."""
    if len(words) == 3 and tuple(words[:2]) == SHELL:
        return words[2]
    return " ".join(quote_word(w) for w in words)


def _span(text: str, what: str, zero: bool = False) -> int:
    value = text.strip(" \t")
    if value == "infinity":
        raise Usage(f"invalid {what} {text!r}: expected a number of seconds, e.g. 30s")
    seconds = parse_span(text)  # systemd's spelling; 0 comes back as infinity
    if seconds == math.inf:
        if zero:
            return 0
        raise Usage(f"invalid {what} {text!r}: expected a positive number of seconds, e.g. 30s")
    if seconds > MAX_SPAN:
        raise Usage(f"invalid {what} {text!r}: more than a day")
    return int(seconds)


def parse_interval(text: str) -> int:
    return _span(text, "health interval")


def parse_timeout(text: str) -> int:
    return _span(text, "health timeout")


def parse_start_period(text: str) -> int:
    return _span(text, "health start period", zero=True)


def parse_retries(text: str) -> int:
    value = text.strip()
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value[:6]) <= MAX_RETRIES:
        raise Usage(f"invalid health retries {text!r}: expected a number from 1 to "
                    f"{MAX_RETRIES}")
    return int(value)


def check_seconds(what: str, zero: bool = False):
    """The check of a span once parsed (a value from a file, a stack, an image)."""
    def check(value: Any) -> None:
        if (not isinstance(value, int) or isinstance(value, bool)
                or not (0 if zero else 1) <= value <= MAX_SPAN):
            raise Usage(f"invalid {what} {value!r}: expected whole seconds up to a day")
    return check


def check_retries(value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_RETRIES:
        raise Usage(f"invalid health retries {value!r}: expected 1 to {MAX_RETRIES}")


def check_on_unhealthy(value: str) -> str:
    if value not in ON_UNHEALTHY:
        raise Usage(f"invalid --on-unhealthy {value!r}: expected {', '.join(ON_UNHEALTHY)}")
    return value


# ---------------------------------------------------------------- an image's Healthcheck

_NS_PER_SEC = 1_000_000_000


def image_healthcheck(value: Any) -> dict[str, Any]:
    """An OCI/Docker image config's Healthcheck, read as podman reads it, as settings (by
    field name): Test ["CMD", argv...] runs argv, ["CMD-SHELL", line] runs line with
    /bin/sh, ["NONE"] (or no Test) is no check; Interval, Timeout and StartPeriod are
    nanoseconds (0: the default), Retries a count (0: the default).  The image is hostile:
    a wrong type, a value out of range or a command no record can hold is refused whole."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInput("image config Healthcheck is not an object")
    test = value.get("Test") or []
    if not isinstance(test, list) or not all(isinstance(w, str) for w in test):
        raise InvalidInput("image config Healthcheck Test is not a list of strings")
    if not test or test[0] == "NONE":
        return {}
    kind, words = test[0], tuple(test[1:])
    try:
        if kind == "CMD":
            command = check_command(words, "image health command")
        elif kind == "CMD-SHELL" and len(words) == 1:
            command = check_command((*SHELL, words[0]), "image health command")
        else:
            raise InvalidInput(f"image config Healthcheck Test starts with {kind[:20]!r}: "
                               "expected CMD, CMD-SHELL (one line) or NONE")
    except Usage as e:
        raise InvalidInput(e.message) from None
    out: dict[str, Any] = {"health_cmd": command}
    for key, name, least in (("Interval", "health_interval", 1), ("Timeout", "health_timeout", 1),
                             ("StartPeriod", "health_start_period", 0)):
        ns = value.get(key, 0)
        if not isinstance(ns, int) or isinstance(ns, bool) or ns < 0 \
                or ns > MAX_SPAN * _NS_PER_SEC:
            raise InvalidInput(f"image config Healthcheck {key} is not nanoseconds up to a day")
        if ns:
            out[name] = max(least, math.ceil(ns / _NS_PER_SEC))
    retries = value.get("Retries", 0)
    if not isinstance(retries, int) or isinstance(retries, bool) \
            or not 0 <= retries <= MAX_RETRIES:
        raise InvalidInput(f"image config Healthcheck Retries is not a count up to "
                           f"{MAX_RETRIES}")
    if retries:
        out["health_retries"] = retries
    return out
