"""Image-level segmentation metrics with every definitional choice named: boundaries, the surface distances
computed once per case, their reductions and the public metric functions.

Conventions
-----------
- Axis order: 3D masks are ``(z, y, x)`` with ``z`` the axial (slice) axis; 2D masks are ``(y, x)``.
- ``spacing`` is one positive float per numpy axis, in millimetres; ``None`` means 1 per axis. Distances,
  tolerances and penalties are in the same unit (mm, or voxels when ``spacing`` is None).
- Masks are boolean numpy arrays (2D or 3D) of equal shape, reference before prediction, options keyword-only.
  Anything else raises a ``TypeError``/``ValueError`` naming the argument; inputs are never thresholded or
  mutated.

Definitions (the defaults; alternatives are parameters)
-------------------------------------------------------
Boundary
    The foreground voxels with at least one face-neighbour in the background: the mask minus its erosion by the
    face-connected structuring element (``scipy.ndimage.generate_binary_structure(ndim, 1)``); outside the
    image counts as background, so a lesion touching the image border has a boundary there. This is MONAI's
    ``get_mask_edges`` (``binary_erosion(mask) ^ mask``) without sub-voxel areas, and MedPy 0.5.2's surface
    at its default ``connectivity=1``.
Surface distances
    Euclidean distance between voxel centres scaled by ``spacing``, from each boundary voxel of one mask to
    the nearest boundary voxel of the other: two *directed* sets, ``ref_to_pred`` (one value per reference
    boundary voxel) and ``pred_to_ref``. They are computed once per case (:func:`surface_distances`:
    boundary voxels found by face-neighbour lookup among the foreground voxels of the union bounding box with
    a one-voxel background frame, then one k-d tree per direction) and every boundary metric is a cheap
    reduction of them.
HD (:func:`hausdorff`, ``percentile=100``)
    ``max(max(ref_to_pred), max(pred_to_ref))``.
HD95 (:func:`hd95`)
    Default (``pooled=False``): the maximum of the two directed 95th percentiles, with linear interpolation
    (``numpy.percentile(..., method="linear")``), as MONAI ``compute_hausdorff_distance``, MetricsReloaded and
    the WMH challenge script. ``pooled=True``: the 95th percentile of both directed sets pooled into one
    (MedPy 0.5.2 ``hd95``, which stacks both directed sets; nnU-Net v1, panoptica). The two differ most on
    small lesions with nearby false positives, which is why the study reports the pooled variant as a
    sensitivity column.
ASSD (:func:`assd`)
    Pooled average symmetric surface distance: ``(sum(ref_to_pred) + sum(pred_to_ref)) / (n_ref + n_pred)``
    over the boundary voxel counts. This equals MONAI's ``compute_average_surface_distance(symmetric=True)``
    and MedPy 0.5.2's ``assd``: both concatenate the two directed sets and take one mean. MedPy's
    ``asd(result, reference)`` is one directed mean (``mean(pred_to_ref)`` for ``asd(pred, ref)``).
MASD (:func:`masd`)
    Mean average surface distance: ``(mean(ref_to_pred) + mean(pred_to_ref)) / 2``, the mean of the two
    directed means (MetricsReloaded ``masd``). MedPy 0.5.2 has no MASD function: its ``assd`` pools the two
    sets (our ASSD); the mean of its two directed ``asd`` calls is our MASD. MASD equals ASSD when both
    boundaries have the same number of voxels.
NSD (:func:`nsd`, surface Dice)
    ``(#{ref_to_pred <= tolerance} + #{pred_to_ref <= tolerance}) / (n_ref + n_pred)``, counting boundary
    voxels (MONAI ``compute_surface_dice`` with ``use_subvoxels=False``; DeepMind's version weights by surfel
    area instead).
Contour F1 (:func:`contour_f1`)
    precision = share of predicted boundary voxels within ``tolerance`` of the reference boundary
    (``pred_to_ref <= tolerance``), recall = share of reference boundary voxels within ``tolerance`` of the
    predicted boundary; F1 = ``2 P R / (P + R)``, and 0 when ``P + R = 0``.
Tolerance
    The default ``tolerance`` of :func:`helpers.metrics.evaluate_case` is ``DEFAULT_TOLERANCE = 1.0`` (mm with a
    spacing, voxels without): a boundary voxel one in-plane voxel (~1 mm in WMH, LiTS and at IDRiD's pixel scale)
    away counts as correct, so a one-voxel outline shift of a small lesion is not penalised while a two-voxel one is.
    A distance counts as within the tolerance when ``d <= tolerance * (1 + 1e-9)``: the slack only absorbs the
    rounding of ``sqrt`` on a distance that equals the tolerance exactly (e.g. ``0.7`` mm on a 0.7 mm grid).
Dice, IoU
    ``2|R∩P| / (|R| + |P|)`` and ``|R∩P| / |R∪P|``, voxel counts (spacing does not matter).

Empty-mask policy (one rule for every function here)
----------------------------------------------------
===================== ========================= ======================================
case                  Dice, IoU, NSD, F1        HD, HD95 (both), ASSD, MASD
===================== ========================= ======================================
both empty            1                         0
reference empty only  0                         ``penalty``
prediction empty only 0                         ``penalty``
===================== ========================= ======================================

``penalty`` defaults to the image diagonal in physical units, ``sqrt(sum((shape_i * spacing_i)**2))`` (the
field-of-view diagonal, strictly larger than any distance between two voxel centres of the image), and can be
set with the ``penalty`` keyword. No function returns NaN or inf; :class:`helpers.metrics.CaseMetrics` records
which metrics hold the penalty so every aggregate can count them.

The registry of these metrics and the one call per case (:func:`helpers.metrics.evaluate_case`) are in
:mod:`helpers.metrics.registry`; pictures of the definitions in :mod:`helpers.metrics.pictures`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from helpers.base.checks import as_ignore, as_mask, as_mask_pair, as_penalty, as_percentile, as_spacing, as_tolerance

__all__ = [
    "DEFAULT_TOLERANCE", "DEFAULT_PERCENTILE", "TOLERANCE_SLACK", "image_diagonal", "resolve_penalty", "boundary",
    "boundary_unchecked", "mask_box", "union_of_boxes", "Crop", "on_boundary", "nearest_distances",
    "linear_percentile", "SurfaceDistances", "surface_distances_unchecked", "surface_distances", "overlap_counts",
    "hausdorff_from", "assd_from", "masd_from", "nsd_from", "contour_f1_from", "dice_from", "iou_from", "dice", "iou",
    "hausdorff", "hd95", "assd", "masd", "nsd", "contour_f1",
]


DEFAULT_TOLERANCE = 1.0
"""Default NSD / contour-F1 tolerance in mm (voxels when ``spacing`` is None)."""

DEFAULT_PERCENTILE = 95.0
TOLERANCE_SLACK = 1e-9
"""Relative slack of the tolerance comparison ``d <= tolerance * (1 + TOLERANCE_SLACK)`` (module docstring)."""


def image_diagonal(shape: tuple[int, ...], spacing=None) -> float:
    """The field-of-view diagonal ``sqrt(sum((shape_i * spacing_i)**2))`` in mm: the default distance penalty.

    It is strictly larger than any distance between two voxel centres of the image, so a penalised case always
    scores worse than any real prediction.
    """
    shape = tuple(int(n) for n in shape)
    spacing = as_spacing(spacing, len(shape))
    return float(math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing))))


def resolve_penalty(penalty, shape: tuple[int, ...], spacing: tuple[float, ...]) -> float:
    """The distance penalty of a case: ``penalty`` validated (finite, > 0, mm), or the image diagonal when None."""
    return as_penalty(penalty, default=image_diagonal(shape, spacing) if penalty is None else 0.0)


# ------------------------------------------------------------------------------------------- boundaries
def boundary(mask: np.ndarray) -> np.ndarray:
    """The boundary of a mask: foreground voxels with a face-neighbour in the background.

    Computed as ``mask & ~binary_erosion(mask, face-connected structure, border_value=0)``: outside the image
    counts as background, so voxels on the image border are boundary voxels.

    Parameters
    ----------
    mask : numpy.ndarray of bool, 2D or 3D

    Returns
    -------
    numpy.ndarray of bool, same shape.
    """
    mask = as_mask(mask, "mask")
    return boundary_unchecked(mask)


def boundary_unchecked(mask: np.ndarray) -> np.ndarray:
    """:func:`boundary` of a mask already validated (no checks): the core it and the pictures share."""
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


# ------------------------------------------------------------------------------------------- the fast core
# The surface kernels below are public because helpers.metrics.lesions computes its per-lesion distances with them (one
# definition of boundary voxel, crop and nearest distance for both modules). Everything below works on the
# foreground voxels of a padded crop, never on the whole image: the crop is the bounding box of the masks grown
# by one background voxel on every side (zeros outside the image, so the image border is background as the
# module docstring says). Voxels are addressed by flat (raveled) indices
# into the crop; a face neighbour is the flat index plus or minus one axis stride, which the padding keeps
# inside the crop.
def mask_box(mask: np.ndarray) -> list[tuple[int, int]] | None:
    """``[(start, stop), ...]`` per axis of the foreground's bounding box; None when ``mask`` is empty.

    The first axis is found from a projection of the whole mask, the others from the projection of the
    slab between its first and last foreground slice, so a large image is read about twice.
    """
    if mask.ndim == 1:
        index = np.flatnonzero(mask)
        return [(int(index[0]), int(index[-1]) + 1)] if index.size else None
    index = np.flatnonzero(mask.any(axis=tuple(range(1, mask.ndim))))
    if index.size == 0:
        return None
    start, stop = int(index[0]), int(index[-1]) + 1
    return [(start, stop)] + mask_box(mask[start:stop].any(axis=0))


def union_of_boxes(*boxes) -> list[tuple[int, int]] | None:
    """The bounding box (as :func:`mask_box`) of the non-None ``boxes``; None when all are None."""
    boxes = [box for box in boxes if box is not None]
    if not boxes:
        return None
    return [(min(b[a][0] for b in boxes), max(b[a][1] for b in boxes)) for a in range(len(boxes[0]))]


@dataclass(frozen=True)
class Crop:
    """A padded crop: ``origin`` is the image index of crop index 0 (the box start minus 1, may be -1).

    :meth:`around` a box (:func:`mask_box`) gives the box grown by one background voxel per side; voxels are
    then flat indices into ``shape``, and a face neighbour is a flat index plus or minus one of ``strides``.
    """

    origin: tuple[int, ...]
    shape: tuple[int, ...]
    strides: tuple[int, ...]

    @classmethod
    def around(cls, box: list[tuple[int, int]]) -> "Crop":
        """The padded crop of ``box`` (``[(start, stop), ...]`` per axis)."""
        shape = tuple(stop - start + 2 for start, stop in box)
        strides = tuple(int(np.prod(shape[axis + 1 :], dtype=np.int64)) for axis in range(len(shape)))
        return cls(tuple(start - 1 for start, _ in box), shape, strides)

    def take(self, mask: np.ndarray) -> np.ndarray:
        """The crop of ``mask`` with its one-voxel background frame (C-contiguous, a copy)."""
        out = np.zeros(self.shape, dtype=mask.dtype)
        inner = tuple(slice(o + 1, o + n - 1) for o, n in zip(self.origin, self.shape))
        out[(slice(1, -1),) * mask.ndim] = mask[inner]
        return out

    def coordinates(self, flat: np.ndarray) -> tuple[np.ndarray, ...]:
        """Crop indices (int64 per axis) of flat indices."""
        return np.unravel_index(flat, self.shape)

    def points(self, flat: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
        """Physical coordinates ``index * spacing`` (crop indices), shape (k, ndim), float64."""
        out = np.empty((flat.size, len(self.shape)), dtype=np.float64)
        for axis, (index, step) in enumerate(zip(self.coordinates(flat), spacing)):
            out[:, axis] = index.astype(np.float64) * step
        return out


def on_boundary(flat_mask: np.ndarray, foreground: np.ndarray, strides: tuple[int, ...]) -> np.ndarray:
    """For each foreground flat index of a padded crop, whether a face neighbour is background.

    ``flat_mask`` is the raveled crop (:meth:`Crop.take`), ``foreground`` its foreground flat indices and
    ``strides`` the crop's (:class:`Crop`); this is the boundary of the module docstring, voxel by voxel.
    """
    inner = np.ones(foreground.size, dtype=bool)
    for stride in strides:
        inner &= flat_mask[foreground + stride]
        inner &= flat_mask[foreground - stride]
    return ~inner


def nearest_distances(tree_points: np.ndarray, query_points: np.ndarray) -> np.ndarray:
    """Euclidean distance from each query point to the nearest tree point (both ``(k, ndim)``, non-empty)."""
    return cKDTree(tree_points).query(query_points, k=1)[0].astype(np.float64)


def linear_percentile(sorted_values: np.ndarray, starts: np.ndarray, counts: np.ndarray, percentile: float):
    """``numpy.percentile(group, percentile, method="linear")`` of many groups at once.

    ``sorted_values[starts[g] : starts[g] + counts[g]]`` is group ``g``, sorted ascending; every count is
    positive. The arithmetic is numpy's own (virtual index ``(n - 1) * q``, and its two-sided linear
    interpolation), so the values are identical, not merely close.
    """
    quantile = np.true_divide(percentile, 100)
    virtual = (counts - 1) * quantile
    previous = np.floor(virtual)
    gamma = virtual - previous
    below = previous.astype(np.int64)
    above = np.minimum(below + 1, counts - 1)
    low = sorted_values[starts + below]
    high = sorted_values[starts + above]
    difference = high - low
    out = low + difference * gamma
    upper = gamma >= 0.5
    out[upper] = (high - difference * (1 - gamma))[upper]
    return out


@dataclass(frozen=True)
class SurfaceDistances:
    """The two directed surface-distance sets of a case: the one expensive intermediate.

    Attributes
    ----------
    ref_to_pred : numpy.ndarray of float64
        For each reference boundary voxel, the distance (mm) to the nearest predicted boundary voxel.
        Empty when either mask is empty.
    pred_to_ref : numpy.ndarray of float64
        For each predicted boundary voxel, the distance to the nearest reference boundary voxel.
    ref_empty, pred_empty : bool
        Whether the (ignore-removed) masks are empty.
    n_ref_boundary, n_pred_boundary : int
        Boundary voxel counts (positive for a non-empty mask).
    """

    ref_to_pred: np.ndarray
    pred_to_ref: np.ndarray
    ref_empty: bool
    pred_empty: bool
    n_ref_boundary: int
    n_pred_boundary: int


def surface_distances_unchecked(ref: np.ndarray, pred: np.ndarray, spacing: tuple[float, ...]) -> SurfaceDistances:
    """Validated-input core of :func:`surface_distances`: boundary voxels by face-neighbour lookup in the padded
    crop of both masks, one k-d tree per direction."""
    ref_box, pred_box = mask_box(ref), mask_box(pred)
    ref_empty, pred_empty = ref_box is None, pred_box is None
    empty = np.empty(0, dtype=np.float64)
    if ref_empty and pred_empty:
        return SurfaceDistances(empty, empty, True, True, 0, 0)
    crop = Crop.around(union_of_boxes(ref_box, pred_box))
    points = []
    for mask, is_empty in ((ref, ref_empty), (pred, pred_empty)):
        if is_empty:
            points.append(np.empty((0, ref.ndim)))
            continue
        flat_mask = crop.take(mask).ravel()
        foreground = np.flatnonzero(flat_mask)
        points.append(crop.points(foreground[on_boundary(flat_mask, foreground, crop.strides)], spacing))
    ref_points, pred_points = points
    if ref_empty or pred_empty:
        return SurfaceDistances(empty, empty, ref_empty, pred_empty, len(ref_points), len(pred_points))
    return SurfaceDistances(
        nearest_distances(pred_points, ref_points),
        nearest_distances(ref_points, pred_points),
        False,
        False,
        len(ref_points),
        len(pred_points),
    )


def surface_distances(ref: np.ndarray, pred: np.ndarray, *, spacing=None, ignore=None) -> SurfaceDistances:
    """Both directed surface-distance sets of a case, computed once (see the module docstring).

    Parameters
    ----------
    ref, pred : numpy.ndarray of bool, 2D or 3D, same shape
    spacing : sequence of float, optional
        Voxel size per numpy axis in mm; None means 1.
    ignore : numpy.ndarray of bool, optional
        Voxels removed from both masks first.

    Returns
    -------
    SurfaceDistances
    """
    ref, pred = as_mask_pair(ref, pred)
    spacing = as_spacing(spacing, ref.ndim)
    ignore = as_ignore(ignore, ref.shape)
    if ignore is not None:
        ref, pred = ref & ~ignore, pred & ~ignore
    return surface_distances_unchecked(ref, pred, spacing)


# ------------------------------------------------------------------------------------------- reductions
def _within(distances: np.ndarray, tolerance: float) -> int:
    return int(np.count_nonzero(distances <= tolerance * (1.0 + TOLERANCE_SLACK)))


def _percentile_distance(sd: SurfaceDistances, percentile: float, pooled: bool) -> float:
    if pooled:
        return float(np.percentile(np.concatenate([sd.ref_to_pred, sd.pred_to_ref]), percentile))
    return float(max(np.percentile(sd.ref_to_pred, percentile), np.percentile(sd.pred_to_ref, percentile)))


def hausdorff_from(sd: SurfaceDistances, percentile: float, pooled: bool, penalty: float) -> float:
    """HD at ``percentile`` (:func:`hausdorff`) reduced from a case's surface distances."""
    if sd.ref_empty and sd.pred_empty:
        return 0.0
    if sd.ref_empty or sd.pred_empty:
        return penalty
    if percentile == 100.0:
        return float(max(sd.ref_to_pred.max(), sd.pred_to_ref.max()))
    return _percentile_distance(sd, percentile, pooled)


def assd_from(sd: SurfaceDistances, penalty: float) -> float:
    """ASSD (:func:`assd`) reduced from a case's surface distances."""
    if sd.ref_empty and sd.pred_empty:
        return 0.0
    if sd.ref_empty or sd.pred_empty:
        return penalty
    return float((sd.ref_to_pred.sum() + sd.pred_to_ref.sum()) / (sd.n_ref_boundary + sd.n_pred_boundary))


def masd_from(sd: SurfaceDistances, penalty: float) -> float:
    """MASD (:func:`masd`) reduced from a case's surface distances."""
    if sd.ref_empty and sd.pred_empty:
        return 0.0
    if sd.ref_empty or sd.pred_empty:
        return penalty
    return float((sd.ref_to_pred.mean() + sd.pred_to_ref.mean()) / 2.0)


def nsd_from(sd: SurfaceDistances, tolerance: float) -> float:
    """NSD at ``tolerance`` (:func:`nsd`) reduced from a case's surface distances."""
    if sd.ref_empty and sd.pred_empty:
        return 1.0
    if sd.ref_empty or sd.pred_empty:
        return 0.0
    correct = _within(sd.ref_to_pred, tolerance) + _within(sd.pred_to_ref, tolerance)
    return correct / float(sd.n_ref_boundary + sd.n_pred_boundary)


def contour_f1_from(sd: SurfaceDistances, tolerance: float) -> float:
    """Contour F1 at ``tolerance`` (:func:`contour_f1`) reduced from a case's surface distances."""
    if sd.ref_empty and sd.pred_empty:
        return 1.0
    if sd.ref_empty or sd.pred_empty:
        return 0.0
    precision = _within(sd.pred_to_ref, tolerance) / float(sd.n_pred_boundary)
    recall = _within(sd.ref_to_pred, tolerance) / float(sd.n_ref_boundary)
    if precision + recall == 0.0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall)


def overlap_counts(ref: np.ndarray, pred: np.ndarray) -> tuple[int, int, int]:
    """``(|R∩P|, |R|, |P|)`` voxel counts of two validated masks."""
    return int(np.count_nonzero(ref & pred)), int(np.count_nonzero(ref)), int(np.count_nonzero(pred))


def dice_from(intersection: int, n_ref: int, n_pred: int) -> float:
    """Dice (:func:`dice`) from the overlap counts (:func:`overlap_counts`)."""
    if n_ref + n_pred == 0:
        return 1.0
    return 2.0 * intersection / float(n_ref + n_pred)


def iou_from(intersection: int, n_ref: int, n_pred: int) -> float:
    """IoU (:func:`iou`) from the overlap counts (:func:`overlap_counts`)."""
    union = n_ref + n_pred - intersection
    if union == 0:
        return 1.0
    return intersection / float(union)


# ------------------------------------------------------------------------------------------- public metrics
def dice(ref: np.ndarray, pred: np.ndarray) -> float:
    """Dice similarity coefficient ``2|R∩P| / (|R| + |P|)`` (voxel counts).

    Both masks empty gives 1; exactly one empty gives 0 (module docstring, empty-mask policy).
    """
    ref, pred = as_mask_pair(ref, pred)
    return dice_from(*overlap_counts(ref, pred))


def iou(ref: np.ndarray, pred: np.ndarray) -> float:
    """Intersection over union (Jaccard) ``|R∩P| / |R∪P|``; both empty gives 1, exactly one empty gives 0."""
    ref, pred = as_mask_pair(ref, pred)
    return iou_from(*overlap_counts(ref, pred))


def hausdorff(
    ref: np.ndarray, pred: np.ndarray, *, spacing=None, percentile: float = 100.0, pooled: bool = False, penalty=None
) -> float:
    """Hausdorff distance, or its percentile variant, between the boundaries of ``ref`` and ``pred`` (mm).

    Parameters
    ----------
    ref, pred : numpy.ndarray of bool, 2D or 3D, same shape
    spacing : sequence of float, optional
        Voxel size per numpy axis (mm); None means 1.
    percentile : float, default 100
        100 gives the maximum: ``max(max(ref_to_pred), max(pred_to_ref))``. Otherwise the percentile with linear
        interpolation, combined as set by ``pooled``.
    pooled : bool, default False
        False: the maximum of the two directed percentiles (MONAI, MetricsReloaded, WMH challenge). True: one
        percentile of both directed sets pooled (MedPy 0.5.2 ``hd95``, nnU-Net v1). Irrelevant at
        ``percentile=100``.
    penalty : float, optional
        Returned when exactly one mask is empty; default the image diagonal (:func:`image_diagonal`).

    Returns
    -------
    float
        0 when both masks are empty.
    """
    ref, pred = as_mask_pair(ref, pred)
    spacing = as_spacing(spacing, ref.ndim)
    percentile = as_percentile(percentile)
    penalty = resolve_penalty(penalty, ref.shape, spacing)
    return hausdorff_from(surface_distances_unchecked(ref, pred, spacing), percentile, bool(pooled), penalty)


def hd95(ref: np.ndarray, pred: np.ndarray, *, spacing=None, pooled: bool = False, penalty=None) -> float:
    """95th-percentile Hausdorff distance: ``hausdorff(..., percentile=95)``.

    Default: the maximum of the two directed 95th percentiles; ``pooled=True``: the 95th percentile of the
    pooled directed sets. Empty masks: see the module docstring.
    """
    return hausdorff(ref, pred, spacing=spacing, percentile=DEFAULT_PERCENTILE, pooled=pooled, penalty=penalty)


def assd(ref: np.ndarray, pred: np.ndarray, *, spacing=None, penalty=None) -> float:
    """Average symmetric surface distance, pooled: ``(sum(ref_to_pred) + sum(pred_to_ref)) / (n_ref + n_pred)``.

    Equal to MONAI ``compute_average_surface_distance(symmetric=True)`` and MedPy 0.5.2 ``assd`` (both pool the
    two directed sets). Empty masks: 0 when both are empty,
    ``penalty`` (default the image diagonal) when exactly one is.
    """
    ref, pred = as_mask_pair(ref, pred)
    spacing = as_spacing(spacing, ref.ndim)
    penalty = resolve_penalty(penalty, ref.shape, spacing)
    return assd_from(surface_distances_unchecked(ref, pred, spacing), penalty)


def masd(ref: np.ndarray, pred: np.ndarray, *, spacing=None, penalty=None) -> float:
    """Mean average surface distance: ``(mean(ref_to_pred) + mean(pred_to_ref)) / 2``.

    The mean of the two directed means (MetricsReloaded ``masd``; *not* MedPy's ``assd``, which pools the two
    sets as :func:`assd` does). Empty masks as :func:`assd`.
    """
    ref, pred = as_mask_pair(ref, pred)
    spacing = as_spacing(spacing, ref.ndim)
    penalty = resolve_penalty(penalty, ref.shape, spacing)
    return masd_from(surface_distances_unchecked(ref, pred, spacing), penalty)


def nsd(ref: np.ndarray, pred: np.ndarray, *, tolerance: float, spacing=None) -> float:
    """Normalized surface distance (surface Dice) at ``tolerance`` (mm).

    ``(#{ref_to_pred <= tol} + #{pred_to_ref <= tol}) / (n_ref + n_pred)`` over boundary voxels. Both masks
    empty gives 1, exactly one empty gives 0.
    """
    ref, pred = as_mask_pair(ref, pred)
    spacing = as_spacing(spacing, ref.ndim)
    tolerance = as_tolerance(tolerance)
    return nsd_from(surface_distances_unchecked(ref, pred, spacing), tolerance)


def contour_f1(ref: np.ndarray, pred: np.ndarray, *, tolerance: float, spacing=None) -> float:
    """Contour F1 at ``tolerance`` (mm): the harmonic mean of boundary precision and recall.

    precision = share of predicted boundary voxels within ``tolerance`` of the reference boundary, recall =
    share of reference boundary voxels within ``tolerance`` of the predicted boundary; 0 when both are 0.
    Both masks empty gives 1, exactly one empty gives 0.
    """
    ref, pred = as_mask_pair(ref, pred)
    spacing = as_spacing(spacing, ref.ndim)
    tolerance = as_tolerance(tolerance)
    return contour_f1_from(surface_distances_unchecked(ref, pred, spacing), tolerance)
