"""How a run stops: while a run lasts, SIGINT and SIGTERM set a flag instead of raising in the middle of the runner's
bookkeeping; the runner polls it while it waits for a child process, then stops that process and everything it
started and raises :class:`Interrupted` naming what was stopped."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading

import psutil

from helpers.runner.errors import Interrupted

__all__ = ["stop_requested", "wait", "signals"]


class _StopSignals:
    """While active, SIGINT and SIGTERM set a flag instead of raising in the middle of the runner's bookkeeping;
    the runner polls :attr:`received` while it waits for a notebook process and stops that process itself."""

    def __init__(self):
        self.received: str | None = None
        self._saved: dict = {}

    def _handler(self, signum, frame):

        self.received = signal.Signals(signum).name

    def __enter__(self):

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):

        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        return False


_SIGNALS: _StopSignals | None = None  # the active handler of the run in progress (None: default handlers)


def stop_requested() -> str | None:
    """The name of the signal that asked the run in progress to stop (``SIGINT``, ``SIGTERM``), else None."""
    return _SIGNALS.received if _SIGNALS is not None else None


def _terminate(proc) -> None:
    """Stop a notebook process and everything it started (its kernel runs in a session of its own, so a signal to
    the process group would miss it): SIGTERM to all, SIGKILL to whatever is left after 5 s."""

    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:  # it has ended on its own meanwhile
        family = []
    for member in family:
        try:
            member.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(family, timeout=5)
    for member in alive:
        try:
            member.kill()
        except psutil.NoSuchProcess:
            pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait(proc, what: str) -> int:
    """Wait for a child process, stopping it promptly when the user interrupts the run."""

    while True:
        try:
            return proc.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            signal_name = stop_requested()
            if signal_name:
                _terminate(proc)
                raise Interrupted(f"interrupted ({signal_name}) during {what}") from None


@contextlib.contextmanager
def signals():
    """Install the runner's SIGINT/SIGTERM handling for a block (nested blocks share the outer one)."""
    global _SIGNALS
    if _SIGNALS is not None:
        yield _SIGNALS
        return
    with _StopSignals() as handler:
        _SIGNALS = handler
        try:
            yield handler
        finally:
            _SIGNALS = None
