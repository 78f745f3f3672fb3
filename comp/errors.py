"""User-facing errors. Each message names the file, column or value at fault and says what to do.

Library code raises these; only ``comp.cli`` turns them into a message on stderr and an exit code.
"""


class CompError(Exception):
    """A mistake the user can fix: bad input, missing files, a wrong setting."""

    exit_code = 1


class DataError(CompError):
    """A competition CSV is missing, unreadable or inconsistent with comp.yaml."""


class ConfigError(CompError):
    """comp.yaml or a model config is invalid."""


class KaggleError(CompError):
    """The Kaggle API refused or failed a request. ``transient``: a 5xx, a 429 or a network failure,
    worth retrying after a pause."""

    def __init__(self, message: str = "", transient: bool = False):
        super().__init__(message)
        self.transient = transient


class RunError(CompError):
    """A run is missing, incomplete or inconsistent with another run."""


class StorageError(CompError):
    """A file could not be written: the disk is full, or a folder is read-only."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none): a library's
    multi-line error, cut down to the one line comp prints."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
