"""The workspace lock: one run at a time per workspace, an exclusive ``flock`` on ``<ws>/.study.lock`` whose content
names its holder to a second run; the lock of a killed run is stale by construction and the next run takes it
over."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from helpers.base.paths import Workspace, relative
from helpers.runner.errors import StudyError

__all__ = ["LOCK_FILE", "lock_path", "workspace_lock"]


LOCK_FILE = ".study.lock"


def lock_path(ws: Workspace) -> Path:
    return ws.root / LOCK_FILE


@contextlib.contextmanager
def workspace_lock(ws: Workspace, command: str, *, out=sys.stdout):
    """Hold the workspace's lock for the duration of a run: an exclusive ``flock`` on ``<ws>/.study.lock``, whose
    content (pid, host, start time, command) names the holder to a second run, which stops at once.

    The operating system releases a ``flock`` when its process dies, so the lock of a killed run is stale by
    construction: the next run takes it over (and says so)."""

    path = lock_path(ws)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(fd)
            raise StudyError(
                f"workspace {relative(ws.root)} is in use by another run: {holder}. Wait for it to finish, stop it "
                f"(Ctrl-C in its terminal), or choose another --workspace"
            ) from None
        previous = _lock_holder(fd, default="")
        if previous:
            print(f"study: taking over the stale lock of a run that stopped without releasing it ({previous})",
                  file=out, flush=True)
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": command}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)  # an empty lock file: released cleanly
    finally:
        os.close(fd)


def _lock_holder(fd: int, *, default: str = "a run whose details are unknown") -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "null")
    except (OSError, ValueError):
        return default
    if not isinstance(info, dict):
        return default
    return (f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}: "
            f"{info.get('command')}")
