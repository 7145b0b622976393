"""Tests of helpers.studies.small_data.cv: cross-validation of the small-data study."""

from __future__ import annotations


import numpy as np
import pytest

from helpers.studies.small_data import cv as smallcv


def test_cross_validate_every_image_scored_once_and_not_run_rows_kept(small_cv, small_cases):
    s = small_cv.scores
    assert set(s.columns) >= {"protocol", "seed", "fold", "model", "image", "class", "dice", "iou", "status"}
    macro = s[s["class"] == "macro"]
    counts = macro.groupby(["protocol", "seed", "model"])["image"].agg(lambda x: sorted(x))
    assert all(v == sorted(c.case_id for c in small_cases) for v in counts)  # each image exactly once
    sam = s[s["model"] == "sam"]
    # 2 protocols x 6 images x (3 classes + macro) rows, all NaN with the reason.
    assert len(sam) == 2 * 6 * 4
    assert sam["dice"].isna().all() and (sam["status"] == "not run: no checkpoint given").all()
    ok = s[s["model"] == "segformer"]
    assert (ok["status"] == "ok").all() and ok["dice"].between(0, 1).all()
    assert len(small_cv.uncertainty) == 2 * 6  # MC-dropout maps for the model that ran
    assert len(small_cv.models) == 6  # the kept LOOCV folds


def test_cross_validate_rejects_unknown_case(small_cases):
    with pytest.raises(ValueError, match=r"splits name cases not in cases: \['ghost'\]"):
        smallcv.cross_validate(small_cases, models=["unet"], splits=[{"protocol": "loocv", "seed": 0, "fold": 0,
                                                            "train": ["ghost"], "test": []}], progress=False)


def test_macro_row_is_mean_of_class_rows(small_cv):
    s = small_cv.scores[(small_cv.scores["model"] == "segformer")]
    classes = s[s["class"] != "macro"].groupby(["protocol", "image"])["dice"].mean()
    macro = s[s["class"] == "macro"].set_index(["protocol", "image"])["dice"]
    assert np.allclose(classes.sort_index(), macro.sort_index(), equal_nan=True)
