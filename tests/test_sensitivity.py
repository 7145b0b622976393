"""Tests of helpers.analysis.sensitivity: the clean-up threshold and extra-seed analyses (moved from test_evaluation
with their code), on the bring-your-own folder of tests/test_evaluation.py."""

import numpy as np
import pytest

from helpers.evaluation import evaluate_predictions, extra_seed_roots
from helpers.base.paths import Workspace
from helpers.data.predictions import write_prediction
from helpers.analysis.sensitivity import cleanup_sensitivity, seed_aggregates
from test_evaluation import folder  # noqa: F401  (the fixture)


def test_cleanup_sensitivity_removes_small_components(folder):
    case, root = folder
    # "shifted" has a one-pixel false positive: cleaning components < 2 px removes it (FP per case 1 -> 0), the
    # lesions (12 and 100 px predicted) stay detected; a threshold below the applied one is not recomputed
    t = cleanup_sensitivity([case], root, dataset="idrid", thresholds=[0, 1, 2], applied=1, models=["shifted"],
                            min_lesions=1, progress=False)
    fp = t[(t["metric"] == "fp_lesions_per_case")].set_index("min_component_voxels")["value"]
    assert fp.to_dict() == {1: 1.0, 2: 0.0}
    recall = t[t["metric"] == "lesion_recall"].set_index("min_component_voxels")["value"]
    assert recall.to_dict() == {1: 1.0, 2: 1.0}
    below = t[t["min_component_voxels"] == 0].iloc[0]
    assert below["note"] == "below the applied clean-up (1 voxels): needs probabilities" and np.isnan(below["value"])
    with pytest.raises(ValueError, match="thresholds must be non-negative integers"):
        cleanup_sensitivity([case], root, dataset="idrid", thresholds=[-1], progress=False)


def test_every_trained_seed_is_evaluated(folder, tmp_path):
    case, root = folder
    ws = Workspace.at(tmp_path / "ws")
    evaluate_predictions(ws, "idrid", predictions_root=root, cases=[case], models=["exact", "shifted"],
                         progress=False)
    assert extra_seed_roots(root) == {}
    # seed 1: the two models swap their predictions
    ref = case.mask
    moved = np.zeros_like(ref)
    moved[4:8, 5:9] = True
    moved[15:25, 15:25] = True
    write_prediction(root / "_seeds" / "seed1", "exact", case.case_id, moved, kind="image")
    write_prediction(root / "_seeds" / "seed1", "shifted", case.case_id, ref, kind="image")
    assert list(extra_seed_roots(root)) == [1]
    agg = seed_aggregates(ws, "idrid", predictions_root=root, cases=[case], progress=False)
    dice = agg.query("stratum == 'overall' and metric == 'dice' and lesion_set == 'common'").set_index(
        ["seed", "model"])["value"]
    assert dice[(0, "exact")] == 1.0 and dice[(1, "shifted")] == 1.0
    assert dice[(1, "exact")] == pytest.approx(2 * 112 / (116 + 116))  # lesion A 12 of 16 shared, B all 100
