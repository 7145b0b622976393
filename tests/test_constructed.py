"""Constructed predictions of the portable regression run: rules, determinism, the switch and its record."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from helpers.evaluation import constructed
from helpers.data import predictions
from helpers.base.paths import Workspace


def _square(shape=(20, 20), lo=5, hi=10):
    mask = np.zeros(shape, bool)
    mask[lo:hi, lo:hi] = True
    return mask


def test_rules_hand_derived_on_a_square():
    ref = _square()  # a 5x5 square, 25 pixels, unit spacing
    # dilation by the 1 mm ball (the cross) adds one pixel on each of the 4 sides: 25 + 4 * 5 = 45
    assert constructed.construct(ref, "unet").sum() == 45
    # erosion by the 1 mm ball removes the one-pixel rim: the inner 3x3 square
    assert constructed.construct(ref, "resunet").sum() == 9
    # an offset moves the square by whole pixels: same area, at least 2 mm of shift along some axis
    moved = constructed.construct(ref, "attention_unet")
    assert moved.sum() == 25 and not (moved & ref).all()
    # blobs add one ball of radius 1 mm (5 pixels) next to the lesion and keep the lesion itself
    blob = constructed.construct(ref, "hybrid_transformer")
    assert (blob & ref).sum() == 25 and blob.sum() == 30


def test_severities_scale_with_the_in_plane_spacing():
    # WMH-like voxels of 3 x 2.4 x 2.4 mm: one in-plane voxel is 2.4 mm, so the 1-voxel dilation of one voxel adds
    # its 4 in-plane face neighbours (2.4 mm away) but not its z neighbours (3 mm) nor in-plane diagonals (3.39 mm)
    ref = np.zeros((5, 7, 7), bool)
    ref[2, 3, 3] = True
    grown = constructed.construct(ref, "unet", spacing=(3.0, 2.4, 2.4))
    assert grown.sum() == 5 and grown[2].sum() == 5
    assert constructed.RULES["hybrid_transformer"].in_mm((3.0, 2.4, 2.4)) == (2.4, {"n_blobs": 1, "gap_mm": 4.8})


def test_construction_is_deterministic_and_seeded_per_model():
    ref = np.zeros((12, 32, 32), bool)
    ref[3:6, 4:9, 4:9] = True
    ref[7:9, 20:24, 18:25] = True
    spacing = (3.0, 0.9, 0.9)
    for model in constructed.RULES:
        a = constructed.construct(ref, model, spacing=spacing, seed=0)
        b = constructed.construct(ref, model, spacing=spacing, seed=0)
        assert np.array_equal(a, b), model
    offsets = {seed: constructed.construct(ref, "attention_unet", spacing=spacing, seed=seed) for seed in range(4)}
    assert len({m.tobytes() for m in offsets.values()}) > 1  # the seed draws the directions


def test_unknown_model_and_source_are_rejected():
    with pytest.raises(ValueError, match=r"model 'segformer' has no construction rule"):
        constructed.construct(_square(), "segformer")
    with pytest.raises(ValueError, match=r"predictions_from must be one of \['trained', 'constructed'\], got 'both'"):
        constructed.check_source("both")


def test_constructed_predictions_replace_the_trained_ones_which_are_kept_aside(tmp_path):
    ws = Workspace(tmp_path)
    root = ws.predictions("idrid")
    trained = _square()
    predictions.write_prediction(root, "unet", "IDRiD_01", trained, kind="image")
    case = SimpleNamespace(case_id="IDRiD_01", mask=_square(), spacing=(1.0, 1.0), affine=None)
    table = constructed.write_constructed(ws, "idrid", [case], models=["unet"], seed=0)
    assert table.to_dict("records") == [{"dataset": "idrid", "model": "unet", "case_id": "IDRiD_01",
                                         "rule": "dilation, 1 voxel", "predicted_voxels": 45}]
    assert predictions.read_prediction(root, "unet", "IDRiD_01").sum() == 45
    assert predictions.read_prediction(root / "_trained", "unet", "IDRiD_01").sum() == 25
    assert predictions.list_models(root) == ["unet"]  # the set-aside folder is not a model
    record = constructed.predictions_source(ws, "idrid")
    assert record["source"] == "constructed" and record["rules"]["unet"] == {"mode": "dilate",
                                                                            "severity_in_plane_voxels": 1.0,
                                                                            "options": {}}


def test_trained_source_keeps_the_trained_predictions_and_records_it(tmp_path):
    ws = Workspace(tmp_path)
    written = pd.DataFrame({"model": ["unet", "unet"], "seed": [0, 1], "case_id": ["a", "a"],
                            "predicted_voxels": [7, 9]})
    used = constructed.use_predictions(ws, "wmh", source="trained", trained=written, models=["unet"], seed=0)
    assert used.to_dict("records") == [{"model": "unet", "case_id": "a", "rule": "trained model",
                                        "predicted_voxels": 7}]
    assert constructed.predictions_source(ws, "wmh") == {"source": "trained"}


def test_marked_numbers_keep_the_layout_whatever_their_digits():
    a = pd.DataFrame({"model": ["unet", "resunet"], "best_val_dice": [0.3281, 0.05], "predicted_voxels": [235, 3660]})
    b = pd.DataFrame({"model": ["unet", "resunet"], "best_val_dice": [0.3271, 0.1], "predicted_voxels": [359, 12]})
    shown_a = constructed.mark_machine_dependent(a, ["best_val_dice", "predicted_voxels"])
    shown_b = constructed.mark_machine_dependent(b, ["best_val_dice", "predicted_voxels"])
    assert shown_a["best_val_dice"].tolist() == ["≈0.328", "≈0.050"]
    assert shown_a["predicted_voxels"].tolist() == ["≈235", "≈3660"]
    # the nbval sanitiser's rules (read from its file, applied as nbval does): the two tables print identically
    import configparser
    import re
    from pathlib import Path

    config = configparser.ConfigParser()
    config.read(Path(__file__).with_name("nbval_sanitize.cfg"), encoding="utf-8")

    def sanitise(text):
        for section in config.sections():
            text = re.sub(config[section]["regex"], config[section]["replace"], text)
        return text

    assert sanitise(shown_a.to_string()) == sanitise(shown_b.to_string())
    assert sanitise(shown_a.to_html()) == sanitise(shown_b.to_html())
    assert a["best_val_dice"].tolist() == [0.3281, 0.05]  # the input is not changed
