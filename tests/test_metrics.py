"""Tests of helpers.metrics: hand-derived values, the empty-mask table, properties and a MONAI cross-check."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from helpers import metrics as m
from helpers.metrics import (
    assd, boundary, contour_f1, dice, empty_mask_table, evaluate_case, hausdorff, hd95, image_diagonal, iou, masd,
    nsd, surface_distances,
)


def square_pair():
    """A 10x10 square and the same square shifted by 3 columns, in a 20x20 image."""
    ref = np.zeros((20, 20), bool)
    ref[2:12, 2:12] = True
    pred = np.zeros_like(ref)
    pred[2:12, 5:15] = True
    return ref, pred


def square_with_far_pixel():
    """A 5x5 square (rows/cols 2..6) predicted exactly, plus a predicted pixel at (4, 16), 10 px right of it."""
    ref = np.zeros((9, 20), bool)
    ref[2:7, 2:7] = True
    pred = ref.copy()
    pred[4, 16] = True
    return ref, pred


# ---------------------------------------------------------------- hand-derived values
def test_shifted_square_hand_values():
    # |R| = |P| = 100, overlap 10 x 7 = 70: Dice 140/200 = 0.7, IoU 70/130.
    # Boundary of each square: the 36-pixel ring. Distances from R's ring to P's ring (P = R shifted +3 in x):
    #   left column (10 px, col 2): 3 each (P's left column, col 5, same row)            -> sum 30
    #   top row cols 3..11 (9 px): cols 3, 4 -> 2, 1; cols 5..11 lie on P's top row -> 0 -> sum 3
    #   bottom row likewise                                                               -> sum 3
    #   right column rows 3..10 (8 px, col 11, inside P): min(3 to P's right col, distance to
    #   P's top/bottom row) = 1, 2, 3, 3, 3, 3, 2, 1                                      -> sum 18
    # Total 54 over 36 px = 1.5 per direction; by symmetry ASSD = MASD = 1.5, HD = 3.
    # HD95: 14 of the 36 values are 3, so sorted positions 22..35 are 3 and position 0.95*35 = 33.25 -> 3.
    # Within 1 px: top 8 (cols 4..11) + bottom 8 + right col rows 3, 10 (2) = 18 of 36 per side -> NSD 0.5,
    # precision = recall = 0.5 -> F1 0.5. Within 2 px: 9 + 9 + 4 = 22 -> 22/36 = 11/18. Within 3 px: all -> 1.
    ref, pred = square_pair()
    assert dice(ref, pred) == pytest.approx(0.7)
    assert iou(ref, pred) == pytest.approx(70 / 130)
    assert hausdorff(ref, pred) == pytest.approx(3.0)
    assert hd95(ref, pred) == pytest.approx(3.0)
    assert hd95(ref, pred, pooled=True) == pytest.approx(3.0)
    assert assd(ref, pred) == pytest.approx(1.5)
    assert masd(ref, pred) == pytest.approx(1.5)
    assert nsd(ref, pred, tolerance=1.0) == pytest.approx(0.5)
    assert contour_f1(ref, pred, tolerance=1.0) == pytest.approx(0.5)
    result = evaluate_case(ref, pred, tolerances=(1, 2, 3))
    assert result.at_tolerances("nsd") == pytest.approx({1.0: 0.5, 2.0: 11 / 18, 3.0: 1.0})
    assert result.at_tolerances("contour_f1") == pytest.approx({1.0: 0.5, 2.0: 11 / 18, 3.0: 1.0})
    assert result.n_ref_boundary == 36 and result.n_pred_boundary == 36


def test_directed_and_pooled_hd95_differ_on_a_nearby_false_positive():
    # ref_to_pred: 16 zeros (the square's ring is predicted exactly).
    # pred_to_ref: 16 zeros and 10 (pixel (4,16) to the ring pixel (4,6)).
    # Directed 95th percentile of pred_to_ref (17 values): position 0.95*16 = 15.2 -> 0 + 0.2*(10 - 0) = 2.
    # Pooled (33 values): position 0.95*32 = 30.4 lies between two zeros -> 0.
    ref, pred = square_with_far_pixel()
    assert hd95(ref, pred) == pytest.approx(2.0)
    assert hd95(ref, pred, pooled=True) == pytest.approx(0.0)
    assert hausdorff(ref, pred) == pytest.approx(10.0)
    # ASSD pools: 10 / (16 + 17) = 10/33. MASD: (0 + 10/17) / 2 = 5/17.
    assert assd(ref, pred) == pytest.approx(10 / 33)
    assert masd(ref, pred) == pytest.approx(5 / 17)
    # Contour F1 at 1 px: precision 16/17, recall 1 -> 2 * (16/17) / (33/17) = 32/33. NSD: 32/33.
    assert contour_f1(ref, pred, tolerance=1) == pytest.approx(32 / 33)
    assert nsd(ref, pred, tolerance=1) == pytest.approx(32 / 33)


def test_contour_f1_differs_from_nsd_when_correct_counts_differ():
    # ref: 5x5 square (rows/cols 2..6), ring 16 px. pred: 7x5 rectangle (rows 2..8, cols 2..6), ring
    # 7*5 - 5*3 = 20 px, plus an isolated pixel at (11, 11): 21 boundary px.
    # Tolerance 0 (exact matches): shared ring pixels = top row (5) + cols 2 and 6 on rows 3..6 (8) = 13.
    #   NSD = 26/37; F1 = 2 * (13/21)(13/16) / (13/21 + 13/16) = 26/37 (equal correct counts -> equal values).
    # Tolerance 2: every ref ring px is within 2 (the worst, (6, 4), is 2 from (8, 4)): 16/16. pred: the ring
    #   (rows 7, 8 are 1 or 2 from ref row 6) 20 within, the isolated pixel sqrt(5^2 + 5^2) away: 20/21.
    #   NSD = 36/37, but F1 = 2 * (20/21) * 1 / (20/21 + 1) = 40/41.
    ref = np.zeros((12, 12), bool)
    ref[2:7, 2:7] = True
    pred = np.zeros_like(ref)
    pred[2:9, 2:7] = True
    pred[11, 11] = True
    assert nsd(ref, pred, tolerance=0) == pytest.approx(26 / 37)
    assert contour_f1(ref, pred, tolerance=0) == pytest.approx(26 / 37)
    assert nsd(ref, pred, tolerance=2) == pytest.approx(36 / 37)
    assert contour_f1(ref, pred, tolerance=2) == pytest.approx(40 / 41)


def test_two_voxels_two_millimetres_apart():
    # One voxel each, neighbours along z with 2 mm slices: every distance is 2 mm (a single voxel is its own
    # boundary). Dice 0, HD = HD95 = ASSD = MASD = 2; NSD and F1 are 1 at tolerance 2 and 0 at 1.9.
    ref = np.zeros((4, 3, 3), bool)
    pred = np.zeros_like(ref)
    ref[1, 1, 1] = True
    pred[2, 1, 1] = True
    spacing = (2.0, 1.0, 1.0)
    result = evaluate_case(ref, pred, spacing=spacing, tolerance=2.0)
    assert (result.dice, result.iou) == (0.0, 0.0)
    for name in ("hd", "hd95", "hd95_pooled", "assd", "masd"):
        assert getattr(result, name) == pytest.approx(2.0), name
    assert result.nsd == 1.0 and result.contour_f1 == 1.0
    assert nsd(ref, pred, spacing=spacing, tolerance=1.9) == 0.0


def test_anisotropic_spacing_follows_numpy_axis_order():
    # spacing (3, 0.5, 0.5) for (z, y, x): a 3-voxel shift along x is 1.5 mm, one slice along z is 3 mm.
    ref = np.zeros((4, 6, 6), bool)
    ref[1, 1, 1] = True
    along_x = np.zeros_like(ref)
    along_x[1, 1, 4] = True
    along_z = np.zeros_like(ref)
    along_z[2, 1, 1] = True
    spacing = (3.0, 0.5, 0.5)
    assert hausdorff(ref, along_x, spacing=spacing) == pytest.approx(1.5)
    assert hausdorff(ref, along_z, spacing=spacing) == pytest.approx(3.0)
    # A tolerance equal to a distance on a 0.7 mm grid counts as within despite sqrt rounding.
    assert nsd(ref, along_x, spacing=(3.0, 0.7, 0.7), tolerance=2.1) == 1.0


def test_border_touching_mask_has_a_boundary_on_the_image_border():
    # ref fills the whole 5x5 image: outside counts as background, so its boundary is the 16-pixel ring.
    # pred = columns 0..3: ring of a 5x4 rectangle, 20 - 3*2 = 14 px.
    # ref_to_pred: ref col 4 (5 px) -> 1 (pred col 3); the other 11 ring px lie on pred's ring -> 0.
    # pred_to_ref: pred col 3 rows 1..3 -> 1 (to (r, 4) or the top/bottom row); the other 11 -> 0.
    # HD 1; ASSD = (5 + 3) / 30; MASD = (5/16 + 3/14) / 2; Dice = 2*20/45 = 8/9.
    ref = np.ones((5, 5), bool)
    pred = ref.copy()
    pred[:, 4] = False
    assert boundary(ref).sum() == 16
    assert boundary(pred).sum() == 14
    assert hausdorff(ref, pred) == pytest.approx(1.0)
    assert assd(ref, pred) == pytest.approx(8 / 30)
    assert masd(ref, pred) == pytest.approx((5 / 16 + 3 / 14) / 2)
    assert dice(ref, pred) == pytest.approx(8 / 9)


def test_single_voxel_is_its_own_boundary():
    mask = np.zeros((3, 3, 3), bool)
    mask[1, 1, 1] = True
    np.testing.assert_array_equal(boundary(mask), mask)
    assert evaluate_case(mask, mask).as_dict()["hd"] == 0.0


def test_boundary_is_the_face_connected_inner_ring():
    # 4x4 block: 16 px, interior 2x2 = 4 px with all four face-neighbours inside -> 12 boundary px.
    # A diagonal-only background neighbour does not make a boundary pixel (face-connected erosion).
    mask = np.zeros((6, 6), bool)
    mask[1:5, 1:5] = True
    expected = mask.copy()
    expected[2:4, 2:4] = False
    np.testing.assert_array_equal(boundary(mask), expected)


# ---------------------------------------------------------------- the empty-mask table, one test per cell
def test_both_empty():
    empty = np.zeros((6, 7), bool)
    result = evaluate_case(empty, empty)
    for name in ("dice", "iou", "nsd", "contour_f1"):
        assert getattr(result, name) == 1.0, name
    for name in ("hd", "hd95", "hd95_pooled", "assd", "masd"):
        assert getattr(result, name) == 0.0, name
    assert result.penalty_used == frozenset()
    assert (result.ref_empty, result.pred_empty) == (True, True)
    assert dice(empty, empty) == 1.0 and iou(empty, empty) == 1.0
    assert hd95(empty, empty) == 0.0 and assd(empty, empty) == 0.0 and masd(empty, empty) == 0.0
    assert nsd(empty, empty, tolerance=1) == 1.0 and contour_f1(empty, empty, tolerance=1) == 1.0


@pytest.mark.parametrize("which", ["ref", "pred"])
def test_exactly_one_empty_scores_zero_and_the_diagonal_penalty(which):
    # Default penalty: field-of-view diagonal. Shape (4, 6), spacing (2, 0.5): sqrt(8^2 + 3^2) = sqrt(73).
    full = np.zeros((4, 6), bool)
    full[1:3, 1:3] = True
    empty = np.zeros_like(full)
    ref, pred = (empty, full) if which == "ref" else (full, empty)
    result = evaluate_case(ref, pred, spacing=(2.0, 0.5))
    for name in ("dice", "iou", "nsd", "contour_f1"):
        assert getattr(result, name) == 0.0, name
    for name in ("hd", "hd95", "hd95_pooled", "assd", "masd"):
        assert getattr(result, name) == pytest.approx(math.sqrt(73)), name
    assert result.penalty_used == frozenset({"hd", "hd95", "hd95_pooled", "assd", "masd"})
    assert result.as_dict()["hd95_penalty"] is True
    assert hausdorff(ref, pred, spacing=(2.0, 0.5), penalty=50) == 50.0
    assert assd(ref, pred, penalty=7.5) == 7.5 and masd(ref, pred, penalty=7.5) == 7.5


def test_penalty_exceeds_any_real_distance():
    # Opposite corners of a 4x6 grid: the largest possible distance sqrt(3^2 + 5^2) < diagonal sqrt(4^2 + 6^2).
    ref = np.zeros((4, 6), bool)
    pred = np.zeros_like(ref)
    ref[0, 0] = pred[3, 5] = True
    assert hausdorff(ref, pred) == pytest.approx(math.sqrt(34))
    assert image_diagonal(ref.shape) == pytest.approx(math.sqrt(52))


def test_no_metric_is_nan_or_inf_on_empty_cases():
    table = empty_mask_table()
    values = table.drop(columns=["case", "penalty_used"]).to_numpy(dtype=float)
    assert np.isfinite(values).all()
    assert list(table["case"]) == ["both empty", "reference empty only", "prediction empty only"]


# ---------------------------------------------------------------- ignore mask
def test_ignore_removes_voxels_from_both_masks():
    ref, pred = square_pair()
    ignore = np.zeros_like(ref)
    ignore[15:19, 15:19] = True
    pred_extra = pred.copy()
    pred_extra[15:19, 15:19] = True  # a false positive entirely inside the ignore region
    with_ignore = evaluate_case(ref, pred_extra, ignore=ignore).as_dict()
    assert with_ignore == evaluate_case(ref, pred).as_dict()
    # Ignoring the whole reference leaves it empty: the prediction is scored against nothing.
    result = evaluate_case(ref, pred, ignore=ref)
    assert result.ref_empty and result.penalty_used


def test_ignore_changes_the_boundary_where_it_cuts():
    # Ignoring the right half of a 4x4 block leaves a 4x2 block whose boundary is all 8 px.
    mask = np.zeros((6, 6), bool)
    mask[1:5, 1:5] = True
    ignore = np.zeros_like(mask)
    ignore[:, 3:] = True
    sd = surface_distances(mask, mask, ignore=ignore)
    assert sd.n_ref_boundary == 8


# ---------------------------------------------------------------- validation
def test_rejects_bad_inputs():
    good = np.zeros((4, 4), bool)
    with pytest.raises(TypeError, match="ref must have dtype bool, got dtype int64"):
        dice(np.zeros((4, 4), np.int64), good)
    with pytest.raises(TypeError, match="pred must be a numpy.ndarray"):
        dice(good, good.tolist())
    with pytest.raises(ValueError, match=r"same shape, got ref \(4, 4\) and pred \(4, 5\)"):
        iou(good, np.zeros((4, 5), bool))
    with pytest.raises(ValueError, match="ref must be 2D .* got 4D"):
        dice(np.zeros((2, 2, 2, 2), bool), np.zeros((2, 2, 2, 2), bool))
    with pytest.raises(ValueError, match=r"spacing must have one value per axis \(2\)"):
        hd95(good, good, spacing=(1.0,))
    with pytest.raises(ValueError, match="spacing values must be finite and > 0, got 0.0"):
        assd(good, good, spacing=(1.0, 0.0))
    with pytest.raises(TypeError, match="spacing must be a sequence"):
        assd(good, good, spacing=2.0)
    with pytest.raises(ValueError, match="tolerance must be finite and >= 0, got -1.0"):
        nsd(good, good, tolerance=-1)
    with pytest.raises(ValueError, match=r"percentile must be in \[0, 100\], got 101.0"):
        hausdorff(good, good, percentile=101)
    with pytest.raises(ValueError, match="penalty must be finite and > 0, got inf"):
        evaluate_case(good, good, penalty=float("inf"))
    with pytest.raises(ValueError, match=r"ignore must have the masks' shape \(4, 4\), got \(3, 3\)"):
        evaluate_case(good, good, ignore=np.zeros((3, 3), bool))
    with pytest.raises(TypeError, match="tolerances must be a sequence"):
        evaluate_case(good, good, tolerances=2.0)


def test_inputs_are_not_mutated():
    ref, pred = square_pair()
    ignore = np.zeros_like(ref)
    ignore[0:5, 0:5] = True
    copies = [a.copy() for a in (ref, pred, ignore)]
    evaluate_case(ref, pred, ignore=ignore)
    for before, after in zip(copies, (ref, pred, ignore)):
        np.testing.assert_array_equal(before, after)


# ---------------------------------------------------------------- properties on random masks
def random_pair(rng, shape, p=0.3):
    ref = rng.random(shape) < p
    pred = rng.random(shape) < p
    return ref, pred


@pytest.mark.parametrize("shape", [(17, 23), (7, 11, 13)])
def test_symmetry(shape):
    rng = np.random.default_rng(1)
    ref, pred = random_pair(rng, shape)
    spacing = tuple(rng.uniform(0.5, 3.0, len(shape)))
    a = evaluate_case(ref, pred, spacing=spacing, tolerance=1.7).metric_values()
    b = evaluate_case(pred, ref, spacing=spacing, tolerance=1.7).metric_values()
    assert a == pytest.approx(b, rel=1e-12)


def test_translation_invariance():
    rng = np.random.default_rng(2)
    ref, pred = random_pair(rng, (6, 9, 10))
    big_ref = np.zeros((14, 20, 21), bool)
    big_pred = np.zeros_like(big_ref)
    big_ref[5:11, 7:16, 3:13] = ref
    big_pred[5:11, 7:16, 3:13] = pred
    spacing = (2.5, 0.9, 1.1)
    small = evaluate_case(ref, pred, spacing=spacing, penalty=100).metric_values()
    big = evaluate_case(big_ref, big_pred, spacing=spacing, penalty=100).metric_values()
    assert small == pytest.approx(big, rel=1e-12)


def test_scaling_with_spacing():
    # Multiplying every spacing by c multiplies every distance by c; NSD at tolerance c*t is unchanged.
    rng = np.random.default_rng(3)
    ref, pred = random_pair(rng, (8, 12, 12), p=0.2)
    base = evaluate_case(ref, pred, spacing=(3.0, 1.0, 0.5), tolerance=1.2)
    scaled = evaluate_case(ref, pred, spacing=(7.5, 2.5, 1.25), tolerance=3.0)
    for name in ("hd", "hd95", "hd95_pooled", "assd", "masd"):
        assert getattr(scaled, name) == pytest.approx(2.5 * getattr(base, name), rel=1e-12), name
    for name in ("dice", "iou", "nsd", "contour_f1"):
        assert getattr(scaled, name) == pytest.approx(getattr(base, name), rel=1e-12), name


def test_ranges_and_orderings():
    rng = np.random.default_rng(4)
    for _ in range(5):
        ref, pred = random_pair(rng, (9, 14, 14), p=rng.uniform(0.02, 0.4))
        r = evaluate_case(ref, pred, spacing=(2.0, 1.0, 1.0), tolerance=1.5)
        for name in ("dice", "iou", "nsd", "contour_f1"):
            assert 0.0 <= getattr(r, name) <= 1.0
        assert r.iou <= r.dice
        assert r.hd95 <= r.hd and r.hd95_pooled <= r.hd
        assert r.assd <= r.hd and r.masd <= r.hd
        # Dice is the harmonic mean of sensitivity and precision: Dice = 2 IoU / (1 + IoU).
        assert r.dice == pytest.approx(2 * r.iou / (1 + r.iou))


def test_identical_masks_are_perfect():
    rng = np.random.default_rng(5)
    mask = rng.random((6, 10, 10)) < 0.3
    r = evaluate_case(mask, mask, spacing=(3, 1, 1), tolerance=0)
    assert (r.dice, r.iou, r.nsd, r.contour_f1) == (1.0, 1.0, 1.0, 1.0)
    assert (r.hd, r.hd95, r.assd, r.masd) == (0.0, 0.0, 0.0, 0.0)


# ---------------------------------------------------------------- independent brute force
def brute_force_boundary(mask):
    """Boundary by explicit face-neighbour checks on a zero-padded copy (no erosion)."""
    padded = np.pad(mask, 1)
    interior = np.ones_like(mask)
    for axis in range(mask.ndim):
        for step in (-1, 1):
            interior &= np.roll(padded, step, axis=axis)[tuple(slice(1, -1) for _ in range(mask.ndim))]
    return mask & ~interior


@pytest.mark.parametrize("shape", [(15, 18), (6, 9, 11)])
def test_against_brute_force_distances(shape):
    rng = np.random.default_rng(6)
    ref, pred = random_pair(rng, shape, p=0.15)
    spacing = tuple(rng.uniform(0.5, 3.0, len(shape)))
    np.testing.assert_array_equal(boundary(ref), brute_force_boundary(ref))
    rb = np.argwhere(brute_force_boundary(ref)) * spacing
    pb = np.argwhere(brute_force_boundary(pred)) * spacing
    d = cdist(rb, pb)
    r2p, p2r = d.min(axis=1), d.min(axis=0)
    r = evaluate_case(ref, pred, spacing=spacing, tolerance=1.6)
    assert r.hd == pytest.approx(max(r2p.max(), p2r.max()), rel=1e-12)
    assert r.hd95 == pytest.approx(max(np.percentile(r2p, 95), np.percentile(p2r, 95)), rel=1e-12)
    assert r.hd95_pooled == pytest.approx(np.percentile(np.concatenate([r2p, p2r]), 95), rel=1e-12)
    assert r.assd == pytest.approx(np.concatenate([r2p, p2r]).mean(), rel=1e-12)
    assert r.masd == pytest.approx((r2p.mean() + p2r.mean()) / 2, rel=1e-12)
    precision, recall = (p2r <= 1.6).mean(), (r2p <= 1.6).mean()
    assert r.contour_f1 == pytest.approx(2 * precision * recall / (precision + recall), rel=1e-12)


# ---------------------------------------------------------------- cross-check against MONAI 1.6.1
# MONAI's edges are binary_erosion(mask) ^ mask (face-connected, outside = background) on a crop with a
# one-voxel margin: our boundary. Its distances are exact Euclidean (k-d tree, float64) cast to float32, so
# values agree to float32 precision (rtol 1e-6). Its symmetric ASD concatenates both directed sets (our
# pooled `assd`); the mean of its two directed ASDs is our `masd`. Its NSD without sub-voxels counts
# boundary voxels, as ours does.
def _monai(fn, ref, pred, **kwargs):
    y = torch.from_numpy(ref[None, None].astype(np.float32))
    y_pred = torch.from_numpy(pred[None, None].astype(np.float32))
    return float(fn(y_pred, y, include_background=True, **kwargs)[0, 0])


@pytest.mark.parametrize("shape,spacing", [((24, 30), (0.8, 1.3)), ((8, 16, 18), (3.0, 0.9, 0.9))])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cross_check_monai(shape, spacing, seed):
    from monai.metrics import (
        compute_average_surface_distance,
        compute_dice,
        compute_hausdorff_distance,
        compute_surface_dice,
    )

    rng = np.random.default_rng(100 + seed)
    ref, pred = random_pair(rng, shape, p=0.1)
    tolerance = 1.45  # no distance on these grids equals it, so float32 rounding cannot flip a count
    r = evaluate_case(ref, pred, spacing=spacing, tolerance=tolerance)
    assert r.dice == pytest.approx(_monai(compute_dice, ref, pred), rel=1e-6)
    assert r.hd == pytest.approx(_monai(compute_hausdorff_distance, ref, pred, spacing=spacing), rel=1e-6)
    assert r.hd95 == pytest.approx(
        _monai(compute_hausdorff_distance, ref, pred, spacing=spacing, percentile=95), rel=1e-6
    )
    assert r.assd == pytest.approx(
        _monai(compute_average_surface_distance, ref, pred, spacing=spacing, symmetric=True), rel=1e-6
    )
    directed = [
        _monai(compute_average_surface_distance, ref, pred, spacing=spacing, symmetric=False),
        _monai(compute_average_surface_distance, pred, ref, spacing=spacing, symmetric=False),
    ]
    assert r.masd == pytest.approx(sum(directed) / 2, rel=1e-6)
    assert r.nsd == pytest.approx(
        _monai(compute_surface_dice, ref, pred, spacing=spacing, class_thresholds=[tolerance]), rel=1e-6
    )


def test_monai_differs_on_empty_masks_where_we_penalise():
    # The documented difference: with an empty reference MONAI's HD is inf; ours is the finite penalty,
    # the diagonal sqrt(6^2 + 6^2) of the 6x6 image.
    from monai.metrics import compute_hausdorff_distance

    ref = np.zeros((6, 6), bool)
    pred = np.zeros_like(ref)
    pred[2:4, 2:4] = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = _monai(compute_hausdorff_distance, ref, pred)
    assert not math.isfinite(theirs)
    assert hausdorff(ref, pred) == pytest.approx(math.sqrt(72))


# ---------------------------------------------------------------- pictures
def test_plot_functions_return_their_axes_and_reject_3d():
    import matplotlib.pyplot as plt

    ref, pred = square_pair()
    fig, axes = plt.subplots(1, 2)
    assert m.plot_boundaries(ref, pred, ax=axes[0], annotate=True) is axes[0]
    assert m.plot_distance_map(ref, pred, tolerance=1.0, ax=axes[1]) is axes[1]
    # The distance map is the distance to the reference boundary: its minimum 0 lies on that boundary.
    image = axes[1].images[0].get_array()
    assert float(image.min()) == 0.0 and float(image.max()) > 0.0
    plt.close(fig)
    with pytest.raises(ValueError, match="must be 2D to plot"):
        m.plot_boundaries(np.zeros((2, 3, 3), bool), np.zeros((2, 3, 3), bool))
    with pytest.raises(ValueError, match="ref must not be empty"):
        m.plot_distance_map(np.zeros((3, 3), bool), np.zeros((3, 3), bool))


# ---------------------------------------------------------------- the fast core's pieces
@pytest.mark.parametrize("percentile", [0.0, 5.0, 50.0, 95.0, 99.9, 100.0])
def test_grouped_percentile_is_numpy_linear_exactly(percentile):
    # Many groups at once (sizes 1..40, repeated values for ties) equal np.percentile(group, q) bit for bit.
    rng = np.random.default_rng(int(percentile * 10))
    sizes = rng.integers(1, 41, size=200)
    groups = [np.sort(rng.choice([0.0, 1.0, np.sqrt(2), 2.5, 7.1], size=n) + rng.random(n) * (rng.random() < 0.5))
              for n in sizes]
    values = np.concatenate(groups)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    ours = m.linear_percentile(values, starts, sizes, percentile)
    expected = np.array([np.percentile(g, percentile) for g in groups])
    np.testing.assert_array_equal(ours, expected)


def test_face_neighbour_boundary_equals_erosion_boundary():
    # The flat-index boundary of the padded crop is the erosion-defined boundary(), on random 2D and 3D masks
    # touching the image border.
    rng = np.random.default_rng(5)
    for shape in [(13, 17), (5, 9, 11)]:
        mask = rng.random(shape) < 0.5
        crop = m.Crop.around(m.mask_box(mask))
        flat = crop.take(mask).ravel()
        foreground = np.flatnonzero(flat)
        on_boundary = foreground[m.on_boundary(flat, foreground, crop.strides)]
        expected = np.zeros(crop.shape, bool)
        expected[(slice(1, -1),) * mask.ndim] = boundary(mask)
        np.testing.assert_array_equal(on_boundary, np.flatnonzero(expected))


def test_importing_metrics_does_not_import_matplotlib():
    import subprocess
    import sys

    code = "import helpers.metrics, sys; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
