"""Cross-check of helpers.metrics against MedPy 0.5.2 (``medpy.metric.binary``), an independent implementation.

What MedPy 0.5.2's source computes (read for this test): both boundaries are ``mask ^ binary_erosion(mask,
generate_binary_structure(ndim, 1))`` (our boundary; scipy's erosion treats outside the image as background);
``__surface_distances(result, reference)`` is the EDT of the reference boundary's complement read at the result's
boundary voxels (one directed set). ``hd`` is the larger directed maximum (our HD), ``hd95`` the 95th percentile of
both directed sets stacked (our pooled HD95), ``assd`` the mean of both sets concatenated (our pooled ASSD, not
MASD), ``asd(result, reference)`` one directed mean. MedPy raises on an empty mask, so only non-empty cases here.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from helpers.metrics import evaluate_case, surface_distances

binary = pytest.importorskip("medpy.metric.binary")


def _random_pair(rng, shape):
    field = ndimage.gaussian_filter(rng.random(shape), 1.0)
    ref = field > np.quantile(field, 0.8)
    pred = np.roll(ref, 1, axis=-1) & (rng.random(shape) < 0.9)
    pred[(0,) * len(shape)] = True  # a border-touching false positive
    return ref, pred


@pytest.mark.parametrize("shape, spacing", [((24, 30), (0.7, 1.3)), ((6, 14, 16), (3.0, 0.9, 0.9)), ((20, 20), None)])
@pytest.mark.parametrize("seed", [0, 1])
def test_cross_check_medpy(shape, spacing, seed):
    ref, pred = _random_pair(np.random.default_rng(seed), shape)
    ours = evaluate_case(ref, pred, spacing=spacing)
    sd = surface_distances(ref, pred, spacing=spacing)
    assert ours.hd == pytest.approx(binary.hd(pred, ref, voxelspacing=spacing), rel=1e-12)
    assert ours.hd95_pooled == pytest.approx(binary.hd95(pred, ref, voxelspacing=spacing), rel=1e-12)
    assert ours.assd == pytest.approx(binary.assd(pred, ref, voxelspacing=spacing), rel=1e-12)
    assert sd.pred_to_ref.mean() == pytest.approx(binary.asd(pred, ref, voxelspacing=spacing), rel=1e-12)
    assert sd.ref_to_pred.mean() == pytest.approx(binary.asd(ref, pred, voxelspacing=spacing), rel=1e-12)


def test_medpy_assd_is_not_masd():
    # A 2x2 square against a 4x4 square around it: reference boundary 4 voxels (all 1 away from the predicted
    # ring), predicted boundary 12 voxels (4 corners at sqrt(2), 8 edge voxels at 1).
    # Pooled (our ASSD, MedPy assd): (4*1 + 4*sqrt(2) + 8*1) / 16 = (12 + 4 sqrt 2) / 16.
    # MASD: (1 + (4 sqrt 2 + 8) / 12) / 2, which differs.
    ref = np.zeros((6, 6), bool)
    ref[2:4, 2:4] = True
    pred = np.zeros_like(ref)
    pred[1:5, 1:5] = True
    pooled = (12 + 4 * np.sqrt(2)) / 16
    masd = (1 + (4 * np.sqrt(2) + 8) / 12) / 2
    assert binary.assd(pred, ref) == pytest.approx(pooled, rel=1e-12)
    ours = evaluate_case(ref, pred)
    assert ours.assd == pytest.approx(pooled, rel=1e-12)
    assert ours.masd == pytest.approx(masd, rel=1e-12)
    assert abs(ours.masd - pooled) > 1e-3
