"""Tests of helpers.stats and helpers.stats_plots: hand-derived values first, then edge cases, properties and
cross-checks against scipy."""

from __future__ import annotations

import itertools
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from helpers import stats
from helpers import stats_plots


def _long(matrix, models=None, units=None, metric=None):
    matrix = np.asarray(matrix, dtype=float)
    models = models or [f"m{j}" for j in range(matrix.shape[1])]
    units = units or [f"case{i}" for i in range(matrix.shape[0])]
    rows = [
        {"case_id": u, "model": m, "value": matrix[i, j]}
        for i, u in enumerate(units)
        for j, m in enumerate(models)
    ]
    frame = pd.DataFrame(rows)
    if metric is not None:
        frame["metric"] = metric
    return frame


# ----------------------------------------------------------------------------------------------------------
# as_wide
# ----------------------------------------------------------------------------------------------------------


def test_as_wide_pivots_long_table_in_first_seen_order():
    frame = _long([[0.1, 0.2], [0.3, 0.4]], models=["b", "a"], units=["u2", "u1"], metric="dice")
    wide = stats.as_wide(frame)
    assert list(wide.columns) == ["b", "a"]
    assert list(wide.index) == ["u2", "u1"]
    assert wide.loc["u1", "a"] == 0.4


def test_as_wide_array_names_and_subset():
    wide = stats.as_wide(np.array([[1, 2, 3]]), models=["x", "y", "z"])
    assert list(wide.columns) == ["x", "y", "z"]
    assert stats.as_wide(wide, models=["z", "x"]).to_numpy().tolist() == [[3.0, 1.0]]
    assert list(stats.as_wide(np.zeros((2, 2))).columns) == ["model_0", "model_1"]


def test_as_wide_rejects_duplicates():
    frame = pd.concat([_long([[0.1, 0.2]]), _long([[0.5, 0.6]])])
    with pytest.raises(ValueError, match="duplicate"):
        stats.as_wide(frame)


def test_as_wide_rejects_several_metrics():
    frame = pd.concat([_long([[0.1, 0.2]], metric="dice"), _long([[5.0, 6.0]], metric="hd95")])
    with pytest.raises(ValueError, match="several metrics"):
        stats.as_wide(frame)


def test_as_wide_nan_policy():
    frame = _long([[0.1, np.nan], [0.3, 0.4]])
    with pytest.raises(ValueError, match="missing values.*case0.*m1"):
        stats.as_wide(frame)
    assert stats.as_wide(frame, nan_policy="omit").isna().sum().sum() == 1
    # A unit lacking a model's row is missing too.
    with pytest.raises(ValueError, match="missing values"):
        stats.as_wide(frame.dropna())
    with pytest.raises(ValueError, match="nan_policy"):
        stats.as_wide(frame, nan_policy="drop")


def test_as_wide_rejects_bad_shapes_and_names():
    with pytest.raises(ValueError, match="2-D"):
        stats.as_wide(np.zeros(3))
    with pytest.raises(ValueError, match="models has 1 names"):
        stats.as_wide(np.zeros((2, 2)), models=["a"])
    with pytest.raises(ValueError, match=r"models \['c'\] not found"):
        stats.as_wide(_long([[1.0, 2.0]]), models=["c"])
    with pytest.raises(ValueError, match="numeric"):
        stats.as_wide(pd.DataFrame({"a": ["x", "y"]}))


# ----------------------------------------------------------------------------------------------------------
# Bootstrap intervals
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n", [5, 9, 30])
def test_bca_matches_scipy_with_same_generator(seed, n):
    # Same Generator state => identical resample indices (both draw integers(0, n, (B, n))), so the BCa
    # intervals agree to rounding.
    x = np.random.default_rng(100 + seed).gamma(2.0, 1.0, size=n)
    ours = stats.bootstrap_mean_ci(x, n_resamples=4000, seed=np.random.default_rng(seed))
    ref = sps.bootstrap((x,), np.mean, n_resamples=4000, method="BCa", rng=np.random.default_rng(seed))
    assert ours.method == "BCa"
    assert ours.low == pytest.approx(ref.confidence_interval.low, rel=1e-10)
    assert ours.high == pytest.approx(ref.confidence_interval.high, rel=1e-10)


def test_bca_matches_scipy_on_tied_discrete_data():
    # Integer scores make many bootstrap means equal to the estimate: exercises the mid-rank z0.
    x = np.array([1.0, 1.0, 2.0, 2.0, 2.0, 5.0])
    ours = stats.bootstrap_mean_ci(x, n_resamples=999, confidence=0.9, seed=np.random.default_rng(9))
    ref = sps.bootstrap(
        (x,), np.mean, n_resamples=999, confidence_level=0.9, method="BCa", rng=np.random.default_rng(9)
    )
    assert ours.method == "BCa"
    assert (ours.low, ours.high) == pytest.approx(tuple(ref.confidence_interval), rel=1e-10)


def test_percentile_matches_scipy():
    x = np.random.default_rng(7).normal(size=12)
    ours = stats.bootstrap_mean_ci(x, n_resamples=3000, method="percentile", confidence=0.9, seed=5)
    ref = sps.bootstrap(
        (x,), np.mean, n_resamples=3000, method="percentile", confidence_level=0.9, rng=np.random.default_rng(5)
    )
    assert ours.method == "percentile"
    assert (ours.low, ours.high) == pytest.approx(tuple(ref.confidence_interval), rel=1e-12)


def test_bca_acceleration_is_jackknife_skewness():
    # For the mean, U_i = x_i - mean: x = [0, 0, 3] gives U = [-1, -1, 2], sum U^3 = 6, sum U^2 = 6,
    # a = 6 / (6 * 6^1.5) = 6^-1.5 = 0.0680414.
    result = stats.bootstrap_mean_ci([0.0, 0.0, 3.0], n_resamples=1000, seed=0)
    assert result.acceleration == pytest.approx(6.0**-1.5, rel=1e-12)


def test_constant_differences_give_zero_width_interval():
    # Every resample of identical values has the same mean, so the interval collapses to that mean.
    result = stats.bootstrap_mean_ci([0.1] * 9, n_resamples=500, seed=0)
    assert result.width == 0.0
    assert result.low == result.high == pytest.approx(0.1, abs=1e-15)
    assert result.method == "percentile (BCa undefined: zero spread, all values equal)"


def test_bca_zero_spread_when_the_mean_is_one_ulp_off():
    # np.mean([0.8] * 7) is 0.7999999999999999, one ulp below 0.8: a sum-of-squares test sees a tiny nonzero
    # spread and reports "BCa" with a meaningless acceleration. The range test sees all values equal.
    assert np.mean([0.8] * 7) != 0.8
    result = stats.bootstrap_mean_ci([0.8] * 7, n_resamples=200, seed=0)
    assert result.method == "percentile (BCa undefined: zero spread, all values equal)"
    assert np.isnan(result.acceleration)
    assert result.low == pytest.approx(0.8) and result.high == pytest.approx(0.8)


def test_single_unit_falls_back_to_percentile():
    result = stats.bootstrap_mean_ci([0.7], n_resamples=100, seed=0)
    assert (result.low, result.high, result.n) == (0.7, 0.7, 1)
    assert result.method == "percentile (BCa undefined: fewer than 2 units)"


def test_one_sided_bootstrap_distribution_falls_back():
    # x = eight zeros and one 1 (mean 1/9). With B = 2 and seed 3 neither resample draws index 8, so both
    # bootstrap means are 0 < 1/9: z0 = Phi^-1(1) = inf and BCa is undefined; the percentile interval is [0, 0].
    x = np.array([0.0] * 8 + [1.0])
    index = np.random.default_rng(3).integers(0, 9, (2, 9))
    assert not (index == 8).any()
    result = stats.bootstrap_mean_ci(x, n_resamples=2, seed=3)
    assert result.method == "percentile (BCa undefined: bootstrap distribution entirely on one side of the estimate)"
    assert np.isinf(result.bias_correction)
    assert (result.low, result.high) == (0.0, 0.0)


def test_bootstrap_interval_properties():
    x = np.random.default_rng(3).normal(0.8, 0.1, size=15)
    narrow = stats.bootstrap_mean_ci(x, confidence=0.5, n_resamples=2000, seed=1)
    wide = stats.bootstrap_mean_ci(x, confidence=0.99, n_resamples=2000, seed=1)
    assert wide.low <= narrow.low <= narrow.estimate <= narrow.high <= wide.high
    shifted = stats.bootstrap_mean_ci(x + 10.0, confidence=0.5, n_resamples=2000, seed=1)
    assert shifted.low == pytest.approx(narrow.low + 10.0) and shifted.high == pytest.approx(narrow.high + 10.0)
    again = stats.bootstrap_mean_ci(x, confidence=0.5, n_resamples=2000, seed=1)
    assert again == narrow


def test_bootstrap_validation():
    with pytest.raises(ValueError, match="finite"):
        stats.bootstrap_mean_ci([1.0, np.nan])
    with pytest.raises(ValueError, match="empty"):
        stats.bootstrap_mean_ci([])
    with pytest.raises(ValueError, match="confidence must be in"):
        stats.bootstrap_mean_ci([1.0, 2.0], confidence=1.5)
    with pytest.raises(ValueError, match="method"):
        stats.bootstrap_mean_ci([1.0, 2.0], method="basic")
    with pytest.raises(TypeError, match="seed"):
        stats.bootstrap_mean_ci([1.0, 2.0], seed=1.5)
    with pytest.raises(ValueError, match="n_resamples must be >= 2"):
        stats.bootstrap_mean_ci([1.0, 2.0], n_resamples=1)


def test_summarize_models_counts_missing_and_reports_method():
    frame = _long([[0.5, 0.7], [0.6, np.nan], [0.7, 0.9]], models=["a", "b"])
    table = stats.summarize_models(frame, n_resamples=500, seed=0)
    assert list(table["model"]) == ["a", "b"]
    assert table["n"].tolist() == [3, 2]
    assert table["n_missing"].tolist() == [0, 1]
    assert table["mean"].tolist() == pytest.approx([0.6, 0.8])
    # sd of [0.5, 0.6, 0.7] with ddof=1 is 0.1.
    assert table.loc[0, "sd"] == pytest.approx(0.1)
    # Both models have spread and a two-sided bootstrap distribution, so BCa is defined for both.
    assert table["ci_method"].tolist() == ["BCa", "BCa"]
    with pytest.raises(ValueError, match="missing values"):
        stats.summarize_models(frame, nan_policy="raise")


# ----------------------------------------------------------------------------------------------------------
# Effect size
# ----------------------------------------------------------------------------------------------------------


def test_cohens_dz_known_data():
    # d = 1..5: mean 3, sd (ddof=1) = sqrt(10/4) = 1.5811388, d_z = 3 / 1.5811388 = 1.8973666.
    assert stats.cohens_dz([1, 2, 3, 4, 5]) == pytest.approx(3 / math.sqrt(2.5), rel=1e-12)
    assert stats.cohens_dz([-1, -2, -3, -4, -5]) == pytest.approx(-3 / math.sqrt(2.5), rel=1e-12)


def test_cohens_dz_degenerate():
    assert math.isnan(stats.cohens_dz([0.0, 0.0, 0.0]))
    assert stats.cohens_dz([0.2, 0.2]) == math.inf
    assert stats.cohens_dz([-0.2, -0.2]) == -math.inf
    assert math.isnan(stats.cohens_dz([0.5]))


def test_hedges_correction_exact_values():
    # J(4) = Gamma(2) / (sqrt(2) Gamma(1.5)) = 1 / (sqrt(2) * sqrt(pi) / 2) = sqrt(2 / pi) = 0.7978846.
    assert stats.hedges_correction(4) == pytest.approx(math.sqrt(2 / math.pi), rel=1e-12)
    # J(8) = Gamma(4) / (2 Gamma(3.5)) = 6 / (2 * 15 sqrt(pi) / 8) = 8 / (5 sqrt(pi)) = 0.9027033.
    assert stats.hedges_correction(8) == pytest.approx(8 / (5 * math.sqrt(math.pi)), rel=1e-12)
    # The textbook approximation 1 - 3 / (4 df - 1) agrees to ~1e-3 at df = 8 and ~1e-6 at df = 100.
    assert stats.hedges_correction(8) == pytest.approx(1 - 3 / 31, abs=1e-3)
    assert stats.hedges_correction(100) == pytest.approx(1 - 3 / 399, abs=1e-5)
    assert math.isnan(stats.hedges_correction(1))
    with pytest.raises(TypeError, match="df"):
        stats.hedges_correction("8")


# ----------------------------------------------------------------------------------------------------------
# Sign-flip test, Holm, attainable p
# ----------------------------------------------------------------------------------------------------------


def test_sign_flip_exact_hand_values():
    # d = [1, 2, 3]: the 8 signed sums are +-6, +-4, +-2, 0, 0; |sum| >= 6 twice -> p = 2/8.
    assert stats.sign_flip_test([1, 2, 3]).p_value == 0.25
    # d = [3, -1, 2]: observed |4|; sums with |s| >= 4 are 6, -6, 4, -4 -> p = 4/8.
    assert stats.sign_flip_test([3, -1, 2]).p_value == 0.5
    # d = [1, 2, -3]: observed sum 0, every vector reaches it -> p = 1.
    assert stats.sign_flip_test([1, 2, -3]).p_value == 1.0
    # All nine differences positive: only the observed vector and its mirror -> p = 2/512.
    result = stats.sign_flip_test(np.linspace(0.1, 0.9, 9))
    assert result.p_value == 2 / 512 == result.min_attainable_p
    assert result.exact and result.n_sign_vectors == 512
    assert result.method == "exact sign-flip (all 2^9 = 512 sign vectors)"


def test_sign_flip_counts_float_ties():
    # 0.1 + 0.2 and 0.3 differ in floating point; the flipped configuration (+0.1, +0.2, -0.3) sums to ~0
    # and so does the observed one, so all 8 vectors tie with the observed |sum| ~ 0.
    assert stats.sign_flip_test([0.1, 0.2, -0.3]).p_value == 1.0


@pytest.mark.parametrize("n", [3, 9, 12])
def test_sign_flip_matches_scipy_exact_permutation_test(n):
    d = np.random.default_rng(n).normal(0.3, 1.0, size=n)
    ref = sps.permutation_test(
        (d,), lambda x, axis: np.mean(x, axis=axis), permutation_type="samples", n_resamples=np.inf
    )
    assert stats.sign_flip_test(d).p_value == pytest.approx(ref.pvalue, rel=1e-12)


def test_sign_flip_monte_carlo_agrees_with_exact_and_says_so():
    d = np.random.default_rng(11).normal(0.4, 1.0, size=16)
    exact = stats.sign_flip_test(d)
    approx = stats.sign_flip_test(d, max_exact_n=10, n_permutations=20_000, seed=4)
    assert not approx.exact
    assert approx.method.startswith("Monte Carlo sign-flip (20000 random sign vectors")
    assert approx.min_attainable_p == 1 / 20_001
    # Binomial standard error of a Monte Carlo p-value with B = 20000.
    assert abs(approx.p_value - exact.p_value) < 4 * math.sqrt(exact.p_value * (1 - exact.p_value) / 20_000)


def test_sign_flip_validation():
    with pytest.raises(ValueError, match="differences must be finite"):
        stats.sign_flip_test([1.0, np.inf])
    with pytest.raises(ValueError, match="max_exact_n must be <= 24"):
        stats.sign_flip_test([1.0], max_exact_n=30)


def test_min_attainable_p():
    assert stats.min_attainable_p(9) == 1 / 256
    # 6 models -> 15 pairs: Holm's smallest adjusted p is 15 * 2/512 = 0.0586 > 0.05.
    assert stats.min_attainable_p(9, n_comparisons=15) == 15 / 256
    assert stats.min_attainable_p(1) == 1.0
    assert stats.min_attainable_p(3, n_comparisons=10) == 1.0
    with pytest.raises(ValueError, match="n_units must be >= 1"):
        stats.min_attainable_p(0)


def test_attainable_p_table():
    table = stats.attainable_p_table([9, 12], [4, 6])
    # N = 9: 2/512 = 1/256; k = 4 -> 6 pairs -> 6/256 = 0.0234 (can reject); k = 6 -> 15/256 = 0.0586 (cannot).
    # N = 12: 2/4096; k = 6 -> 30/4096 = 0.0073.
    assert table["n_pairs"].tolist() == [6, 15, 6, 15]
    assert table["min_p_holm"].tolist() == pytest.approx([6 / 256, 15 / 256, 12 / 4096, 30 / 4096])
    assert table["can_reject"].tolist() == [True, False, True, True]
    with pytest.raises(ValueError, match="n_models must be >= 2"):
        stats.attainable_p_table(9, 1)


def test_holm_hand_values_and_monotonicity():
    # Sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06.
    adjusted = stats.holm_adjust([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm_adjust([0.5, 0.6]).tolist() == [1.0, 1.0]
    assert stats.holm_adjust([]).size == 0


def test_holm_matches_naive_step_down():
    # Independent O(m^2) form: adjusted p_i = max over j with p_j <= p_i of min(1, (m - r_j + 1) p_j),
    # r_j the 1-based position of p_j in ascending order (ties broken by input order).
    rng = np.random.default_rng(1)
    p = np.round(rng.uniform(0, 0.2, size=12), 2)  # rounding creates ties
    m = p.size
    position = {j: r + 1 for r, j in enumerate(np.argsort(p, kind="stable"))}
    expected = [
        max(min(1.0, (m - position[j] + 1) * p[j]) for j in range(m) if position[j] <= position[i]) for i in range(m)
    ]
    assert stats.holm_adjust(p) == pytest.approx(expected, rel=1e-12)


def test_holm_properties():
    p = np.random.default_rng(0).uniform(size=20)
    adjusted = stats.holm_adjust(p)
    assert (adjusted >= p).all() and (adjusted <= 1).all()
    order = np.argsort(p)
    assert (np.diff(adjusted[order]) >= 0).all()
    with pytest.raises(ValueError, match=r"p_values must be finite and in \[0, 1\]"):
        stats.holm_adjust([0.1, 1.2])


def test_paired_comparisons_hand_case():
    # Two models, 4 cases; differences a - b = [0.1, 0.2, 0.3, 0.4] (all positive): exact p = 2/16.
    a = np.array([0.6, 0.7, 0.8, 0.9])
    b = a - np.array([0.1, 0.2, 0.3, 0.4])
    table = stats.paired_comparisons(
        _long(np.column_stack([a, b]), models=["a", "b"]), higher_is_better=True, n_resamples=500
    )
    row = table.iloc[0]
    assert (row["model_a"], row["model_b"], row["n"]) == ("a", "b", 4)
    assert row["mean_difference"] == pytest.approx(0.25)
    assert row["p_value"] == 0.125 and row["p_holm"] == 0.125
    # d_z = 0.25 / sd([.1,.2,.3,.4]) = 0.25 / 0.1290994 = 1.9364917; g_z = d_z * J(3).
    assert row["cohens_dz"] == pytest.approx(0.25 / np.std([0.1, 0.2, 0.3, 0.4], ddof=1))
    assert row["hedges_gz"] == pytest.approx(row["cohens_dz"] * stats.hedges_correction(3))
    assert row["favoured"] == "a"
    assert row["min_attainable_p"] == 0.125 == row["min_attainable_p_holm"]
    assert not row["significant"]
    lower = stats.paired_comparisons(np.column_stack([a, b]), higher_is_better=False, n_resamples=500)
    assert lower.loc[0, "favoured"] == "model_1"


def test_paired_comparisons_six_models_n9_cannot_be_significant():
    # Huge, consistent effects, yet with N = 9 and 15 pairs Holm's smallest p is 15/256 > 0.05.
    rng = np.random.default_rng(0)
    matrix = np.arange(6)[None, :] * 1.0 + rng.normal(0, 0.01, size=(9, 6))
    table = stats.paired_comparisons(matrix, higher_is_better=True, n_resamples=300)
    assert len(table) == 15
    assert (table["p_value"] == 2 / 512).all()
    assert table["p_holm"].tolist() == pytest.approx([15 / 256] * 15)
    assert not table["significant"].any()
    assert (table["min_attainable_p_holm"] == 15 / 256).all()
    assert table["p_holm"].tolist() == pytest.approx(stats.holm_adjust(table["p_value"]).tolist())


def test_paired_comparisons_seed_contract():
    # Pair j uses child j of Generator(seed).spawn(n_pairs) for its bootstrap: the CI is reproducible alone.
    matrix = np.random.default_rng(3).normal(size=(9, 3))
    table = stats.paired_comparisons(matrix, higher_is_better=True, n_resamples=400, seed=21)
    children = np.random.default_rng(21).spawn(3)
    interval = stats.bootstrap_mean_ci(matrix[:, 1] - matrix[:, 2], n_resamples=400, seed=children[2])
    assert (table.loc[2, "ci_low"], table.loc[2, "ci_high"]) == (interval.low, interval.high)
    again = stats.paired_comparisons(matrix, higher_is_better=True, n_resamples=400, seed=21)
    pd.testing.assert_frame_equal(table, again)


def test_paired_comparisons_nan_policy_per_pair():
    matrix = np.array([[0.5, 0.4, 0.3], [0.6, np.nan, 0.2], [0.7, 0.5, 0.1]])
    with pytest.raises(ValueError, match="missing values"):
        stats.paired_comparisons(matrix, higher_is_better=True)
    table = stats.paired_comparisons(matrix, higher_is_better=True, nan_policy="omit", n_resamples=200)
    assert table["n"].tolist() == [2, 3, 2]


def test_paired_comparisons_validation():
    with pytest.raises(ValueError, match="at least 2 models"):
        stats.paired_comparisons(np.zeros((3, 1)), higher_is_better=True)
    with pytest.raises(TypeError, match="higher_is_better"):
        stats.paired_comparisons(np.zeros((3, 2)), higher_is_better="yes")
    with pytest.raises(ValueError, match="alpha must be in"):
        stats.paired_comparisons(np.zeros((3, 2)), higher_is_better=True, alpha=0.0)


# ----------------------------------------------------------------------------------------------------------
# Ranks, Friedman, Nemenyi
# ----------------------------------------------------------------------------------------------------------


def test_rank_rows_average_ties_and_direction():
    assert stats.rank_rows([0.9, 0.9, 0.5], higher_is_better=True).tolist() == [1.5, 1.5, 3.0]
    assert stats.rank_rows([0.9, 0.9, 0.5], higher_is_better=False).tolist() == [2.5, 2.5, 1.0]
    with pytest.raises(ValueError, match="NaN"):
        stats.rank_rows([0.1, np.nan], higher_is_better=True)


FRIEDMAN_TABLE = np.array(
    [
        # ranks (1 = best, higher is better): (1, 2, 3), (1, 2, 3), (1, 3, 2), (2, 1, 3)
        [0.9, 0.8, 0.7],
        [0.6, 0.5, 0.4],
        [0.9, 0.7, 0.8],
        [0.5, 0.6, 0.4],
    ]
)


def test_friedman_known_table():
    # Rank sums R = (5, 8, 11); chi2 = 12 / (n k (k+1)) sum R^2 - 3 n (k+1) = 12/48 * 210 - 48 = 4.5.
    # df = 2, so p = exp(-4.5 / 2). Iman-Davenport F = (n-1) chi2 / (n(k-1) - chi2) = 13.5 / 3.5.
    result = stats.friedman_test(FRIEDMAN_TABLE, higher_is_better=True)
    assert result.statistic == pytest.approx(4.5, rel=1e-12)
    assert result.p_value == pytest.approx(math.exp(-2.25), rel=1e-12)
    assert result.iman_davenport == pytest.approx(13.5 / 3.5, rel=1e-12)
    assert result.iman_davenport_p == pytest.approx(sps.f.sf(13.5 / 3.5, 2, 6), rel=1e-12)
    assert result.mean_ranks.tolist() == pytest.approx([5 / 4, 8 / 4, 11 / 4])
    assert (result.n, result.k, result.n_omitted) == (4, 3, 0)
    # Reversing the direction reverses the ranks and leaves chi2 unchanged.
    reverse = stats.friedman_test(FRIEDMAN_TABLE, higher_is_better=False)
    assert reverse.statistic == pytest.approx(4.5) and reverse.mean_ranks.tolist() == pytest.approx([2.75, 2, 1.25])


@pytest.mark.parametrize("seed", range(4))
def test_friedman_matches_scipy_with_ties(seed):
    rng = np.random.default_rng(seed)
    matrix = rng.integers(0, 4, size=(9, 5)).astype(float)  # many ties
    ours = stats.friedman_test(matrix, higher_is_better=True)
    ref = sps.friedmanchisquare(*matrix.T)
    assert ours.statistic == pytest.approx(ref.statistic, rel=1e-10)
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-10)


def test_nemenyi_skipped_when_friedman_does_not_reject():
    # Two models, four units, each model best on two units: equal mean ranks 1.5, chi2 = 0, F_F = 0, p = 1.
    data = _long([[1, 2], [2, 1], [1, 2], [2, 1]], models=["a", "b"])
    result = stats.friedman_then_nemenyi(data, higher_is_better=True)
    assert result.friedman.iman_davenport_p == pytest.approx(1.0)
    assert not result.rejects and result.nemenyi is None and result.verdict == "no difference detected"
    ax = stats_plots.plot_friedman_nemenyi(result)
    assert any("no difference detected" in t.get_text() for t in ax.texts)
    plt.close("all")


def test_nemenyi_run_when_friedman_rejects():
    # Model a best on all 10 units of three models: mean ranks 1, 2, 3, chi2 = 20 (its maximum 2 N), so
    # F_F = (N - 1) chi2 / (N (k - 1) - chi2) is infinite and p = 0: the post-hoc test runs.
    data = _long([[3, 2, 1]] * 10, models=["a", "b", "c"])
    result = stats.friedman_then_nemenyi(data, higher_is_better=True)
    assert result.friedman.statistic == pytest.approx(20.0) and result.friedman.iman_davenport_p == 0.0
    assert result.rejects and result.nemenyi is not None
    assert result.nemenyi.mean_ranks.to_dict() == {"a": 1.0, "b": 2.0, "c": 3.0}
    ax = stats_plots.plot_friedman_nemenyi(result)
    assert "Iman-Davenport p = 0" in ax.get_title()
    plt.close("all")


def test_friedman_omits_incomplete_units():
    matrix = np.vstack([FRIEDMAN_TABLE, [0.1, np.nan, 0.2]])
    result = stats.friedman_test(matrix, higher_is_better=True, nan_policy="omit")
    assert (result.n, result.n_omitted) == (4, 1)
    assert result.statistic == pytest.approx(4.5)


def test_friedman_all_tied_is_nan():
    result = stats.friedman_test(np.ones((3, 3)), higher_is_better=True)
    assert math.isnan(result.statistic)


DEMSAR_Q_005 = {2: 1.960, 3: 2.343, 4: 2.569, 5: 2.728, 6: 2.850, 7: 2.949, 8: 3.031, 9: 3.102, 10: 3.164}
DEMSAR_Q_010 = {2: 1.645, 3: 2.052, 4: 2.291, 5: 2.459, 6: 2.589, 7: 2.693, 8: 2.780, 9: 2.855, 10: 2.920}


@pytest.mark.parametrize("k", range(2, 11))
def test_nemenyi_q_matches_demsar_table(k):
    # Demsar (2006) Table 5a divides studentized-range table values (themselves rounded to 3 decimals, e.g.
    # q(3, inf) = 3.314 -> 2.3434 against the exact 2.3437) by sqrt(2) and rounds again: the two roundings
    # bound the discrepancy by 0.0005 / sqrt(2) + 0.0005 < 1e-3.
    assert stats.nemenyi_q(k, alpha=0.05) == pytest.approx(DEMSAR_Q_005[k], abs=1e-3)
    assert stats.nemenyi_q(k, alpha=0.10) == pytest.approx(DEMSAR_Q_010[k], abs=1e-3)


def test_nemenyi_critical_difference_hand_values():
    # Demsar's worked example: k = 4, N = 14: CD = 2.569 sqrt(20 / 84) = 1.2535 ("1.25").
    assert stats.nemenyi_critical_difference(4, 14) == pytest.approx(2.569 * math.sqrt(20 / 84), abs=5e-4)
    # The study's setting: k = 6, N = 9: CD = 2.850 sqrt(42 / 54) = 2.5135.
    assert stats.nemenyi_critical_difference(6, 9) == pytest.approx(2.850 * math.sqrt(42 / 54), abs=5e-4)
    with pytest.raises(ValueError, match="k must be >= 2"):
        stats.nemenyi_critical_difference(1, 9)


@pytest.mark.parametrize(
    "n_units, expected_groups",
    [
        # Every unit ranks a > b > c, so mean ranks are exactly 1, 2, 3 and k = 3, q = 2.343:
        (2, (("a", "b", "c"),)),  # CD = 2.343 * sqrt(12 / 12) = 2.343 > 2: one group
        (5, (("a", "b"), ("b", "c"))),  # CD = 2.343 * sqrt(12 / 30) = 1.482: only a-c differ
        (20, ()),  # CD = 2.343 * sqrt(12 / 120) = 0.741 < 1: all differ
    ],
)
def test_nemenyi_groups_hand_cases(n_units, expected_groups):
    matrix = np.tile([0.9, 0.8, 0.7], (n_units, 1))
    result = stats.nemenyi_test(_long(matrix, models=["a", "b", "c"]), higher_is_better=True)
    assert result.mean_ranks.tolist() == [1.0, 2.0, 3.0]
    assert result.groups == expected_groups
    n_significant = {2: 0, 5: 1, 20: 3}[n_units]
    assert int(result.pairwise["significant"].sum()) == n_significant


def test_nemenyi_two_models_is_a_normal_test():
    # k = 2: the studentized range of two standard normals is |Z1 - Z2| ~ sqrt(2) |N(0, 1)|, so the Nemenyi
    # p-value is the two-sided normal p of dR / sqrt(k (k+1) / (6 N)). Model a wins all N = 6 units:
    # dR = 1, scale = sqrt(6 / 36), z = sqrt(6) = 2.449, p = 2 (1 - Phi(2.449)) = 0.0143.
    result = stats.nemenyi_test(np.tile([0.9, 0.1], (6, 1)), higher_is_better=True)
    assert result.pairwise.loc[0, "p_value"] == pytest.approx(2 * sps.norm.sf(math.sqrt(6)), rel=1e-6)
    assert result.critical_difference == pytest.approx(1.959964 * math.sqrt(1 / 6), rel=1e-6)


def test_nemenyi_p_values_agree_with_critical_difference():
    rng = np.random.default_rng(5)
    for _ in range(5):
        matrix = rng.normal(size=(12, 5)) + np.linspace(0, 1.5, 5)
        result = stats.nemenyi_test(matrix, higher_is_better=False)
        table = result.pairwise
        assert ((table["p_value"] <= result.alpha) == table["significant"]).all()
        assert (table["rank_difference"] >= result.critical_difference).eq(table["significant"]).all()
        assert list(result.mean_ranks) == sorted(result.mean_ranks)


# ----------------------------------------------------------------------------------------------------------
# Rank volatility
# ----------------------------------------------------------------------------------------------------------


def _fold_table():
    # Fold f1: means a = 0.8, b = 0.7 (mean of 0.6 and 0.8), c = 0.5 -> ranks 1, 2, 3.
    # Fold f2: a = 0.6, b = 0.9, c = 0.6 -> ranks 2.5, 1, 2.5.
    rows = [
        ("f1", "a", 0.8), ("f1", "b", 0.6), ("f1", "b", 0.8), ("f1", "c", 0.5),
        ("f2", "a", 0.6), ("f2", "b", 0.9), ("f2", "c", 0.6), ("f2", "c", np.nan),
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["fold", "model", "value"])


def test_ranks_by_group_hand_values():
    ranks = stats.ranks_by_group(_fold_table(), group="fold", higher_is_better=True)
    assert ranks["rank"].tolist() == [1.0, 2.0, 3.0, 2.5, 1.0, 2.5]
    assert ranks["n"].tolist() == [1, 2, 1, 1, 1, 1]
    assert ranks["n_missing"].tolist() == [0, 0, 0, 0, 0, 1]
    assert ranks["mean"].tolist() == pytest.approx([0.8, 0.7, 0.5, 0.6, 0.9, 0.6])


def test_rank_ranges_hand_values():
    ranks = stats.ranks_by_group(_fold_table(), group="fold", higher_is_better=True)
    table = stats.rank_ranges(ranks).set_index("model")
    # a: ranks 1, 2.5; b: 2, 1; c: 3, 2.5.
    assert table.loc["a", "rank_range"] == 1.5 and table.loc["b", "rank_range"] == 1.0
    assert table.loc["c", "mean_rank"] == 2.75
    assert table["n_first"].to_dict() == {"b": 1, "a": 1, "c": 0}
    assert list(table.index) == ["b", "a", "c"]  # mean ranks 1.5, 1.75, 2.75


def test_ranks_by_group_rejects_missing_model():
    frame = _fold_table()
    frame = frame[~((frame["fold"] == "f2") & (frame["model"] == "a"))]
    with pytest.raises(ValueError, match=r"group 'f2' has no values for models \['a'\]"):
        stats.ranks_by_group(frame, group="fold", higher_is_better=True)
    with pytest.raises(ValueError, match=r"lacks columns \['seed'\]"):
        stats.ranks_by_group(frame, group="seed", higher_is_better=True)


def test_rank_agreement_hand_kendall_tau():
    # LOOCV orders m1 > m2 > m3 > m4; 3-fold orders m2 > m1 > m3 > m4: 5 concordant, 1 discordant pair of 6,
    # tau = (5 - 1) / 6 = 2/3.
    means = {"loocv": [0.9, 0.8, 0.7, 0.6], "3fold": [0.8, 0.9, 0.7, 0.6]}
    rows = [(p, f"m{j + 1}", v) for p, values in means.items() for j, v in enumerate(values)]
    table = stats.rank_agreement(
        pd.DataFrame(rows, columns=["protocol", "model", "value"]), protocol="protocol", higher_is_better=True
    )
    row = table.iloc[0]
    assert row["kendall_tau"] == pytest.approx(2 / 3)
    assert (row["leader_a"], row["leader_b"], row["same_leader"]) == ("m1", "m2", False)
    assert row["n_models"] == 4


def test_rank_agreement_direction_does_not_change_tau_but_leader():
    rows = [("s0", "a", 1.0), ("s0", "b", 2.0), ("s1", "a", 1.5), ("s1", "b", 2.5), ("s2", "a", 3.0), ("s2", "b", 2.0)]
    frame = pd.DataFrame(rows, columns=["seed", "model", "value"])
    table = stats.rank_agreement(frame, protocol="seed", higher_is_better=False)
    assert len(table) == 3
    assert table["kendall_tau"].tolist() == pytest.approx([1.0, -1.0, -1.0])
    assert table["leader_a"].tolist() == ["a", "a", "a"] and table["leader_b"].tolist() == ["a", "b", "b"]
    with pytest.raises(ValueError, match="at least 2 protocols"):
        stats.rank_agreement(frame[frame["seed"] == "s0"], protocol="seed", higher_is_better=True)


def test_bootstrap_ranks_matches_naive_loop():
    rng = np.random.default_rng(2)
    matrix = rng.normal(size=(9, 4))
    result = stats.bootstrap_ranks(matrix, higher_is_better=True, n_resamples=300, seed=8)
    index = np.random.default_rng(8).integers(0, 9, (300, 9))
    for b in (0, 17, 299):
        expected = sps.rankdata(-matrix[index[b]].mean(axis=0))
        assert result.ranks[b].tolist() == expected.tolist()
    assert result.ranks.sum(axis=1).tolist() == pytest.approx([10.0] * 300)  # 1 + 2 + 3 + 4 per resample
    assert result.observed_ranks.tolist() == sps.rankdata(-matrix.mean(axis=0)).tolist()


def test_bootstrap_ranks_dominant_model_and_distribution():
    # Model a is best in every unit: every resample ranks it first.
    matrix = np.column_stack([np.full(9, 0.9), np.linspace(0.1, 0.5, 9), np.linspace(0.5, 0.1, 9)])
    result = stats.bootstrap_ranks(_long(matrix, models=["a", "b", "c"]), higher_is_better=True, n_resamples=200)
    summary = result.summary()
    assert summary.loc[0, "model"] == "a" and summary.loc[0, "p_first"] == 1.0
    distribution = result.distribution()
    assert distribution.groupby("model")["share"].sum().tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert distribution[distribution["model"] == "a"]["rank"].tolist() == [1.0]


def test_bootstrap_ranks_rank_then_aggregate_observed_equals_friedman_order():
    matrix = np.random.default_rng(4).normal(size=(9, 5))
    result = stats.bootstrap_ranks(matrix, higher_is_better=True, n_resamples=50, scheme="rank-then-aggregate")
    friedman = stats.friedman_test(matrix, higher_is_better=True)
    expected = sps.rankdata(friedman.mean_ranks.to_numpy())
    assert result.observed_ranks.tolist() == expected.tolist()
    with pytest.raises(ValueError, match="scheme"):
        stats.bootstrap_ranks(matrix, higher_is_better=True, scheme="mean")


# ----------------------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------------------


def test_plot_critical_difference_draws_groups():
    matrix = np.tile([0.9, 0.8, 0.7], (5, 1))
    result = stats.nemenyi_test(_long(matrix, models=["a", "b", "c"]), higher_is_better=True)
    fig, ax = plt.subplots()
    try:
        returned = stats_plots.plot_critical_difference(result, ax=ax)
        assert returned is ax
        # Group bars are the lines drawn with linewidth 3: two groups (a, b) and (b, c).
        assert sum(line.get_linewidth() == 3.0 for line in ax.lines) == 2
        texts = [t.get_text() for t in ax.texts]
        assert "a (1.00)" in texts and any(t.startswith("CD = 1.48") for t in texts)
    finally:
        plt.close(fig)
    with pytest.raises(TypeError, match="NemenyiResult"):
        stats_plots.plot_critical_difference("x")


def test_plot_rank_blobs_and_other_figures():
    matrix = np.random.default_rng(0).normal(size=(9, 4))
    figures = []
    try:
        boot = stats.bootstrap_ranks(matrix, higher_is_better=True, n_resamples=100)
        ax = stats_plots.plot_rank_blobs(boot)
        figures.append(ax.figure)
        assert ax.get_ylim()[0] > ax.get_ylim()[1]  # rank 1 at the top
        assert len(ax.collections) == 2 * 4  # blobs and observed-rank cross per model
        ax = stats_plots.plot_model_intervals(stats.summarize_models(matrix, n_resamples=200))
        figures.append(ax.figure)
        ax = stats_plots.plot_paired_differences(
            stats.paired_comparisons(matrix, higher_is_better=True, n_resamples=200)
        )
        figures.append(ax.figure)
        assert len(ax.texts) == 6
        frame = _long(matrix)
        frame["fold"] = np.repeat([0, 1, 2], 12)
        ranks = stats.ranks_by_group(frame, group="fold", higher_is_better=True)
        ax = stats_plots.plot_rank_trajectories(ranks, group="fold")
        figures.append(ax.figure)
        assert len(ax.lines) == 4
    finally:
        for fig in figures:
            plt.close(fig)
    with pytest.raises(ValueError, match="summary must be a DataFrame"):
        stats_plots.plot_model_intervals(pd.DataFrame({"model": ["a"]}))
