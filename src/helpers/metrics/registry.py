"""The metric registry and the one call per case: every metric of the study as one :class:`Metric` entry,
and :func:`evaluate_case`, which reduces one surface-distance computation to every registered metric.

The definitions, the empty-mask policy and the tolerance are stated in :mod:`helpers.metrics.distances`.

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

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import numpy as np
import pandas as pd

from helpers.base.checks import as_ignore, as_mask_pair, as_spacing, as_tolerance, as_tolerances
from helpers.metrics.distances import (
    DEFAULT_PERCENTILE, DEFAULT_TOLERANCE, SurfaceDistances, assd_from, contour_f1_from, dice_from, hausdorff_from,
    iou_from, masd_from, nsd_from, overlap_counts, resolve_penalty, surface_distances_unchecked,
)

__all__ = [
    "CaseInputs", "METRIC_KINDS", "TABLES", "Metric", "METRICS", "tolerance_name", "split_tolerance_name", "metric",
    "VOXEL_SUFFIX", "voxel_tolerance_name",
    "metric_names", "higher_is_better", "label", "CaseMetrics", "case_metrics_from", "evaluate_case",
    "empty_mask_table",
]


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
#: one entry here and its reducer (``compute``, from :mod:`helpers.metrics.distances`); tables, rankings and
#: figures learn of it from here.
METRICS: Mapping[str, Metric] = _registry(
    Metric("dice", "overlap", True, "", "Dice", frozenset({_CASE, _LESION, _SWEEP}), primary=True,
           per_lesion=True, compute=lambda x: dice_from(x.intersection, x.n_ref, x.n_pred)),
    Metric("iou", "overlap", True, "", "IoU", frozenset({_CASE, _LESION}), primary=True,
           per_lesion=True, compute=lambda x: iou_from(x.intersection, x.n_ref, x.n_pred)),
    Metric("hd", "distance", False, "mm", "HD", frozenset({_SWEEP}),
           per_lesion=True, compute=lambda x: hausdorff_from(x.distances, 100.0, False, x.penalty)),
    Metric("hd95", "distance", False, "mm", "HD95", frozenset({_CASE, _LESION, _SWEEP}), primary=True,
           against_dice=True, per_lesion=True,
           compute=lambda x: hausdorff_from(x.distances, DEFAULT_PERCENTILE, False, x.penalty)),
    Metric("hd95_pooled", "distance", False, "mm", "HD95, pooled", frozenset({_CASE, _LESION, _SWEEP}),
           per_lesion=True, compute=lambda x: hausdorff_from(x.distances, DEFAULT_PERCENTILE, True, x.penalty)),
    Metric("assd", "distance", False, "mm", "ASSD", frozenset({_CASE, _LESION, _SWEEP}), primary=True,
           against_dice=True, per_lesion=True, compute=lambda x: assd_from(x.distances, x.penalty)),
    Metric("masd", "distance", False, "mm", "MASD", frozenset({_CASE, _LESION}), primary=True,
           per_lesion=True, compute=lambda x: masd_from(x.distances, x.penalty)),
    Metric("nsd", "boundary", True, "", "NSD", frozenset({_CASE, _LESION, _SWEEP}), primary=True,
           per_tolerance=True, per_lesion=True, compute=lambda x: nsd_from(x.distances, x.tolerance)),
    Metric("contour_f1", "boundary", True, "", "contour F1", frozenset({_CASE, _LESION, _SWEEP}), primary=True,
           against_dice=True, per_tolerance=True, per_lesion=True,
           compute=lambda x: contour_f1_from(x.distances, x.tolerance)),
    Metric("lesion_recall", "detection", True, "", "lesion recall", frozenset({_CASE}), primary=True),
    Metric("fp_lesions_per_case", "detection", False, "", "FP lesions / case", primary=True),
    Metric("fp_lesions", "detection", False, "", "FP lesions", frozenset({_CASE})),
    Metric("detected", "detection", True, "", "detected", frozenset({_LESION})),
    Metric("false_positive", "detection", False, "", "false positive", frozenset({_LESION})),
    # challenge metric sets (helpers.metrics.challenge): optional rows of the per-case table, in no default table
    Metric("avd_percent", "overlap", False, "%", "AVD (%), WMH challenge"),
    Metric("lesion_f1", "detection", True, "", "lesion F1, WMH challenge"),
    Metric("panoptic_quality", "detection", True, "", "panoptic quality"),
)

_TOLERANCE_INFIX = "_tol"


def tolerance_name(name: str, tolerance: float) -> str:
    """The name of ``name`` at an extra tolerance: ``"<name>_tol<t>"`` (``t`` as ``%g``, in mm), e.g.
    ``tolerance_name("nsd", 2.0) == "nsd_tol2"``; only for a metric with ``per_tolerance``."""
    if not metric(name).per_tolerance:
        raise ValueError(f"metric {name!r} has no tolerance variants (per_tolerance is False)")
    return f"{name}{_TOLERANCE_INFIX}{float(tolerance):g}"


#: The suffix of a tolerance given in voxels of each case's own in-plane grid (:func:`voxel_tolerance_name`).
VOXEL_SUFFIX = "vox"


def voxel_tolerance_name(name: str, voxels: float) -> str:
    """The name of ``name`` at a tolerance of ``voxels`` in-plane voxels of each case's own grid:
    ``"<name>_tol<k>vox"``, e.g. ``voxel_tolerance_name("contour_f1", 2) == "contour_f1_tol2vox"`` (in mm it is
    ``k`` times the case's in-plane voxel, so it differs between cases of a dataset of mixed grids)."""
    if not metric(name).per_tolerance:
        raise ValueError(f"metric {name!r} has no tolerance variants (per_tolerance is False)")
    return f"{name}{_TOLERANCE_INFIX}{float(voxels):g}{VOXEL_SUFFIX}"


def split_tolerance_name(name: str) -> tuple[str, float | None]:
    """The inverse of :func:`tolerance_name` and :func:`voxel_tolerance_name`: ``("nsd", 2.0)`` for ``"nsd_tol2"``
    (mm) and for ``"nsd_tol2vox"`` (voxels), ``(name, None)`` for a registered name. Raises ``ValueError`` for a
    name that is none of these."""
    if name in METRICS:
        return name, None
    text = str(name)
    if text.endswith(VOXEL_SUFFIX):
        text = text[: -len(VOXEL_SUFFIX)]
    base, infix, tolerance = text.rpartition(_TOLERANCE_INFIX)
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
        :mod:`helpers.metrics.distances` docstring, ``nsd`` and ``contour_f1`` at ``tolerance``, then each tolerance
        variant at the extra ``tolerances`` (:func:`tolerance_name`). Never NaN or inf. Each metric is also an
        attribute (``result.hd95``).
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
        Distance returned when exactly one mask is empty; default the image diagonal
        (:func:`helpers.metrics.image_diagonal`).

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
    return case_metrics_from(surface_distances_unchecked(ref, pred, spacing), overlap_counts(ref, pred),
                             spacing=spacing, tolerance=tolerance, tolerances=tolerances, penalty=penalty)


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
