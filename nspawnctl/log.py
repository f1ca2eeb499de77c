"""Log lines without loading `logging` at every start-up: importing it costs about 4 ms, a
twentieth of a whole `nspawnctl list`.

Debug lines are wanted only under --debug, which imports and configures logging (cli.py), so
debug() logs only when logging is already loaded.  Warnings are rare: they pay for the import
when they happen, and logging's last-resort handler prints them to stderr as before.
"""

import sys


def debug(name: str, message: str, *args) -> None:
    logging = sys.modules.get("logging")
    if logging is not None:
        logging.getLogger(name).debug(message, *args)


def warning(name: str, message: str, *args) -> None:
    import logging
    logging.getLogger(name).warning(message, *args)
