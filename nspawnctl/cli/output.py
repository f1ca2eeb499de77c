"""What commands print: tables and records (or JSON), progress lines, every text a container
or an image wrote escaped."""

import click


def progress(message: str):
    click.echo(shown(message, keep=LINES), err=True)


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


def shown(value, keep: str = "") -> str:
    """Text as a terminal may show it: what a container or an image wrote (an OS name, a
    port, a path, a line of its log in a hint, apt's progress inside it) could hold escape
    sequences that rewrite the admin's screen, or a line break that forges a row, so every
    character that is not printable (but those in keep) shows escaped."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in keep
                   else c.encode("unicode_escape").decode("ascii") for c in text)


def print_record(record: dict, as_json: bool):
    if as_json:
        import json
        click.echo(json.dumps(record, indent=2, default=str))
        return
    width = max(map(len, record)) + 1
    for key, value in record.items():
        click.echo(f"{key + ':':<{width}} {_cell(value)}")
