"""Child processes that die with the process that started them.

:func:`spawn` is :class:`subprocess.Popen` plus, on Linux, a parent-death signal:
the child receives ``SIGKILL`` as soon as this process dies, even by ``kill -9``,
so a fake worker or an ``sglang-router`` is never left listening. The graceful
teardown (``stop()``, context managers) is unchanged; this is the safety net.

How: the command is started through a tiny Python wrapper that calls
``prctl(PR_SET_PDEATHSIG, SIGKILL)``, checks that its parent is still alive and
then ``exec``\\ s the real command (the setting survives ``exec``, and the pid
stays the same). No ``preexec_fn``: nothing but ``exec`` runs between ``fork``
and the wrapper.

Linux ties the signal to the *thread* that forked the child, not to the process:
a child forked from a short-lived thread (anyio's worker threads exit when idle)
would be killed when that thread ends. So children are forked from the main
thread, or else from one daemon thread kept for the life of the process.
"""

from __future__ import annotations

import concurrent.futures
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import Any

__all__ = ["die_with_parent", "parent_death_signal_supported", "spawn"]

# PR_SET_PDEATHSIG from <linux/prctl.h>
_PR_SET_PDEATHSIG = 1

# argv: [python, -I, -S, -c, _WRAPPER, <parent pid>, cmd...]
_WRAPPER = (
    "import ctypes, os, signal, sys\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "if libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) != 0:\n"  # 1 = PR_SET_PDEATHSIG
    "    sys.exit('prctl(PR_SET_PDEATHSIG) failed: ' + os.strerror(ctypes.get_errno()))\n"
    "if os.getppid() != int(sys.argv[1]):\n"  # the parent died before prctl
    "    os._exit(1)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def parent_death_signal_supported() -> bool:
    """True where :func:`spawn` gives children a parent-death signal (Linux)."""
    return sys.platform.startswith("linux")


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel ``SIGKILL`` this process when its parent dies (Linux only).

    For a child started by other means (``multiprocessing``), called first thing
    in the child; exits at once if ``parent_pid`` is already gone. The signal
    follows the parent *thread* that started this process.
    """
    if not parent_death_signal_supported():
        return
    import ctypes
    import signal

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:
        os._exit(1)


def _wrap(cmd: Sequence[str]) -> list[str]:
    if not parent_death_signal_supported():
        return list(cmd)
    return [sys.executable, "-I", "-S", "-c", _WRAPPER, str(os.getpid()), *cmd]


class _Spawner:
    """One long-lived daemon thread that forks children for other threads."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.requests: queue.SimpleQueue[
            tuple[list[str], dict[str, Any], concurrent.futures.Future[subprocess.Popen[bytes]]]
        ] = queue.SimpleQueue()
        threading.Thread(target=self._run, name="rlinf-http-spawner", daemon=True).start()

    def _run(self) -> None:
        while True:
            cmd, kwargs, future = self.requests.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(subprocess.Popen(cmd, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)

    def spawn(self, cmd: list[str], kwargs: dict[str, Any]) -> subprocess.Popen[bytes]:
        future: concurrent.futures.Future[subprocess.Popen[bytes]] = concurrent.futures.Future()
        self.requests.put((cmd, kwargs, future))
        return future.result()


_spawner: _Spawner | None = None
_spawner_lock = threading.Lock()


def _get_spawner() -> _Spawner:
    global _spawner
    with _spawner_lock:
        if _spawner is None or _spawner.pid != os.getpid():  # none yet, or we were forked
            _spawner = _Spawner()
        return _spawner


def spawn(cmd: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(cmd, **kwargs)`` whose child dies when this process dies.

    ``kwargs`` are Popen's (bytes mode); ``preexec_fn`` is not accepted.
    """
    if "preexec_fn" in kwargs:
        raise TypeError("spawn() does not take preexec_fn")
    argv = _wrap(cmd)
    if not parent_death_signal_supported() or threading.current_thread() is threading.main_thread():
        return subprocess.Popen(argv, **kwargs)
    return _get_spawner().spawn(argv, kwargs)
