"""One exception hierarchy. Every message says what is wrong and what to do next.

The CLI catches `OrdermonError` only, prints its message (no traceback) and exits with its
`exit_code`: 1 for an operational failure, 2 for a usage or configuration error.
"""


class OrdermonError(Exception):
    """Base of every expected failure; the CLI turns it into one line and an exit code."""

    exit_code = 1


class ConfigError(OrdermonError):
    """The configuration file or an option is wrong; the message names the key. One error may
    carry several ``problems`` (one line each, every one naming its key) and a count of
    ``more`` not kept, so that one run reports all of a file's errors."""

    exit_code = 2

    def __init__(self, message: str, problems: tuple[str, ...] = (), more: int = 0) -> None:
        super().__init__(message)
        self.problems = problems or (message,)
        self.more = more


class UsageError(OrdermonError):
    """A command-line argument is wrong."""

    exit_code = 2


class DatabaseError(OrdermonError):
    """The database is unreachable, lacks privileges or is missing ordermon's schema."""


class MigrationError(DatabaseError):
    """`ordermon migrate` could not finish; the message says who must do what."""


class OrderError(OrdermonError):
    """The order asked for does not exist or cannot be checked now."""


class ReplyError(OrdermonError):
    """A provider's reply could not be understood; always becomes an `error` outcome."""
