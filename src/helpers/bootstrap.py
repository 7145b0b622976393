"""Paired, case-level bootstrap of model differences, vectorized over per-case sufficient statistics.

What is resampled
-----------------
Test *cases* are drawn with replacement (``n_cases`` draws per resample). A case brings all its units with it:
one unit per case for image-level metrics (Dice of the case), one per reference lesion for lesion-level metrics
(all lesions of a case stay together). Every model is evaluated on the *same* resample (paired bootstrap), and
the same resamples serve every metric and stratum of a dataset, so results are comparable across them.

How it is vectorized
--------------------
Every metric aggregate of the study is a mean over units, i.e. a ratio ``sum(values) / number of units``. For
each case and model we precompute the sufficient statistics ``S[case, model]`` (sum of the finite values of the
case's units) and ``N[case, model]`` (their number). A resample is a row of an index matrix
``I`` (``n_resamples x n_cases``, drawn by ``numpy.random.default_rng(seed).integers``); it is turned into
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
- Confidence interval: percentile interval of the resampled differences (``numpy.quantile``, linear
  interpolation), two-sided at ``confidence``.
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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .metrics import higher_is_better

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


def _check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def resample_indices(n_cases: int, n_resamples: int, *, seed: int | np.random.Generator) -> np.ndarray:
    """The case indices of ``n_resamples`` bootstrap resamples: an ``(n_resamples, n_cases)`` int matrix.

    Row b lists the cases drawn (with replacement, uniformly) in resample b. ``seed`` is an int or a
    :class:`numpy.random.Generator`.
    """
    n_cases = _check_positive_int(n_cases, "n_cases")
    n_resamples = _check_positive_int(n_resamples, "n_resamples")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return rng.integers(0, n_cases, size=(n_resamples, n_cases))


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
    from scipy.special import ndtr

    return float(min(1.0, 2.0 * ndtr(-abs(observed) / se)))


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
    from .stats import holm_adjust

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
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
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
    alpha = 1.0 - confidence
    rows = []
    for p in range(len(ia)):
        d = diff[finite[:, p], p]
        if d.size:
            lo, hi = np.quantile(d, [alpha / 2, 1 - alpha / 2])
        else:
            lo = hi = np.nan
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
    min_cases = _check_positive_int(min_cases, "min_cases")
    if "excluded" in units.columns:
        units = units[~units["excluded"].astype(bool)]
    case_ids = [str(c) for c in case_ids]
    models = sorted(units["model"].astype(str).unique()) if models is None else [str(m) for m in models]
    if len(models) < 2:
        raise ValueError(f"need at least two models to compare, got {models}")
    indices = resample_indices(len(case_ids), n_resamples, seed=seed)
    weights = resample_weights(indices, len(case_ids))
    out, resampled = [], {}
    others = [c for c in group_by if c != "metric"]
    for key, sub in units.groupby(group_by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        group = dict(zip(group_by, key))
        sums, counts, n_nan = sufficient_statistics(sub, case_ids=case_ids, models=models)
        table, diff = paired_differences(sums, counts, weights, models=models, metric=group["metric"],
                                         confidence=confidence, directions=directions, return_resamples=True)
        ia, ib = np.triu_indices(len(models), k=1)
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
    if not out:
        return pd.DataFrame()
    tables = []
    for other_key, metric, table in out:
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
        tables.append(table.assign(joint_reversal_share=joint, reversal_observed=observed_reversal))
    result = pd.concat(tables, ignore_index=True)
    result = holm_within(result, family=[c for c in family if c in group_by])
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
