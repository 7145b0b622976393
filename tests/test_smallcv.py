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


def test_on_a_cluster_the_litemedsam_folds_and_trials_wait_for_the_shared_features(small_cases, tmp_path,
                                                                                     monkeypatch):
    # The wiring of helpers.studies.small_data.lite_models' shared folder (the filling itself is tested in
    # test_litemedsam.py): one filling task per image first, the LiteMedSAM tasks after all of them, the others
    # free; every task is told the folder; none of it in-process.
    from helpers.base.paths import Workspace
    from helpers.studies.small_data import hpo as smallhpo
    from helpers.studies.small_data import models as sm

    monkeypatch.setattr(sm, "model_status", lambda name, checkpoint=None: "ok")
    grids = {}

    def capture(tasks, *, name, **_):
        grids[name] = list(tasks)
        raise StopIteration  # the tasks are what is checked, not their running

    monkeypatch.setattr(smallcv, "run_grid", capture)
    monkeypatch.setattr(smallhpo, "run_grid", capture)
    split = {"protocol": "loocv", "seed": 0, "fold": 0, "train": [c.case_id for c in small_cases[1:]],
             "test": [small_cases[0].case_id]}
    folder = tmp_path / "cache" / "litemedsam"
    with pytest.raises(StopIteration):
        smallcv.cross_validate(small_cases, models=["unet", "medsam_unet"], splits=[split], progress=False,
                               feature_folder=folder)
    fill = [t for t in grids["cross-validation"] if t.label.startswith("litemedsam features")]
    folds = {t.label: t for t in grids["cross-validation"] if t.label.startswith("cv ")}
    assert len(fill) == len(small_cases) and grids["cross-validation"][:len(fill)] == fill
    assert fill[0].kwargs == {"models": ["medsam_unet"], "folder": str(folder)}
    assert tuple(fill[0].args[0].shape) == (1, 3, 256, 256)
    assert folds["cv loocv · seed 0 · fold 0 · medsam_unet"].after == tuple(t.label for t in fill)
    assert folds["cv loocv · seed 0 · fold 0 · unet"].after == ()
    assert all(t.kwargs["feature_folder"] == folder for t in folds.values())
    # the search: on a cluster, trial 0 of a LiteMedSAM model waits for the filling; in-process, nothing is filled
    for scheduler, n_fill in (("tcp://127.0.0.1:1", len(small_cases)), (None, 0)):
        with pytest.raises(StopIteration):
            smallhpo.run_hpo(Workspace.at(tmp_path), small_cases, models=["unet", "medsam"], n_trials=2, size=32, epochs=1,
                             scheduler=scheduler, n_startup=1, progress=False)
        tasks = {t.label: t for t in grids["hpo small_data"]}
        fill = [label for label in tasks if label.startswith("litemedsam features")]
        assert len(fill) == n_fill
        assert tasks["hpo medsam · trial 0"].after == tuple(fill)
        assert tasks["hpo medsam · trial 1"].after == ("hpo medsam · trial 0",)
        assert tasks["hpo unet · trial 0"].after == ()
        assert tasks["hpo medsam · trial 0"].kwargs["feature_folder"] == (
            None if scheduler is None else tmp_path.resolve() / "cache" / "litemedsam")
