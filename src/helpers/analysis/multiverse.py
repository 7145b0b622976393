"""Which conclusions survive every definition? The specification grid over the boundary metrics' definitional
choices (a multiverse analysis, Steegen et al. 2016; drawn as a specification curve, Simonsohn, Simmons and Nelson
2020).

The axes (:data:`AXES`, the one place that names every choice, its values and the study's primary value)
--------------------------------------------------------------------------------------------------------------
``hd95_variant``      directed_max (primary: max of the two directed 95th percentiles) | pooled (one percentile of
                      both directed sets pooled). Applies to the ``hd95`` family only.
``surface_mean``      assd (primary: pooled mean) | masd (mean of the two directed means). ``assd`` family only.
``tolerance_voxels``  1 (primary) | 2 | 3 in-plane voxels of the dataset's grid. ``contour_f1`` family only.
``connectivity``      full (primary: 8 in 2D, 26 in 3D) | face (4 / 6): how lesions and components are labelled.
``min_overlap``       1 (primary) | 3 voxels of a reference lesion predicted before it counts as detected.
``cleanup_voxels``    1 (primary: nothing removed) | 4: predicted components under this many voxels removed first.
``lesion_set``        common (primary) | all_with_penalty | detected_by_model (:mod:`helpers.analysis.units`).
``size_measure``      area_fraction (primary) | n_voxels: what "lesion size" is when quartiles are drawn.
``quartile_edges``    reference (primary: quartiles of every test reference lesion) | common (quartiles of the
                      lesions every model detected). The two size axes apply to the ``Q1`` stratum only.
``aggregation``       mean (primary) | median over the lesions of the stratum (pooled across cases).

Cost
----
Connectivity and clean-up change the components, so each of their combinations needs its own lesion table
(:func:`helpers.analysis.multiverse_tables.structural_tables`: one evaluation per combination, all tolerances
from the same distances). Everything else is a reduction of those tables without re-labelling: the HD95 variant,
ASSD/MASD and the tolerance are columns computed from the same per-lesion distances; the minimum overlap re-derives
detection from ``overlap_voxels`` (a lesion no longer detected gets Dice 0 and the distance penalty, as any missed
lesion; the other lesions' values do not depend on it); lesion set, size measure, quartile edges and aggregation
select and average rows.

Per specification, dataset, stratum, metric and pair of the top models
------------------------------------------------------------------------
``difference`` = metric(A) - metric(B) with A the pair's better model by Dice under the primary specification, its
case-bootstrap percentile interval (:mod:`helpers.stats.bootstrap`: one draw of case indices shared by every
specification), the Dice difference under the same specification, and ``reversed``: Dice and the metric order the
pair oppositely (Dice favours one model, the metric the other; a tie is no reversal). ``n_cases`` counts the cases
holding lesions of both models, ``n_lesions`` the lesions of A (of the union for ``detected_by_model``).
A specification whose stratum holds no lesion of a model has a NaN difference and a ``note``; shares count it as
not assessed, never as holding or failing.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from helpers.metrics import metric
from helpers.stats.bootstrap import resample_indices, resample_weights
from helpers.stats.inference import joint_sign_flip_test

__all__ = [
    "Axis", "AXES", "AXIS_BY_NAME", "FAMILIES", "STRATA", "STRUCTURAL_AXES", "Specification", "specifications",
    "value_column", "top_pairs", "specification_grid", "reversal_shares", "joint_tests", "n_specifications",
    "summary_sentences", "NOT_APPLICABLE",
]


@dataclass(frozen=True)
class Axis:
    """One definitional choice: its ``values`` (the first is the study's primary choice), the metric families it
    applies to (``families``; empty: all), and whether it only matters for the ``Q1`` stratum."""

    name: str
    values: tuple
    label: str
    families: tuple[str, ...] = ()
    q1_only: bool = False

    @property
    def primary(self):
        return self.values[0]


AXES: tuple[Axis, ...] = (
    Axis("hd95_variant", ("directed_max", "pooled"), "HD95 variant", families=("hd95",)),
    Axis("surface_mean", ("assd", "masd"), "ASSD or MASD", families=("assd",)),
    Axis("tolerance_voxels", (1, 2, 3), "contour-F1 tolerance (voxels)", families=("contour_f1",)),
    Axis("connectivity", ("full", "face"), "connectivity"),
    Axis("min_overlap", (1, 3), "minimum overlap (voxels)"),
    Axis("cleanup_voxels", (1, 4), "clean-up (components < k voxels removed)"),
    Axis("lesion_set", ("common", "all_with_penalty", "detected_by_model"), "lesion set"),
    Axis("size_measure", ("area_fraction", "n_voxels"), "size measure", q1_only=True),
    Axis("quartile_edges", ("reference", "common"), "quartile edges from", q1_only=True),
    Axis("aggregation", ("mean", "median"), "aggregation"),
)
AXIS_BY_NAME = {axis.name: axis for axis in AXES}
#: The boundary metrics compared against Dice (the registry's ``against_dice`` metrics).
FAMILIES = ("hd95", "assd", "contour_f1")
STRATA = ("Q1", "all_lesions")
#: Axes that change the components, so need their own lesion table.
STRUCTURAL_AXES = ("connectivity", "cleanup_voxels")
_REDUCTION_OF = {"hd95_variant": {"directed_max": "hd95", "pooled": "hd95_pooled"},
                 "surface_mean": {"assd": "assd", "masd": "masd"}}
NOT_APPLICABLE = ""


@dataclass(frozen=True)
class Specification:
    """One combination of the axes' values; ``""`` for an axis that does not apply (another family's axis, or a
    size axis in the ``all_lesions`` stratum). :meth:`primary` is the study's own choice."""

    hd95_variant: str = "directed_max"
    surface_mean: str = "assd"
    tolerance_voxels: object = 1
    connectivity: str = "full"
    min_overlap: int = 1
    cleanup_voxels: int = 1
    lesion_set: str = "common"
    size_measure: str = "area_fraction"
    quartile_edges: str = "reference"
    aggregation: str = "mean"

    @classmethod
    def primary(cls, family: str, stratum: str = "Q1") -> "Specification":
        return specifications(family, stratum, axes={a.name: (a.primary,) for a in AXES})[0]

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def is_primary(self, family: str, stratum: str = "Q1") -> bool:
        return self == _primary(family, stratum)


_PRIMARY: dict = {}


def _primary(family: str, stratum: str) -> Specification:
    if (family, stratum) not in _PRIMARY:
        _PRIMARY[(family, stratum)] = Specification.primary(family, stratum)
    return _PRIMARY[(family, stratum)]


def _applies(axis: Axis, family: str, stratum: str) -> bool:
    return (not axis.families or family in axis.families) and not (axis.q1_only and stratum != "Q1")


def specifications(family: str, stratum: str = "Q1", *, axes: dict | None = None) -> list[Specification]:
    """Every specification of a metric ``family`` in a ``stratum``: the product of the values of the axes that
    apply (``axes`` may restrict an axis to some of its values, e.g. a profile that crosses fewer)."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    if stratum not in STRATA:
        raise ValueError(f"stratum must be one of {STRATA}, got {stratum!r}")
    axes = axes or {}
    unknown = sorted(set(axes) - set(AXIS_BY_NAME))
    if unknown:
        raise ValueError(f"unknown axes {unknown}; the axes are {list(AXIS_BY_NAME)}")
    choices = []
    for axis in AXES:
        if not _applies(axis, family, stratum):
            choices.append((NOT_APPLICABLE,))
            continue
        values = tuple(axes.get(axis.name, axis.values))
        bad = [v for v in values if v not in axis.values]
        if bad or not values:
            raise ValueError(f"axis {axis.name!r}: values {bad or values} not among {axis.values}")
        choices.append(values)
    return [Specification(*combo) for combo in itertools.product(*choices)]


def n_specifications(axes: dict | None = None) -> pd.DataFrame:
    """How many specifications each family has per stratum: ``family, stratum, n_specifications``."""
    return pd.DataFrame([{"family": f, "stratum": s, "n_specifications": len(specifications(f, s, axes=axes))}
                         for s in STRATA for f in FAMILIES])


def value_column(family: str, spec: Specification) -> str:
    """The lesion table's column holding ``family`` under ``spec`` (``contour_f1_<t>vox`` for a tolerance)."""
    if family == "hd95":
        return _REDUCTION_OF["hd95_variant"][spec.hd95_variant]
    if family == "assd":
        return _REDUCTION_OF["surface_mean"][spec.surface_mean]
    return f"contour_f1_{int(spec.tolerance_voxels)}vox"


# ------------------------------------------------------------------------------------------------ selection
_LESION_KEYS = ["case_id", "lesion_id"]


def _detected_values(table: pd.DataFrame, min_overlap: int, columns: list[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """Detection at ``min_overlap`` and the value columns with a newly missed lesion's values set to the miss
    values (0 for scores, the penalty distance for distances)."""
    detected = table["overlap_voxels"].to_numpy() >= min_overlap
    values = table[columns].copy()
    for name in columns:
        base = "contour_f1" if name.startswith("contour_f1") else name
        miss = table["penalty_mm"].to_numpy() if metric(base).penalised else 0.0
        values[name] = np.where(detected, values[name].to_numpy(), miss)
    return detected, values


def _edges(sizes: np.ndarray) -> float:
    return float(np.quantile(sizes, 0.25, method="linear")) if sizes.size else float("nan")


def _selection(table: pd.DataFrame, detected: np.ndarray, models: list[str], spec: Specification,
               stratum: str) -> np.ndarray:
    """Which rows of ``table`` (one per model and reference lesion) are units of ``spec`` in ``stratum``."""
    model = table["model"].to_numpy()
    key = table["_key"].to_numpy()
    n_models = len(models)
    hits = np.bincount(key[detected], minlength=int(key.max()) + 1 if key.size else 0)
    common = hits[key] == n_models
    if stratum == "Q1":
        size = table[spec.size_measure].to_numpy(dtype=float)
        once = table["_first"].to_numpy() & (common if spec.quartile_edges == "common" else True)
        edge = _edges(size[once])
        keep = size <= edge if np.isfinite(edge) else np.zeros(len(table), dtype=bool)
    else:
        keep = np.ones(len(table), dtype=bool)
    if spec.lesion_set == "common":
        keep &= common
    elif spec.lesion_set == "detected_by_model":
        keep &= detected
    return keep & np.isin(model, models)


# ------------------------------------------------------------------------------------------------ statistics
def _weighted_medians(values: np.ndarray, cases: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The median of ``values`` in every bootstrap resample (unit weight = its case's multiplicity): the mean of
    the lower and upper weighted medians, which is :func:`numpy.median` for unit weights."""
    if values.size == 0:
        return np.full(weights.shape[0], np.nan)
    order = np.argsort(values, kind="stable")
    v = values[order]
    cumulative = np.cumsum(weights[:, cases[order]], axis=1, dtype=np.float32)  # integer counts: exact in float32
    half = cumulative[:, -1:] / 2.0
    lower = np.argmax(cumulative >= half, axis=1)
    upper = np.argmax(cumulative > half, axis=1)
    out = (v[lower] + v[upper]) / 2.0  # float64 values
    out[cumulative[:, -1] == 0] = np.nan
    return out


def _statistic(values, cases, weights, n_cases, aggregation):
    """(estimate, resampled statistics) of one model's units."""
    if aggregation == "median":
        est = float(np.median(values)) if values.size else float("nan")
        return est, _weighted_medians(values, cases, weights)
    sums = np.bincount(cases, weights=values, minlength=n_cases)
    counts = np.bincount(cases, minlength=n_cases).astype(float)
    est = float(values.mean()) if values.size else float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        return est, (weights @ sums) / (weights @ counts)


def _case_means(values, cases, n_cases):
    counts = np.bincount(cases, minlength=n_cases)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.bincount(cases, weights=values, minlength=n_cases) / counts, counts


def top_pairs(table: pd.DataFrame, *, top_k: int = 3) -> list[tuple[str, str]]:
    """The pairs among the ``top_k`` models by mean Q1 Dice under the primary specification (common set; every Q1
    lesion with the miss penalty when no Q1 lesion is common to all models), each ordered (better Dice, worse Dice);
    every model when there are fewer."""
    models = sorted(table["model"].astype(str).unique())
    spec = Specification.primary("hd95")
    detected, values = _detected_values(table, spec.min_overlap, ["dice"])
    for lesion_set in ("common", "all_with_penalty"):  # no Q1 lesion in common: rank on every Q1 lesion instead
        spec = Specification(**{**spec.as_dict(), "lesion_set": lesion_set})
        keep = _selection(table, detected, models, spec, "Q1")
        means = pd.Series(values["dice"].to_numpy()[keep]).groupby(table["model"].to_numpy()[keep]).mean()
        if len(means) >= 2:
            break
    ranked = [m for m in means.sort_values(ascending=False, kind="stable").index][:top_k]
    return [(a, b) for i, a in enumerate(ranked) for b in ranked[i + 1:]]


def _prepared(table: pd.DataFrame) -> pd.DataFrame:
    table = table.assign(case_id=table["case_id"].astype(str), model=table["model"].astype(str)).reset_index(drop=True)
    keys = pd.MultiIndex.from_frame(table[_LESION_KEYS])
    codes, _ = pd.factorize(keys)
    return table.assign(_key=codes, _first=~pd.Series(codes).duplicated().to_numpy())


def specification_grid(tables: dict, *, dataset: str, axes: dict | None = None, pairs=None, top_k: int = 3,
                       strata: Sequence[str] = STRATA, families: Sequence[str] = FAMILIES, n_resamples: int = 1000,
                       seed: int = 0, confidence: float = 0.95, case_ids: Sequence[str] | None = None,
                       with_case_differences: bool = False):
    """The grid of one dataset: one row per specification, stratum, metric family and pair.

    Parameters
    ----------
    tables : dict
        ``{(connectivity, cleanup_voxels): wide lesion table}``
        (:func:`helpers.analysis.multiverse_tables.lesion_frame`): one row per model and reference lesion with
        ``model, case_id, lesion_id, overlap_voxels, n_voxels, area_fraction, penalty_mm, dice, hd95,
        hd95_pooled, assd, masd, contour_f1_<t>vox``. A missing combination is a counted ``note`` row.
    axes : dict, optional
        Values per axis to cross (default every value of :data:`AXES`).
    pairs : list of (model_a, model_b), optional
        Default :func:`top_pairs` of the primary table.
    case_ids : sequence of str, optional
        The resampling population (default every case in the primary table).
    with_case_differences : bool
        Also return ``{(stratum, family, model_a, model_b): (n_cases x n_specs) matrix}`` of per-case mean
        differences (0 where a case lacks a unit of either model), for :func:`joint_tests` (mean specs).
    """
    primary_key = (AXIS_BY_NAME["connectivity"].primary, AXIS_BY_NAME["cleanup_voxels"].primary)
    if primary_key not in tables:
        raise ValueError(f"tables lacks the primary combination {primary_key}; has {sorted(tables)}")
    prepared = {k: _prepared(t) for k, t in tables.items()}
    primary = prepared[primary_key]
    pairs = top_pairs(primary, top_k=top_k) if pairs is None else [tuple(p) for p in pairs]
    models = sorted(primary["model"].unique())
    case_ids = sorted(primary["case_id"].unique()) if case_ids is None else [str(c) for c in case_ids]
    case_pos = {c: i for i, c in enumerate(case_ids)}
    n_cases = len(case_ids)
    weights = resample_weights(resample_indices(n_cases, n_resamples, seed=seed), n_cases)
    reductions = {k: _Reductions(t, models, case_pos, weights) for k, t in prepared.items()}
    rows, case_diffs = [], {}
    for stratum in strata:
        for family in families:
            for spec in specifications(family, stratum, axes=axes):
                key = (spec.connectivity, spec.cleanup_voxels)
                base = {"dataset": dataset, "stratum": stratum, "metric": family, **spec.as_dict(),
                        "is_primary": spec.is_primary(family, stratum)}
                if key not in prepared:
                    rows.extend({**base, "model_a": a, "model_b": b, "difference": np.nan,
                                 "note": f"no lesion table for connectivity={key[0]}, clean-up={key[1]}"}
                                for a, b in pairs)
                    continue
                rows.extend(_spec_rows(reductions[key], spec, family, stratum, pairs, confidence, base, case_diffs,
                                       with_case_differences))
    for name, low, high in (("_resampled", "low", "high"), ("_dice_resampled", "dice_low", "dice_high")):
        bounds = _bounds([row.pop(name, None) for row in rows], n_resamples, confidence)
        for row, (lo, hi) in zip(rows, bounds):
            row[low], row[high] = lo, hi
    columns = ["dataset", "stratum", "metric", *[a.name for a in AXES], "is_primary", "value_column", "model_a",
               "model_b", "difference", "low", "high", "dice_difference", "dice_low", "dice_high", "reversed",
               "n_cases", "n_lesions", "n_lesions_b", "note"]
    grid = pd.DataFrame(rows, columns=columns)
    if "note" not in grid.columns:
        grid["note"] = ""
    grid["note"] = grid["note"].fillna("")
    if with_case_differences:
        return grid, {k: np.column_stack(v) for k, v in case_diffs.items()}
    return grid


def _bounds(resampled: list, n_resamples: int, confidence: float, chunk: int = 2000) -> np.ndarray:
    """:func:`helpers.stats.bootstrap.percentile_bounds` of many resampled statistics at once (NaN resamples left
    out, as there; ``(nan, nan)`` for a missing or all-NaN one): the same linear quantiles, vectorised."""
    out = np.full((len(resampled), 2), np.nan)
    tail = (1.0 - confidence) / 2.0
    for start in range(0, len(resampled), chunk):
        part = resampled[start:start + chunk]
        stack = np.stack([r if r is not None else np.full(n_resamples, np.nan) for r in part])
        finite = np.isfinite(stack)
        whole = finite.all(axis=1)
        block = out[start:start + len(part)]
        if whole.any():
            block[whole] = np.quantile(stack[whole], [tail, 1.0 - tail], axis=1, method="linear").T
        for i in np.flatnonzero(~whole & finite.any(axis=1)):
            block[i] = np.quantile(stack[i][finite[i]], [tail, 1.0 - tail], method="linear")
    return out


class _Reductions:
    """The reductions of one lesion table, each computed once and shared by every specification that needs it:
    detection and miss values per minimum overlap, unit selections, and per-model statistics."""

    def __init__(self, table: pd.DataFrame, models, case_pos, weights):
        self.table, self.models, self.weights, self.n_cases = table, models, weights, len(case_pos)
        self.weights32 = weights.astype(np.float32)  # multiplicities: small integers, exact in float32
        self.model = table["model"].to_numpy()
        self.cases = table["case_id"].map(case_pos).to_numpy()
        self._detected, self._selected, self._stats = {}, {}, {}

    def detected(self, min_overlap: int):
        if min_overlap not in self._detected:
            columns = [c for c in self.table.columns if c in ("dice", "hd95", "hd95_pooled", "assd", "masd")
                       or c.startswith("contour_f1_")]
            detected, values = _detected_values(self.table, min_overlap, columns)
            self._detected[min_overlap] = (detected, {c: values[c].to_numpy(dtype=float) for c in columns})
        return self._detected[min_overlap]

    def selection(self, spec: Specification, stratum: str):
        key = (spec.min_overlap, spec.lesion_set, spec.size_measure, spec.quartile_edges, stratum)
        if key not in self._selected:
            self._selected[key] = _selection(self.table, self.detected(spec.min_overlap)[0], self.models, spec,
                                             stratum)
        return key, self._selected[key]

    def statistic(self, spec: Specification, stratum: str, column: str, model: str):
        """(estimate, resampled statistics, case means, case counts, n units) of one model's units."""
        key, keep = self.selection(spec, stratum)
        full = (key, column, spec.aggregation, model)
        if full not in self._stats:
            rows = keep & (self.model == model)
            values, cases = self.detected(spec.min_overlap)[1][column][rows], self.cases[rows]
            weights = self.weights32 if spec.aggregation == "median" else self.weights
            est, resampled = _statistic(values, cases, weights, self.n_cases, spec.aggregation)
            means, counts = _case_means(values, cases, self.n_cases)
            self._stats[full] = (est, resampled, means, counts, int(values.size))
        return self._stats[full]


def _spec_rows(reductions: _Reductions, spec, family, stratum, pairs, confidence, base, case_diffs,
               with_case_differences):
    column = value_column(family, spec)
    higher = metric(family).higher_is_better
    out = []
    for a, b in pairs:
        ea, ra, mean_a, count_a, na = reductions.statistic(spec, stratum, column, a)
        eb, rb, mean_b, count_b, nb = reductions.statistic(spec, stratum, column, b)
        da, rda = reductions.statistic(spec, stratum, "dice", a)[:2]
        db, rdb = reductions.statistic(spec, stratum, "dice", b)[:2]
        difference, dice_difference = ea - eb, da - db
        oriented = difference if higher else -difference
        ok = bool(np.isfinite(difference) and np.isfinite(dice_difference))
        both = (count_a > 0) & (count_b > 0)
        out.append({**base, "value_column": column, "model_a": a, "model_b": b, "difference": difference,
                    "_resampled": ra - rb, "dice_difference": dice_difference, "_dice_resampled": rda - rdb,
                    "reversed": bool(dice_difference * oriented < 0) if ok else pd.NA,
                    "n_cases": int(both.sum()), "n_lesions": na, "n_lesions_b": nb,
                    "note": "" if ok else "no lesion of a model in this stratum and lesion set"})
        if with_case_differences and spec.aggregation == "mean":
            d = np.where(both, mean_a - mean_b, 0.0)
            case_diffs.setdefault((stratum, family, a, b), []).append(np.nan_to_num(d))
    return out


# ------------------------------------------------------------------------------------------------ summaries
def _axis_columns(grid: pd.DataFrame) -> list[str]:
    return [a.name for a in AXES if a.name in grid.columns]


def reversal_shares(grid: pd.DataFrame) -> pd.DataFrame:
    """The share of specifications in which each reversal conclusion holds, overall (``axis == "all"``) and per
    axis value: per ``dataset, stratum, metric, model_a, model_b``: ``primary_reversed`` (the study's own
    conclusion), ``n_specifications``, ``n_assessed`` (a finite difference) and ``share_reversed`` among the
    assessed ones (NaN when none is)."""
    group = ["dataset", "stratum", "metric", "model_a", "model_b"]
    rows = []
    if not len(grid):
        return pd.DataFrame(columns=[*group, "axis", "value", "primary_reversed", "n_specifications", "n_assessed",
                                     "share_reversed"])
    for key, sub in grid.groupby(group, sort=True):
        prim = sub[sub["is_primary"].astype(bool)]
        primary_reversed = bool(prim["reversed"].iloc[0]) if len(prim) and pd.notna(prim["reversed"].iloc[0]) \
            else pd.NA
        views = [("all", "", sub)]
        for axis in _axis_columns(sub):
            for value, part in sub.groupby(axis, sort=False):
                if value != NOT_APPLICABLE:
                    views.append((axis, value, part))
        for axis, value, part in views:
            assessed = part["reversed"].dropna().astype(bool)
            rows.append({**dict(zip(group, key)), "axis": axis, "value": str(value),
                         "primary_reversed": primary_reversed, "n_specifications": int(len(part)),
                         "n_assessed": int(assessed.size),
                         "share_reversed": float(assessed.mean()) if assessed.size else np.nan})
    return pd.DataFrame(rows)


def joint_tests(case_differences: dict, *, dataset: str, n_permutations: int = 10_000, seed: int = 0
                ) -> pd.DataFrame:
    """One sign-flip test over cases per curve (stratum, metric, pair), all its mean specifications at once
    (:func:`helpers.stats.inference.joint_sign_flip_test`)."""
    rows = []
    for (stratum, family, a, b), matrix in sorted(case_differences.items()):
        result = joint_sign_flip_test(matrix, n_permutations=n_permutations, seed=seed)
        rows.append({"dataset": dataset, "stratum": stratum, "metric": family, "model_a": a, "model_b": b,
                     "joint_p": result.p_value, "statistic": result.statistic, "n_cases": result.n,
                     "n_columns": result.n_columns, "method": result.method})
    return pd.DataFrame(rows, columns=["dataset", "stratum", "metric", "model_a", "model_b", "joint_p", "statistic",
                                       "n_cases", "n_columns", "method"])


def _percent(share: float) -> str:
    """A share as a percentage, with one decimal below 1 % so that a non-zero share never reads as 0 %."""
    return f"{share:.1%}" if 0 < share < 0.01 else f"{share:.0%}"


def summary_sentences(shares: pd.DataFrame, joint: pd.DataFrame | None = None, *, stratum: str = "Q1",
                      datasets: Sequence[str] = ()) -> list[str]:
    """The summary in plain sentences: per dataset, each reversal the primary specification finds (Dice and a
    boundary metric ordering a pair oppositely) with the share of specifications in which it holds and the
    axis value under which it holds least, then the reversals the primary specification does not find but some
    specifications do; a dataset of ``datasets`` without a row is named as not assessable."""
    overall = shares[(shares["axis"] == "all") & (shares["stratum"] == stratum)]
    lines = []
    for dataset in datasets or ():
        if dataset not in set(overall["dataset"]):
            lines.append(f"{dataset}, {stratum}: cannot be assessed (no pair of models with {stratum} lesions).")
    for dataset, sub in overall.groupby("dataset", sort=False):
        found = sub[sub["primary_reversed"].fillna(False).astype(bool)]
        for row in found.itertuples():
            per_axis = shares[(shares["dataset"] == dataset) & (shares["stratum"] == stratum)
                              & (shares["metric"] == row.metric) & (shares["model_a"] == row.model_a)
                              & (shares["model_b"] == row.model_b) & (shares["axis"] != "all")]
            weakest = per_axis.sort_values("share_reversed", kind="stable").head(1)
            tail = ""
            if len(weakest):
                w = weakest.iloc[0]
                tail = f"; it holds least when {w['axis']} = {w['value']} ({_percent(w['share_reversed'])})"
            test = ""
            if joint is not None and len(joint):
                j = joint[(joint["dataset"] == dataset) & (joint["stratum"] == stratum)
                          & (joint["metric"] == row.metric) & (joint["model_a"] == row.model_a)
                          & (joint["model_b"] == row.model_b)]
                if len(j):
                    test = (f" The joint sign-flip over cases gives p = {j['joint_p'].iloc[0]:.3g} for a "
                            f"{row.metric} difference anywhere on the curve.")
            lines.append(f"{dataset}, {stratum}: Dice and {row.metric} order {row.model_a} and {row.model_b} "
                         f"oppositely under the primary definition, and in {_percent(row.share_reversed)} of the "
                         f"{row.n_assessed} assessable specifications{tail}.{test}")
        others = sub[~sub["primary_reversed"].fillna(False).astype(bool) & (sub["share_reversed"] > 0)]
        if not len(found):
            lines.append(f"{dataset}, {stratum}: the primary definition finds no reversal between the top models.")
        for row in others.itertuples():
            lines.append(f"{dataset}, {stratum}: no reversal of {row.model_a} and {row.model_b} by {row.metric} "
                         f"under the primary definition, but one in {_percent(row.share_reversed)} of the specifications.")
    return lines
