"""Tests of helpers.metrics.lesions: labelling, the lesion table and the lesion-wise protocol."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from skimage import measure

from helpers.metrics.lesions import (
    assign_quartiles, evaluate_case_and_lesions, evaluate_lesions, label_lesions, lesion_summary, lesion_table,
    quartile_edges, with_quartile_bounds,
)
from helpers.metrics.lesions.matching import _region_of_influence
from helpers.metrics import evaluate_case, image_diagonal


# ---------------------------------------------------------------- label_lesions
def test_label_default_connectivity_2d_joins_diagonals():
    # Two pixels touching only at a corner: one lesion with 8-connectivity (default), two with 4.
    mask = np.zeros((4, 4), bool)
    mask[1, 1] = mask[2, 2] = True
    labels, n = label_lesions(mask)
    assert n == 1
    labels, n = label_lesions(mask, connectivity=1)
    assert n == 2
    assert labels[1, 1] == 1 and labels[2, 2] == 2


def test_label_default_connectivity_3d_is_26():
    # Voxels touching only at a vertex (one step on each of three axes): 26-connected, not 18- or 6-connected.
    mask = np.zeros((3, 3, 3), bool)
    mask[0, 0, 0] = mask[1, 1, 1] = True
    assert label_lesions(mask)[1] == 1
    assert label_lesions(mask, connectivity=2)[1] == 2
    assert label_lesions(mask, connectivity=1)[1] == 2
    # Edge-touching voxels (two steps): 18-connected but not 6-connected.
    mask = np.zeros((3, 3, 3), bool)
    mask[0, 0, 0] = mask[0, 1, 1] = True
    assert label_lesions(mask, connectivity=2)[1] == 1
    assert label_lesions(mask, connectivity=1)[1] == 2


def test_label_empty_mask():
    labels, n = label_lesions(np.zeros((5, 6), bool))
    assert n == 0
    assert labels.shape == (5, 6) and not labels.any()


@pytest.mark.parametrize("connectivity", [1, 2, 3])
def test_label_matches_skimage_on_random_3d(connectivity):
    # Independent implementation: scikit-image's label gives the same labels (same raster order).
    rng = np.random.default_rng(connectivity)
    mask = rng.random((8, 12, 12)) < 0.25
    labels, n = label_lesions(mask, connectivity=connectivity)
    expected, n_expected = measure.label(mask, connectivity=connectivity, return_num=True)
    assert n == n_expected
    np.testing.assert_array_equal(labels, expected)


@pytest.mark.parametrize("connectivity", [1, 2])
def test_label_matches_skimage_on_random_2d(connectivity):
    # Many small random images: connected-components-3d 4.1.1's own 2D 8-connected labelling is wrong on a few
    # percent of them (labels on background pixels), which the 2D-as-one-slice route must not inherit.
    rng = np.random.default_rng(100 + connectivity)
    for _ in range(300):
        shape = tuple(int(n) for n in rng.integers(2, 40, size=2))
        mask = rng.random(shape) < rng.uniform(0.05, 0.7)
        labels, n = label_lesions(mask, connectivity=connectivity)
        expected, n_expected = measure.label(mask, connectivity=connectivity, return_num=True)
        assert n == n_expected
        np.testing.assert_array_equal(labels, expected)


def test_label_does_not_mutate_input():
    mask = np.zeros((4, 4), bool)
    mask[1:3, 1:3] = True
    before = mask.copy()
    label_lesions(mask)
    np.testing.assert_array_equal(mask, before)


def test_label_rejects_bad_input():
    with pytest.raises(TypeError, match="mask must have dtype bool, got dtype uint8"):
        label_lesions(np.zeros((4, 4), np.uint8))
    with pytest.raises(TypeError, match="mask must be a numpy.ndarray"):
        label_lesions([[True, False]])
    with pytest.raises(ValueError, match="mask must be 2D .* got 1D"):
        label_lesions(np.zeros(4, bool))
    with pytest.raises(ValueError, match="connectivity must be in 1..2 for a 2D mask, got 3"):
        label_lesions(np.zeros((4, 4), bool), connectivity=3)
    with pytest.raises(TypeError, match="connectivity must be an integer"):
        label_lesions(np.zeros((4, 4), bool), connectivity=1.5)


# ---------------------------------------------------------------- lesion_table
def test_lesion_table_2d_hand_values():
    # Lesion 1: a 2x3 block at rows 1-2, cols 1-3 -> 6 px, bbox (1,1)-(3,4), centroid (1.5, 2.0).
    # Lesion 2: a single pixel at (6, 7) -> 1 px, centroid (6, 7).
    # Image 8x10 = 80 px; spacing (0.5, 2.0) -> pixel area 1 mm^2.
    mask = np.zeros((8, 10), bool)
    mask[1:3, 1:4] = True
    mask[6, 7] = True
    table = lesion_table(mask, spacing=(0.5, 2.0))
    assert list(table["lesion_id"]) == [1, 2]
    assert list(table["n_voxels"]) == [6, 1]
    np.testing.assert_allclose(table["volume_mm3"], [6.0, 1.0])
    np.testing.assert_allclose(table["area_fraction"], [6 / 80, 1 / 80])
    assert list(table["bbox_min_0"]) == [1, 6] and list(table["bbox_max_0"]) == [3, 7]
    assert list(table["bbox_min_1"]) == [1, 7] and list(table["bbox_max_1"]) == [4, 8]
    np.testing.assert_allclose(table["centroid_0"], [1.5, 6.0])
    np.testing.assert_allclose(table["centroid_1"], [2.0, 7.0])


def test_lesion_table_3d_area_fraction_is_largest_axial_section():
    # A lesion over slices z=1..3 with cross-sections 1, 4 and 2 voxels: 7 voxels, largest section 4.
    # Axial slice area 10*20 = 200 -> area_fraction 4/200 = 0.02. Spacing (3, 1, 1) -> volume 21 mm^3.
    mask = np.zeros((5, 10, 20), bool)
    mask[1, 4, 4] = True
    mask[2, 3:5, 3:5] = True
    mask[3, 4, 4:6] = True
    table = lesion_table(mask, spacing=(3.0, 1.0, 1.0))
    assert len(table) == 1
    row = table.iloc[0]
    assert row["n_voxels"] == 7
    assert row["volume_mm3"] == pytest.approx(21.0)
    assert row["area_fraction"] == pytest.approx(0.02)
    assert (row["bbox_min_0"], row["bbox_max_0"]) == (1, 4)
    assert (row["bbox_min_1"], row["bbox_max_1"]) == (3, 5)
    assert (row["bbox_min_2"], row["bbox_max_2"]) == (3, 6)
    # centroid z = (1*1 + 2*4 + 3*2) / 7 = 15/7
    assert row["centroid_0"] == pytest.approx(15 / 7)


def test_lesion_table_empty_has_columns():
    table = lesion_table(np.zeros((3, 4, 5), bool))
    assert len(table) == 0
    assert list(table.columns) == [
        "lesion_id", "n_voxels", "volume_mm3", "area_fraction",
        "bbox_min_0", "bbox_min_1", "bbox_min_2", "bbox_max_0", "bbox_max_1", "bbox_max_2",
        "centroid_0", "centroid_1", "centroid_2",
    ]
    assert table["volume_mm3"].dtype == np.float64


def test_lesion_table_border_touching_lesion():
    # A lesion in the corner: bbox starts at 0 and ends at the shape.
    mask = np.zeros((6, 6), bool)
    mask[4:, 4:] = True
    row = lesion_table(mask).iloc[0]
    assert (row["bbox_min_0"], row["bbox_max_0"], row["bbox_min_1"], row["bbox_max_1"]) == (4, 6, 4, 6)


def test_lesion_table_matches_regionprops_on_random_3d():
    # Cross-check against scikit-image regionprops: area, bbox and centroid per label.
    rng = np.random.default_rng(7)
    mask = rng.random((6, 15, 14)) < 0.2
    table = lesion_table(mask, spacing=(2.0, 0.5, 0.5))
    labels = measure.label(mask, connectivity=3)
    props = measure.regionprops(labels)
    assert len(table) == len(props)
    for row, prop in zip(table.itertuples(), props):
        assert row.lesion_id == prop.label
        assert row.n_voxels == prop.area
        assert row.volume_mm3 == pytest.approx(prop.area * 0.5)
        box = (row.bbox_min_0, row.bbox_min_1, row.bbox_min_2, row.bbox_max_0, row.bbox_max_1, row.bbox_max_2)
        assert box == prop.bbox
        np.testing.assert_allclose((row.centroid_0, row.centroid_1, row.centroid_2), prop.centroid)
        sections = (labels == prop.label).sum(axis=(1, 2)).max()
        assert row.area_fraction == pytest.approx(sections / (15 * 14))


def test_lesion_table_rejects_bad_spacing():
    with pytest.raises(ValueError, match="spacing must have one value per axis \\(2\\), got 3"):
        lesion_table(np.zeros((4, 4), bool), spacing=(1, 1, 1))
    with pytest.raises(ValueError, match="spacing values must be finite and > 0, got -1.0"):
        lesion_table(np.zeros((4, 4), bool), spacing=(1, -1))


# ---------------------------------------------------------------- evaluate_lesions


def test_exact_prediction_of_two_lesions():
    ref = np.zeros((10, 20), bool)
    ref[2:5, 2:5] = True
    ref[6:8, 12:18] = True
    table = evaluate_lesions(ref, ref.copy())
    assert list(table["kind"]) == ["lesion", "lesion"]
    assert table["detected"].tolist() == [True, True]
    assert (table["dice"] == 1.0).all() and (table["hd"] == 0.0).all() and not table["penalty"].any()
    assert list(table["n_voxels"]) == [9, 12]
    assert list(table["n_pred_components"]) == [1, 1]


def test_missed_lesion_gets_zero_and_the_penalty():
    # Lesion 2 (a single pixel) is not predicted: detected False, Dice/IoU/NSD/F1 0, distances = diagonal
    # sqrt(10^2 + 20^2) with spacing 1, penalty True; lesion recall 1/2.
    ref = np.zeros((10, 20), bool)
    ref[2:5, 2:5] = True
    ref[8, 15] = True
    pred = np.zeros_like(ref)
    pred[2:5, 2:5] = True
    table = evaluate_lesions(ref, pred)
    missed = table.iloc[1]
    assert missed["detected"] == False  # noqa: E712 (nullable boolean)
    assert (missed["dice"], missed["iou"], missed["nsd"], missed["contour_f1"]) == (0, 0, 0, 0)
    for name in ("hd", "hd95", "hd95_pooled", "assd", "masd"):
        assert missed[name] == pytest.approx(math.sqrt(500))
    assert missed["penalty"]
    assert lesion_summary(table) == {
        "n_ref_lesions": 2, "n_detected": 1, "lesion_recall": 0.5, "n_false_positive": 0, "n_penalty": 1,
    }
    assert evaluate_lesions(ref, pred, penalty=12.0).iloc[1]["hd"] == 12.0


def test_false_positive_component_is_a_row_and_not_charged_to_lesions():
    # A far predicted blob overlaps no lesion: one false-positive row with NaN metrics; the lesion's own
    # metrics are those of the lesion against its exact prediction (the blob is outside its prediction).
    ref = np.zeros((12, 30), bool)
    ref[2:6, 2:6] = True
    pred = ref.copy()
    pred[8:11, 20:24] = True
    table = evaluate_lesions(ref, pred)
    assert list(table["kind"]) == ["lesion", "false_positive"]
    fp = table.iloc[1]
    assert fp["n_voxels"] == 12 and fp["lesion_id"] == 2
    assert pd.isna(fp["detected"]) and np.isnan(fp[["dice", "hd", "nsd"]].astype(float)).all()
    lesion = table.iloc[0]
    assert lesion["dice"] == 1.0 and lesion["hd95"] == 0.0
    # The image-level HD sees the blob; the lesion-wise HD does not.
    assert evaluate_case(ref, pred).hd > 0
    assert lesion_summary(table)["n_false_positive"] == 1


def test_merged_component_is_split_by_region_of_influence():
    # Two 3x3 lesions at cols 2..4 and 10..12 (rows 2..4). One predicted bar rows 2..4, cols 2..12 merges them.
    # Equidistance line: col 7 is 3 from col 4's boundary... distance from col c to lesion 1 = c - 4, to
    # lesion 2 = 10 - c: equal at c = 7 -> a tie, resolved to the lower id (lesion 1).
    # Lesion 1's prediction: cols 2..7 (6 cols x 3 rows = 18 px); Dice = 2*9/(9+18) = 2/3.
    # Lesion 2's prediction: cols 8..12 (15 px); Dice = 18/24 = 0.75. Both detected, one component each.
    ref = np.zeros((7, 15), bool)
    ref[2:5, 2:5] = True
    ref[2:5, 10:13] = True
    pred = np.zeros_like(ref)
    pred[2:5, 2:13] = True
    table = evaluate_lesions(ref, pred)
    assert list(table["kind"]) == ["lesion", "lesion"]
    assert table["dice"].tolist() == pytest.approx([2 / 3, 0.75])
    assert table["n_pred_components"].tolist() == [1, 1]
    # HD of lesion 1: pred piece reaches col 7, 3 px beyond the lesion's right column -> 3.
    # Lesion 2: pred piece starts at col 8, 2 px left of col 10 -> 2.
    assert table["hd"].tolist() == pytest.approx([3.0, 2.0])


def test_split_prediction_counts_both_components():
    # One lesion (rows 2..4, cols 2..9) predicted by two pieces, cols 2..4 and 7..9: two overlapping components.
    # Prediction 18 px, overlap 18 -> Dice 36 / (24 + 18) = 6/7.
    ref = np.zeros((7, 12), bool)
    ref[2:5, 2:10] = True
    pred = np.zeros_like(ref)
    pred[2:5, 2:5] = True
    pred[2:5, 7:10] = True
    row = evaluate_lesions(ref, pred).iloc[0]
    assert row["n_pred_components"] == 2
    assert row["dice"] == pytest.approx(6 / 7)
    assert row["overlap_voxels"] == 18


def test_min_overlap_rule():
    # One predicted pixel on a 3x3 lesion: detected with the default (>= 1 voxel), missed with min_overlap=2.
    ref = np.zeros((6, 6), bool)
    ref[1:4, 1:4] = True
    pred = np.zeros_like(ref)
    pred[2, 2] = True
    assert evaluate_lesions(ref, pred)["detected"].tolist() == [True]
    strict = evaluate_lesions(ref, pred, min_overlap=2)
    assert strict["detected"].tolist() == [False] and strict["penalty"].tolist() == [True]
    with pytest.raises(ValueError, match="min_overlap must be >= 1 voxel, got 0"):
        evaluate_lesions(ref, pred, min_overlap=0)


def test_connectivity_changes_what_a_lesion_is():
    # Two diagonal-touching squares: one lesion with 8-connectivity (default), two with 4-connectivity.
    ref = np.zeros((8, 8), bool)
    ref[1:3, 1:3] = True
    ref[3:5, 3:5] = True
    assert len(evaluate_lesions(ref, ref)) == 1
    assert len(evaluate_lesions(ref, ref, connectivity=1)) == 2


def test_border_touching_lesion_in_3d_with_spacing():
    # A lesion on the first slice and in the image corner; the prediction misses its last x column.
    # Its per-lesion metrics equal the image-level ones of the same pair (only one lesion, nothing else).
    ref = np.zeros((4, 8, 8), bool)
    ref[0:2, 0:3, 0:4] = True
    pred = ref.copy()
    pred[:, :, 3] = False
    row = evaluate_lesions(ref, pred, spacing=(3.0, 0.5, 0.5)).iloc[0]
    case = evaluate_case(ref, pred, spacing=(3.0, 0.5, 0.5)).as_dict()
    for name in ("dice", "iou", "hd", "hd95", "hd95_pooled", "assd", "masd", "nsd", "contour_f1"):
        assert row[name] == pytest.approx(case[name], rel=1e-12), name
    assert row["volume_mm3"] == pytest.approx(24 * 0.75)
    assert row["area_fraction"] == pytest.approx(12 / 64)


def test_per_lesion_metrics_equal_isolated_evaluation_on_separated_lesions():
    # Lesions far apart with their own predictions: each row equals evaluate_case on that lesion alone
    # (the region of influence and the crops change nothing when nothing is shared).
    rng = np.random.default_rng(11)
    ref = np.zeros((6, 40, 40), bool)
    pred = np.zeros_like(ref)
    centres = [(2, 8, 8), (3, 8, 30), (2, 30, 10), (3, 30, 30)]
    for z, y, x in centres:
        ref[z - 1:z + 2, y - 3:y + 3, x - 3:x + 3] = True
        dy, dx = rng.integers(-2, 3, size=2)
        pred[z - 1:z + 1, y - 3 + dy:y + 2 + dy, x - 3 + dx:x + 2 + dx] = True
    spacing = (3.0, 0.8, 0.8)
    table = evaluate_lesions(ref, pred, spacing=spacing, penalty=99.0)
    labels, n = label_lesions(ref)
    pred_labels, _ = label_lesions(pred)
    assert n == 4 and len(table) == 4
    for i in range(1, n + 1):
        lesion = labels == i
        own = np.isin(pred_labels, np.unique(pred_labels[lesion & pred]))
        expected = evaluate_case(lesion, own, spacing=spacing, penalty=99.0).as_dict()
        row = table.iloc[i - 1]
        for name in ("dice", "hd", "hd95", "hd95_pooled", "assd", "masd", "nsd", "contour_f1"):
            assert row[name] == pytest.approx(expected[name], rel=1e-12), (i, name)


def test_region_of_influence_matches_edt_feature_transform():
    # Independent implementation: the nearest-feature transform of scipy's EDT on the label image. Compared
    # where the nearest lesion is unique (the EDT breaks ties in its own way).
    rng = np.random.default_rng(12)
    ref = rng.random((5, 20, 22)) < 0.04
    labels, n = label_lesions(ref)
    spacing = (2.0, 0.7, 1.1)
    boundary = ref & ~ndimage.binary_erosion(ref, ndimage.generate_binary_structure(3, 1))
    outside = np.argwhere(~ref)
    ours = labels.copy()
    ours[~ref] = _region_of_influence(
        np.argwhere(boundary) * np.asarray(spacing), labels[boundary], outside * np.asarray(spacing)
    )
    distance, index = ndimage.distance_transform_edt(labels == 0, sampling=spacing, return_indices=True)
    theirs = labels[tuple(index)]
    # Unique nearest lesion: the distance to the second-nearest lesion is strictly larger.
    second = np.full(ref.shape, np.inf)
    for i in range(1, n + 1):
        d_i = ndimage.distance_transform_edt(labels != i, sampling=spacing)
        second = np.where(theirs != i, np.minimum(second, d_i), second)
    unique = second > distance * (1 + 1e-6)
    assert unique.mean() > 0.9
    np.testing.assert_array_equal(ours[unique], theirs[unique])


def test_ignore_removes_a_lesion():
    ref = np.zeros((8, 8), bool)
    ref[1:3, 1:3] = True
    ref[5:7, 5:7] = True
    ignore = np.zeros_like(ref)
    ignore[4:, 4:] = True
    table = evaluate_lesions(ref, ref, ignore=ignore)
    assert len(table) == 1 and table.iloc[0]["n_voxels"] == 4


def test_empty_masks():
    empty = np.zeros((5, 5), bool)
    table = evaluate_lesions(empty, empty)
    assert len(table) == 0 and "detected" in table.columns
    assert math.isnan(lesion_summary(table)["lesion_recall"])
    pred = empty.copy()
    pred[1, 1] = True
    table = evaluate_lesions(empty, pred)
    assert list(table["kind"]) == ["false_positive"]
    ref = pred.copy()
    table = evaluate_lesions(ref, empty)
    assert table["penalty"].tolist() == [True]
    assert table["hd"].iloc[0] == pytest.approx(image_diagonal((5, 5)))


def test_evaluate_lesions_rejects_bad_input():
    good = np.zeros((4, 4), bool)
    with pytest.raises(ValueError, match=r"same shape, got ref \(4, 4\) and pred \(5, 4\)"):
        evaluate_lesions(good, np.zeros((5, 4), bool))
    with pytest.raises(ValueError, match="connectivity must be in 1..2"):
        evaluate_lesions(good, good, connectivity=0)
    with pytest.raises(TypeError, match="min_overlap must be an integer"):
        evaluate_lesions(good, good, min_overlap=0.5)
    with pytest.raises(TypeError, match="table must be a DataFrame from evaluate_lesions"):
        lesion_summary(pd.DataFrame({"a": [1]}))


def test_extra_tolerance_columns():
    # Lesion: 5x5 square; prediction: the same square shifted by 2 columns (3 px of each row overlap).
    # Shifted-square distances (as the 10x10 case in test_metrics, side 5, shift 2): ring 16 px per side;
    # reference ring: left column (5 px) -> 2, top/bottom rows cols 3 -> 1 (cols 4..6 on the predicted ring:
    # 0), right column rows 3..5 (col 6, inside the prediction) -> min(2, r - 2, 6 - r) = 1, 2, 1.
    # Within 1: top 4 + bottom 4 + right 2 = 10 of 16; within 2: all 16. NSD@1 = 20/32 = 0.625, NSD@2 = 1.
    ref = np.zeros((9, 12), bool)
    ref[2:7, 2:7] = True
    pred = np.zeros_like(ref)
    pred[2:7, 4:9] = True
    table = evaluate_lesions(ref, pred, tolerances=(1, 2))
    row = table.iloc[0]
    assert row["nsd_tol1"] == pytest.approx(0.625) and row["nsd"] == pytest.approx(0.625)
    assert row["nsd_tol2"] == pytest.approx(1.0) and row["contour_f1_tol2"] == pytest.approx(1.0)
    missed = evaluate_lesions(ref, np.zeros_like(ref), tolerances=(1, 2)).iloc[0]
    assert missed["contour_f1_tol2"] == 0.0
    fp = evaluate_lesions(np.zeros_like(ref), pred, tolerances=(1, 2)).iloc[0]
    assert np.isnan(fp["nsd_tol2"])


def test_per_lesion_rows_match_independently_built_lesion_masks():
    # Independent route (as a MONAI user would do it): the region of influence from scipy's EDT feature
    # transform on the label image, per-lesion prediction = overlapping components within that region, then
    # image-level metrics on the full-volume pair. The prediction is a dilation, so nearby lesions merge.
    rng = np.random.default_rng(21)
    ref = ndimage.binary_opening(rng.random((8, 40, 40)) < 0.12, iterations=1) | (rng.random((8, 40, 40)) < 0.004)
    pred = ndimage.binary_dilation(ref) & (rng.random(ref.shape) < 0.9)
    pred[1, 35:38, 1:4] = True
    spacing = (2.5, 0.8, 0.8)
    table = evaluate_lesions(ref, pred, spacing=spacing, penalty=80.0)
    labels, n = label_lesions(ref)
    pred_labels, _ = label_lesions(pred)
    distance, index = ndimage.distance_transform_edt(labels == 0, sampling=spacing, return_indices=True)
    owner = labels[tuple(index)]
    second = np.full(ref.shape, np.inf)
    for i in range(1, n + 1):
        d_i = ndimage.distance_transform_edt(labels != i, sampling=spacing)
        second = np.where(owner != i, np.minimum(second, d_i), second)
    tie = second <= distance * (1 + 1e-6)
    compared = 0
    for i in range(1, n + 1):
        lesion = labels == i
        comps = np.unique(pred_labels[lesion & pred])
        comps = comps[comps > 0]
        own = np.isin(pred_labels, comps) & (owner == i)
        if comps.size == 0 or (np.isin(pred_labels, comps) & tie).any():
            continue  # missed lesions are tested elsewhere; tie voxels may be assigned differently
        expected = evaluate_case(lesion, own, spacing=spacing, penalty=80.0).as_dict()
        row = table.iloc[i - 1]
        for name in ("dice", "iou", "hd", "hd95", "hd95_pooled", "assd", "masd", "nsd", "contour_f1"):
            assert row[name] == pytest.approx(expected[name], rel=1e-12), (i, name)
        compared += 1
    assert compared >= 5
    assert (table["n_pred_components"] >= 1).sum() >= compared


# ---------------------------------------------------------------- attribution (issue 12, item 3)
@pytest.mark.parametrize("width, start", [(4, 1), (6, 2)])
def test_attribution_uses_only_components_overlapping_the_lesion(width, start):
    # ref (lesion 1: the left bar; lesion 2: the last pixel of the bottom row), pred (width 4 shown):
    #   1 0 0 0    1 0 0 0     component D = {(0,0)} overlaps lesion 1 only
    #   1 0 0 0    0 0 0 0     component C = bottom row from column ``start`` to the end, overlaps lesion 2 only
    #   1 0 0 1    0 1 1 1
    # C's first voxel (2, start) lies in lesion 1's region of influence: it is nearer to (2, 0) than to
    # (2, width - 1) (width 4: 1 < 2; width 6: 2 < 3; checked below), but C does not overlap lesion 1, so lesion 1
    # is compared with D alone, whatever C brings into its region.
    # Lesion 1 vs D: Dice 2*1/(3+1) = 0.5; ref_to_pred = (0, 1, 2), pred_to_ref = (0): HD 2, MASD (1+0)/2 = 0.5,
    # ASSD 3/4, HD95 max(percentile((0,1,2), 95) = 1.9, 0) = 1.9.
    ref = np.zeros((3, width), bool)
    ref[:, 0] = True
    ref[2, width - 1] = True
    pred = np.zeros_like(ref)
    pred[0, 0] = True
    pred[2, start:] = True
    assert start < (width - 1) - start  # the voxel (2, start) is in lesion 1's region of influence
    table = evaluate_lesions(ref, pred)
    one = table.iloc[0]
    assert one["dice"] == 0.5 and one["hd"] == 2.0 and one["masd"] == 0.5
    assert one["assd"] == 0.75 and one["hd95"] == pytest.approx(1.9, rel=1e-12)
    assert one["n_pred_components"] == 1
    # Lesion 2 vs C within its region: columns nearer to (2, width-1) than to (2, 0), i.e. > (width-1)/2.
    # Width 4: {(2,2),(2,3)}: Dice 2/3, pred_to_ref (1, 0): HD 1, MASD (0 + 0.5)/2 = 0.25.
    # Width 6: {(2,3),(2,4),(2,5)}: Dice 2/4, pred_to_ref (2, 1, 0): HD 2, MASD (0 + 1)/2 = 0.5. (C's voxel
    # (2, 2) belongs to lesion 1's region and is left out of both comparisons.)
    two = table.iloc[1]
    expected = {4: (2 / 3, 1.0, 0.25), 6: (0.5, 2.0, 0.5)}[width]
    assert (two["dice"], two["hd"], two["masd"]) == pytest.approx(expected, rel=1e-12)
    assert list(table["kind"]) == ["lesion", "lesion"]


@pytest.mark.parametrize("seed", [0, 1])
def test_case_and_lesions_in_one_call_equal_the_two_calls(seed):
    # Merging dilated predictions (mixed components, so both the reused and the recomputed per-lesion distances
    # occur), ignore voxels, extra tolerances and anisotropic spacing.
    rng = np.random.default_rng(seed)
    ref = ndimage.gaussian_filter(rng.random((8, 30, 30)), 1.0) > 0.53
    pred = ndimage.binary_dilation(np.roll(ref, 1, axis=2)) & (rng.random(ref.shape) < 0.95)
    ignore = rng.random(ref.shape) < 0.02
    spacing = (2.0, 0.8, 0.9)
    case, table = evaluate_case_and_lesions(ref, pred, spacing=spacing, ignore=ignore, tolerances=(1, 2),
                                            lesion_tolerances=(2,), min_overlap=2)
    expected_case = evaluate_case(ref, pred, spacing=spacing, ignore=ignore, tolerances=(1, 2)).as_dict()
    for key, value in case.as_dict().items():
        assert value == pytest.approx(expected_case[key], rel=1e-12, abs=0), key
    expected = evaluate_lesions(ref, pred, spacing=spacing, ignore=ignore, tolerances=(2,), min_overlap=2)
    pd.testing.assert_frame_equal(table, expected)
    assert (table["n_pred_components"] >= 1).sum() >= 3


def test_case_and_lesions_in_one_call_on_empty_masks():
    empty = np.zeros((4, 5), bool)
    case, table = evaluate_case_and_lesions(empty, empty)
    assert case.dice == 1.0 and case.hd == 0.0 and len(table) == 0
    one = empty.copy()
    one[1, 1] = True
    case, table = evaluate_case_and_lesions(one, empty, penalty=7.0)
    assert case.hd == 7.0 and case.n_ref_boundary == 1 and table["penalty"].tolist() == [True]


# ----------------------------------------------------------------------------------- quartiles (from test_analysis)
def test_quartile_edges_known_sizes():
    # Sizes 1..8 (of 100): numpy linear quantiles at 25/50/75 % are 1 + 7*q -> 2.75, 4.5, 6.25.
    np.testing.assert_allclose(quartile_edges(np.arange(1, 9) / 100), [0.0275, 0.045, 0.0625])


def test_assign_quartiles_upper_edges_inclusive():
    edges = [0.0275, 0.045, 0.0625]
    sizes = np.arange(1, 9) / 100
    # 0.01, 0.02 <= 0.0275 -> Q1; 0.03, 0.04 -> Q2; 0.05, 0.06 -> Q3; 0.07, 0.08 -> Q4: two per quartile
    assert assign_quartiles(sizes, edges).tolist() == ["Q1", "Q1", "Q2", "Q2", "Q3", "Q3", "Q4", "Q4"]
    # a value equal to an edge belongs to the lower quartile
    assert assign_quartiles([0.045], edges).tolist() == ["Q2"]
    assert assign_quartiles([np.nan], edges).tolist() == [""]


def test_quartiles_balanced_property():
    rng = np.random.default_rng(0)
    sizes = rng.random(400) * 0.1
    labels = assign_quartiles(sizes, quartile_edges(sizes))
    counts = pd.Series(labels).value_counts()
    assert counts.to_dict() == {"Q1": 100, "Q2": 100, "Q3": 100, "Q4": 100}


def test_quartile_errors():
    with pytest.raises(ValueError, match="no finite value"):
        quartile_edges([np.nan])
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        quartile_edges([0.5, 2.0])
    with pytest.raises(ValueError, match="edges must be 3 finite non-decreasing"):
        assign_quartiles([0.1], [0.3, 0.2, 0.4])


def test_with_quartile_bounds():
    t = with_quartile_bounds(pd.DataFrame({"stratum": ["Q1", "Q3", "all_lesions"]}), [0.1, 0.2, 0.3])
    assert t["area_fraction_above"].tolist()[:2] == [0.0, 0.2] and t["area_fraction_upto"].tolist()[:2] == [0.1, 0.3]
    assert np.isnan(t["area_fraction_upto"].iloc[2])
    with pytest.raises(ValueError, match="edges must be 3 values"):
        with_quartile_bounds(t, [0.1])
