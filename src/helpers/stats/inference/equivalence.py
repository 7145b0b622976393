"""Paired equivalence tests: is "similar Dice" between two models a claim the data support?

"The models have similar Dice" is a claim of equivalence, and a non-significant difference test does not make it
(absence of evidence is not evidence of absence). An equivalence test reverses the hypotheses: the null is that the
mean paired difference lies outside a margin fixed in advance, and only rejecting it supports "similar". Here the
paired units are cases (or folds, seeds); a difference test of the same pairs: :mod:`helpers.stats.inference.paired`.

Imports: numpy, scipy and :mod:`helpers.base.checks`.

Definitions
-----------
* Differences ``d_i = a_i - b_i`` over the n paired units, in the metric's unit (Dice: unitless). The margin
  ``m > 0`` is given by the caller in that unit; a region of practical equivalence of +/-0.01 Dice follows
  Benavoli et al. (2017), who use +/-0.01 on accuracy-like scores.
* TOST (two one-sided tests, Schuirmann 1987; Lakens 2017): H0_lower: mean(d) <= -m against mean(d) > -m, and
  H0_upper: mean(d) >= +m against mean(d) < +m. Equivalence is declared when both are rejected at level alpha,
  i.e. when p = max(p_lower, p_upper) <= alpha. No multiplicity correction is needed (intersection-union test).
* Paired t version (:func:`tost_paired`): with mean, sd (ddof = 1), se = sd / sqrt(n) and df = n - 1,
  t_lower = (mean + m) / se, p_lower = P(T_df >= t_lower); t_upper = (mean - m) / se, p_upper = P(T_df <= t_upper).
  p <= alpha is the same as the 100 (1 - 2 alpha) % t-interval mean +/- t_{1-alpha, df} se (90 % for alpha = 0.05)
  lying inside [-m, +m]; in exact arithmetic the interval touches the margin exactly when p = alpha.
  Statistics as ``statsmodels.stats.weightstats.ttost_paired(a, b, -m, m)`` and
  ``pingouin.tost(a, b, bound=m, paired=True)`` (tests/test_equivalence.py compares them).
* Smallest equivalence margin (:func:`smallest_equivalence_margin`): max(|ci_low|, |ci_high|) of that interval:
  equivalence at margin m holds iff m > it (at m equal to it, p = alpha in exact arithmetic: a boundary of measure
  zero whose verdict floating-point rounding decides).
* Sign-flip version (:func:`signflip_equivalence`), for small n without assuming normality, only that each shifted
  difference is symmetric about 0 under the boundary null: H0_lower with d' = d + m, one-sided sign-flip test of
  mean(d') > 0, p_lower = #{s : sum(s d') >= sum(d')} / 2^n; H0_upper with d'' = d - m, test of mean(d'') < 0,
  p_upper = #{s : sum(s d'') <= sum(d'')} / 2^n; s runs over all 2^n sign vectors for n <= 20 (exact), else over
  ``n_permutations`` random ones with p = (1 + hits) / (1 + B) (Phipson & Smyth 2010). Its smallest attainable p is
  1 / 2^n: with alpha = 0.05 an exact sign-flip TOST cannot show equivalence with n <= 4 pairs, whatever the data.

Degenerate data (stated per function): fewer than 2 units (no variance estimate for the t version) and differences
of zero variance (t undefined: the verdict follows from where the one common difference lies) are reported through
the result's ``reason``, never as an error and never by dropping units. A NaN in ``a`` or ``b`` is an error naming
the argument and the position.

References
----------
Benavoli A, Corani G, Demsar J, Zaffalon M. Time for a change: a tutorial for comparing multiple classifiers through
Bayesian analysis. J Mach Learn Res 18(77):1-36, 2017.
Lakens D. Equivalence tests: a practical primer for t tests, correlations, and meta-analyses. Soc Psychol Personal
Sci 8(4):355-362, 2017.
Phipson B, Smyth GK. Permutation p-values should never be zero. Stat Appl Genet Mol Biol 9(1), 2010.
Schuirmann DJ. A comparison of the two one-sided tests procedure and the power approach for assessing the
equivalence of average bioavailability. J Pharmacokinet Biopharm 15(6):657-680, 1987.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from helpers.base.checks import as_count, as_level, as_paired_vectors, as_positive, as_rng
from helpers.stats.inference.paired import all_sign_sums

__all__ = ["EquivalenceResult", "tost_paired", "signflip_equivalence", "smallest_equivalence_margin"]

_MAX_EXACT_N = 20
_DEFAULT_PERMUTATIONS = 20_000
_T_METHOD = "TOST paired t"


@dataclass(frozen=True)
class EquivalenceResult:
    """Result of :func:`tost_paired` or :func:`signflip_equivalence`: H0 |mean(a - b)| >= margin tested by two
    one-sided tests.

    Attributes
    ----------
    n : int
        Paired units.
    mean_difference, sd_difference : float
        Mean and standard deviation (ddof = 1; NaN for n < 2) of d = a - b.
    margin, alpha : float
        The equivalence margin (equivalence region (-margin, +margin)) and the level of each one-sided test.
    ci_low, ci_high : float
        The 100 (1 - 2 alpha) % t-interval of the mean difference (90 % at alpha = 0.05); NaN when it cannot be
        computed (n < 2) and always NaN for the sign-flip test, which does not invert to this interval.
    p_lower, p_upper : float
        One-sided p-values of H0 mean(d) <= -margin and of H0 mean(d) >= +margin.
    p_value : float
        max(p_lower, p_upper): the TOST p-value; NaN when it cannot be computed.
    equivalent : bool
        p_value <= alpha: both one-sided nulls rejected, the difference lies within the margin.
    method : str
        ``"TOST paired t"``, ``"TOST sign-flip (exact)"`` or ``"TOST sign-flip (Monte Carlo, B permutations)"``.
    reason : str or None
        None when the test ran on ordinary data; otherwise why it could not be computed, what was returned instead,
        or why no verdict of equivalence is attainable at this n.
    """

    n: int
    mean_difference: float
    sd_difference: float
    margin: float
    alpha: float
    ci_low: float
    ci_high: float
    p_lower: float
    p_upper: float
    p_value: float
    equivalent: bool
    method: str
    reason: str | None = None


def _differences(a, b) -> np.ndarray:
    a, b = as_paired_vectors(a, b, ("a", "b"))
    return a - b


def _summary(d: np.ndarray, alpha: float) -> tuple[float, float, float, float]:
    """mean, sd (ddof = 1), and the 1 - 2 alpha t-interval of the mean of ``d``; zero variance (all differences
    identical) gives the point interval at the common value, n < 2 NaN for sd and interval."""
    n = d.size
    if n < 2:
        return float(d.mean()), np.nan, np.nan, np.nan
    if np.ptp(d) == 0.0:  # all identical: the mean is that value exactly (np.mean may round)
        value = float(d[0])
        return value, 0.0, value, value
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    half = float(stats.t.ppf(1.0 - alpha, n - 1)) * sd / np.sqrt(n)
    return mean, sd, mean - half, mean + half


def tost_paired(a, b, *, margin, alpha=0.05) -> EquivalenceResult:
    """Paired TOST: two one-sided paired t-tests of H0 mean(a - b) <= -margin and H0 mean(a - b) >= +margin.

    Parameters
    ----------
    a, b : array_like, 1-D, same length
        One value per paired unit (case) for each model, finite (a NaN is an error naming the argument and the
        position).
    margin : float > 0
        Equivalence margin in the metric's unit (e.g. 0.01 Dice).
    alpha : float in (0, 0.5)
        Level of each one-sided test; the interval reported is 100 (1 - 2 alpha) %.

    Returns
    -------
    EquivalenceResult
        p_value = max(p_lower, p_upper), equivalent = p_value <= alpha, which is the same as the 1 - 2 alpha
        t-interval lying inside [-margin, +margin]. Degenerate data, with ``reason`` set:

        * n = 1: no variance estimate; p-values, sd and interval NaN, not equivalent.
        * zero variance (all differences identical, = c): t is undefined; the interval is the point c. If c lies
          strictly inside (-margin, +margin), equivalent with p_lower = p_upper = p_value = 0; if on or outside the
          margin, not equivalent with p_value = 1 (the side that c violates has p = 1, the other p = 0).
    """
    d = _differences(a, b)
    margin = as_positive(margin, "margin")
    alpha = as_level(alpha, "alpha", below=0.5)
    n = d.size
    mean, sd, low, high = _summary(d, alpha)
    common = dict(n=n, mean_difference=mean, sd_difference=sd, margin=margin, alpha=alpha, ci_low=low, ci_high=high,
                  method=_T_METHOD)
    if n < 2:
        return EquivalenceResult(**common, p_lower=np.nan, p_upper=np.nan, p_value=np.nan, equivalent=False,
                                 reason="n = 1 paired unit: no variance estimate, the t-test cannot be computed; "
                                        "p-values NaN, not equivalent")
    if sd == 0.0:
        p_lower = 0.0 if mean > -margin else 1.0
        p_upper = 0.0 if mean < margin else 1.0
        inside = p_lower == 0.0 and p_upper == 0.0
        verdict = ("strictly inside the margin: equivalent, p = 0" if inside
                   else "on or outside the margin: not equivalent, p = 1")
        return EquivalenceResult(**common, p_lower=p_lower, p_upper=p_upper, p_value=max(p_lower, p_upper),
                                 equivalent=inside,
                                 reason=f"zero variance: all {n} differences equal {mean!r}, t undefined; {verdict}")
    se = sd / np.sqrt(n)
    p_lower = float(stats.t.sf((mean + margin) / se, n - 1))
    p_upper = float(stats.t.cdf((mean - margin) / se, n - 1))
    p_value = max(p_lower, p_upper)
    return EquivalenceResult(**common, p_lower=p_lower, p_upper=p_upper, p_value=p_value,
                             equivalent=bool(p_value <= alpha))


def _monte_carlo_counts(shifted_lower, shifted_upper, *, n_permutations, rng) -> tuple[int, int]:
    """Of ``n_permutations`` random sign vectors s (shared by both sides), how many reach sum(s d') >= sum(d') and
    how many sum(s d'') <= sum(d''), ties within 1e-9 sum(|x|) counted."""
    n = shifted_lower.size
    total_lower, total_upper = float(shifted_lower.sum()), float(shifted_upper.sum())
    tol_lower, tol_upper = 1e-9 * float(np.abs(shifted_lower).sum()), 1e-9 * float(np.abs(shifted_upper).sum())
    hits_lower = hits_upper = done = 0
    batch = max(1, min(n_permutations, 2**18 // n))
    while done < n_permutations:
        size = min(batch, n_permutations - done)
        # s = 2 b - 1 with b in {0, 1}^n: sum(s x) = 2 (b . x) - sum(x)
        bits = rng.integers(0, 2, (size, n), dtype=np.int8).astype(np.float64)
        hits_lower += int(np.count_nonzero(2.0 * (bits @ shifted_lower) - total_lower >= total_lower - tol_lower))
        hits_upper += int(np.count_nonzero(2.0 * (bits @ shifted_upper) - total_upper <= total_upper + tol_upper))
        done += size
    return hits_lower, hits_upper


def signflip_equivalence(a, b, *, margin, alpha=0.05, n_permutations=None, seed=0) -> EquivalenceResult:
    """TOST by two one-sided sign-flip (randomisation) tests: exact for n <= 20 paired units, Monte Carlo above.

    Parameters
    ----------
    a, b : array_like, 1-D, same length
        One value per paired unit (case) for each model, finite (a NaN is an error naming the argument and the
        position).
    margin : float > 0
        Equivalence margin in the metric's unit.
    alpha : float in (0, 0.5)
        Level of each one-sided test.
    n_permutations : int or None
        Random sign vectors for n > 20 (None: 20000); unused (but validated) for n <= 20.
    seed : int or numpy.random.Generator
        Used only by the Monte Carlo test (:func:`helpers.base.checks.as_rng`).

    Returns
    -------
    EquivalenceResult
        p_lower: one-sided sign-flip p of mean(d + margin) > 0; p_upper: of mean(d - margin) < 0; p_value their
        maximum; equivalent = p_value <= alpha. ``ci_low`` and ``ci_high`` are NaN: this test makes no t-interval
        (:func:`tost_paired` gives it). ``reason`` is set when the smallest attainable p (1 / 2^n exact,
        1 / (1 + B) Monte Carlo) exceeds alpha, so that equivalence cannot be shown at this n whatever the data
        (n <= 4 at alpha = 0.05); the p-values are still computed.

    Notes
    -----
    Exact: p_lower = #{s : sum(s d') >= sum(d')} / 2^n over all 2^n sign vectors s, counting the observed one, and
    likewise p_upper with <=; sums within 1e-9 sum(|x|) of the observed count as ties, so floating-point reordering
    never excludes the observed vector. Monte Carlo: p = (1 + hits) / (1 + B), one set of B sign vectors for both
    sides. Zero-variance differences need no special case here: d' = c + margin > 0 for all units gives
    p_lower = 1 / 2^n.
    """
    d = _differences(a, b)
    margin = as_positive(margin, "margin")
    alpha = as_level(alpha, "alpha", below=0.5)
    n_permutations = (_DEFAULT_PERMUTATIONS if n_permutations is None
                      else as_count(n_permutations, "n_permutations"))
    rng = as_rng(seed)
    n = d.size
    lower, upper = d + margin, d - margin
    if n <= _MAX_EXACT_N:
        sums_lower, sums_upper = all_sign_sums(lower), all_sign_sums(upper)
        total = 2**n
        hits_lower = int(np.count_nonzero(sums_lower >= lower.sum() - 1e-9 * np.abs(lower).sum()))
        hits_upper = int(np.count_nonzero(sums_upper <= upper.sum() + 1e-9 * np.abs(upper).sum()))
        p_lower, p_upper = hits_lower / total, hits_upper / total
        smallest, method, floor = 1.0 / total, "TOST sign-flip (exact)", f"1/2^{n}"
    else:
        hits_lower, hits_upper = _monte_carlo_counts(lower, upper, n_permutations=n_permutations, rng=rng)
        p_lower, p_upper = (1 + hits_lower) / (1 + n_permutations), (1 + hits_upper) / (1 + n_permutations)
        smallest = 1.0 / (1 + n_permutations)
        method, floor = f"TOST sign-flip (Monte Carlo, {n_permutations} permutations)", f"1/(1 + {n_permutations})"
    reason = None
    if smallest > alpha:
        reason = (f"n = {n}: the smallest attainable one-sided p is {floor} = {smallest:.4g} > alpha = {alpha:g}; "
                  f"equivalence cannot be shown at this n whatever the data")
    p_value = max(p_lower, p_upper)
    return EquivalenceResult(
        n=n, mean_difference=float(d.mean()), sd_difference=float(d.std(ddof=1)) if n > 1 else np.nan,
        margin=margin, alpha=alpha, ci_low=np.nan, ci_high=np.nan, p_lower=float(p_lower), p_upper=float(p_upper),
        p_value=float(p_value), equivalent=bool(p_value <= alpha), method=method, reason=reason,
    )


def smallest_equivalence_margin(a, b, *, alpha=0.05) -> float:
    """The smallest margin at which :func:`tost_paired` declares equivalence: max(|ci_low|, |ci_high|) of the
    100 (1 - 2 alpha) % t-interval of mean(a - b) (90 % at alpha = 0.05).

    Equivalence at margin m holds iff m > this value (at m equal to it, p = alpha in exact arithmetic, and rounding
    decides the verdict). Zero-variance differences (all equal to c): |c|, consistent with :func:`tost_paired`'s
    "strictly inside". n = 1: ``inf`` (no margin suffices: the test cannot be computed).
    """
    d = _differences(a, b)
    alpha = as_level(alpha, "alpha", below=0.5)
    _, _, low, high = _summary(d, alpha)
    if d.size < 2:
        return float("inf")
    return float(max(abs(low), abs(high)))
