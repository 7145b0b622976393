"""The per-case evaluation cache: the rows of one case and one model, kept under the workspace and found again by a
key of everything that determines them, so that adding a model to a finished report evaluates only that model's
cases and an interrupted evaluation resumes where it stopped.

Key
---
``blake2b`` (16 bytes) of: the reference as read (shape, spacing, target and ignore masks: the content of the
reference file and of the label choice that turned it into a target), the prediction file's content, the evaluation
parameters (dataset, model, tolerances, matching threshold, connectivity, penalty) and the engine's version
(:func:`engine_version`: a digest of the source of :mod:`helpers.metrics` and of the evaluation modules, so that a
metric fix reaches cached results). A changed input gives a new key; entries of old keys are left in place.

Layout: ``<workspace>/cache/evaluation/<dataset>/<model>/<case_id>.<key>.pkl`` (a pickle of the case's rows and its
lesion rows, written atomically).
"""

from __future__ import annotations

import functools
import hashlib
import json
import pickle
from pathlib import Path

import numpy as np

from helpers.base.io import atomic_write

__all__ = ["CACHE_FOLDER", "engine_version", "file_digest", "reference_digest", "case_key", "CaseCache"]

#: Folder of the cache below the workspace root.
CACHE_FOLDER = Path("cache") / "evaluation"
_CHUNK = 1 << 22


@functools.lru_cache(maxsize=1)
def engine_version() -> str:
    """Digest of the evaluation engine's source: every module of :mod:`helpers.metrics` and of
    :mod:`helpers.evaluation` (``tables``, ``cache``)."""
    package = Path(__file__).resolve().parents[1]
    files = sorted((package / "metrics").rglob("*.py")) + [package / "evaluation" / "tables.py", Path(__file__)]
    digest = hashlib.blake2b(digest_size=16)
    for path in files:
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def file_digest(path) -> str:
    """Digest of a file's content (links followed)."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def reference_digest(case) -> str:
    """Digest of a case's reference as read: shape, spacing, target and ignore masks (bit-packed)."""
    digest = hashlib.blake2b(digest_size=16)
    mask = np.asarray(case.mask, dtype=bool)
    digest.update(repr((tuple(mask.shape), tuple(float(s) for s in (case.spacing or ())))).encode())
    digest.update(np.packbits(mask).tobytes())
    ignore = getattr(case, "ignore", None)
    digest.update(b"ignore" if ignore is not None else b"none")
    if ignore is not None:
        digest.update(np.packbits(np.asarray(ignore, dtype=bool)).tobytes())
    return digest.hexdigest()


def case_key(reference: str, prediction: str, params: dict) -> str:
    """The cache key of one case and one model (see the module docstring)."""
    text = json.dumps({"reference": reference, "prediction": prediction, "params": params,
                       "engine": engine_version()}, sort_keys=True, default=repr)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class CaseCache:
    """The cache of one dataset under a workspace root (``root/cache/evaluation/<dataset>``)."""

    def __init__(self, root, dataset: str):
        self.folder = Path(root) / CACHE_FOLDER / dataset

    def path(self, model: str, case_id: str, key: str) -> Path:
        return self.folder / model / f"{case_id}.{key}.pkl"

    def get(self, model: str, case_id: str, key: str):
        """The cached ``(rows, lesion_rows)`` of the key, or None."""
        path = self.path(model, case_id, key)
        if not path.is_file():
            return None
        try:
            with open(path, "rb") as handle:
                return pickle.load(handle)
        except (OSError, pickle.UnpicklingError, EOFError):
            return None  # a damaged entry is evaluated again

    def put(self, model: str, case_id: str, key: str, value) -> Path:
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        return atomic_write(self.path(model, case_id, key), lambda p: p.write_bytes(data), suffix=".pkl")
