"""Paired tests for benchmarking segmentation models on few evaluation units (cases, folds, seeds).

Is a paired difference distinguishable from zero at this N (sign-flip test, effect sizes, the smallest attainable
p), and which of many comparisons survive a family-wise correction (Holm)? Whether the models' ranks differ
beyond chance: :mod:`helpers.stats.inference.friedman`; the units x models table:
:mod:`helpers.stats.inference.wide`. Intervals and every resampling live in :mod:`helpers.stats.bootstrap`.

Imports: numpy, pandas, scipy and :mod:`helpers.base.checks`.

Conventions
-----------
Randomness
    Only through ``seed`` (an int, or a ``numpy.random.Generator`` that is consumed;
    :func:`helpers.base.checks.as_rng`). Results are a pure function of the inputs and the seed.
Units
    Statistics are in the unit of ``value`` (Dice: unitless; HD95: mm). Paired differences are
    ``model_a - model_b`` in that unit.

Definitions (with their variants named)
---------------------------------------
* Effect size: Cohen's d_z = mean(d) / sd(d) with sd using ddof=1 (Cohen 1988, paired design); Hedges'
  small-sample correction with the exact gamma-function factor J(df) = Gamma(df/2) / (sqrt(df/2)
  Gamma((df-1)/2)), df = n - 1 (Hedges 1981), not the approximation 1 - 3 / (4 df - 1).
* Paired test: two-sided sign-flip permutation test of the mean difference: under H0 each difference is
  equally likely to have either sign; p = #{sign vectors s : |sum(s d)| >= |sum(d)|} / 2^n, enumerating all
  2^n sign vectors for n <= ``max_exact_n`` (20), otherwise Monte Carlo with p = (1 + hits) / (1 + B)
  (Phipson & Smyth 2010). The smallest attainable exact p is 2 / 2^n (the observed vector and its mirror).
* Multiplicity: Holm (1979) step-down adjustment, made monotone, capped at 1.

References
----------
Hedges LV. Distribution theory for Glass's estimator of effect size. J Educ Stat 6(2):107-128, 1981.
Holm S. A simple sequentially rejective multiple test procedure. Scand J Stat 6:65-70, 1979.
Phipson B, Smyth GK. Permutation p-values should never be zero. Stat Appl Genet Mol Biol 9(1), 2010.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

from helpers.base.checks import as_count, as_level, as_rng

__all__ = [
    "cohens_dz", "hedges_correction", "SignFlipResult", "sign_flip_test", "min_attainable_p", "attainable_p_table",
    "holm_adjust", "all_sign_sums", "detectable_difference", "JointSignFlipResult", "joint_sign_flip_test",
]


def _differences(differences) -> np.ndarray:
    d = np.asarray(differences, dtype=float)
    if d.ndim != 1:
        raise ValueError(f"differences must be 1-D, got shape {d.shape}")
    if d.size == 0:
        raise ValueError("differences must not be empty")
    if not np.isfinite(d).all():
        raise ValueError("differences must be finite")
    return d


def cohens_dz(differences) -> float:
    """Cohen's d_z of paired differences: mean(d) / sd(d), sd with ddof=1.

    Returns NaN for fewer than 2 differences or when all differences are 0, and +/-inf when all differences
    are equal and non-zero (zero spread, non-zero mean).
    """
    d = _differences(differences)
    if d.size < 2:
        return float("nan")
    mean = float(np.mean(d))
    sd = float(np.std(d, ddof=1))
    if sd == 0.0 or np.ptp(d) == 0.0:
        return float("nan") if mean == 0.0 else float(np.copysign(np.inf, mean))
    return mean / sd


def hedges_correction(df) -> float:
    """Hedges' exact small-sample factor J(df) = Gamma(df/2) / (sqrt(df/2) Gamma((df - 1)/2)).

    For the paired design df = n - 1. J < 1 and tends to 1 as df grows; 1 - 3/(4 df - 1) approximates it.
    Defined for df > 1; NaN otherwise (at df = 1, J = 0, which would erase any effect).
    """
    if isinstance(df, bool) or not isinstance(df, (int, float, np.integer, np.floating)):
        raise TypeError(f"df must be a number, got {df!r}")
    if not df > 1:
        return float("nan")
    half = df / 2.0
    return float(np.exp(special.gammaln(half) - 0.5 * np.log(half) - special.gammaln(half - 0.5)))


@dataclass(frozen=True)
class SignFlipResult:
    """Result of :func:`sign_flip_test`.

    Attributes
    ----------
    p_value : float
        Two-sided p-value for H0: the differences are symmetric about 0.
    mean_difference : float
    n : int
    n_sign_vectors : int
        Sign vectors evaluated: 2^n (exact) or the number of random draws (Monte Carlo).
    exact : bool
    method : str
        E.g. ``"exact sign-flip (all 2^9 = 512 sign vectors)"`` or ``"Monte Carlo sign-flip (100000 random
        sign vectors, seed-controlled; n = 25 > max_exact_n = 20)"``.
    min_attainable_p : float
        2 / 2^n for the exact test, 1 / (1 + B) for Monte Carlo.
    """

    p_value: float
    mean_difference: float
    n: int
    n_sign_vectors: int
    exact: bool
    method: str
    min_attainable_p: float


def all_sign_sums(d: np.ndarray) -> np.ndarray:
    """All 2^n values of sum(s * d) over s in {-1, 1}^n (order irrelevant), built from two halves."""

    def half_sums(part):
        sums = np.zeros(1)
        for x in part:
            sums = np.concatenate([sums + x, sums - x])
        return sums

    h = d.size // 2
    return (half_sums(d[:h])[:, None] + half_sums(d[h:])[None, :]).ravel()


def _monte_carlo_hits(d: np.ndarray, *, n_permutations: int, rng: np.random.Generator, threshold: float) -> int:
    """How many of ``n_permutations`` random sign vectors s reach ``|sum(s d)| >= threshold``."""
    hits = 0
    total_d = float(np.sum(d))
    n = d.size
    batch = max(1, min(n_permutations, 2**18 // n))  # ~2 MB float blocks stay in cache
    done = 0
    while done < n_permutations:
        size = min(batch, n_permutations - done)
        # A sign vector s = 2 b - 1 with b in {0, 1}^n: sum(s d) = 2 (b . d) - sum(d); float BLAS matmul.
        bits = rng.integers(0, 2, (size, n), dtype=np.int8).astype(np.float64)
        hits += int(np.count_nonzero(np.abs(2.0 * (bits @ d) - total_d) >= threshold))
        done += size
    return hits


def sign_flip_test(
    differences,
    *,
    max_exact_n: int = 20,
    n_permutations: int = 100_000,
    seed=0,
) -> SignFlipResult:
    """Two-sided sign-flip permutation test of paired differences (exact up to ``max_exact_n`` units).

    Parameters
    ----------
    differences : array_like, 1-D
        Paired differences d_i = a_i - b_i, finite.
    max_exact_n : int
        Enumerate all 2^n sign vectors when n <= max_exact_n (at most 2^24); Monte Carlo above.
    n_permutations : int
        Random sign vectors for the Monte Carlo test.
    seed : int or numpy.random.Generator
        Used only by the Monte Carlo test.

    Returns
    -------
    SignFlipResult

    Notes
    -----
    Statistic |sum(d)| (equivalent to |mean(d)|). Exact p = #{s : |sum(s d)| >= |sum(d)|} / 2^n, counting the
    observed vector; Monte Carlo p = (1 + #hits) / (1 + B). Sums equal to the observed one up to a relative
    tolerance of 1e-9 of sum(|d|) count as ties (">="), so floating-point reordering never excludes the
    observed configuration. Zero differences keep their (null) contribution and all 2^n vectors are counted.
    """
    d = _differences(differences)
    max_exact_n = as_count(max_exact_n, "max_exact_n", minimum=0)
    if max_exact_n > 24:
        raise ValueError(f"max_exact_n must be <= 24 (2^24 sign vectors), got {max_exact_n}")
    n_permutations = as_count(n_permutations, "n_permutations")
    n = d.size
    observed = abs(float(np.sum(d)))
    tolerance = 1e-9 * float(np.sum(np.abs(d)))
    if n <= max_exact_n:
        sums = all_sign_sums(d)
        hits = int(np.count_nonzero(np.abs(sums) >= observed - tolerance))
        total = 2**n
        return SignFlipResult(
            p_value=hits / total,
            mean_difference=float(np.mean(d)),
            n=n,
            n_sign_vectors=total,
            exact=True,
            method=f"exact sign-flip (all 2^{n} = {total} sign vectors)",
            min_attainable_p=min(1.0, 2.0 / total),
        )
    hits = _monte_carlo_hits(d, n_permutations=n_permutations, rng=as_rng(seed), threshold=observed - tolerance)
    return SignFlipResult(
        p_value=(1 + hits) / (1 + n_permutations),
        mean_difference=float(np.mean(d)),
        n=n,
        n_sign_vectors=n_permutations,
        exact=False,
        method=(
            f"Monte Carlo sign-flip ({n_permutations} random sign vectors, seed-controlled; "
            f"n = {n} > max_exact_n = {max_exact_n})"
        ),
        min_attainable_p=1.0 / (1 + n_permutations),
    )


@dataclass(frozen=True)
class JointSignFlipResult:
    """Result of :func:`joint_sign_flip_test`: ``p_value``, the observed ``statistic`` (the largest standardised
    column sum), ``n`` units, ``n_columns`` (columns with a non-zero difference), ``n_sign_vectors``, ``exact``
    and ``method`` as :class:`SignFlipResult`."""

    p_value: float
    statistic: float
    n: int
    n_columns: int
    n_sign_vectors: int
    exact: bool
    method: str


def _sign_matrix(n: int, *, exact: bool, n_permutations: int, rng) -> np.ndarray:
    if exact:
        bits = (np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1
    else:
        bits = rng.integers(0, 2, (n_permutations, n), dtype=np.int8)
    return 2.0 * bits.astype(np.float64) - 1.0


def joint_sign_flip_test(differences, *, max_exact_n: int = 14, n_permutations: int = 10_000,
                         seed=0) -> JointSignFlipResult:
    """Sign-flip test of many paired comparisons on the same units at once (a family of specifications).

    Parameters
    ----------
    differences : array_like, 2-D ``(n_units, n_columns)``
        Column j holds the paired differences of comparison j per unit (e.g. a case's mean difference under
        specification j); 0 where a unit has no value in that comparison. Finite.
    max_exact_n, n_permutations, seed
        As :func:`sign_flip_test` (exact enumeration of all 2^n sign vectors up to ``max_exact_n`` units).

    Notes
    -----
    H0: every unit's whole row of differences is symmetric about 0 (the two models exchangeable within a unit,
    under every specification at once). One sign per unit flips the unit's entire row, so the dependence between
    the columns is kept. Statistic: ``max_j |sum_i s_i d_ij| / sqrt(sum_i d_ij^2)`` (each column's sum scaled by
    its sign-invariant norm; columns of zeros are left out), so the family of columns is one test (a max-type
    correction, Westfall and Young 1993). p as :func:`sign_flip_test`: the share of sign vectors reaching the
    observed statistic (exact, counting the observed one), or ``(1 + hits) / (1 + B)`` (Monte Carlo). NaN when
    no column has a non-zero difference.
    """
    d = np.asarray(differences, dtype=float)
    if d.ndim != 2 or d.shape[0] == 0:
        raise ValueError(f"differences must be a non-empty 2-D (units x columns) array, got shape {d.shape}")
    if not np.isfinite(d).all():
        raise ValueError("differences must be finite (put 0 where a unit has no value)")
    max_exact_n = as_count(max_exact_n, "max_exact_n", minimum=0)
    n_permutations = as_count(n_permutations, "n_permutations")
    norm = np.sqrt(np.sum(d**2, axis=0))
    d = d[:, norm > 0] / norm[norm > 0]
    n = d.shape[0]
    if d.shape[1] == 0:
        return JointSignFlipResult(float("nan"), float("nan"), n, 0, 0, True, "no column with a difference")
    observed = float(np.max(np.abs(d.sum(axis=0))))
    exact = n <= max_exact_n
    hits, total = 0, 0
    rng = None if exact else as_rng(seed)
    batch = max(1, 2**20 // max(n * d.shape[1], 1))
    if exact:
        signs = _sign_matrix(n, exact=True, n_permutations=0, rng=None)
        for start in range(0, signs.shape[0], batch):
            stats = np.max(np.abs(signs[start:start + batch] @ d), axis=1)
            hits += int(np.count_nonzero(stats >= observed * (1.0 - 1e-9)))
        total = signs.shape[0]
        p = hits / total
        method = f"exact joint sign-flip (all 2^{n} = {total} sign vectors, {d.shape[1]} columns)"
    else:
        while total < n_permutations:
            size = min(batch, n_permutations - total)
            signs = _sign_matrix(n, exact=False, n_permutations=size, rng=rng)
            hits += int(np.count_nonzero(np.max(np.abs(signs @ d), axis=1) >= observed * (1.0 - 1e-9)))
            total += size
        p = (1 + hits) / (1 + total)
        method = (f"Monte Carlo joint sign-flip ({total} random sign vectors, seed-controlled; n = {n} > "
                  f"max_exact_n = {max_exact_n}; {d.shape[1]} columns)")
    return JointSignFlipResult(float(p), observed, n, int(d.shape[1]), int(total), exact, method)


def min_attainable_p(n_units: int, *, n_comparisons: int = 1) -> float:
    """Smallest p-value an exact two-sided sign-flip test can reach with ``n_units`` pairs, Holm-adjusted.

    The exact test's smallest p is 2 / 2^n (only the observed sign vector and its mirror image reach the
    observed |sum|). Under Holm's procedure the smallest adjusted p-value is m * p_(1) >= m * 2 / 2^n for m
    comparisons, capped at 1. Example: n = 9 gives 1/256 = 0.0039; with 6 models (m = 15 pairs) the best
    attainable Holm-adjusted p is 15/256 = 0.0586 > 0.05, so no pair can be declared different at 5%.
    """
    n_units = as_count(n_units, "n_units")
    n_comparisons = as_count(n_comparisons, "n_comparisons")
    return min(1.0, n_comparisons * 2.0 / 2.0**n_units)


def attainable_p_table(n_units, n_models, *, alpha: float = 0.05) -> pd.DataFrame:
    """What an exact sign-flip test with Holm correction over all pairs can show, per N and number of models.

    Parameters
    ----------
    n_units : int or sequence of int
        Numbers of paired units N (cases, or folds).
    n_models : int or sequence of int
        Numbers of models k; all m = k (k - 1) / 2 pairs are compared.
    alpha : float

    Returns
    -------
    pandas.DataFrame
        One row per (N, k): ``n_units, n_models, n_pairs, min_p`` (2 / 2^N), ``min_p_holm`` (m * 2 / 2^N,
        capped at 1) and ``can_reject`` (min_p_holm <= alpha). With N = 9 and k = 6, min_p_holm = 0.0586:
        no pair can be called different at 5 %, whatever the data.
    """
    alpha = as_level(alpha, "alpha")
    units = [n_units] if isinstance(n_units, (int, np.integer)) else list(n_units)
    models = [n_models] if isinstance(n_models, (int, np.integer)) else list(n_models)
    rows = []
    for n in units:
        for k in models:
            k = as_count(k, "n_models", minimum=2)
            m = k * (k - 1) // 2
            best = min_attainable_p(n, n_comparisons=m)
            rows.append(
                {
                    "n_units": int(n),
                    "n_models": k,
                    "n_pairs": m,
                    "min_p": min_attainable_p(n),
                    "min_p_holm": best,
                    "can_reject": best <= alpha,
                }
            )
    return pd.DataFrame(rows)


def holm_adjust(p_values) -> np.ndarray:
    """Holm step-down adjusted p-values, in the input order.

    Sorted ascending p_(1) <= ... <= p_(m): adjusted p_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)). The
    running maximum makes the adjusted values monotone in the raw ones. Ties in p keep their input order
    (stable sort), which does not change the adjusted values.
    """
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"p_values must be 1-D, got shape {p.shape}")
    if p.size == 0:
        return p.copy()
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError(f"p_values must be finite and in [0, 1], got {p.tolist()}")
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted


def detectable_difference(differences, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true mean difference a two-sided paired test at level ``alpha`` detects with probability
    ``power`` over these units: ``(z_(1 - alpha/2) + z_power) * sd(d) / sqrt(n)`` with ``sd`` of the observed
    differences (ddof = 1), the normal approximation of the paired t and sign-flip tests' power (Lachin 1981).
    In the unit of the differences; NaN with fewer than 2 finite differences.

    Lachin JM. Introduction to sample size determination and power analysis for clinical trials. Control Clin
    Trials 2(2):93-113, 1981."""
    from scipy import stats as _stats

    d = np.asarray(differences, dtype=float)
    d = d[np.isfinite(d)]
    alpha = as_level(alpha, "alpha")
    power = as_level(power, "power")
    if d.size < 2:
        return float("nan")
    z = _stats.norm.ppf(1 - alpha / 2) + _stats.norm.ppf(power)
    return float(z * d.std(ddof=1) / np.sqrt(d.size))
