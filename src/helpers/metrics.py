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
Contour F1 (:func:`boundary_f1`)
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

Ignore mask
-----------
Wherever a case is evaluated (:func:`evaluate_case`, :func:`helpers.lesions.evaluate_lesions`) an ``ignore``
mask (e.g. WMH label 2, "other pathology") is accepted: its voxels are removed from both masks before any
metric, so they are neither foreground nor boundary.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree


DEFAULT_TOLERANCE = 1.0
"""Default NSD / contour-F1 tolerance in mm (voxels when ``spacing`` is None)."""

DEFAULT_PERCENTILE = 95.0
_TOLERANCE_SLACK = 1e-9

OVERLAP_METRICS = ("dice", "iou", "nsd", "boundary_f1")
DISTANCE_METRICS = ("hd", "hd95", "hd95_pooled", "assd", "masd")


def _as_mask(mask, name: str) -> np.ndarray:
    """Validate one mask: a 2D or 3D boolean numpy array (no silent thresholding)."""
    if not isinstance(mask, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray of dtype bool, got {type(mask).__name__}")
    if mask.dtype != np.bool_:
        raise TypeError(f"{name} must have dtype bool, got dtype {mask.dtype}")
    if mask.ndim not in (2, 3):
        raise ValueError(f"{name} must be 2D (y, x) or 3D (z, y, x), got {mask.ndim}D with shape {mask.shape}")
    if mask.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {mask.shape}")
    return mask


def _as_pair(ref, pred) -> tuple[np.ndarray, np.ndarray]:
    ref = _as_mask(ref, "ref")
    pred = _as_mask(pred, "pred")
    if ref.shape != pred.shape:
        raise ValueError(f"ref and pred must have the same shape, got ref {ref.shape} and pred {pred.shape}")
    return ref, pred


def _as_spacing(spacing, ndim: int) -> tuple[float, ...]:
    """Validate ``spacing``: None (1 per axis) or ``ndim`` finite positive numbers in numpy axis order."""
    if spacing is None:
        return (1.0,) * ndim
    if isinstance(spacing, (str, bytes)) or not hasattr(spacing, "__len__"):
        raise TypeError(f"spacing must be a sequence of {ndim} positive numbers or None, got {spacing!r}")
    values = tuple(spacing)
    if len(values) != ndim:
        raise ValueError(f"spacing must have one value per axis ({ndim}), got {len(values)} values: {spacing!r}")
    out = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
            raise TypeError(f"spacing values must be real numbers, got {value!r} in {spacing!r}")
        value = float(value)
        if not np.isfinite(value) or value <= 0:
            raise ValueError(f"spacing values must be finite and > 0, got {value!r} in {spacing!r}")
        out.append(value)
    return tuple(out)


def _as_connectivity(connectivity, ndim: int) -> int:
    """Validate ``connectivity`` as scikit-image: an integer 1..ndim, None meaning ndim (full connectivity)."""
    if connectivity is None:
        return ndim
    if isinstance(connectivity, bool) or not isinstance(connectivity, (numbers.Integral, np.integer)):
        raise TypeError(f"connectivity must be an integer in 1..{ndim} or None, got {connectivity!r}")
    if not 1 <= int(connectivity) <= ndim:
        raise ValueError(f"connectivity must be in 1..{ndim} for a {ndim}D mask, got {connectivity!r}")
    return int(connectivity)


def _as_ignore(ignore, shape: tuple[int, ...]) -> np.ndarray | None:
    if ignore is None:
        return None
    ignore = _as_mask(ignore, "ignore")
    if ignore.shape != shape:
        raise ValueError(f"ignore must have the masks' shape {shape}, got {ignore.shape}")
    return ignore


def _as_nonnegative(value, name: str, *, unit: str) -> float:
    """A finite real number >= 0 (a tolerance, a distance, a severity), as float; errors name ``name`` and ``unit``."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number ({unit}), got {value!r}")
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {value!r} ({unit})")
    return value


def _as_tolerance(tolerance, name: str = "tolerance") -> float:
    return _as_nonnegative(tolerance, name, unit="mm, or voxels without spacing")


def _as_percentile(percentile) -> float:
    if isinstance(percentile, bool) or not isinstance(percentile, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"percentile must be a real number in [0, 100], got {percentile!r}")
    percentile = float(percentile)
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {percentile!r}")
    return percentile


def image_diagonal(shape: tuple[int, ...], spacing=None) -> float:
    """The field-of-view diagonal ``sqrt(sum((shape_i * spacing_i)**2))`` in mm: the default distance penalty.

    It is strictly larger than any distance between two voxel centres of the image, so a penalised case always
    scores worse than any real prediction.
    """
    shape = tuple(int(n) for n in shape)
    spacing = _as_spacing(spacing, len(shape))
    return float(math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing))))


def _as_penalty(penalty, shape: tuple[int, ...], spacing: tuple[float, ...]) -> float:
    if penalty is None:
        return image_diagonal(shape, spacing)
    if isinstance(penalty, bool) or not isinstance(penalty, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"penalty must be a real number (mm) or None, got {penalty!r}")
    penalty = float(penalty)
    if not np.isfinite(penalty) or penalty <= 0:
        raise ValueError(f"penalty must be finite and > 0, got {penalty!r}")
    return penalty


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
    mask = _as_mask(mask, "mask")
    return _boundary(mask)


def _boundary(mask: np.ndarray) -> np.ndarray:
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


# ------------------------------------------------------------------------------------------- the fast core
# Everything below works on the foreground voxels of a padded crop, never on the whole image: the crop is the
# bounding box of the masks grown by one background voxel on every side (zeros outside the image, so the
# image border is background as the module docstring says). Voxels are addressed by flat (raveled) indices
# into the crop; a face neighbour is the flat index plus or minus one axis stride, which the padding keeps
# inside the crop.
def _mask_box(mask: np.ndarray) -> list[tuple[int, int]] | None:
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
    return [(start, stop)] + _mask_box(mask[start:stop].any(axis=0))


def _union_of_boxes(*boxes) -> list[tuple[int, int]] | None:
    boxes = [box for box in boxes if box is not None]
    if not boxes:
        return None
    return [(min(b[a][0] for b in boxes), max(b[a][1] for b in boxes)) for a in range(len(boxes[0]))]


@dataclass(frozen=True)
class _Crop:
    """A padded crop: ``origin`` is the image index of crop index 0 (the box start minus 1, may be -1)."""

    origin: tuple[int, ...]
    shape: tuple[int, ...]
    strides: tuple[int, ...]

    @classmethod
    def around(cls, box: list[tuple[int, int]]) -> "_Crop":
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


def _on_boundary(flat_mask: np.ndarray, foreground: np.ndarray, strides: tuple[int, ...]) -> np.ndarray:
    """For each foreground flat index, whether a face neighbour is background (``flat_mask`` is the crop)."""
    inner = np.ones(foreground.size, dtype=bool)
    for stride in strides:
        inner &= flat_mask[foreground + stride]
        inner &= flat_mask[foreground - stride]
    return ~inner


def _nearest(tree_points: np.ndarray, query_points: np.ndarray) -> np.ndarray:
    """Distance from each query point to the nearest tree point (both non-empty)."""
    return cKDTree(tree_points).query(query_points, k=1)[0].astype(np.float64)


def _linear_percentile(sorted_values: np.ndarray, starts: np.ndarray, counts: np.ndarray, percentile: float):
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
    ref_box, pred_box = _mask_box(ref), _mask_box(pred)
    ref_empty, pred_empty = ref_box is None, pred_box is None
    empty = np.empty(0, dtype=np.float64)
    if ref_empty and pred_empty:
        return SurfaceDistances(empty, empty, True, True, 0, 0)
    crop = _Crop.around(_union_of_boxes(ref_box, pred_box))
    points = []
    for mask, is_empty in ((ref, ref_empty), (pred, pred_empty)):
        if is_empty:
            points.append(np.empty((0, ref.ndim)))
            continue
        flat_mask = crop.take(mask).ravel()
        foreground = np.flatnonzero(flat_mask)
        points.append(crop.points(foreground[_on_boundary(flat_mask, foreground, crop.strides)], spacing))
    ref_points, pred_points = points
    if ref_empty or pred_empty:
        return SurfaceDistances(empty, empty, ref_empty, pred_empty, len(ref_points), len(pred_points))
    return SurfaceDistances(
        _nearest(pred_points, ref_points),
        _nearest(ref_points, pred_points),
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
    ref, pred = _as_pair(ref, pred)
    spacing = _as_spacing(spacing, ref.ndim)
    ignore = _as_ignore(ignore, ref.shape)
    if ignore is not None:
        ref, pred = ref & ~ignore, pred & ~ignore
    return _surface_distances(ref, pred, spacing)


# ------------------------------------------------------------------------------------------- reductions
def _within(distances: np.ndarray, tolerance: float) -> int:
    return int(np.count_nonzero(distances <= tolerance * (1.0 + _TOLERANCE_SLACK)))


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


def _boundary_f1_from(sd: SurfaceDistances, tolerance: float) -> float:
    if sd.ref_empty and sd.pred_empty:
        return 1.0
    if sd.ref_empty or sd.pred_empty:
        return 0.0
    precision = _within(sd.pred_to_ref, tolerance) / float(sd.n_pred_boundary)
    recall = _within(sd.ref_to_pred, tolerance) / float(sd.n_ref_boundary)
    if precision + recall == 0.0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall)


def _overlap_counts(ref: np.ndarray, pred: np.ndarray) -> tuple[int, int, int]:
    return int(np.count_nonzero(ref & pred)), int(np.count_nonzero(ref)), int(np.count_nonzero(pred))


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
    ref, pred = _as_pair(ref, pred)
    return _dice_from(*_overlap_counts(ref, pred))


def iou(ref: np.ndarray, pred: np.ndarray) -> float:
    """Intersection over union (Jaccard) ``|R∩P| / |R∪P|``; both empty gives 1, exactly one empty gives 0."""
    ref, pred = _as_pair(ref, pred)
    return _iou_from(*_overlap_counts(ref, pred))


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
    ref, pred = _as_pair(ref, pred)
    spacing = _as_spacing(spacing, ref.ndim)
    percentile = _as_percentile(percentile)
    penalty = _as_penalty(penalty, ref.shape, spacing)
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
    ref, pred = _as_pair(ref, pred)
    spacing = _as_spacing(spacing, ref.ndim)
    penalty = _as_penalty(penalty, ref.shape, spacing)
    return _assd_from(_surface_distances(ref, pred, spacing), penalty)


def masd(ref: np.ndarray, pred: np.ndarray, *, spacing=None, penalty=None) -> float:
    """Mean average surface distance: ``(mean(ref_to_pred) + mean(pred_to_ref)) / 2``.

    The mean of the two directed means (MetricsReloaded ``masd``; *not* MedPy's ``assd``, which pools the two
    sets as :func:`assd` does). Empty masks as :func:`assd`.
    """
    ref, pred = _as_pair(ref, pred)
    spacing = _as_spacing(spacing, ref.ndim)
    penalty = _as_penalty(penalty, ref.shape, spacing)
    return _masd_from(_surface_distances(ref, pred, spacing), penalty)


def nsd(ref: np.ndarray, pred: np.ndarray, *, tolerance: float, spacing=None) -> float:
    """Normalized surface distance (surface Dice) at ``tolerance`` (mm).

    ``(#{ref_to_pred <= tol} + #{pred_to_ref <= tol}) / (n_ref + n_pred)`` over boundary voxels. Both masks
    empty gives 1, exactly one empty gives 0.
    """
    ref, pred = _as_pair(ref, pred)
    spacing = _as_spacing(spacing, ref.ndim)
    tolerance = _as_tolerance(tolerance)
    return _nsd_from(_surface_distances(ref, pred, spacing), tolerance)


def boundary_f1(ref: np.ndarray, pred: np.ndarray, *, tolerance: float, spacing=None) -> float:
    """Contour F1 at ``tolerance`` (mm): the harmonic mean of boundary precision and recall.

    precision = share of predicted boundary voxels within ``tolerance`` of the reference boundary, recall =
    share of reference boundary voxels within ``tolerance`` of the predicted boundary; 0 when both are 0.
    Both masks empty gives 1, exactly one empty gives 0.
    """
    ref, pred = _as_pair(ref, pred)
    spacing = _as_spacing(spacing, ref.ndim)
    tolerance = _as_tolerance(tolerance)
    return _boundary_f1_from(_surface_distances(ref, pred, spacing), tolerance)


# ------------------------------------------------------------------------------------------- one call per case
def _tolerance_key(prefix: str, tolerance: float) -> str:
    return f"{prefix}_tol{tolerance:g}"


@dataclass(frozen=True)
class CaseMetrics:
    """All image-level metrics of one case, from a single surface-distance computation.

    Attributes
    ----------
    dice, iou, hd, hd95, hd95_pooled, assd, masd, nsd, boundary_f1 : float
        As defined in the module docstring; ``nsd`` and ``boundary_f1`` at ``tolerance``. Never NaN or inf.
    ref_empty, pred_empty : bool
        Whether the masks (after removing ``ignore``) are empty.
    penalty_used : frozenset of str
        Names of the distance metrics that hold the penalty (all five when exactly one mask is empty).
    penalty : float
        The penalty value (mm) that applied.
    tolerance : float
        The NSD / contour-F1 tolerance (mm).
    nsd_at, boundary_f1_at : dict
        ``{tolerance: value}`` for each extra tolerance requested with ``tolerances=``.
    n_ref_voxels, n_pred_voxels, n_ref_boundary, n_pred_boundary : int
        Sizes behind the values.
    """

    dice: float
    iou: float
    hd: float
    hd95: float
    hd95_pooled: float
    assd: float
    masd: float
    nsd: float
    boundary_f1: float
    ref_empty: bool
    pred_empty: bool
    penalty_used: frozenset
    penalty: float
    tolerance: float
    nsd_at: dict = field(default_factory=dict)
    boundary_f1_at: dict = field(default_factory=dict)
    n_ref_voxels: int = 0
    n_pred_voxels: int = 0
    n_ref_boundary: int = 0
    n_pred_boundary: int = 0

    def metric_values(self) -> dict[str, float]:
        """The metric values only (``name -> float``), extra tolerances as ``nsd_tol<t>``, ``boundary_f1_tol<t>``."""
        out = {name: getattr(self, name) for name in ("dice", "iou") + DISTANCE_METRICS + ("nsd", "boundary_f1")}
        for tolerance, value in self.nsd_at.items():
            out[_tolerance_key("nsd", tolerance)] = value
        for tolerance, value in self.boundary_f1_at.items():
            out[_tolerance_key("boundary_f1", tolerance)] = value
        return out

    def as_dict(self) -> dict:
        """A flat dict: metric values, ``<metric>_penalty`` flags, emptiness, penalty, tolerance and sizes."""
        out = self.metric_values()
        for name in DISTANCE_METRICS:
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


def _metrics_from(
    ref: np.ndarray,
    pred: np.ndarray,
    sd: SurfaceDistances,
    *,
    tolerance: float,
    tolerances: tuple[float, ...],
    penalty: float,
    counts: tuple[int, int, int] | None = None,
) -> CaseMetrics:
    """All metrics of validated, ignore-removed masks and their surface distances (``counts``: the overlap
    counts ``(|R∩P|, |R|, |P|)`` when the caller has them already)."""
    counts = _overlap_counts(ref, pred) if counts is None else counts
    penalised = sd.ref_empty != sd.pred_empty
    return CaseMetrics(
        dice=_dice_from(*counts),
        iou=_iou_from(*counts),
        hd=_hausdorff_from(sd, 100.0, False, penalty),
        hd95=_hausdorff_from(sd, DEFAULT_PERCENTILE, False, penalty),
        hd95_pooled=_hausdorff_from(sd, DEFAULT_PERCENTILE, True, penalty),
        assd=_assd_from(sd, penalty),
        masd=_masd_from(sd, penalty),
        nsd=_nsd_from(sd, tolerance),
        boundary_f1=_boundary_f1_from(sd, tolerance),
        ref_empty=sd.ref_empty,
        pred_empty=sd.pred_empty,
        penalty_used=frozenset(DISTANCE_METRICS) if penalised else frozenset(),
        penalty=penalty,
        tolerance=tolerance,
        nsd_at={t: _nsd_from(sd, t) for t in tolerances},
        boundary_f1_at={t: _boundary_f1_from(sd, t) for t in tolerances},
        n_ref_voxels=counts[1],
        n_pred_voxels=counts[2],
        n_ref_boundary=sd.n_ref_boundary,
        n_pred_boundary=sd.n_pred_boundary,
    )


def _as_tolerances(tolerances) -> tuple[float, ...]:
    if tolerances is None:
        return ()
    if isinstance(tolerances, (str, bytes)) or not isinstance(tolerances, Iterable):
        raise TypeError(f"tolerances must be a sequence of numbers, got {tolerances!r}")
    return tuple(_as_tolerance(t, "tolerances") for t in tolerances)


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
        Tolerance of ``nsd`` and ``boundary_f1``.
    tolerances : sequence of float, optional
        Extra tolerances for which NSD and contour F1 are also reported (``nsd_at``, ``boundary_f1_at``), e.g.
        ``(1, 2, 3)`` for the tolerance sensitivity analysis, without recomputing distances.
    penalty : float, optional
        Distance returned when exactly one mask is empty; default the image diagonal (:func:`image_diagonal`).

    Returns
    -------
    CaseMetrics
    """
    ref, pred = _as_pair(ref, pred)
    spacing = _as_spacing(spacing, ref.ndim)
    ignore = _as_ignore(ignore, ref.shape)
    tolerance = _as_tolerance(tolerance)
    tolerances = _as_tolerances(tolerances)
    penalty = _as_penalty(penalty, ref.shape, spacing)
    if ignore is not None:
        ref, pred = ref & ~ignore, pred & ~ignore
    sd = _surface_distances(ref, pred, spacing)
    return _metrics_from(ref, pred, sd, tolerance=tolerance, tolerances=tolerances, penalty=penalty)


def empty_mask_table(*, shape=(8, 8), spacing=None, tolerance: float = DEFAULT_TOLERANCE):
    """The empty-mask policy, evaluated: one row per case (both empty, reference empty, prediction empty).

    Computed by :func:`evaluate_case` on masks of ``shape`` (a 2x2 square where a mask is non-empty), so the
    book's table is the code's behaviour, not a transcription of it.

    Returns
    -------
    pandas.DataFrame
        Columns ``case``, the metric names and ``penalty_used``.
    """
    import pandas as pd

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
    ref, pred = _as_pair(ref, pred)
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
    reference lesion's id (8-connected components, numbered as :func:`helpers.lesions.label_lesions`) next to
    it. Returns the axes.
    """
    from helpers.plots import get_axes  # matplotlib only when a picture is drawn

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
    from helpers.plots import get_axes  # matplotlib only when a picture is drawn

    ref, pred = _as_2d_pair(ref, pred)
    spacing = _as_spacing(spacing, 2)
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
        tolerance = _as_tolerance(tolerance)
        far = distance[py, px] > tolerance * (1.0 + _TOLERANCE_SLACK)
        ax.scatter(px[far], py[far], marker="x", s=14, color="red", linewidths=0.8, label=f"> {tolerance:g} mm")
    _frame(ax)
    if title:
        ax.set_title(title)
    return ax
