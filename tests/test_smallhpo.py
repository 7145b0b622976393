"""Tests of helpers.studies.small_data.hpo: the Optuna search of the small-data study."""

from __future__ import annotations


import pytest

from helpers.studies.small_data import hpo as smallhpo
from helpers.data.splits import cv_folds


@pytest.mark.parametrize("sampler", ["tpe", "gp"])
def test_optimize_budget_and_space(small_cases, sampler):
    trials, best = smallhpo.optimize("deeplabv3plus", small_cases, n_trials=2, size=32, epochs=1, width=4,
                                     sampler=sampler)
    assert len(trials) == 2 and list(trials["trial"]) == [0, 1]
    for key, (_, low, high) in smallhpo.SEARCH_SPACE.items():
        assert trials[key].between(low, high).all()
    assert best["value"] == pytest.approx(trials["value"].max())
    assert best["params"] == {k: trials.loc[trials["value"].idxmax(), k] for k in smallhpo.SEARCH_SPACE}
    # The inner validation split is fold 0 of the seeded 3-fold split: 2 of 6 images.
    assert best["val_cases"] == cv_folds([c.case_id for c in small_cases], protocol="3fold", seed=0)[0]["test"]


def test_optimize_errors(small_cases):
    with pytest.raises(ValueError, match="sampler must be 'tpe' or 'gp'"):
        smallhpo.optimize("unet", small_cases, n_trials=1, size=32, epochs=1, sampler="random")
    with pytest.raises(ValueError, match="n_trials must be a positive integer"):
        smallhpo.optimize("unet", small_cases, n_trials=0, size=32, epochs=1)
