"""Provenance of a result: profile, data source, seeds, package versions and git commit, shown as a banner on
every page of the book and stored beside results."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from functools import lru_cache

from helpers.base.paths import project_root

__all__ = ["PACKAGES", "package_versions", "git_commit"]

PACKAGES = ("numpy", "scipy", "scikit-image", "pandas", "torch", "monai", "papermill", "jupyter-book")


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    """Installed versions of the packages the results depend on ("not installed" where absent)."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The short commit of the project checkout, with ``+dirty`` when the work tree has changes to tracked
    files; ``unknown`` outside a git checkout."""
    root = project_root()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=10", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")
