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
  metric's direction from :data:`helpers.ranking.METRIC_DIRECTIONS`.
- NaN values (a metric undefined for a unit, with no penalty) are excluded from the sums and counted in
  ``n_nan``; they are never silently dropped. A resample in which a model has no unit at all (for instance no
  Q1 lesion drawn) gives NaN for that model; shares and intervals use the finite resamples, counted in
  ``n_valid``.
- Confidence interval: percentile interval of the resampled differences (``numpy.quantile``, linear
  interpolation), two-sided at ``confidence``.
- ``share_same_sign``: the share of (finite) resamples whose difference has the sign of the observed one;
  a resampled difference of exactly 0 does not keep the sign. It is NaN when the observed difference is 0.
- Verdict (:func:`verdict`): ``"robust"`` when ``share_same_sign >= robust_share`` (0.95) *and* the interval
  excludes 0; ``"directionally stable"`` when ``share_same_sign >= stable_share`` (0.80); otherwise
  ``"not distinguishable"``; ``"no difference"`` when the observed difference is 0 and ``"not estimable"``
  when it is NaN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .ranking import higher_is_better

#: Verdict thresholds on the share of resamples keeping the observed sign.
ROBUST_SHARE = 0.95
STABLE_SHARE = 0.80


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
    ci_low: float,
    ci_high: float,
    *,
    robust_share: float = ROBUST_SHARE,
    stable_share: float = STABLE_SHARE,
) -> str:
    """Classify a bootstrap comparison (see the module docstring for the rule)."""
    if not np.isfinite(observed):
        return "not estimable"
    if observed == 0:
        return "no difference"
    if not np.isfinite(share_same_sign):
        return "not estimable"
    excludes_zero = np.isfinite(ci_low) and np.isfinite(ci_high) and (ci_low > 0 or ci_high < 0)
    if share_same_sign >= robust_share and excludes_zero:
        return "robust"
    if share_same_sign >= stable_share:
        return "directionally stable"
    return "not distinguishable"


def paired_differences(
    sums: np.ndarray,
    counts: np.ndarray,
    weights: np.ndarray,
    *,
    models: Sequence[str],
    metric: str,
    confidence: float = 0.95,
    directions: Mapping[str, str] | None = None,
    robust_share: float = ROBUST_SHARE,
    stable_share: float = STABLE_SHARE,
) -> pd.DataFrame:
    """Observed and bootstrapped differences for every model pair of one metric (one row per pair).

    Columns: ``metric, model_a, model_b, mean_a, mean_b, difference, ci_low, ci_high, share_same_sign,
    n_valid, better, verdict``.
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
                "n_valid": int(n_valid[p]),
                "better": better,
                "verdict": verdict(obs, share, lo, hi, robust_share=robust_share, stable_share=stable_share),
            }
        )
    return pd.DataFrame(rows)


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
    robust_share: float = ROBUST_SHARE,
    stable_share: float = STABLE_SHARE,
) -> pd.DataFrame:
    """Paired case bootstrap of every model pair, for every group (metric, stratum, ...) of a long unit table.

    Parameters
    ----------
    units : pandas.DataFrame
        Long table, one row per unit, model and metric: columns ``case_id``, ``model``, ``metric``, ``value``
        and the other ``group_by`` columns. A group's aggregate is the mean of its units' finite values.
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

    Returns
    -------
    pandas.DataFrame
        The rows of :func:`paired_differences` per group, with the group columns first and ``n_units_a``,
        ``n_units_b``, ``n_nan_a``, ``n_nan_b``, ``n_cases``, ``n_resamples``, ``seed``, ``confidence`` added.
    """
    group_by = list(group_by)
    if "metric" not in group_by:
        raise ValueError(f"group_by must include 'metric', got {group_by}")
    for column in (*group_by, "case_id", "model", "value"):
        if column not in units.columns:
            raise ValueError(f"units lacks column {column!r}; has {list(units.columns)}")
    case_ids = [str(c) for c in case_ids]
    models = sorted(units["model"].astype(str).unique()) if models is None else [str(m) for m in models]
    if len(models) < 2:
        raise ValueError(f"need at least two models to compare, got {models}")
    indices = resample_indices(len(case_ids), n_resamples, seed=seed)
    weights = resample_weights(indices, len(case_ids))
    out = []
    for key, sub in units.groupby(group_by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        group = dict(zip(group_by, key))
        sums, counts, n_nan = sufficient_statistics(sub, case_ids=case_ids, models=models)
        table = paired_differences(
            sums,
            counts,
            weights,
            models=models,
            metric=group["metric"],
            confidence=confidence,
            directions=directions,
            robust_share=robust_share,
            stable_share=stable_share,
        )
        ia, ib = np.triu_indices(len(models), k=1)
        table["n_units_a"] = counts.sum(axis=0)[ia].astype(int)
        table["n_units_b"] = counts.sum(axis=0)[ib].astype(int)
        table["n_nan_a"] = n_nan.sum(axis=0)[ia].astype(int)
        table["n_nan_b"] = n_nan.sum(axis=0)[ib].astype(int)
        for name, value in group.items():
            if name != "metric":
                table[name] = value
        out.append(table)
    if not out:
        return pd.DataFrame()
    result = pd.concat(out, ignore_index=True)
    result["n_cases"] = len(case_ids)
    result["n_resamples"] = int(n_resamples)
    result["seed"] = seed
    result["confidence"] = confidence
    first = [c for c in group_by if c != "metric"] + ["metric"]
    return result[first + [c for c in result.columns if c not in first]]
