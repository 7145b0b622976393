"""Fixtures shared by several test modules: each is built once per test session, here and nowhere else.

- ``small_cases``: the small-data study's synthetic vessel images (6 images of 48 px, seed 0).
- ``small_cv``: a cross-validation of those images (LOOCV and 3-fold, SegFormer trained for one epoch at width 4,
  MedSAM without a checkpoint, so its rows are "not run"); the trained LOOCV models are kept. Training it is the
  slowest fixture of the unit tests, so it is trained once for every module that reads it.
- ``macro_scores``: builds a small-data scores table from ``{(protocol, model): [per-image macro Dice]}``.
"""

from __future__ import annotations

import os

import pandas as pd
import pytest

from helpers.data.splits import cv_splits
from helpers.studies.small_data import cv as small_cv_module
from helpers.studies.small_data import data as small_data

# the SAM-family classes of transformers must never reach for the network in tests
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def small_cases(tmp_path_factory):
    root = tmp_path_factory.mktemp("vessels")
    small_data.write_small_data(root, seed=0, n_images=6, size=48)
    return small_data.load_small_data(root)


@pytest.fixture(scope="session")
def small_cv(small_cases):
    ids = [c.case_id for c in small_cases]
    splits = cv_splits(ids, protocols=["loocv", "3fold"], seeds=[0])
    keep = [(s["protocol"], s["seed"], s["fold"], "segformer") for s in splits if s["protocol"] == "loocv"]
    return small_cv_module.cross_validate(small_cases, models=["segformer", "sam"], splits=splits, cnn_size=32,
                                          epochs=1, width=4, mc_passes=2, keep_models=keep, progress=False)


def _macro_scores(values: dict) -> pd.DataFrame:
    rows = []
    for (protocol, model), vals in values.items():
        for i, v in enumerate(vals):
            rows.append({"protocol": protocol, "seed": 0, "fold": i, "model": model, "image": f"v{i}",
                         "class": "macro", "dice": v, "iou": v / (2 - v), "status": "ok"})
    return pd.DataFrame(rows)


@pytest.fixture(scope="session")
def macro_scores():
    """Scores table from ``{(protocol, model): [per-image macro dice]}``, one fold per image (LOOCV-like)."""
    return _macro_scores
