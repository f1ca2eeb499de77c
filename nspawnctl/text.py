"""Text from outside (what a container or an image wrote) as a terminal or a journal may
show it: the CLI's output (cli/output.py) and the health scheduler's journal lines."""


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
