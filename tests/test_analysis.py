"""Tests of helpers.analysis on hand-built tables."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from helpers import analysis as an  # noqa: E402
from helpers.report import figures  # noqa: E402
from helpers.stats.ranking import agreement_matrix  # noqa: E402


# ------------------------------------------------------------------------------------------- hand-built tables
def _per_case():
    rows = []
    values = {  # model -> metric -> [c0, c1]
        "a": {"dice": [0.8, 0.6], "hd95": [2.0, 45.0], "fp_lesions": [1.0, 0.0]},
        "b": {"dice": [0.9, 0.7], "hd95": [3.0, 5.0], "fp_lesions": [0.0, 0.0]},
    }
    for model, per_metric in values.items():
        for metric, vals in per_metric.items():
            for case, v in zip(["c0", "c1"], vals):
                rows.append({"dataset": "d", "model": model, "case_id": case, "metric": metric, "value": v,
                             "penalty": model == "a" and metric == "hd95" and case == "c1"})
    return pd.DataFrame(rows)


def _per_lesion():
    # reference lesions: (case, id, area fraction, quartile); c0-1 small, c0-2 large, c1-1 small
    lesions = [("c0", 1, 0.01, "Q1"), ("c0", 2, 0.2, "Q4"), ("c1", 1, 0.02, "Q1")]
    dice = {"a": [0.5, 0.9, 0.0], "b": [0.6, 0.8, 0.4]}
    rows = []
    for model in ("a", "b"):
        for (case, lid, af, q), d in zip(lesions, dice[model]):
            missed = d == 0.0
            for metric, v in [("detected", 0.0 if missed else 1.0), ("dice", d), ("hd95", 40.0 if missed else 1.0)]:
                rows.append({"dataset": "d", "model": model, "case_id": case, "lesion_id": lid, "kind": "lesion",
                             "detected": not missed, "n_voxels": 10, "area_fraction": af, "quartile": q,
                             "metric": metric, "value": v, "penalty": missed and metric == "hd95"})
    rows.append({"dataset": "d", "model": "a", "case_id": "c0", "lesion_id": 3, "kind": "false_positive",
                 "detected": np.nan, "n_voxels": 2, "area_fraction": 0.005, "quartile": "Q1",
                 "metric": "false_positive", "value": 1.0, "penalty": False})
    return pd.DataFrame(rows)


def _agg(lesion_set="all_with_penalty"):
    units = an.analysis_units(_per_case(), _per_lesion(), lesion_set=lesion_set)
    return an.aggregate(units, min_lesions=1).set_index(["stratum", "model", "metric"])


def test_overall_is_case_level():
    agg = _agg()
    # Dice of a over cases (0.8 + 0.6) / 2 = 0.7; HD95 (2 + 45) / 2 = 23.5 with one penalty value
    assert agg.loc[("overall", "a", "dice"), "value"] == pytest.approx(0.7)
    assert agg.loc[("overall", "a", "hd95"), "value"] == pytest.approx(23.5)
    assert agg.loc[("overall", "a", "hd95"), "n_penalty"] == 1
    assert agg.loc[("overall", "a", "hd95"), "n"] == 2
    # pooled recall: a detects 2 of 3 reference lesions; FP per case (1 + 0) / 2
    assert agg.loc[("overall", "a", "lesion_recall"), "value"] == pytest.approx(2 / 3)
    assert agg.loc[("overall", "a", "fp_lesions_per_case"), "value"] == pytest.approx(0.5)


def test_quartile_is_lesion_level_with_penalty():
    agg = _agg()
    # Q1 lesions of a: c0-1 Dice 0.5 and c1-1 missed (Dice 0, a defined value) -> 0.25, n 2, one missed lesion;
    # its HD95 (40) is the penalty: n_penalty 1 on the HD95 row, 0 on the Dice row
    row = agg.loc[("Q1", "a", "dice")]
    assert row["value"] == pytest.approx(0.25) and row["n"] == 2 and row["n_cases"] == 2
    assert row["n_missed"] == 1 and row["n_penalty"] == 0
    assert agg.loc[("Q1", "a", "hd95"), "n_penalty"] == 1 and agg.loc[("Q1", "a", "hd95"), "value"] == 20.5
    assert agg.loc[("Q1", "a", "lesion_recall"), "value"] == pytest.approx(0.5)
    assert agg.loc[("Q1", "b", "lesion_recall"), "value"] == pytest.approx(1.0)
    # all lesions of a: (0.5 + 0.9 + 0) / 3 pooled; case means c0 0.7, c1 0 -> 0.35
    assert agg.loc[("all_lesions", "a", "dice"), "value"] == pytest.approx(1.4 / 3)
    assert agg.loc[("all_lesions", "a", "dice"), "value_case_mean"] == pytest.approx(0.35)
    # the false positive (area 0.005) is binned by its own size into Q1: 1 FP over 2 cases
    assert agg.loc[("Q1", "a", "fp_lesions_per_case"), "value"] == pytest.approx(0.5)
    assert agg.loc[("Q4", "a", "fp_lesions_per_case"), "value"] == 0.0


def test_detected_by_model_drops_each_models_missed_lesions():
    agg = _agg("detected_by_model")
    row = agg.loc[("Q1", "a", "dice")]
    assert row["value"] == pytest.approx(0.5) and row["n"] == 1 and row["n_penalty"] == 0
    # b detected both Q1 lesions: its n differs from a's (the selection bias this view carries)
    assert agg.loc[("Q1", "b", "dice"), "n"] == 2
    # recall still counts the missed lesion
    assert agg.loc[("Q1", "a", "lesion_recall"), "value"] == pytest.approx(0.5)


def test_nan_values_counted():
    pc = _per_case()
    pc.loc[0, "value"] = np.nan
    agg = an.aggregate(an.analysis_units(pc, _per_lesion())).set_index(["stratum", "model", "metric"])
    row = agg.loc[("overall", "a", "dice")]
    assert row["n"] == 1 and row["n_nan"] == 1 and row["value"] == pytest.approx(0.6)


def test_units_validate():
    with pytest.raises(ValueError, match="per_case lacks columns"):
        an.analysis_units(pd.DataFrame({"x": [1]}), _per_lesion())
    with pytest.raises(ValueError, match="lesion_set must be one of"):
        an.analysis_units(_per_case(), _per_lesion(), lesion_set="drop")
    with pytest.raises(ValueError, match="min_lesions must be an integer >= 1"):
        an.aggregate(an.analysis_units(_per_case(), _per_lesion()), min_lesions=0)


def _three_models():
    """Five reference lesions in two cases, three models. Detected by (a, b, c):
    c0-1 Q1 (y, y, y) common; c0-2 Q1 (y, n, y); c1-3 Q1 (y, y, y) common; c1-4 Q4 (n, n, y); c1-5 Q4 (y, y, y)
    common. Common set: c0-1, c1-3 (Q1, n = 2) and c1-5 (Q4, n = 1); all_lesions n = 3."""
    lesions = [("c0", 1, "Q1", "yyy"), ("c0", 2, "Q1", "yny"), ("c1", 3, "Q1", "yyy"), ("c1", 4, "Q4", "nny"),
               ("c1", 5, "Q4", "yyy")]
    dice = {"a": [0.8, 0.7, 0.6, 0.0, 0.9], "b": [0.7, 0.0, 0.5, 0.0, 0.8], "c": [0.6, 0.5, 0.4, 0.3, 0.7]}
    hd = {"a": [1.0, 2.0, 3.0, 99.0, 1.0], "b": [2.0, 99.0, 2.0, 99.0, 2.0], "c": [3.0, 1.0, 1.0, 4.0, 3.0]}
    rows = []
    for k, model in enumerate("abc"):
        for i, (case, lid, q, hits) in enumerate(lesions):
            found = hits[k] == "y"
            for metric, v in [("detected", float(found)), ("dice", dice[model][i]), ("hd95", hd[model][i])]:
                rows.append({"dataset": "d", "model": model, "case_id": case, "lesion_id": lid, "kind": "lesion",
                             "detected": found, "n_voxels": 10, "area_fraction": 0.01, "quartile": q,
                             "metric": metric, "value": v, "penalty": (not found) and metric == "hd95"})
    pl = pd.DataFrame(rows)
    pc = pd.DataFrame([{"dataset": "d", "model": m, "case_id": c, "metric": "dice", "value": 0.5, "penalty": False}
                       for m in "abc" for c in ("c0", "c1")])
    return pc, pl


def test_common_set_on_three_models():
    pc, pl = _three_models()
    common = an.common_lesions(pl)
    assert sorted(zip(common["case_id"], common["lesion_id"])) == [("c0", 1), ("c1", 3), ("c1", 5)]
    assert common.set_index("lesion_id")["quartile"].to_dict() == {1: "Q1", 3: "Q1", 5: "Q4"}
    agg = an.aggregate(an.analysis_units(pc, pl, lesion_set="common"), min_lesions=2)
    agg = agg.set_index(["stratum", "model", "metric"])
    # every model is measured on the same two Q1 lesions: a (0.8 + 0.6) / 2, b (0.7 + 0.5) / 2, c (0.6 + 0.4) / 2
    for model, dice in {"a": 0.7, "b": 0.6, "c": 0.5}.items():
        row = agg.loc[("Q1", model, "dice")]
        assert row["value"] == pytest.approx(dice) and row["n"] == 2 and bool(row["rankable"])
    assert agg.loc[("Q1", "c", "hd95"), "value"] == pytest.approx(2.0)  # (3 + 1) / 2, lesion c0-2 not in
    assert agg.loc[("all_lesions", "a", "dice"), "n"] == 3
    # common rows never hold a penalty or a missed lesion
    lesion_level = agg.reset_index().query("stratum != 'overall' and metric in ['dice', 'hd95']")
    assert (lesion_level["n_penalty"] == 0).all() and (lesion_level["n_missed"] == 0).all()
    # detection stays beside it over all the stratum's lesions: b found 2 of 3 Q1 lesions
    assert agg.loc[("Q1", "b", "lesion_recall"), "value"] == pytest.approx(2 / 3)
    assert agg.loc[("Q1", "b", "lesion_recall"), "n"] == 3
    # Q4 common set: one lesion < minimum 2 -> not rankable, and the row says so
    q4 = agg.loc[("Q4", "a", "dice")]
    assert q4["n"] == 1 and not q4["rankable"] and q4["note"] == "common set: 1 lesion(s) < minimum 2, not ranked"


def test_empty_common_set_is_an_explicit_row():
    # Q2 has no reference lesion at all: its common-set rows are explicit, with n = 0, not missing rows
    pc, pl = _three_models()
    agg = an.aggregate(an.analysis_units(pc, pl, lesion_set="common"), min_lesions=2)
    q2 = agg.query("stratum == 'Q2' and metric == 'hd95'")
    assert len(q2) == 3 and (q2["n"] == 0).all() and q2["value"].isna().all() and not q2["rankable"].any()
    assert (q2["note"] == "common set: 0 lesion(s) < minimum 2, not ranked").all()


def test_minimum_common_set_guard_in_reversals_and_spreads():
    pc, pl = _three_models()
    agg = an.aggregate(an.analysis_units(pc, pl, lesion_set="common"), min_lesions=2)
    rev = an.reversal_table(agg, metrics=("hd95",)).set_index("stratum")
    assert rev.loc["Q4", "note"] == "common set: 1 lesion(s) < minimum 2, not ranked"
    assert pd.isna(rev.loc["Q4", "order_dice"]) and rev.loc["Q1", "note"] == ""
    # Q1: Dice a > b > c; HD95 (common) a 2.0, b 2.0, c 2.0 -> all tied: no pair comparable
    assert rev.loc["Q1", "order_metric"] == "a = b = c" and rev.loc["Q1", "top_pairs_comparable"] == 0
    spreads = an.spread_table(agg)
    assert "Q4" not in set(spreads["stratum"]) and "Q1" in set(spreads["stratum"])


def test_tumour_free_cases_stay_in_fp_but_not_in_boundary_means():
    pc = pd.DataFrame([{"dataset": "d", "model": "a", "case_id": c, "metric": m, "value": v, "penalty": pen,
                        "ref_empty": c == "free"}
                       for c, m, v, pen in [("c0", "dice", 0.8, False), ("c0", "hd95", 2.0, False),
                                            ("free", "dice", 0.0, False), ("free", "hd95", 300.0, True),
                                            ("c0", "fp_lesions", 0.0, False), ("free", "fp_lesions", 2.0, False)]])
    agg = an.aggregate(an.analysis_units(pc, _per_lesion().query("model == 'a'"))).set_index(
        ["stratum", "model", "metric"])
    row = agg.loc[("overall", "a", "hd95")]
    assert row["value"] == 2.0 and row["n"] == 1 and row["n_excluded"] == 1 and row["n_penalty"] == 0
    assert agg.loc[("overall", "a", "fp_lesions_per_case"), "value"] == 1.0  # (0 + 2) / 2: both cases count


def _aggregates(values):
    """values: {stratum: {metric: {model: value}}}"""
    return pd.DataFrame([{"dataset": "d", "stratum": s, "metric": m, "model": k, "value": v}
                         for s, per in values.items() for m, pm in per.items() for k, v in pm.items()])


PAPER_Q1 = {"dice": {k: v["dice"] for k, v in an.PAPER_SMALL_LESION.items()},
            "hd95": {k: v["hd95"] for k, v in an.PAPER_SMALL_LESION.items()},
            "assd": {k: v["assd"] for k, v in an.PAPER_SMALL_LESION.items()},
            "contour_f1": {k: v["contour_f1"] for k, v in an.PAPER_SMALL_LESION.items()}}


def test_spread_on_paper_q1_table():
    spreads = an.spread_table(_aggregates({"Q1": PAPER_Q1})).set_index("metric")
    # top 3 by Dice: hybrid, attention, residual; Dice 0.742 - 0.734 = 0.008 (the paper's 4.6 Q1 Dice spread)
    assert spreads.loc["dice", "spread"] == pytest.approx(0.008)
    assert spreads.loc["dice", "top_models"] == "hybrid_transformer attention_unet resunet"
    # HD95 among them: (8.6 - 6.8) / 6.8 = 26.47 %; best residual, worst hybrid
    assert spreads.loc["hd95", "relative_spread_percent"] == pytest.approx(1.8 / 6.8 * 100)
    assert spreads.loc["hd95", "best"] == "resunet" and spreads.loc["hd95", "worst"] == "hybrid_transformer"
    # contour F1: best residual (higher is better), absolute spread 0.753 - 0.681 = 0.072
    assert spreads.loc["contour_f1", "best"] == "resunet"
    assert spreads.loc["contour_f1", "spread"] == pytest.approx(0.072)


def test_paper_tables_from_paper_numbers():
    agg = _aggregates({"Q1": PAPER_Q1})
    reversals = an.reversal_table(agg)
    counts = an.agreement_counts(reversals).set_index("metric")
    # all three top pairs reverse under each boundary metric; the Dice leader is third under HD95
    assert counts.loc["hd95", "agree"] == 0 and counts.loc["hd95", "comparisons"] == 3
    assert counts.loc["hd95", "dice_leader_third_or_worse"] == 1
    assert counts.loc["hd95", "paper_agree"] == 4 and counts.loc["hd95", "paper_comparisons"] == 9
    small = an.small_lesion_comparison(agg).set_index("model")
    # our values equal the paper's column by construction here
    assert (small["dice"] == small["paper_dice"]).all() and (small["hd95"] == small["paper_hd95"]).all()


def test_dataset_summary_total():
    table = an.dataset_summary(pd.DataFrame([
        {"dataset": "wmh", "source": "synthetic", "test_cases": 4, "lesions": 40, "q1_upper": 0.001},
        {"dataset": "idrid", "source": "synthetic", "test_cases": 3, "lesions": 30, "q1_upper": 0.003},
    ])).set_index("dataset")
    assert table.loc["total", "test_cases"] == 7 and table.loc["total", "lesions"] == 70
    assert table.loc["wmh", "q1_upper_percent"] == pytest.approx(0.1)
    assert table.loc["wmh", "paper_lesions"] == 1964 and table.loc["total", "paper_lesions"] == 5842
    assert np.isnan(table.loc["total", "q1_upper_percent"])  # no pooled bound given: not a mean of edges
    pooled = an.dataset_summary(pd.DataFrame([{"dataset": "wmh", "source": "s", "test_cases": 1, "lesions": 1,
                                               "q1_upper": 0.1}]), pooled_q1=0.012).set_index("dataset")
    assert pooled.loc["total", "q1_upper_percent"] == pytest.approx(1.2)


def test_pooled_q1_upper_counts_each_lesion_once():
    # lesions 0.01 and 0.02 (c0) and 0.02 (c1), each under two models: pooled once -> quantile 25 % of
    # [0.01, 0.02, 0.2] = 0.01 + 0.5 * 0.01 = 0.015 (linear), whatever the number of models
    assert an.pooled_q1_upper(_per_lesion()) == pytest.approx(0.015)


def test_paper_full_set_dice_and_q1_maxima():
    agg = pd.DataFrame([{"dataset": d, "stratum": "overall", "metric": "dice", "model": m, "value": v}
                        for d, vals in {"x": {"unet": 0.8, "resunet": 0.9}, "y": {"unet": 0.6, "resunet": 0.7}}.items()
                        for m, v in vals.items()])
    t = an.paper_full_set_dice(agg).set_index("model")
    assert t.loc["resunet", "dice_pooled"] == pytest.approx(0.8) and t.loc["unet", "dice_pooled"] == pytest.approx(0.7)
    assert t.loc["unet", "paper_dice_pooled"] == 0.836 and t.loc["resunet", "n_datasets"] == 2
    spreads = pd.DataFrame([
        {"dataset": "x", "lesion_set": "common", "stratum": "Q1", "metric": "hd95", "spread": 1.0,
         "relative_spread_percent": 20.0},
        {"dataset": "y", "lesion_set": "common", "stratum": "Q1", "metric": "hd95", "spread": 1.0,
         "relative_spread_percent": 30.0},
        {"dataset": "x", "lesion_set": "common", "stratum": "Q1", "metric": "lesion_recall", "spread": 0.05,
         "relative_spread_percent": 6.0}])
    spreads = pd.concat([spreads, pd.DataFrame([{"dataset": "z", "lesion_set": "common", "stratum": "Q1",
                                                 "metric": "hd95", "spread": 2.0, "relative_spread_percent": np.nan}])])
    m = an.paper_q1_maxima(spreads, agg).set_index("quantity")
    # z's undefined relative spread is named, not dropped silently
    assert m.loc["hd95_percent", "n_datasets"] == 2 and m.loc["hd95_percent", "datasets_undefined"] == "z"
    assert m.loc["hd95_percent", "ours_max"] == 30.0 and m.loc["hd95_percent", "dataset_of_max"] == "y"
    assert m.loc["hd95_percent", "paper"] == 41.3
    assert m.loc["lesion_recall_points", "ours_max"] == pytest.approx(5.0) and np.isnan(m.loc["assd_percent",
                                                                                              "ours_max"])


def test_spread_comparison_rows():
    agg = _aggregates({"overall": PAPER_Q1, "Q1": PAPER_Q1, "Q2": PAPER_Q1})
    comp = an.spread_comparison(an.spread_table(agg), an.reversal_table(agg))
    assert comp["setting"].tolist() == ["overall", "Q1"]  # Q2 is not a row of the paper's table 4.6
    assert comp["paper_hd95_spread_percent"].tolist() == [14.7, 41.3]


def test_an_undefined_relative_spread_ends_in_cannot_be_assessed_never_does_not_widen():
    # hand case: top-3 HD95 10/11/12 mm overall (relative spread (12 - 10) / 10 = 20 %), 0/2/3 mm in Q1 (the best
    # is 0: no denominator); Dice spreads 0.01 and 0.02; Kendall taus: one finite (0.5), one undefined (NaN)
    spreads = pd.DataFrame([
        {"dataset": "lits", "lesion_set": "common", "stratum": "overall", "metric": "hd95", "best": "a",
         "worst": "c", "spread": 2.0, "relative_spread_percent": 20.0},
        {"dataset": "lits", "lesion_set": "common", "stratum": "Q1", "metric": "hd95", "best": "a", "worst": "c",
         "spread": 3.0, "relative_spread_percent": np.nan},
        {"dataset": "lits", "lesion_set": "common", "stratum": "overall", "metric": "dice", "best": "a",
         "worst": "c", "spread": 0.01, "relative_spread_percent": 1.1},
        {"dataset": "lits", "lesion_set": "common", "stratum": "Q1", "metric": "dice", "best": "a", "worst": "c",
         "spread": 0.02, "relative_spread_percent": 2.6}])
    reversals = pd.DataFrame({"dataset": ["lits"] * 3, "lesion_set": ["common"] * 3,
                              "stratum": ["overall", "Q1", "Q1"], "kendall_tau": [1.0, 0.5, np.nan]})
    comp = an.spread_comparison(spreads, reversals).set_index("setting")
    assert comp.loc["overall", "hd95_spread_percent"] == 20.0 and comp.loc["overall", "hd95_spread_note"] == ""
    assert np.isnan(comp.loc["Q1", "hd95_spread_percent"]) and comp.loc["Q1", "hd95_spread_mm"] == 3.0
    assert comp.loc["Q1", "hd95_spread_note"].startswith("the best top model's HD95 is 0 mm: a relative spread has")
    assert comp.loc["Q1", "mean_kendall_tau"] == 0.5
    assert (comp.loc["Q1", "n_kendall_taus"], comp.loc["Q1", "n_kendall_metrics"]) == (1, 2)
    (line,) = an.findings(comp.reset_index(), pd.DataFrame(columns=["metric"]))
    assert "does not widen" not in line and "widens" not in line.replace("whether the boundary spread widens", "")
    assert line.startswith("**LiTS**: among the top models by Dice, the Dice spread is 0.010 on the full test set")
    assert "the absolute HD95 spread is 2.000 mm overall and 3.000 mm in Q1" in line
    assert "cannot be assessed: the relative spread is undefined in Q1 (the best top model's HD95 is 0 mm" in line


def test_select_qualitative_examples():
    pl = _per_lesion()
    # Only c0-1 is small and detected by both (c1-1 is missed by a); Dice 0.5 vs 0.6 -> range 0.1
    ex = an.select_qualitative_examples(pl, max_dice_range=0.05, n_examples=3)
    assert len(ex) == 1 and ex.iloc[0]["case_id"] == "c0" and ex.iloc[0]["lesion_id"] == 1
    assert ex.iloc[0]["dice_range"] == pytest.approx(0.1)


# ------------------------------------------------------------------------------------------------------ figures
def test_figures_draw(tmp_path):
    agg = _aggregates({s: PAPER_Q1 for s in ("overall", "Q1", "Q2", "Q3", "Q4")})
    spreads, reversals = an.spread_table(agg), an.reversal_table(agg)
    ax = figures.plot_overall_vs_small(spreads, metrics=("dice", "hd95", "assd", "contour_f1"))
    assert len(ax.patches) == 8  # 4 metrics x 2 settings
    axes = figures.plot_quartile_disagreement(spreads, reversals, metrics=("dice", "hd95"))
    assert len(axes[0].lines) == 2 and len(axes[1].lines) == 3 + 1  # 3 boundary metrics + the tau = 1 line
    same, total, _ = agreement_matrix(agg, metrics=["dice", "hd95", "contour_f1"])
    ax = figures.plot_reversal_matrix(same, total, title="d")
    assert ax.texts[1].get_text() == "0/5"  # Dice vs HD95: reversed in all five strata
    crop = {"image": np.zeros((8, 8)), "reference": np.pad(np.ones((3, 3), bool), 2)[:8, :8],
            "predictions": {"unet": np.pad(np.ones((3, 3), bool), 2)[:8, :8]}, "metrics": {"unet": {"dice": 1.0,
                                                                                                    "hd95": 0.0}},
            "title": "x"}
    ax = figures.plot_lesion_example(crop)
    assert "Dice 1.00" in ax.get_title()
    plt.close("all")


# ------------------------------------------------------------------------------------------ sensitivity analyses
def test_metric_variants_means_and_ranks():
    pc = pd.DataFrame([
        {"dataset": "d", "model": m, "case_id": c, "metric": metric, "value": v, "penalty": False}
        for m, c, metric, v in [
            ("a", "c0", "hd95", 2.0), ("a", "c1", "hd95", 4.0), ("b", "c0", "hd95", 3.0), ("b", "c1", "hd95", 5.0),
            ("a", "c0", "hd95_pooled", 6.0), ("a", "c1", "hd95_pooled", 6.0),
            ("b", "c0", "hd95_pooled", 1.0), ("b", "c1", "hd95_pooled", 1.0),
        ]])
    t = an.metric_variants(pc, ["hd95", "hd95_pooled"], analysis="HD95").set_index(["variant", "model"])
    # directed max: a 3.0 < b 4.0 -> a first; pooled: b 1.0 < a 6.0 -> b first (lower is better for both)
    assert t.loc[("hd95", "a"), "value"] == 3.0 and t.loc[("hd95", "a"), "rank"] == 1
    assert t.loc[("hd95_pooled", "b"), "rank"] == 1 and t.loc[("hd95_pooled", "a"), "rank"] == 2
    assert t.loc[("hd95", "b"), "n"] == 2
    with pytest.raises(ValueError, match="per_case has none of the metrics"):
        an.metric_variants(pc, ["nsd"], analysis="x")


def test_contour_f1_tolerance_variant_uses_higher_is_better():
    pc = pd.DataFrame([{"dataset": "d", "model": m, "case_id": "c0", "metric": "contour_f1_tol2", "value": v,
                        "penalty": False} for m, v in [("a", 0.9), ("b", 0.5)]])
    t = an.metric_variants(pc, ["contour_f1_tol2"], analysis="tol").set_index("model")
    assert t.loc["a", "rank"] == 1


def test_recall_at_thresholds():
    pl = _per_lesion().assign(overlap_voxels=0)
    # give model b's three lesions overlaps of 1, 4 and 6 voxels
    for lid, case, ov in [(1, "c0", 1), (2, "c0", 4), (1, "c1", 6)]:
        pl.loc[(pl["model"] == "b") & (pl["case_id"] == case) & (pl["lesion_id"] == lid), "overlap_voxels"] = ov
    r = an.recall_at_thresholds(pl, [1, 5]).set_index(["stratum", "model", "min_overlap"])
    assert r.loc[("all_lesions", "b", 1), "recall"] == 1.0
    # from 5 voxels on only the c1 lesion (6 voxels) counts: 1 of 3 overall, 1 of 2 in Q1
    assert r.loc[("all_lesions", "b", 5), "recall"] == pytest.approx(1 / 3)
    assert r.loc[("Q1", "b", 5), "recall"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="thresholds must be integers >= 1"):
        an.recall_at_thresholds(pl, [0])


def test_lesion_set_comparison_side_by_side():
    t = an.lesion_set_comparison(_per_case(), _per_lesion(), metrics=("dice",), min_lesions=1).set_index(
        ["model", "lesion_set"])
    # Q1 Dice of a: all lesions (0.5 + 0) / 2 with one missed; its own detected 0.5 from one lesion; common set
    # (c0-1 only: a missed c1-1) 0.5 from one lesion, and b on the same lesion 0.6
    assert t.loc[("a", "all_with_penalty"), "value"] == pytest.approx(0.25)
    assert t.loc[("a", "all_with_penalty"), "n"] == 2 and t.loc[("a", "all_with_penalty"), "n_missed"] == 1
    assert t.loc[("a", "detected_by_model"), "value"] == pytest.approx(0.5)
    assert t.loc[("b", "detected_by_model"), "n"] == 2
    assert t.loc[("a", "common"), "n"] == 1 and t.loc[("b", "common"), "n"] == 1
    assert t.loc[("b", "common"), "value"] == pytest.approx(0.6)


def test_collect_and_dataset_summaries(tmp_path):
    from helpers.base.io import write_csv, write_json
    from helpers.base.paths import Workspace

    ws = Workspace.at(tmp_path)
    write_csv(pd.DataFrame({"dataset": ["wmh"], "value": [1.0]}), ws.results("wmh") / "x.csv")
    write_csv(pd.DataFrame({"dataset": ["lits"], "value": [2.0]}), ws.results("lits") / "x.csv")
    assert an.collect(ws, ["wmh", "lits"], "x.csv")["value"].tolist() == [1.0, 2.0]
    with pytest.raises(FileNotFoundError, match="idrid/x.csv: not found"):
        an.collect(ws, ["idrid"], "x.csv")
    write_json({"edges": {"q1_upper": 0.01, "q2_upper": 0.02, "q3_upper": 0.03}, "n_cases": 5,
                "n_reference_lesions": 50}, ws.results("wmh") / "quartile_edges.json")
    write_json({"source": "synthetic"}, ws.results("wmh") / "data_manifest.json")
    assert an.dataset_summaries(ws, ["wmh"]).to_dict("records") == [
        {"dataset": "wmh", "source": "synthetic", "test_cases": 5, "lesions": 50, "q1_upper": 0.01}]


def test_multi_panel_figures():
    agg = pd.concat([_aggregates({s: PAPER_Q1 for s in ("overall", "Q1")}).assign(dataset=d) for d in ("x", "y")])
    axes = figures.plot_reversal_matrices(agg)
    assert [a.get_title() for a in axes] == ["x: identical model orders (common)",
                                             "y: identical model orders (common)"]
    crop = {"image": np.zeros((8, 8, 3), np.uint8), "reference": np.pad(np.ones((2, 2), bool), 3),
            "predictions": {"unet": np.pad(np.ones((2, 2), bool), 3), "resunet": np.pad(np.ones((3, 3), bool), 2)[:8,
                                                                                                                :8]},
            "metrics": {}, "title": "t"}
    axes = figures.plot_lesion_examples([crop, crop])
    assert len(axes) == 2 and len(axes[0].figure.legends) == 1
    plt.close("all")


def test_qualitative_figure_without_examples():
    axes = figures.plot_lesion_examples([])
    assert "no small (Q1) lesion" in axes[0].texts[0].get_text()
    plt.close("all")


def test_stack_figures(tmp_path):
    from helpers.base.io import save_figure

    fig, ax = plt.subplots(figsize=(2, 1))
    save_figure(fig, tmp_path / "a.png")
    axes = figures.stack_figures([tmp_path / "a.png", tmp_path / "a.png"])
    assert len(axes) == 2 and len(axes[0].images) == 1
    with pytest.raises(FileNotFoundError, match="b.png: figure not found"):
        figures.stack_figures([tmp_path / "b.png"])
    plt.close("all")


def test_findings_state_the_numbers_and_whether_the_pattern_holds():
    from helpers import analysis

    pattern = pd.DataFrame([
        # dataset a: HD95 spread widens from 10 % to 40 % in Q1; dataset b: it shrinks
        {"dataset": "a", "setting": "overall", "dice_spread": 0.009, "hd95_spread_percent": 10.0},
        {"dataset": "a", "setting": "Q1", "dice_spread": 0.008, "hd95_spread_percent": 40.0},
        {"dataset": "b", "setting": "overall", "dice_spread": 0.02, "hd95_spread_percent": 30.0},
        {"dataset": "b", "setting": "Q1", "dice_spread": 0.05, "hd95_spread_percent": 5.0},
    ])
    agreement = pd.DataFrame([{"lesion_set": "common", "stratum": "Q1", "metric": "hd95", "agree": 2,
                               "disagree": 2, "not_comparable": 2, "comparable": 4, "comparisons": 6,
                               "paper_agree": 4, "paper_comparisons": 9, "dice_leader_third_or_worse": 1,
                               "datasets": 2, "datasets_not_ranked": 0}])
    robust = pd.DataFrame({"stratum": ["Q1", "Q1", "Q1", "overall"],
                           "verdict": ["sign kept, Holm p <= 0.05", "sign kept, Holm p <= 0.05",
                                       "sign not stable (< 95 %)", "sign kept, Holm p <= 0.05"]})
    lines = analysis.findings(pattern, agreement, robust, pd.DataFrame({"dataset": ["a", "b"], "n": [7, 0]}))
    unranked = analysis.findings(pattern[pattern["setting"] == "overall"], agreement.iloc[:0])
    assert unranked[0] == ("**a**: no spread among the top models in Q1: too few lesions in the common set to rank "
                           "the models there.")
    # a registered dataset is shown by its display name, never its key upper-cased
    lits = analysis.findings(pattern[pattern["setting"] == "overall"].assign(dataset="lits"), agreement.iloc[:0])
    assert lits[0].startswith("**LiTS**: no spread")
    assert lines[0].startswith("**a**") and "0.009 on the full test set and 0.008 in Q1" in lines[0]
    assert "10.0 % overall and 40.0 % in Q1" in lines[0] and "spread widens" in lines[0]
    assert "does not widen" in lines[1]
    assert "alike in 2 of 4 comparable pairs in Q1 (common lesion set; 2 pairs tied" in lines[2]
    assert "paper: 4 of 9" in lines[2]
    assert "third or worse under hd95 in 1 of 2 datasets (paper: 2 of 3" in lines[2]
    assert lines[3] == ("Q1 lesions detected by every model (the common set the boundary comparison rests on): "
                        "a 7, b 0.")
    assert lines[4].endswith('(3 comparisons, Holm-adjusted within each dataset): 2 "sign kept, Holm p <= 0.05"; '
                             '1 "sign not stable (< 95 %)".')


def test_seed_spread_and_rankings():
    rows = []
    # two seeds; Dice a/b: seed 0 0.8/0.7, seed 1 0.6/0.9 -> a's mean 0.7, range 0.2; the order flips
    for seed, (va, vb) in {0: (0.8, 0.7), 1: (0.6, 0.9)}.items():
        for model, v in (("a", va), ("b", vb)):
            rows.append({"dataset": "d", "lesion_set": "common", "stratum": "Q1", "model": model, "metric": "dice",
                         "value": v, "seed": seed, "rankable": True})
    agg = pd.DataFrame(rows)
    spread = an.seed_spread(agg).set_index("model")
    assert spread.loc["a", "value_mean"] == pytest.approx(0.7) and spread.loc["a", "value_range"] == pytest.approx(0.2)
    assert spread.loc["a", "value_sd"] == pytest.approx(np.std([0.8, 0.6], ddof=1)) and spread.loc["a", "n_seeds"] == 2
    ranks = an.seed_rankings(agg).set_index("seed")
    assert ranks.loc[0, "order"] == "a > b" and ranks.loc[1, "order"] == "b > a"
    assert (ranks["n_orders"] == 2).all()


def test_reversal_guard_with_duplicate_index_after_concat():
    # aggregates read from two CSVs and concatenated keep duplicate index labels; the guard must still find
    # exactly the rows that are not rankable
    pc, pl = _three_models()
    agg = an.aggregate(an.analysis_units(pc, pl, lesion_set="common"), min_lesions=2)
    overall, rest = agg[agg["stratum"] == "overall"], agg[agg["stratum"] != "overall"]
    stacked = pd.concat([overall.reset_index(drop=True), rest.reset_index(drop=True)])
    assert stacked.index.has_duplicates
    rev = an.reversal_table(stacked, metrics=("hd95",)).set_index("stratum")
    assert rev.loc["Q4", "note"] == "common set: 1 lesion(s) < minimum 2, not ranked"
    assert rev.loc["Q1", "order_dice"] == "a > b > c"


def test_common_lesions_match_a_plain_loop_on_random_tables():
    # Independent reference: a lesion is common when, for every model, its "detected" row says True.
    rng = np.random.default_rng(4)
    rows = []
    for model in ("a", "b", "c", "d"):
        for case in range(6):
            for lid in range(1, 6):
                rows.append({"dataset": "d", "model": model, "case_id": f"c{case}", "lesion_id": lid,
                             "kind": "lesion", "detected": bool(rng.random() < 0.8), "area_fraction": 0.01,
                             "quartile": "Q1", "metric": "detected", "value": np.nan, "penalty": False})
    pl = pd.DataFrame(rows)
    expected = set()
    for case in range(6):
        for lid in range(1, 6):
            sel = pl[(pl["case_id"] == f"c{case}") & (pl["lesion_id"] == lid)]
            if all(sel.loc[sel["model"] == m, "detected"].iloc[0] for m in ("a", "b", "c", "d")):
                expected.add((f"c{case}", lid))
    got = an.common_lesions(pl)
    assert set(zip(got["case_id"], got["lesion_id"])) == expected and 0 < len(expected) < 30
    # restricting the compared models can only enlarge the set
    assert len(an.common_lesions(pl, models=["a", "b"])) >= len(expected)


def test_detected_by_model_is_not_ranked_on_part_of_its_models():
    # Q1 under detected_by_model: a and b detected 6 lesions each, c (the weakest detector) only 2 < 5. The
    # comparison is not rankable as a whole: no order, no spread, and the note says why (before: a and b were
    # ranked as if c did not exist, so the dataset counted both as ranked and as not ranked).
    rows = []
    for model, n, dice, hd in (("a", 6, 0.80, 2.0), ("b", 6, 0.78, 1.5), ("c", 2, 0.70, 1.0)):
        for metric, value in (("dice", dice), ("hd95", hd)):
            rankable = n >= 5
            rows.append({"dataset": "d", "lesion_set": "detected_by_model", "stratum": "Q1", "model": model,
                         "metric": metric, "value": value, "n": n, "rankable": rankable,
                         "note": "" if rankable else f"detected_by_model set: {n} lesion(s) < minimum 5, not ranked"})
    agg = pd.DataFrame(rows)
    assert an.rankable_rows(agg).empty
    rev = an.reversal_table(agg, metrics=("hd95",), lesion_set=None)
    assert len(rev) == 1 and ("order_dice" not in rev or pd.isna(rev.loc[0, "order_dice"]))
    assert rev.loc[0, "note"] == "detected_by_model set: 2 lesion(s) < minimum 5, not ranked"
    assert an.spread_table(agg, lesion_set=None).empty
