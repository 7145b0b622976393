"""The fast lesion-wise engine against a slow reference written plainly from the protocol's words.

The reference (``slow_evaluate_lesions``) shares no code with :mod:`helpers.metrics.lesions` or :mod:`helpers.metrics`:
it labels with ``scipy.ndimage.label``, builds one full-image mask per lesion, settles the region of influence
from one ``scipy.ndimage.distance_transform_edt`` per lesion (lowest id among the lesions within a relative
1e-9 of the nearest), takes boundaries as ``mask & ~binary_erosion(mask)`` (face-connected, outside is
background) and surface distances from the EDT of the other boundary's complement. Random 2D and 3D masks
include ties (integer grids with equal spacing), merged lesions (dilated predictions), lesions touching the
image border and anisotropic spacing.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from helpers.metrics.lesions import evaluate_lesions

METRICS = ("dice", "iou", "hd", "hd95", "hd95_pooled", "assd", "masd", "nsd", "contour_f1")
TOLERANCE = 1.45  # not a grid distance under the spacings below, so rounding cannot flip a count


def _boundary(mask):
    return mask & ~ndimage.binary_erosion(mask, ndimage.generate_binary_structure(mask.ndim, 1), border_value=0)


def slow_evaluate_lesions(ref, pred, spacing, connectivity, penalty, min_overlap=1):
    """Rows ``{lesion_id: {metric: value, "detected": bool}}`` and the false-positive component ids."""
    structure = ndimage.generate_binary_structure(ref.ndim, connectivity)
    labels, n = ndimage.label(ref, structure)
    pred_labels, n_pred = ndimage.label(pred, structure)
    distance_to = np.stack([ndimage.distance_transform_edt(labels != i, sampling=spacing) for i in range(1, n + 1)])
    nearest = distance_to.min(axis=0)
    # Region of influence: the lowest lesion id among those within a relative 1e-9 of the nearest.
    owner = 1 + np.argmax(distance_to <= nearest * (1 + 1e-9) + 1e-12, axis=0)
    rows = {}
    overlapping_any = set()
    for i in range(1, n + 1):
        lesion = labels == i
        components = set(np.unique(pred_labels[lesion])) - {0}
        overlapping_any |= components
        overlap = int((lesion & pred).sum())
        if overlap < min_overlap:
            rows[i] = {"detected": False, "dice": 0.0, "iou": 0.0, "nsd": 0.0, "contour_f1": 0.0,
                       **{name: penalty for name in ("hd", "hd95", "hd95_pooled", "assd", "masd")}}
            continue
        own = np.isin(pred_labels, sorted(components)) & (owner == i)
        ref_boundary, pred_boundary = _boundary(lesion), _boundary(own)
        ref_to_pred = ndimage.distance_transform_edt(~pred_boundary, sampling=spacing)[ref_boundary]
        pred_to_ref = ndimage.distance_transform_edt(~ref_boundary, sampling=spacing)[pred_boundary]
        both = np.concatenate([ref_to_pred, pred_to_ref])
        tol = TOLERANCE * (1 + 1e-9)
        precision = np.mean(pred_to_ref <= tol)
        recall = np.mean(ref_to_pred <= tol)
        rows[i] = {
            "detected": True,
            "dice": 2 * (lesion & own).sum() / (lesion.sum() + own.sum()),
            "iou": (lesion & own).sum() / (lesion | own).sum(),
            "hd": both.max(),
            "hd95": max(np.percentile(ref_to_pred, 95), np.percentile(pred_to_ref, 95)),
            "hd95_pooled": np.percentile(both, 95),
            "assd": both.mean(),
            "masd": (ref_to_pred.mean() + pred_to_ref.mean()) / 2,
            "nsd": np.mean(both <= tol),
            "contour_f1": 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall),
        }
    false_positives = sorted(set(range(1, n_pred + 1)) - overlapping_any)
    return rows, false_positives


def _random_case(rng, shape):
    """Blobs of random size (some touching the border), a prediction from shifted, dilated, eroded and merged
    copies of them, and a few false positives."""
    field = ndimage.gaussian_filter(rng.random(shape), sigma=1.0)
    ref = (field > np.quantile(field, rng.uniform(0.8, 0.9))) | (rng.random(shape) < 0.005)
    ref[(slice(0, 2),) * len(shape)] = True  # border-touching lesion
    pred = ref.copy()
    if rng.random() < 0.6:
        pred = ndimage.binary_dilation(pred)  # merges neighbouring lesions
    pred = np.roll(pred, tuple(rng.integers(-1, 2, size=len(shape))), axis=tuple(range(len(shape))))
    pred &= rng.random(shape) < 0.9
    pred |= rng.random(shape) < 0.01  # false positives and stray voxels
    return ref, pred


CASES = [
    # (shape, spacing, connectivity): equal spacing gives many exact ties, anisotropic spacing none.
    ((30, 34), None, 2),
    ((30, 34), None, 1),
    ((28, 31), (0.7, 1.3), 2),
    ((7, 18, 20), None, 3),
    ((7, 18, 20), (3.0, 0.9, 0.9), 3),
    ((6, 16, 17), (2.0, 0.7, 1.1), 1),
    ((6, 16, 17), (1.0, 1.0, 1.0), 2),
]


@pytest.mark.parametrize("shape, spacing, connectivity", CASES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_engine_equals_slow_reference(shape, spacing, connectivity, seed):
    rng = np.random.default_rng(seed)
    ref, pred = _random_case(rng, shape)
    sampling = spacing or (1.0,) * len(shape)
    penalty = 123.0
    table = evaluate_lesions(ref, pred, spacing=spacing, connectivity=connectivity, tolerance=TOLERANCE,
                             penalty=penalty)
    rows, false_positives = slow_evaluate_lesions(ref, pred, sampling, connectivity, penalty)
    lesions = table[table["kind"] == "lesion"].set_index("lesion_id")
    assert list(lesions.index) == sorted(rows)
    assert len(rows) >= 3 and sum(row["detected"] for row in rows.values()) >= 2
    for i, expected in rows.items():
        assert bool(lesions.loc[i, "detected"]) == expected["detected"], i
        for name in METRICS:
            assert lesions.loc[i, name] == pytest.approx(expected[name], rel=1e-9, abs=1e-12), (i, name)
    assert list(table.loc[table["kind"] == "false_positive", "lesion_id"]) == false_positives


def test_slow_reference_on_the_minimal_attribution_case():
    # The reference itself on the hand-derived case (values derived in tests/test_lesions.py).
    ref = np.array([[1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 1]], bool)
    pred = np.array([[1, 0, 0, 0], [0, 0, 0, 0], [0, 1, 1, 1]], bool)
    rows, _ = slow_evaluate_lesions(ref, pred, (1.0, 1.0), 2, 9.0)
    assert rows[1]["dice"] == 0.5 and rows[1]["hd"] == 2.0 and rows[1]["masd"] == 0.5
