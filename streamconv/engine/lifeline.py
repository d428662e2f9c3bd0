"""Processes of a run die with the process that started them, whatever kills it.

The OOM killer usually picks the main process alone. Without this its fork server would wait
for a parent that never comes back, and each worker would wait forever on a task queue whose
write end it holds itself. So the fork server (which preloads this module) and every worker
(`die_with_parent`, the pool's initializer) ask the kernel for SIGKILL when their parent
exits (`PR_SET_PDEATHSIG`): main dies, the fork server dies, the workers die; the resource
tracker then sees its pipe close and exits too, removing the run's semaphores.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

from ..starting import PARENT

_PR_SET_PDEATHSIG = 1


def die_with_parent(main_pid: int) -> None:
    """SIGKILL this process when its parent exits; exit now if `main_pid` is already gone (it
    may have died before the request took effect)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the fork server's own pipe check remains
        return
    try:
        os.kill(main_pid, 0)
    except ProcessLookupError:
        os._exit(1)
    except PermissionError:
        pass


def _worker_not_started(*_: object) -> None:
    """The fork server's children report a worker that failed to start through sys.excepthook.
    That happens when the run is already ending (Ctrl-C while the pool starts: the semaphores
    the new worker was to open are gone), where a traceback from the fork server would follow
    the run's last line; a worker missing while the run goes on ends it with its own message
    (a broken pool: `WorkerDied`)."""


_main = os.environ.pop(PARENT, None)  # set only for the fork server; its workers do not inherit it
if _main is not None:  # the fork server, at its start (`executor`)
    if os.getppid() != int(_main):  # adopted: the run ended (Ctrl-C) while this server started
        os._exit(1)
    die_with_parent(int(_main))
    sys.excepthook = _worker_not_started
