"""The failure-mode lab's planted ranking reversal, found by the study's own evaluation and analysis code.

Synthetic models are evaluated with the study's engine into the study's tidy tables (:func:`evaluate_models`), the
HD95 aggregation is chosen (:func:`use_hd95_variant`), and the planted reversal (:data:`DEMO_MODELS`: the Dice
leader has the worse boundary by construction) is analysed exactly as the trained models (:func:`reversal_demo`).

Conventions
-----------
- Metrics are computed by the study's engine (:func:`helpers.metrics.evaluate_case`,
  :func:`helpers.metrics.lesions.evaluate_lesions`) with their documented definitions and empty-mask policy: a lesion
  that a failure mode deletes gets Dice 0 and the penalty distance, which is reported in the ``penalty``
  column and never dropped.
- Metric names, directions and labels are the registry's (:data:`helpers.metrics.METRICS`).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from helpers import analysis
from helpers.stats import bootstrap
from helpers.base.checks import as_positive
from helpers.evaluation import evaluate_case_tables, lesion_rows, reference_quartile_edges
from helpers.metrics.lesions import assign_quartiles
from helpers.metrics import metric_names
from helpers.studies.failure_lab.models import SyntheticCase, SyntheticModel, as_cases, calibrate_models

__all__ = ["evaluate_models", "use_hd95_variant", "DEMO_MODELS", "reversal_demo"]


# ----------------------------------------------------------------------------------------------- evaluation
def evaluate_models(
    models: Sequence[SyntheticModel],
    cases: Sequence[SyntheticCase],
    *,
    dataset: str = "failure_lab",
    tolerance: float = 1.0,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Evaluate synthetic models with the study's engine, into the study's tidy tables.

    Per case: the rows of :func:`helpers.evaluation.evaluate_case_tables` (the study's own per-case evaluation:
    :func:`helpers.metrics.evaluate_case` and the lesion counts of :func:`helpers.metrics.lesions.evaluate_lesions`).
    Per lesion: from the same :func:`helpers.metrics.lesions.evaluate_lesions` table, the study's rows, built by the
    study's one row builder :func:`helpers.evaluation.lesion_rows` (``detected``, every registered per-lesion
    metric, one ``false_positive`` row per false-positive component; ``penalty`` True only on a missed lesion's
    distance rows); size quartiles from :func:`helpers.evaluation.reference_quartile_edges` over the reference
    lesions' area fractions (all cases), so the tables feed :func:`helpers.analysis.analysis_units` unchanged.

    Returns
    -------
    per_case, per_lesion : pandas.DataFrame
        Columns as ``per_case_metrics.csv`` (``dataset, model, case_id, metric, value, penalty, ...``) and
        ``per_lesion_metrics.csv`` (``dataset, model, case_id, lesion_id, kind, detected, n_voxels,
        area_fraction, quartile, metric, value, penalty``; ``kind`` is :data:`helpers.metrics.lesions.REFERENCE` or
        :data:`helpers.metrics.lesions.FALSE_POSITIVE`).
    """
    cases = as_cases(cases)
    case_rows, lesion_frames = [], []
    for model in models:
        for k, case in enumerate(cases):
            pred = model.predict(case, index=k, seed=seed)
            rows, lesions = evaluate_case_tables(case, pred, dataset=dataset, model=model.name, tolerance=tolerance)
            case_rows.extend(rows)
            lesion_frames.append(lesion_rows(lesions, dataset=dataset, model=model.name, case_id=case.case_id))
    per_case = pd.DataFrame(case_rows)
    per_lesion = pd.concat([f for f in lesion_frames if len(f)], ignore_index=True)
    per_lesion["quartile"] = assign_quartiles(per_lesion["area_fraction"], reference_quartile_edges(per_lesion))
    columns = ["dataset", "model", "case_id", "lesion_id", "kind", "detected", "n_voxels", "area_fraction",
               "quartile", "metric", "value", "penalty"]
    return per_case, per_lesion[columns]


def use_hd95_variant(table: pd.DataFrame, variant: str) -> pd.DataFrame:
    """The table with its ``hd95`` rows holding the chosen HD95 aggregation.

    ``"directed"`` (the study's default: maximum of the two directed 95th percentiles) returns the table as is;
    ``"pooled"`` replaces each ``hd95`` value by the same unit's ``hd95_pooled``. Rows of ``hd95_pooled`` are
    dropped either way, so the study's primary analysis (:func:`helpers.analysis.analysis_units` keeps the
    primary metrics of :data:`helpers.metrics.METRICS`, of which ``hd95`` is one) ranks the chosen variant as
    ``hd95``; both variants' directions come from the registry."""
    if variant not in ("directed", "pooled"):
        raise ValueError(f"variant must be 'directed' or 'pooled', got {variant!r}")
    if "metric" not in table.columns:
        raise ValueError(f"table lacks column 'metric'; has {list(table.columns)}")
    if variant == "directed":
        return table[table["metric"] != "hd95_pooled"].reset_index(drop=True)
    keep = table[table["metric"] != "hd95"]
    return keep.assign(metric=keep["metric"].replace({"hd95_pooled": "hd95"})).reset_index(drop=True)


# ------------------------------------------------------------------------------------------- the reversal
#: The models of the planted reversal. The Dice leader erodes every lesion from one side (asymmetric
#: under-segmentation): its contour is displaced by the calibrated depth, about pi voxels at the Dice of a
#: one-voxel dilation, on the eaten side. The runner-up dilates lesions by one voxel (contour displaced by 1
#: everywhere): the better boundary by construction. The third dilates like the runner-up and adds a
#: single-voxel-radius false-positive blob 4 mm beside half of the lesions: a small share of boundary voxels far
#: away, which the directed and the pooled HD95 weigh differently.
DEMO_MODELS: tuple[SyntheticModel, ...] = (
    SyntheticModel("one_side_model", "one_side"),
    SyntheticModel("dilation_model", "dilate", severity_mm=1.0, tune="fraction"),
    SyntheticModel(
        "dilation_blob_model", "dilate", severity_mm=1.0, tune="fraction",
        extra=({"mode": "blobs", "severity_mm": 1.0, "fraction": 0.5, "options": {"gap_mm": 4.0}},),
    ),
)


def _planted_verdicts(variant: str, reversals: pd.DataFrame, boot: pd.DataFrame, names: list[str]) -> list[dict]:
    """One verdict row per stratum (overall, Q1): the Dice and HD95 leaders, whether the order changed and the
    bootstrap verdict of the planted pair (``names[0]`` vs ``names[1]``) under HD95."""
    rows = []
    planted = boot[(boot["model_a"] == names[0]) & (boot["model_b"] == names[1])]
    for stratum in ("overall", "Q1"):
        rev = reversals[(reversals["stratum"] == stratum) & (reversals["metric"] == "hd95")]
        pair = planted[(planted["stratum"] == stratum) & (planted["metric"] == "hd95")]
        pair_dice = planted[(planted["stratum"] == stratum) & (planted["metric"] == "dice")]
        if rev.empty or pair.empty:
            continue
        rev, pair, pair_dice = rev.iloc[0], pair.iloc[0], pair_dice.iloc[0]
        hd_leader = rev["order_metric"].split(" > ")[0]
        rows.append({
            "hd95_variant": variant, "stratum": stratum, "order_dice": rev["order_dice"],
            "order_hd95": rev["order_metric"], "dice_leader": rev["leader"], "hd95_leader": hd_leader,
            "order_changed": bool(rev["order_changed"]),
            "dice_leader_rank_hd95": float(rev["leader_rank_in_metric"]),
            "planted_pair": f"{names[0]} vs {names[1]}",
            "dice_better": pair_dice["better"], "dice_share_same_sign": pair_dice["share_same_sign"],
            "hd95_better": pair["better"], "hd95_difference": pair["difference"],
            "hd95_ci_low": pair["ci_low"], "hd95_ci_high": pair["ci_high"],
            "hd95_share_same_sign": pair["share_same_sign"], "hd95_verdict": pair["verdict"],
            "reversal_found": bool(rev["leader"] == names[0] and pair["better"] == names[1]),
        })
    return rows


def reversal_demo(
    cases: Sequence[SyntheticCase],
    *,
    target_dice: float = 0.85,
    dice_gap: float = 0.006,
    models: Sequence[SyntheticModel] = DEMO_MODELS,
    tolerance: float = 1.0,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, pd.DataFrame]:
    """The planted ranking reversal, analysed by the study's own code.

    The first model is calibrated to ``target_dice + dice_gap / 2`` and the others to ``target_dice - dice_gap /
    2`` (all within 0.01 of each other), so Dice ranks the first model on top although its boundary is the
    worse one by construction. The models are evaluated (:func:`evaluate_models`) and analysed exactly as the
    trained models: :func:`helpers.analysis.analysis_units`, :func:`helpers.analysis.aggregate`,
    :func:`helpers.analysis.reversal_table` and :func:`helpers.stats.bootstrap.directional_robustness` (paired case
    bootstrap), once with the directed-max HD95 and once with the pooled HD95 (:func:`use_hd95_variant`).

    Returns
    -------
    dict of pandas.DataFrame
        ``calibration`` (:func:`calibrate_models`), ``per_case``, ``per_lesion``, and for each variant ``v`` in
        ``("directed", "pooled")``: ``aggregates_v``, ``reversals_v``, ``bootstrap_v``; ``verdicts`` (one row per
        variant and stratum: the Dice leader, the HD95 leader, whether the reversal was found and the bootstrap
        verdict of the planted pair under HD95).
    """
    cases = as_cases(cases)
    models = list(models)
    if len(models) < 2:
        raise ValueError(f"models must hold at least two models, got {len(models)}")
    gap = as_positive(dice_gap, "dice_gap", allow_zero=True)
    if gap >= 0.01:
        raise ValueError(f"dice_gap must be < 0.01 (the models must agree within 0.01 Dice), got {dice_gap!r}")
    targets = {m.name: target_dice - gap / 2 for m in models}
    targets[models[0].name] = target_dice + gap / 2
    calibrated, calibration = calibrate_models(models, cases, targets=targets, tolerance=min(0.004, gap / 3) or 0.004,
                                               seed=seed)
    per_case, per_lesion = evaluate_models(calibrated, cases, tolerance=tolerance, seed=seed)
    out = {"calibration": calibration, "per_case": per_case, "per_lesion": per_lesion}
    case_ids = [c.case_id for c in cases]
    names = [m.name for m in calibrated]
    verdict_rows = []
    for variant in ("directed", "pooled"):
        units = analysis.analysis_units(use_hd95_variant(per_case, variant), use_hd95_variant(per_lesion, variant))
        aggregates = analysis.aggregate(units)
        reversals = analysis.reversal_table(aggregates, top_k=min(3, len(names)))
        boot = bootstrap.directional_robustness(
            units[units["metric"].isin(["dice", *metric_names(against_dice=True)])], case_ids=case_ids, models=names,
            n_resamples=n_resamples, seed=seed, group_by=("metric", "stratum"),
        )
        out[f"aggregates_{variant}"] = aggregates
        out[f"reversals_{variant}"] = reversals
        out[f"bootstrap_{variant}"] = boot
        verdict_rows.extend(_planted_verdicts(variant, reversals, boot, names))
    out["verdicts"] = pd.DataFrame(verdict_rows)
    return out
