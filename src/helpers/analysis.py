"""The study's analysis: size quartiles, aggregation per stratum, spreads, the paper's tables and the figures.

Inputs are the tidy tables written by :mod:`helpers.evaluation` (``per_case_metrics.csv`` and
``per_lesion_metrics.csv``); everything here is a pure function of those tables.

Lesion size and quartiles
-------------------------
A lesion's size is its ``area_fraction`` (see :mod:`helpers.lesions`: 2D lesion pixels / image pixels; 3D the
largest axial cross-section / axial slice area). Quartile edges are the 25th, 50th and 75th percentiles
(:func:`numpy.quantile`, linear interpolation) of the area fractions of the *test set's reference lesions*,
per dataset. A lesion of area fraction ``a`` falls in Q1 if ``a <= e25``, Q2 if ``e25 < a <= e50``, Q3 if
``e50 < a <= e75`` and Q4 if ``a > e75`` (upper edges inclusive). Q1 is the small-lesion regime; its upper
edge ``e25`` is the "small-lesion upper bound" of the paper's section 4.5.

Strata and units (one definition shared by aggregates and bootstrap)
--------------------------------------------------------------------
Every aggregate is a mean over *units*; :func:`analysis_units` builds the unit table, :func:`aggregate`
averages it and :func:`helpers.bootstrap.directional_robustness` resamples it by case.

``overall`` (the full test set, the paper's "full-test-set" reporting)
    Dice, IoU, HD95, ASSD, contour F1: one unit per case, the image-level metric of the case.
    ``lesion_recall``: one unit per reference lesion, 1 if detected else 0 (pooled recall).
    ``fp_lesions_per_case``: one unit per case, its number of false-positive predicted lesions.
``all_lesions``, ``Q1`` ... ``Q4`` (lesion level)
    Dice, IoU, HD95, ASSD, contour F1: one unit per *reference lesion* of the stratum, the lesion's own metric
    (computed by :func:`helpers.lesions.evaluate_lesions` in the lesion's region of influence).
    ``lesion_recall``: share of the stratum's reference lesions that were detected.
    ``fp_lesions_per_case``: false-positive lesions cannot belong to a *reference* size quartile; here they are
    binned by their *own* area fraction with the same edges, one unit per case (its count of such false
    positives). The ``all_lesions`` stratum counts all of them, like ``overall``.

The primary aggregate (``value``) is the mean over units (lesions pooled across cases for lesion-level strata).
The secondary ``value_case_mean`` averages per case first and then over the cases that have a unit (equal
weight per case). Both report their n: ``n`` units, ``n_cases``, ``n_penalty`` (units whose value is a penalty
for an undefined distance, e.g. a missed lesion's HD95) and ``n_nan`` (units without a value, excluded).

Missed-lesion policy
--------------------
``"penalty"`` (primary): a missed reference lesion stays in the lesion-level means with its Dice 0 and the
penalty distances of the evaluation. ``"detected_only"`` (sensitivity analysis): missed lesions are dropped
from the lesion-level Dice, IoU, HD95, ASSD and contour F1 (recall still counts them); n shows how many remain.

Spread among the top models
---------------------------
Per dataset and stratum, the ``top_k`` (3) models by Dice in that stratum; for each metric the absolute spread
``max - min`` over them and the relative spread ``(max - min) / min * 100`` (% by which the worst exceeds the
best for distances; for Dice the same formula), as the paper reports "HD95 differs by up to 41.3%".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .plots import get_axes, model_color
from .ranking import BOUNDARY_METRICS, METRIC_DIRECTIONS, compare_orders, rank_models

#: Metric columns of the study's output tables, in the paper's order (section 3.6).
METRICS: tuple[str, ...] = ("dice", "iou", "hd95", "assd", "contour_f1", "lesion_recall", "fp_lesions_per_case")
#: Metrics computed per lesion (and per case) by the evaluation.
SEGMENTATION_METRICS: tuple[str, ...] = ("dice", "iou", "hd95", "assd", "contour_f1")
QUARTILES: tuple[str, ...] = ("Q1", "Q2", "Q3", "Q4")
STRATA: tuple[str, ...] = ("overall", "all_lesions", *QUARTILES)
REFERENCE = "lesion"  # the kind of reference-lesion rows (helpers.lesions.evaluate_lesions)
FALSE_POSITIVE = "false_positive"
POLICIES = ("penalty", "detected_only")

#: Display names of the study's four model families and the paper's names for them.
MODEL_LABELS = {
    "unet": "U-Net",
    "resunet": "Residual U-Net",
    "attention_unet": "Attention U-Net",
    "hybrid_transformer": "Hybrid CNN-Transformer",
}

# ---------------------------------------------------------------------------------------------------------------
# The paper's numbers (shared/papers/small-lesion-boundary-study.md in the steering repository), by section. Set beside ours, never used
# in a computation.
# ---------------------------------------------------------------------------------------------------------------
#: Section 4.1: full-test-set Dice (pooled over datasets).
PAPER_FULL_SET_DICE = {"hybrid_transformer": 0.851, "attention_unet": 0.848, "resunet": 0.845, "unet": 0.836}
#: Section 4.2: representative small-lesion (Q1) comparison; HD95 and ASD in the paper's (unstated) units.
PAPER_SMALL_LESION = {
    "hybrid_transformer": {"dice": 0.742, "hd95": 8.6, "assd": 1.94, "contour_f1": 0.681},
    "attention_unet": {"dice": 0.739, "hd95": 7.1, "assd": 1.53, "contour_f1": 0.742},
    "resunet": {"dice": 0.734, "hd95": 6.8, "assd": 1.48, "contour_f1": 0.753},
    "unet": {"dice": 0.721, "hd95": 9.5, "assd": 2.11, "contour_f1": 0.648},
}
#: Section 4.2: largest pairwise differences among top models in Q1 across datasets.
PAPER_Q1_MAX_DIFFERENCES = {"hd95_percent": 41.3, "assd_percent": 36.8, "contour_f1_absolute": 0.112,
                            "lesion_recall_points": 8.7}
#: Section 4.3: Dice vs boundary-metric agreement over 9 dataset-level top-model comparisons.
PAPER_AGREEMENT = {"hd95": (4, 9), "assd": (5, 9), "contour_f1": (3, 9)}
#: Section 4.3: the Dice leader ranked third under HD95 in 2 of 3 datasets (Q1).
PAPER_DICE_LEADER_THIRD_HD95 = (2, 3)
#: Section 4.5: dataset summary.
PAPER_DATASETS = {
    "wmh": {"name": "WMH Challenge", "modality": "MRI", "test_cases": 60, "lesions": 1964, "q1_upper_percent": 1.4},
    "lits": {"name": "LiTS-derived focal lesion subset", "modality": "CT", "test_cases": 70, "lesions": 2118,
             "q1_upper_percent": 1.6},
    "idrid": {"name": "IDRiD lesion benchmark", "modality": "Fundus", "test_cases": 81, "lesions": 1760,
              "q1_upper_percent": 1.5},
}
#: Section 4.6: overall vs small-lesion pattern (spreads among the top 3 by Dice).
PAPER_SPREADS = {
    "overall": {"dice_spread": 0.009, "hd95_spread_percent": 14.7, "ranking_stability": "Moderate"},
    "Q4": {"dice_spread": 0.011, "hd95_spread_percent": 12.4, "ranking_stability": "Higher"},
    "Q1": {"dice_spread": 0.008, "hd95_spread_percent": 41.3, "ranking_stability": "Low"},
}
MODALITIES = {"wmh": "MRI", "lits": "CT", "idrid": "Fundus"}


# ---------------------------------------------------------------------------------------------------------------
# Quartiles
# ---------------------------------------------------------------------------------------------------------------
def quartile_edges(area_fractions) -> np.ndarray:
    """The 25th, 50th and 75th percentiles of the reference lesions' area fractions (linear interpolation).

    Raises
    ------
    ValueError
        If there is no finite area fraction, or one outside [0, 1].
    """
    a = np.asarray(area_fractions, dtype=float).ravel()
    a = a[np.isfinite(a)]
    if a.size == 0:
        raise ValueError("area_fractions holds no finite value: no reference lesion to define quartiles")
    if a.min() < 0 or a.max() > 1:
        raise ValueError(f"area_fractions must lie in [0, 1], got values from {a.min()} to {a.max()}")
    return np.quantile(a, [0.25, 0.5, 0.75])


def assign_quartiles(area_fractions, edges) -> np.ndarray:
    """Quartile labels ``"Q1"`` ... ``"Q4"`` (upper edges inclusive); ``""`` where the area fraction is NaN.

    Examples
    --------
    >>> assign_quartiles([0.1, 0.2, 0.25, 0.3, 0.9], [0.2, 0.3, 0.5]).tolist()
    ['Q1', 'Q1', 'Q2', 'Q2', 'Q4']
    """
    edges = np.asarray(edges, dtype=float)
    if edges.shape != (3,) or not np.all(np.isfinite(edges)) or np.any(np.diff(edges) < 0):
        raise ValueError(f"edges must be 3 finite non-decreasing values, got {edges.tolist()}")
    a = np.asarray(area_fractions, dtype=float).ravel()
    index = np.searchsorted(edges, a, side="left")
    labels = np.array(QUARTILES, dtype=object)[np.minimum(index, 3)]
    labels[~np.isfinite(a)] = ""
    return labels.astype(str)


def with_quartile_bounds(table: pd.DataFrame, edges) -> pd.DataFrame:
    """Add the area-fraction bounds of each row's stratum: ``area_fraction_above`` (exclusive lower bound) and
    ``area_fraction_upto`` (inclusive upper bound); Q1 starts above 0, Q4 ends at 1, other strata get NaN."""
    _check_columns(table, ["stratum"], "table")
    e = np.asarray(edges, dtype=float)
    if e.shape != (3,):
        raise ValueError(f"edges must be 3 values, got {e.tolist()}")
    bounds = {"Q1": (0.0, e[0]), "Q2": (e[0], e[1]), "Q3": (e[1], e[2]), "Q4": (e[2], 1.0)}
    lower = table["stratum"].map(lambda s: bounds.get(s, (np.nan, np.nan))[0]).astype(float)
    upper = table["stratum"].map(lambda s: bounds.get(s, (np.nan, np.nan))[1]).astype(float)
    return table.assign(area_fraction_above=lower, area_fraction_upto=upper)


# ---------------------------------------------------------------------------------------------------------------
# Units and aggregates
# ---------------------------------------------------------------------------------------------------------------
_CASE_COLUMNS = ("dataset", "model", "case_id", "metric", "value", "penalty")
_LESION_COLUMNS = ("dataset", "model", "case_id", "lesion_id", "kind", "detected", "area_fraction", "quartile",
                   "metric", "value", "penalty")


def _check_columns(df: pd.DataFrame, columns, name: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing}; has {list(df.columns)}")


def _as_bool(series: pd.Series) -> pd.Series:
    if series.dtype == bool:
        return series
    return series.map(lambda v: str(v).strip().lower() in ("true", "1", "1.0")).astype(bool)


def analysis_units(per_case: pd.DataFrame, per_lesion: pd.DataFrame, *, policy: str = "penalty") -> pd.DataFrame:
    """The unit table behind every aggregate and bootstrap (see the module docstring for the definitions).

    Parameters
    ----------
    per_case : pandas.DataFrame
        ``per_case_metrics.csv``: ``dataset, model, case_id, metric, value, penalty``; metrics include the
        image-level ``dice, iou, hd95, assd, contour_f1`` and ``fp_lesions`` (count per case).
    per_lesion : pandas.DataFrame
        ``per_lesion_metrics.csv``: reference-lesion rows (``kind == "lesion"``) with metrics
        ``detected, dice, iou, hd95, assd, contour_f1`` and false-positive rows (``kind == "false_positive"``,
        metric ``false_positive``), each with ``area_fraction`` and ``quartile``.
    policy : {"penalty", "detected_only"}
        Missed-lesion policy for lesion-level metrics.

    Returns
    -------
    pandas.DataFrame
        ``dataset, stratum, metric, model, case_id, value, penalty``, one row per unit.
    """
    _check_columns(per_case, _CASE_COLUMNS, "per_case")
    _check_columns(per_lesion, _LESION_COLUMNS, "per_lesion")
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    out = []
    pc = per_case.assign(penalty=_as_bool(per_case["penalty"]))
    pl = per_lesion.assign(penalty=_as_bool(per_lesion["penalty"]), detected=_as_bool(per_lesion["detected"]),
                           quartile=per_lesion["quartile"].fillna("").astype(str))
    cols = ["dataset", "stratum", "metric", "model", "case_id", "value", "penalty"]

    # overall: image-level metrics per case, FP count per case
    seg = pc[pc["metric"].isin(SEGMENTATION_METRICS)].assign(stratum="overall")
    out.append(seg[cols])
    fp = pc[pc["metric"] == "fp_lesions"].assign(stratum="overall", metric="fp_lesions_per_case")
    out.append(fp[cols])

    ref = pl[pl["kind"] == REFERENCE]
    detected = ref[ref["metric"] == "detected"]
    recall = detected.assign(metric="lesion_recall", value=detected["detected"].astype(float), penalty=False)
    out.append(recall.assign(stratum="overall")[cols])
    lesion_seg = ref[ref["metric"].isin(SEGMENTATION_METRICS)]
    if policy == "detected_only":
        lesion_seg = lesion_seg[lesion_seg["detected"]]

    # every (dataset, model, case) that was evaluated, so that FP counts of zero are explicit units
    cases = pc[["dataset", "model", "case_id"]].drop_duplicates()
    fps = pl[(pl["kind"] == FALSE_POSITIVE) & (pl["metric"] == FALSE_POSITIVE)]
    for stratum in ("all_lesions", *QUARTILES):
        keep = (lambda t: t) if stratum == "all_lesions" else (lambda t, s=stratum: t[t["quartile"] == s])
        out.append(keep(lesion_seg).assign(stratum=stratum)[cols])
        out.append(keep(recall).assign(stratum=stratum)[cols])
        counts = keep(fps).groupby(["dataset", "model", "case_id"]).size().rename("value").reset_index()
        fp_units = cases.merge(counts, on=["dataset", "model", "case_id"], how="left")
        fp_units["value"] = fp_units["value"].fillna(0).astype(float)
        out.append(fp_units.assign(stratum=stratum, metric="fp_lesions_per_case", penalty=False)[cols])
    units = pd.concat(out, ignore_index=True)
    units["value"] = pd.to_numeric(units["value"], errors="raise").astype(float)
    units["penalty"] = units["penalty"].astype(bool)
    return units


def aggregate(units: pd.DataFrame) -> pd.DataFrame:
    """Aggregate a unit table: mean over units (primary) and mean of case means, with their counts.

    Returns
    -------
    pandas.DataFrame
        ``dataset, stratum, model, metric, value, n, n_nan, n_penalty, n_cases, value_case_mean, sd``,
        sorted by dataset, stratum (overall, all_lesions, Q1..Q4), metric (paper order) and model.
    """
    _check_columns(units, ["dataset", "stratum", "metric", "model", "case_id", "value", "penalty"], "units")
    keys = ["dataset", "stratum", "model", "metric"]
    u = units.assign(finite=np.isfinite(units["value"]))
    good = u[u["finite"]]
    stats = good.groupby(keys).agg(value=("value", "mean"), sd=("value", "std"), n=("value", "size"),
                                   n_penalty=("penalty", "sum"), n_cases=("case_id", "nunique"))
    case_means = good.groupby([*keys, "case_id"])["value"].mean().groupby(keys).mean().rename("value_case_mean")
    n_nan = (~u["finite"]).groupby([u[k] for k in keys]).sum().rename("n_nan")
    table = pd.concat([stats, case_means], axis=1).join(n_nan, how="outer").reset_index()
    table["n"] = table["n"].fillna(0).astype(int)
    table["n_penalty"] = table["n_penalty"].fillna(0).astype(int)
    table["n_cases"] = table["n_cases"].fillna(0).astype(int)
    table["n_nan"] = table["n_nan"].fillna(0).astype(int)
    order = {s: i for i, s in enumerate(STRATA)}
    morder = {m: i for i, m in enumerate(METRICS)}
    table = table.assign(_s=table["stratum"].map(order).fillna(99), _m=table["metric"].map(morder).fillna(99))
    table = table.sort_values(["dataset", "_s", "_m", "model"]).drop(columns=["_s", "_m"]).reset_index(drop=True)
    return table[["dataset", "stratum", "model", "metric", "value", "n", "n_nan", "n_penalty", "n_cases",
                  "value_case_mean", "sd"]]


def spread_table(aggregates: pd.DataFrame, *, top_k: int = 3, reference: str = "dice",
                 metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Spread of each metric among the ``top_k`` models by ``reference`` in each dataset and stratum.

    Returns
    -------
    pandas.DataFrame
        ``dataset, stratum, metric, top_models, best, worst, spread, relative_spread_percent, n_models``;
        ``best``/``worst`` by the metric's direction; ``relative_spread_percent = (max - min) / min * 100``
        (NaN when ``min`` is 0).
    """
    _check_columns(aggregates, ["dataset", "stratum", "model", "metric", "value"], "aggregates")
    rows = []
    for (dataset, stratum), sub in aggregates.groupby(["dataset", "stratum"], sort=False):
        values = sub.pivot_table(index="model", columns="metric", values="value", aggfunc="first")
        if reference not in values.columns:
            continue
        top = list(rank_models(values[reference], metric=reference).index[:top_k])
        for metric in metrics:
            if metric not in values.columns:
                continue
            v = values.loc[top, metric].dropna()
            if v.empty:
                continue
            ranks = rank_models(v, metric=metric)
            lo, hi = float(v.min()), float(v.max())
            rows.append({
                "dataset": dataset, "stratum": stratum, "metric": metric, "top_models": " ".join(top),
                "best": ranks.index[0], "worst": ranks.index[-1], "spread": hi - lo,
                "relative_spread_percent": (hi - lo) / lo * 100 if lo > 0 else np.nan, "n_models": len(v),
            })
    return pd.DataFrame(rows)


def reversal_table(aggregates: pd.DataFrame, *, metrics: Sequence[str] = BOUNDARY_METRICS,
                   top_k: int = 3) -> pd.DataFrame:
    """``ranking_reversals.csv``: the Dice order against each boundary metric's order per dataset and stratum
    (:func:`helpers.ranking.compare_orders`)."""
    return compare_orders(aggregates, reference="dice", metrics=metrics, group_by=("dataset", "stratum"),
                          top_k=top_k)


# ---------------------------------------------------------------------------------------------------------------
# Sensitivity analyses
# ---------------------------------------------------------------------------------------------------------------
def metric_variants(per_case: pd.DataFrame, metrics: Sequence[str], *, analysis: str) -> pd.DataFrame:
    """Case-level means of several variants of a metric side by side (e.g. ``hd95`` vs ``hd95_pooled``, or
    ``contour_f1_tol1`` ... ``contour_f1_tol3``): ``dataset, analysis, variant, model, value, n, n_penalty``.
    The model order under each variant is in ``rank`` (1 = best; directions from the base metric name)."""
    _check_columns(per_case, _CASE_COLUMNS, "per_case")
    sub = per_case[per_case["metric"].isin(list(metrics))].assign(penalty=lambda t: _as_bool(t["penalty"]))
    if sub.empty:
        raise ValueError(f"per_case has none of the metrics {list(metrics)}")
    table = sub.groupby(["dataset", "metric", "model"]).agg(
        value=("value", "mean"), n=("value", "count"), n_penalty=("penalty", "sum")).reset_index()
    table = table.rename(columns={"metric": "variant"})
    table.insert(1, "analysis", analysis)
    base = {v: next((m for m in sorted(METRIC_DIRECTIONS, key=len, reverse=True) if v.startswith(m)), v)
            for v in table["variant"].unique()}
    table["rank"] = np.nan
    for (dataset, variant), idx in table.groupby(["dataset", "variant"]).groups.items():
        ranks = rank_models(table.loc[idx].set_index("model")["value"], metric=base[variant])
        table.loc[idx, "rank"] = table.loc[idx, "model"].map(ranks).to_numpy()
    return table


def recall_at_thresholds(per_lesion: pd.DataFrame, thresholds: Sequence[int]) -> pd.DataFrame:
    """Lesion-wise recall per quartile when a lesion counts as detected from ``t`` predicted voxels on, for each
    matching threshold ``t`` (re-derived from ``overlap_voxels``; the lesion metrics themselves are those of the
    evaluation's own threshold). Returns ``dataset, stratum, model, min_overlap, recall, n``."""
    _check_columns(per_lesion, [*_LESION_COLUMNS, "overlap_voxels"], "per_lesion")
    ref = per_lesion[(per_lesion["kind"] == REFERENCE) & (per_lesion["metric"] == "detected")]
    rows = []
    for t in thresholds:
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 1:
            raise ValueError(f"thresholds must be integers >= 1 voxel, got {t!r}")
        hit = ref.assign(hit=(ref["overlap_voxels"] >= t).astype(float))
        for stratum in ("all_lesions", *QUARTILES):
            sub = hit if stratum == "all_lesions" else hit[hit["quartile"] == stratum]
            for (dataset, model), g in sub.groupby(["dataset", "model"]):
                rows.append({"dataset": dataset, "stratum": stratum, "model": model, "min_overlap": int(t),
                             "recall": g["hit"].mean(), "n": len(g)})
    return pd.DataFrame(rows)


def policy_comparison(per_case: pd.DataFrame, per_lesion: pd.DataFrame, *, stratum: str = "Q1",
                      metrics: Sequence[str] = SEGMENTATION_METRICS) -> pd.DataFrame:
    """The missed-lesion policies for one stratum: ``dataset, metric, model, policy, value, n, n_penalty``
    (``policy`` "penalty" or "detected_only"; ``n_penalty`` counts the penalty values inside ``n``)."""
    frames = []
    for policy in POLICIES:
        agg = aggregate(analysis_units(per_case, per_lesion, policy=policy))
        agg = agg[(agg["stratum"] == stratum) & agg["metric"].isin(list(metrics))]
        frames.append(agg[["dataset", "metric", "model", "value", "n", "n_penalty"]].assign(policy=policy))
    table = pd.concat(frames, ignore_index=True)
    return table[["dataset", "metric", "model", "policy", "value", "n", "n_penalty"]]


# ---------------------------------------------------------------------------------------------------------------
# Reading the sections' files
# ---------------------------------------------------------------------------------------------------------------
def collect(ws, datasets: Sequence[str], name: str) -> pd.DataFrame:
    """Concatenate ``results/<dataset>/<name>`` over datasets (error naming the missing file)."""
    frames = []
    for dataset in datasets:
        path = ws.results(dataset) / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found (run the dataset's sections first)")
        frames.append(pd.read_csv(path, dtype={"case_id": str}))
    return pd.concat(frames, ignore_index=True)


def dataset_summaries(ws, datasets: Sequence[str]) -> list[dict]:
    """Per dataset: source, test cases, test reference lesions and the Q1 upper edge, from
    ``data_manifest.json`` and ``quartile_edges.json`` (inputs of :func:`dataset_summary`)."""
    from .io import read_json

    out = []
    for dataset in datasets:
        edges = read_json(ws.results(dataset) / "quartile_edges.json")
        manifest_path = ws.results(dataset) / "data_manifest.json"
        source = read_json(manifest_path).get("source", "") if manifest_path.is_file() else "unknown"
        out.append({"dataset": dataset, "source": source, "test_cases": edges["n_cases"],
                    "lesions": edges["n_reference_lesions"], "q1_upper": edges["edges"]["q1_upper"]})
    return out


# ---------------------------------------------------------------------------------------------------------------
# The paper's tables beside ours
# ---------------------------------------------------------------------------------------------------------------
def dataset_summary(summaries: Sequence[Mapping]) -> pd.DataFrame:
    """Section 4.5: one row per dataset, ours beside the paper's.

    ``summaries``: one mapping per dataset with ``dataset``, ``source``, ``test_cases``, ``lesions`` (test
    reference lesions) and ``q1_upper`` (Q1 upper edge as a fraction).
    """
    rows = []
    for s in summaries:
        paper = PAPER_DATASETS.get(s["dataset"], {})
        rows.append({
            "dataset": s["dataset"], "modality": MODALITIES.get(s["dataset"], ""), "source": s.get("source", ""),
            "test_cases": int(s["test_cases"]), "paper_test_cases": paper.get("test_cases", np.nan),
            "lesions": int(s["lesions"]), "paper_lesions": paper.get("lesions", np.nan),
            "q1_upper_percent": 100 * float(s["q1_upper"]), "paper_q1_upper_percent": paper.get("q1_upper_percent",
                                                                                                 np.nan),
        })
    table = pd.DataFrame(rows)
    if len(table):
        total = {"dataset": "total", "modality": "mixed", "source": "", "test_cases": table["test_cases"].sum(),
                 "paper_test_cases": 211, "lesions": table["lesions"].sum(), "paper_lesions": 5842,
                 "q1_upper_percent": table["q1_upper_percent"].mean(), "paper_q1_upper_percent": 1.5}
        table = pd.concat([table, pd.DataFrame([total])], ignore_index=True)
    return table


def spread_comparison(spreads: pd.DataFrame, reversals: pd.DataFrame) -> pd.DataFrame:
    """Section 4.6: per dataset and setting (overall, Q4, Q1): Dice spread and HD95 relative spread among the top
    3, and the mean Kendall tau between Dice and the boundary metrics, beside the paper's row."""
    rows = []
    for (dataset, stratum), sub in spreads.groupby(["dataset", "stratum"], sort=False):
        if stratum not in PAPER_SPREADS:
            continue
        s = sub.set_index("metric")
        tau = reversals[(reversals["dataset"] == dataset) & (reversals["stratum"] == stratum)]["kendall_tau"]
        paper = PAPER_SPREADS[stratum]
        rows.append({
            "dataset": dataset, "setting": stratum,
            "dice_spread": s["spread"].get("dice", np.nan), "paper_dice_spread": paper["dice_spread"],
            "hd95_spread_percent": s["relative_spread_percent"].get("hd95", np.nan),
            "paper_hd95_spread_percent": paper["hd95_spread_percent"],
            "mean_kendall_tau": tau.mean() if len(tau) else np.nan,
            "paper_ranking_stability": paper["ranking_stability"],
        })
    order = {"overall": 0, "Q4": 1, "Q1": 2}
    table = pd.DataFrame(rows)
    if len(table):
        table = table.assign(_o=table["setting"].map(order)).sort_values(["dataset", "_o"]).drop(columns="_o")
    return table.reset_index(drop=True)


def small_lesion_comparison(aggregates: pd.DataFrame, *, stratum: str = "Q1") -> pd.DataFrame:
    """Section 4.2: per dataset and model, Q1 Dice, HD95, ASSD and contour F1, beside the paper's values; with
    ``n`` (lesions behind HD95) and ``n_penalty`` (of them, missed lesions scored with the penalty) when the
    aggregates carry counts."""
    metrics = ["dice", "hd95", "assd", "contour_f1"]
    sub = aggregates[(aggregates["stratum"] == stratum) & aggregates["metric"].isin(metrics)]
    table = sub.pivot_table(index=["dataset", "model"], columns="metric", values="value").reindex(columns=metrics)
    table = table.reset_index()
    if {"n", "n_penalty"} <= set(sub.columns):
        # how many lesions stand behind the HD95 column, and how many of them hold the missed-lesion penalty
        counts = sub[sub["metric"] == "hd95"].set_index(["dataset", "model"])[["n", "n_penalty"]]
        table = table.join(counts, on=["dataset", "model"])
    for m in metrics:
        table[f"paper_{m}"] = table["model"].map(lambda k, m=m: PAPER_SMALL_LESION.get(k, {}).get(m, np.nan))
    return table


def agreement_counts(reversals: pd.DataFrame, *, stratum: str = "Q1") -> pd.DataFrame:
    """Section 4.3: over datasets, the top-3 model pairs ordered alike by Dice and each boundary metric.

    The paper's "9 dataset-level top-model comparisons" are read as 3 datasets x 3 pairs among the top 3
    models by Dice; a pair agrees when both metrics put the same model ahead. Also: in how many datasets the
    Dice leader ranks third or worse under the metric.
    """
    sub = reversals[reversals["stratum"] == stratum]
    rows = []
    for metric, m in sub.groupby("metric", sort=False):
        paper = PAPER_AGREEMENT.get(metric, (np.nan, np.nan))
        rows.append({
            "stratum": stratum, "metric": metric, "agree": int(m["top_pairs_agree"].sum()),
            "comparisons": int(m["top_pairs"].sum()), "paper_agree": paper[0], "paper_comparisons": paper[1],
            "order_changed_datasets": int(m["order_changed"].astype(bool).sum()), "datasets": len(m),
            "dice_leader_third_or_worse": int((m["leader_rank_in_metric"] >= 3).sum()),
        })
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------------------
# Qualitative examples
# ---------------------------------------------------------------------------------------------------------------
def select_qualitative_examples(per_lesion: pd.DataFrame, *, stratum: str = "Q1", max_dice_range: float = 0.05,
                                n_examples: int = 3, boundary_metric: str = "hd95") -> pd.DataFrame:
    """Small reference lesions detected by every model, whose per-lesion Dice lie within ``max_dice_range`` of
    each other, sorted by the largest spread of ``boundary_metric`` (ties: dataset, case, lesion).

    When fewer than ``n_examples`` lesions meet the Dice condition, the closest-Dice lesions fill the rest
    (their ``dice_range`` shows it). Returns ``dataset, case_id, lesion_id, dice_range, <metric>_range``.
    """
    _check_columns(per_lesion, _LESION_COLUMNS, "per_lesion")
    pl = per_lesion[(per_lesion["kind"] == REFERENCE) & (per_lesion["quartile"].astype(str) == stratum)]
    keys = ["dataset", "case_id", "lesion_id"]
    wide = pl[pl["metric"].isin(["detected", "dice", boundary_metric])].pivot_table(
        index=keys, columns=["metric", "model"], values="value", aggfunc="first")
    if wide.empty or "dice" not in wide.columns.get_level_values(0):
        return pd.DataFrame(columns=[*keys, "dice_range", f"{boundary_metric}_range"])
    detected_all = pl[pl["metric"] == "dice"].assign(d=_as_bool(pl.loc[pl["metric"] == "dice", "detected"]))
    all_found = detected_all.groupby(keys)["d"].all()
    dice = wide["dice"]
    boundary = wide[boundary_metric] if boundary_metric in wide.columns.get_level_values(0) else dice * np.nan
    table = pd.DataFrame({"dice_range": dice.max(axis=1) - dice.min(axis=1),
                          f"{boundary_metric}_range": boundary.max(axis=1) - boundary.min(axis=1)})
    table = table[all_found.reindex(table.index).fillna(False).astype(bool)].dropna().reset_index()
    if table.empty:
        return table
    close = table[table["dice_range"] <= max_dice_range].sort_values(
        [f"{boundary_metric}_range", *keys], ascending=[False, True, True, True])
    rest = table[table["dice_range"] > max_dice_range].sort_values(["dice_range", *keys])
    return pd.concat([close, rest]).head(n_examples).reset_index(drop=True)


# ---------------------------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------------------------
_METRIC_LABELS = {"dice": "Dice", "iou": "IoU", "hd95": "HD95", "assd": "ASSD", "contour_f1": "contour F1",
                  "lesion_recall": "lesion recall", "fp_lesions_per_case": "FP lesions / case"}


def plot_overall_vs_small(spreads: pd.DataFrame, *, metrics: Sequence[str] = SEGMENTATION_METRICS, ax=None):
    """Relative spread among the top 3 (by Dice) per metric, full test set vs Q1: bars = mean over datasets,
    dots = each dataset."""
    fig, ax = get_axes(ax, figsize=(6.5, 3.5))
    x = np.arange(len(metrics))
    width = 0.38
    for k, (stratum, label, color) in enumerate([("overall", "full test set", "#8c8c8c"),
                                                 ("Q1", "Q1 (small lesions)", "#c44e52")]):
        sub = spreads[spreads["stratum"] == stratum]
        means = [sub.loc[sub["metric"] == m, "relative_spread_percent"].mean() for m in metrics]
        ax.bar(x + (k - 0.5) * width, means, width, color=color, alpha=0.8, label=label)
        for i, m in enumerate(metrics):
            vals = sub.loc[sub["metric"] == m, "relative_spread_percent"].dropna().to_numpy()
            ax.plot(np.full(len(vals), x[i] + (k - 0.5) * width), vals, "o", ms=3, color="black")
    ax.set_xticks(x, [_METRIC_LABELS.get(m, m) for m in metrics])
    # symmetric-log axis: relative spreads of distances near 0 mm reach thousands of percent
    ax.set_yscale("symlog", linthresh=10)
    ax.set_ylabel("spread among top 3 by Dice\n(max - min) / min, % (symlog)")
    ax.legend()
    return ax


def plot_quartile_disagreement(spreads: pd.DataFrame, reversals: pd.DataFrame, *,
                               metrics: Sequence[str] = SEGMENTATION_METRICS, axes=None):
    """Two panels from Q4 (largest) to Q1 (smallest): the relative spread among the top 3 per metric, and
    Kendall's tau between the Dice order and each boundary metric's order (mean over datasets)."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    strata = ["Q4", "Q3", "Q2", "Q1"]
    for m in metrics:
        sub = spreads[spreads["metric"] == m]
        y = [sub.loc[sub["stratum"] == s, "relative_spread_percent"].mean() for s in strata]
        axes[0].plot(strata, y, "o-", label=_METRIC_LABELS.get(m, m))
    axes[0].set_yscale("symlog", linthresh=10)
    axes[0].set_ylabel("spread among top 3, % (symlog)")
    axes[0].set_xlabel("lesion-size quartile (large to small)")
    axes[0].legend(fontsize=7)
    for m in sorted(reversals["metric"].unique()) if len(reversals) else []:
        sub = reversals[reversals["metric"] == m]
        y = [sub.loc[sub["stratum"] == s, "kendall_tau"].mean() for s in strata]
        axes[1].plot(strata, y, "o-", label=f"Dice vs {_METRIC_LABELS.get(m, m)}")
    axes[1].axhline(1.0, color="#8c8c8c", lw=0.8, ls=":")
    axes[1].set_ylim(-1.05, 1.05)
    axes[1].set_ylabel("Kendall's tau of model orders")
    axes[1].set_xlabel("lesion-size quartile (large to small)")
    axes[1].legend(fontsize=7)
    return axes


def plot_reversal_matrix(same: pd.DataFrame, total: pd.DataFrame, *, title: str = "", colorbar: bool = True,
                         ax=None):
    """Heat map of metric x metric agreement: share of strata whose model orders are identical, with counts."""
    fig, ax = get_axes(ax, figsize=(4.2, 3.6))
    share = (same / total.replace(0, np.nan)).astype(float)
    image = ax.imshow(share.to_numpy(), vmin=0, vmax=1, cmap="viridis")
    labels = [_METRIC_LABELS.get(m, m) for m in same.index]
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i in range(len(labels)):
        for j in range(len(labels)):
            s = share.iat[i, j]
            ax.text(j, i, f"{same.iat[i, j]}/{total.iat[i, j]}", ha="center", va="center", fontsize=7,
                    color="black" if np.isfinite(s) and s > 0.6 else "white")
    ax.set_title(title)
    if colorbar:
        fig.colorbar(image, ax=ax, fraction=0.046, label="same order (share of strata)")
    return ax


def plot_reversal_matrices(aggregates: pd.DataFrame, *, metrics: Sequence[str] = ("dice", "hd95", "assd",
                                                                                    "contour_f1"),
                           strata: Sequence[str] = ("overall", *QUARTILES), axes=None):
    """One :func:`plot_reversal_matrix` panel per dataset, counted over ``strata``; returns the axes array."""
    import matplotlib.pyplot as plt

    from .ranking import agreement_matrix

    datasets = sorted(aggregates["dataset"].unique())
    if axes is None:
        _, axes = plt.subplots(1, len(datasets), figsize=(3.9 * len(datasets) + 1.0, 3.8), squeeze=False,
                               layout="constrained")
        axes = axes[0]
    sub = aggregates[aggregates["stratum"].isin(list(strata))]
    for k, (ax, dataset) in enumerate(zip(axes, datasets)):
        same, total = agreement_matrix(sub[sub["dataset"] == dataset], metrics=list(metrics))
        plot_reversal_matrix(same, total, title=f"{dataset}: identical model orders", ax=ax,
                             colorbar=k == len(datasets) - 1)
    return axes


def plot_lesion_examples(crops: Sequence[Mapping], *, axes=None):
    """The qualitative figure: one :func:`plot_lesion_example` panel per crop, with a legend of the models."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    n = max(len(crops), 1)
    if axes is None:
        size = (3.2 * n, 3.9) if crops else (6.0, 0.8)
        fig, axes = plt.subplots(1, n, figsize=size, squeeze=False)
        axes = axes[0]
    for ax, crop in zip(axes, crops):
        plot_lesion_example(crop, ax=ax)
    if not crops:
        axes[0].text(0.5, 0.5, "no small (Q1) lesion detected by every model", ha="center", va="center",
                     transform=axes[0].transAxes)
        axes[0].set_axis_off()
    if crops:
        models = list(crops[0]["predictions"])
        handles = [Line2D([], [], color="yellow", ls="--", label="reference")] + [
            Line2D([], [], color=model_color(m, k), label=MODEL_LABELS.get(m, m)) for k, m in enumerate(models)]
        axes[0].figure.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7,
                              bbox_to_anchor=(0.5, -0.05), facecolor="#444444", labelcolor="white", frameon=True)
    return axes


def stack_figures(paths: Sequence, *, width: float = 10.0):
    """One figure showing saved PNG figures (e.g. each dataset's qualitative examples) one below the other.

    Missing files raise FileNotFoundError naming the file. Returns the axes array."""
    import matplotlib.pyplot as plt
    from pathlib import Path

    images = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: figure not found (run the dataset's section first)")
        images.append(plt.imread(path))
    heights = [width * im.shape[0] / im.shape[1] for im in images]
    fig, axes = plt.subplots(len(images), 1, figsize=(width, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, im in zip(axes[:, 0], images):
        ax.imshow(im)
        ax.set_axis_off()
    return axes[:, 0]


def plot_lesion_example(crop: Mapping, *, ax=None, title_metrics: bool = True):
    """One qualitative panel: the image crop with the reference contour (yellow, dashed) and each model's contour.

    ``crop`` (from :func:`helpers.evaluation.example_crops`): ``image`` 2D or RGB, ``reference`` 2D bool,
    ``predictions`` {model: 2D bool}, ``metrics`` {model: {"dice": ..., "hd95": ...}}, ``title``.
    """
    from skimage import measure

    fig, ax = get_axes(ax, figsize=(3, 3))
    image = np.asarray(crop["image"])
    ax.imshow(image, cmap=None if image.ndim == 3 else "gray", interpolation="nearest")
    lines = []
    for k, (model, pred) in enumerate(crop["predictions"].items()):
        for contour in measure.find_contours(np.pad(pred, 1).astype(float), 0.5):
            ax.plot(contour[:, 1] - 1, contour[:, 0] - 1, color=model_color(model, k), lw=1.2)
        m = crop.get("metrics", {}).get(model, {})
        lines.append(f"{MODEL_LABELS.get(model, model)}: Dice {m.get('dice', np.nan):.2f}, "
                     f"HD95 {m.get('hd95', np.nan):.1f}")
    # the reference last, dashed, so that it stays visible where a model's contour coincides with it
    for contour in measure.find_contours(np.pad(crop["reference"], 1).astype(float), 0.5):
        ax.plot(contour[:, 1] - 1, contour[:, 0] - 1, "--", color="yellow", lw=1.8)
    title = crop.get("title", "")
    ax.set_title(title + ("\n" + "\n".join(lines) if title_metrics else ""), fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


__all__ = [
    "METRICS", "SEGMENTATION_METRICS", "QUARTILES", "STRATA", "METRIC_DIRECTIONS", "MODEL_LABELS",
    "PAPER_FULL_SET_DICE", "PAPER_SMALL_LESION", "PAPER_Q1_MAX_DIFFERENCES", "PAPER_AGREEMENT", "PAPER_DATASETS",
    "PAPER_SPREADS", "PAPER_DICE_LEADER_THIRD_HD95",
    "quartile_edges", "assign_quartiles", "with_quartile_bounds", "analysis_units", "aggregate", "spread_table",
    "reversal_table",
    "dataset_summary", "spread_comparison", "small_lesion_comparison", "agreement_counts",
    "select_qualitative_examples", "metric_variants", "recall_at_thresholds", "policy_comparison", "collect",
    "dataset_summaries", "plot_overall_vs_small", "plot_quartile_disagreement", "plot_reversal_matrix",
    "plot_lesion_example", "plot_reversal_matrices", "plot_lesion_examples", "stack_figures",
]


# ---------------------------------------------------------------------------------------------------------------
# Findings: what the numbers say, in sentences generated from them
# ---------------------------------------------------------------------------------------------------------------
def policy_aggregates(ws, datasets: Sequence[str], *, policy: str) -> pd.DataFrame:
    """Aggregates of every dataset's evaluation under a missed-lesion ``policy`` ("penalty" is the primary
    analysis, "detected_only" drops missed lesions from the lesion-level boundary metrics; ``n`` says how many
    lesions remain)."""
    from .evaluation import read_tables

    frames = []
    for dataset in datasets:
        per_case, per_lesion = read_tables(ws, dataset)
        frames.append(aggregate(analysis_units(per_case, per_lesion, policy=policy)))
    return pd.concat(frames, ignore_index=True)


def _fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def findings(pattern: pd.DataFrame, agreement: pd.DataFrame, robustness: pd.DataFrame | None = None) -> list[str]:
    """The study's claims checked against our tables, one sentence each, in the order of the paper's findings.

    ``pattern`` is :func:`spread_comparison`'s table, ``agreement`` :func:`agreement_counts`'s and
    ``robustness`` the bootstrap table (``stratum``, ``metric``, ``verdict``). Each sentence states the numbers
    and whether they show the paper's pattern; nothing here is a fixed conclusion.
    """
    out = []
    for dataset, sub in pattern.groupby("dataset", sort=False):
        s = sub.set_index("setting")
        if not {"overall", "Q1"} <= set(s.index):
            continue
        d_all, d_q1 = s.at["overall", "dice_spread"], s.at["Q1", "dice_spread"]
        h_all, h_q1 = s.at["overall", "hd95_spread_percent"], s.at["Q1", "hd95_spread_percent"]
        widened = np.isfinite(h_all) and np.isfinite(h_q1) and h_q1 > h_all
        out.append(
            f"**{dataset.upper()}**: among the top models by Dice, the Dice spread is {_fmt(d_all)} on the full test "
            f"set and {_fmt(d_q1)} in Q1; the HD95 relative spread is {_fmt(h_all, 1)} % overall and "
            f"{_fmt(h_q1, 1)} % in Q1 — the boundary spread {'widens' if widened else 'does not widen'} on the "
            f"smallest lesions (paper: 14.7 % → 41.3 %)."
        )
    for row in agreement.itertuples():
        out.append(
            f"Dice and {row.metric} order the top-model pairs alike in {row.agree} of {row.comparisons} "
            f"comparisons in {row.stratum} (paper: {row.paper_agree} of {row.paper_comparisons}); the Dice leader "
            f"ranks third or worse under {row.metric} in {row.dice_leader_third_or_worse} of {row.datasets} datasets"
            + (" (paper: 2 of 3 for HD95)." if row.metric == "hd95" else ".")
        )
    if robustness is not None and len(robustness):
        q1 = robustness[robustness["stratum"] == "Q1"]
        if len(q1):
            counts = q1["verdict"].value_counts()
            parts = ", ".join(f"{int(n)} {verdict}" for verdict, n in counts.items())
            out.append(f"Paired bootstrap over test cases, Q1, all model pairs and metrics ({len(q1)} comparisons): "
                       f"{parts}.")
    return out
