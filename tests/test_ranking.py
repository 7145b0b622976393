"""Tests of helpers.stats.ranking on hand-built tables."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from helpers.metrics import higher_is_better
from helpers.stats import ranking
from helpers.stats.ranking import (
    agreement_matrix, compare_orders, kendall_tau, model_order, pairwise_agreement, rank_models,
)


def _long(dataset, stratum, values):
    """values: {metric: {model: value}} -> long aggregate table."""
    return pd.DataFrame(
        [
            {"dataset": dataset, "stratum": stratum, "model": m, "metric": metric, "value": v}
            for metric, per_model in values.items()
            for m, v in per_model.items()
        ]
    )


def test_rank_higher_is_better():
    # Dice: 0.9 best, 0.8 second, 0.7 third.
    r = rank_models({"a": 0.8, "b": 0.9, "c": 0.7}, metric="dice")
    assert r.to_dict() == {"b": 1.0, "a": 2.0, "c": 3.0}


def test_rank_lower_is_better():
    # HD95: the smallest distance is best.
    r = rank_models({"a": 8.6, "b": 7.1, "c": 6.8, "d": 9.5}, metric="hd95")
    assert list(r.index) == ["c", "b", "a", "d"]
    assert model_order({"a": 8.6, "b": 7.1, "c": 6.8, "d": 9.5}, metric="hd95") == "c > b > a > d"


def test_rank_ties_share_average_rank():
    # a and c tie for second/third place: both get (2 + 3) / 2 = 2.5.
    r = rank_models({"a": 0.8, "b": 0.9, "c": 0.8}, metric="dice")
    assert r.to_dict() == {"b": 1.0, "a": 2.5, "c": 2.5}
    assert model_order({"c": 0.8, "b": 0.9, "a": 0.8}, metric="dice") == "b > a = c"


def test_rank_nan_is_left_out():
    r = rank_models({"a": 0.8, "b": np.nan}, metric="dice")
    assert r.to_dict() == {"a": 1.0}


def test_unknown_metric_direction_raises():
    with pytest.raises(ValueError, match="metric 'volume_error' has no direction"):
        rank_models({"a": 1.0}, metric="volume_error")
    ranks = rank_models({"a": 1.0, "b": 2.0}, metric="volume_error", directions={"volume_error": "lower"})
    assert ranks.index[0] == "a"
    with pytest.raises(ValueError, match="must be 'higher' or 'lower'"):
        higher_is_better("x", {"x": "up"})


def test_scores_type_checked():
    with pytest.raises(TypeError, match="scores must be a pandas Series or a mapping"):
        rank_models([0.1, 0.2], metric="dice")


def test_kendall_tau_identical_and_reversed():
    a = rank_models({"a": 4, "b": 3, "c": 2, "d": 1}, metric="dice")
    same = rank_models({"a": 1, "b": 2, "c": 3, "d": 4}, metric="hd95")  # lower is better: same order
    reversed_ = rank_models({"a": 4, "b": 3, "c": 2, "d": 1}, metric="hd95")  # lower is better: reversed
    assert kendall_tau(a, same) == 1.0
    assert kendall_tau(a, reversed_) == -1.0


def test_kendall_tau_one_swap_of_four():
    # Orders a>b>c>d vs b>a>c>d: 6 pairs, 5 concordant, 1 discordant -> tau = (5 - 1) / 6 = 2/3.
    a = pd.Series({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0})
    b = pd.Series({"b": 1.0, "a": 2.0, "c": 3.0, "d": 4.0})
    assert kendall_tau(a, b) == pytest.approx(2 / 3)


def test_kendall_tau_matches_scipy_with_ties():
    rng = np.random.default_rng(3)
    for _ in range(50):
        x = rng.integers(0, 3, size=6).astype(float)
        y = rng.integers(0, 3, size=6).astype(float)
        models = list("abcdef")
        ra, rb = pd.Series(x, index=models), pd.Series(y, index=models)
        expected = stats.kendalltau(x, y).statistic  # tau-b
        got = kendall_tau(ra, rb)
        if np.isnan(expected):
            assert np.isnan(got)
        else:
            assert got == pytest.approx(expected, abs=1e-12)


def test_kendall_tau_undefined_for_one_model_or_constant():
    assert np.isnan(kendall_tau(pd.Series({"a": 1.0}), pd.Series({"a": 1.0})))
    assert np.isnan(kendall_tau(pd.Series({"a": 1.0, "b": 1.0}), pd.Series({"a": 1.0, "b": 2.0})))


def test_pairwise_agreement_counts():
    # Top 3 under Dice: a, b, c. HD95 order: c > b > a. Pairs (a,b), (a,c), (b,c) all reversed -> 0 of 3.
    r_dice = pd.Series({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0})
    r_hd = pd.Series({"c": 1.0, "b": 2.0, "a": 3.0, "d": 4.0})
    assert tuple(pairwise_agreement(r_dice, r_hd, ["a", "b", "c"])) == (0, 3, 0)
    assert tuple(pairwise_agreement(r_dice, r_dice)) == (6, 0, 0)


def test_ties_are_not_agreement():
    # Every model tied under HD95 (equal penalty means): no pair is comparable, none agrees.
    r_dice = pd.Series({"a": 1.0, "b": 2.0, "c": 3.0})
    r_tied = pd.Series({"a": 2.0, "b": 2.0, "c": 2.0})
    counts = pairwise_agreement(r_dice, r_tied)
    assert tuple(counts) == (0, 0, 3) and counts.comparable == 0 and counts.pairs == 3
    # Tied under the *reference* (Dice) is not comparable either: (a, b) tied; (a, c), (b, c) ordered alike.
    counts = pairwise_agreement(pd.Series({"a": 1.5, "b": 1.5, "c": 3.0}), pd.Series({"a": 1.0, "b": 2.0, "c": 3.0}))
    assert tuple(counts) == (2, 0, 1) and counts.comparable == 2


def test_compare_orders_counts_tied_pairs_apart():
    # Dice a > b > c; HD95 all equal (328.792 for every model, as a penalty-dominated Q1 mean).
    table = _long("d", "Q1", {"dice": {"a": 0.9, "b": 0.8, "c": 0.7}, "hd95": {"a": 328.792, "b": 328.792,
                                                                               "c": 328.792}})
    row = compare_orders(table, metrics=("hd95",)).iloc[0]
    assert (row["top_pairs_agree"], row["top_pairs_disagree"], row["top_pairs_not_comparable"]) == (0, 0, 3)
    assert row["top_pairs_comparable"] == 0 and row["top_pairs"] == 3
    assert (row["pairs_comparable"], row["pairs_not_comparable"]) == (0, 3)


def test_compare_orders_paper_q1_table():
    # The paper's Q1 table (section 4.2): hybrid leads Dice; residual leads HD95, ASD and contour F1.
    table = _long(
        "paper",
        "Q1",
        {
            "dice": {"hybrid": 0.742, "attention": 0.739, "residual": 0.734, "unet": 0.721},
            "hd95": {"hybrid": 8.6, "attention": 7.1, "residual": 6.8, "unet": 9.5},
            "contour_f1": {"hybrid": 0.681, "attention": 0.742, "residual": 0.753, "unet": 0.648},
        },
    )
    out = compare_orders(table, metrics=("hd95", "contour_f1")).set_index("metric")
    assert out.loc["hd95", "order_dice"] == "hybrid > attention > residual > unet"
    assert out.loc["hd95", "order_metric"] == "residual > attention > hybrid > unet"
    assert bool(out.loc["hd95", "order_changed"])
    assert out.loc["hd95", "leader"] == "hybrid"
    assert not bool(out.loc["hd95", "leader_leads_metric"])
    assert out.loc["hd95", "leader_rank_in_metric"] == 3.0
    # Ranks (dice, hd95): hybrid (1,3), attention (2,2), residual (3,1), unet (4,4).
    # Pairs: h-a D, h-r D, h-u C, a-r D, a-u C, r-u C -> tau = (3 - 3) / 6 = 0.
    assert out.loc["hd95", "kendall_tau"] == pytest.approx(0.0)
    # Top 3 under Dice (hybrid, attention, residual): all three pairs reversed under HD95.
    assert (out.loc["hd95", "top_pairs_agree"], out.loc["hd95", "top_pairs"]) == (0, 3)
    assert out.loc["hd95", "top_pairs_comparable"] == 3 and out.loc["hd95", "pairs_comparable"] == 6
    assert out.loc["contour_f1", "order_metric"] == "residual > attention > hybrid > unet"


def test_compare_orders_no_change():
    table = _long("d", "overall", {"dice": {"a": 0.9, "b": 0.8}, "hd95": {"a": 1.0, "b": 2.0}})
    row = compare_orders(table, metrics=("hd95",)).iloc[0]
    assert not row["order_changed"]
    assert row["kendall_tau"] == 1.0
    assert row["leader_leads_metric"]
    assert row["leader_rank_in_metric"] == 1.0


def test_compare_orders_tie_under_metric_changes_order():
    # Dice a > b, HD95 tie: the order string changes from "a > b" to "a = b", tau-b is NaN (constant ranking).
    table = _long("d", "Q1", {"dice": {"a": 0.9, "b": 0.8}, "hd95": {"a": 2.0, "b": 2.0}})
    row = compare_orders(table, metrics=("hd95",)).iloc[0]
    assert row["order_metric"] == "a = b"
    assert row["order_changed"]
    assert np.isnan(row["kendall_tau"])
    assert row["leader_leads_metric"]  # tied for the best rank
    assert row["leader_rank_in_metric"] == 1.5


def test_compare_orders_missing_model_counted():
    table = _long("d", "Q1", {"dice": {"a": 0.9, "b": 0.8, "c": 0.7}, "hd95": {"a": 2.0, "b": 1.0, "c": np.nan}})
    row = compare_orders(table, metrics=("hd95",)).iloc[0]
    assert row["n_models"] == 2 and row["n_missing"] == 1


def test_compare_orders_validates():
    with pytest.raises(ValueError, match="aggregates lacks columns"):
        compare_orders(pd.DataFrame({"model": [], "value": []}))
    with pytest.raises(ValueError, match="top_k must be an integer >= 2"):
        compare_orders(_long("d", "Q1", {"dice": {"a": 1.0}}), top_k=1)


def test_agreement_matrix_counts_groups():
    t1 = _long("d1", "Q1", {"dice": {"a": 0.9, "b": 0.8}, "hd95": {"a": 1.0, "b": 2.0}})  # agree
    t2 = _long("d2", "Q1", {"dice": {"a": 0.9, "b": 0.8}, "hd95": {"a": 3.0, "b": 2.0}})  # reversed
    t3 = _long("d3", "Q1", {"dice": {"a": 0.9, "b": 0.8}, "hd95": {"a": 2.0, "b": 2.0}})  # tied: not comparable
    same, total, tied = agreement_matrix(pd.concat([t1, t2, t3]), metrics=["dice", "hd95"])
    assert same.loc["dice", "hd95"] == 1 and total.loc["dice", "hd95"] == 2 and tied.loc["dice", "hd95"] == 1
    assert same.loc["dice", "dice"] == 3 and tied.loc["dice", "dice"] == 0
    assert tied.loc["hd95", "hd95"] == 1  # a tie is not agreement, even of a metric with itself
    assert (same.to_numpy() == same.to_numpy().T).all()


# ----------------------------------------------------------------------------------------------------------
# Ranks within units and rank volatility
# ----------------------------------------------------------------------------------------------------------




def test_rank_rows_average_ties_and_direction():
    assert ranking.rank_rows([0.9, 0.9, 0.5], higher_is_better=True).tolist() == [1.5, 1.5, 3.0]
    assert ranking.rank_rows([0.9, 0.9, 0.5], higher_is_better=False).tolist() == [2.5, 2.5, 1.0]
    with pytest.raises(ValueError, match="NaN"):
        ranking.rank_rows([0.1, np.nan], higher_is_better=True)


def _fold_table():
    # Fold f1: means a = 0.8, b = 0.7 (mean of 0.6 and 0.8), c = 0.5 -> ranks 1, 2, 3.
    # Fold f2: a = 0.6, b = 0.9, c = 0.6 -> ranks 2.5, 1, 2.5.
    rows = [
        ("f1", "a", 0.8), ("f1", "b", 0.6), ("f1", "b", 0.8), ("f1", "c", 0.5),
        ("f2", "a", 0.6), ("f2", "b", 0.9), ("f2", "c", 0.6), ("f2", "c", np.nan),
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["fold", "model", "value"])


def test_ranks_by_group_hand_values():
    ranks = ranking.ranks_by_group(_fold_table(), group="fold", higher_is_better=True)
    assert ranks["rank"].tolist() == [1.0, 2.0, 3.0, 2.5, 1.0, 2.5]
    assert ranks["n"].tolist() == [1, 2, 1, 1, 1, 1]
    assert ranks["n_missing"].tolist() == [0, 0, 0, 0, 0, 1]
    assert ranks["mean"].tolist() == pytest.approx([0.8, 0.7, 0.5, 0.6, 0.9, 0.6])


def test_rank_ranges_hand_values():
    ranks = ranking.ranks_by_group(_fold_table(), group="fold", higher_is_better=True)
    table = ranking.rank_ranges(ranks).set_index("model")
    # a: ranks 1, 2.5; b: 2, 1; c: 3, 2.5.
    assert table.loc["a", "rank_range"] == 1.5 and table.loc["b", "rank_range"] == 1.0
    assert table.loc["c", "mean_rank"] == 2.75
    assert table["n_first"].to_dict() == {"b": 1, "a": 1, "c": 0}
    assert list(table.index) == ["b", "a", "c"]  # mean ranks 1.5, 1.75, 2.75


def test_ranks_by_group_rejects_missing_model():
    frame = _fold_table()
    frame = frame[~((frame["fold"] == "f2") & (frame["model"] == "a"))]
    with pytest.raises(ValueError, match=r"group 'f2' has no values for models \['a'\]"):
        ranking.ranks_by_group(frame, group="fold", higher_is_better=True)
    with pytest.raises(ValueError, match=r"lacks columns \['seed'\]"):
        ranking.ranks_by_group(frame, group="seed", higher_is_better=True)


def test_rank_agreement_hand_kendall_tau():
    # LOOCV orders m1 > m2 > m3 > m4; 3-fold orders m2 > m1 > m3 > m4: 5 concordant, 1 discordant pair of 6,
    # tau = (5 - 1) / 6 = 2/3.
    means = {"loocv": [0.9, 0.8, 0.7, 0.6], "3fold": [0.8, 0.9, 0.7, 0.6]}
    rows = [(p, f"m{j + 1}", v) for p, values in means.items() for j, v in enumerate(values)]
    table = ranking.rank_agreement(
        pd.DataFrame(rows, columns=["protocol", "model", "value"]), protocol="protocol", higher_is_better=True
    )
    row = table.iloc[0]
    assert row["kendall_tau"] == pytest.approx(2 / 3)
    assert (row["leader_a"], row["leader_b"], row["same_leader"]) == ("m1", "m2", False)
    assert row["n_models"] == 4


def test_rank_agreement_direction_does_not_change_tau_but_leader():
    rows = [("s0", "a", 1.0), ("s0", "b", 2.0), ("s1", "a", 1.5), ("s1", "b", 2.5), ("s2", "a", 3.0), ("s2", "b", 2.0)]
    frame = pd.DataFrame(rows, columns=["seed", "model", "value"])
    table = ranking.rank_agreement(frame, protocol="seed", higher_is_better=False)
    assert len(table) == 3
    assert table["kendall_tau"].tolist() == pytest.approx([1.0, -1.0, -1.0])
    assert table["leader_a"].tolist() == ["a", "a", "a"] and table["leader_b"].tolist() == ["a", "b", "b"]
    with pytest.raises(ValueError, match="at least 2 protocols"):
        ranking.rank_agreement(frame[frame["seed"] == "s0"], protocol="seed", higher_is_better=True)
