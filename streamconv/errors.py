"""One rooted error hierarchy: each message is what the CLI prints, on one line."""


class StreamconvError(Exception):
    """Base of every error streamconv reports to a user; `exit_code` is the CLI's.

    `resumable`: running the same command again (after the cause is gone) finishes the job.
    """

    exit_code = 1
    resumable = False


class UsageError(StreamconvError):
    """The request itself is wrong (bad flag, impossible budget, illegal combination): exit 2."""

    exit_code = 2


class DataError(StreamconvError):
    """The input cannot be converted (corrupt, unsupported type, wrong sizes): exit 1."""


class OutputError(StreamconvError):
    """The output cannot be written or already holds something we must not touch: exit 1."""


class NoSpaceError(OutputError):
    """The output device is full: free space and run again to resume."""

    resumable = True


class WorkerDied(StreamconvError):
    """A worker process was killed (out of memory, or by hand)."""

    resumable = True


class Interrupted(StreamconvError):
    """Stopped by Ctrl-C or SIGTERM; the output is resumable."""

    exit_code = 130
    resumable = True


class StoreUnavailable(OutputError):
    """A store kept failing (throttling, server errors, dropped connections) after every retry:
    run again to resume once it answers."""

    resumable = True


def one_line(exc: BaseException) -> str:
    """An exception's message on one line, for error messages."""
    return " ".join(str(exc).split()) or type(exc).__name__
