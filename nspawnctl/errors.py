"""The one error type users see.

Everything nspawnctl expects to go wrong (bad input, a missing tool, a D-Bus
failure) is raised as Error: the CLI prints its message and hint on one or two
lines and exits with its code.  Any other exception is a bug and shows a
traceback only with --debug.

Exit codes say what kind of thing went wrong, so a script can tell them apart
(docs/scripting.md lists them; exec and shell keep their own, podman's, apart from the
command's status: see EXEC_*).
"""

FAILURE = 1        # the operation was tried and failed (systemd, I/O, disk, network)
USAGE = 2          # the command line is wrong: click's parse errors and any bad option value
NOT_FOUND = 3      # no such container, network, image, snapshot or registry credentials
CONFLICT = 4       # already exists, in use, busy or locked, or in the wrong state for it
INVALID_INPUT = 5  # an input's content is refused: an image, archive, file or registry answer
CHANGES = 6        # apply --dry-run: the host does not match the file (0: it does)
EXEC_FAILED = 125      # exec/shell: nspawnctl itself failed (no such container, not running)
EXEC_CANNOT_RUN = 126  # exec/shell: the command was found but cannot be run
EXEC_NOT_FOUND = 127   # exec/shell: the command was not found in the container


class Error(Exception):
    """A failure explained to the user: message, optional hint, exit code (its class's unless
    given: the subclasses below say what kind of failure it is, so a raise site names the
    kind, never a number)."""

    code = FAILURE

    def __init__(self, message: str, hint: str | None = None, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = type(self).code if exit_code is None else exit_code

    def __str__(self) -> str:
        return self.message


class Usage(Error):
    """A value on the command line is wrong (as click's own parse errors)."""
    code = USAGE


class NotFound(Error):
    """What the command names does not exist: a container, network, image, snapshot, file."""
    code = NOT_FOUND


class Conflict(Error):
    """It exists already, is in use, busy or locked, or is in the wrong state for this."""
    code = CONFLICT


class InvalidInput(Error):
    """An input's content is refused: an image, archive, file or a registry's answer."""
    code = INVALID_INPUT


def refused_content(exc: Error) -> Error:
    """EXC raised for text read from a file or an image rather than typed: the checks of
    values (settings/values.py) are shared and say Usage, but a bad value in a settings file
    or an image's config is refused content."""
    return InvalidInput(exc.message, exc.hint) if isinstance(exc, Usage) else exc
