"""Tests of helpers.stats.inference: hand-derived values first, then edge cases, properties and cross-checks against
scipy."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from helpers.report import figures
from helpers.stats import inference


FRIEDMAN_TABLE = np.array(
    [
        # ranks (1 = best, higher is better): (1, 2, 3), (1, 2, 3), (1, 3, 2), (2, 1, 3)
        [0.9, 0.8, 0.7],
        [0.6, 0.5, 0.4],
        [0.9, 0.7, 0.8],
        [0.5, 0.6, 0.4],
    ]
)

DEMSAR_Q_005 = {2: 1.960, 3: 2.343, 4: 2.569, 5: 2.728, 6: 2.850, 7: 2.949, 8: 3.031, 9: 3.102, 10: 3.164}
DEMSAR_Q_010 = {2: 1.645, 3: 2.052, 4: 2.291, 5: 2.459, 6: 2.589, 7: 2.693, 8: 2.780, 9: 2.855, 10: 2.920}


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


def test_as_wide_pivots_long_table_in_first_seen_order():
    frame = _long([[0.1, 0.2], [0.3, 0.4]], models=["b", "a"], units=["u2", "u1"], metric="dice")
    wide = inference.as_wide(frame)
    assert list(wide.columns) == ["b", "a"]
    assert list(wide.index) == ["u2", "u1"]
    assert wide.loc["u1", "a"] == 0.4


def test_as_wide_array_names_and_subset():
    wide = inference.as_wide(np.array([[1, 2, 3]]), models=["x", "y", "z"])
    assert list(wide.columns) == ["x", "y", "z"]
    assert inference.as_wide(wide, models=["z", "x"]).to_numpy().tolist() == [[3.0, 1.0]]
    assert list(inference.as_wide(np.zeros((2, 2))).columns) == ["model_0", "model_1"]


def test_as_wide_rejects_duplicates():
    frame = pd.concat([_long([[0.1, 0.2]]), _long([[0.5, 0.6]])])
    with pytest.raises(ValueError, match="duplicate"):
        inference.as_wide(frame)


def test_as_wide_rejects_several_metrics():
    frame = pd.concat([_long([[0.1, 0.2]], metric="dice"), _long([[5.0, 6.0]], metric="hd95")])
    with pytest.raises(ValueError, match="several metrics"):
        inference.as_wide(frame)


def test_as_wide_nan_policy():
    frame = _long([[0.1, np.nan], [0.3, 0.4]])
    with pytest.raises(ValueError, match="missing values.*case0.*m1"):
        inference.as_wide(frame)
    assert inference.as_wide(frame, nan_policy="omit").isna().sum().sum() == 1
    # A unit lacking a model's row is missing too.
    with pytest.raises(ValueError, match="missing values"):
        inference.as_wide(frame.dropna())
    with pytest.raises(ValueError, match="nan_policy"):
        inference.as_wide(frame, nan_policy="drop")


def test_as_wide_rejects_bad_shapes_and_names():
    with pytest.raises(ValueError, match="2-D"):
        inference.as_wide(np.zeros(3))
    with pytest.raises(ValueError, match="models has 1 names"):
        inference.as_wide(np.zeros((2, 2)), models=["a"])
    with pytest.raises(ValueError, match=r"models \['c'\] not found"):
        inference.as_wide(_long([[1.0, 2.0]]), models=["c"])
    with pytest.raises(ValueError, match="numeric"):
        inference.as_wide(pd.DataFrame({"a": ["x", "y"]}))


def test_cohens_dz_known_data():
    # d = 1..5: mean 3, sd (ddof=1) = sqrt(10/4) = 1.5811388, d_z = 3 / 1.5811388 = 1.8973666.
    assert inference.cohens_dz([1, 2, 3, 4, 5]) == pytest.approx(3 / math.sqrt(2.5), rel=1e-12)
    assert inference.cohens_dz([-1, -2, -3, -4, -5]) == pytest.approx(-3 / math.sqrt(2.5), rel=1e-12)


def test_cohens_dz_degenerate():
    assert math.isnan(inference.cohens_dz([0.0, 0.0, 0.0]))
    assert inference.cohens_dz([0.2, 0.2]) == math.inf
    assert inference.cohens_dz([-0.2, -0.2]) == -math.inf
    assert math.isnan(inference.cohens_dz([0.5]))


def test_hedges_correction_exact_values():
    # J(4) = Gamma(2) / (sqrt(2) Gamma(1.5)) = 1 / (sqrt(2) * sqrt(pi) / 2) = sqrt(2 / pi) = 0.7978846.
    assert inference.hedges_correction(4) == pytest.approx(math.sqrt(2 / math.pi), rel=1e-12)
    # J(8) = Gamma(4) / (2 Gamma(3.5)) = 6 / (2 * 15 sqrt(pi) / 8) = 8 / (5 sqrt(pi)) = 0.9027033.
    assert inference.hedges_correction(8) == pytest.approx(8 / (5 * math.sqrt(math.pi)), rel=1e-12)
    # The textbook approximation 1 - 3 / (4 df - 1) agrees to ~1e-3 at df = 8 and ~1e-6 at df = 100.
    assert inference.hedges_correction(8) == pytest.approx(1 - 3 / 31, abs=1e-3)
    assert inference.hedges_correction(100) == pytest.approx(1 - 3 / 399, abs=1e-5)
    assert math.isnan(inference.hedges_correction(1))
    with pytest.raises(TypeError, match="df"):
        inference.hedges_correction("8")


def test_sign_flip_exact_hand_values():
    # d = [1, 2, 3]: the 8 signed sums are +-6, +-4, +-2, 0, 0; |sum| >= 6 twice -> p = 2/8.
    assert inference.sign_flip_test([1, 2, 3]).p_value == 0.25
    # d = [3, -1, 2]: observed |4|; sums with |s| >= 4 are 6, -6, 4, -4 -> p = 4/8.
    assert inference.sign_flip_test([3, -1, 2]).p_value == 0.5
    # d = [1, 2, -3]: observed sum 0, every vector reaches it -> p = 1.
    assert inference.sign_flip_test([1, 2, -3]).p_value == 1.0
    # All nine differences positive: only the observed vector and its mirror -> p = 2/512.
    result = inference.sign_flip_test(np.linspace(0.1, 0.9, 9))
    assert result.p_value == 2 / 512 == result.min_attainable_p
    assert result.exact and result.n_sign_vectors == 512
    assert result.method == "exact sign-flip (all 2^9 = 512 sign vectors)"


def test_sign_flip_counts_float_ties():
    # 0.1 + 0.2 and 0.3 differ in floating point; the flipped configuration (+0.1, +0.2, -0.3) sums to ~0
    # and so does the observed one, so all 8 vectors tie with the observed |sum| ~ 0.
    assert inference.sign_flip_test([0.1, 0.2, -0.3]).p_value == 1.0


@pytest.mark.parametrize("n", [3, 9, 12])
def test_sign_flip_matches_scipy_exact_permutation_test(n):
    d = np.random.default_rng(n).normal(0.3, 1.0, size=n)
    ref = sps.permutation_test(
        (d,), lambda x, axis: np.mean(x, axis=axis), permutation_type="samples", n_resamples=np.inf
    )
    assert inference.sign_flip_test(d).p_value == pytest.approx(ref.pvalue, rel=1e-12)


def test_sign_flip_monte_carlo_agrees_with_exact_and_says_so():
    d = np.random.default_rng(11).normal(0.4, 1.0, size=16)
    exact = inference.sign_flip_test(d)
    approx = inference.sign_flip_test(d, max_exact_n=10, n_permutations=20_000, seed=4)
    assert not approx.exact
    assert approx.method.startswith("Monte Carlo sign-flip (20000 random sign vectors")
    assert approx.min_attainable_p == 1 / 20_001
    # Binomial standard error of a Monte Carlo p-value with B = 20000.
    assert abs(approx.p_value - exact.p_value) < 4 * math.sqrt(exact.p_value * (1 - exact.p_value) / 20_000)


def test_sign_flip_validation():
    with pytest.raises(ValueError, match="differences must be finite"):
        inference.sign_flip_test([1.0, np.inf])
    with pytest.raises(ValueError, match="max_exact_n must be <= 24"):
        inference.sign_flip_test([1.0], max_exact_n=30)


def test_min_attainable_p():
    assert inference.min_attainable_p(9) == 1 / 256
    # 6 models -> 15 pairs: Holm's smallest adjusted p is 15 * 2/512 = 0.0586 > 0.05.
    assert inference.min_attainable_p(9, n_comparisons=15) == 15 / 256
    assert inference.min_attainable_p(1) == 1.0
    assert inference.min_attainable_p(3, n_comparisons=10) == 1.0
    with pytest.raises(ValueError, match="n_units must be >= 1"):
        inference.min_attainable_p(0)


def test_attainable_p_table():
    table = inference.attainable_p_table([9, 12], [4, 6])
    # N = 9: 2/512 = 1/256; k = 4 -> 6 pairs -> 6/256 = 0.0234 (can reject); k = 6 -> 15/256 = 0.0586 (cannot).
    # N = 12: 2/4096; k = 6 -> 30/4096 = 0.0073.
    assert table["n_pairs"].tolist() == [6, 15, 6, 15]
    assert table["min_p_holm"].tolist() == pytest.approx([6 / 256, 15 / 256, 12 / 4096, 30 / 4096])
    assert table["can_reject"].tolist() == [True, False, True, True]
    with pytest.raises(ValueError, match="n_models must be >= 2"):
        inference.attainable_p_table(9, 1)


def test_holm_hand_values_and_monotonicity():
    # Sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06.
    adjusted = inference.holm_adjust([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert inference.holm_adjust([0.5, 0.6]).tolist() == [1.0, 1.0]
    assert inference.holm_adjust([]).size == 0


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
    assert inference.holm_adjust(p) == pytest.approx(expected, rel=1e-12)


def test_holm_properties():
    p = np.random.default_rng(0).uniform(size=20)
    adjusted = inference.holm_adjust(p)
    assert (adjusted >= p).all() and (adjusted <= 1).all()
    order = np.argsort(p)
    assert (np.diff(adjusted[order]) >= 0).all()
    with pytest.raises(ValueError, match=r"p_values must be finite and in \[0, 1\]"):
        inference.holm_adjust([0.1, 1.2])


def test_friedman_known_table():
    # Rank sums R = (5, 8, 11); chi2 = 12 / (n k (k+1)) sum R^2 - 3 n (k+1) = 12/48 * 210 - 48 = 4.5.
    # df = 2, so p = exp(-4.5 / 2). Iman-Davenport F = (n-1) chi2 / (n(k-1) - chi2) = 13.5 / 3.5.
    result = inference.friedman_test(FRIEDMAN_TABLE, higher_is_better=True)
    assert result.statistic == pytest.approx(4.5, rel=1e-12)
    assert result.p_value == pytest.approx(math.exp(-2.25), rel=1e-12)
    assert result.iman_davenport == pytest.approx(13.5 / 3.5, rel=1e-12)
    assert result.iman_davenport_p == pytest.approx(sps.f.sf(13.5 / 3.5, 2, 6), rel=1e-12)
    assert result.mean_ranks.tolist() == pytest.approx([5 / 4, 8 / 4, 11 / 4])
    assert (result.n, result.k, result.n_omitted) == (4, 3, 0)
    # Reversing the direction reverses the ranks and leaves chi2 unchanged.
    reverse = inference.friedman_test(FRIEDMAN_TABLE, higher_is_better=False)
    assert reverse.statistic == pytest.approx(4.5) and reverse.mean_ranks.tolist() == pytest.approx([2.75, 2, 1.25])


@pytest.mark.parametrize("seed", range(4))
def test_friedman_matches_scipy_with_ties(seed):
    rng = np.random.default_rng(seed)
    matrix = rng.integers(0, 4, size=(9, 5)).astype(float)  # many ties
    ours = inference.friedman_test(matrix, higher_is_better=True)
    ref = sps.friedmanchisquare(*matrix.T)
    assert ours.statistic == pytest.approx(ref.statistic, rel=1e-10)
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-10)


def test_nemenyi_skipped_when_friedman_does_not_reject():
    # Two models, four units, each model best on two units: equal mean ranks 1.5, chi2 = 0, F_F = 0, p = 1.
    data = _long([[1, 2], [2, 1], [1, 2], [2, 1]], models=["a", "b"])
    result = inference.friedman_then_nemenyi(data, higher_is_better=True)
    assert result.friedman.iman_davenport_p == pytest.approx(1.0)
    assert not result.rejects and result.nemenyi is None and result.verdict == "no difference detected"
    ax = figures.plot_friedman_nemenyi(result)
    assert any("no difference detected" in t.get_text() for t in ax.texts)
    plt.close("all")


def test_nemenyi_run_when_friedman_rejects():
    # Model a best on all 10 units of three models: mean ranks 1, 2, 3, chi2 = 20 (its maximum 2 N), so
    # F_F = (N - 1) chi2 / (N (k - 1) - chi2) is infinite and p = 0: the post-hoc test runs.
    data = _long([[3, 2, 1]] * 10, models=["a", "b", "c"])
    result = inference.friedman_then_nemenyi(data, higher_is_better=True)
    assert result.friedman.statistic == pytest.approx(20.0) and result.friedman.iman_davenport_p == 0.0
    assert result.rejects and result.nemenyi is not None
    assert result.nemenyi.mean_ranks.to_dict() == {"a": 1.0, "b": 2.0, "c": 3.0}
    ax = figures.plot_friedman_nemenyi(result)
    assert "Iman-Davenport p = 0" in ax.get_title()
    plt.close("all")


def test_friedman_omits_incomplete_units():
    matrix = np.vstack([FRIEDMAN_TABLE, [0.1, np.nan, 0.2]])
    result = inference.friedman_test(matrix, higher_is_better=True, nan_policy="omit")
    assert (result.n, result.n_omitted) == (4, 1)
    assert result.statistic == pytest.approx(4.5)


def test_friedman_all_tied_is_nan():
    result = inference.friedman_test(np.ones((3, 3)), higher_is_better=True)
    assert math.isnan(result.statistic)


@pytest.mark.parametrize("k", range(2, 11))
def test_nemenyi_q_matches_demsar_table(k):
    # Demsar (2006) Table 5a divides studentized-range table values (themselves rounded to 3 decimals, e.g.
    # q(3, inf) = 3.314 -> 2.3434 against the exact 2.3437) by sqrt(2) and rounds again: the two roundings
    # bound the discrepancy by 0.0005 / sqrt(2) + 0.0005 < 1e-3.
    assert inference.nemenyi_q(k, alpha=0.05) == pytest.approx(DEMSAR_Q_005[k], abs=1e-3)
    assert inference.nemenyi_q(k, alpha=0.10) == pytest.approx(DEMSAR_Q_010[k], abs=1e-3)


def test_nemenyi_critical_difference_hand_values():
    # Demsar's worked example: k = 4, N = 14: CD = 2.569 sqrt(20 / 84) = 1.2535 ("1.25").
    assert inference.nemenyi_critical_difference(4, 14) == pytest.approx(2.569 * math.sqrt(20 / 84), abs=5e-4)
    # The study's setting: k = 6, N = 9: CD = 2.850 sqrt(42 / 54) = 2.5135.
    assert inference.nemenyi_critical_difference(6, 9) == pytest.approx(2.850 * math.sqrt(42 / 54), abs=5e-4)
    with pytest.raises(ValueError, match="k must be >= 2"):
        inference.nemenyi_critical_difference(1, 9)


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
    result = inference.nemenyi_test(_long(matrix, models=["a", "b", "c"]), higher_is_better=True)
    assert result.mean_ranks.tolist() == [1.0, 2.0, 3.0]
    assert result.groups == expected_groups
    n_significant = {2: 0, 5: 1, 20: 3}[n_units]
    assert int(result.pairwise["significant"].sum()) == n_significant


def test_nemenyi_two_models_is_a_normal_test():
    # k = 2: the studentized range of two standard normals is |Z1 - Z2| ~ sqrt(2) |N(0, 1)|, so the Nemenyi
    # p-value is the two-sided normal p of dR / sqrt(k (k+1) / (6 N)). Model a wins all N = 6 units:
    # dR = 1, scale = sqrt(6 / 36), z = sqrt(6) = 2.449, p = 2 (1 - Phi(2.449)) = 0.0143.
    result = inference.nemenyi_test(np.tile([0.9, 0.1], (6, 1)), higher_is_better=True)
    assert result.pairwise.loc[0, "p_value"] == pytest.approx(2 * sps.norm.sf(math.sqrt(6)), rel=1e-6)
    assert result.critical_difference == pytest.approx(1.959964 * math.sqrt(1 / 6), rel=1e-6)


def test_nemenyi_p_values_agree_with_critical_difference():
    rng = np.random.default_rng(5)
    for _ in range(5):
        matrix = rng.normal(size=(12, 5)) + np.linspace(0, 1.5, 5)
        result = inference.nemenyi_test(matrix, higher_is_better=False)
        table = result.pairwise
        assert ((table["p_value"] <= result.alpha) == table["significant"]).all()
        assert (table["rank_difference"] >= result.critical_difference).eq(table["significant"]).all()
        assert list(result.mean_ranks) == sorted(result.mean_ranks)
