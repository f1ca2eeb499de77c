"""The one error type users see.

Everything nspawnctl expects to go wrong (bad input, a missing tool, a D-Bus
failure) is raised as Error: the CLI prints its message and hint on one or two
lines and exits with its code.  Any other exception is a bug and shows a
traceback only with --debug.
"""


class Error(Exception):
    """A failure explained to the user: message, optional hint, exit code."""

    def __init__(self, message: str, hint: str | None = None, exit_code: int = 1):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message

