"""Atomic file output: every result is written to a temporary file in its destination folder and then
renamed over the destination (``os.replace``), so an interrupted run never leaves a half-written file
behind and earlier results stay intact. Parent folders are created as needed. A written file gets the mode that
the process's umask gives a new file (``0o666 & ~umask``, typically 0644), as a plain ``open`` would: the
temporary file's own mode (0600, private to its owner) is not kept."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = [
    "current_umask", "atomic_write", "write_bytes", "write_text", "write_json", "read_json", "write_csv",
    "save_npz", "save_figure", "read_errors",
]


def current_umask() -> int:
    """The process's umask (read from ``/proc/self/status`` where available, without changing it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, then restore it at once
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], *, suffix: str | None = None) -> Path:
    """Call ``write(tmp_path)`` on a temporary path beside ``path``, then rename it to ``path``.

    ``suffix`` is the temporary file's suffix (some writers choose the format from it); by default the
    destination's own suffixes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~current_umask())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return obj.as_posix()
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def write_csv(df, path: str | os.PathLike, **kwargs) -> Path:
    """Write a DataFrame as CSV (no index unless asked); NaN is written as the empty field."""
    kwargs.setdefault("index", False)
    return atomic_write(path, lambda p: df.to_csv(p, **kwargs))


def save_npz(path: str | os.PathLike, **arrays) -> Path:
    return atomic_write(path, lambda p: np.savez_compressed(p, **arrays), suffix=".npz")


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG (atomically), with fixed metadata so identical figures give identical files."""
    return atomic_write(
        path, lambda p: fig.savefig(p, dpi=dpi, bbox_inches="tight", metadata={"Software": None}), suffix=".png"
    )


@contextmanager
def read_errors(path: str | os.PathLike, what: str):
    """Turn any error of a file reader inside the block into one ``ValueError`` that names ``path``:
    ``"<path>: cannot read <what> (<error>)"``; a ``ValueError`` that already names the file passes unchanged.
    (Corrupt files raise many exception types across readers: nibabel, SimpleITK, imageio, tifffile.)"""
    try:
        yield
    except ValueError as err:
        if str(path) in str(err):
            raise
        raise ValueError(f"{path}: cannot read {what} ({err})") from None
    except Exception as err:
        raise ValueError(f"{path}: cannot read {what} ({type(err).__name__}: {err})") from None
