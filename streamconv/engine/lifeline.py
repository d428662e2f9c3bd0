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

PARENT = "STREAMCONV_PARENT"  # the pid of the run's main process, for the fork server
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


if os.environ.get(PARENT) == str(os.getppid()):  # the fork server, at its start (`executor`)
    die_with_parent(os.getppid())
