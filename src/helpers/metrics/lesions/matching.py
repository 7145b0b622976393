"""The lesion-wise protocol: reference lesions matched to predicted components, predicted voxels attributed to
lesions by region of influence, per-lesion metrics, and the case and lesion tables of one case from one computation.

Components, lesion tables, kinds and size quartiles are those of :mod:`helpers.metrics.lesions.labels`.

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
- Per-lesion metrics compare lesion i with its *prediction*: the voxels of the predicted components that
  overlap lesion i and lie in lesion i's region of influence. A component merging two lesions is split between
  them along their equidistance surface (which becomes part of each piece's boundary); a voxel of a component
  that does not overlap lesion i is never charged to lesion i, even inside its region; a distant false positive
  is charged to no lesion. Nothing depends on a crop box. Definitions (boundary, surface distances, reductions)
  are those of :mod:`helpers.metrics`, computed for all lesions at once.
- A missed lesion gets Dice, IoU, NSD and contour F1 = 0 and the distance penalty (default: the image
  diagonal, :func:`helpers.metrics.image_diagonal`) with ``penalty = True``, so detected-only boundary
  statistics are a filter on ``detected``.
- Predicted components that share no voxel with any reference lesion are false-positive rows
  (``kind == "false_positive"``, numbered 1..m among the predicted components, ``detected`` missing and
  metric columns NaN, explicitly). Components that overlap a lesion are never false positives, even where
  they reach outside its region of influence.
- ``ignore`` voxels are removed from both masks before labelling.

Metric columns are the registry's (:data:`helpers.metrics.METRICS`, ``per_lesion``); the surface kernels
(crop, boundary voxels, nearest distances, grouped percentiles) are the public ones of :mod:`helpers.metrics`.

Empty-mask policy
-----------------
:func:`evaluate_lesions` gives one false-positive row per predicted component (no rows when both masks are
empty).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from helpers.base.checks import as_connectivity, as_ignore, as_mask_pair, as_spacing, as_tolerance, as_tolerances
from helpers.metrics import (
    DEFAULT_PERCENTILE, DEFAULT_TOLERANCE, TOLERANCE_SLACK, CaseMetrics, Crop, SurfaceDistances, case_metrics_from,
    image_diagonal, linear_percentile, mask_box, metric, metric_names, nearest_distances, resolve_penalty,
    tolerance_name, union_of_boxes,
)
from helpers.metrics.lesions.labels import FALSE_POSITIVE, REFERENCE, Components, component_stats, crop_components

__all__ = ["LESION_METRICS", "evaluate_lesions", "evaluate_case_and_lesions", "lesion_summary"]


# ------------------------------------------------------------------------------------------- lesion-wise protocol
#: The metric columns of the lesion table: every registered metric with a per-lesion form (registry order).
LESION_METRICS: tuple[str, ...] = metric_names(per_lesion=True)
_TOLERANCE_METRICS: tuple[str, ...] = tuple(name for name in LESION_METRICS if metric(name).per_tolerance)
_TIE = 1e-9


def _region_of_influence(
    boundary_points: np.ndarray, boundary_labels: np.ndarray, points: np.ndarray
) -> np.ndarray:
    """The reference lesion nearest to each of ``points`` (physical coordinates, all outside every lesion).

    ``boundary_points``/``boundary_labels`` are the reference boundary voxels (physical coordinates) and their
    lesion ids; the nearest voxel of a lesion to an outside point is one of its boundary voxels. A point whose
    two nearest boundary voxels are equidistant (relative 1e-9) is settled by one batched radius query: the
    lowest id among all boundary voxels within that distance.
    """
    if points.shape[0] == 0:
        return np.empty(0, dtype=np.int64)
    tree = cKDTree(boundary_points)
    distance, index = tree.query(points, k=2)
    nearest = boundary_labels[index[:, 0]].astype(np.int64)
    tied = np.flatnonzero(distance[:, 1] <= distance[:, 0] * (1.0 + _TIE) + 1e-12)
    if tied.size:
        radius = distance[tied, 0] * (1.0 + _TIE) + 1e-12
        found = tree.query_ball_point(points[tied], radius)
        sizes = np.fromiter((len(f) for f in found), dtype=np.int64, count=tied.size)
        candidates = boundary_labels[np.concatenate(found).astype(np.int64)]
        nearest[tied] = np.minimum.reduceat(candidates, np.concatenate([[0], np.cumsum(sizes)[:-1]]))
    return nearest


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


def _grouped(groups: np.ndarray, values: np.ndarray, n: int):
    """Sort ``values`` within ``groups`` (ids 0..n); returns (sorted values, starts, counts) indexed by id."""
    order = np.lexsort((values, groups))
    counts = np.bincount(groups, minlength=n + 1)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return values[order], starts, counts


def _within_counts(groups, values, tolerance, n):
    return np.bincount(groups[values <= tolerance * (1.0 + TOLERANCE_SLACK)], minlength=n + 1)


def _lesion_metrics(
    ref_groups, ref_to_pred, pred_groups, pred_to_ref, n, n_ref_voxels, n_pred_voxels, overlap,
    tolerances: tuple[float, ...],
) -> dict[str, np.ndarray]:
    """Per-lesion metrics (indexed by id 0..n, meaningful where both directed sets are non-empty), each the
    vectorised form of the image-level reduction in :mod:`helpers.metrics`."""
    out = {}
    if ref_groups.size == 0:  # no detected lesion
        nothing = np.full(n + 1, np.nan)
        return {**{name: nothing for name in LESION_METRICS},
                **{(prefix, t): nothing for prefix in _TOLERANCE_METRICS for t in tolerances}}
    n_ref_voxels, n_pred_voxels, overlap = (np.asarray(a, dtype=np.int64) for a in (n_ref_voxels, n_pred_voxels,
                                                                                      overlap))
    with np.errstate(invalid="ignore", divide="ignore"):
        out["dice"] = 2.0 * overlap / (n_ref_voxels + n_pred_voxels).astype(np.float64)
        out["iou"] = overlap / (n_ref_voxels + n_pred_voxels - overlap).astype(np.float64)
        r_sorted, r_start, r_count = _grouped(ref_groups, ref_to_pred, n)
        p_sorted, p_start, p_count = _grouped(pred_groups, pred_to_ref, n)
        both = np.concatenate([ref_groups, pred_groups])
        b_sorted, b_start, b_count = _grouped(both, np.concatenate([ref_to_pred, pred_to_ref]), n)
        has = (r_count > 0) & (p_count > 0)
        last = lambda values, start, count: values[np.where(count > 0, start + count - 1, 0)]  # noqa: E731
        out["hd"] = np.where(has, np.maximum(last(r_sorted, r_start, r_count), last(p_sorted, p_start, p_count)),
                             np.nan)
        hd95 = np.full(n + 1, np.nan)
        pooled = np.full(n + 1, np.nan)
        q = DEFAULT_PERCENTILE
        hd95[has] = np.maximum(linear_percentile(r_sorted, r_start[has], r_count[has], q),
                               linear_percentile(p_sorted, p_start[has], p_count[has], q))
        pooled[has] = linear_percentile(b_sorted, b_start[has], b_count[has], q)
        out["hd95"], out["hd95_pooled"] = hd95, pooled
        r_sum = np.bincount(ref_groups, weights=ref_to_pred, minlength=n + 1)
        p_sum = np.bincount(pred_groups, weights=pred_to_ref, minlength=n + 1)
        out["assd"] = (r_sum + p_sum) / (r_count + p_count).astype(np.float64)
        out["masd"] = (r_sum / r_count + p_sum / p_count) / 2.0
        for tolerance in tolerances:
            r_within = _within_counts(ref_groups, ref_to_pred, tolerance, n)
            p_within = _within_counts(pred_groups, pred_to_ref, tolerance, n)
            nsd = (r_within + p_within) / (r_count + p_count).astype(np.float64)
            precision = p_within / p_count.astype(np.float64)
            recall = r_within / r_count.astype(np.float64)
            total = precision + recall
            f1 = np.where(total == 0.0, 0.0, 2.0 * precision * recall / np.where(total == 0.0, 1.0, total))
            out[("nsd", tolerance)] = nsd
            out[("contour_f1", tolerance)] = f1
    return out


def evaluate_lesions(
    ref: np.ndarray,
    pred: np.ndarray,
    *,
    spacing=None,
    connectivity: int | None = None,
    ignore=None,
    min_overlap: int = 1,
    tolerance: float = DEFAULT_TOLERANCE,
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
        Extra tolerances: adds columns ``nsd_tol<t>`` and ``contour_f1_tol<t>`` (e.g. ``(1, 2, 3)`` for the
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
        predicted), the metrics ``dice, iou, hd, hd95, hd95_pooled, assd, masd, nsd, contour_f1`` (and the
        ``tolerances`` columns; NaN for false positives), ``penalty`` (True when the distances hold the
        penalty, i.e. the lesion was missed)
        and the ``bbox_min_<axis>``/``bbox_max_<axis>`` of the lesion or component.

    Notes
    -----
    The protocol (overlap rule, region of influence, tie rule, penalties) is stated in the module docstring.
    Lesion-wise recall and false positives per case: :func:`lesion_summary`.

    The computation never visits the whole image: it works on the foreground voxels of the masks' padded
    bounding box (flat indices), labels with ``connected-components-3d``, finds boundaries by face-neighbour
    lookup, settles the region of influence only for predicted voxels outside every lesion, and computes all
    lesions' surface distances with one k-d tree per direction whose extra coordinate (the lesion id times a
    distance larger than the image) keeps each lesion's points apart.
    """
    return evaluate_case_and_lesions(
        ref, pred, spacing=spacing, connectivity=connectivity, ignore=ignore, min_overlap=min_overlap,
        tolerance=tolerance, lesion_tolerances=tolerances, penalty=penalty,
    )[1]


def evaluate_case_and_lesions(
    ref: np.ndarray,
    pred: np.ndarray,
    *,
    spacing=None,
    connectivity: int | None = None,
    ignore=None,
    min_overlap: int = 1,
    tolerance: float = DEFAULT_TOLERANCE,
    tolerances=(),
    lesion_tolerances=(),
    penalty=None,
) -> tuple[CaseMetrics, pd.DataFrame]:
    """:func:`helpers.metrics.evaluate_case` and :func:`evaluate_lesions` of one case from one computation.

    The same values as the two calls (``tolerances`` are the case's extra tolerances, ``lesion_tolerances``
    the lesion table's; the other arguments as in :func:`evaluate_lesions`), at about the cost of one: the
    masks are cropped, labelled and their boundaries found once, and the image-level surface distances serve
    every per-lesion distance whose nearest voxel lies on the lesion's own side.

    Steps: label both masks in one padded crop (:func:`crop_components`), match components to lesions
    (:func:`_match`), charge predicted voxels to lesions by region of influence (:func:`_charge`), find each
    lesion's predicted boundary (:func:`_charged_boundary`), the image-level distances
    (:func:`_image_distances`), the per-lesion distances (:func:`_lesion_distances`), then the reductions.

    Returns
    -------
    (CaseMetrics, pandas.DataFrame)
    """
    ref, pred = as_mask_pair(ref, pred)
    ndim = ref.ndim
    spacing, connectivity = as_spacing(spacing, ndim), as_connectivity(connectivity, ndim)
    ignore = as_ignore(ignore, ref.shape)
    tolerance = as_tolerance(tolerance)
    case_tolerances = as_tolerances(tolerances)
    tolerances = as_tolerances(lesion_tolerances)
    extra = [tolerance_name(name, t) for name in _TOLERANCE_METRICS for t in tolerances]
    penalty = resolve_penalty(penalty, ref.shape, spacing)
    _check_min_overlap(min_overlap)
    if ignore is not None:
        ref, pred = ref & ~ignore, pred & ~ignore
    columns = _lesion_columns(ndim, extra)

    box = union_of_boxes(mask_box(ref), mask_box(pred))
    if box is None:
        nothing = np.empty(0)
        case = case_metrics_from(SurfaceDistances(nothing, nothing, True, True, 0, 0), (0, 0, 0), spacing=spacing,
                                 tolerance=tolerance, tolerances=case_tolerances, penalty=penalty)
        return case, _lesion_frame({}, 0, columns, extra)
    crop = Crop.around(box)
    ref_flat, pred_flat = crop.take(ref).ravel(), crop.take(pred).ravel()
    lesions = crop_components(ref_flat, crop, connectivity)
    components = crop_components(pred_flat, crop, connectivity)
    match = _match(lesions, components, ref_flat)
    charge = _charge(match, lesions, components, crop, spacing)
    pred_on_boundary, is_mixed = _charged_boundary(components, pred_flat, charge, crop, match.n_pred)

    detected = match.overlap_voxels >= min_overlap
    detected[0] = False
    ref_side = lesions.on_boundary & detected[lesions.labels]
    pred_side = pred_on_boundary & (charge > 0) & detected[charge]
    image = _image_distances(lesions, components, crop, spacing)
    distances = _lesion_distances(lesions, components, crop, spacing, match, charge, is_mixed, ref_side, pred_side,
                                  image)

    ref_stats = component_stats(lesions, crop, ref.shape, spacing)
    values = _lesion_metrics(
        *distances, match.n_ref, np.concatenate([[0], ref_stats["n_voxels"]]),
        np.bincount(charge, minlength=match.n_ref + 1), match.overlap_voxels, (tolerance,) + tolerances,
    )
    for name in _TOLERANCE_METRICS:
        values[name] = values[(name, tolerance)]
        for t in tolerances:
            values[tolerance_name(name, t)] = values[(name, t)]
    data = _reference_columns(ref_stats, match, detected[1:], values, extra, penalty, ndim)
    fp = _false_positive_columns(component_stats(components, crop, ref.shape, spacing), match, ndim)
    counts = (int(np.count_nonzero(match.inside)), int(lesions.flat.size), int(components.flat.size))
    case = case_metrics_from(image.surface_distances(match), counts, spacing=spacing, tolerance=tolerance,
                             tolerances=case_tolerances, penalty=penalty)
    return case, _lesion_frame(data, match.n_ref, columns, extra, fp)


def _check_min_overlap(min_overlap) -> None:
    if isinstance(min_overlap, bool) or not isinstance(min_overlap, (int, np.integer)):
        raise TypeError(f"min_overlap must be an integer number of voxels >= 1, got {min_overlap!r}")
    if min_overlap < 1:
        raise ValueError(f"min_overlap must be >= 1 voxel, got {min_overlap!r}")


@dataclass(frozen=True)
class _Matching:
    """The overlap of reference lesions (ids 1..n_ref) and predicted components (ids 1..n_pred).

    ``inside`` says which predicted voxels (in ``components.flat`` order) are reference voxels, and
    ``ref_label_of_pred`` their lesion (0 outside every lesion); ``pairs`` are the overlapping (lesion,
    component) pairs coded ``lesion * (n_pred + 1) + component``, split into ``pairs_ref``/``pairs_pred``.
    """

    n_ref: int
    n_pred: int
    inside: np.ndarray
    ref_label_of_pred: np.ndarray
    overlap_voxels: np.ndarray
    pairs: np.ndarray
    pairs_ref: np.ndarray
    pairs_pred: np.ndarray
    n_pred_components: np.ndarray
    is_matched: np.ndarray


def _match(lesions: Components, components: Components, ref_flat: np.ndarray) -> _Matching:
    """The overlap matrix as sparse pairs, from a lookup into the sorted reference foreground of the predicted
    voxels that are reference voxels."""
    n_ref, n_pred = lesions.n, components.n
    ref_label_of_pred = np.zeros(components.flat.size, dtype=np.int64)
    inside = ref_flat[components.flat]
    ref_label_of_pred[inside] = lesions.labels[np.searchsorted(lesions.flat, components.flat[inside])]
    overlap_voxels = np.bincount(ref_label_of_pred[inside], minlength=n_ref + 1)
    pairs = np.unique(ref_label_of_pred[inside] * (n_pred + 1) + components.labels[inside])
    pairs_ref, pairs_pred = pairs // (n_pred + 1), pairs % (n_pred + 1)
    is_matched = np.zeros(n_pred + 1, dtype=bool)
    is_matched[pairs_pred] = True
    return _Matching(n_ref, n_pred, inside, ref_label_of_pred, overlap_voxels, pairs, pairs_ref, pairs_pred,
                     np.bincount(pairs_ref, minlength=n_ref + 1), is_matched)


def _charge(match: _Matching, lesions: Components, components: Components, crop: Crop,
            spacing: tuple[float, ...]) -> np.ndarray:
    """The lesion each predicted voxel is charged to (0: none): lesion i's prediction is the voxels of the
    components that overlap lesion i and lie in lesion i's region of influence, which is settled only for
    predicted voxels of matched components outside every lesion."""
    owner = match.ref_label_of_pred.copy()
    outside = np.flatnonzero(match.is_matched[components.labels] & ~match.inside)
    if outside.size and match.n_ref == 1:
        owner[outside] = 1
    elif outside.size:
        boundary = lesions.on_boundary
        owner[outside] = _region_of_influence(
            crop.points(lesions.flat[boundary], spacing), lesions.labels[boundary],
            crop.points(components.flat[outside], spacing),
        )
    return np.where(np.isin(owner * (match.n_pred + 1) + components.labels, match.pairs), owner, 0)


def _charged_boundary(components: Components, pred_flat: np.ndarray, charge: np.ndarray, crop: Crop,
                      n_pred: int) -> tuple[np.ndarray, np.ndarray]:
    """The boundary of each lesion's prediction, and which components are *mixed* (charged to several lesions,
    or partly to none).

    A voxel is on it when it is a predicted boundary voxel or has a predicted face neighbour charged to another
    lesion (or to none); only voxels of mixed components need the neighbour lookup.
    """
    pred_on_boundary = components.on_boundary.copy()
    low = np.full(n_pred + 1, np.iinfo(np.int64).max)
    high = np.full(n_pred + 1, -1)
    np.minimum.at(low, components.labels, charge)
    np.maximum.at(high, components.labels, charge)
    mixed = np.flatnonzero((low != high)[components.labels] & (charge > 0))
    for stride in crop.strides:
        for step in (stride, -stride):
            neighbour = components.flat[mixed] + step
            predicted = pred_flat[neighbour]
            at = np.searchsorted(components.flat, neighbour[predicted])
            differs = np.zeros(mixed.size, dtype=bool)
            differs[predicted] = charge[at] != charge[mixed[predicted]]
            differs[~predicted] = True
            pred_on_boundary[mixed[differs]] = True
    is_mixed = np.zeros(n_pred + 1, dtype=bool)
    is_mixed[1:] = (low != high)[1:]
    return pred_on_boundary, is_mixed


@dataclass(frozen=True)
class _ImageDistances:
    """Image-level surface distances (every boundary voxel of either mask), with the index of each nearest voxel.

    ``ref_boundary``/``pred_boundary`` index the boundary voxels into ``lesions.flat``/``components.flat``;
    ``nearest_pred``/``nearest_ref`` index into them (None when a mask is empty).
    """

    ref_boundary: np.ndarray
    pred_boundary: np.ndarray
    ref_to_pred: np.ndarray
    pred_to_ref: np.ndarray
    nearest_pred: np.ndarray | None
    nearest_ref: np.ndarray | None

    def surface_distances(self, match: _Matching) -> SurfaceDistances:
        return SurfaceDistances(self.ref_to_pred, self.pred_to_ref, match.n_ref == 0, match.n_pred == 0,
                                self.ref_boundary.size, self.pred_boundary.size)


def _image_distances(lesions: Components, components: Components, crop: Crop,
                     spacing: tuple[float, ...]) -> _ImageDistances:
    ref_boundary = np.flatnonzero(lesions.on_boundary)
    pred_boundary = np.flatnonzero(components.on_boundary)
    ref_points = crop.points(lesions.flat[ref_boundary], spacing)
    pred_points = crop.points(components.flat[pred_boundary], spacing)
    if not (ref_points.size and pred_points.size):
        return _ImageDistances(ref_boundary, pred_boundary, np.empty(0), np.empty(0), None, None)
    image_r2p, nearest_pred = cKDTree(pred_points).query(ref_points, k=1)
    image_p2r, nearest_ref = cKDTree(ref_points).query(pred_points, k=1)
    return _ImageDistances(ref_boundary, pred_boundary, image_r2p, image_p2r, nearest_pred, nearest_ref)


def _lesion_distances(lesions, components, crop, spacing, match, charge, is_mixed, ref_side, pred_side, image):
    """Per-lesion directed distances of the detected lesions' boundary voxels: ``(ref_groups, ref_to_pred,
    pred_groups, pred_to_ref)``, the groups being lesion ids.

    Where every component of lesion i is charged to i alone, lesion i's predicted boundary is part of the
    predicted boundary, so a point whose image-level nearest voxel belongs to lesion i's side has the same
    distance per lesion: reused. The rest go to one k-d tree per direction for all lesions, whose extra
    coordinate (id times more than any distance in the image) keeps each lesion's points nearest to its own; it
    adds exactly 0 within a lesion.
    """
    ref_groups, pred_groups = lesions.labels[ref_side], charge[pred_side]
    ref_to_pred = np.full(ref_groups.size, np.nan)
    pred_to_ref = np.full(pred_groups.size, np.nan)
    if not ref_groups.size:
        return ref_groups, ref_to_pred, pred_groups, pred_to_ref
    lesion_mixed = np.zeros(match.n_ref + 1, dtype=bool)
    lesion_mixed[match.pairs_ref[is_mixed[match.pairs_pred]]] = True
    ref_side_index = np.flatnonzero(ref_side)
    pred_side_index = np.flatnonzero(pred_side)
    # Positions in the image-level arrays (boundary voxels are a subset of the foreground, both ascending).
    at_ref = np.searchsorted(image.ref_boundary, ref_side_index)
    reuse = ~lesion_mixed[ref_groups] & (charge[image.pred_boundary[image.nearest_pred[at_ref]]] == ref_groups)
    ref_to_pred[reuse] = image.ref_to_pred[at_ref[reuse]]
    on_pred_boundary = components.on_boundary[pred_side_index]
    at_pred = np.searchsorted(image.pred_boundary, pred_side_index)
    reuse_pred = np.zeros(pred_groups.size, dtype=bool)
    nearest_lesion = lesions.labels[image.ref_boundary[image.nearest_ref[at_pred[on_pred_boundary]]]]
    reuse_pred[on_pred_boundary] = (~lesion_mixed[pred_groups[on_pred_boundary]]
                                    & (nearest_lesion == pred_groups[on_pred_boundary]))
    pred_to_ref[reuse_pred] = image.pred_to_ref[at_pred[reuse_pred]]
    separation = 2.0 * image_diagonal(crop.shape, spacing) + 1.0
    for own_side, own_groups, own_flat, other_side, other_groups, other_flat, out, done in (
        (ref_side_index, ref_groups, lesions.flat, pred_side_index, pred_groups, components.flat, ref_to_pred,
         reuse),
        (pred_side_index, pred_groups, components.flat, ref_side_index, ref_groups, lesions.flat, pred_to_ref,
         reuse_pred),
    ):
        todo = np.flatnonzero(~done)
        if not todo.size:
            continue
        wanted = np.zeros(match.n_ref + 1, dtype=bool)
        wanted[own_groups[todo]] = True
        keep = wanted[other_groups]
        tree_points = np.column_stack([crop.points(other_flat[other_side[keep]], spacing),
                                       other_groups[keep] * separation])
        query_points = np.column_stack([crop.points(own_flat[own_side[todo]], spacing),
                                        own_groups[todo] * separation])
        out[todo] = nearest_distances(tree_points, query_points)
    return ref_groups, ref_to_pred, pred_groups, pred_to_ref


def _reference_columns(ref_stats: dict, match: _Matching, hit: np.ndarray, values: dict, extra: list[str],
                       penalty: float, ndim: int) -> dict:
    """The reference-lesion rows' columns: a missed lesion gets 0 for every score and ``penalty`` for every
    distance (registry kind "distance"), with ``penalty`` True."""
    data = {
        "lesion_id": ref_stats["lesion_id"],
        "kind": [REFERENCE] * match.n_ref,
        "detected": hit,
        "n_voxels": ref_stats["n_voxels"],
        "volume_mm3": ref_stats["volume_mm3"],
        "area_fraction": ref_stats["area_fraction"],
        "n_pred_components": match.n_pred_components[1:],
        "overlap_voxels": match.overlap_voxels[1:],
        "penalty": ~hit,
    }
    for name in [*LESION_METRICS, *extra]:
        data[name] = np.where(hit, values[name][1:], penalty if metric(name).penalised else 0.0)
    for axis in range(ndim):
        data[f"bbox_min_{axis}"] = ref_stats[f"bbox_min_{axis}"]
        data[f"bbox_max_{axis}"] = ref_stats[f"bbox_max_{axis}"]
    return data


def _false_positive_columns(pred_stats: dict, match: _Matching, ndim: int) -> dict:
    """The false-positive rows' columns: predicted components overlapping no lesion (metric columns absent, so
    NaN in :func:`_lesion_frame`)."""
    unmatched = np.flatnonzero(~match.is_matched[1:])
    fp = {
        "lesion_id": unmatched + 1,
        "kind": [FALSE_POSITIVE] * unmatched.size,
        "n_voxels": pred_stats["n_voxels"][unmatched],
        "volume_mm3": pred_stats["volume_mm3"][unmatched],
        "area_fraction": pred_stats["area_fraction"][unmatched],
        "n_pred_components": np.ones(unmatched.size, dtype=np.int64),
        "overlap_voxels": np.zeros(unmatched.size, dtype=np.int64),
        "penalty": np.zeros(unmatched.size, dtype=bool),
    }
    for axis in range(ndim):
        fp[f"bbox_min_{axis}"] = pred_stats[f"bbox_min_{axis}"][unmatched]
        fp[f"bbox_max_{axis}"] = pred_stats[f"bbox_max_{axis}"][unmatched]
    return fp


def _lesion_frame(lesions: dict, n_ref: int, columns: list[str], extra: list[str], fp: dict | None = None):
    """One DataFrame from the lesion columns and the false-positive columns (metric columns NaN there)."""
    fp = fp or {}
    n_fp = len(fp.get("lesion_id", ()))
    floats = ["volume_mm3", "area_fraction", *LESION_METRICS, *extra]
    data = {}
    for name in columns:
        if name == "kind":
            data[name] = np.array(list(lesions.get(name, [])) + list(fp.get(name, [])), dtype=object)
        elif name == "detected":
            values = np.concatenate([np.asarray(lesions.get(name, []), dtype=bool), np.zeros(n_fp, dtype=bool)])
            mask = np.concatenate([np.zeros(n_ref, dtype=bool), np.ones(n_fp, dtype=bool)])
            data[name] = pd.arrays.BooleanArray(values, mask)
        elif name == "penalty":
            data[name] = np.concatenate([np.asarray(lesions.get(name, []), dtype=bool),
                                         np.asarray(fp.get(name, []), dtype=bool)])
        elif name in floats:
            data[name] = np.concatenate([np.asarray(lesions.get(name, []), dtype=np.float64),
                                         np.asarray(fp.get(name, np.full(n_fp, np.nan)), dtype=np.float64)])
        else:
            data[name] = np.concatenate([np.asarray(lesions.get(name, []), dtype=np.int64),
                                         np.asarray(fp.get(name, []), dtype=np.int64)])
    frame = pd.DataFrame(data, columns=columns)
    frame["kind"] = frame["kind"].astype("object")  # not pandas' inferred string dtype: as before
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
    lesions = table[table["kind"] == REFERENCE]
    n_ref = int(len(lesions))
    n_detected = int(lesions["detected"].astype(bool).sum())
    return {
        "n_ref_lesions": n_ref,
        "n_detected": n_detected,
        "lesion_recall": n_detected / n_ref if n_ref else float("nan"),
        "n_false_positive": int((table["kind"] == FALSE_POSITIVE).sum()),
        "n_penalty": int(lesions["penalty"].sum()),
    }
