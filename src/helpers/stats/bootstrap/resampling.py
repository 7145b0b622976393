"""One draw for every resampling, the intervals of a mean read from it, and per-model summaries.

Imports: numpy, pandas, scipy, :mod:`helpers.base.checks` (the statistics' argument checks) and
:mod:`helpers.stats.inference` (the units x models table). :mod:`helpers.stats.bootstrap.comparisons` and
:mod:`helpers.stats.bootstrap.ranks` resample through this module.

Resampling
----------
One draw for every procedure: :func:`resample_indices` returns the ``(n_resamples, n)`` matrix
``rng.integers(0, n, (n_resamples, n))`` of a seed's generator (:func:`helpers.base.checks.as_rng`), the same draw
``scipy.stats.bootstrap`` makes, so the percentile and BCa intervals of :func:`bootstrap_mean_ci`, the rank
bootstrap and the paired case bootstrap all resample alike for the same seed.

Intervals (:func:`bootstrap_mean_ci`, ``method="percentile"`` or ``"bca"``)
-------------------------------------------------------------------------
Both read the same resampled statistics ``theta*_1 .. theta*_B``; quantiles by linear interpolation (Hyndman &
Fan type 7, ``numpy.quantile``).

* Percentile (Efron & Tibshirani 1993, ch. 13): ``[q(alpha/2), q(1 - alpha/2)]`` of the theta*, ``alpha = 1 -
  confidence`` (:func:`percentile_bounds`).
* BCa (Efron & Tibshirani 1993, ch. 14): the quantiles at ``alpha_1 = Phi(z0 + (z0 + z_(alpha/2)) / (1 - a (z0 +
  z_(alpha/2))))`` and ``alpha_2`` likewise with ``z_(1 - alpha/2)``. The bias correction ``z0 = Phi^-1((#{theta* <
  theta} + #{theta* <= theta}) / (2B))`` uses the *mid-rank* proportion and the acceleration comes from the
  jackknife, both as in ``scipy.stats.bootstrap``; for the mean ``a = sum((x - xbar)^3) / (6 (sum((x -
  xbar)^2))^1.5)``. Where BCa is undefined (fewer than 2 units, zero spread, a bootstrap distribution entirely on
  one side of the estimate, or an acceleration too large for the level) the percentile interval is returned and
  the method string says so and why.

Efron B, Tibshirani RJ. An Introduction to the Bootstrap. Chapman & Hall, 1993.

Paired case bootstrap: how it is vectorized
-------------------------------------------
Every metric aggregate of the study is a mean over units, i.e. a ratio ``sum(values) / number of units``. For
each case and model we precompute the sufficient statistics ``S[case, model]`` (sum of the finite values of the
case's units) and ``N[case, model]`` (their number). A resample is a row of an index matrix
``I`` (``n_resamples x n_cases``, drawn by :func:`resample_indices`); it is turned into
multiplicity weights ``W[b, case]`` (how often case appears in resample b), and all resampled means of all
models are two matrix products: ``(W @ S) / (W @ N)``. There is no Python loop over resamples.

Per-model summaries over units (:func:`summarize_models`) take the long or wide tables of
:func:`helpers.stats.inference.as_wide` and spawn one independent child generator per model (:func:`spawn`) in
column order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

from helpers.base.checks import as_count, as_level, as_rng
from helpers.stats.inference import as_wide

__all__ = [
    "two_level_means", "resample_indices", "resample_weights", "sufficient_statistics", "resampled_means", "BootstrapInterval",
    "percentile_bounds", "bootstrap_mean_ci", "spawn", "summarize_models",
]


def resample_indices(n_cases: int, n_resamples: int, *, seed: int | np.random.Generator,
                     strata: Sequence | None = None) -> np.ndarray:
    """The case indices of ``n_resamples`` bootstrap resamples: an ``(n_resamples, n_cases)`` int matrix.

    Row b lists the cases drawn (with replacement, uniformly) in resample b. ``seed`` is a non-negative int or a
    :class:`numpy.random.Generator` (consumed). The one resampling draw of the package (module docstring).

    ``strata`` (optional, one label per case, e.g. WMH's scanner site): a *stratified* draw; each stratum's
    cases are drawn with replacement among themselves, as many as it has, so every resample keeps the strata's
    sizes (columns grouped by stratum, in order of first appearance). With one stratum (or None) this is the
    plain draw, bit for bit.
    """
    n_cases = as_count(n_cases, "n_cases")
    n_resamples = as_count(n_resamples, "n_resamples")
    rng = as_rng(seed)
    if strata is None:
        return rng.integers(0, n_cases, size=(n_resamples, n_cases))
    labels = pd.Series(list(strata), dtype=object)
    if len(labels) != n_cases:
        raise ValueError(f"strata has {len(labels)} labels for {n_cases} cases")
    if labels.isna().any():
        raise ValueError(f"strata has missing labels at positions {list(np.flatnonzero(labels.isna()))[:5]}")
    groups = [np.flatnonzero((labels == label).to_numpy()) for label in pd.unique(labels)]
    if len(groups) == 1:
        return rng.integers(0, n_cases, size=(n_resamples, n_cases))
    return np.concatenate([members[rng.integers(0, len(members), size=(n_resamples, len(members)))]
                           for members in groups], axis=1)


def two_level_means(values, n_resamples: int, *, seed: int | np.random.Generator) -> np.ndarray:
    """Resampled grand means of a two-level bootstrap: seeds, then cases within each drawn seed.

    ``values`` is an ``(n_seeds, n_cases)`` array (one value per training seed and test case, e.g. a per-case
    difference between two architectures; NaN: no value, left out of that seed's mean). A resample draws
    ``n_seeds`` seeds with replacement, then, independently for each drawn seed, ``n_cases`` cases with
    replacement, and returns the mean over drawn seeds of each seed's mean over its drawn cases: the
    architecture-level uncertainty, seed-to-seed and case-to-case variation both included (Davison & Hinkley
    1997, sec. 3.8). With one seed it is the case bootstrap. Returns ``n_resamples`` means (NaN where a drawn seed
    had no finite value)."""
    v = np.asarray(values, dtype=float)
    if v.ndim != 2 or v.shape[0] < 1 or v.shape[1] < 1:
        raise ValueError(f"values must be a non-empty (n_seeds, n_cases) array, got shape {v.shape}")
    n_resamples = as_count(n_resamples, "n_resamples")
    rng = as_rng(seed)
    n_seeds, n_cases = v.shape
    seeds = rng.integers(0, n_seeds, size=(n_resamples, n_seeds))
    cases = rng.integers(0, n_cases, size=(n_resamples, n_seeds, n_cases))
    drawn = v[seeds[..., None], cases]
    with np.errstate(invalid="ignore"):
        per_seed = np.nanmean(np.where(np.isfinite(drawn), drawn, np.nan), axis=2) if np.isnan(v).any() else \
            drawn.mean(axis=2)
    return per_seed.mean(axis=1)


def resample_weights(indices: np.ndarray, n_cases: int) -> np.ndarray:
    """Multiplicity weights ``W[b, c]`` (times case c is drawn in resample b) from an index matrix."""
    indices = np.asarray(indices)
    if indices.ndim != 2 or not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"indices must be a 2D integer matrix, got shape {indices.shape} and dtype {indices.dtype}")
    if indices.size and (indices.min() < 0 or indices.max() >= n_cases):
        raise ValueError(f"indices must lie in [0, {n_cases}), got values from {indices.min()} to {indices.max()}")
    n_resamples = indices.shape[0]
    flat = (indices + n_cases * np.arange(n_resamples)[:, None]).ravel()
    return np.bincount(flat, minlength=n_resamples * n_cases).reshape(n_resamples, n_cases).astype(float)


def sufficient_statistics(
    units: pd.DataFrame, *, case_ids: Sequence[str], models: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-case sums and counts of one metric's unit values: ``(sums, counts, n_nan)``, each ``(n_cases, n_models)``.

    Parameters
    ----------
    units : pandas.DataFrame
        Columns ``case_id``, ``model``, ``value``: one row per unit (a case, or a lesion of a case).
    case_ids : sequence of str
        The resampling population: every test case, including those without a unit in this table (a case
        without a Q1 lesion is still drawn; it adds nothing to the sums and counts).
    models : sequence of str
        Column order of the result.

    Raises
    ------
    ValueError
        If ``units`` names a case not in ``case_ids`` or a model not in ``models``.
    """
    for column in ("case_id", "model", "value"):
        if column not in units.columns:
            raise ValueError(f"units lacks column {column!r}; has {list(units.columns)}")
    case_pos = {str(c): i for i, c in enumerate(case_ids)}
    model_pos = {str(m): j for j, m in enumerate(models)}
    if len(case_pos) != len(case_ids):
        raise ValueError("case_ids has duplicates")
    unknown_cases = sorted(set(units["case_id"].astype(str)) - set(case_pos))
    if unknown_cases:
        raise ValueError(f"units has case_id values not in case_ids: {unknown_cases[:5]}")
    unknown_models = sorted(set(units["model"].astype(str)) - set(model_pos))
    if unknown_models:
        raise ValueError(f"units has model values not in models: {unknown_models}")
    shape = (len(case_pos), len(model_pos))
    sums, counts, n_nan = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    rows = units["case_id"].astype(str).map(case_pos).to_numpy()
    cols = units["model"].astype(str).map(model_pos).to_numpy()
    values = pd.to_numeric(units["value"], errors="raise").to_numpy(dtype=float)
    finite = np.isfinite(values)
    np.add.at(sums, (rows[finite], cols[finite]), values[finite])
    np.add.at(counts, (rows[finite], cols[finite]), 1.0)
    np.add.at(n_nan, (rows[~finite], cols[~finite]), 1.0)
    return sums, counts, n_nan


def resampled_means(sums: np.ndarray, counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Means of every model in every resample: ``(W @ S) / (W @ N)``, NaN where a resample has no unit."""
    numerator = weights @ sums
    denominator = weights @ counts
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


# ----------------------------------------------------------------------------------------------------------
# Intervals: percentile and BCa, from the same resamples
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BootstrapInterval:
    """A bootstrap confidence interval for a mean.

    Attributes
    ----------
    estimate : float
        The sample mean.
    low, high : float
        Interval bounds.
    confidence : float
        Nominal two-sided coverage, e.g. 0.95.
    n : int
        Number of units.
    n_resamples : int
        Number of bootstrap resamples B.
    method : str
        ``"BCa"``, or ``"percentile"``, or ``"percentile (BCa undefined: <reason>)"`` for the fallback.
    bias_correction : float
        BCa ``z0`` (NaN when not computed).
    acceleration : float
        BCa ``a`` (NaN when undefined).
    """

    estimate: float
    low: float
    high: float
    confidence: float
    n: int
    n_resamples: int
    method: str
    bias_correction: float = float("nan")
    acceleration: float = float("nan")

    @property
    def width(self) -> float:
        """``high - low``."""
        return self.high - self.low


def percentile_bounds(resampled, *, confidence: float = 0.95) -> tuple[float, float]:
    """The percentile interval ``[q(alpha/2), q(1 - alpha/2)]`` of resampled statistics, ``alpha = 1 -
    confidence``, quantiles by linear interpolation; ``(nan, nan)`` when there is no resample."""
    theta = np.asarray(resampled, dtype=float)
    if theta.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(theta, [tail, 1.0 - tail], method="linear")
    return float(low), float(high)


def _bca_levels(x: np.ndarray, theta_hat: float, theta_b: np.ndarray, alpha: float):
    """BCa quantile levels (alpha_1, alpha_2), z0, a and a reason string when BCa is undefined (else None)."""
    n = x.size
    if n < 2:
        return None, None, np.nan, np.nan, "fewer than 2 units"
    # Test the range, not the sum of squares: np.mean of equal values can be one ulp off the values, which
    # leaves a tiny nonzero sum of squares and a meaningless acceleration.
    if float(np.ptp(x)) == 0.0:
        return None, None, np.nan, np.nan, "zero spread, all values equal"
    centered = x - theta_hat
    ss = float(np.sum(centered**2))
    # Mid-rank proportion, as scipy.stats.bootstrap (ties are common for small n).
    proportion = (np.count_nonzero(theta_b < theta_hat) + np.count_nonzero(theta_b <= theta_hat)) / (2 * theta_b.size)
    z0 = float(special.ndtri(proportion))
    if not np.isfinite(z0):
        return None, None, z0, np.nan, "bootstrap distribution entirely on one side of the estimate"
    # Jackknife acceleration; for the mean theta_(i) = (n theta - x_i)/(n - 1), so U_i = (n-1)(theta_(.) -
    # theta_(i)) = x_i - mean(x) and a = sum(U^3) / (6 sum(U^2)^1.5).
    a = float(np.sum(centered**3) / (6.0 * ss**1.5))
    z_alpha = float(special.ndtri(alpha))
    levels = []
    for z in (z_alpha, -z_alpha):
        num = z0 + z
        denominator = 1.0 - a * num
        if denominator <= 0:
            return None, None, z0, a, "acceleration too large for this confidence level"
        levels.append(float(special.ndtr(z0 + num / denominator)))
    return levels[0], levels[1], z0, a, None


def _check_values(values) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {x.shape}")
    if x.size == 0:
        raise ValueError("values must not be empty")
    if not np.isfinite(x).all():
        raise ValueError("values must be finite (drop NaN values first and count them)")
    return x


def bootstrap_mean_ci(
    values,
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    method: str = "bca",
    seed=0,
) -> BootstrapInterval:
    """Bootstrap confidence interval for the mean of ``values``: ``method="bca"`` or ``"percentile"``.

    Parameters
    ----------
    values : array_like, 1-D
        One value per unit (a model's per-case scores, or paired differences). Must be finite.
    confidence : float
        Two-sided coverage in (0, 1).
    n_resamples : int
        Number of resamples B, drawn by :func:`resample_indices` (the same draw as ``scipy.stats.bootstrap``,
        so both agree for the same Generator state; both methods read the same resamples for the same seed).
    method : {"bca", "percentile"}
        ``"bca"`` falls back to the percentile interval where BCa is undefined, and says so in ``method``.
    seed : int or numpy.random.Generator

    Returns
    -------
    BootstrapInterval

    Notes
    -----
    Percentile: the (alpha/2, 1 - alpha/2) quantiles of the bootstrap means. BCa levels: alpha_1 = Phi(z0 + (z0 +
    z_a) / (1 - a (z0 + z_a))), alpha_2 likewise with z_(1-a); z0 = Phi^-1((#{theta* < theta} + #{theta* <=
    theta}) / 2B); a = sum((x - xbar)^3) / (6 (sum((x - xbar)^2))^1.5) (jackknife for the mean). The interval is
    the (alpha_1, alpha_2) quantiles of the bootstrap means (linear interpolation). With all values equal the
    interval is the single point [value, value]. Efron & Tibshirani (1993), chapters 13 and 14.
    """
    x = _check_values(values)
    confidence = as_level(confidence, "confidence")
    n_resamples = as_count(n_resamples, "n_resamples", minimum=2)
    if method not in ("bca", "percentile"):
        raise ValueError(f"method must be 'bca' or 'percentile', got {method!r}")
    rng = as_rng(seed)

    n = x.size
    theta_hat = float(np.mean(x))
    theta_b = np.mean(x[resample_indices(n, n_resamples, seed=rng)], axis=-1)
    alpha = (1.0 - confidence) / 2.0

    z0 = a = np.nan
    used = "percentile"
    low, high = percentile_bounds(theta_b, confidence=confidence)
    if method == "bca":
        a1, a2, z0, a, reason = _bca_levels(x, theta_hat, theta_b, alpha)
        if reason is None:
            used = "BCa"
            low, high = (float(q) for q in np.quantile(theta_b, (a1, a2), method="linear"))
        else:
            used = f"percentile (BCa undefined: {reason})"
    return BootstrapInterval(
        estimate=theta_hat,
        low=low,
        high=high,
        confidence=confidence,
        n=n,
        n_resamples=n_resamples,
        method=used,
        bias_correction=float(z0),
        acceleration=float(a),
    )


def spawn(seed, count: int) -> list[np.random.Generator]:
    """``count`` independent child generators of ``seed`` (``Generator.spawn``); none for ``count`` 0."""
    return as_rng(seed).spawn(count) if count else []


def summarize_models(
    data,
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    method: str = "bca",
    seed=0,
    unit: str = "case_id",
    model: str = "model",
    value: str = "value",
    nan_policy: str = "omit",
) -> pd.DataFrame:
    """Per model: mean with its bootstrap confidence interval.

    Parameters
    ----------
    data : long or wide table, see :func:`helpers.stats.inference.as_wide`.
    confidence, n_resamples, method : see :func:`bootstrap_mean_ci`.
    seed : int or numpy.random.Generator
        One independent child stream per model (``Generator.spawn``) in column order.
    nan_policy : {"omit", "raise"}
        ``"omit"`` (default) drops a model's missing values and counts them in ``n_missing``.

    Returns
    -------
    pandas.DataFrame
        One row per model: ``model, n, n_missing, mean, sd`` (ddof=1; NaN for n = 1), ``ci_low, ci_high,
        confidence, n_resamples, ci_method``.
    """
    wide = as_wide(data, unit=unit, model=model, value=value, nan_policy=nan_policy)
    rows = []
    for name, rng in zip(wide.columns, spawn(seed, wide.shape[1])):
        column = wide[name].to_numpy()
        present = column[~np.isnan(column)]
        if present.size == 0:
            raise ValueError(f"model {name!r} has no non-missing values")
        interval = bootstrap_mean_ci(
            present, confidence=confidence, n_resamples=n_resamples, method=method, seed=rng
        )
        rows.append(
            {
                "model": name,
                "n": present.size,
                "n_missing": int(column.size - present.size),
                "mean": interval.estimate,
                "sd": float(np.std(present, ddof=1)) if present.size > 1 else np.nan,
                "ci_low": interval.low,
                "ci_high": interval.high,
                "confidence": interval.confidence,
                "n_resamples": interval.n_resamples,
                "ci_method": interval.method,
            }
        )
    return pd.DataFrame(rows)
