"""The paper's numbers and its tables beside ours: the published values by section (set beside ours, never used in
a computation) and the tables that put ours next to them (sections 4.1 to 4.6: the datasets, full-test-set Dice,
the small-lesion comparison, the largest Q1 differences, Dice-boundary agreement, the overall vs small-lesion
pattern).

Inputs are the study's own tables (:mod:`helpers.analysis.units`: aggregates, spreads, reversals); the facts of
section 4.5 per dataset come from the dataset registry (:data:`helpers.data.datasets.REGISTRY`). Imports
:mod:`helpers.analysis.units`, :mod:`helpers.data.datasets`, :mod:`helpers.metrics`; never matplotlib.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from helpers.base.checks import check_columns
from helpers.analysis.units import LESION_COLUMNS, PRIMARY_LESION_SET, select_lesion_set
from helpers.data.datasets import REGISTRY
from helpers.metrics.lesions import REFERENCE, quartile_edges
from helpers.metrics import metric_names

__all__ = [
    "PAPER_FULL_SET_DICE", "PAPER_SMALL_LESION", "PAPER_Q1_MAX_DIFFERENCES", "PAPER_AGREEMENT",
    "PAPER_DICE_LEADER_THIRD_HD95", "PAPER_SPREADS", "pooled_q1_upper", "dataset_summary", "spread_comparison",
    "small_lesion_comparison", "agreement_counts", "paper_full_set_dice", "paper_q1_maxima", "regime_calibration",
]


# ---------------------------------------------------------------------------------------------------------------
# The paper's numbers (shared/papers/small-lesion-boundary-study.md in the steering repository), by section.
# Set beside ours, never used in a computation.
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
#: Section 4.6: overall vs small-lesion pattern (spreads among the top 3 by Dice).
PAPER_SPREADS = {
    "overall": {"dice_spread": 0.009, "hd95_spread_percent": 14.7, "ranking_stability": "Moderate"},
    "Q4": {"dice_spread": 0.011, "hd95_spread_percent": 12.4, "ranking_stability": "Higher"},
    "Q1": {"dice_spread": 0.008, "hd95_spread_percent": 41.3, "ranking_stability": "Low"},
}


# ---------------------------------------------------------------------------------------------------------------
# The paper's tables beside ours
# ---------------------------------------------------------------------------------------------------------------
def pooled_q1_upper(per_lesion: pd.DataFrame) -> float:
    """The Q1 upper edge of the reference lesions of all datasets pooled (the paper's "combined test
    distribution" bound), as a fraction; each lesion counted once whatever the number of models."""
    check_columns(per_lesion, LESION_COLUMNS, "per_lesion")
    ref = per_lesion[(per_lesion["kind"] == REFERENCE) & (per_lesion["metric"] == "detected")]
    once = ref.drop_duplicates(["dataset", "case_id", "lesion_id"])
    return float(quartile_edges(once["area_fraction"])[0])


def dataset_summary(summaries: pd.DataFrame, *, pooled_q1: float | None = None) -> pd.DataFrame:
    """Section 4.5: one row per dataset, ours beside the paper's.

    ``summaries``: :func:`helpers.analysis.findings.dataset_summaries`' table, one row per dataset with
    ``dataset``, ``source``, ``test_cases``, ``lesions`` (test reference lesions) and ``q1_upper`` (Q1 upper edge
    as a fraction).
    ``pooled_q1``: the Q1 edge of all datasets' lesions pooled (:func:`pooled_q1_upper`), shown in the total row
    (else the total row has NaN: a mean of per-dataset edges is not the pooled bound).
    """
    check_columns(summaries, ["dataset", "test_cases", "lesions", "q1_upper"], "summaries")
    rows = []
    for s in summaries.to_dict("records"):
        entry = REGISTRY.get(s["dataset"])  # the Section 4.5 facts live in the dataset registry
        paper = entry.paper if entry is not None else None
        rows.append({
            "dataset": s["dataset"], "modality": entry.modality if entry is not None else "",
            "source": s.get("source", ""),
            "test_cases": int(s["test_cases"]), "paper_test_cases": paper.test_cases if paper else np.nan,
            "lesions": int(s["lesions"]), "paper_lesions": paper.lesions if paper else np.nan,
            "q1_upper_percent": 100 * float(s["q1_upper"]),
            "paper_q1_upper_percent": paper.q1_upper_percent if paper else np.nan,
        })
    table = pd.DataFrame(rows)
    if len(table):
        total = {"dataset": "total", "modality": "mixed", "source": "", "test_cases": table["test_cases"].sum(),
                 "paper_test_cases": 211, "lesions": table["lesions"].sum(), "paper_lesions": 5842,
                 "q1_upper_percent": 100 * pooled_q1 if pooled_q1 is not None else np.nan,
                 "paper_q1_upper_percent": 1.5}
        table = pd.concat([table, pd.DataFrame([total])], ignore_index=True)
    return table


def spread_comparison(spreads: pd.DataFrame, reversals: pd.DataFrame, *,
                      lesion_set: str = PRIMARY_LESION_SET) -> pd.DataFrame:
    """Section 4.6: per dataset and setting (overall, Q4, Q1): Dice spread and HD95 relative spread among the top
    3, and the mean Kendall tau between Dice and the boundary metrics, beside the paper's row (one lesion
    set). Nothing undefined is dropped or silently averaged: ``hd95_spread_mm`` is the absolute HD95 spread beside
    the relative one, ``hd95_spread_note`` says why the relative spread is undefined (NaN) where it is, and
    ``n_kendall_taus`` / ``n_kendall_metrics`` say over how many metrics the mean tau was taken (taus are NaN where
    an order has ties only)."""
    rows = []
    if "lesion_set" in spreads.columns:
        spreads = spreads[spreads["lesion_set"] == lesion_set]
    if "lesion_set" in reversals.columns:
        reversals = reversals[reversals["lesion_set"] == lesion_set]
    for (dataset, stratum), sub in spreads.groupby(["dataset", "stratum"], sort=False):
        if stratum not in PAPER_SPREADS:
            continue
        s = sub.set_index("metric")
        tau = reversals[(reversals["dataset"] == dataset) & (reversals["stratum"] == stratum)]["kendall_tau"]
        tau = pd.to_numeric(tau, errors="coerce")
        finite_tau = tau[np.isfinite(tau)]
        paper = PAPER_SPREADS[stratum]
        relative = float(s["relative_spread_percent"].get("hd95", np.nan))
        absolute = float(s["spread"].get("hd95", np.nan))
        if "hd95" not in s.index:
            note = "no HD95 spread among the top models in this setting"
        elif not np.isfinite(relative):
            # spread_table leaves the relative spread undefined exactly when the best value is 0
            note = ("the best top model's HD95 is 0 mm: a relative spread has no denominator"
                    if np.isfinite(absolute) else "the top models' HD95 is not finite")
        else:
            note = ""
        rows.append({
            "dataset": dataset, "lesion_set": lesion_set, "setting": stratum,
            "dice_spread": s["spread"].get("dice", np.nan), "paper_dice_spread": paper["dice_spread"],
            "hd95_spread_mm": absolute,
            "hd95_spread_percent": relative, "hd95_spread_note": note,
            "paper_hd95_spread_percent": paper["hd95_spread_percent"],
            "mean_kendall_tau": finite_tau.mean() if len(finite_tau) else np.nan,
            "n_kendall_taus": int(len(finite_tau)), "n_kendall_metrics": int(len(tau)),
            "paper_ranking_stability": paper["ranking_stability"],
        })
    order = {"overall": 0, "Q4": 1, "Q1": 2}
    table = pd.DataFrame(rows)
    if len(table):
        table = table.assign(_o=table["setting"].map(order)).sort_values(["dataset", "_o"]).drop(columns="_o")
    return table.reset_index(drop=True)


def small_lesion_comparison(aggregates: pd.DataFrame, *, stratum: str = "Q1",
                            lesion_set: str = PRIMARY_LESION_SET) -> pd.DataFrame:
    """Section 4.2: per dataset and model, Q1 Dice, HD95, ASSD and contour F1 of one lesion set, beside the
    paper's values, with detection beside them (``lesion_recall`` over all the stratum's lesions,
    ``fp_lesions_per_case``) and ``n`` (lesions behind HD95), ``n_penalty`` and ``n_missed`` (of them, penalty
    values and missed lesions: 0 in the ``common`` set), ``rankable`` and ``note``."""
    metrics = ["dice", "hd95", "assd", "contour_f1"]
    agg = select_lesion_set(aggregates, lesion_set)
    detection = list(metric_names(primary=True, kind="detection"))
    sub = agg[(agg["stratum"] == stratum) & agg["metric"].isin(metrics + detection)]
    table = sub.pivot_table(index=["dataset", "model"], columns="metric", values="value")
    table = table.reindex(columns=metrics + detection).reset_index()
    table.insert(0, "lesion_set", lesion_set)
    counts = [c for c in ("n", "n_penalty", "n_missed", "rankable", "note") if c in sub.columns]
    if counts:
        # how many lesions stand behind the HD95 column, and how many of them are misses / penalty values
        table = table.join(sub[sub["metric"] == "hd95"].set_index(["dataset", "model"])[counts],
                           on=["dataset", "model"])
    for m in metrics:
        table[f"paper_{m}"] = table["model"].map(lambda k, m=m: PAPER_SMALL_LESION.get(k, {}).get(m, np.nan))
    return table


def agreement_counts(reversals: pd.DataFrame, *, stratum: str = "Q1",
                     lesion_set: str | None = PRIMARY_LESION_SET) -> pd.DataFrame:
    """Section 4.3: over datasets, the top-3 model pairs ordered alike by Dice and each boundary metric.

    The paper's "9 dataset-level top-model comparisons" are read as 3 datasets x 3 pairs among the top 3
    models by Dice. A pair agrees when both metrics put the same model strictly ahead; a pair tied under either
    is not comparable and counted apart (``not_comparable``); ``comparable = agree + disagree``. Datasets whose
    stratum was not ranked (too few lesions) are counted in ``datasets_not_ranked``. Also: in how many
    datasets the Dice leader ranks third or worse under the metric.
    """
    sub = reversals[reversals["stratum"] == stratum]
    if lesion_set is not None and "lesion_set" in sub.columns:
        sub = sub[sub["lesion_set"] == lesion_set]
    rows = []
    for metric, m in sub.groupby("metric", sort=False):
        paper = PAPER_AGREEMENT.get(metric, (np.nan, np.nan))
        ranked = m[m["note"].fillna("") == ""] if "note" in m.columns else m
        rows.append({
            "lesion_set": lesion_set or "", "stratum": stratum, "metric": metric,
            "agree": int(ranked["top_pairs_agree"].sum()),
            "disagree": int(ranked["top_pairs_disagree"].sum()),
            "not_comparable": int(ranked["top_pairs_not_comparable"].sum()),
            "comparable": int(ranked["top_pairs_comparable"].sum()),
            "comparisons": int(ranked["top_pairs"].sum()), "paper_agree": paper[0], "paper_comparisons": paper[1],
            "order_changed_datasets": int(ranked["order_changed"].astype(bool).sum()), "datasets": len(ranked),
            "datasets_not_ranked": len(m) - len(ranked),
            "dice_leader_third_or_worse": int((ranked["leader_rank_in_metric"] >= 3).sum()),
        })
    return pd.DataFrame(rows)


def paper_full_set_dice(aggregates: pd.DataFrame) -> pd.DataFrame:
    """Table 4.1: full-test-set Dice per model, ours per dataset and pooled over datasets (the mean of the
    datasets' case means, each dataset weighted equally; ``n_datasets`` says over how many), beside the
    paper's pooled value."""
    sub = aggregates[(aggregates["stratum"] == "overall") & (aggregates["metric"] == "dice")]
    sub = sub.drop_duplicates(["dataset", "model"])
    table = sub.pivot_table(index="model", columns="dataset", values="value")
    table.columns = [f"dice_{c}" for c in table.columns]
    table["dice_pooled"] = sub.groupby("model")["value"].mean()
    table["n_datasets"] = sub.groupby("model")["dataset"].nunique()
    table = table.reset_index()
    table["paper_dice_pooled"] = table["model"].map(PAPER_FULL_SET_DICE)
    return table.sort_values("dice_pooled", ascending=False).reset_index(drop=True)


def paper_q1_maxima(spreads: pd.DataFrame, aggregates: pd.DataFrame, *, stratum: str = "Q1") -> pd.DataFrame:
    """Section 4.2: the largest differences among the top models in Q1 across datasets, ours per lesion set
    beside the paper's (41.3 % HD95, 36.8 % ASD, 0.112 contour F1, 8.7 points of lesion-wise recall).

    HD95 and ASSD: the largest relative spread among the top 3 by Dice (:func:`helpers.analysis.units.spread_table`);
    contour F1: the largest absolute spread; recall: the largest spread in percentage points among the same top
    models. A dataset whose value is undefined (a relative spread over a best value of 0) is not dropped silently:
    ``n_datasets`` counts those with a value, ``datasets_undefined`` names the others.
    """
    rows = []
    spec = [("hd95", "relative_spread_percent", 1.0, "hd95_percent"),
            ("assd", "relative_spread_percent", 1.0, "assd_percent"),
            ("contour_f1", "spread", 1.0, "contour_f1_absolute"),
            ("lesion_recall", "spread", 100.0, "lesion_recall_points")]
    sets = spreads["lesion_set"].unique() if "lesion_set" in spreads.columns else [PRIMARY_LESION_SET]
    for lset in sets:
        sub = spreads[(spreads["stratum"] == stratum)
                      & ((spreads["lesion_set"] == lset) if "lesion_set" in spreads.columns else True)]
        for metric, column, scale, paper_key in spec:
            rows_of_metric = sub.loc[sub["metric"] == metric]
            v = rows_of_metric[column].dropna() * scale
            undefined = sorted(rows_of_metric.loc[rows_of_metric[column].isna(), "dataset"].astype(str))
            where = sub.loc[v.idxmax(), "dataset"] if len(v) else ""
            rows.append({"lesion_set": lset, "stratum": stratum, "quantity": paper_key,
                         "ours_max": float(v.max()) if len(v) else np.nan, "dataset_of_max": where,
                         "n_datasets": int(len(v)), "datasets_undefined": ", ".join(undefined),
                         "paper": PAPER_Q1_MAX_DIFFERENCES[paper_key]})
    return pd.DataFrame(rows)


def regime_calibration(per_case: pd.DataFrame, per_lesion: pd.DataFrame, *, voxel_mm: float, top_k: int = 3,
                       stratum: str = "Q1") -> pd.DataFrame:
    """The trained models' side of the stand-ins' calibration (the data side: :mod:`helpers.data.calibration`):
    per model, ``overall_dice`` (mean per-case Dice) and its rank, ``top`` (among the ``top_k`` by it), and over
    the stratum's reference lesions: ``lesion_recall`` (share detected), the means over detected lesions of
    ``dice``, ``hd95``, ``assd`` and ``contour_f1`` (at the evaluation's primary tolerance, one in-plane voxel),
    ``share_hd95_within_voxel`` (share of those HD95 values at most ``voxel_mm``: the resolution limit) and ``n``
    (detected lesions); beside them the paper's Table 4.2 range over its four models (``paper_<metric>``)."""
    check_columns(per_case, ["model", "metric", "value"], "per_case")
    check_columns(per_lesion, ["model", "kind", "quartile", "metric", "value", "penalty"], "per_lesion")
    overall = per_case[per_case["metric"] == "dice"].groupby("model")["value"].mean()
    ref = per_lesion[(per_lesion["kind"] == REFERENCE) & (per_lesion["quartile"] == stratum)]
    recall = ref[ref["metric"] == "detected"].groupby("model")["value"].mean()
    penalty = ref["penalty"].map(lambda v: str(v).strip().lower() in ("true", "1", "1.0"))
    measured = ref[~penalty & ref["metric"].isin(["dice", "hd95", "assd", "contour_f1"])]
    means = measured.pivot_table(index="model", columns="metric", values="value", aggfunc="mean")
    hd95 = measured[measured["metric"] == "hd95"]
    within = (hd95["value"] <= float(voxel_mm) * (1 + 1e-9)).groupby(hd95["model"]).mean()
    table = pd.DataFrame({"overall_dice": overall}).join(recall.rename("lesion_recall"))
    table = table.join(means.reindex(columns=["dice", "hd95", "assd", "contour_f1"]))
    table = table.join(within.rename("share_hd95_within_voxel")).join(hd95.groupby("model").size().rename("n"))
    table = table.sort_values("overall_dice", ascending=False)
    table.insert(1, "rank", np.arange(1, len(table) + 1))
    table.insert(2, "top", table["rank"] <= top_k)
    for m in ("dice", "hd95", "assd", "contour_f1"):
        values = [v[m] for v in PAPER_SMALL_LESION.values()]
        table[f"paper_{m}"] = f"{min(values):g}-{max(values):g}"
    table.insert(0, "stratum", stratum)
    return table.reset_index()
