"""Hypothesis tests for benchmarking segmentation models on few evaluation units (cases, folds, seeds).

Every function here answers one question a reader of a small-N benchmark should ask: is a paired difference
distinguishable from zero at this N (sign-flip test, effect sizes, the smallest attainable p), which of many
comparisons survive a family-wise correction (Holm), and do the models' ranks differ beyond chance (Friedman,
Iman-Davenport, Nemenyi). Intervals and every resampling live in :mod:`helpers.stats.bootstrap`; ranks (one tie
policy: average ranks) in :mod:`helpers.stats.ranking`.

Imports: numpy, pandas, scipy and :mod:`helpers.stats.ranking` (ranking -> inference -> bootstrap).

Conventions
-----------
Inputs
    Either a *tidy* (long) table with one row per evaluation unit and model -- columns ``model``, a unit
    column (``case_id`` by default; a fold or seed identifier works the same way) and ``value`` -- or a *wide*
    table / 2-D array with one row per unit and one column per model (:func:`as_wide`). One metric at a time: a
    long table whose ``metric`` column holds more than one metric is rejected. Duplicate (unit, model) rows are
    rejected, never averaged.
Direction
    Ranking procedures take an explicit keyword ``higher_is_better`` (True for Dice, False for HD95); ranks as
    :func:`helpers.stats.ranking.rank_rows` (rank 1 = best, average ranks for ties, as in Demsar 2006).
Missing values
    ``nan_policy="raise"`` (default for paired and multi-model procedures) rejects NaN values;
    ``nan_policy="omit"`` drops them and reports how many: per model for per-model summaries, per pair for
    paired comparisons, and whole units (listwise) for procedures over all models at once (Friedman,
    Nemenyi, rank bootstrap). Every returned table carries ``n``.
Randomness
    Only through ``seed`` (an int, or a ``numpy.random.Generator`` that is consumed; :func:`as_rng`). Results
    are a pure function of the inputs and the seed.
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
* Friedman test: chi-square statistic with the tie correction used by ``scipy.stats.friedmanchisquare``;
  Iman-Davenport F as recommended by Demsar (2006).
* Nemenyi post-hoc: critical difference CD = q_alpha sqrt(k (k + 1) / (6 N)), q_alpha = studentized range
  quantile (k groups, infinite df) / sqrt(2) (Demsar 2006, Table 5). Two models differ when their mean ranks
  differ by at least CD.

References
----------
Demsar J. Statistical comparisons of classifiers over multiple data sets. JMLR 7:1-30, 2006.
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

from helpers.stats.ranking import as_direction, rank_rows

__all__ = [
    "as_rng", "as_level", "as_count", "check_nan_policy", "as_wide", "complete_units", "cohens_dz",
    "hedges_correction", "SignFlipResult", "sign_flip_test", "min_attainable_p", "attainable_p_table",
    "holm_adjust", "FriedmanResult", "friedman_test", "nemenyi_q", "nemenyi_critical_difference", "NemenyiResult",
    "nemenyi_test", "FriedmanNemenyi", "friedman_then_nemenyi",
]

_NAN_POLICIES = ("raise", "omit")


# ----------------------------------------------------------------------------------------------------------
# Input handling
# ----------------------------------------------------------------------------------------------------------


def check_nan_policy(nan_policy: str) -> None:
    """``nan_policy`` must be ``"raise"`` or ``"omit"`` (module docstring)."""
    if nan_policy not in _NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {_NAN_POLICIES}, got {nan_policy!r}")


def as_rng(seed) -> np.random.Generator:
    """The random generator of a ``seed``: a non-negative int (``numpy.random.default_rng(seed)``) or a
    ``numpy.random.Generator``, returned as is and consumed by the caller."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int or a numpy.random.Generator, got {type(seed).__name__}: {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    return np.random.default_rng(int(seed))


def as_level(value, name: str) -> float:
    """A probability level strictly inside (0, 1) (``confidence``, ``alpha``), as float."""
    if not isinstance(value, (float, int, np.floating)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a float in (0, 1), got {value!r}")
    if not 0.0 < float(value) < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    return float(value)


def as_count(value, name: str, minimum: int = 1) -> int:
    """An integer (not a bool) >= ``minimum`` (``n_resamples``, ``k``, ``n_units``), as int."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _wide_from_long(data: pd.DataFrame, *, unit: str, model: str, value: str) -> pd.DataFrame:
    """Units x models from a long table (one metric, no duplicate (unit, model) row), first-seen order."""
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
    return wide.reindex(index=pd.unique(long[unit]), columns=pd.unique(long[model]))


def _wide_from_frame(data: pd.DataFrame, *, unit: str, model: str, value: str) -> pd.DataFrame:
    """A wide table (one numeric column per model) as floats."""
    if isinstance(data.columns, pd.MultiIndex) or data.shape[1] == 0:
        raise ValueError(
            f"data must be a long table with columns ({unit!r}, {model!r}, {value!r}) or a wide table "
            f"with one column per model; got columns {list(data.columns)}"
        )
    try:
        return data.apply(pd.to_numeric, errors="raise").astype(float)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"wide data must be numeric (or pass a long table with columns {unit!r}, {model!r}, "
            f"{value!r}): {error}"
        ) from None


def _wide_from_array(data, *, models) -> pd.DataFrame:
    """A 2-D array (units x models) as a float table, columns named by ``models`` or ``model_<j>``."""
    array = np.asarray(data)
    if array.ndim != 2:
        raise ValueError(f"data must be 2-D (units x models), got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"data must be numeric, got dtype {array.dtype}")
    names = [f"model_{j}" for j in range(array.shape[1])] if models is None else [str(m) for m in models]
    if len(names) != array.shape[1]:
        raise ValueError(f"models has {len(names)} names but data has {array.shape[1]} columns")
    return pd.DataFrame(array.astype(float), columns=names)


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
    check_nan_policy(nan_policy)
    if isinstance(data, pd.DataFrame) and {model, value}.issubset(data.columns) and unit in data.columns:
        wide = _wide_from_long(data, unit=unit, model=model, value=value)
    elif isinstance(data, pd.DataFrame):
        wide = _wide_from_frame(data, unit=unit, model=model, value=value)
    else:
        wide = _wide_from_array(data, models=models)
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


def complete_units(wide: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The units (rows) with a value for every model, and how many incomplete units were dropped (listwise)."""
    complete = wide.notna().all(axis=1)
    return wide.loc[complete], int((~complete).sum())


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
    higher_is_better = as_direction(higher_is_better)
    wide = as_wide(data, unit=unit, model=model, value=value, nan_policy=nan_policy)
    wide, n_omitted = complete_units(wide)
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
    k = as_count(k, "k", minimum=2)
    alpha = as_level(alpha, "alpha")
    return float(_sps.studentized_range.ppf(1.0 - alpha, k, np.inf) / np.sqrt(2.0))


def nemenyi_critical_difference(k: int, n: int, *, alpha: float = 0.05) -> float:
    """Nemenyi critical difference of mean ranks: CD = q_alpha sqrt(k (k + 1) / (6 n)).

    ``k`` models, ``n`` units (data sets, cases, folds). Demsar's example: k = 4, n = 14, alpha = 0.05 gives
    2.569 * sqrt(20 / 84) = 1.25.
    """
    k = as_count(k, "k", minimum=2)
    n = as_count(n, "n")
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
    higher_is_better = as_direction(higher_is_better)
    alpha = as_level(alpha, "alpha")
    wide = as_wide(data, unit=unit, model=model, value=value, nan_policy=nan_policy)
    wide, n_omitted = complete_units(wide)
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
    alpha = as_level(alpha, "alpha")
    f = friedman_test(data, higher_is_better=higher_is_better, unit=unit, model=model, value=value,
                      nan_policy=nan_policy)
    rejects = bool(np.isfinite(f.iman_davenport_p) and f.iman_davenport_p <= alpha)
    nemenyi = (nemenyi_test(data, higher_is_better=higher_is_better, alpha=alpha, unit=unit, model=model,
                            value=value, nan_policy=nan_policy) if rejects else None)
    return FriedmanNemenyi(friedman=f, nemenyi=nemenyi, alpha=alpha, rejects=rejects)
