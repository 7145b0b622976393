"""Progress bars for long work, one policy for the whole package.

Functions take ``progress: bool = True``; the bar is shown on stderr unless ``progress`` is false or the
environment sets ``TQDM_DISABLE`` (the study runner sets it for executed notebooks, whose pages should not carry
progress output; the runner reports progress itself). Plain ``tqdm`` is used, never ``tqdm.auto``, so that no
widget warning lands in a notebook.
"""

from __future__ import annotations

import os

from tqdm import tqdm

__all__ = ["enabled", "progress_bar"]


def enabled(progress: bool = True) -> bool:
    """Whether a bar should be shown: ``progress`` and not disabled by ``$TQDM_DISABLE``."""
    flag = os.environ.get("TQDM_DISABLE", "").strip().lower()
    return bool(progress) and flag in ("", "0", "false", "no")


def progress_bar(iterable=None, *, progress: bool = True, **kwargs):
    """``tqdm(iterable, **kwargs)``, disabled when :func:`enabled` says so."""
    kwargs["disable"] = not enabled(progress)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
