"""What commands print: tables and records (or JSON), progress lines, every text a container
or an image wrote escaped."""

from collections.abc import Iterator
from contextlib import contextmanager

import click

from ..text import shown  # (the CLI's modules take it from here too)


def progress(message: str):
    _bar.clear()
    click.echo(shown(message, keep=LINES), err=True)


class _Bar:
    """One line on a terminal that says how far a download is (bytes of total, rate),
    rewritten in place, and a line for each blob as it lands; progress lines clear it
    first."""

    def __init__(self):
        self.shown = False
        self.t0 = self.last = 0.0

    def __call__(self, done: int, total: int, landed: str | None = None):
        import time
        now = time.monotonic()
        if not self.t0:
            self.t0 = now
        if landed is not None:  # a line of its own per blob, the bar below it again
            self.clear()
            click.echo(f"  {shown(landed)}", err=True)
        elif now - self.last < 0.2 and done < total:
            return
        self.last = now
        rate = done / (now - self.t0) if now > self.t0 else 0
        click.echo(f"\r  {done / 1e6:.1f} of {total / 1e6:.1f} MB, {rate / 1e6:.1f} MB/s\x1b[K",
                   err=True, nl=False)
        self.shown = True

    def clear(self):
        if self.shown:
            click.echo("\r\x1b[K", err=True, nl=False)
            self.shown = False


_bar = _Bar()


def tty_progress():
    """A progress(done, total) for downloads when stderr is a terminal, else None (one line
    per image then, from the operation)."""
    import sys
    return _bar if sys.stderr.isatty() else None


def print_table(rows: list[dict], columns: list[str], as_json: bool):
    if as_json:
        import json
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    from tabulate import tabulate
    click.echo(tabulate([[_cell(r.get(c)) for c in columns] for r in rows],
                        headers=[c.upper() for c in columns], tablefmt="plain"))


def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ",".join(map(shown, value)) or "-"
    return shown(value) if isinstance(value, str) else value


LINES = "\n\t"  # what messages may hold: a hint's lines, a log's tabs


def megabytes(size: int | None) -> str:
    """A size in bytes as the tables show it."""
    return "-" if size is None else f"{size / 1e6:.1f} MB"


def print_json(value) -> None:
    import json
    click.echo(json.dumps(value, indent=2, default=str))


@contextmanager
def results(kind: str, as_json: bool) -> Iterator[list[dict]]:
    """What a command that acts on several names did, one entry of KIND per name appended as
    each is done; with --json the list is printed at the end, and also when one fails
    partway: it then holds those done before the failure, whose one line on stderr and exit
    code say what failed (so a script knows which were done).  A failure before any was
    done prints nothing, as any other failure."""
    from . import jsonview
    done: list[dict] = []
    try:
        yield done
    except BaseException:
        if as_json and done:
            print_json(jsonview.views(kind, done))
        raise
    if as_json:
        print_json(jsonview.views(kind, done))


def print_record(record: dict, as_json: bool):
    if as_json:
        import json
        click.echo(json.dumps(record, indent=2, default=str))
        return
    width = max(map(len, record)) + 1
    for key, value in record.items():
        click.echo(f"{key + ':':<{width}} {_cell(value)}")


cell = _cell  # one value as a table cell or a record line shows it (for the commands' own text)
