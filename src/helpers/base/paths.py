"""Where things live: the project root and the folders of a workspace.

Every run of the study writes below one *workspace* folder: ``.`` (the project root) for the main job,
``build/nbval`` for the committed notebooks' defaults, ``build/<name>`` in tests. Relative paths are always
resolved against the project root, never against the current directory, so that a notebook executed by
papermill (cwd = project root) and the same notebook executed by nbval (cwd = ``notebooks/``) read and write
the same files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["project_root", "resolve", "relative", "Workspace"]

_MARKERS = ("_config.yml", "profiles")


def project_root() -> Path:
    """The project root: ``$HONEST_PROJECT_ROOT`` if set, else the nearest folder above the current
    directory holding ``_config.yml`` and ``profiles/``, else the folder above ``src/`` of this package."""
    env = os.environ.get("HONEST_PROJECT_ROOT")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if all((folder / marker).exists() for marker in _MARKERS):
            return folder
    return Path(__file__).resolve().parents[3]


def resolve(path: str | os.PathLike) -> Path:
    """An absolute path: ``path`` itself when absolute, else ``project_root() / path``."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else project_root() / p


def relative(path: str | os.PathLike) -> str:
    """``path`` relative to the project root when it lies below it (for display and for files that are
    committed or shown in the book), else the absolute path."""
    p = Path(path).resolve()
    try:
        return p.relative_to(project_root()).as_posix() or "."
    except ValueError:
        return str(p)


@dataclass(frozen=True)
class Workspace:
    """The folders of one run. ``root`` is absolute."""

    root: Path

    @classmethod
    def at(cls, path: "str | os.PathLike | Workspace") -> "Workspace":
        """The workspace at ``path`` (relative paths resolve against the project root); a ``Workspace`` is
        returned as it is, so every entry point can say ``Workspace.at(ws)`` whatever it was given."""
        if isinstance(path, Workspace):
            return path
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"workspace must be a path or a Workspace, got {type(path).__name__}: {path!r}")
        return cls(resolve(path).resolve())

    def data(self, dataset: str) -> Path:
        return self.root / "data" / dataset

    def prepared(self, dataset: str) -> Path:
        return self.root / "prepared" / dataset

    def results(self, dataset: str | None = None) -> Path:
        return self.root / "results" if dataset is None else self.root / "results" / dataset

    def figures(self, dataset: str | None = None) -> Path:
        return self.root / "figures" if dataset is None else self.root / "figures" / dataset

    def models(self, dataset: str, model: str | None = None) -> Path:
        base = self.root / "models" / dataset
        return base if model is None else base / model

    def predictions(self, dataset: str, model: str | None = None) -> Path:
        base = self.root / "predictions" / dataset
        return base if model is None else base / model

    def executed(self, dataset: str) -> Path:
        return self.root / "book" / "executed" / dataset
