"""One rooted error hierarchy: each message is what the CLI prints, on one line."""


class StreamconvError(Exception):
    """Base of every error streamconv reports to a user; `exit_code` is the CLI's."""

    exit_code = 1


class UsageError(StreamconvError):
    """The request itself is wrong (bad flag, impossible budget, illegal combination): exit 2."""

    exit_code = 2


class DataError(StreamconvError):
    """The input cannot be converted (corrupt, unsupported type, wrong sizes): exit 1."""


class OutputError(StreamconvError):
    """The output cannot be written or already holds something we must not touch: exit 1."""
