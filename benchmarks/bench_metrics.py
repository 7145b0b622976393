"""Benchmark: our image-level metrics + lesion table against MONAI 1.6.1 doing the same work.

A WMH-sized synthetic case (48 x 256 x 256, 3 x 1 x 1 mm, about 60 lesions, a prediction with shifted, eroded,
dilated, merged and missed lesions and false positives). Timed:

- ours: ``evaluate_case`` (all image-level metrics) + ``evaluate_lesions`` (the full lesion table);
- MONAI: image-level HD95, ASSD and NSD (``compute_hausdorff_distance``, ``compute_average_surface_distance``,
  ``compute_surface_dice``) and, per detected lesion, the same three plus Dice on full-volume per-lesion masks
  (lesion vs. the overlapping predicted components restricted to the lesion's region of influence). Building
  the per-lesion masks is not timed (it favours MONAI).

Prints both times, the speed ratio, and the largest relative difference where definitions coincide (HD95 =
MONAI's percentile HD, ASSD = MONAI's symmetric ASD, NSD = MONAI's surface Dice without sub-voxels). MONAI
returns float32, so agreement is to float32 precision (about 1e-7 relative).

Run: ``python benchmarks/bench_metrics.py [--seed 0] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from scipy import ndimage

from helpers.lesions import evaluate_lesions, label_lesions
from helpers.metrics import evaluate_case

SHAPE = (48, 256, 256)
SPACING = (3.0, 1.0, 1.0)
TOLERANCE = 1.45  # mm; not equal to any grid distance, so float32 rounding cannot flip a count


def synthetic_case(seed: int, n_lesions: int = 60):
    """Reference and prediction masks of a WMH-like case (ellipsoids of 1-12 voxel radius in-plane)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    ref = np.zeros(SHAPE, bool)
    pred = np.zeros(SHAPE, bool)
    for k in range(n_lesions):
        cz, cy, cx = rng.integers(4, SHAPE[0] - 4), rng.integers(30, SHAPE[1] - 30), rng.integers(30, SHAPE[2] - 30)
        rz, ry, rx = rng.uniform(0.6, 2.5), rng.uniform(1.0, 12.0), rng.uniform(1.0, 12.0)
        lesion = ((z - cz) / rz) ** 2 + ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1.0
        ref |= lesion
        if rng.random() < 0.15:  # missed
            continue
        shifted = np.roll(lesion, tuple(rng.integers(-2, 3, size=3) * np.array([0, 1, 1])), axis=(0, 1, 2))
        change = rng.random()
        if change < 0.3:
            shifted = ndimage.binary_dilation(shifted)
        elif change < 0.5:
            shifted = ndimage.binary_erosion(shifted) | (lesion & (rng.random(SHAPE) < 0.02))
        pred |= shifted
    for _ in range(15):  # false positives
        cz, cy, cx = rng.integers(2, SHAPE[0] - 2), rng.integers(20, SHAPE[1] - 20), rng.integers(20, SHAPE[2] - 20)
        pred[cz, cy - 1 : cy + 2, cx - 1 : cx + 2] = True
    return ref, pred


def per_lesion_masks(ref, pred):
    """Full-volume per-lesion masks for MONAI: each lesion and its overlapping components within its region."""
    labels, n = label_lesions(ref)
    pred_labels, _ = label_lesions(pred)
    _, index = ndimage.distance_transform_edt(labels == 0, sampling=SPACING, return_indices=True)
    owner = labels[tuple(index)]
    pairs = []
    for i in range(1, n + 1):
        lesion = labels == i
        comps = np.unique(pred_labels[lesion & pred])
        comps = comps[comps > 0]
        if comps.size == 0:
            pairs.append((i, lesion, None))
            continue
        pairs.append((i, lesion, np.isin(pred_labels, comps) & (owner == i)))
    return pairs


def monai_metrics(ref, pred):
    from monai.metrics import (
        compute_average_surface_distance,
        compute_dice,
        compute_hausdorff_distance,
        compute_surface_dice,
    )

    y = torch.from_numpy(ref[None, None].astype(np.float32))
    y_pred = torch.from_numpy(pred[None, None].astype(np.float32))
    kw = dict(include_background=True)
    return {
        "dice": float(compute_dice(y_pred, y, **kw)[0, 0]),
        "hd95": float(compute_hausdorff_distance(y_pred, y, spacing=SPACING, percentile=95, **kw)[0, 0]),
        "assd": float(compute_average_surface_distance(y_pred, y, spacing=SPACING, symmetric=True, **kw)[0, 0]),
        "nsd": float(compute_surface_dice(y_pred, y, spacing=SPACING, class_thresholds=[TOLERANCE], **kw)[0, 0]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    ref, pred = synthetic_case(args.seed)
    n_lesions = label_lesions(ref)[1]
    print(f"case {SHAPE}, spacing {SPACING} mm, {n_lesions} reference lesions, {label_lesions(pred)[1]} predicted "
          f"components, {ref.sum()} / {pred.sum()} voxels")

    ours_times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        case = evaluate_case(ref, pred, spacing=SPACING, tolerance=TOLERANCE)
        table = evaluate_lesions(ref, pred, spacing=SPACING, tolerance=TOLERANCE)
        ours_times.append(time.perf_counter() - start)
    ours = min(ours_times)

    pairs = per_lesion_masks(ref, pred)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        theirs_case = monai_metrics(ref, pred)
        theirs_lesions = {i: monai_metrics(lesion, own) for i, lesion, own in pairs if own is not None}
        theirs = time.perf_counter() - start

    def rel(a, b):
        return abs(a - b) / max(abs(b), 1e-12)

    worst_case = max(rel(getattr(case, name), value) for name, value in theirs_case.items())
    worst_lesion = 0.0
    lesions = table[table["kind"] == "lesion"].set_index("lesion_id")
    for i, values in theirs_lesions.items():
        for name, value in values.items():
            worst_lesion = max(worst_lesion, rel(float(lesions.loc[i, name]), value))
    print(f"image level: ours hd95 {case.hd95:.4f} assd {case.assd:.4f} nsd {case.nsd:.4f} | "
          f"MONAI hd95 {theirs_case['hd95']:.4f} assd {theirs_case['assd']:.4f} nsd {theirs_case['nsd']:.4f}")
    print(f"lesions: {len(lesions)} reference, {int(lesions['detected'].sum())} detected (compared with MONAI), "
          f"{int((table['kind'] == 'false_positive').sum())} false-positive components")
    print(f"ours  (image-level metrics + lesion table): {ours:.3f} s (best of {args.repeats})")
    print(f"MONAI (image-level + per-lesion HD95/ASSD/NSD/Dice): {theirs:.3f} s")
    print(f"speed ratio MONAI / ours: {theirs / ours:.1f}x")
    print(f"max relative difference: image level {worst_case:.2e}, per lesion {worst_lesion:.2e}")


if __name__ == "__main__":
    main()
