"""Statistics for benchmarking segmentation models on few evaluation units (cases, folds, seeds).

Every function here answers one question a reader of a small-N benchmark should ask: how wide is the
uncertainty of a model's mean, is a paired difference distinguishable from zero at this N, do the models'
ranks differ beyond chance (Friedman, Nemenyi), and how much do ranks move across folds, seeds, protocols and
bootstrap resamples.

Conventions
-----------
Inputs
    Either a *tidy* (long) table with one row per evaluation unit and model -- columns ``model``, a unit
    column (``case_id`` by default; a fold or seed identifier works the same way) and ``value`` -- or a *wide*
    table / 2-D array with one row per unit and one column per model. One metric at a time: a long table whose
    ``metric`` column holds more than one metric is rejected. Duplicate (unit, model) rows are rejected, never
    averaged.
Direction
    Ranking functions take an explicit keyword ``higher_is_better`` (True for Dice, False for HD95). Rank 1 is
    the best model; tied values get the average of the ranks they span ("average ranks", as in Demsar 2006).
Missing values
    ``nan_policy="raise"`` (default for paired and multi-model procedures) rejects NaN values;
    ``nan_policy="omit"`` drops them and reports how many: per model for per-model summaries, per pair for
    paired comparisons, and whole units (listwise) for procedures over all models at once (Friedman,
    Nemenyi, rank bootstrap). Every returned table carries ``n``.
Randomness
    Only through ``seed`` (an int, or a ``numpy.random.Generator`` that is consumed). Results are a pure
    function of the inputs and the seed.
Units
    Statistics are in the unit of ``value`` (Dice: unitless; HD95: mm). Paired differences are
    ``model_a - model_b`` in that unit.

Definitions (with their variants named)
---------------------------------------
* Bootstrap: nonparametric, resampling units with replacement, statistic = arithmetic mean. BCa interval
  (Efron & Tibshirani 1993, ch. 14) with the bias correction ``z0`` taken from the *mid-rank* proportion
  ``(#{theta* < theta} + #{theta* <= theta}) / (2B)`` and the acceleration from the jackknife, both as in
  ``scipy.stats.bootstrap``; quantiles by linear interpolation (Hyndman & Fan type 7). Where BCa is undefined
  (fewer than 2 units, zero spread, or a bootstrap distribution entirely on one side of the estimate) the
  percentile interval is returned and the method string says so and why.
* Effect size: Cohen's d_z = mean(d) / sd(d) with sd using ddof=1 (Cohen 1988, paired design); Hedges'
  small-sample correction with the exact gamma-function factor J(df) = Gamma(df/2) / (sqrt(df/2)
  Gamma((df-1)/2)), df = n - 1 (Hedges 1981), not the approximation 1 - 3 / (4 df - 1).
* Paired test: two-sided sign-flip permutation test of the mean difference: under H0 each difference is
  equally likely to have either sign; p = #{sign vectors s : |sum(s d)| >= |sum(d)|} / 2^n, enumerating all
  2^n sign vectors for n <= ``max_exact_n`` (20), otherwise Monte Carlo with p = (1 + hits) / (1 + B)
  (Phipson & Smyth 2010). The smallest attainable exact p is 2 / 2^n (the observed vector and its mirror).
* Multiplicity: Holm (1979) step-down adjustment, made monotone, capped at 1.
* Friedman test: chi-square statistic with the tie correction used by ``scipy.stats.friedmanchisquare``;
  Iman-Davenport F as recommended by Demsar (2006).
* Nemenyi post-hoc: critical difference CD = q_alpha sqrt(k (k + 1) / (6 N)), q_alpha = studentized range
  quantile (k groups, infinite df) / sqrt(2) (Demsar 2006, Table 5). Two models differ when their mean ranks
  differ by at least CD.
* Kendall's tau: tau-b (tie-adjusted), from ``scipy.stats.kendalltau``.

References
----------
Demsar J. Statistical comparisons of classifiers over multiple data sets. JMLR 7:1-30, 2006.
Efron B, Tibshirani RJ. An Introduction to the Bootstrap. Chapman & Hall, 1993.
Hedges LV. Distribution theory for Glass's estimator of effect size. J Educ Stat 6(2):107-128, 1981.
Holm S. A simple sequentially rejective multiple test procedure. Scand J Stat 6:65-70, 1979.
Phipson B, Smyth GK. Permutation p-values should never be zero. Stat Appl Genet Mol Biol 9(1), 2010.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import special
from scipy import stats as _sps

__all__ = [
    "as_wide",
    "BootstrapInterval",
    "bootstrap_mean_ci",
    "summarize_models",
    "cohens_dz",
    "hedges_correction",
    "SignFlipResult",
    "sign_flip_test",
    "min_attainable_p",
    "attainable_p_table",
    "holm_adjust",
    "paired_comparisons",
    "rank_rows",
    "FriedmanResult",
    "friedman_test",
    "nemenyi_q",
    "nemenyi_critical_difference",
    "NemenyiResult",
    "nemenyi_test",
    "FriedmanNemenyi",
    "friedman_then_nemenyi",
    "ranks_by_group",
    "rank_ranges",
    "rank_agreement",
    "RankBootstrap",
    "bootstrap_ranks",
]

_NAN_POLICIES = ("raise", "omit")


# ----------------------------------------------------------------------------------------------------------
# Input handling
# ----------------------------------------------------------------------------------------------------------


def _check_nan_policy(nan_policy: str) -> None:
    if nan_policy not in _NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {_NAN_POLICIES}, got {nan_policy!r}")


def _rng(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int or a numpy.random.Generator, got {type(seed).__name__}: {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    return np.random.default_rng(int(seed))


def _check_confidence(confidence) -> float:
    if not isinstance(confidence, (float, int, np.floating)) or isinstance(confidence, bool):
        raise TypeError(f"confidence must be a float in (0, 1), got {confidence!r}")
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return float(confidence)


def _check_alpha(alpha) -> float:
    if not isinstance(alpha, (float, int, np.floating)) or isinstance(alpha, bool):
        raise TypeError(f"alpha must be a float in (0, 1), got {alpha!r}")
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    return float(alpha)


def _check_positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def as_wide(
    data,
    *,
    unit: str = "case_id",
    model: str = "model",
    value: str = "value",
    models=None,
    nan_policy: str = "raise",
) -> pd.DataFrame:
    """Return the units x models matrix of one metric as a float DataFrame.

    Parameters
    ----------
    data : pandas.DataFrame or array_like
        A long table with columns ``unit``, ``model`` and ``value`` (one row per unit and model; if it has a
        ``metric`` column, that column must hold a single metric), or a wide DataFrame (index = units,
        columns = models), or a 2-D array (rows = units, columns = models, named by ``models`` or
        ``"model_0", "model_1", ...``).
    unit, model, value : str
        Column names of the long format.
    models : sequence of str, optional
        Column order (and subset) to return; for a 2-D array, the names of its columns.
    nan_policy : {"raise", "omit"}
        ``"raise"``: a NaN value (or a unit lacking a model, in the long format) is an error. ``"omit"``:
        keep NaN in the matrix; the caller drops what it must and counts it.

    Returns
    -------
    pandas.DataFrame
        Float matrix, index named ``unit``, columns named ``model``. Units keep their first-seen order.

    Raises
    ------
    ValueError
        Duplicate (unit, model) rows, more than one metric, fewer than one unit or model, non-numeric values,
        or NaN under ``nan_policy="raise"``.
    """
    _check_nan_policy(nan_policy)
    if isinstance(data, pd.DataFrame) and {model, value}.issubset(data.columns) and unit in data.columns:
        if "metric" in data.columns and data["metric"].nunique(dropna=False) > 1:
            found = sorted(map(str, data["metric"].unique()))
            raise ValueError(f"data holds several metrics {found}; select one metric before calling")
        duplicated = data.duplicated([unit, model])
        if duplicated.any():
            first = data.loc[duplicated, [unit, model]].iloc[0].tolist()
            raise ValueError(f"data has duplicate ({unit}, {model}) rows, e.g. {first}; aggregate them explicitly")
        try:
            values = pd.to_numeric(data[value], errors="raise")
        except (TypeError, ValueError) as error:
            raise ValueError(f"column {value!r} must be numeric: {error}") from None
        long = data.assign(**{value: values.astype(float)})
        wide = long.pivot(index=unit, columns=model, values=value)
        wide = wide.reindex(index=pd.unique(long[unit]), columns=pd.unique(long[model]))
    elif isinstance(data, pd.DataFrame):
        if isinstance(data.columns, pd.MultiIndex) or data.shape[1] == 0:
            raise ValueError(
                f"data must be a long table with columns ({unit!r}, {model!r}, {value!r}) or a wide table "
                f"with one column per model; got columns {list(data.columns)}"
            )
        try:
            wide = data.apply(pd.to_numeric, errors="raise").astype(float)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"wide data must be numeric (or pass a long table with columns {unit!r}, {model!r}, "
                f"{value!r}): {error}"
            ) from None
    else:
        array = np.asarray(data)
        if array.ndim != 2:
            raise ValueError(f"data must be 2-D (units x models), got shape {array.shape}")
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            raise ValueError(f"data must be numeric, got dtype {array.dtype}")
        names = [f"model_{j}" for j in range(array.shape[1])] if models is None else [str(m) for m in models]
        if len(names) != array.shape[1]:
            raise ValueError(f"models has {len(names)} names but data has {array.shape[1]} columns")
        wide = pd.DataFrame(array.astype(float), columns=names)
        models = None
    if models is not None:
        models = list(models)
        missing = [m for m in models if m not in wide.columns]
        if missing:
            raise ValueError(f"models {missing} not found in data (models present: {list(wide.columns)})")
        wide = wide[models]
    if wide.shape[0] < 1 or wide.shape[1] < 1:
        raise ValueError(f"data must have at least one unit and one model, got shape {wide.shape}")
    if wide.columns.duplicated().any():
        raise ValueError(f"duplicate model columns: {list(wide.columns[wide.columns.duplicated()])}")
    if nan_policy == "raise" and wide.isna().to_numpy().any():
        row, col = np.argwhere(wide.isna().to_numpy())[0]
        raise ValueError(
            f"data has missing values (e.g. {unit}={wide.index[row]!r}, {model}={wide.columns[col]!r}); "
            "pass nan_policy='omit' to drop them and count them"
        )
    wide.index.name = unit
    wide.columns.name = model
    return wide


def _complete_units(wide: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    complete = wide.notna().all(axis=1)
    return wide.loc[complete], int((~complete).sum())


def rank_rows(matrix, *, higher_is_better: bool) -> np.ndarray:
    """Rank the models within each row (unit); rank 1 is the best, ties get average ranks.

    Parameters
    ----------
    matrix : array_like, shape (..., k)
        Scores, models along the last axis. NaN is not allowed.
    higher_is_better : bool
        True when a larger value is better (Dice), False when smaller is better (HD95).

    Returns
    -------
    numpy.ndarray
        Float ranks of the same shape, each row a permutation of 1..k or its tie-averaged version.
    """
    higher_is_better = _check_bool(higher_is_better, "higher_is_better")
    array = np.asarray(matrix, dtype=float)
    if array.ndim < 1 or array.shape[-1] < 1:
        raise ValueError(f"matrix must have at least one model along its last axis, got shape {array.shape}")
    if np.isnan(array).any():
        raise ValueError("matrix must not contain NaN; drop incomplete units first")
    return _sps.rankdata(-array if higher_is_better else array, method="average", axis=-1)


# ----------------------------------------------------------------------------------------------------------
# Bootstrap intervals
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


def bootstrap_mean_ci(
    values,
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    method: str = "BCa",
    seed=0,
) -> BootstrapInterval:
    """Bootstrap confidence interval for the mean of ``values`` (BCa, or percentile).

    Parameters
    ----------
    values : array_like, 1-D
        One value per unit (a model's per-case scores, or paired differences). Must be finite.
    confidence : float
        Two-sided coverage in (0, 1).
    n_resamples : int
        Number of resamples B; resample indices are drawn as ``rng.integers(0, n, (B, n))``, the same draw as
        ``scipy.stats.bootstrap`` makes, so both agree for the same Generator state.
    method : {"BCa", "percentile"}
        ``"BCa"`` falls back to the percentile interval where BCa is undefined, and says so in ``method``.
    seed : int or numpy.random.Generator

    Returns
    -------
    BootstrapInterval

    Notes
    -----
    BCa levels: alpha_1 = Phi(z0 + (z0 + z_a) / (1 - a (z0 + z_a))), alpha_2 likewise with z_(1-a);
    z0 = Phi^-1((#{theta* < theta} + #{theta* <= theta}) / 2B); a = sum((x - xbar)^3) / (6 (sum((x -
    xbar)^2))^1.5) (jackknife for the mean). The interval is the (alpha_1, alpha_2) quantiles of the bootstrap
    means (linear interpolation). With all values equal the interval is the single point [value, value].
    """
    x = np.asarray(values, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {x.shape}")
    if x.size == 0:
        raise ValueError("values must not be empty")
    if not np.isfinite(x).all():
        raise ValueError("values must be finite (drop NaN values first and count them)")
    confidence = _check_confidence(confidence)
    n_resamples = _check_positive_int(n_resamples, "n_resamples", minimum=2)
    if method not in ("BCa", "percentile"):
        raise ValueError(f"method must be 'BCa' or 'percentile', got {method!r}")
    rng = _rng(seed)

    n = x.size
    theta_hat = float(np.mean(x))
    index = rng.integers(0, n, (n_resamples, n))
    theta_b = np.mean(x[index], axis=-1)
    alpha = (1.0 - confidence) / 2.0

    z0 = a = np.nan
    used = "percentile"
    levels = (alpha, 1.0 - alpha)
    if method == "BCa":
        a1, a2, z0, a, reason = _bca_levels(x, theta_hat, theta_b, alpha)
        if reason is None:
            levels, used = (a1, a2), "BCa"
        else:
            used = f"percentile (BCa undefined: {reason})"
    low, high = np.quantile(theta_b, levels, method="linear")
    return BootstrapInterval(
        estimate=theta_hat,
        low=float(low),
        high=float(high),
        confidence=confidence,
        n=n,
        n_resamples=n_resamples,
        method=used,
        bias_correction=float(z0),
        acceleration=float(a),
    )


def _spawn(seed, count: int) -> list[np.random.Generator]:
    return _rng(seed).spawn(count) if count else []


def summarize_models(
    data,
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    method: str = "BCa",
    seed=0,
    unit: str = "case_id",
    model: str = "model",
    value: str = "value",
    nan_policy: str = "omit",
) -> pd.DataFrame:
    """Per model: mean with its bootstrap confidence interval.

    Parameters
    ----------
    data : long or wide table, see :func:`as_wide`.
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
# Paired comparisons
# ----------------------------------------------------------------------------------------------------------


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


def _all_sign_sums(d: np.ndarray) -> np.ndarray:
    """All 2^n values of sum(s * d) over s in {-1, 1}^n (order irrelevant), built from two halves."""

    def half_sums(part):
        sums = np.zeros(1)
        for x in part:
            sums = np.concatenate([sums + x, sums - x])
        return sums

    h = d.size // 2
    return (half_sums(d[:h])[:, None] + half_sums(d[h:])[None, :]).ravel()


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
    max_exact_n = _check_positive_int(max_exact_n, "max_exact_n", minimum=0)
    if max_exact_n > 24:
        raise ValueError(f"max_exact_n must be <= 24 (2^24 sign vectors), got {max_exact_n}")
    n_permutations = _check_positive_int(n_permutations, "n_permutations")
    n = d.size
    observed = abs(float(np.sum(d)))
    tolerance = 1e-9 * float(np.sum(np.abs(d)))
    if n <= max_exact_n:
        sums = _all_sign_sums(d)
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
    rng = _rng(seed)
    hits = 0
    total_d = float(np.sum(d))
    batch = max(1, min(n_permutations, 2**18 // n))  # ~2 MB float blocks stay in cache
    done = 0
    while done < n_permutations:
        size = min(batch, n_permutations - done)
        # A sign vector s = 2 b - 1 with b in {0, 1}^n: sum(s d) = 2 (b . d) - sum(d); float BLAS matmul.
        bits = rng.integers(0, 2, (size, n), dtype=np.int8).astype(np.float64)
        hits += int(np.count_nonzero(np.abs(2.0 * (bits @ d) - total_d) >= observed - tolerance))
        done += size
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


def min_attainable_p(n_units: int, *, n_comparisons: int = 1) -> float:
    """Smallest p-value an exact two-sided sign-flip test can reach with ``n_units`` pairs, Holm-adjusted.

    The exact test's smallest p is 2 / 2^n (only the observed sign vector and its mirror image reach the
    observed |sum|). Under Holm's procedure the smallest adjusted p-value is m * p_(1) >= m * 2 / 2^n for m
    comparisons, capped at 1. Example: n = 9 gives 1/256 = 0.0039; with 6 models (m = 15 pairs) the best
    attainable Holm-adjusted p is 15/256 = 0.0586 > 0.05, so no pair can be declared different at 5%.
    """
    n_units = _check_positive_int(n_units, "n_units")
    n_comparisons = _check_positive_int(n_comparisons, "n_comparisons")
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
    alpha = _check_alpha(alpha)
    units = [n_units] if isinstance(n_units, (int, np.integer)) else list(n_units)
    models = [n_models] if isinstance(n_models, (int, np.integer)) else list(n_models)
    rows = []
    for n in units:
        for k in models:
            k = _check_positive_int(k, "n_models", minimum=2)
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
    data : long or wide table, see :func:`as_wide`. Units are the pairing (same case, same fold).
    higher_is_better : bool
        Decides the ``favoured`` column (which model of the pair has the better mean).
    confidence, n_resamples : bootstrap CI of the mean difference (BCa with percentile fallback).
    alpha : float
        Level for ``significant`` (Holm-adjusted p <= alpha).
    max_exact_n, n_permutations : see :func:`sign_flip_test`.
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
    higher_is_better = _check_bool(higher_is_better, "higher_is_better")
    alpha = _check_alpha(alpha)
    wide = as_wide(data, unit=unit, model=model, value=value, nan_policy=nan_policy)
    if wide.shape[1] < 2:
        raise ValueError(f"need at least 2 models for paired comparisons, got {list(wide.columns)}")
    pairs = list(itertools.combinations(wide.columns, 2))
    rows = []
    for (name_a, name_b), rng in zip(pairs, _spawn(seed, len(pairs))):
        both = wide[[name_a, name_b]].dropna()
        if both.shape[0] == 0:
            raise ValueError(f"models {name_a!r} and {name_b!r} share no unit with both values")
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
        rows.append(
            {
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
        )
    table = pd.DataFrame(rows)
    m = len(pairs)
    table.insert(table.columns.get_loc("p_method") + 1, "p_holm", holm_adjust(table["p_value"].to_numpy()))
    table.insert(table.columns.get_loc("p_holm") + 1, "significant", table["p_holm"] <= alpha)
    table["min_attainable_p_holm"] = np.minimum(1.0, m * table["min_attainable_p"])
    return table


# ----------------------------------------------------------------------------------------------------------
# Friedman and Nemenyi
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FriedmanResult:
    """Result of :func:`friedman_test`.

    Attributes
    ----------
    statistic : float
        Friedman chi-square (tie-corrected), df = k - 1.
    p_value : float
        Chi-square approximation.
    iman_davenport : float
        F_F = (N - 1) chi2 / (N (k - 1) - chi2), df (k - 1, (k - 1)(N - 1)); inf when chi2 reaches its maximum.
    iman_davenport_p : float
    n : int
        Units used (complete units only).
    n_omitted : int
        Incomplete units dropped under ``nan_policy="omit"``.
    k : int
        Models.
    mean_ranks : pandas.Series
        Mean rank per model (1 = best), in column order.
    """

    statistic: float
    p_value: float
    iman_davenport: float
    iman_davenport_p: float
    n: int
    n_omitted: int
    k: int
    mean_ranks: pd.Series = field(repr=False)


def _friedman_from_ranks(ranks: np.ndarray) -> tuple[float, float, float, float]:
    n, k = ranks.shape
    rank_sums = ranks.sum(axis=0)
    # Tie correction: 1 - sum over rows and tie groups of (t^3 - t) / (n k (k^2 - 1)).
    ties = 0.0
    for row in ranks:
        _, counts = np.unique(row, return_counts=True)
        ties += float(np.sum(counts**3 - counts))
    correction = 1.0 - ties / (n * k * (k * k - 1))
    if correction <= 0:
        return float("nan"), float("nan"), float("nan"), float("nan")
    chi2 = (12.0 / (n * k * (k + 1)) * float(np.sum(rank_sums**2)) - 3.0 * n * (k + 1)) / correction
    chi2 = max(chi2, 0.0)
    p = float(_sps.chi2.sf(chi2, k - 1))
    denominator = n * (k - 1) - chi2
    if n < 2:
        f, pf = float("nan"), float("nan")
    elif denominator <= 1e-12 * n * (k - 1):
        f, pf = float("inf"), 0.0
    else:
        f = (n - 1) * chi2 / denominator
        pf = float(_sps.f.sf(f, k - 1, (k - 1) * (n - 1)))
    return float(chi2), p, float(f), pf


def friedman_test(
    data,
    *,
    higher_is_better: bool,
    unit: str = "case_id",
    model: str = "model",
    value: str = "value",
    nan_policy: str = "raise",
) -> FriedmanResult:
    """Friedman test that all models have the same mean rank over units, plus the Iman-Davenport F.

    Ranks within each unit (1 = best, average ranks for ties); chi2 = [12 / (N k (k + 1)) sum_j R_j^2 -
    3 N (k + 1)] / C with R_j the rank sums and C = 1 - sum(t^3 - t) / (N k (k^2 - 1)) the tie correction
    (as ``scipy.stats.friedmanchisquare``). The chi-square approximation is rough for small N and k; read the
    p-value together with N. Requires k >= 2 models and N >= 1 complete units; with C = 0 (every unit fully
    tied) the statistic is NaN.
    """
    higher_is_better = _check_bool(higher_is_better, "higher_is_better")
    wide = as_wide(data, unit=unit, model=model, value=value, nan_policy=nan_policy)
    wide, n_omitted = _complete_units(wide)
    if wide.shape[1] < 2:
        raise ValueError(f"Friedman test needs at least 2 models, got {list(wide.columns)}")
    if wide.shape[0] < 1:
        raise ValueError("Friedman test needs at least 1 unit with values for all models")
    ranks = rank_rows(wide.to_numpy(), higher_is_better=higher_is_better)
    chi2, p, f, pf = _friedman_from_ranks(ranks)
    return FriedmanResult(
        statistic=chi2,
        p_value=p,
        iman_davenport=f,
        iman_davenport_p=pf,
        n=wide.shape[0],
        n_omitted=n_omitted,
        k=wide.shape[1],
        mean_ranks=pd.Series(ranks.mean(axis=0), index=wide.columns, name="mean_rank"),
    )


def nemenyi_q(k: int, *, alpha: float = 0.05) -> float:
    """Nemenyi critical value q_alpha = studentized range (1 - alpha) quantile (k, df = inf) / sqrt(2).

    Demsar (2006, Table 5a) lists, for alpha = 0.05, k = 2..10: 1.960, 2.343, 2.569, 2.728, 2.850, 2.949,
    3.031, 3.102, 3.164.
    """
    k = _check_positive_int(k, "k", minimum=2)
    alpha = _check_alpha(alpha)
    return float(_sps.studentized_range.ppf(1.0 - alpha, k, np.inf) / np.sqrt(2.0))


def nemenyi_critical_difference(k: int, n: int, *, alpha: float = 0.05) -> float:
    """Nemenyi critical difference of mean ranks: CD = q_alpha sqrt(k (k + 1) / (6 n)).

    ``k`` models, ``n`` units (data sets, cases, folds). Demsar's example: k = 4, n = 14, alpha = 0.05 gives
    2.569 * sqrt(20 / 84) = 1.25.
    """
    k = _check_positive_int(k, "k", minimum=2)
    n = _check_positive_int(n, "n")
    return nemenyi_q(k, alpha=alpha) * float(np.sqrt(k * (k + 1) / (6.0 * n)))


@dataclass(frozen=True)
class NemenyiResult:
    """Result of :func:`nemenyi_test`.

    Attributes
    ----------
    mean_ranks : pandas.Series
        Mean rank per model (1 = best), sorted best first.
    critical_difference : float
    q_alpha : float
    alpha : float
    n, k : int
        Units and models.
    n_omitted : int
        Incomplete units dropped.
    pairwise : pandas.DataFrame
        ``model_a, model_b, rank_difference`` (|R_a - R_b|), ``p_value`` (studentized range, df = inf),
        ``significant`` (rank_difference >= CD).
    groups : tuple of tuple of str
        Maximal runs of consecutive models (best first) whose mean ranks span less than CD: the bars of the
        critical-difference diagram.
    higher_is_better : bool
    """

    mean_ranks: pd.Series = field(repr=False)
    critical_difference: float
    q_alpha: float
    alpha: float
    n: int
    k: int
    n_omitted: int
    pairwise: pd.DataFrame = field(repr=False)
    groups: tuple
    higher_is_better: bool


def _nemenyi_groups(sorted_ranks: np.ndarray, names, cd: float) -> tuple:
    groups = []
    last_end = -1
    for i in range(len(sorted_ranks)):
        j = i
        while j + 1 < len(sorted_ranks) and sorted_ranks[j + 1] - sorted_ranks[i] < cd:
            j += 1
        if j > i and j > last_end:
            groups.append(tuple(names[i : j + 1]))
            last_end = j
    return tuple(groups)


def nemenyi_test(
    data,
    *,
    higher_is_better: bool,
    alpha: float = 0.05,
    unit: str = "case_id",
    model: str = "model",
    value: str = "value",
    nan_policy: str = "raise",
) -> NemenyiResult:
    """Nemenyi all-pairs post-hoc test on mean ranks, with the critical difference and CD-diagram groups.

    Two models differ at level alpha when |R_a - R_b| >= CD = q_alpha sqrt(k (k + 1) / (6 N)); the pairwise
    p-value is P(Q_(k, inf) >= sqrt(2) |R_a - R_b| / sqrt(k (k + 1) / (6 N))), so p <= alpha exactly when the
    difference reaches CD. Ranks: 1 = best, average ranks for ties; complete units only.
    """
    higher_is_better = _check_bool(higher_is_better, "higher_is_better")
    alpha = _check_alpha(alpha)
    wide = as_wide(data, unit=unit, model=model, value=value, nan_policy=nan_policy)
    wide, n_omitted = _complete_units(wide)
    n, k = wide.shape
    if k < 2:
        raise ValueError(f"Nemenyi test needs at least 2 models, got {list(wide.columns)}")
    if n < 1:
        raise ValueError("Nemenyi test needs at least 1 unit with values for all models")
    ranks = rank_rows(wide.to_numpy(), higher_is_better=higher_is_better)
    mean_ranks = pd.Series(ranks.mean(axis=0), index=wide.columns, name="mean_rank")
    q = nemenyi_q(k, alpha=alpha)
    scale = float(np.sqrt(k * (k + 1) / (6.0 * n)))
    cd = q * scale
    rows = []
    for name_a, name_b in itertools.combinations(wide.columns, 2):
        difference = abs(float(mean_ranks[name_a] - mean_ranks[name_b]))
        p = float(_sps.studentized_range.sf(np.sqrt(2.0) * difference / scale, k, np.inf)) if difference else 1.0
        rows.append(
            {
                "model_a": name_a,
                "model_b": name_b,
                "rank_difference": difference,
                "p_value": min(1.0, p),
                "significant": difference >= cd,
            }
        )
    ordered = mean_ranks.sort_values(kind="stable")
    return NemenyiResult(
        mean_ranks=ordered,
        critical_difference=cd,
        q_alpha=q,
        alpha=alpha,
        n=n,
        k=k,
        n_omitted=n_omitted,
        pairwise=pd.DataFrame(rows),
        groups=_nemenyi_groups(ordered.to_numpy(), list(ordered.index), cd),
        higher_is_better=higher_is_better,
    )


@dataclass(frozen=True)
class FriedmanNemenyi:
    """Result of :func:`friedman_then_nemenyi`: the omnibus test and, only if it rejects, the post-hoc test.

    Attributes
    ----------
    friedman : FriedmanResult
    nemenyi : NemenyiResult or None
        None when the Iman-Davenport test does not reject at ``alpha``: no post-hoc test is run.
    alpha : float
    rejects : bool
        ``friedman.iman_davenport_p <= alpha``.
    """

    friedman: FriedmanResult
    nemenyi: NemenyiResult | None
    alpha: float
    rejects: bool

    @property
    def verdict(self) -> str:
        """``"difference detected"`` or ``"no difference detected"`` (Iman-Davenport at ``alpha``)."""
        return "difference detected" if self.rejects else "no difference detected"


def friedman_then_nemenyi(
    data,
    *,
    higher_is_better: bool,
    alpha: float = 0.05,
    unit: str = "case_id",
    model: str = "model",
    value: str = "value",
    nan_policy: str = "raise",
) -> FriedmanNemenyi:
    """Demsar's (2006) procedure: the Friedman test with the Iman-Davenport F (the less conservative statistic
    Demsar recommends) first; the Nemenyi post-hoc test only when it rejects at ``alpha``. A NaN
    Iman-Davenport p (every unit fully tied, or a single unit) does not reject."""
    alpha = _check_alpha(alpha)
    f = friedman_test(data, higher_is_better=higher_is_better, unit=unit, model=model, value=value,
                      nan_policy=nan_policy)
    rejects = bool(np.isfinite(f.iman_davenport_p) and f.iman_davenport_p <= alpha)
    nemenyi = (nemenyi_test(data, higher_is_better=higher_is_better, alpha=alpha, unit=unit, model=model,
                            value=value, nan_policy=nan_policy) if rejects else None)
    return FriedmanNemenyi(friedman=f, nemenyi=nemenyi, alpha=alpha, rejects=rejects)


# ----------------------------------------------------------------------------------------------------------
# Rank volatility
# ----------------------------------------------------------------------------------------------------------


def ranks_by_group(
    data: pd.DataFrame,
    *,
    group,
    higher_is_better: bool,
    model: str = "model",
    value: str = "value",
) -> pd.DataFrame:
    """Rank the models within each group (fold, seed, protocol, case) by their mean value in that group.

    Parameters
    ----------
    data : pandas.DataFrame
        Long table with columns ``model``, ``value`` and the ``group`` column(s); several rows per (group,
        model) are averaged (e.g. the cases of one fold), NaN values excluded and counted.
    group : str or list of str
        Column(s) defining a ranking occasion, e.g. ``"fold"``, ``"seed"``, ``["protocol", "fold"]``.
    higher_is_better : bool

    Returns
    -------
    pandas.DataFrame
        One row per group and model: group column(s), ``model, n, n_missing, mean, rank`` (1 = best, average
        ranks for ties). A group in which some model has no value at all is rejected (its ranks would not be
        comparable).
    """
    higher_is_better = _check_bool(higher_is_better, "higher_is_better")
    groups = [group] if isinstance(group, str) else list(group)
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    missing = [c for c in [*groups, model, value] if c not in data.columns]
    if missing:
        raise ValueError(f"data lacks columns {missing} (has {list(data.columns)})")
    if "metric" in data.columns and data["metric"].nunique(dropna=False) > 1:
        raise ValueError(f"data holds several metrics {sorted(map(str, data['metric'].unique()))}; select one")
    values = pd.to_numeric(data[value], errors="coerce").astype(float)
    if (values.isna() & data[value].notna()).any():
        raise ValueError(f"column {value!r} must be numeric")
    frame = data[[*groups, model]].assign(_v=values)
    summary = (
        frame.groupby([*groups, model], sort=False, dropna=False)["_v"]
        .agg(n="count", n_missing=lambda s: int(s.isna().sum()), mean="mean")
        .reset_index()
    )
    models = pd.unique(frame[model])
    pieces = []
    for key, block in summary.groupby(groups, sort=False, dropna=False):
        key = key[0] if isinstance(key, tuple) and len(key) == 1 else key
        block = block.set_index(model).reindex(models)
        if block["mean"].isna().any():
            absent = list(block.index[block["mean"].isna()])
            raise ValueError(f"group {key!r} has no values for models {absent}")
        block = block.reset_index()
        block["rank"] = rank_rows(block["mean"].to_numpy(), higher_is_better=higher_is_better)
        pieces.append(block)
    result = pd.concat(pieces, ignore_index=True)
    result["n"] = result["n"].astype(int)
    result["n_missing"] = result["n_missing"].astype(int)
    return result[[*groups, model, "n", "n_missing", "mean", "rank"]]


def rank_ranges(ranks: pd.DataFrame, *, model: str = "model", rank: str = "rank") -> pd.DataFrame:
    """Summarize how much each model's rank moves across ranking occasions.

    Parameters
    ----------
    ranks : pandas.DataFrame
        Output of :func:`ranks_by_group` (or any table with ``model`` and ``rank`` columns, one row per
        occasion and model).

    Returns
    -------
    pandas.DataFrame
        One row per model, sorted by mean rank: ``model, n_occasions, mean_rank, median_rank, min_rank,
        max_rank, rank_range`` (max - min), ``n_first`` (occasions ranked 1, ties at 1 excluded),
        ``share_first``.
    """
    if not isinstance(ranks, pd.DataFrame):
        raise TypeError(f"ranks must be a pandas DataFrame, got {type(ranks).__name__}")
    missing = [c for c in (model, rank) if c not in ranks.columns]
    if missing:
        raise ValueError(f"ranks lacks columns {missing} (has {list(ranks.columns)})")
    if ranks.empty:
        raise ValueError("ranks must not be empty")
    grouped = ranks.groupby(model, sort=False)[rank]
    table = pd.DataFrame(
        {
            "n_occasions": grouped.count(),
            "mean_rank": grouped.mean(),
            "median_rank": grouped.median(),
            "min_rank": grouped.min(),
            "max_rank": grouped.max(),
            "n_first": grouped.apply(lambda r: int((r == 1.0).sum())),
        }
    )
    table["rank_range"] = table["max_rank"] - table["min_rank"]
    table["share_first"] = table["n_first"] / table["n_occasions"]
    table = table.reset_index().rename(columns={model: "model"})
    columns = ["model", "n_occasions", "mean_rank", "median_rank", "min_rank", "max_rank", "rank_range"]
    return table.sort_values("mean_rank", kind="stable")[[*columns, "n_first", "share_first"]].reset_index(
        drop=True
    )


def rank_agreement(
    data: pd.DataFrame,
    *,
    protocol: str,
    higher_is_better: bool,
    model: str = "model",
    value: str = "value",
) -> pd.DataFrame:
    """Kendall's tau-b between the model orderings of every pair of protocols (or seeds, or metrics).

    Each protocol's ordering is by the model's mean ``value`` under that protocol (NaN excluded). Models
    present under both protocols are compared.

    Returns
    -------
    pandas.DataFrame
        One row per pair of protocol values: ``protocol_a, protocol_b, n_models, kendall_tau, p_value``
        (scipy's exact p for small k without ties), ``leader_a, leader_b, same_leader`` (leader = best mean;
        ties joined with "=").
    """
    higher_is_better = _check_bool(higher_is_better, "higher_is_better")
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    missing = [c for c in (protocol, model, value) if c not in data.columns]
    if missing:
        raise ValueError(f"data lacks columns {missing} (has {list(data.columns)})")
    if "metric" in data.columns and data["metric"].nunique(dropna=False) > 1:
        raise ValueError(f"data holds several metrics {sorted(map(str, data['metric'].unique()))}; select one")
    means = (
        data.assign(_v=pd.to_numeric(data[value], errors="raise").astype(float))
        .groupby([protocol, model], sort=False)["_v"]
        .mean()
        .unstack(model)
    )
    if means.shape[0] < 2:
        raise ValueError(f"column {protocol!r} must hold at least 2 protocols, got {list(means.index)}")
    sign = 1.0 if higher_is_better else -1.0

    def leader(row: pd.Series) -> str:
        row = row.dropna() * sign
        return "=".join(map(str, row.index[row == row.max()]))

    rows = []
    for name_a, name_b in itertools.combinations(means.index, 2):
        pair = means.loc[[name_a, name_b]].T.dropna()
        if pair.shape[0] < 2:
            tau, p = float("nan"), float("nan")
        else:
            result = _sps.kendalltau(pair[name_a].to_numpy(), pair[name_b].to_numpy(), variant="b")
            tau, p = float(result.statistic), float(result.pvalue)
        leader_a, leader_b = leader(means.loc[name_a]), leader(means.loc[name_b])
        rows.append(
            {
                "protocol_a": name_a,
                "protocol_b": name_b,
                "n_models": pair.shape[0],
                "kendall_tau": tau,
                "p_value": p,
                "leader_a": leader_a,
                "leader_b": leader_b,
                "same_leader": leader_a == leader_b,
            }
        )
    return pd.DataFrame(rows)


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
        confidence = _check_confidence(confidence)
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
    data : long or wide table, see :func:`as_wide`.
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
    higher_is_better = _check_bool(higher_is_better, "higher_is_better")
    n_resamples = _check_positive_int(n_resamples, "n_resamples")
    if scheme not in ("aggregate-then-rank", "rank-then-aggregate"):
        raise ValueError(f"scheme must be 'aggregate-then-rank' or 'rank-then-aggregate', got {scheme!r}")
    wide = as_wide(data, unit=unit, model=model, value=value, nan_policy=nan_policy)
    wide, n_omitted = _complete_units(wide)
    n, k = wide.shape
    if n < 1:
        raise ValueError("rank bootstrap needs at least 1 unit with values for all models")
    rng = _rng(seed)
    matrix = wide.to_numpy()
    if scheme == "aggregate-then-rank":
        scores, direction = matrix, higher_is_better
    else:
        scores, direction = rank_rows(matrix, higher_is_better=higher_is_better), False
    observed = rank_rows(scores.mean(axis=0), higher_is_better=direction)
    index = rng.integers(0, n, (n_resamples, n))
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
