"""What the study's numbers say, across datasets: the tables read from the sections' files, the small lesions the
qualitative figure shows, and the findings as sentences generated from the tables (nothing here is a fixed
conclusion).

Imports :mod:`helpers.analysis.units`, :mod:`helpers.analysis.paper`, :mod:`helpers.evaluation` (the tidy tables
on disk), :mod:`helpers.metrics` and :mod:`helpers.base.io`; never matplotlib.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from helpers.analysis.paper import pooled_q1_upper
from helpers.base.checks import check_columns
from helpers.analysis.units import (
    LESION_COLUMNS, LESION_SETS, MIN_LESIONS, PRIMARY_LESION_SET, aggregate, as_bool, lesion_set_units,
)
from helpers.base.io import read_json
from helpers.data.datasets import display_name
from helpers.evaluation import read_tables
from helpers.metrics.lesions import REFERENCE

__all__ = [
    "collect", "pooled_q1_upper_of", "dataset_summaries", "select_qualitative_examples", "lesion_set_aggregates",
    "common_set_sizes", "findings",
]


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


def pooled_q1_upper_of(ws, datasets: Sequence[str]) -> float:
    """:func:`helpers.analysis.paper.pooled_q1_upper` over the datasets' ``per_lesion_metrics.csv``."""
    return pooled_q1_upper(collect(ws, datasets, "per_lesion_metrics.csv"))


def dataset_summaries(ws, datasets: Sequence[str]) -> pd.DataFrame:
    """One row per dataset: ``dataset, source, test_cases, lesions`` (test reference lesions) and ``q1_upper`` (the
    Q1 upper edge as a fraction), from ``data_manifest.json`` and ``quartile_edges.json`` (the input of
    :func:`helpers.analysis.paper.dataset_summary`)."""
    out = []
    for dataset in datasets:
        edges = read_json(ws.results(dataset) / "quartile_edges.json")
        manifest_path = ws.results(dataset) / "data_manifest.json"
        source = read_json(manifest_path).get("source", "") if manifest_path.is_file() else "unknown"
        out.append({"dataset": dataset, "source": source, "test_cases": edges["n_cases"],
                    "lesions": edges["n_reference_lesions"], "q1_upper": edges["edges"]["q1_upper"]})
    return pd.DataFrame(out, columns=["dataset", "source", "test_cases", "lesions", "q1_upper"])


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
    check_columns(per_lesion, LESION_COLUMNS, "per_lesion")
    pl = per_lesion[(per_lesion["kind"] == REFERENCE) & (per_lesion["quartile"].astype(str) == stratum)]
    keys = ["dataset", "case_id", "lesion_id"]
    wide = pl[pl["metric"].isin(["detected", "dice", boundary_metric])].pivot_table(
        index=keys, columns=["metric", "model"], values="value", aggfunc="first")
    if wide.empty or "dice" not in wide.columns.get_level_values(0):
        return pd.DataFrame(columns=[*keys, "dice_range", f"{boundary_metric}_range"])
    detected_all = pl[pl["metric"] == "dice"].assign(d=as_bool(pl.loc[pl["metric"] == "dice", "detected"]))
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
# Findings: what the numbers say, in sentences generated from them
# ---------------------------------------------------------------------------------------------------------------
def lesion_set_aggregates(ws, datasets: Sequence[str], *, lesion_sets: Sequence[str] = LESION_SETS,
                          min_lesions: int = MIN_LESIONS) -> pd.DataFrame:
    """Aggregates of every dataset's evaluation under each lesion set (``lesion_set`` column)."""
    # Lazy: helpers.evaluation imports this module on this branch (the metric registry's branch removes that
    # import; after the merge this import belongs at the top).

    frames = []
    for dataset in datasets:
        per_case, per_lesion = read_tables(ws, dataset)
        frames.append(aggregate(lesion_set_units(per_case, per_lesion, lesion_sets=lesion_sets),
                                min_lesions=min_lesions))
    return pd.concat(frames, ignore_index=True)


def common_set_sizes(aggregates: pd.DataFrame, *, stratum: str = "Q1") -> pd.DataFrame:
    """Per dataset: the number of lesions in the ``common`` set of ``stratum`` (``n`` of its Dice rows) and the
    number of reference lesions of the stratum (``n`` of its recall rows)."""
    sub = aggregates[(aggregates["stratum"] == stratum) & (aggregates["lesion_set"] == "common")]
    n = sub[sub["metric"] == "dice"].groupby("dataset")["n"].max()
    total = sub[sub["metric"] == "lesion_recall"].groupby("dataset")["n"].max()
    out = pd.DataFrame({"n": n, "n_reference": total}).fillna(0).astype(int).reset_index()
    return out.rename(columns={"index": "dataset"})


def _fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def findings(pattern: pd.DataFrame, agreement: pd.DataFrame, robustness: pd.DataFrame | None = None,
             common_counts: pd.DataFrame | None = None) -> list[str]:
    """The study's claims checked against our tables, one sentence each, in the order of the paper's findings.

    ``pattern`` is :func:`helpers.analysis.paper.spread_comparison`'s table, ``agreement``
    :func:`helpers.analysis.paper.agreement_counts`'s and
    ``robustness`` the bootstrap table (``stratum``, ``metric``, ``verdict``). Each sentence states the numbers
    and whether they show the paper's pattern; nothing here is a fixed conclusion. ``common_counts``
    (``dataset, n``): the size of each dataset's common Q1 set (:func:`common_set_sizes`).
    """
    out = []
    for dataset, sub in pattern.groupby("dataset", sort=False):
        s = sub.set_index("setting")
        if not {"overall", "Q1"} <= set(s.index):
            missing = " and ".join(sorted({"overall", "Q1"} - set(s.index)))
            out.append(f"**{display_name(dataset)}**: no spread among the top models in {missing}: too few lesions in "
                       f"the common set to rank the models there.")
            continue
        d_all, d_q1 = s.at["overall", "dice_spread"], s.at["Q1", "dice_spread"]
        h_all, h_q1 = s.at["overall", "hd95_spread_percent"], s.at["Q1", "hd95_spread_percent"]
        name = display_name(dataset)
        head = (f"**{name}**: among the top models by Dice, the Dice spread is {_fmt(d_all)} on the full test set "
                f"and {_fmt(d_q1)} in Q1; the HD95 relative spread is {_fmt(h_all, 1)} % overall and "
                f"{_fmt(h_q1, 1)} % in Q1")
        if np.isfinite(h_all) and np.isfinite(h_q1):
            out.append(f"{head} — the boundary spread {'widens' if h_q1 > h_all else 'does not widen'} on the "
                       f"smallest lesions (paper: 14.7 % → 41.3 %).")
            continue
        # three outcomes, never two: an undefined relative spread is no evidence either way
        where = [w for w, h in (("overall", h_all), ("in Q1", h_q1)) if not np.isfinite(h)]
        absolute = ""
        if "hd95_spread_mm" in s.columns:
            absolute = (f"; the absolute HD95 spread is {_fmt(s.at['overall', 'hd95_spread_mm'])} mm overall and "
                        f"{_fmt(s.at['Q1', 'hd95_spread_mm'])} mm in Q1")
        reason = ""
        if "hd95_spread_note" in s.columns:
            notes = [str(s.at[k, "hd95_spread_note"]) for k in ("overall", "Q1")
                     if isinstance(s.at[k, "hd95_spread_note"], str) and s.at[k, "hd95_spread_note"]]
            reason = f" ({'; '.join(notes)})" if notes else ""
        out.append(f"{head}{absolute} — whether the boundary spread widens on the smallest lesions cannot be "
                   f"assessed: the relative spread is undefined {' and '.join(where)}{reason} (paper: 14.7 % → "
                   f"41.3 %).")
    for row in agreement.itertuples():
        out.append(
            f"Dice and {row.metric} order the top-model pairs alike in {row.agree} of {row.comparable} comparable "
            f"pairs in {row.stratum} ({row.lesion_set} lesion set; {row.not_comparable} pairs tied under either "
            f"metric, {row.datasets_not_ranked} dataset(s) with too few lesions to rank; paper: "
            f"{row.paper_agree} of {row.paper_comparisons}); the Dice leader ranks third or worse under "
            f"{row.metric} in {row.dice_leader_third_or_worse} of {row.datasets} datasets"
            + (" (paper: 2 of 3 for HD95)." if row.metric == "hd95" else ".")
        )
    if common_counts is not None and len(common_counts):
        parts = ", ".join(f"{display_name(r.dataset)} {int(r.n)}" for r in common_counts.itertuples())
        out.append(f"Q1 lesions detected by every model (the common set the boundary comparison rests on): {parts}.")
    if robustness is not None and len(robustness):
        q1 = robustness[robustness["stratum"] == "Q1"]
        if "lesion_set" in q1.columns:
            q1 = q1[q1["lesion_set"] == PRIMARY_LESION_SET]
        if len(q1):
            counts = q1["verdict"].value_counts()
            parts = "; ".join(f"{int(n)} \"{verdict}\"" for verdict, n in counts.items())
            out.append(f"Paired bootstrap over test cases, Q1 common set, all model pairs and metrics ({len(q1)} "
                       f"comparisons, Holm-adjusted within each dataset): {parts}.")
    return out
