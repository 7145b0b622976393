"""Tests of helpers.stats.inference.equivalence: a hand-derived case first, then cross-checks against statsmodels'
``ttost_paired``, pingouin's ``tost`` and scipy's ``permutation_test``, edge cases and the smallest margin."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pingouin
import pytest
from scipy import stats as sps
from statsmodels.stats.weightstats import ttost_paired

from helpers.stats import inference
from helpers.stats.inference import (
    EquivalenceResult, signflip_equivalence, smallest_equivalence_margin, tost_paired,
)

# d = a - b = (0.01, -0.01, 0.02, 0.00): n = 4, mean 0.005, deviations (0.005, -0.015, 0.015, -0.005),
# sum of squares 5e-4, variance 5e-4 / 3, se^2 = variance / 4 = 1 / 24000.
HAND_A = np.array([0.81, 0.79, 0.82, 0.80])
HAND_B = np.array([0.80, 0.80, 0.80, 0.80])


def _random_sets(count, n_range, seed):
    """Paired Dice-like sets with true shifts and spreads chosen so that some are equivalent at margins 0.01 and
    0.02 and some are not: (a, b, margin)."""
    rng = np.random.default_rng(seed)
    sets = []
    for k in range(count):
        n = int(rng.integers(*n_range))
        shift = (0.0, 0.004, 0.012, 0.03)[k % 4]
        spread = (0.004, 0.01, 0.02)[k % 3]
        a = rng.uniform(0.6, 0.9, n)
        b = a - (shift + spread * rng.standard_normal(n))
        sets.append((a, b, (0.01, 0.02)[k % 2]))
    return sets


# ------------------------------------------------------------------------------------------------ hand-derived


def test_tost_paired_hand_derived():
    margin = 0.05
    se = math.sqrt(1 / 24000)
    t_lower, t_upper = (0.005 + margin) / se, (0.005 - margin) / se  # 8.5206 and -6.9714
    assert t_lower == pytest.approx(8.5206, abs=1e-4) and t_upper == pytest.approx(-6.9714, abs=1e-4)
    p_lower, p_upper = sps.t.sf(t_lower, 3), sps.t.sf(-t_upper, 3)  # P(T >= t_lower), P(T <= t_upper)
    quantile = sps.t.ppf(0.95, 3)
    assert quantile == pytest.approx(2.3534, abs=1e-4)  # t table, df = 3, one-sided 5 %

    result = tost_paired(HAND_A, HAND_B, margin=margin)
    assert isinstance(result, EquivalenceResult) and result.method == "TOST paired t" and result.reason is None
    assert result.n == 4 and result.margin == margin and result.alpha == 0.05
    assert result.mean_difference == pytest.approx(0.005, rel=1e-9)
    assert result.sd_difference == pytest.approx(math.sqrt(5e-4 / 3), rel=1e-9)  # 0.012910
    assert result.p_lower == pytest.approx(p_lower, rel=1e-8)
    assert result.p_upper == pytest.approx(p_upper, rel=1e-8)
    assert result.p_value == pytest.approx(max(p_lower, p_upper), rel=1e-8) == result.p_upper
    assert 0.001 < result.p_value < 0.01 and result.equivalent
    assert result.ci_low == pytest.approx(0.005 - quantile * se, rel=1e-8)  # -0.010190
    assert result.ci_high == pytest.approx(0.005 + quantile * se, rel=1e-8)  # 0.020190
    assert smallest_equivalence_margin(HAND_A, HAND_B) == pytest.approx(0.005 + quantile * se, rel=1e-8)
    # at margin 0.02 the 90 % interval (-0.0102, 0.0202) reaches past +0.02: not equivalent
    assert not tost_paired(HAND_A, HAND_B, margin=0.02).equivalent
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.equivalent = False


def test_signflip_hand_derived():
    # d + 0.05 > 0 and d - 0.05 < 0 for every unit: only the observed sign vector reaches each observed sum
    result = signflip_equivalence(HAND_A, HAND_B, margin=0.05)
    assert result.method == "TOST sign-flip (exact)"
    assert result.p_lower == result.p_upper == result.p_value == 1 / 16
    assert not result.equivalent and math.isnan(result.ci_low) and math.isnan(result.ci_high)
    assert "smallest attainable one-sided p is 1/2^4 = 0.0625 > alpha = 0.05" in result.reason
    # margin 0.012: d'' = d - 0.012 = (-0.002, -0.022, 0.008, -0.012), sum -0.028. With P the magnitudes kept
    # positive, sum(s d'') = 2 sum(P) - 0.044 <= -0.028 iff sum(P) <= 0.008: P = {}, {0.002}, {0.008} (observed),
    # so p_upper = 3/16; d' = d + 0.012 > 0 everywhere, so p_lower = 1/16 (the observed vector only)
    result = signflip_equivalence(HAND_A, HAND_B, margin=0.012, alpha=0.2)
    assert result.p_upper == 3 / 16 and result.p_lower == 1 / 16 and result.p_value == 3 / 16 and result.equivalent
    assert result.reason is None


# ------------------------------------------------------------------------------------------------ cross-checks


def test_tost_paired_matches_statsmodels_and_pingouin():
    sets = _random_sets(24, (5, 41), seed=21)
    verdicts = []
    for a, b, margin in sets:
        result = tost_paired(a, b, margin=margin)
        p_sm, (_, p1_sm, _), (_, p2_sm, _) = ttost_paired(a, b, -margin, margin)  # md = mean(a - b)
        assert result.p_lower == pytest.approx(p1_sm, rel=1e-10, abs=0)
        assert result.p_upper == pytest.approx(p2_sm, rel=1e-10, abs=0)
        assert result.p_value == pytest.approx(p_sm, rel=1e-10, abs=0)
        p_pg = pingouin.tost(a, b, bound=float(margin), paired=True).at["TOST", "pval"]
        assert result.p_value == pytest.approx(p_pg, rel=1e-10, abs=0)
        assert result.equivalent == (p_sm <= 0.05) == (p_pg <= 0.05)
        verdicts.append(result.equivalent)
    assert 5 <= sum(verdicts) <= len(verdicts) - 5  # both verdicts are exercised
    assert min(a.size for a, _, _ in sets) <= 10 and max(a.size for a, _, _ in sets) >= 30


def _mean(x, axis):
    return np.mean(x, axis=axis)


def test_signflip_matches_scipy_permutation_test():
    sets = _random_sets(24, (5, 13), seed=7)
    verdicts = []
    for a, b, margin in sets:
        result = signflip_equivalence(a, b, margin=margin, alpha=0.05)
        d = a - b
        lower = sps.permutation_test((d + margin,), _mean, permutation_type="samples", alternative="greater",
                                     vectorized=True, n_resamples=np.inf)
        upper = sps.permutation_test((d - margin,), _mean, permutation_type="samples", alternative="less",
                                     vectorized=True, n_resamples=np.inf)
        assert result.method == "TOST sign-flip (exact)"
        assert result.p_lower == pytest.approx(lower.pvalue, rel=1e-12)
        assert result.p_upper == pytest.approx(upper.pvalue, rel=1e-12)
        assert result.p_value == pytest.approx(max(lower.pvalue, upper.pvalue), rel=1e-12)
        verdicts.append(result.equivalent)
    assert any(verdicts) and not all(verdicts)


def _exact_one_sided(x, side):
    """Exact sign-flip p by plain enumeration of the two halves' sign sums."""
    def sums(part):
        out = np.zeros(1)
        for value in part:
            out = np.concatenate([out + value, out - value])
        return out

    h = x.size // 2
    every = np.add.outer(sums(x[:h]), sums(x[h:])).ravel()
    observed = x.sum()
    return np.mean(every >= observed - 1e-12) if side == "greater" else np.mean(every <= observed + 1e-12)


def test_signflip_monte_carlo_is_seeded_and_near_the_exact_p():
    rng = np.random.default_rng(3)
    a = rng.uniform(0.7, 0.9, 22)
    b = a - (0.002 + 0.015 * rng.standard_normal(22))
    margin = 0.01
    result = signflip_equivalence(a, b, margin=margin, n_permutations=20_000, seed=5)
    assert result.method == "TOST sign-flip (Monte Carlo, 20000 permutations)"
    assert result == signflip_equivalence(a, b, margin=margin, seed=5)  # default B = 20000, same seed
    assert result != signflip_equivalence(a, b, margin=margin, seed=6)
    d = a - b
    for p, exact in ((result.p_lower, _exact_one_sided(d + margin, "greater")),
                     (result.p_upper, _exact_one_sided(d - margin, "less"))):
        se = math.sqrt(exact * (1 - exact) / 20_000)
        assert abs(p - exact) < 4 * se + 1 / 20_001
    few = signflip_equivalence(a, b, margin=margin, n_permutations=10, seed=0)
    assert few.p_value >= 1 / 11 and "1/(1 + 10)" in few.reason


# ------------------------------------------------------------------------------------------------ edge cases


def test_one_unit():
    result = tost_paired([0.8], [0.8], margin=0.01)
    assert result.n == 1 and not result.equivalent and "n = 1" in result.reason
    assert math.isnan(result.p_value) and math.isnan(result.sd_difference) and math.isnan(result.ci_low)
    assert smallest_equivalence_margin([0.8], [0.8]) == math.inf
    flip = signflip_equivalence([0.8], [0.8], margin=0.01)
    assert flip.p_value == 0.5 and not flip.equivalent and "1/2^1" in flip.reason


def test_zero_variance_inside_and_outside_the_margin():
    a = np.array([0.5, 0.75, 0.25, 0.625, 0.875, 0.375])
    inside = tost_paired(a, a - 0.0078125, margin=0.01)  # 2^-7: every difference exactly 0.0078125
    assert inside.equivalent and inside.p_value == inside.p_lower == inside.p_upper == 0.0
    assert inside.sd_difference == 0.0 and inside.ci_low == inside.ci_high == 0.0078125
    assert "zero variance" in inside.reason and "strictly inside the margin: equivalent, p = 0" in inside.reason
    for margin in (0.0078125, 0.005):  # on the margin, outside it
        outside = tost_paired(a, a - 0.0078125, margin=margin)
        assert not outside.equivalent and outside.p_value == outside.p_upper == 1.0 and outside.p_lower == 0.0
        assert "on or outside the margin: not equivalent, p = 1" in outside.reason
    assert tost_paired(a, a, margin=0.01).equivalent  # identical models
    assert smallest_equivalence_margin(a, a - 0.0078125) == 0.0078125
    flip = signflip_equivalence(a, a - 0.0078125, margin=0.01)  # 6 units: 1/64 per side
    assert flip.p_value == 1 / 64 and flip.equivalent and flip.reason is None


def test_invalid_arguments():
    with pytest.raises(ValueError, match=r"a must be finite, got 1 non-finite value\(s\) at position 2: nan"):
        tost_paired([0.8, 0.7, np.nan], [0.8, 0.7, 0.6], margin=0.01)
    with pytest.raises(ValueError, match=r"b must be finite, got 1 non-finite value\(s\) at position 0: nan"):
        signflip_equivalence([0.8, 0.7], [np.nan, 0.7], margin=0.01)
    with pytest.raises(ValueError, match=r"b must be finite, got 1 non-finite value\(s\) at position 1: nan"):
        smallest_equivalence_margin([0.8, 0.7], [0.8, np.nan])
    with pytest.raises(ValueError, match=r"a and b must have the same length \(one value per paired unit\), got a 3 "
                                         r"and b 2"):
        tost_paired([0.8, 0.7, 0.6], [0.8, 0.7], margin=0.01)
    with pytest.raises(ValueError, match="margin must be finite and > 0, got -0.01"):
        tost_paired([0.8, 0.7], [0.8, 0.7], margin=-0.01)
    with pytest.raises(ValueError, match="margin must be finite and > 0, got 0.0"):
        signflip_equivalence([0.8, 0.7], [0.8, 0.7], margin=0)
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 0.5\), got 0.5"):
        tost_paired([0.8, 0.7], [0.8, 0.7], margin=0.01, alpha=0.5)
    with pytest.raises(ValueError, match="n_permutations must be >= 1, got 0"):
        signflip_equivalence([0.8, 0.7], [0.8, 0.7], margin=0.01, n_permutations=0)
    with pytest.raises(ValueError, match=r"a must have at least 1 value\(s\), got 0"):
        tost_paired([], [], margin=0.01)


# ------------------------------------------------------------------------------------------------ properties


def test_equivalence_iff_margin_above_the_smallest_margin():
    rng = np.random.default_rng(11)
    for _ in range(30):
        n = int(rng.integers(3, 30))
        a = rng.uniform(0.6, 0.9, n)
        b = a - (rng.normal(0, 0.01) + rng.uniform(0.002, 0.03) * rng.standard_normal(n))
        alpha = float(rng.choice([0.05, 0.025, 0.1]))
        smallest = smallest_equivalence_margin(a, b, alpha=alpha)
        above = tost_paired(a, b, margin=smallest * (1 + 1e-6), alpha=alpha)
        below = tost_paired(a, b, margin=smallest * (1 - 1e-6), alpha=alpha)
        assert above.equivalent and not below.equivalent
        assert above.p_value <= alpha < below.p_value
        assert smallest == pytest.approx(max(abs(above.ci_low), abs(above.ci_high)), rel=1e-12)
        assert above.ci_low > -above.margin and above.ci_high < above.margin


def test_reexported_from_the_inference_package():
    for name in ("EquivalenceResult", "tost_paired", "signflip_equivalence", "smallest_equivalence_margin"):
        assert name in inference.__all__ and getattr(inference, name) is not None
