"""Image-level segmentation metrics with every definitional choice named.

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
    The default ``tolerance`` of :func:`evaluate_case` is ``DEFAULT_TOLERANCE = 1.0`` (mm with a spacing, voxels
    without): a boundary voxel one in-plane voxel (~1 mm in WMH, LiTS and at IDRiD's pixel scale) away counts
    as correct, so a one-voxel outline shift of a small lesion is not penalised while a two-voxel one is.
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
set with the ``penalty`` keyword. No function returns NaN or inf; :class:`CaseMetrics` records which metrics
hold the penalty so every aggregate can count them.

Registry
--------
:data:`METRICS` holds one :class:`Metric` per metric of the study: name (the one name in every table; contour
F1 is ``contour_f1`` everywhere), kind (overlap / boundary / distance / detection), direction, unit, figure
label, the tables that carry it, and its image-level reducer over :class:`CaseInputs`. Tables, rankings and
figures ask it (:func:`metric_names`, :func:`higher_is_better`, :func:`label`, :func:`tolerance_name`) instead of
keeping lists. A new metric is one entry there plus its reducer; a per-lesion value also needs its vectorised
form in :func:`helpers.metrics.lesions.evaluate_case_and_lesions`.

Ignore mask
-----------
Wherever a case is evaluated (:func:`evaluate_case`, :func:`helpers.metrics.lesions.evaluate_lesions`) an ``ignore``
mask (e.g. WMH label 2, "other pathology") is accepted: its voxels are removed from both masks before any
metric, so they are neither foreground nor boundary.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import cKDTree

from helpers.base.checks import as_ignore, as_mask, as_mask_pair, as_penalty, as_percentile, as_spacing, as_tolerance, as_tolerances
from helpers.base.plots import get_axes

__all__ = [
    "DEFAULT_TOLERANCE", "DEFAULT_PERCENTILE", "TOLERANCE_SLACK", "image_diagonal", "resolve_penalty", "boundary",
    "mask_box", "union_of_boxes", "Crop", "on_boundary", "nearest_distances", "linear_percentile",
    "SurfaceDistances", "surface_distances", "dice", "iou", "hausdorff", "hd95", "assd", "masd", "nsd",
    "contour_f1", "CaseInputs", "METRIC_KINDS", "TABLES", "Metric", "METRICS", "tolerance_name",
    "split_tolerance_name", "metric", "metric_names", "higher_is_better", "label", "CaseMetrics", "overlap_counts",
    "case_metrics_from", "evaluate_case", "empty_mask_table", "plot_boundaries", "plot_distance_map",
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
    return _boundary(mask)


def _boundary(mask: np.ndarray) -> np.ndarray:
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


def _surface_distances(ref: np.ndarray, pred: np.ndarray, spacing: tuple[float, ...]) -> SurfaceDistances:
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
    return _surface_distances(ref, pred, spacing)


# ------------------------------------------------------------------------------------------- reductions
def _within(distances: np.ndarray, tolerance: float) -> int:
    return int(np.count_nonzero(distances <= tolerance * (1.0 + TOLERANCE_SLACK)))


def _percentile_distance(sd: SurfaceDistances, percentile: float, pooled: bool) -> float:
    if pooled:
        return float(np.percentile(np.concatenate([sd.ref_to_pred, sd.pred_to_ref]), percentile))
    return float(max(np.percentile(sd.ref_to_pred, percentile), np.percentile(sd.pred_to_ref, percentile)))


def _hausdorff_from(sd: SurfaceDistances, percentile: float, pooled: bool, penalty: float) -> float:
    if sd.ref_empty and sd.pred_empty:
        return 0.0
    if sd.ref_empty or sd.pred_empty:
        return penalty
    if percentile == 100.0:
        return float(max(sd.ref_to_pred.max(), sd.pred_to_ref.max()))
    return _percentile_distance(sd, percentile, pooled)


def _assd_from(sd: SurfaceDistances, penalty: float) -> float:
    if sd.ref_empty and sd.pred_empty:
        return 0.0
    if sd.ref_empty or sd.pred_empty:
        return penalty
    return float((sd.ref_to_pred.sum() + sd.pred_to_ref.sum()) / (sd.n_ref_boundary + sd.n_pred_boundary))


def _masd_from(sd: SurfaceDistances, penalty: float) -> float:
    if sd.ref_empty and sd.pred_empty:
        return 0.0
    if sd.ref_empty or sd.pred_empty:
        return penalty
    return float((sd.ref_to_pred.mean() + sd.pred_to_ref.mean()) / 2.0)


def _nsd_from(sd: SurfaceDistances, tolerance: float) -> float:
    if sd.ref_empty and sd.pred_empty:
        return 1.0
    if sd.ref_empty or sd.pred_empty:
        return 0.0
    correct = _within(sd.ref_to_pred, tolerance) + _within(sd.pred_to_ref, tolerance)
    return correct / float(sd.n_ref_boundary + sd.n_pred_boundary)


def _contour_f1_from(sd: SurfaceDistances, tolerance: float) -> float:
    if sd.ref_empty and sd.pred_empty:
        return 1.0
    if sd.ref_empty or sd.pred_empty:
        return 0.0
    precision = _within(sd.pred_to_ref, tolerance) / float(sd.n_pred_boundary)
    recall = _within(sd.ref_to_pred, tolerance) / float(sd.n_ref_boundary)
    if precision + recall == 0.0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall)


def _dice_from(intersection: int, n_ref: int, n_pred: int) -> float:
    if n_ref + n_pred == 0:
        return 1.0
    return 2.0 * intersection / float(n_ref + n_pred)


def _iou_from(intersection: int, n_ref: int, n_pred: int) -> float:
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
    return _dice_from(*overlap_counts(ref, pred))


def iou(ref: np.ndarray, pred: np.ndarray) -> float:
    """Intersection over union (Jaccard) ``|R∩P| / |R∪P|``; both empty gives 1, exactly one empty gives 0."""
    ref, pred = as_mask_pair(ref, pred)
    return _iou_from(*overlap_counts(ref, pred))


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
    return _hausdorff_from(_surface_distances(ref, pred, spacing), percentile, bool(pooled), penalty)


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
    return _assd_from(_surface_distances(ref, pred, spacing), penalty)


def masd(ref: np.ndarray, pred: np.ndarray, *, spacing=None, penalty=None) -> float:
    """Mean average surface distance: ``(mean(ref_to_pred) + mean(pred_to_ref)) / 2``.

    The mean of the two directed means (MetricsReloaded ``masd``; *not* MedPy's ``assd``, which pools the two
    sets as :func:`assd` does). Empty masks as :func:`assd`.
    """
    ref, pred = as_mask_pair(ref, pred)
    spacing = as_spacing(spacing, ref.ndim)
    penalty = resolve_penalty(penalty, ref.shape, spacing)
    return _masd_from(_surface_distances(ref, pred, spacing), penalty)


def nsd(ref: np.ndarray, pred: np.ndarray, *, tolerance: float, spacing=None) -> float:
    """Normalized surface distance (surface Dice) at ``tolerance`` (mm).

    ``(#{ref_to_pred <= tol} + #{pred_to_ref <= tol}) / (n_ref + n_pred)`` over boundary voxels. Both masks
    empty gives 1, exactly one empty gives 0.
    """
    ref, pred = as_mask_pair(ref, pred)
    spacing = as_spacing(spacing, ref.ndim)
    tolerance = as_tolerance(tolerance)
    return _nsd_from(_surface_distances(ref, pred, spacing), tolerance)


def contour_f1(ref: np.ndarray, pred: np.ndarray, *, tolerance: float, spacing=None) -> float:
    """Contour F1 at ``tolerance`` (mm): the harmonic mean of boundary precision and recall.

    precision = share of predicted boundary voxels within ``tolerance`` of the reference boundary, recall =
    share of reference boundary voxels within ``tolerance`` of the predicted boundary; 0 when both are 0.
    Both masks empty gives 1, exactly one empty gives 0.
    """
    ref, pred = as_mask_pair(ref, pred)
    spacing = as_spacing(spacing, ref.ndim)
    tolerance = as_tolerance(tolerance)
    return _contour_f1_from(_surface_distances(ref, pred, spacing), tolerance)


# ------------------------------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class CaseInputs:
    """What every image-level metric is reduced from: the surface distances and overlap counts of one case,
    computed once (validated, ignore-removed masks).

    ``tolerance`` is the tolerance a tolerance metric is evaluated at; ``penalty`` the distance an undefined
    distance gets; ``spacing`` the voxel size (mm) per axis.
    """

    distances: SurfaceDistances
    intersection: int
    n_ref: int
    n_pred: int
    spacing: tuple[float, ...]
    penalty: float
    tolerance: float


METRIC_KINDS: tuple[str, ...] = ("overlap", "boundary", "distance", "detection")
TABLES: tuple[str, ...] = ("case", "lesion", "sweep")


@dataclass(frozen=True)
class Metric:
    """One metric of the study: its definition's facts, in one place.

    Attributes
    ----------
    name : str
        The name in every table (``metric`` column), ranking and figure.
    kind : {"overlap", "boundary", "distance", "detection"}
        Overlap of voxels (Dice, IoU), agreement of boundaries at a tolerance (NSD, contour F1), a surface
        distance in mm (HD, HD95, ASSD, MASD: the only kind that holds the distance penalty when undefined),
        or lesion detection (counts and recall from the lesion matching).
    higher_is_better : bool
        The direction every ranking uses.
    unit : str
        ``"mm"`` for distances, ``""`` for ratios and counts.
    label : str
        The name shown in figures and tables of the book.
    tables : frozenset of str
        The study tables that carry it: ``"case"`` (``per_case_metrics.csv``), ``"lesion"``
        (``per_lesion_metrics.csv``), ``"sweep"`` (the failure-mode sweep).
    primary : bool
        One of the paper's metrics (section 3.6), in its order; the others are sensitivity variants or
        per-row detection records.
    against_dice : bool
        Compared against Dice in the reversal analysis (the boundary metrics of the paper's section 4.3).
    per_lesion : bool
        Has a vectorised per-lesion form in :func:`helpers.metrics.lesions.evaluate_case_and_lesions` (a column of its
        lesion table).
    per_tolerance : bool
        Also reported at the extra tolerances of a sensitivity analysis, as :func:`tolerance_name` ``(name, t)``.
    compute : callable, optional
        ``compute(CaseInputs) -> float``: the image-level value (:func:`evaluate_case`); None for detection
        metrics, which come from the lesion table (:func:`helpers.metrics.lesions.lesion_summary`).
    """

    name: str
    kind: str
    higher_is_better: bool
    unit: str
    label: str
    tables: frozenset = frozenset()
    primary: bool = False
    against_dice: bool = False
    per_lesion: bool = False
    per_tolerance: bool = False
    compute: Callable[[CaseInputs], float] | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.kind not in METRIC_KINDS:
            raise ValueError(f"metric {self.name!r}: kind must be one of {METRIC_KINDS}, got {self.kind!r}")
        unknown = sorted(set(self.tables) - set(TABLES))
        if unknown:
            raise ValueError(f"metric {self.name!r}: tables {unknown} unknown (known: {TABLES})")

    @property
    def penalised(self) -> bool:
        """Whether the value is the distance penalty when undefined (a missed lesion, one empty mask)."""
        return self.kind == "distance"


def _registry(*metrics: Metric) -> Mapping[str, Metric]:
    return MappingProxyType({m.name: m for m in metrics})


_CASE, _LESION, _SWEEP = "case", "lesion", "sweep"

#: Every metric of the study, in the paper's order (primary metrics first within each kind). Adding a metric:
#: one entry here and its reducer (``compute``) above; tables, rankings and figures learn of it from here.
METRICS: Mapping[str, Metric] = _registry(
    Metric("dice", "overlap", True, "", "Dice", frozenset({_CASE, _LESION, _SWEEP}), primary=True,
           per_lesion=True, compute=lambda x: _dice_from(x.intersection, x.n_ref, x.n_pred)),
    Metric("iou", "overlap", True, "", "IoU", frozenset({_CASE, _LESION}), primary=True,
           per_lesion=True, compute=lambda x: _iou_from(x.intersection, x.n_ref, x.n_pred)),
    Metric("hd", "distance", False, "mm", "HD", frozenset({_SWEEP}),
           per_lesion=True, compute=lambda x: _hausdorff_from(x.distances, 100.0, False, x.penalty)),
    Metric("hd95", "distance", False, "mm", "HD95", frozenset({_CASE, _LESION, _SWEEP}), primary=True,
           against_dice=True, per_lesion=True,
           compute=lambda x: _hausdorff_from(x.distances, DEFAULT_PERCENTILE, False, x.penalty)),
    Metric("hd95_pooled", "distance", False, "mm", "HD95, pooled", frozenset({_CASE, _LESION, _SWEEP}),
           per_lesion=True, compute=lambda x: _hausdorff_from(x.distances, DEFAULT_PERCENTILE, True, x.penalty)),
    Metric("assd", "distance", False, "mm", "ASSD", frozenset({_CASE, _LESION, _SWEEP}), primary=True,
           against_dice=True, per_lesion=True, compute=lambda x: _assd_from(x.distances, x.penalty)),
    Metric("masd", "distance", False, "mm", "MASD", frozenset({_CASE, _LESION}), primary=True,
           per_lesion=True, compute=lambda x: _masd_from(x.distances, x.penalty)),
    Metric("nsd", "boundary", True, "", "NSD", frozenset({_CASE, _LESION, _SWEEP}), primary=True,
           per_tolerance=True, per_lesion=True, compute=lambda x: _nsd_from(x.distances, x.tolerance)),
    Metric("contour_f1", "boundary", True, "", "contour F1", frozenset({_CASE, _LESION, _SWEEP}), primary=True,
           against_dice=True, per_tolerance=True, per_lesion=True,
           compute=lambda x: _contour_f1_from(x.distances, x.tolerance)),
    Metric("lesion_recall", "detection", True, "", "lesion recall", frozenset({_CASE}), primary=True),
    Metric("fp_lesions_per_case", "detection", False, "", "FP lesions / case", primary=True),
    Metric("fp_lesions", "detection", False, "", "FP lesions", frozenset({_CASE})),
    Metric("detected", "detection", True, "", "detected", frozenset({_LESION})),
    Metric("false_positive", "detection", False, "", "false positive", frozenset({_LESION})),
)

_TOLERANCE_INFIX = "_tol"


def tolerance_name(name: str, tolerance: float) -> str:
    """The name of ``name`` at an extra tolerance: ``"<name>_tol<t>"`` (``t`` as ``%g``, in mm), e.g.
    ``tolerance_name("nsd", 2.0) == "nsd_tol2"``; only for a metric with ``per_tolerance``."""
    if not metric(name).per_tolerance:
        raise ValueError(f"metric {name!r} has no tolerance variants (per_tolerance is False)")
    return f"{name}{_TOLERANCE_INFIX}{float(tolerance):g}"


def split_tolerance_name(name: str) -> tuple[str, float | None]:
    """The inverse of :func:`tolerance_name`: ``("nsd", 2.0)`` for ``"nsd_tol2"``, ``(name, None)`` for a
    registered name. Raises ``ValueError`` for a name that is neither."""
    if name in METRICS:
        return name, None
    base, infix, tolerance = str(name).rpartition(_TOLERANCE_INFIX)
    if infix and base in METRICS and METRICS[base].per_tolerance:
        try:
            return base, float(tolerance)
        except ValueError:
            pass
    raise ValueError(f"unknown metric {name!r}: not in helpers.metrics.METRICS ({', '.join(METRICS)}) nor "
                     f"'<name>{_TOLERANCE_INFIX}<mm>' of a metric with tolerance variants")


def metric(name: str) -> Metric:
    """The registry entry of ``name`` (a tolerance variant ``<name>_tol<t>`` resolves to its metric)."""
    return METRICS[split_tolerance_name(name)[0]]


def metric_names(*, kind: str | None = None, table: str | None = None, primary: bool | None = None,
                 against_dice: bool | None = None, computed: bool | None = None,
                 per_lesion: bool | None = None) -> tuple[str, ...]:
    """Registered names in registry order, filtered by ``kind``, the ``table`` that carries them, ``primary``,
    ``against_dice``, ``computed`` (has an image-level ``compute``) and ``per_lesion``; None does not filter."""
    if kind is not None and kind not in METRIC_KINDS:
        raise ValueError(f"kind must be one of {METRIC_KINDS}, got {kind!r}")
    if table is not None and table not in TABLES:
        raise ValueError(f"table must be one of {TABLES}, got {table!r}")
    return tuple(
        m.name for m in METRICS.values()
        if (kind is None or m.kind == kind) and (table is None or table in m.tables)
        and (primary is None or m.primary == primary) and (against_dice is None or m.against_dice == against_dice)
        and (computed is None or (m.compute is not None) == computed)
        and (per_lesion is None or m.per_lesion == per_lesion)
    )


def higher_is_better(name: str, directions: Mapping[str, str] | None = None) -> bool:
    """Whether a higher value of ``name`` is better: from ``directions`` (``{name: "higher" | "lower"}``, for a
    metric outside the registry or a deliberate override) if it names the metric, else from the registry.

    Raises
    ------
    ValueError
        If the metric is in neither, or a direction is not "higher"/"lower".
    """
    if directions is not None and name in directions:
        direction = directions[name]
        if direction not in ("higher", "lower"):
            raise ValueError(f"direction of metric {name!r} must be 'higher' or 'lower', got {direction!r}")
        return direction == "higher"
    try:
        return metric(name).higher_is_better
    except ValueError:
        raise ValueError(f"metric {name!r} has no direction: not in helpers.metrics.METRICS ({', '.join(METRICS)}) "
                         f"nor a tolerance variant of one (pass directions=)") from None


def label(name: str, *, unit: bool = False) -> str:
    """The figure label of ``name`` (``"HD95"``; with ``unit=True`` ``"HD95 (mm)"``); a tolerance variant reads
    ``"NSD at 2 mm"``."""
    base, tolerance = split_tolerance_name(name)
    entry = METRICS[base]
    text = entry.label if tolerance is None else f"{entry.label} at {tolerance:g} mm"
    return f"{text} ({entry.unit})" if unit and entry.unit else text


# ------------------------------------------------------------------------------------------- one call per case
@dataclass(frozen=True)
class CaseMetrics:
    """All image-level metrics of one case, from a single surface-distance computation.

    Attributes
    ----------
    values : mapping of str to float
        Every registered metric with a ``compute`` (:func:`metric_names` ``(computed=True)``), as defined in the
        module docstring, ``nsd`` and ``contour_f1`` at ``tolerance``, then each tolerance variant at the extra
        ``tolerances`` (:func:`tolerance_name`). Never NaN or inf. Each metric is also an attribute
        (``result.hd95``).
    ref_empty, pred_empty : bool
        Whether the masks (after removing ``ignore``) are empty.
    penalty_used : frozenset of str
        Names of the distance metrics that hold the penalty (all of them when exactly one mask is empty).
    penalty : float
        The penalty value (mm) that applied.
    tolerance : float
        The NSD / contour-F1 tolerance (mm).
    tolerances : tuple of float
        The extra tolerances (mm).
    n_ref_voxels, n_pred_voxels, n_ref_boundary, n_pred_boundary : int
        Sizes behind the values.
    """

    values: Mapping[str, float]
    ref_empty: bool
    pred_empty: bool
    penalty_used: frozenset
    penalty: float
    tolerance: float
    tolerances: tuple = ()
    n_ref_voxels: int = 0
    n_pred_voxels: int = 0
    n_ref_boundary: int = 0
    n_pred_boundary: int = 0

    def __getattr__(self, name: str):
        # Only called when normal lookup fails: a metric's name reads its value.
        if name.startswith("_") or name == "values":
            raise AttributeError(name)
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(f"CaseMetrics has no metric or attribute {name!r}") from None

    def at_tolerances(self, name: str) -> dict[float, float]:
        """``{tolerance: value}`` of a tolerance metric (``"nsd"``, ``"contour_f1"``) at the extra tolerances."""
        return {t: self.values[tolerance_name(name, t)] for t in self.tolerances}

    def metric_values(self) -> dict[str, float]:
        """The metric values only (``name -> float``), extra tolerances as ``<name>_tol<t>``."""
        return dict(self.values)

    def as_dict(self) -> dict:
        """A flat dict: metric values, ``<metric>_penalty`` flags, emptiness, penalty, tolerance and sizes."""
        out = self.metric_values()
        for name in metric_names(kind="distance", computed=True):
            out[f"{name}_penalty"] = name in self.penalty_used
        out.update(
            ref_empty=self.ref_empty,
            pred_empty=self.pred_empty,
            penalty=self.penalty,
            tolerance=self.tolerance,
            n_ref_voxels=self.n_ref_voxels,
            n_pred_voxels=self.n_pred_voxels,
            n_ref_boundary=self.n_ref_boundary,
            n_pred_boundary=self.n_pred_boundary,
        )
        return out


def overlap_counts(ref: np.ndarray, pred: np.ndarray) -> tuple[int, int, int]:
    """``(|R∩P|, |R|, |P|)`` voxel counts of two validated masks."""
    return int(np.count_nonzero(ref & pred)), int(np.count_nonzero(ref)), int(np.count_nonzero(pred))


def case_metrics_from(
    distances: SurfaceDistances,
    counts: tuple[int, int, int],
    *,
    spacing: tuple[float, ...],
    tolerance: float,
    tolerances: tuple[float, ...],
    penalty: float,
) -> CaseMetrics:
    """Every registered image-level metric from a case's surface distances and overlap counts
    (:func:`overlap_counts`), all arguments validated: the reduction step of :func:`evaluate_case`, shared with
    :func:`helpers.metrics.lesions.evaluate_case_and_lesions`."""
    inputs = CaseInputs(distances, *counts, spacing=spacing, penalty=penalty, tolerance=tolerance)
    computed = [METRICS[name] for name in metric_names(computed=True)]
    values = {m.name: m.compute(inputs) for m in computed}
    for m in computed:
        if m.per_tolerance:
            for t in tolerances:
                values[tolerance_name(m.name, t)] = m.compute(replace(inputs, tolerance=t))
    penalised = distances.ref_empty != distances.pred_empty
    return CaseMetrics(
        values=MappingProxyType(values),
        ref_empty=distances.ref_empty,
        pred_empty=distances.pred_empty,
        penalty_used=frozenset(m.name for m in computed if m.penalised) if penalised else frozenset(),
        penalty=penalty,
        tolerance=tolerance,
        tolerances=tuple(tolerances),
        n_ref_voxels=counts[1],
        n_pred_voxels=counts[2],
        n_ref_boundary=distances.n_ref_boundary,
        n_pred_boundary=distances.n_pred_boundary,
    )


def evaluate_case(
    ref: np.ndarray,
    pred: np.ndarray,
    *,
    spacing=None,
    ignore=None,
    tolerance: float = DEFAULT_TOLERANCE,
    tolerances=(),
    penalty=None,
) -> CaseMetrics:
    """Every image-level metric of one case from a single surface-distance computation.

    Parameters
    ----------
    ref, pred : numpy.ndarray of bool, 2D ``(y, x)`` or 3D ``(z, y, x)``, same shape
    spacing : sequence of float, optional
        Voxel size per numpy axis (mm); None means 1.
    ignore : numpy.ndarray of bool, optional
        Voxels removed from both masks before any metric (e.g. WMH label 2).
    tolerance : float, default ``DEFAULT_TOLERANCE`` (1.0 mm)
        Tolerance of ``nsd`` and ``contour_f1``.
    tolerances : sequence of float, optional
        Extra tolerances for which NSD and contour F1 are also reported (``nsd_tol<t>``, ``contour_f1_tol<t>``;
        :meth:`CaseMetrics.at_tolerances`), e.g.
        ``(1, 2, 3)`` for the tolerance sensitivity analysis, without recomputing distances.
    penalty : float, optional
        Distance returned when exactly one mask is empty; default the image diagonal (:func:`image_diagonal`).

    Returns
    -------
    CaseMetrics
    """
    ref, pred = as_mask_pair(ref, pred)
    spacing = as_spacing(spacing, ref.ndim)
    ignore = as_ignore(ignore, ref.shape)
    tolerance = as_tolerance(tolerance)
    tolerances = as_tolerances(tolerances)
    penalty = resolve_penalty(penalty, ref.shape, spacing)
    if ignore is not None:
        ref, pred = ref & ~ignore, pred & ~ignore
    return case_metrics_from(_surface_distances(ref, pred, spacing), overlap_counts(ref, pred), spacing=spacing,
                             tolerance=tolerance, tolerances=tolerances, penalty=penalty)


def empty_mask_table(*, shape=(8, 8), spacing=None, tolerance: float = DEFAULT_TOLERANCE):
    """The empty-mask policy, evaluated: one row per case (both empty, reference empty, prediction empty).

    Computed by :func:`evaluate_case` on masks of ``shape`` (a 2x2 square where a mask is non-empty), so the
    book's table is the code's behaviour, not a transcription of it.

    Returns
    -------
    pandas.DataFrame
        Columns ``case``, the metric names and ``penalty_used``.
    """
    square = np.zeros(shape, dtype=bool)
    square[tuple(slice(1, 3) for _ in shape)] = True
    empty = np.zeros(shape, dtype=bool)
    rows = []
    for case, ref, pred in [
        ("both empty", empty, empty),
        ("reference empty only", empty, square),
        ("prediction empty only", square, empty),
    ]:
        result = evaluate_case(ref, pred, spacing=spacing, tolerance=tolerance)
        row = {"case": case, **result.metric_values()}
        row["penalty_used"] = ", ".join(sorted(result.penalty_used)) or "-"
        rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------- pictures
def _as_2d_pair(ref, pred) -> tuple[np.ndarray, np.ndarray]:
    ref, pred = as_mask_pair(ref, pred)
    if ref.ndim != 2:
        raise ValueError(f"ref and pred must be 2D to plot, got shape {ref.shape}; pass a slice")
    return ref, pred


def _frame(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_color("#bbbbbb")


def plot_boundaries(
    ref: np.ndarray, pred: np.ndarray, *, ax=None, title: str | None = None, annotate: bool = False
):
    """Show a 2D reference and prediction with their boundary pixels (as :func:`boundary` defines them).

    Reference-only pixels light grey, overlap mid grey, prediction-only light orange; reference boundary
    pixels marked with blue squares, predicted boundary pixels with orange dots. ``annotate=True`` writes each
    reference lesion's id (8-connected components, numbered as :func:`helpers.metrics.lesions.label_lesions`) next to
    it. Returns the axes.
    """
    ref, pred = _as_2d_pair(ref, pred)
    fig, ax = get_axes(ax, figsize=(3.5, 3.5))
    canvas = np.ones(ref.shape + (3,))
    canvas[ref & ~pred] = (0.85, 0.85, 0.85)
    canvas[ref & pred] = (0.65, 0.65, 0.65)
    canvas[~ref & pred] = (1.0, 0.87, 0.7)
    ax.imshow(canvas, interpolation="nearest")
    ry, rx = np.nonzero(_boundary(ref))
    py, px = np.nonzero(_boundary(pred))
    ax.scatter(rx, ry, marker="s", s=30, facecolors="none", edgecolors="#4c72b0", label="reference boundary")
    ax.scatter(px, py, marker="o", s=8, color="#dd8452", label="predicted boundary")
    if annotate:
        labels, n = ndimage.label(ref, structure=ndimage.generate_binary_structure(2, 2))
        for lesion_id, box in enumerate(ndimage.find_objects(labels), start=1):
            ax.text(box[1].start - 0.6, box[0].start - 0.6, str(lesion_id), ha="right", va="bottom", fontsize=8,
                    color="#4c72b0")
    _frame(ax)
    if title:
        ax.set_title(title)
    return ax


def plot_distance_map(
    ref: np.ndarray, pred: np.ndarray, *, spacing=None, tolerance: float | None = None, ax=None, title=None
):
    """Distance (mm) to the reference boundary over a 2D image, with predicted boundary pixels on top.

    The map is the Euclidean distance transform of the complement of the reference boundary (so each
    predicted boundary pixel's colour is its ``pred_to_ref`` distance); pixels beyond ``tolerance`` are
    marked with a cross. Returns the axes.
    """
    ref, pred = _as_2d_pair(ref, pred)
    spacing = as_spacing(spacing, 2)
    fig, ax = get_axes(ax, figsize=(4.0, 3.5))
    ref_boundary = _boundary(ref)
    if not ref_boundary.any():
        raise ValueError("ref must not be empty to plot distances to its boundary")
    distance = ndimage.distance_transform_edt(~ref_boundary, sampling=spacing)
    image = ax.imshow(distance, cmap="viridis", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="distance to reference boundary (mm)", shrink=0.8)
    py, px = np.nonzero(_boundary(pred))
    ax.scatter(px, py, marker="o", s=10, color="white", edgecolors="black", linewidths=0.4)
    if tolerance is not None:
        tolerance = as_tolerance(tolerance)
        far = distance[py, px] > tolerance * (1.0 + TOLERANCE_SLACK)
        ax.scatter(px[far], py[far], marker="x", s=14, color="red", linewidths=0.8, label=f"> {tolerance:g} mm")
    _frame(ax)
    if title:
        ax.set_title(title)
    return ax
