"""Lesions: connected components, their sizes, and the lesion-wise evaluation protocol.

Conventions
-----------
- Axis order: 3D masks are ``(z, y, x)`` with ``z`` the axial (slice) axis; 2D masks are ``(y, x)``.
- ``spacing`` is one positive float per numpy axis, in millimetres; ``None`` means 1 per axis.
- Masks are boolean numpy arrays of equal shape; reference before prediction; options keyword-only.
- Connectivity follows scikit-image: an integer 1..ndim, the largest number of orthogonal steps between two
  neighbours. The default (``None``) is ``ndim``: 8-connectivity in 2D, 26-connectivity in 3D, so that
  diagonally touching voxels belong to the same lesion.
- Lesion ids are the labels of :func:`label_lesions`, 1..n in raster order of each lesion's first voxel
  (the order of :func:`scipy.ndimage.label` and :func:`skimage.measure.label`); 0 is background.

Size columns (one definition for every dataset)
-----------------------------------------------
``n_voxels``
    Number of voxels (pixels in 2D).
``volume_mm3``
    Physical size: ``n_voxels * prod(spacing)``, i.e. mm^3 in 3D and mm^2 (an area) in 2D.
``area_fraction``
    The lesion's share of an image plane. 2D: lesion pixels / image pixels. 3D: the lesion's largest axial
    cross-section (voxels in its most populated ``z`` slice) / axial slice area (``shape[1] * shape[2]``),
    the slice-level equivalent of the 2D definition, so 2D and 3D lesions can share size bins.

Lesion-wise protocol (:func:`evaluate_lesions`)
-----------------------------------------------
- Reference lesions and predicted components are the connected components of each mask (same connectivity).
- A predicted component *overlaps* a reference lesion when they share at least one voxel. A reference lesion is
  *detected* when at least ``min_overlap`` of its voxels (default 1) are predicted.
- Region of influence: each voxel belongs to the reference lesion nearest to it in physical distance (a voxel
  inside a lesion belongs to that lesion); a voxel equidistant from several lesions (within a relative 1e-9)
  goes to the lowest lesion id. This is the nearest-feature partition that ``distance_transform_edt(...,
  return_indices=True)`` on the reference label image gives, computed with a k-d tree over the reference
  boundary voxels (the nearest voxel of a lesion to any outside point is a boundary voxel).
- Per-lesion metrics compare the lesion with the union of the predicted components that overlap it,
  restricted to its region of influence: a component merging two lesions is split between them along their
  equidistance surface (which becomes part of each piece's boundary), and a distant false positive is not
  charged to any lesion. Metrics are those of :mod:`helpers.metrics` on the crop of the lesion and its
  prediction (plus a one-voxel margin), so the definitions are identical to the image-level ones.
- A missed lesion gets Dice, IoU, NSD and contour F1 = 0 and the distance penalty (default: the image
  diagonal, :func:`helpers.metrics.image_diagonal`) with ``penalty = True``, so detected-only boundary
  statistics are a filter on ``detected``.
- Predicted components that share no voxel with any reference lesion are false-positive rows
  (``kind == "false_positive"``, numbered 1..m among the predicted components, ``detected`` missing and
  metric columns NaN, explicitly). Components that overlap a lesion are never false positives, even where
  they reach outside its region of influence.
- ``ignore`` voxels are removed from both masks before labelling.

Empty-mask policy
-----------------
An empty mask has no lesions: :func:`label_lesions` returns zero labels, :func:`lesion_table` an empty
DataFrame with all its columns, and :func:`evaluate_lesions` one false-positive row per predicted component
(no rows when both masks are empty).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import cKDTree

from helpers import metrics as _m
from helpers.metrics import _as_connectivity, _as_mask, _as_spacing


def _structure(ndim: int, connectivity: int) -> np.ndarray:
    return ndimage.generate_binary_structure(ndim, connectivity)


def label_lesions(mask: np.ndarray, *, connectivity: int | None = None) -> tuple[np.ndarray, int]:
    """Label the connected components (lesions) of a binary mask.

    Parameters
    ----------
    mask : numpy.ndarray of bool, 2D ``(y, x)`` or 3D ``(z, y, x)``
        The binary mask.
    connectivity : int, optional
        Neighbourhood as in scikit-image: 1..ndim orthogonal steps. ``None`` (default) means ``ndim``:
        8-connectivity in 2D, 26-connectivity in 3D. ``1`` gives 4- (2D) or 6-connectivity (3D).

    Returns
    -------
    labels : numpy.ndarray of int32
        Same shape as ``mask``; 0 for background, 1..n for lesions in raster order of their first voxel.
    n : int
        The number of lesions.

    Raises
    ------
    TypeError, ValueError
        If ``mask`` is not a 2D/3D boolean array or ``connectivity`` is not in 1..ndim.
    """
    mask = _as_mask(mask, "mask")
    connectivity = _as_connectivity(connectivity, mask.ndim)
    labels, n = ndimage.label(mask, structure=_structure(mask.ndim, connectivity), output=np.int32)
    return labels, int(n)


def _table_columns(ndim: int) -> list[str]:
    return (
        ["lesion_id", "n_voxels", "volume_mm3", "area_fraction"]
        + [f"bbox_min_{axis}" for axis in range(ndim)]
        + [f"bbox_max_{axis}" for axis in range(ndim)]
        + [f"centroid_{axis}" for axis in range(ndim)]
    )


def _table_from_labels(labels: np.ndarray, n: int, spacing: tuple[float, ...]) -> pd.DataFrame:
    """The lesion table of an already labelled image (labels 1..n)."""
    ndim = labels.ndim
    columns = _table_columns(ndim)
    if n == 0:
        frame = pd.DataFrame({name: pd.Series(dtype="int64") for name in columns})
        for name in ["volume_mm3", "area_fraction"] + [f"centroid_{axis}" for axis in range(ndim)]:
            frame[name] = frame[name].astype("float64")
        return frame
    coords = np.nonzero(labels)
    ids = labels[coords].astype(np.int64)
    n_voxels = np.bincount(ids, minlength=n + 1)[1:]
    centroids = [np.bincount(ids, weights=c, minlength=n + 1)[1:] / n_voxels for c in coords]
    if ndim == 2:
        area_fraction = n_voxels / float(labels.size)
    else:
        # Voxels per (lesion, z slice); the largest slice count is the lesion's axial cross-section.
        nz = labels.shape[0]
        per_slice = np.bincount(ids * nz + coords[0], minlength=(n + 1) * nz).reshape(n + 1, nz)[1:]
        area_fraction = per_slice.max(axis=1) / float(labels.shape[1] * labels.shape[2])
    boxes = ndimage.find_objects(labels, max_label=n)
    data = {
        "lesion_id": np.arange(1, n + 1, dtype=np.int64),
        "n_voxels": n_voxels.astype(np.int64),
        "volume_mm3": n_voxels * float(np.prod(spacing)),
        "area_fraction": area_fraction.astype(np.float64),
    }
    for axis in range(ndim):
        data[f"bbox_min_{axis}"] = np.array([box[axis].start for box in boxes], dtype=np.int64)
    for axis in range(ndim):
        data[f"bbox_max_{axis}"] = np.array([box[axis].stop for box in boxes], dtype=np.int64)
    for axis in range(ndim):
        data[f"centroid_{axis}"] = centroids[axis].astype(np.float64)
    return pd.DataFrame(data, columns=columns)


def lesion_table(
    mask: np.ndarray, *, spacing=None, connectivity: int | None = None
) -> pd.DataFrame:
    """One row per lesion (connected component) of ``mask``, in label order.

    Parameters
    ----------
    mask : numpy.ndarray of bool, 2D ``(y, x)`` or 3D ``(z, y, x)``
        The binary mask.
    spacing : sequence of float, optional
        Voxel size per numpy axis in millimetres; ``None`` means 1 per axis.
    connectivity : int, optional
        As in :func:`label_lesions` (default ``ndim``: 8-connectivity in 2D, 26 in 3D).

    Returns
    -------
    pandas.DataFrame
        Columns ``lesion_id`` (1..n, the labels of :func:`label_lesions`), ``n_voxels``, ``volume_mm3``
        (``n_voxels * prod(spacing)``: mm^3 in 3D, mm^2 in 2D), ``area_fraction`` (2D: pixels / image pixels;
        3D: largest axial cross-section / ``shape[1] * shape[2]``), ``bbox_min_<axis>`` (inclusive) and
        ``bbox_max_<axis>`` (exclusive) for axis 0..ndim-1, and ``centroid_<axis>`` in voxel coordinates
        (the mean index along that axis). An empty mask gives an empty frame with these columns.

    Raises
    ------
    TypeError, ValueError
        If ``mask`` is not a 2D/3D boolean array, ``spacing`` is not ndim positive numbers, or
        ``connectivity`` is not in 1..ndim.
    """
    mask = _as_mask(mask, "mask")
    spacing = _as_spacing(spacing, mask.ndim)
    labels, n = label_lesions(mask, connectivity=connectivity)
    return _table_from_labels(labels, n, spacing)


# ------------------------------------------------------------------------------------------- lesion-wise protocol
LESION_METRICS = ("dice", "iou", "hd", "hd95", "hd95_pooled", "assd", "masd", "nsd", "boundary_f1")
_TIE = 1e-9


def _region_of_influence(
    ref_labels: np.ndarray, n_ref: int, points: np.ndarray, spacing: tuple[float, ...]
) -> np.ndarray:
    """The id of the reference lesion nearest to each voxel index in ``points`` (shape (k, ndim), int).

    Voxels inside a lesion get that lesion; others the lesion with the nearest boundary voxel, ties (relative
    1e-9) to the lowest id.
    """
    owner = ref_labels[tuple(points.T)].astype(np.int64)
    outside = owner == 0
    if not outside.any():
        return owner
    if n_ref == 1:
        owner[outside] = 1
        return owner
    boundary_index = np.argwhere(_m._boundary(ref_labels > 0))
    boundary_label = ref_labels[tuple(boundary_index.T)].astype(np.int64)
    scale = np.asarray(spacing)
    tree = cKDTree(boundary_index * scale)
    query = points[outside] * scale
    distance, index = tree.query(query, k=2)
    nearest = boundary_label[index[:, 0]]
    tied = distance[:, 1] <= distance[:, 0] * (1.0 + _TIE) + 1e-12
    for row in np.flatnonzero(tied):
        radius = distance[row, 0] * (1.0 + _TIE) + 1e-12
        nearest[row] = boundary_label[tree.query_ball_point(query[row], radius)].min()
    owner[outside] = nearest
    return owner


def _union_box(boxes: list[tuple[slice, ...]], shape: tuple[int, ...], margin: int) -> tuple[slice, ...]:
    return tuple(
        slice(max(min(b[a].start for b in boxes) - margin, 0), min(max(b[a].stop for b in boxes) + margin, shape[a]))
        for a in range(len(shape))
    )


def _lesion_columns(ndim: int, extra: list[str]) -> list[str]:
    return (
        ["lesion_id", "kind", "detected", "n_voxels", "volume_mm3", "area_fraction", "n_pred_components",
         "overlap_voxels"]
        + list(LESION_METRICS)
        + list(extra)
        + ["penalty"]
        + [f"bbox_min_{axis}" for axis in range(ndim)]
        + [f"bbox_max_{axis}" for axis in range(ndim)]
    )


def evaluate_lesions(
    ref: np.ndarray,
    pred: np.ndarray,
    *,
    spacing=None,
    connectivity: int | None = None,
    ignore=None,
    min_overlap: int = 1,
    tolerance: float = _m.DEFAULT_TOLERANCE,
    tolerances=(),
    penalty=None,
) -> pd.DataFrame:
    """Lesion-wise evaluation: one row per reference lesion and one per false-positive component.

    Parameters
    ----------
    ref, pred : numpy.ndarray of bool, 2D ``(y, x)`` or 3D ``(z, y, x)``, same shape
    spacing : sequence of float, optional
        Voxel size per numpy axis (mm); None means 1.
    connectivity : int, optional
        Lesion connectivity as scikit-image (1..ndim); default ndim (8-connectivity in 2D, 26 in 3D).
    ignore : numpy.ndarray of bool, optional
        Voxels removed from both masks before labelling.
    min_overlap : int, default 1
        A reference lesion is detected when at least this many of its voxels are predicted.
    tolerance : float, default 1.0 mm
        Tolerance of the per-lesion NSD and contour F1.
    tolerances : sequence of float, optional
        Extra tolerances: adds columns ``nsd_tol<t>`` and ``boundary_f1_tol<t>`` (e.g. ``(1, 2, 3)`` for the
        tolerance sensitivity analysis), from the same distances.
    penalty : float, optional
        Distances of a missed lesion; default the whole image's diagonal (:func:`helpers.metrics.image_diagonal`).

    Returns
    -------
    pandas.DataFrame
        Reference-lesion rows first (``kind == "lesion"``, ``lesion_id`` = reference label 1..n), then
        false-positive rows (``kind == "false_positive"``, ``lesion_id`` = predicted-component label). Columns:
        ``lesion_id, kind, detected`` (nullable boolean; missing for false positives), ``n_voxels, volume_mm3,
        area_fraction`` (of the reference lesion or the false-positive component, as :func:`lesion_table`),
        ``n_pred_components`` (predicted components overlapping the lesion), ``overlap_voxels`` (lesion voxels
        predicted), the metrics ``dice, iou, hd, hd95, hd95_pooled, assd, masd, nsd, boundary_f1`` (and the
        ``tolerances`` columns; NaN for false positives), ``penalty`` (True when the distances hold the
        penalty, i.e. the lesion was missed)
        and the ``bbox_min_<axis>``/``bbox_max_<axis>`` of the lesion or component.

    Notes
    -----
    The protocol (overlap rule, region of influence, tie rule, penalties) is stated in the module docstring.
    Lesion-wise recall and false positives per case: :func:`lesion_summary`.
    """
    ref, pred = _m._as_pair(ref, pred)
    ndim = ref.ndim
    spacing = _as_spacing(spacing, ndim)
    connectivity = _as_connectivity(connectivity, ndim)
    ignore = _m._as_ignore(ignore, ref.shape)
    tolerance = _m._as_tolerance(tolerance)
    tolerances = _m._as_tolerances(tolerances)
    extra = [_m._tolerance_key(prefix, t) for prefix in ("nsd", "boundary_f1") for t in tolerances]
    penalty = _m._as_penalty(penalty, ref.shape, spacing)
    if isinstance(min_overlap, bool) or not isinstance(min_overlap, (int, np.integer)):
        raise TypeError(f"min_overlap must be an integer number of voxels >= 1, got {min_overlap!r}")
    if min_overlap < 1:
        raise ValueError(f"min_overlap must be >= 1 voxel, got {min_overlap!r}")
    if ignore is not None:
        ref, pred = ref & ~ignore, pred & ~ignore

    structure = _structure(ndim, connectivity)
    ref_labels, n_ref = ndimage.label(ref, structure=structure, output=np.int32)
    pred_labels, n_pred = ndimage.label(pred, structure=structure, output=np.int32)
    ref_table = _table_from_labels(ref_labels, n_ref, spacing)
    pred_table = _table_from_labels(pred_labels, n_pred, spacing)

    # Overlap matrix as sparse pairs (ref id, pred id) -> shared voxels.
    both = (ref_labels > 0) & (pred_labels > 0)
    pair_ref = ref_labels[both].astype(np.int64)
    pair_pred = pred_labels[both].astype(np.int64)
    overlap_voxels = np.bincount(pair_ref, minlength=n_ref + 1)[1:]
    pairs = np.unique(pair_ref * (n_pred + 1) + pair_pred)
    pairs_ref, pairs_pred = pairs // (n_pred + 1), pairs % (n_pred + 1)
    components_of = {i: pairs_pred[pairs_ref == i] for i in range(1, n_ref + 1)}
    matched_pred = np.unique(pairs_pred)

    # Region of influence, only where it is needed: voxels of components that overlap some lesion.
    pred_boxes = ndimage.find_objects(pred_labels, max_label=n_pred)
    ref_boxes = ndimage.find_objects(ref_labels, max_label=n_ref)
    owner = np.zeros(ref.shape, dtype=np.int32)
    if matched_pred.size:
        is_matched = np.zeros(n_pred + 1, dtype=bool)
        is_matched[matched_pred] = True
        box = _union_box([pred_boxes[j - 1] for j in matched_pred], ref.shape, margin=0)
        points_local = np.argwhere(is_matched[pred_labels[box]])
        offset = np.array([s.start for s in box])
        points = points_local + offset
        owner[tuple(points.T)] = _region_of_influence(ref_labels, n_ref, points, spacing)

    rows = []
    for i in range(1, n_ref + 1):
        lesion_row = ref_table.iloc[i - 1]
        comps = components_of[i]
        detected = bool(overlap_voxels[i - 1] >= min_overlap)
        row = {
            "lesion_id": i,
            "kind": "lesion",
            "detected": detected,
            "n_voxels": int(lesion_row["n_voxels"]),
            "volume_mm3": float(lesion_row["volume_mm3"]),
            "area_fraction": float(lesion_row["area_fraction"]),
            "n_pred_components": int(comps.size),
            "overlap_voxels": int(overlap_voxels[i - 1]),
        }
        if detected:
            box = _union_box([ref_boxes[i - 1]] + [pred_boxes[j - 1] for j in comps], ref.shape, margin=1)
            ref_i = ref_labels[box] == i
            pred_i = owner[box] == i
            sd = _m._surface_distances(ref_i, pred_i, spacing)
            result = _m._metrics_from(ref_i, pred_i, sd, tolerance=tolerance, tolerances=tolerances, penalty=penalty)
            row.update(result.metric_values())
            row["penalty"] = False
        else:
            row.update({name: 0.0 for name in _m.OVERLAP_METRICS + tuple(extra)})
            row.update({name: penalty for name in _m.DISTANCE_METRICS})
            row["penalty"] = True
        for axis in range(ndim):
            row[f"bbox_min_{axis}"] = int(lesion_row[f"bbox_min_{axis}"])
            row[f"bbox_max_{axis}"] = int(lesion_row[f"bbox_max_{axis}"])
        rows.append(row)

    is_matched = np.zeros(n_pred + 1, dtype=bool)
    is_matched[matched_pred] = True
    for j in range(1, n_pred + 1):
        if is_matched[j]:
            continue
        comp_row = pred_table.iloc[j - 1]
        row = {
            "lesion_id": j,
            "kind": "false_positive",
            "detected": pd.NA,
            "n_voxels": int(comp_row["n_voxels"]),
            "volume_mm3": float(comp_row["volume_mm3"]),
            "area_fraction": float(comp_row["area_fraction"]),
            "n_pred_components": 1,
            "overlap_voxels": 0,
            "penalty": False,
        }
        row.update({name: np.nan for name in LESION_METRICS + tuple(extra)})
        for axis in range(ndim):
            row[f"bbox_min_{axis}"] = int(comp_row[f"bbox_min_{axis}"])
            row[f"bbox_max_{axis}"] = int(comp_row[f"bbox_max_{axis}"])
        rows.append(row)

    columns = _lesion_columns(ndim, extra)
    frame = pd.DataFrame(rows, columns=columns)
    frame["lesion_id"] = frame["lesion_id"].astype("int64")
    frame["kind"] = frame["kind"].astype("object")
    frame["detected"] = frame["detected"].astype("boolean")
    for name in ["n_voxels", "n_pred_components", "overlap_voxels"] + [c for c in columns if c.startswith("bbox")]:
        frame[name] = frame[name].astype("int64")
    for name in ["volume_mm3", "area_fraction", *LESION_METRICS, *extra]:
        frame[name] = frame[name].astype("float64")
    frame["penalty"] = frame["penalty"].astype("bool")
    return frame


def lesion_summary(table: pd.DataFrame) -> dict:
    """Case-level lesion counts from an :func:`evaluate_lesions` table.

    Returns
    -------
    dict
        ``n_ref_lesions``, ``n_detected``, ``lesion_recall`` (detected / reference lesions; NaN, explicitly,
        when the case has no reference lesion, with ``n_ref_lesions = 0`` saying why), ``n_false_positive``
        (false-positive components), ``n_penalty`` (missed lesions whose distances hold the penalty).
    """
    if not isinstance(table, pd.DataFrame) or not {"kind", "detected", "penalty"} <= set(table.columns):
        raise TypeError("table must be a DataFrame from evaluate_lesions (columns kind, detected, penalty)")
    lesions = table[table["kind"] == "lesion"]
    n_ref = int(len(lesions))
    n_detected = int(lesions["detected"].astype(bool).sum())
    return {
        "n_ref_lesions": n_ref,
        "n_detected": n_detected,
        "lesion_recall": n_detected / n_ref if n_ref else float("nan"),
        "n_false_positive": int((table["kind"] == "false_positive").sum()),
        "n_penalty": int(lesions["penalty"].sum()),
    }
