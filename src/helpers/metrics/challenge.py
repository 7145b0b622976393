"""Challenge metric sets: the extra per-case values a challenge's table needs beyond the study's metrics, so that a
user can reproduce that table (optional rows of ``per_case_metrics.csv``: ``evaluate --challenge-metrics``).

Sets (:data:`CHALLENGE_SETS`; the metric names are entries of the registry, :data:`helpers.metrics.METRICS`)
------------------------------------------------------------------------------------------------------------
- ``wmh``, the WMH Segmentation Challenge's five: Dice, HD95 (the study's ``dice`` and ``hd95``: the maximum of the
  two directed 95th percentiles, in mm), ``avd_percent``, ``lesion_recall`` (the study's) and ``lesion_f1``.
- ``panoptic``: ``panoptic_quality``.

Definitions (masks after the ignore region is removed from both; lesions are connected components with the
study's connectivity, full by default)
----------------------------------------------------------------------------------------------------------
- ``avd_percent`` = ``100 * |V_pred - V_ref| / V_ref`` (volumes as voxel counts; the voxel volume cancels). NaN with
  reason ``"empty reference"`` when the reference is empty.
- ``lesion_f1`` = ``2 R P / (R + P)`` with ``R`` the share of reference lesions overlapped by the prediction and
  ``P`` the share of predicted components overlapping the reference (any voxel); 0 when ``R + P = 0``; NaN with
  reason ``"no lesion in either mask"`` when both masks are empty.
- ``panoptic_quality`` = ``sum of the matched pairs' IoU / (TP + FP/2 + FN/2)``, a reference lesion and a predicted
  component matched when their IoU exceeds 0.5 (such a match is unique); NaN with reason ``"no lesion in either
  mask"`` when both are empty.
"""

from __future__ import annotations

from types import MappingProxyType

import numpy as np

from helpers.metrics.lesions import label_lesions

__all__ = ["CHALLENGE_SETS", "challenge_metric_names", "challenge_values"]

#: Challenge metric sets: set name -> the metric names its table carries, in the challenge's order.
CHALLENGE_SETS = MappingProxyType({
    "wmh": ("dice", "hd95", "avd_percent", "lesion_recall", "lesion_f1"),
    "panoptic": ("panoptic_quality",),
})
_EXTRA = ("avd_percent", "lesion_f1", "panoptic_quality")


def challenge_metric_names(sets) -> tuple[str, ...]:
    """The metric names of the challenge sets ``sets`` (each a key of :data:`CHALLENGE_SETS`) that the study's rows
    do not already carry, in order, each once."""
    unknown = [s for s in sets if s not in CHALLENGE_SETS]
    if unknown:
        raise ValueError(f"unknown challenge metric set(s) {unknown}; known: {list(CHALLENGE_SETS)}")
    out: list[str] = []
    for s in sets:
        out += [m for m in CHALLENGE_SETS[s] if m in _EXTRA and m not in out]
    return tuple(out)


def challenge_values(ref, pred, *, names, ignore=None, connectivity: int | None = None) -> dict:
    """``{name: (value, reason)}`` of the metrics ``names`` (of :func:`challenge_metric_names`), see the module
    docstring for the definitions."""
    ref, pred = np.asarray(ref, dtype=bool), np.asarray(pred, dtype=bool)
    if ignore is not None:
        keep = ~np.asarray(ignore, dtype=bool)
        ref, pred = ref & keep, pred & keep
    out = {}
    n_ref_vox, n_pred_vox = int(ref.sum()), int(pred.sum())
    if "avd_percent" in names:
        out["avd_percent"] = ((float("nan"), "empty reference") if n_ref_vox == 0
                              else (100.0 * abs(n_pred_vox - n_ref_vox) / n_ref_vox, ""))
    if not {"lesion_f1", "panoptic_quality"} & set(names):
        return out
    union = ref | pred
    if not union.any():
        for name in ("lesion_f1", "panoptic_quality"):
            if name in names:
                out[name] = (float("nan"), "no lesion in either mask")
        return out
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(union))
    ref_lab, n_ref = label_lesions(ref[box], connectivity=connectivity)
    pred_lab, n_pred = label_lesions(pred[box], connectivity=connectivity)
    both = (ref_lab > 0) & (pred_lab > 0)
    pairs, inter = np.unique(np.stack([ref_lab[both], pred_lab[both]]), axis=1, return_counts=True) \
        if both.any() else (np.zeros((2, 0), int), np.zeros(0, int))
    if "lesion_f1" in names:
        recall = len(np.unique(pairs[0])) / n_ref if n_ref else 0.0
        precision = len(np.unique(pairs[1])) / n_pred if n_pred else 0.0
        out["lesion_f1"] = (2 * recall * precision / (recall + precision) if recall + precision else 0.0, "")
    if "panoptic_quality" in names:
        size_ref = np.bincount(ref_lab.ravel(), minlength=n_ref + 1)
        size_pred = np.bincount(pred_lab.ravel(), minlength=n_pred + 1)
        iou = inter / (size_ref[pairs[0]] + size_pred[pairs[1]] - inter) if inter.size else np.zeros(0)
        matched = iou > 0.5
        tp = int(matched.sum())
        fp, fn = n_pred - tp, n_ref - tp
        out["panoptic_quality"] = (float(iou[matched].sum()) / (tp + 0.5 * fp + 0.5 * fn), "")
    return out
