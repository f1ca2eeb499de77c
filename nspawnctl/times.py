"""Times as users and scripts see them: RFC 3339 in UTC to the second
(2026-12-06T12:00:00Z), in every table, status line and JSON key, never float epochs."""

import datetime
import re

from .errors import InvalidInput

_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def rfc3339(epoch: float | int | None) -> str | None:
    """A time.time() value as RFC 3339 UTC text; None (unknown) stays None."""
    if epoch is None:
        return None
    when = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def now() -> str:
    import time
    return rfc3339(time.time()) or ""


def check_rfc3339(text: str, what: str = "time") -> str:
    """TEXT if it is a time as rfc3339() writes it (a record a root could edit by hand)."""
    if not (isinstance(text, str) and _RFC3339.fullmatch(text)):
        raise InvalidInput(f"invalid {what} {str(text)[:40]!r}: expected e.g. 2026-12-06T12:00:00Z")
    try:
        datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        raise InvalidInput(f"invalid {what} {text!r}: no such date or time") from None
    return text
