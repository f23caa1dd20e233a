"""Errors that reach the user as one line and an exit code, never a traceback."""


class VidsieveError(Exception):
    """Base class; ``exit_code`` is what the CLI returns."""

    exit_code = 1


class InputError(VidsieveError):
    """The input is missing, unreadable, not a video or corrupt."""

    exit_code = 2


class OutputError(VidsieveError):
    """The output cannot be written."""

    exit_code = 3


class FormatError(InputError):
    """A .vsv container is not valid."""


class ModelError(VidsieveError):
    """A model or its weights cannot be loaded."""

    exit_code = 4


class UsageError(VidsieveError):
    """Options that do not go together."""

    exit_code = 2
