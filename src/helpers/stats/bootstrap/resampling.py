"""Every resampling of the package: case indices, percentile and BCa intervals, the paired case bootstrap of model
differences (vectorized over per-case sufficient statistics), its verdicts, and the rank bootstrap.

Imports: numpy, pandas, scipy, :mod:`helpers.stats.ranking` and :mod:`helpers.stats.inference` (ranking -> inference ->
bootstrap): the Holm adjustment, the sign-flip test and the effect sizes come from there.

Resampling
----------
One draw for every procedure: :func:`resample_indices` returns the ``(n_resamples, n)`` matrix
``rng.integers(0, n, (n_resamples, n))`` of a seed's generator (:func:`helpers.stats.inference.as_rng`), the same draw
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

Paired case bootstrap: what is resampled
----------------------------------------
Test *cases* are drawn with replacement (``n_cases`` draws per resample). A case brings all its units with it:
one unit per case for image-level metrics (Dice of the case), one per reference lesion for lesion-level metrics
(all lesions of a case stay together). Every model is evaluated on the *same* resample (paired bootstrap), and
the same resamples serve every metric and stratum of a dataset, so results are comparable across them.

Paired case bootstrap: how it is vectorized
-------------------------------------------
Every metric aggregate of the study is a mean over units, i.e. a ratio ``sum(values) / number of units``. For
each case and model we precompute the sufficient statistics ``S[case, model]`` (sum of the finite values of the
case's units) and ``N[case, model]`` (their number). A resample is a row of an index matrix
``I`` (``n_resamples x n_cases``, drawn by :func:`resample_indices`); it is turned into
multiplicity weights ``W[b, case]`` (how often case appears in resample b), and all resampled means of all
models are two matrix products: ``(W @ S) / (W @ N)``. There is no Python loop over resamples.

Conventions
-----------
- Differences are ``model_a - model_b`` in the metric's own units, for each unordered pair with ``a`` before
  ``b`` in the given model order. ``better`` names the model favoured by the observed difference, using the
  metric's direction from the registry (:func:`helpers.metrics.higher_is_better`).
- NaN values (a metric undefined for a unit, with no penalty) are excluded from the sums and counted in
  ``n_nan``; they are never silently dropped. A resample in which a model has no unit at all (for instance no
  Q1 lesion drawn) gives NaN for that model; shares and intervals use the finite resamples, counted in
  ``n_valid``.
- Confidence interval: percentile interval of the resampled differences (:func:`percentile_bounds`), two-sided
  at ``confidence``.
- ``share_same_sign``: the share of (finite) resamples whose difference has the sign of the observed one;
  a resampled difference of exactly 0 does not keep the sign. It is NaN when the observed difference is 0.
- Bootstrap p-value of a pair (:func:`bootstrap_p_value`): the two-sided normal approximation
  ``p = 2 Phi(-|d| / se)`` with ``d`` the observed difference and ``se`` the standard deviation of the finite
  resampled differences (``p = 0`` when they do not vary). A p-value counted from the resamples cannot go below
  about ``2 / n_resamples``, and a Holm family of a few hundred comparisons would then need tens of thousands of
  resamples before any verdict could hold; the approximation has no such floor. ``share_same_sign`` is reported
  beside it, counted.
- Multiple comparisons: p-values are Holm-adjusted within a *family*: all model pairs x metrics x strata of one
  dataset and lesion set (:func:`holm_within`); ``family_size`` is printed beside every row.
- Joint reversal (:func:`joint_reversal_share`): for a boundary metric, the share of resamples in which Dice
  favours the model the observed Dice favours *and* the boundary metric favours the other one, in the same
  resample: what a reader means by "the reversal is stable".
- Verdict (:func:`verdict`), named by what it means: ``"sign kept, Holm p <= 0.05"`` when the Holm-adjusted
  p is at most ``alpha``; ``"sign kept in >= 95 % of resamples, not after Holm"`` when the raw share reaches
  ``1 - alpha`` (0.95) but the family correction removes it; otherwise ``"sign not stable (< 95 %)"``;
  ``"no observed difference"`` when the observed difference is 0, ``"not estimable"`` when it is NaN, and
  ``"no verdict: fewer than <m> test cases"`` when the dataset has fewer test cases than ``min_cases``
  (:data:`MIN_CASES`): with a handful of cases the resamples are a handful of distinct draws.

Per-model and pairwise summaries over units (:func:`summarize_models`, :func:`paired_comparisons`) and the rank
bootstrap (:func:`bootstrap_ranks`) take the long or wide tables of :func:`helpers.stats.inference.as_wide` and spawn one
independent child generator per model or pair (``Generator.spawn``) in column order.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import special

from helpers.stats.inference import as_count, as_level, as_rng, as_wide, complete_units, cohens_dz, hedges_correction, holm_adjust, sign_flip_test
from helpers.metrics import higher_is_better
from helpers.stats.ranking import as_direction, rank_rows

__all__ = [
    "ALPHA", "MIN_CASES", "verdict_names", "resample_indices", "resample_weights", "sufficient_statistics",
    "resampled_means", "BootstrapInterval", "percentile_bounds", "bootstrap_mean_ci", "summarize_models", "verdict",
    "bootstrap_p_value", "joint_reversal_share", "holm_within", "paired_differences", "directional_robustness",
    "paired_comparisons", "RankBootstrap", "bootstrap_ranks",
]

#: Family-wise level of the verdicts (Holm within a dataset's pairs x metrics x strata).
ALPHA = 0.05
#: Fewest test cases for which a verdict is given (below, the table says so instead).
MIN_CASES = 10


def verdict_names(alpha: float = ALPHA, min_cases: int = MIN_CASES) -> dict[str, str]:
    """The verdict strings for a level and a minimum number of cases (keys: held, raw_only, unstable, none,
    not_estimable, too_few)."""
    pct = f"{100 * (1 - alpha):g}"
    return {
        "held": f"sign kept, Holm p <= {alpha:g}",
        "raw_only": f"sign kept in >= {pct} % of resamples, not after Holm",
        "unstable": f"sign not stable (< {pct} %)",
        "none": "no observed difference",
        "not_estimable": "not estimable",
        "too_few": f"no verdict: fewer than {min_cases} test cases",
    }


def resample_indices(n_cases: int, n_resamples: int, *, seed: int | np.random.Generator) -> np.ndarray:
    """The case indices of ``n_resamples`` bootstrap resamples: an ``(n_resamples, n_cases)`` int matrix.

    Row b lists the cases drawn (with replacement, uniformly) in resample b. ``seed`` is a non-negative int or a
    :class:`numpy.random.Generator` (consumed). The one resampling draw of the package (module docstring).
    """
    n_cases = as_count(n_cases, "n_cases")
    n_resamples = as_count(n_resamples, "n_resamples")
    return as_rng(seed).integers(0, n_cases, size=(n_resamples, n_cases))


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


def _spawn(seed, count: int) -> list[np.random.Generator]:
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
    for name, rng in zip(wide.columns, _spawn(seed, wide.shape[1])):
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


# ----------------------------------------------------------------------------------------------------------
# Paired case bootstrap of model differences: verdicts, joint reversals, Holm families
# ----------------------------------------------------------------------------------------------------------


def verdict(
    observed: float,
    share_same_sign: float,
    p_holm: float,
    *,
    n_cases: int,
    alpha: float = ALPHA,
    min_cases: int = MIN_CASES,
) -> str:
    """Classify a bootstrap comparison (see the module docstring for the rule and :func:`verdict_names`)."""
    names = verdict_names(alpha, min_cases)
    if n_cases < min_cases:
        return names["too_few"]
    if not np.isfinite(observed):
        return names["not_estimable"]
    if observed == 0:
        return names["none"]
    if not np.isfinite(share_same_sign):
        return names["not_estimable"]
    if np.isfinite(p_holm) and p_holm <= alpha:
        return names["held"]
    if share_same_sign >= 1 - alpha:
        return names["raw_only"]
    return names["unstable"]


def bootstrap_p_value(differences: np.ndarray, observed: float) -> float:
    """Two-sided p-value of an observed difference from its bootstrap distribution (normal approximation):
    ``2 Phi(-|observed| / se)``, ``se`` the standard deviation (ddof 1) of the finite resampled differences;
    0 when ``se`` is 0 and the observed difference is not; NaN when the difference is 0 or NaN or fewer than
    two resamples are finite."""
    d = np.asarray(differences, dtype=float)
    d = d[np.isfinite(d)]
    if d.size < 2 or not np.isfinite(observed) or observed == 0:
        return float("nan")
    se = float(np.std(d, ddof=1))
    if se == 0.0:
        return 0.0
    return float(min(1.0, 2.0 * special.ndtr(-abs(observed) / se)))


def _favour(differences: np.ndarray, higher: bool) -> np.ndarray:
    """+1 where a difference (a - b) favours model a, -1 where it favours b, 0 for a tie, NaN if undefined."""
    d = np.asarray(differences, dtype=float)
    return np.sign(d) * (1.0 if higher else -1.0)


def joint_reversal_share(reference_differences, metric_differences, *, reference_observed: float, metric: str,
                         reference: str = "dice", directions: Mapping[str, str] | None = None) -> float:
    """The share of resamples in which ``reference`` (Dice) favours the model the observed reference
    difference favours, and ``metric`` favours the other model, at the same time.

    ``reference_differences`` and ``metric_differences`` are the resampled differences (model a - model b) of
    the same resamples (same length); resamples where either is NaN are left out. NaN when the observed
    reference difference is 0 or NaN (no model is favoured) or no resample is finite.

    Examples
    --------
    >>> joint_reversal_share([0.1, 0.2, -0.1], [1.0, 2.0, 1.0], reference_observed=0.1, metric="hd95")
    0.6666666666666666
    """
    ref = np.asarray(reference_differences, dtype=float)
    met = np.asarray(metric_differences, dtype=float)
    if ref.shape != met.shape or ref.ndim != 1:
        raise ValueError(f"reference_differences and metric_differences must be 1-D of equal length, got "
                         f"{ref.shape} and {met.shape}")
    if not np.isfinite(reference_observed) or reference_observed == 0:
        return float("nan")
    observed_side = _favour(np.array([reference_observed]), higher_is_better(reference, directions))[0]
    finite = np.isfinite(ref) & np.isfinite(met)
    if not finite.any():
        return float("nan")
    ref_side = _favour(ref[finite], higher_is_better(reference, directions))
    met_side = _favour(met[finite], higher_is_better(metric, directions))
    return float(np.mean((ref_side == observed_side) & (met_side == -observed_side)))


def holm_within(table: pd.DataFrame, *, family: Sequence[str] = ("dataset", "lesion_set"),
                p_column: str = "p_value") -> pd.DataFrame:
    """Holm-adjust ``p_column`` within each family (rows sharing the ``family`` columns present in the table;
    NaN p-values are not tested and do not count in the family). Adds ``p_holm`` and ``family_size``."""
    if p_column not in table.columns:
        raise ValueError(f"table lacks column {p_column!r}; has {list(table.columns)}")
    keys = [c for c in family if c in table.columns]
    out = table.copy()
    out["p_holm"] = np.nan
    out["family_size"] = 0
    groups = out.groupby(keys, sort=False, dropna=False).groups.values() if keys else [out.index]
    for index in groups:
        p = out.loc[index, p_column].astype(float)
        tested = p[np.isfinite(p)]
        out.loc[index, "family_size"] = len(tested)
        if len(tested):
            out.loc[tested.index, "p_holm"] = holm_adjust(tested.to_numpy())
    out["family_size"] = out["family_size"].astype(int)
    return out


def paired_differences(
    sums: np.ndarray,
    counts: np.ndarray,
    weights: np.ndarray,
    *,
    models: Sequence[str],
    metric: str,
    confidence: float = 0.95,
    directions: Mapping[str, str] | None = None,
    return_resamples: bool = False,
):
    """Observed and bootstrapped differences for every model pair of one metric (one row per pair).

    Columns: ``metric, model_a, model_b, mean_a, mean_b, difference, ci_low, ci_high, share_same_sign,
    p_value`` (:func:`bootstrap_p_value`, not yet corrected), ``n_valid, better``. With ``return_resamples``
    also the ``(n_resamples, n_pairs)`` matrix of resampled differences.
    """
    confidence = as_level(confidence, "confidence")
    sums, counts = np.asarray(sums, float), np.asarray(counts, float)
    if sums.shape != counts.shape or sums.ndim != 2 or sums.shape[1] != len(models):
        raise ValueError(f"sums and counts must both be (n_cases, {len(models)}), got {sums.shape} and {counts.shape}")
    if weights.shape[1] != sums.shape[0]:
        raise ValueError(f"weights have {weights.shape[1]} cases, sums {sums.shape[0]}")
    hib = higher_is_better(metric, directions)
    observed = resampled_means(sums, counts, np.ones((1, sums.shape[0])))[0]
    boot = resampled_means(sums, counts, weights)
    ia, ib = np.triu_indices(len(models), k=1)
    diff_obs = observed[ia] - observed[ib]
    diff = boot[:, ia] - boot[:, ib]
    finite = np.isfinite(diff)
    n_valid = finite.sum(axis=0)
    rows = []
    for p in range(len(ia)):
        d = diff[finite[:, p], p]
        lo, hi = percentile_bounds(d, confidence=confidence)
        obs = diff_obs[p]
        share = float(np.mean(np.sign(d) == np.sign(obs))) if d.size and np.isfinite(obs) and obs != 0 else np.nan
        a, b = str(models[ia[p]]), str(models[ib[p]])
        better = "" if not np.isfinite(obs) or obs == 0 else (a if (obs > 0) == hib else b)
        rows.append(
            {
                "metric": metric,
                "model_a": a,
                "model_b": b,
                "mean_a": observed[ia[p]],
                "mean_b": observed[ib[p]],
                "difference": obs,
                "ci_low": float(lo),
                "ci_high": float(hi),
                "share_same_sign": share,
                "p_value": bootstrap_p_value(d, obs),
                "n_valid": int(n_valid[p]),
                "better": better,
            }
        )
    table = pd.DataFrame(rows)
    return (table, diff) if return_resamples else table


def _paired_tables(units: pd.DataFrame, *, group_by: list, case_ids: list, models: list, weights: np.ndarray,
                   confidence: float, directions):
    """:func:`paired_differences` of every group of ``units`` on the same resamples (``weights``), with the unit
    counts. Returns the tables as ``(other group key, metric, table)`` and the resampled and observed differences
    by ``(other group key, metric)``."""
    out, resampled = [], {}
    others = [c for c in group_by if c != "metric"]
    ia, ib = np.triu_indices(len(models), k=1)
    for key, sub in units.groupby(group_by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        group = dict(zip(group_by, key))
        sums, counts, n_nan = sufficient_statistics(sub, case_ids=case_ids, models=models)
        table, diff = paired_differences(sums, counts, weights, models=models, metric=group["metric"],
                                         confidence=confidence, directions=directions, return_resamples=True)
        table["n_units_a"] = counts.sum(axis=0)[ia].astype(int)
        table["n_units_b"] = counts.sum(axis=0)[ib].astype(int)
        table["n_nan_a"] = n_nan.sum(axis=0)[ia].astype(int)
        table["n_nan_b"] = n_nan.sum(axis=0)[ib].astype(int)
        for name, value in group.items():
            if name != "metric":
                table[name] = value
        other_key = tuple(group[c] for c in others)
        resampled[(other_key, group["metric"])] = (diff, table["difference"].to_numpy())
        out.append((other_key, group["metric"], table))
    return out, resampled


def _with_joint_reversals(table: pd.DataFrame, resampled: dict, *, other_key: tuple, metric: str, reference: str,
                          directions) -> pd.DataFrame:
    """``table`` with ``joint_reversal_share`` and ``reversal_observed`` against the ``reference`` metric of the
    same group (NaN and False for the reference itself, or when the group has no reference rows)."""
    ref = resampled.get((other_key, reference))
    joint, observed_reversal = [], []
    for p in range(len(table)):
        if metric == reference or ref is None:
            joint.append(np.nan)
            observed_reversal.append(False)
            continue
        ref_diff, ref_obs = ref[0][:, p], ref[1][p]
        met_diff = resampled[(other_key, metric)][0][:, p]
        joint.append(joint_reversal_share(ref_diff, met_diff, reference_observed=ref_obs, metric=metric,
                                          reference=reference, directions=directions))
        obs = table["difference"].iloc[p]
        observed_reversal.append(bool(np.isfinite(ref_obs) and ref_obs != 0 and np.isfinite(obs) and obs != 0
                                      and _favour(np.array([ref_obs]), higher_is_better(reference, directions))[0]
                                      == -_favour(np.array([obs]), higher_is_better(metric, directions))[0]))
    return table.assign(joint_reversal_share=joint, reversal_observed=observed_reversal)


def directional_robustness(
    units: pd.DataFrame,
    *,
    case_ids: Sequence[str],
    models: Sequence[str] | None = None,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    group_by: Sequence[str] = ("metric",),
    directions: Mapping[str, str] | None = None,
    reference: str = "dice",
    family: Sequence[str] = ("dataset", "lesion_set"),
    alpha: float = ALPHA,
    min_cases: int = MIN_CASES,
) -> pd.DataFrame:
    """Paired case bootstrap of every model pair, for every group (metric, stratum, ...) of a long unit table.

    Parameters
    ----------
    units : pandas.DataFrame
        Long table, one row per unit, model and metric: columns ``case_id``, ``model``, ``metric``, ``value``
        and the other ``group_by`` columns. A group's aggregate is the mean of its units' finite values. Units
        with ``excluded`` True (see :func:`helpers.analysis.analysis_units`) are left out.
    case_ids : sequence of str
        All test cases of the dataset: the resampling population.
    models : sequence of str, optional
        Models and their order (pairs are ``a`` before ``b``); default: sorted models of ``units``.
    n_resamples, seed : int
        Number of bootstrap resamples and the seed of :func:`numpy.random.default_rng`. One index matrix is
        drawn and shared by all groups and models.
    confidence : float
        Two-sided level of the percentile interval.
    group_by : sequence of str
        Columns defining one comparison; must include ``"metric"``.
    reference : str
        The metric against which the joint-reversal share of every other metric is computed (same other
        group columns, same resamples).
    family : sequence of str
        Columns defining a Holm family (those present in ``group_by``); by default a dataset and lesion set:
        all its pairs x metrics x strata.
    alpha : float
        Family-wise level of the verdicts.
    min_cases : int
        Fewest test cases for a verdict.

    Returns
    -------
    pandas.DataFrame
        The rows of :func:`paired_differences` per group, with the group columns first and ``n_units_a``,
        ``n_units_b``, ``n_nan_a``, ``n_nan_b``, ``joint_reversal_share`` (NaN for the reference metric),
        ``reversal_observed`` (the observed reference and metric favour different models), ``p_holm``,
        ``family_size``, ``verdict``, ``n_cases``, ``n_resamples``, ``seed``, ``confidence``, ``alpha``,
        ``min_cases`` added.
    """
    group_by = list(group_by)
    if "metric" not in group_by:
        raise ValueError(f"group_by must include 'metric', got {group_by}")
    for column in (*group_by, "case_id", "model", "value"):
        if column not in units.columns:
            raise ValueError(f"units lacks column {column!r}; has {list(units.columns)}")
    min_cases = as_count(min_cases, "min_cases")
    if "excluded" in units.columns:
        units = units[~units["excluded"].astype(bool)]
    case_ids = [str(c) for c in case_ids]
    models = sorted(units["model"].astype(str).unique()) if models is None else [str(m) for m in models]
    if len(models) < 2:
        raise ValueError(f"need at least two models to compare, got {models}")
    weights = resample_weights(resample_indices(len(case_ids), n_resamples, seed=seed), len(case_ids))
    others = [c for c in group_by if c != "metric"]
    out, resampled = _paired_tables(units, group_by=group_by, case_ids=case_ids, models=models, weights=weights,
                                    confidence=confidence, directions=directions)
    if not out:
        return pd.DataFrame()
    tables = [_with_joint_reversals(table, resampled, other_key=other_key, metric=metric, reference=reference,
                                    directions=directions) for other_key, metric, table in out]
    result = holm_within(pd.concat(tables, ignore_index=True), family=[c for c in family if c in group_by])
    n_cases = len(case_ids)
    result["verdict"] = [verdict(o, s, h, n_cases=n_cases, alpha=alpha, min_cases=min_cases)
                         for o, s, h in zip(result["difference"], result["share_same_sign"], result["p_holm"])]
    result["n_cases"] = n_cases
    result["n_resamples"] = int(n_resamples)
    result["seed"] = seed
    result["confidence"] = confidence
    result["alpha"] = alpha
    result["min_cases"] = min_cases
    first = others + ["metric"]
    return result[first + [c for c in result.columns if c not in first]]


# ----------------------------------------------------------------------------------------------------------
# Pairwise comparisons over units: interval, effect size and sign-flip test per pair
# ----------------------------------------------------------------------------------------------------------


def _pair_row(both: pd.DataFrame, name_a: str, name_b: str, *, rng: np.random.Generator, higher_is_better: bool,
              confidence: float, n_resamples: int, max_exact_n: int, n_permutations: int) -> dict:
    """One row of :func:`paired_comparisons` from the units where both models have a value; ``rng`` serves the
    bootstrap first, then the Monte Carlo sign-flip test."""
    a = both[name_a].to_numpy()
    b = both[name_b].to_numpy()
    d = a - b
    interval = bootstrap_mean_ci(d, confidence=confidence, n_resamples=n_resamples, seed=rng)
    test = sign_flip_test(d, max_exact_n=max_exact_n, n_permutations=n_permutations, seed=rng)
    dz = cohens_dz(d)
    mean_d = float(np.mean(d))
    if mean_d == 0.0:
        favoured = "tie"
    else:
        favoured = name_a if (mean_d > 0) == higher_is_better else name_b
    return {
        "model_a": name_a,
        "model_b": name_b,
        "n": d.size,
        "mean_a": float(np.mean(a)),
        "mean_b": float(np.mean(b)),
        "mean_difference": mean_d,
        "ci_low": interval.low,
        "ci_high": interval.high,
        "ci_method": interval.method,
        "cohens_dz": dz,
        "hedges_gz": dz * hedges_correction(d.size - 1),
        "p_value": test.p_value,
        "p_method": test.method,
        "favoured": favoured,
        "min_attainable_p": test.min_attainable_p,
    }


def paired_comparisons(
    data,
    *,
    higher_is_better: bool,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    alpha: float = 0.05,
    max_exact_n: int = 20,
    n_permutations: int = 100_000,
    seed=0,
    unit: str = "case_id",
    model: str = "model",
    value: str = "value",
    nan_policy: str = "raise",
) -> pd.DataFrame:
    """All pairs of models: paired difference with CI, effect size, sign-flip p-value, Holm across pairs.

    Parameters
    ----------
    data : long or wide table, see :func:`helpers.stats.inference.as_wide`. Units are the pairing (same case, same fold).
    higher_is_better : bool
        Decides the ``favoured`` column (which model of the pair has the better mean).
    confidence, n_resamples : bootstrap CI of the mean difference (BCa with percentile fallback).
    alpha : float
        Level for ``significant`` (Holm-adjusted p <= alpha).
    max_exact_n, n_permutations : see :func:`helpers.stats.inference.sign_flip_test`.
    seed : int or numpy.random.Generator
        One child stream per pair (bootstrap and Monte Carlo), pairs in column order.
    nan_policy : {"raise", "omit"}
        ``"omit"`` uses, per pair, the units where both models have a value (``n`` says how many).

    Returns
    -------
    pandas.DataFrame
        One row per pair (model_a before model_b in column order): ``model_a, model_b, n, mean_a, mean_b,
        mean_difference`` (a - b), ``ci_low, ci_high, ci_method, cohens_dz, hedges_gz`` (d_z times J(n-1)),
        ``p_value, p_method, p_holm, significant, favoured`` (model name or "tie"), ``min_attainable_p``
        (2/2^n, or 1/(1+B) for Monte Carlo) and ``min_attainable_p_holm`` (times the number of pairs m,
        capped at 1).
    """
    higher_is_better = as_direction(higher_is_better)
    alpha = as_level(alpha, "alpha")
    wide = as_wide(data, unit=unit, model=model, value=value, nan_policy=nan_policy)
    if wide.shape[1] < 2:
        raise ValueError(f"need at least 2 models for paired comparisons, got {list(wide.columns)}")
    pairs = list(itertools.combinations(wide.columns, 2))
    rows = []
    for (name_a, name_b), rng in zip(pairs, _spawn(seed, len(pairs))):
        both = wide[[name_a, name_b]].dropna()
        if both.shape[0] == 0:
            raise ValueError(f"models {name_a!r} and {name_b!r} share no unit with both values")
        rows.append(_pair_row(both, name_a, name_b, rng=rng, higher_is_better=higher_is_better,
                              confidence=confidence, n_resamples=n_resamples, max_exact_n=max_exact_n,
                              n_permutations=n_permutations))
    table = pd.DataFrame(rows)
    m = len(pairs)
    table.insert(table.columns.get_loc("p_method") + 1, "p_holm", holm_adjust(table["p_value"].to_numpy()))
    table.insert(table.columns.get_loc("p_holm") + 1, "significant", table["p_holm"] <= alpha)
    table["min_attainable_p_holm"] = np.minimum(1.0, m * table["min_attainable_p"])
    return table


# ----------------------------------------------------------------------------------------------------------
# Rank bootstrap
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RankBootstrap:
    """Bootstrap distribution of model ranks (paired resampling of units).

    Attributes
    ----------
    ranks : numpy.ndarray, shape (n_resamples, k)
        Rank of each model (columns in ``models`` order) in each resample; 1 = best, average ranks for ties.
    observed_ranks : pandas.Series
        Ranks on the original data.
    models : tuple of str
    n : int
        Units resampled.
    n_omitted : int
        Incomplete units dropped before resampling.
    scheme : str
        ``"aggregate-then-rank"`` or ``"rank-then-aggregate"``.
    higher_is_better : bool
    """

    ranks: np.ndarray = field(repr=False)
    observed_ranks: pd.Series = field(repr=False)
    models: tuple
    n: int
    n_omitted: int
    scheme: str
    higher_is_better: bool

    @property
    def n_resamples(self) -> int:
        return int(self.ranks.shape[0])

    def summary(self, *, confidence: float = 0.95) -> pd.DataFrame:
        """Per model: ``observed_rank, median_rank, mean_rank, rank_low, rank_high`` (equal-tailed percentile
        interval of the bootstrap ranks, linear interpolation) and ``p_first`` (share of resamples with rank
        exactly 1, so shared first places do not count); sorted by observed rank, then median rank."""
        confidence = as_level(confidence, "confidence")
        tail = (1.0 - confidence) / 2.0
        low, high = np.quantile(self.ranks, [tail, 1.0 - tail], axis=0, method="linear")
        table = pd.DataFrame(
            {
                "model": list(self.models),
                "observed_rank": self.observed_ranks.to_numpy(),
                "median_rank": np.median(self.ranks, axis=0),
                "mean_rank": self.ranks.mean(axis=0),
                "rank_low": low,
                "rank_high": high,
                "p_first": (self.ranks == 1.0).mean(axis=0),
                "n": self.n,
                "n_resamples": self.n_resamples,
            }
        )
        return table.sort_values(["observed_rank", "median_rank"], kind="stable").reset_index(drop=True)

    def distribution(self) -> pd.DataFrame:
        """Long table ``model, rank, count, share``: how often each model got each (possibly tied) rank."""
        rows = []
        for j, name in enumerate(self.models):
            values, counts = np.unique(self.ranks[:, j], return_counts=True)
            for v, c in zip(values, counts):
                rows.append({"model": name, "rank": float(v), "count": int(c), "share": c / self.n_resamples})
        return pd.DataFrame(rows)


def bootstrap_ranks(
    data,
    *,
    higher_is_better: bool,
    n_resamples: int = 1_000,
    scheme: str = "aggregate-then-rank",
    seed=0,
    unit: str = "case_id",
    model: str = "model",
    value: str = "value",
    nan_policy: str = "raise",
) -> RankBootstrap:
    """Paired rank bootstrap: resample units with replacement, re-rank the models in every resample.

    Parameters
    ----------
    data : long or wide table, see :func:`helpers.stats.inference.as_wide`.
    higher_is_better : bool
    n_resamples : int
    scheme : {"aggregate-then-rank", "rank-then-aggregate"}
        ``"aggregate-then-rank"``: rank the models' mean values over the resampled units (a leaderboard).
        ``"rank-then-aggregate"``: rank models within each unit, then rank the models' mean per-unit ranks
        (as the Friedman mean rank). Ties get average ranks at both stages.
    seed : int or numpy.random.Generator
    nan_policy : {"raise", "omit"}
        ``"omit"`` drops incomplete units (listwise), counted in ``n_omitted``.

    Returns
    -------
    RankBootstrap

    Notes
    -----
    All models see the same resampled units (paired), so the rank distribution reflects case-sampling
    variability of the whole ranking, as challengeR's bootstrap does. Vectorized: one (B, n) index draw.
    """
    higher_is_better = as_direction(higher_is_better)
    n_resamples = as_count(n_resamples, "n_resamples")
    if scheme not in ("aggregate-then-rank", "rank-then-aggregate"):
        raise ValueError(f"scheme must be 'aggregate-then-rank' or 'rank-then-aggregate', got {scheme!r}")
    wide = as_wide(data, unit=unit, model=model, value=value, nan_policy=nan_policy)
    wide, n_omitted = complete_units(wide)
    n, k = wide.shape
    if n < 1:
        raise ValueError("rank bootstrap needs at least 1 unit with values for all models")
    matrix = wide.to_numpy()
    if scheme == "aggregate-then-rank":
        scores, direction = matrix, higher_is_better
    else:
        scores, direction = rank_rows(matrix, higher_is_better=higher_is_better), False
    observed = rank_rows(scores.mean(axis=0), higher_is_better=direction)
    index = resample_indices(n, n_resamples, seed=seed)
    boot_means = scores[index].mean(axis=1)
    boot_ranks = rank_rows(boot_means, higher_is_better=direction)
    return RankBootstrap(
        ranks=boot_ranks,
        observed_ranks=pd.Series(observed, index=wide.columns, name="observed_rank"),
        models=tuple(wide.columns),
        n=n,
        n_omitted=n_omitted,
        scheme=scheme,
        higher_is_better=higher_is_better,
    )
