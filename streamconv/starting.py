"""What the command line does before it imports anything heavy (numpy, nibabel, typer and the
engine take about half a second). The package runs this first thing when it is imported to run
as a command (the `streamconv` script, or `python -m streamconv`). (Importing this module imports
nothing else of the package.)

Ctrl-C: Python's default would print a traceback. `cli.main` restores it once the command line
is loaded, and turns Ctrl-C into one line from there.

The fork server: a command that will run tasks on worker processes starts it now, so that its
own start (an interpreter, numpy and the task code: 0.3 s) runs on the other core while this
process imports the command line and plans the run, instead of after (engine/executor.py).

What no code of ours can cover is the interpreter's own start, before the package is imported:
about 0.05-0.2 s here (`site` and the `.pth` files of the environment; `python -X importtime`).
"""

from __future__ import annotations

import os
import signal
import sys


def _interrupted(*_: object) -> None:
    sys.stderr.write("streamconv: interrupted\n")
    os._exit(130)  # nothing is written yet; the workers die with us (engine/lifeline.py)


def running_as_command() -> bool:
    """Whether this interpreter was started to run the command line: the console script
    (its path is `argv[0]`), or `python -m streamconv` (while the package is imported for it,
    `argv[0]` is `-m`; the interpreter's own arguments say which module)."""
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0 == "-m":
        args = sys.orig_argv
        for arg, after in zip(args, [*args[1:], ""]):
            if arg.startswith("-m"):  # `-m streamconv` or `-mstreamconv`
                return (arg[2:] or after) == "streamconv"
        return False
    return os.path.basename(argv0) == "streamconv"


def catch_ctrl_c() -> None:
    signal.signal(signal.SIGINT, _interrupted)


PARENT = "STREAMCONV_PARENT"  # the pid of the run's main process, for the fork server (engine/lifeline.py)
FORK_SERVER_PRELOAD = ["streamconv.engine.lifeline", "streamconv.engine.worklog", "streamconv.engine.tasks"]
# the commands that run tasks on worker processes: those with a --workers option but scale-stats,
# which only reports what a number of workers would need (tests/test_startup.py checks)
POOL_COMMANDS = frozenset({"convert", "convert-chunks", "volume-to-precomputed", "slices-to-precomputed",
                           "compute-scales", "volume-to-precomputed-pyramid", "generate-meshes",
                           "add-segment-names", "annotations"})


def start_fork_server() -> None:
    """Start the fork server now (once per process; later calls return at once), telling it
    who its parent is for `lifeline`; the variable is not left for other children of this
    process to inherit. It does not wait for the server's imports."""
    import multiprocessing
    import multiprocessing.forkserver as forkserver

    multiprocessing.get_context("forkserver").set_forkserver_preload(FORK_SERVER_PRELOAD)
    os.environ[PARENT] = str(os.getpid())
    try:
        forkserver.ensure_running()
    finally:
        del os.environ[PARENT]


def will_use_workers(args: list[str]) -> bool:
    """Whether these command-line arguments run tasks on local worker processes: a command
    that takes --workers, without --workers 0, --scheduler (Dask's workers), --dry-run or
    --help. A wrong guess costs only time: the server is started anyway when needed, or was
    started for nothing and ends with this process."""
    command = next((a for a in args if not a.startswith("-")), None)
    if command not in POOL_COMMANDS:
        return False
    for arg, after in zip(args, [*args[1:], ""]):
        if arg in ("--dry-run", "--help", "-h", "--workers=0") or arg.startswith("--scheduler"):
            return False
        if arg == "--workers" and after == "0":
            return False
    return True
