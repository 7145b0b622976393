"""Tests of the stand-ins' two regimes (helpers.data.synthetic, ``standin``) and of helpers.data.calibration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image, JpegImagePlugin
from scipy import ndimage

from helpers.data import calibration, datasets
from helpers.data.cases import load_cases
from helpers.data.synthetic import common, idrid
from helpers.metrics import dice


def _disk(shape, center, radius):
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


def test_annotation_noise_moves_part_of_each_contour_by_one_voxel():
    mask = _disk((64, 64), (20, 20), 8) | _disk((64, 64), (44, 44), 6)
    out = common.annotation_noise(np.random.default_rng(0), mask)
    changed = out ^ mask
    assert changed.any()
    # every changed pixel is within one pixel (4-neighbourhood) of the original boundary: a one-voxel move
    edge = mask ^ ndimage.binary_erosion(mask)
    near = ndimage.binary_dilation(edge, ndimage.generate_binary_structure(2, 1))
    assert not (changed & ~near).any()
    # lesions stay two, non-empty; only part of a contour moves (not the whole ring)
    assert ndimage.label(out, np.ones((3, 3)))[1] == 2
    ring = ndimage.binary_dilation(mask, ndimage.generate_binary_structure(2, 1)) & ~mask
    assert changed.sum() < 0.75 * (ring.sum() + edge.sum())
    # drawn once per lesion: the same generator state gives the same outline
    assert np.array_equal(out, common.annotation_noise(np.random.default_rng(0), mask))


def test_annotation_noise_never_merges_two_lesions():
    mask = np.zeros((20, 20), bool)
    mask[5:15, 3:9] = True
    mask[5:15, 10:16] = True  # one column apart
    for seed in range(20):
        out = common.annotation_noise(np.random.default_rng(seed), mask)
        assert ndimage.label(out, np.ones((3, 3)))[1] == 2


def test_drop_fragments_by_largest_section():
    mask = np.zeros((3, 10, 10), bool)
    mask[1, 1:4, 1:4] = True  # 9 voxels in one slice
    mask[0:3, 7, 7] = True  # 1 voxel per slice
    kept = common.drop_fragments(mask, 9)
    assert kept[1, 2, 2] and not kept[:, 7, 7].any()


def test_standin_is_checked():
    with pytest.raises(ValueError, match="standin must be one of"):
        common.check_standin("paperish")


TINY = {"wmh": {"n_training": 1, "n_test": 1, "shape": [16, 64, 64]},
        "lits": {"n_volumes": 2, "shape": [16, 64, 64], "p_no_tumour": 0.0},
        "idrid": {"n_training": 1, "n_test": 1, "shape": [170, 256]}}
TARGET = {"wmh": 1, "lits": 2}


@pytest.mark.parametrize("name", ["wmh", "lits", "idrid"])
def test_paper_regime_keeps_the_layout_and_its_clean_masks(tmp_path, name):
    params = datasets.get(name).generate(tmp_path / "paper", seed=0, standin="paper", **TINY[name])
    assert params["standin"] == "paper"
    cases = load_cases(name, tmp_path / "paper")  # the real loader reads it, and ignores clean_reference/
    assert len(cases) == 2 and all(c.mask.any() for c in cases)
    clean = sorted((tmp_path / "paper" / common.CLEAN_FOLDER).rglob("clean_*"))
    assert clean
    ceiling = calibration.annotation_ceiling(tmp_path / "paper", name)
    # the reference differs from the clean mask by a one-voxel move on part of each contour: close, not equal
    assert 0.8 < ceiling["dice"].mean() < 1.0
    assert (ceiling["contour_f1"] > 0.9).all()
    # the voxel-floor regime (the generators' default) writes no clean masks: no ceiling
    datasets.get(name).generate(tmp_path / "floor", seed=0, **TINY[name])
    assert not (tmp_path / "floor" / common.CLEAN_FOLDER).exists()
    assert calibration.annotation_ceiling(tmp_path / "floor", name).empty


def test_data_calibration_by_hand():
    lesions = pd.DataFrame({"split": ["test"] * 4 + ["train"], "case_id": ["a", "a", "b", "b", "c"],
                            "area_fraction": [0.01, 0.02, 0.03, 0.04, 0.5]})
    cases = pd.DataFrame({"case_id": ["a", "b", "c"], "shape": ["4x10x10"] * 3, "spacing": ["3x2x2"] * 3})
    row = calibration.data_calibration("wmh", lesions, cases).iloc[0]
    # 25th percentile of 0.01..0.04 (linear): 0.0175 -> 1.75 %; Q1: the lesion at 0.01 (1 voxel of 100)
    assert row["q1_bound_percent"] == pytest.approx(1.75)
    assert row["paper_q1_bound_percent"] == 1.4 and row["q1_lesions"] == 1
    assert row["q1_section_voxels_min"] == pytest.approx(1.0)
    assert row["q1_diameter_mm_min"] == pytest.approx(2 * np.sqrt(4 / np.pi))  # one 2 x 2 mm pixel


def test_ceiling_of_a_reference_equal_to_its_clean_mask_is_perfect(tmp_path):
    import shutil

    datasets.get("wmh").generate(tmp_path, seed=0, standin="paper", **TINY["wmh"])
    clean = sorted((tmp_path / common.CLEAN_FOLDER).rglob("clean_*"))[0]
    rel = clean.relative_to(tmp_path / common.CLEAN_FOLDER)
    shutil.copyfile(clean, tmp_path / rel.parent / rel.name[len("clean_"):])  # the second rater agreed exactly
    ceiling = calibration.annotation_ceiling(tmp_path, "wmh")
    assert len(ceiling) == 2
    perfect = ceiling[ceiling["dice"] == 1.0]
    assert len(perfect) == 1 and perfect["hd95"].iloc[0] == 0.0 and perfect["contour_f1"].iloc[0] == 1.0
    assert perfect["voxel_mm"].iloc[0] == pytest.approx(230.0 / 64)  # the in-plane pixel of a 64 px, 230 mm grid
    assert (ceiling["dice"] < 1.0).sum() == 1


def test_regime_calibration_by_hand():
    from helpers.analysis.paper import regime_calibration

    per_case = pd.DataFrame({"model": ["a", "a", "b", "b"], "metric": "dice", "value": [0.8, 0.9, 0.7, 0.7]})
    rows = []
    for model, hd in (("a", [1.0, 3.0]), ("b", [0.5, 0.9])):
        for k, h in enumerate(hd):
            rows += [{"model": model, "kind": "lesion", "quartile": "Q1", "metric": "detected", "value": 1.0,
                      "penalty": False},
                     {"model": model, "kind": "lesion", "quartile": "Q1", "metric": "hd95", "value": h,
                      "penalty": False},
                     {"model": model, "kind": "lesion", "quartile": "Q1", "metric": "dice", "value": 0.5 + k / 10,
                      "penalty": False}]
        # a missed lesion: detected 0, its HD95 a penalty value (left out of the means and the share)
        rows += [{"model": model, "kind": "lesion", "quartile": "Q1", "metric": "detected", "value": 0.0,
                  "penalty": False},
                 {"model": model, "kind": "lesion", "quartile": "Q1", "metric": "hd95", "value": 99.0,
                  "penalty": True},
                 {"model": model, "kind": "lesion", "quartile": "Q4", "metric": "hd95", "value": 0.1,
                  "penalty": False}]
    table = regime_calibration(per_case, pd.DataFrame(rows), voxel_mm=1.0, top_k=1).set_index("model")
    assert list(table.index) == ["a", "b"] and table.loc["a", "top"] and not table.loc["b", "top"]
    assert table.loc["a", "overall_dice"] == pytest.approx(0.85)
    assert table.loc["a", "lesion_recall"] == pytest.approx(2 / 3)
    assert table.loc["a", "hd95"] == pytest.approx(2.0) and table.loc["a", "dice"] == pytest.approx(0.55)
    assert table.loc["a", "share_hd95_within_voxel"] == pytest.approx(0.5)  # 1.0 <= one voxel, 3.0 not
    assert table.loc["b", "share_hd95_within_voxel"] == pytest.approx(1.0) and table.loc["b", "n"] == 2
    assert table.loc["a", "paper_dice"] == "0.721-0.742"


def test_idrid_patchy_strength_keeps_the_mean_opacity():
    """The paper regime's patchy strength modulates a lesion's opacity by 1 + 0.3 * (unit-variance field) around
    the type's opacity: the mean stays ``alpha`` and the spread is 30 % of it. (Dividing by the modulated field's
    maximum, as the generator once did, dims every lesion by that maximum: mean about alpha / 1.9 here.)"""
    shape, alpha = (200, 200), 0.5
    disk = _disk(shape, (100, 100), 80)
    patches = common.smooth_noise(np.random.default_rng(0), shape, 4.0)
    img = np.zeros((*shape, 3))
    idrid._blend(img, disk, (1.0, 1.0, 1.0), alpha, 0.0, patches)
    inside = img[..., 0][disk]
    assert abs(inside.mean() - alpha) < 0.02
    assert 0.25 < inside.std() / alpha < 0.33
    assert (img[..., 0][~disk] == 0).all()
    # without patches (the voxel-floor regime) the opacity is alpha wherever the blurred mask reaches its maximum
    plain = np.zeros((*shape, 3))
    idrid._blend(plain, disk, (1.0, 1.0, 1.0), alpha, 1.0)
    assert plain[100, 100, 0] == pytest.approx(alpha)
    assert plain[..., 0].max() == pytest.approx(alpha)


def test_idrid_photographs_are_4_4_4_in_the_paper_regime(tmp_path):
    for standin, sampling in (("paper", 0), ("voxel-floor", 2)):  # 0: 4:4:4, 2: 4:2:0 (Pillow's default)
        datasets.get("idrid").generate(tmp_path / standin, seed=0, standin=standin, **TINY["idrid"])
        photos = sorted((tmp_path / standin).rglob("*.jpg"))
        assert len(photos) == 2
        for photo in photos:
            with Image.open(photo) as im:
                assert JpegImagePlugin.get_sampling(im) == sampling
