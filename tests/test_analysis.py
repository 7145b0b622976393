"""Tests of helpers.analysis on hand-built tables."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from helpers import analysis as an  # noqa: E402
from helpers.ranking import agreement_matrix  # noqa: E402


# ----------------------------------------------------------------------------------------------------- quartiles
def test_quartile_edges_known_sizes():
    # Sizes 1..8 (of 100): numpy linear quantiles at 25/50/75 % are 1 + 7*q -> 2.75, 4.5, 6.25.
    np.testing.assert_allclose(an.quartile_edges(np.arange(1, 9) / 100), [0.0275, 0.045, 0.0625])


def test_assign_quartiles_upper_edges_inclusive():
    edges = [0.0275, 0.045, 0.0625]
    sizes = np.arange(1, 9) / 100
    # 0.01, 0.02 <= 0.0275 -> Q1; 0.03, 0.04 -> Q2; 0.05, 0.06 -> Q3; 0.07, 0.08 -> Q4: two per quartile
    assert an.assign_quartiles(sizes, edges).tolist() == ["Q1", "Q1", "Q2", "Q2", "Q3", "Q3", "Q4", "Q4"]
    # a value equal to an edge belongs to the lower quartile
    assert an.assign_quartiles([0.045], edges).tolist() == ["Q2"]
    assert an.assign_quartiles([np.nan], edges).tolist() == [""]


def test_quartiles_balanced_property():
    rng = np.random.default_rng(0)
    sizes = rng.random(400) * 0.1
    labels = an.assign_quartiles(sizes, an.quartile_edges(sizes))
    counts = pd.Series(labels).value_counts()
    assert counts.to_dict() == {"Q1": 100, "Q2": 100, "Q3": 100, "Q4": 100}


def test_quartile_errors():
    with pytest.raises(ValueError, match="no finite value"):
        an.quartile_edges([np.nan])
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        an.quartile_edges([0.5, 2.0])
    with pytest.raises(ValueError, match="edges must be 3 finite non-decreasing"):
        an.assign_quartiles([0.1], [0.3, 0.2, 0.4])


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
                             "metric": metric, "value": v, "penalty": missed and metric != "detected"})
    rows.append({"dataset": "d", "model": "a", "case_id": "c0", "lesion_id": 3, "kind": "false_positive",
                 "detected": np.nan, "n_voxels": 2, "area_fraction": 0.005, "quartile": "Q1",
                 "metric": "false_positive", "value": 1.0, "penalty": False})
    return pd.DataFrame(rows)


def _agg(policy="penalty"):
    units = an.analysis_units(_per_case(), _per_lesion(), policy=policy)
    return an.aggregate(units).set_index(["stratum", "model", "metric"])


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
    # Q1 lesions of a: c0-1 Dice 0.5 and c1-1 missed (Dice 0, penalty) -> 0.25, n 2, n_penalty 1
    row = agg.loc[("Q1", "a", "dice")]
    assert row["value"] == pytest.approx(0.25) and row["n"] == 2 and row["n_penalty"] == 1 and row["n_cases"] == 2
    assert agg.loc[("Q1", "a", "lesion_recall"), "value"] == pytest.approx(0.5)
    assert agg.loc[("Q1", "b", "lesion_recall"), "value"] == pytest.approx(1.0)
    # all lesions of a: (0.5 + 0.9 + 0) / 3 pooled; case means c0 0.7, c1 0 -> 0.35
    assert agg.loc[("all_lesions", "a", "dice"), "value"] == pytest.approx(1.4 / 3)
    assert agg.loc[("all_lesions", "a", "dice"), "value_case_mean"] == pytest.approx(0.35)
    # the false positive (area 0.005) is binned by its own size into Q1: 1 FP over 2 cases
    assert agg.loc[("Q1", "a", "fp_lesions_per_case"), "value"] == pytest.approx(0.5)
    assert agg.loc[("Q4", "a", "fp_lesions_per_case"), "value"] == 0.0


def test_detected_only_policy_drops_missed_lesions():
    agg = _agg("detected_only")
    row = agg.loc[("Q1", "a", "dice")]
    assert row["value"] == pytest.approx(0.5) and row["n"] == 1 and row["n_penalty"] == 0
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
    with pytest.raises(ValueError, match="policy must be one of"):
        an.analysis_units(_per_case(), _per_lesion(), policy="drop")


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
    table = an.dataset_summary([
        {"dataset": "wmh", "source": "synthetic", "test_cases": 4, "lesions": 40, "q1_upper": 0.001},
        {"dataset": "idrid", "source": "synthetic", "test_cases": 3, "lesions": 30, "q1_upper": 0.003},
    ]).set_index("dataset")
    assert table.loc["total", "test_cases"] == 7 and table.loc["total", "lesions"] == 70
    assert table.loc["wmh", "q1_upper_percent"] == pytest.approx(0.1)
    assert table.loc["wmh", "paper_lesions"] == 1964 and table.loc["total", "paper_lesions"] == 5842


def test_spread_comparison_rows():
    agg = _aggregates({"overall": PAPER_Q1, "Q1": PAPER_Q1, "Q2": PAPER_Q1})
    comp = an.spread_comparison(an.spread_table(agg), an.reversal_table(agg))
    assert comp["setting"].tolist() == ["overall", "Q1"]  # Q2 is not a row of the paper's table 4.6
    assert comp["paper_hd95_spread_percent"].tolist() == [14.7, 41.3]


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
    ax = an.plot_overall_vs_small(spreads, metrics=("dice", "hd95", "assd", "contour_f1"))
    assert len(ax.patches) == 8  # 4 metrics x 2 settings
    axes = an.plot_quartile_disagreement(spreads, reversals, metrics=("dice", "hd95"))
    assert len(axes[0].lines) == 2 and len(axes[1].lines) == 3 + 1  # 3 boundary metrics + the tau = 1 line
    same, total = agreement_matrix(agg, metrics=["dice", "hd95", "contour_f1"])
    ax = an.plot_reversal_matrix(same, total, title="d")
    assert ax.texts[1].get_text() == "0/5"  # Dice vs HD95: reversed in all five strata
    crop = {"image": np.zeros((8, 8)), "reference": np.pad(np.ones((3, 3), bool), 2)[:8, :8],
            "predictions": {"unet": np.pad(np.ones((3, 3), bool), 2)[:8, :8]}, "metrics": {"unet": {"dice": 1.0,
                                                                                                    "hd95": 0.0}},
            "title": "x"}
    ax = an.plot_lesion_example(crop)
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


def test_policy_comparison_side_by_side():
    t = an.policy_comparison(_per_case(), _per_lesion(), metrics=("dice",)).set_index(["model", "policy"])
    # Q1 Dice of a: with the missed lesion (0.5 + 0) / 2, one penalty value; detected only 0.5 from one lesion
    assert t.loc[("a", "penalty"), "value"] == pytest.approx(0.25)
    assert t.loc[("a", "penalty"), "n"] == 2 and t.loc[("a", "penalty"), "n_penalty"] == 1
    assert t.loc[("a", "detected_only"), "value"] == pytest.approx(0.5)
    assert t.loc[("a", "detected_only"), "n"] == 1 and t.loc[("a", "detected_only"), "n_penalty"] == 0


def test_collect_and_dataset_summaries(tmp_path):
    from helpers.io import write_csv, write_json
    from helpers.paths import Workspace

    ws = Workspace.at(tmp_path)
    write_csv(pd.DataFrame({"dataset": ["wmh"], "value": [1.0]}), ws.results("wmh") / "x.csv")
    write_csv(pd.DataFrame({"dataset": ["lits"], "value": [2.0]}), ws.results("lits") / "x.csv")
    assert an.collect(ws, ["wmh", "lits"], "x.csv")["value"].tolist() == [1.0, 2.0]
    with pytest.raises(FileNotFoundError, match="idrid/x.csv: not found"):
        an.collect(ws, ["idrid"], "x.csv")
    write_json({"edges": {"q1_upper": 0.01, "q2_upper": 0.02, "q3_upper": 0.03}, "n_cases": 5,
                "n_reference_lesions": 50}, ws.results("wmh") / "quartile_edges.json")
    write_json({"source": "synthetic"}, ws.results("wmh") / "data_manifest.json")
    assert an.dataset_summaries(ws, ["wmh"]) == [{"dataset": "wmh", "source": "synthetic", "test_cases": 5,
                                                  "lesions": 50, "q1_upper": 0.01}]


def test_multi_panel_figures():
    agg = pd.concat([_aggregates({s: PAPER_Q1 for s in ("overall", "Q1")}).assign(dataset=d) for d in ("x", "y")])
    axes = an.plot_reversal_matrices(agg)
    assert [a.get_title() for a in axes] == ["x: identical model orders", "y: identical model orders"]
    crop = {"image": np.zeros((8, 8, 3), np.uint8), "reference": np.pad(np.ones((2, 2), bool), 3),
            "predictions": {"unet": np.pad(np.ones((2, 2), bool), 3), "resunet": np.pad(np.ones((3, 3), bool), 2)[:8,
                                                                                                                :8]},
            "metrics": {}, "title": "t"}
    axes = an.plot_lesion_examples([crop, crop])
    assert len(axes) == 2 and len(axes[0].figure.legends) == 1
    plt.close("all")


def test_with_quartile_bounds():
    t = an.with_quartile_bounds(pd.DataFrame({"stratum": ["Q1", "Q3", "all_lesions"]}), [0.1, 0.2, 0.3])
    assert t["area_fraction_above"].tolist()[:2] == [0.0, 0.2] and t["area_fraction_upto"].tolist()[:2] == [0.1, 0.3]
    assert np.isnan(t["area_fraction_upto"].iloc[2])
    with pytest.raises(ValueError, match="edges must be 3 values"):
        an.with_quartile_bounds(t, [0.1])


def test_qualitative_figure_without_examples():
    axes = an.plot_lesion_examples([])
    assert "no small (Q1) lesion" in axes[0].texts[0].get_text()
    plt.close("all")


def test_stack_figures(tmp_path):
    from helpers.io import save_figure

    fig, ax = plt.subplots(figsize=(2, 1))
    save_figure(fig, tmp_path / "a.png")
    axes = an.stack_figures([tmp_path / "a.png", tmp_path / "a.png"])
    assert len(axes) == 2 and len(axes[0].images) == 1
    with pytest.raises(FileNotFoundError, match="b.png: figure not found"):
        an.stack_figures([tmp_path / "b.png"])
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
    agreement = pd.DataFrame([{"stratum": "Q1", "metric": "hd95", "agree": 2, "comparisons": 6, "paper_agree": 4,
                               "paper_comparisons": 9, "dice_leader_third_or_worse": 1, "datasets": 2}])
    robust = pd.DataFrame({"stratum": ["Q1", "Q1", "Q1", "overall"],
                           "verdict": ["robust", "robust", "not distinguishable", "robust"]})
    lines = analysis.findings(pattern, agreement, robust)
    assert lines[0].startswith("**A**") and "0.009 on the full test set and 0.008 in Q1" in lines[0]
    assert "10.0 % overall and 40.0 % in Q1" in lines[0] and "spread widens" in lines[0]
    assert "does not widen" in lines[1]
    assert "alike in 2 of 6 comparisons in Q1 (paper: 4 of 9)" in lines[2]
    assert "third or worse under hd95 in 1 of 2 datasets (paper: 2 of 3" in lines[2]
    assert lines[3].endswith("(3 comparisons): 2 robust, 1 not distinguishable.")
