"""The study's unit tables and their aggregates: size quartiles, strata, lesion sets, aggregation per stratum,
spreads and reversals among the top models, training seeds and sensitivity views.

Inputs are the tidy tables written by :mod:`helpers.evaluation` (``per_case_metrics.csv`` and
``per_lesion_metrics.csv``); everything here is a pure function of those tables. The paper's tables beside
ours are in :mod:`helpers.analysis.paper`; the cross-dataset tables read from the sections' files, the
qualitative examples and the findings in :mod:`helpers.analysis.findings`.

Lesion size and quartiles
-------------------------
A lesion's size is its ``area_fraction`` (see :mod:`helpers.metrics.lesions`: 2D lesion pixels / image pixels; 3D the
largest axial cross-section / axial slice area). Quartile edges are the 25th, 50th and 75th percentiles
(:func:`numpy.quantile`, linear interpolation) of the area fractions of the *test set's reference lesions*,
per dataset. A lesion of area fraction ``a`` falls in Q1 if ``a <= e25``, Q2 if ``e25 < a <= e50``, Q3 if
``e50 < a <= e75`` and Q4 if ``a > e75`` (upper edges inclusive). Q1 is the small-lesion regime; its upper
edge ``e25`` is the "small-lesion upper bound" of the paper's section 4.5.

Strata and units (one definition shared by aggregates and bootstrap)
--------------------------------------------------------------------
Every aggregate is a mean over *units*; :func:`analysis_units` builds the unit table, :func:`aggregate`
averages it and :func:`helpers.stats.bootstrap.directional_robustness` resamples it by case.

``overall`` (the full test set, the paper's "full-test-set" reporting)
    Dice, IoU, HD95, ASSD, MASD, NSD, contour F1: one unit per case, the image-level metric of the case.
    ``lesion_recall``: one unit per reference lesion, 1 if detected else 0 (pooled recall).
    ``fp_lesions_per_case``: one unit per case, its number of false-positive predicted lesions.
    *Cases without a reference lesion* (tumour-free LiTS volumes) stay in ``fp_lesions_per_case`` but not in
    the image-level overlap and boundary means, where they could only contribute a convention (Dice 1 or 0)
    or the distance penalty; their units are kept with ``excluded = True`` and counted in ``n_excluded``.
``all_lesions``, ``Q1`` ... ``Q4`` (lesion level)
    Dice, IoU, HD95, ASSD, MASD, NSD, contour F1: one unit per *reference lesion* of the stratum and lesion set
    (below), the lesion's own metric (computed by :func:`helpers.metrics.lesions.evaluate_lesions` in the lesion's
    region of influence).
    ``lesion_recall``: share of the stratum's reference lesions that were detected (all of them, in every
    lesion set: detection is reported beside the boundary metrics, as its own metric).
    ``fp_lesions_per_case``: false-positive lesions cannot belong to a *reference* size quartile; here they are
    binned by their *own* area fraction with the same edges, one unit per case (its count of such false
    positives). The ``all_lesions`` stratum counts all of them, like ``overall``.

The primary aggregate (``value``) is the mean over units (lesions pooled across cases for lesion-level strata).
The secondary ``value_case_mean`` averages per case first and then over the cases that have a unit (equal
weight per case). Both report their n: ``n`` units, ``n_cases``, ``n_penalty`` (units whose value is a penalty
for an undefined distance, e.g. a missed lesion's HD95), ``n_missed`` (units of missed lesions: Dice 0 and the
penalty distances), ``n_excluded`` (units left out by the rule above) and ``n_nan`` (units without a value).

Lesion sets (which reference lesions the lesion-level overlap and boundary metrics average)
--------------------------------------------------------------------------------------------
``common`` (primary)
    The reference lesions that *every compared model* (every model of the dataset in the table) detected. All
    models are measured on the same lesions, so a boundary difference is a contour difference, not a
    detection difference, and ``n_penalty`` is 0 by construction. ``n`` is the size of the common set.
``all_with_penalty`` (sensitivity view)
    Every reference lesion; a missed one keeps Dice 0 and the penalty distance (the image diagonal), so in Q1
    the distance means mostly count misses: a detection metric in disguise.
``detected_by_model`` (sensitivity view)
    Each model's own detected lesions: a different set per model (selection bias), ``n`` differs per model.

Every aggregate row carries ``lesion_set``. Image-level (``overall``) rows do not depend on it and are the same
in every set. A lesion-level overlap or boundary row whose set has fewer than ``min_lesions`` lesions
(:data:`MIN_LESIONS`) has ``rankable = False`` and a ``note``; rankings, spreads and reversals do not rank it
but say so.

Spread among the top models
---------------------------
Per dataset and stratum, the ``top_k`` (3) models by Dice in that stratum; for each metric the absolute spread
``max - min`` over them and the relative spread ``(max - min) / min * 100`` (% by which the worst exceeds the
best for distances; for Dice the same formula), as the paper reports "HD95 differs by up to 41.3%".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from helpers.base.checks import check_columns
from helpers.metrics.lesions import FALSE_POSITIVE, QUARTILES, REFERENCE
from helpers.metrics import metric_names
from helpers.stats.ranking import compare_orders, order_string, rank_models

__all__ = [
    "STRATA", "LESION_SETS", "PRIMARY_LESION_SET", "MIN_LESIONS", "MODEL_LABELS", "LESION_COLUMNS",
    "as_bool", "common_lesions", "analysis_units", "lesion_set_units", "aggregate",
    "select_lesion_set", "rankable_rows", "spread_table", "reversal_table", "seed_spread", "seed_rankings",
    "metric_variants", "recall_at_thresholds", "lesion_set_comparison",
]

# Metrics: the registry's (helpers.metrics.METRICS). The paper's metrics in its order (section 3.6):
# metric_names(primary=True); those computed per case and per lesion (overlap, boundary, distance):
# metric_names(primary=True, computed=True); detection: metric_names(primary=True, kind="detection").
STRATA: tuple[str, ...] = ("overall", "all_lesions", *QUARTILES)
#: The lesion sets of the lesion-level metrics (module docstring); the first is the primary analysis.
LESION_SETS: tuple[str, ...] = ("common", "all_with_penalty", "detected_by_model")
PRIMARY_LESION_SET = "common"
#: Default minimum number of lesions behind a lesion-level mean for it to be ranked.
MIN_LESIONS = 5

#: Display names of the study's four model families and the paper's names for them.
MODEL_LABELS = {
    "unet": "U-Net",
    "resunet": "Residual U-Net",
    "attention_unet": "Attention U-Net",
    "hybrid_transformer": "Hybrid CNN-Transformer",
}


# ---------------------------------------------------------------------------------------------------------------
# Units and aggregates
# ---------------------------------------------------------------------------------------------------------------
_CASE_COLUMNS = ("dataset", "model", "case_id", "metric", "value", "penalty")
#: The columns of ``per_lesion_metrics.csv`` the analysis reads.
LESION_COLUMNS = ("dataset", "model", "case_id", "lesion_id", "kind", "detected", "area_fraction", "quartile",
                  "metric", "value", "penalty")


def as_bool(series: pd.Series) -> pd.Series:
    """A column of booleans as read back from CSV (``True``/``1``/``1.0``, any case) as a bool Series."""
    if series.dtype == bool:
        return series
    return series.map(lambda v: str(v).strip().lower() in ("true", "1", "1.0")).astype(bool)


def _reference_empty(pc: pd.DataFrame) -> pd.Series:
    """Per per-case row: whether its case has no reference lesion (``ref_empty``, else ``n_ref_lesions == 0``)."""
    if "ref_empty" in pc.columns:
        return as_bool(pc["ref_empty"])
    if "n_ref_lesions" in pc.columns:
        return pd.to_numeric(pc["n_ref_lesions"], errors="coerce").fillna(1).eq(0)
    return pd.Series(False, index=pc.index)


def common_lesions(per_lesion: pd.DataFrame, *, models: Sequence[str] | None = None) -> pd.DataFrame:
    """The common-support set: reference lesions detected by every compared model, per dataset.

    Parameters
    ----------
    per_lesion : pandas.DataFrame
        ``per_lesion_metrics.csv`` (reference rows with metric ``detected``).
    models : sequence of str, optional
        The compared models; default every model of the dataset in ``per_lesion``. A lesion a compared model
        has no row for is not common.

    Returns
    -------
    pandas.DataFrame
        ``dataset, case_id, lesion_id, quartile``, one row per common lesion.
    """
    check_columns(per_lesion, LESION_COLUMNS, "per_lesion")
    det = per_lesion[(per_lesion["kind"] == REFERENCE) & (per_lesion["metric"] == "detected")]
    det = det.assign(detected=as_bool(det["detected"]), case_id=det["case_id"].astype(str))
    keys = ["dataset", "case_id", "lesion_id"]
    frames = []
    for dataset, sub in det.groupby("dataset", sort=True):
        compared = sorted(sub["model"].astype(str).unique()) if models is None else [str(m) for m in models]
        sub = sub[sub["model"].astype(str).isin(compared)]
        hits = sub[sub["detected"]].groupby(keys)["model"].nunique()
        found = hits[hits == len(compared)].index
        quartile = sub.drop_duplicates(keys).set_index(keys)["quartile"]
        frames.append(pd.DataFrame(list(found), columns=keys).assign(
            quartile=quartile.reindex(found).fillna("").astype(str).to_numpy()))
    if not frames:
        return pd.DataFrame(columns=[*keys, "quartile"])
    return pd.concat(frames, ignore_index=True)


def analysis_units(per_case: pd.DataFrame, per_lesion: pd.DataFrame, *, lesion_set: str = PRIMARY_LESION_SET,
                   models: Sequence[str] | None = None) -> pd.DataFrame:
    """The unit table behind every aggregate and bootstrap (see the module docstring for the definitions).

    Parameters
    ----------
    per_case : pandas.DataFrame
        ``per_case_metrics.csv``: ``dataset, model, case_id, metric, value, penalty`` (and ``ref_empty`` or
        ``n_ref_lesions`` for the no-reference rule); metrics include the primary image-level metrics
        (``helpers.metrics.metric_names(primary=True, computed=True)``) and ``fp_lesions`` (count per case).
    per_lesion : pandas.DataFrame
        ``per_lesion_metrics.csv``: reference-lesion rows (``kind == "lesion"``) with metrics ``detected`` and
        the same primary metrics, and false-positive rows (``kind == "false_positive"``, metric
        ``false_positive``), each with ``area_fraction`` and ``quartile``.
    lesion_set : {"common", "all_with_penalty", "detected_by_model"}
        Which reference lesions the lesion-level overlap and boundary metrics average (:data:`LESION_SETS`).
    models : sequence of str, optional
        The compared models of the ``common`` set (default: every model of the dataset).

    Returns
    -------
    pandas.DataFrame
        ``dataset, lesion_set, stratum, metric, model, case_id, value, penalty, missed, excluded``, one row
        per unit.
    """
    check_columns(per_case, _CASE_COLUMNS, "per_case")
    check_columns(per_lesion, LESION_COLUMNS, "per_lesion")
    if lesion_set not in LESION_SETS:
        raise ValueError(f"lesion_set must be one of {LESION_SETS}, got {lesion_set!r}")
    out = []
    pc = per_case.assign(penalty=as_bool(per_case["penalty"]), case_id=per_case["case_id"].astype(str),
                         missed=False, excluded=False)
    pl = per_lesion.assign(penalty=as_bool(per_lesion["penalty"]), detected=as_bool(per_lesion["detected"]),
                           quartile=per_lesion["quartile"].fillna("").astype(str),
                           case_id=per_lesion["case_id"].astype(str), excluded=False)
    pl["missed"] = (pl["kind"] == REFERENCE) & ~pl["detected"]
    cols = ["dataset", "stratum", "metric", "model", "case_id", "value", "penalty", "missed", "excluded"]

    # overall: image-level metrics per case (cases without reference lesion excluded, counted), FP count per case
    seg = pc[pc["metric"].isin(metric_names(primary=True, computed=True))]
    seg = seg.assign(stratum="overall", excluded=_reference_empty(seg))
    out.append(seg[cols])
    fp = pc[pc["metric"] == "fp_lesions"].assign(stratum="overall", metric="fp_lesions_per_case")
    out.append(fp[cols])

    ref = pl[pl["kind"] == REFERENCE]
    detected = ref[ref["metric"] == "detected"]
    recall = detected.assign(metric="lesion_recall", value=detected["detected"].astype(float), penalty=False,
                             missed=False)
    out.append(recall.assign(stratum="overall")[cols])
    lesion_seg = ref[ref["metric"].isin(metric_names(primary=True, computed=True))]
    if lesion_set == "detected_by_model":
        lesion_seg = lesion_seg[lesion_seg["detected"]]
    elif lesion_set == "common":
        keys = ["dataset", "case_id", "lesion_id"]
        common = common_lesions(pl, models=models)[keys].assign(_common=True)
        lesion_seg = lesion_seg.merge(common, on=keys, how="left")
        lesion_seg = lesion_seg[lesion_seg["_common"].fillna(False).astype(bool)].drop(columns="_common")
        if models is not None:
            lesion_seg = lesion_seg[lesion_seg["model"].astype(str).isin([str(m) for m in models])]

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
        out.append(fp_units.assign(stratum=stratum, metric="fp_lesions_per_case", penalty=False, missed=False,
                                   excluded=False)[cols])
    units = pd.concat(out, ignore_index=True)
    units["value"] = pd.to_numeric(units["value"], errors="raise").astype(float)
    for column in ("penalty", "missed", "excluded"):
        units[column] = units[column].astype(bool)
    units.insert(1, "lesion_set", lesion_set)
    return units


def lesion_set_units(per_case: pd.DataFrame, per_lesion: pd.DataFrame, *,
                     lesion_sets: Sequence[str] = LESION_SETS) -> pd.DataFrame:
    """:func:`analysis_units` of several lesion sets, stacked (``lesion_set`` tells them apart)."""
    return pd.concat([analysis_units(per_case, per_lesion, lesion_set=s) for s in lesion_sets], ignore_index=True)


def aggregate(units: pd.DataFrame, *, min_lesions: int = MIN_LESIONS) -> pd.DataFrame:
    """Aggregate a unit table: mean over units (primary) and mean of case means, with their counts.

    ``min_lesions``: a lesion-level overlap or boundary row (strata ``all_lesions``, Q1..Q4) with fewer units
    gets ``rankable = False`` and a ``note`` saying so; rankings skip it.

    Returns
    -------
    pandas.DataFrame
        ``dataset, lesion_set, stratum, model, metric, value, n, n_nan, n_penalty, n_missed, n_excluded,
        n_cases, value_case_mean, sd, rankable, note``, sorted by dataset, lesion set, stratum (overall,
        all_lesions, Q1..Q4), metric (paper order) and model.
    """
    check_columns(units, ["dataset", "stratum", "metric", "model", "case_id", "value", "penalty"], "units")
    if isinstance(min_lesions, bool) or not isinstance(min_lesions, (int, np.integer)) or min_lesions < 1:
        raise ValueError(f"min_lesions must be an integer >= 1, got {min_lesions!r}")
    u = units.copy()
    if "lesion_set" not in u.columns:
        u["lesion_set"] = PRIMARY_LESION_SET
    for column in ("missed", "excluded"):
        u[column] = u[column].astype(bool) if column in u.columns else False
    keys = ["dataset", "lesion_set", "stratum", "model", "metric"]
    u["finite"] = np.isfinite(u["value"]) & ~u["excluded"]
    good = u[u["finite"]]
    stats = good.groupby(keys).agg(value=("value", "mean"), sd=("value", "std"), n=("value", "size"),
                                   n_penalty=("penalty", "sum"), n_missed=("missed", "sum"),
                                   n_cases=("case_id", "nunique"))
    case_means = good.groupby([*keys, "case_id"])["value"].mean().groupby(keys).mean().rename("value_case_mean")
    u["nan_unit"] = ~np.isfinite(u["value"]) & ~u["excluded"]
    grouped = u.groupby(keys)
    n_nan = grouped["nan_unit"].sum().rename("n_nan")
    n_excluded = grouped["excluded"].sum().rename("n_excluded")
    table = pd.concat([stats, case_means], axis=1).join(pd.concat([n_nan, n_excluded], axis=1),
                                                        how="outer").reset_index()
    # an empty lesion set (no lesion every model detected) is an explicit row with n = 0, never a missing row
    lesion_strata = ["all_lesions", *QUARTILES]
    grid = []
    for (dataset, lset), sub in u.groupby(["dataset", "lesion_set"], sort=False):
        seg = [m for m in metric_names(primary=True, computed=True) if m in set(sub["metric"])]
        models = sorted(sub["model"].unique())
        if seg and sub["stratum"].isin(lesion_strata).any():
            grid.append(pd.MultiIndex.from_product([[dataset], [lset], lesion_strata, models, seg], names=keys)
                        .to_frame(index=False))
    if grid:
        table = table.merge(pd.concat(grid, ignore_index=True), on=keys, how="outer")
    for column in ("n", "n_penalty", "n_missed", "n_cases", "n_nan", "n_excluded"):
        table[column] = table[column].fillna(0).astype(int)
    lesion_level = (table["stratum"].isin(["all_lesions", *QUARTILES])
                    & table["metric"].isin(metric_names(primary=True, computed=True)))
    small = lesion_level & (table["n"] < min_lesions)
    table["rankable"] = ~small
    table["note"] = np.where(small, [f"{s} set: {n} lesion(s) < minimum {min_lesions}, not ranked"
                                     for s, n in zip(table["lesion_set"], table["n"])], "")
    order = {s: i for i, s in enumerate(STRATA)}
    morder = {m: i for i, m in enumerate(metric_names(primary=True))}
    sorder = {s: i for i, s in enumerate(LESION_SETS)}
    table = table.assign(_l=table["lesion_set"].map(sorder).fillna(99), _s=table["stratum"].map(order).fillna(99),
                         _m=table["metric"].map(morder).fillna(99))
    table = table.sort_values(["dataset", "_l", "_s", "_m", "model"]).drop(columns=["_l", "_s", "_m"])
    return table.reset_index(drop=True)[
        ["dataset", "lesion_set", "stratum", "model", "metric", "value", "n", "n_nan", "n_penalty", "n_missed",
         "n_excluded", "n_cases", "value_case_mean", "sd", "rankable", "note"]]


def select_lesion_set(aggregates: pd.DataFrame, lesion_set: str = PRIMARY_LESION_SET) -> pd.DataFrame:
    """The rows of one lesion set; ``overall`` rows (independent of the set) are taken whatever their label
    (once per dataset, model and metric) and relabelled, so that a table of one set is complete."""
    check_columns(aggregates, ["dataset", "stratum", "model", "metric", "value"], "aggregates")
    if lesion_set not in LESION_SETS:
        raise ValueError(f"lesion_set must be one of {LESION_SETS}, got {lesion_set!r}")
    if "lesion_set" not in aggregates.columns:
        return aggregates.assign(lesion_set=lesion_set)
    overall = aggregates[aggregates["stratum"] == "overall"].drop_duplicates(["dataset", "model", "metric"])
    rest = aggregates[(aggregates["stratum"] != "overall") & (aggregates["lesion_set"] == lesion_set)]
    return pd.concat([overall.assign(lesion_set=lesion_set), rest], ignore_index=True)


def _rankable_mask(aggregates: pd.DataFrame) -> pd.Series:
    """Rows that may be ranked: ``rankable`` True *and* every model's row of the same comparison (dataset, lesion
    set, stratum, metric) rankable, so a comparison is never ranked on part of its models (under
    ``detected_by_model`` the weakest detector alone can fall under the minimum)."""
    if "rankable" not in aggregates.columns:
        return pd.Series(True, index=aggregates.index)
    own = aggregates["rankable"].map(lambda v: str(v).strip().lower() in ("true", "1", "1.0")).astype(bool)
    group = [c for c in ("dataset", "lesion_set", "stratum", "metric") if c in aggregates.columns]
    if not group:
        return own
    keys = aggregates[group].astype(str).agg("\x1f".join, axis=1)
    return own.groupby(keys).transform("all").astype(bool)


def rankable_rows(aggregates: pd.DataFrame) -> pd.DataFrame:
    """The rows of an aggregate table that may be ranked (:func:`_rankable_mask`: the row and every other model's
    row of its comparison ``rankable``; every row of a table without that column)."""
    return aggregates[_rankable_mask(aggregates)]


def spread_table(aggregates: pd.DataFrame, *, top_k: int = 3, reference: str = "dice",
                 metrics: Sequence[str] = metric_names(primary=True),
                 lesion_set: str | None = PRIMARY_LESION_SET) -> pd.DataFrame:
    """Spread of each metric among the ``top_k`` models by ``reference`` in each dataset and stratum.

    ``lesion_set``: the set whose lesion-level rows are used (:func:`select_lesion_set`); ``None`` keeps every
    set (grouped by ``lesion_set``). Rows that are not ``rankable`` (too few lesions) are not used; a stratum
    whose reference row is not rankable is left out here (its aggregate row says why).

    Returns
    -------
    pandas.DataFrame
        ``dataset, lesion_set, stratum, metric, top_models, best, worst, spread, relative_spread_percent,
        n_models, n``; ``best``/``worst`` by the metric's direction; ``relative_spread_percent = (max - min) /
        min * 100`` (NaN when ``min`` is 0); ``n`` the smallest number of units behind the values compared.
    """
    check_columns(aggregates, ["dataset", "stratum", "model", "metric", "value"], "aggregates")
    agg = select_lesion_set(aggregates, lesion_set) if lesion_set is not None else aggregates
    if "lesion_set" not in agg.columns:
        agg = agg.assign(lesion_set=PRIMARY_LESION_SET)
    agg = rankable_rows(agg)
    if "n" not in agg.columns:
        agg = agg.assign(n=np.nan)
    rows = []
    for (dataset, lset, stratum), sub in agg.groupby(["dataset", "lesion_set", "stratum"], sort=False):
        values = sub.pivot_table(index="model", columns="metric", values="value", aggfunc="first")
        counts = sub.pivot_table(index="model", columns="metric", values="n", aggfunc="first")
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
                "dataset": dataset, "lesion_set": lset, "stratum": stratum, "metric": metric,
                "top_models": " ".join(top), "best": ranks.index[0], "worst": ranks.index[-1], "spread": hi - lo,
                "relative_spread_percent": (hi - lo) / lo * 100 if lo > 0 else np.nan, "n_models": len(v),
                "n": float(counts.loc[v.index, metric].min()) if metric in counts.columns else np.nan,
            })
    return pd.DataFrame(rows)


def reversal_table(aggregates: pd.DataFrame, *, metrics: Sequence[str] = metric_names(against_dice=True),
                   top_k: int = 3, lesion_set: str | None = PRIMARY_LESION_SET) -> pd.DataFrame:
    """``ranking_reversals.csv``: the Dice order against each boundary metric's order per dataset, lesion set
    and stratum (:func:`helpers.stats.ranking.compare_orders`).

    ``lesion_set`` as :func:`spread_table`. A (dataset, lesion set, stratum, metric) whose Dice or metric rows
    are not ``rankable`` (fewer lesions than the minimum) gets a row with empty orders and its ``note``
    instead of a ranking.
    """
    agg = select_lesion_set(aggregates, lesion_set) if lesion_set is not None else aggregates
    if "lesion_set" not in agg.columns:
        agg = agg.assign(lesion_set=PRIMARY_LESION_SET)
    group = ["dataset", "lesion_set", "stratum"]
    table = compare_orders(rankable_rows(agg), reference="dice", metrics=metrics, group_by=group, top_k=top_k)
    if "rankable" in agg.columns:
        skipped = agg[~_rankable_mask(agg) & agg["metric"].isin(["dice", *metrics])]
        rows = []
        for key, sub in skipped.groupby(group, sort=True):
            for metric in metrics:
                notes = [n for n in sub["note"] if isinstance(n, str) and n]
                rows.append({**dict(zip(group, key)), "reference": "dice", "metric": metric,
                             "note": notes[0] if notes else "not ranked: a model's row of this comparison is "
                             "not rankable", "n_models": 0})
        if rows:
            table = pd.concat([table, pd.DataFrame(rows)], ignore_index=True)
    if "note" not in table.columns:
        table["note"] = ""
    table["note"] = table["note"].fillna("")
    return table.reset_index(drop=True)


# ---------------------------------------------------------------------------------------------------------------
# Training seeds
# ---------------------------------------------------------------------------------------------------------------
def seed_spread(seed_aggregates: pd.DataFrame) -> pd.DataFrame:
    """The seed spread of every aggregate: per ``dataset, lesion_set, stratum, model, metric`` the mean over
    seeds, their min, max, range and sd (ddof 1; NaN for one seed) and ``n_seeds`` (seeds with a finite value)."""
    check_columns(seed_aggregates, ["dataset", "lesion_set", "stratum", "model", "metric", "value", "seed"],
                   "seed_aggregates")
    keys = ["dataset", "lesion_set", "stratum", "model", "metric"]
    g = seed_aggregates.dropna(subset=["value"]).groupby(keys)["value"]
    table = g.agg(value_mean="mean", value_min="min", value_max="max", value_sd="std", n_seeds="count")
    table["value_range"] = table["value_max"] - table["value_min"]
    return table.reset_index()


def seed_rankings(seed_aggregates: pd.DataFrame, *, metrics: Sequence[str] = ("dice", *metric_names(against_dice=True)),
                  strata: Sequence[str] = ("overall", "Q1")) -> pd.DataFrame:
    """The model order under each metric for every seed: ``dataset, lesion_set, stratum, metric, seed, order``
    (best first, ``=`` for ties; rows that are not ``rankable`` are left out) and ``n_orders`` (distinct orders
    over the seeds of that dataset, set, stratum and metric: 1 means every seed ranks alike)."""
    check_columns(seed_aggregates, ["dataset", "lesion_set", "stratum", "model", "metric", "value", "seed"],
                   "seed_aggregates")
    sub = rankable_rows(seed_aggregates)
    sub = sub[sub["metric"].isin(list(metrics)) & sub["stratum"].isin(list(strata))].dropna(subset=["value"])
    rows = []
    for (dataset, lset, stratum, metric, seed), g in sub.groupby(["dataset", "lesion_set", "stratum", "metric",
                                                                   "seed"], sort=True):
        order = order_string(rank_models(g.set_index("model")["value"], metric=metric))
        rows.append({"dataset": dataset, "lesion_set": lset, "stratum": stratum, "metric": metric, "seed": seed,
                     "order": order})
    table = pd.DataFrame(rows, columns=["dataset", "lesion_set", "stratum", "metric", "seed", "order"])
    if len(table):
        table["n_orders"] = table.groupby(["dataset", "lesion_set", "stratum", "metric"])["order"].transform(
            "nunique")
    return table


# ---------------------------------------------------------------------------------------------------------------
# Sensitivity analyses
# ---------------------------------------------------------------------------------------------------------------
def metric_variants(per_case: pd.DataFrame, metrics: Sequence[str], *, analysis: str) -> pd.DataFrame:
    """Case-level means of several variants of a metric side by side (e.g. ``hd95`` vs ``hd95_pooled``, or
    ``contour_f1_tol1`` ... ``contour_f1_tol3``): ``dataset, analysis, variant, model, value, n, n_penalty``.
    The model order under each variant is in ``rank`` (1 = best; directions from the registry, which knows every
    variant: :func:`helpers.metrics.higher_is_better`)."""
    check_columns(per_case, _CASE_COLUMNS, "per_case")
    sub = per_case[per_case["metric"].isin(list(metrics))].assign(penalty=lambda t: as_bool(t["penalty"]))
    if sub.empty:
        raise ValueError(f"per_case has none of the metrics {list(metrics)}")
    table = sub.groupby(["dataset", "metric", "model"]).agg(
        value=("value", "mean"), n=("value", "count"), n_penalty=("penalty", "sum")).reset_index()
    table = table.rename(columns={"metric": "variant"})
    table.insert(1, "analysis", analysis)
    table["rank"] = np.nan
    for (dataset, variant), idx in table.groupby(["dataset", "variant"]).groups.items():
        ranks = rank_models(table.loc[idx].set_index("model")["value"], metric=variant)
        table.loc[idx, "rank"] = table.loc[idx, "model"].map(ranks).to_numpy()
    return table


def recall_at_thresholds(per_lesion: pd.DataFrame, thresholds: Sequence[int]) -> pd.DataFrame:
    """Lesion-wise recall per quartile when a lesion counts as detected from ``t`` predicted voxels on, for each
    matching threshold ``t`` (re-derived from ``overlap_voxels``; the lesion metrics themselves are those of the
    evaluation's own threshold). Returns ``dataset, stratum, model, min_overlap, recall, n``."""
    check_columns(per_lesion, [*LESION_COLUMNS, "overlap_voxels"], "per_lesion")
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


def lesion_set_comparison(per_case: pd.DataFrame, per_lesion: pd.DataFrame, *, stratum: str = "Q1",
                          metrics: Sequence[str] = metric_names(primary=True, computed=True),
                          min_lesions: int = MIN_LESIONS) -> pd.DataFrame:
    """The three lesion sets for one stratum side by side: ``dataset, metric, model, lesion_set, value, n,
    n_penalty, n_missed, rankable`` (``n_penalty`` counts the penalty values inside ``n``)."""
    agg = aggregate(lesion_set_units(per_case, per_lesion), min_lesions=min_lesions)
    agg = agg[(agg["stratum"] == stratum) & agg["metric"].isin(list(metrics))]
    return agg[["dataset", "metric", "model", "lesion_set", "value", "n", "n_penalty", "n_missed",
                "rankable"]].reset_index(drop=True)
