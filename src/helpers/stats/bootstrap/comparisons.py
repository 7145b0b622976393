"""Comparisons of models by resampling: the paired case bootstrap of model differences (vectorized over per-case
sufficient statistics) with joint reversals, Holm families and verdicts, and pairwise comparisons over units.

Imports: numpy, pandas, scipy, :mod:`helpers.base.checks`, :mod:`helpers.metrics` (directions),
:mod:`helpers.stats.ranking`, :mod:`helpers.stats.inference` (the Holm adjustment, the sign-flip test and the
effect sizes) and :mod:`helpers.stats.bootstrap.resampling` (the one draw, the sufficient statistics, the
intervals).

Paired case bootstrap: what is resampled
----------------------------------------
Test *cases* are drawn with replacement (``n_cases`` draws per resample). A case brings all its units with it:
one unit per case for image-level metrics (Dice of the case), one per reference lesion for lesion-level metrics
(all lesions of a case stay together). Every model is evaluated on the *same* resample (paired bootstrap), and
the same resamples serve every metric and stratum of a dataset, so results are comparable across them. How the
resampled means are computed without a loop over resamples: :mod:`helpers.stats.bootstrap.resampling`.

Conventions
-----------
- Differences are ``model_a - model_b`` in the metric's own units, for each unordered pair with ``a`` before
  ``b`` in the given model order. ``better`` names the model favoured by the observed difference, using the
  metric's direction from the registry (:func:`helpers.metrics.higher_is_better`).
- NaN values (a metric undefined for a unit, with no penalty) are excluded from the sums and counted in
  ``n_nan``; they are never silently dropped. A resample in which a model has no unit at all (for instance no
  Q1 lesion drawn) gives NaN for that model; shares and intervals use the finite resamples, counted in
  ``n_valid``.
- Confidence interval: percentile interval of the resampled differences
  (:func:`helpers.stats.bootstrap.resampling.percentile_bounds`), two-sided at ``confidence``.
- ``share_same_sign``: the share of (finite) resamples whose difference has the sign of the observed one;
  a resampled difference of exactly 0 does not keep the sign. It is NaN when the observed difference is 0.
- The unit of inference is the case. ``n_cases`` of a row counts the cases that hold units of *both* models in
  that group (not the dataset's test cases: a stratum whose lesions all sit in one case rests on one case).
- p-value of a verdict (``p_value``): the two-sided sign-flip test over those cases
  (:func:`helpers.stats.inference.sign_flip_test`, exact up to 20 cases, Monte Carlo above) of the per-case mean
  differences. It cannot reach 0 when the resamples do not vary (the normal approximation of the bootstrap
  distribution, kept beside it as ``p_bootstrap``, returns 0 there: with every unit in one case, every resample
  is that case). ``share_same_sign`` is reported beside it, counted.
- Multiple comparisons: p-values are Holm-adjusted within a *family*: all model pairs x metrics x strata of one
  dataset and lesion set (:func:`holm_within`); ``family_size`` is printed beside every row.
- Joint reversal (:func:`joint_reversal_share`): for a boundary metric, the share of resamples in which Dice
  favours the model the observed Dice favours *and* the boundary metric favours the other one, in the same
  resample: what a reader means by "the reversal is stable".
- Verdict (:func:`verdict`), named by what it means: ``"not testable (<k> cases < <m>)"`` when fewer than
  ``min_cases`` (:data:`MIN_CASES`) cases hold units of both models, with no p-value read (a handful of cases
  allows a handful of distinct resamples and sign patterns); ``"no observed difference"`` when the observed
  difference is 0 within ``1e-12`` of the values' scale (an exact +/- pair of per-case differences leaves
  ``-1.8e-15``, not a difference); ``"not estimable"`` when it or the share is NaN;
  ``"sign kept, Holm p <= 0.05"`` only when the share reaches ``1 - alpha`` (0.95) *and* the Holm-adjusted
  sign-flip p is at most ``alpha``; ``"sign kept in >= 95 % of resamples, not after Holm"`` when the share
  reaches it but the family's p does not; otherwise ``"sign not stable (< 95 %)"`` (however small the p).

Pairwise comparisons over units (:func:`paired_comparisons`) take the long or wide tables of
:func:`helpers.stats.inference.as_wide` and spawn one independent child generator per pair
(:func:`helpers.stats.bootstrap.resampling.spawn`) in column order.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import special

from helpers.base.checks import as_count, as_level
from helpers.metrics import higher_is_better
from helpers.stats.bootstrap.resampling import (
    bootstrap_mean_ci, percentile_bounds, resample_indices, resample_weights, resampled_means, spawn,
    sufficient_statistics,
)
from helpers.stats.inference import as_wide, cohens_dz, hedges_correction, holm_adjust, sign_flip_test
from helpers.base.checks import as_direction

__all__ = [
    "ALPHA", "MIN_CASES", "ZERO_TOLERANCE", "verdict_names", "verdict", "bootstrap_p_value", "joint_reversal_share",
    "holm_within",
    "paired_differences", "directional_robustness", "paired_comparisons",
]

#: Family-wise level of the verdicts (Holm within a dataset's pairs x metrics x strata).
ALPHA = 0.05
#: Fewest cases holding units of both models for which a verdict is given (below, the table says so instead).
#: Chosen by simulation (:mod:`helpers.studies.failure_lab.calibration`, 400 simulated test sets per size, Q1
#: HD95 of constructed predictions): the paired case bootstrap's 95 % interval covered 0 under no true difference
#: in 0.888 of test sets whose Q1 lesions sat in a median of 7 cases (more than 4 Monte-Carlo standard errors
#: below 0.95), 0.932 with 11 and 0.942 with 18 (within 2); the false-"supported" rate stayed at or below 0.03
#: at every size (the sign-flip p is exact). Clustered bootstraps under-cover with few clusters (Flynn & Peters
#: 2004, who suggest about 24); 12 is the smallest count at which ours did not.
MIN_CASES = 12


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
        "too_few": f"not testable (fewer than {min_cases} cases)",
    }


#: Relative tolerance under which an observed difference counts as none (scale: the larger of the two means).
ZERO_TOLERANCE = 1e-12


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
    scale: float = 0.0,
) -> str:
    """Classify a bootstrap comparison (see the module docstring for the rule and :func:`verdict_names`).
    ``n_cases``: the cases holding units of both models; ``scale``: the size of the compared values (the larger
    absolute mean), against which an observed difference within :data:`ZERO_TOLERANCE` counts as none."""
    names = verdict_names(alpha, min_cases)
    if n_cases < min_cases:
        return f"not testable ({int(n_cases)} case{'' if n_cases == 1 else 's'} < {min_cases})"
    if not np.isfinite(observed):
        return names["not_estimable"]
    if abs(observed) <= ZERO_TOLERANCE * max(abs(scale), 1e-300):
        return names["none"]
    if not np.isfinite(share_same_sign):
        return names["not_estimable"]
    if share_same_sign >= 1 - alpha:
        return names["held"] if np.isfinite(p_holm) and p_holm <= alpha else names["raw_only"]
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
        table["n_cases"], table["p_bootstrap"] = 0, table["p_value"]
        table["p_value"] = _case_sign_flip(sums, counts, ia, ib, table)
        table["n_nan_a"] = n_nan.sum(axis=0)[ia].astype(int)
        table["n_nan_b"] = n_nan.sum(axis=0)[ib].astype(int)
        for name, value in group.items():
            if name != "metric":
                table[name] = value
        other_key = tuple(group[c] for c in others)
        resampled[(other_key, group["metric"])] = (diff, table["difference"].to_numpy())
        out.append((other_key, group["metric"], table))
    return out, resampled


def _case_sign_flip(sums: np.ndarray, counts: np.ndarray, ia: np.ndarray, ib: np.ndarray,
                    table: pd.DataFrame) -> list[float]:
    """Per pair: count the cases holding units of both models into ``table["n_cases"]`` and return the two-sided
    sign-flip p over those cases of the per-case mean differences (NaN without a case or an observed
    difference)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
    p_values, n_cases = [], []
    for p in range(len(ia)):
        both = (counts[:, ia[p]] > 0) & (counts[:, ib[p]] > 0)
        n_cases.append(int(both.sum()))
        d = means[both, ia[p]] - means[both, ib[p]]
        d = d[np.isfinite(d)]
        observed = table["difference"].iloc[p]
        if d.size == 0 or not np.isfinite(observed) or observed == 0:
            p_values.append(float("nan"))
        else:
            p_values.append(sign_flip_test(d, seed=0).p_value)
    table["n_cases"] = n_cases
    return p_values


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
    strata: Sequence | None = None,
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
        Fewest cases holding units of both models for a verdict (per row).
    strata : sequence, optional
        One label per case of ``case_ids`` (e.g. the scanner site): the draw is stratified by it
        (:func:`helpers.stats.bootstrap.resample_indices`), so every resample keeps each site's number of cases.

    Returns
    -------
    pandas.DataFrame
        The rows of :func:`paired_differences` per group, with the group columns first and ``n_units_a``,
        ``n_units_b``, ``n_nan_a``, ``n_nan_b``, ``joint_reversal_share`` (NaN for the reference metric),
        ``reversal_observed`` (the observed reference and metric favour different models), ``n_cases`` (cases
        holding units of both models), ``p_value`` (the sign-flip p over those cases; NaN below ``min_cases``),
        ``p_bootstrap`` (normal approximation, for reference), ``p_holm``, ``family_size``, ``verdict``,
        ``n_test_cases``, ``n_resamples``, ``seed``, ``confidence``, ``alpha``, ``min_cases`` added.
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
    weights = resample_weights(resample_indices(len(case_ids), n_resamples, seed=seed, strata=strata), len(case_ids))
    others = [c for c in group_by if c != "metric"]
    out, resampled = _paired_tables(units, group_by=group_by, case_ids=case_ids, models=models, weights=weights,
                                    confidence=confidence, directions=directions)
    if not out:
        return pd.DataFrame()
    tables = [_with_joint_reversals(table, resampled, other_key=other_key, metric=metric, reference=reference,
                                    directions=directions) for other_key, metric, table in out]
    result = holm_within(pd.concat(tables, ignore_index=True), family=[c for c in family if c in group_by])
    # a row below the minimum of cases gets no p-value read: it leaves the Holm family too
    testable = result["n_cases"] >= min_cases
    result.loc[~testable, "p_value"] = np.nan
    result = holm_within(result.drop(columns=["p_holm", "family_size"]),
                         family=[c for c in family if c in group_by])
    scale = np.fmax(result["mean_a"].abs(), result["mean_b"].abs()).fillna(0.0)
    result["verdict"] = [verdict(o, sh, h, n_cases=k, alpha=alpha, min_cases=min_cases, scale=sc)
                         for o, sh, h, k, sc in zip(result["difference"], result["share_same_sign"],
                                                   result["p_holm"], result["n_cases"], scale)]
    result["n_test_cases"] = len(case_ids)
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
    data : long or wide table, see :func:`helpers.stats.inference.as_wide`. Units are the pairing (same case,
        same fold).
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
    for (name_a, name_b), rng in zip(pairs, spawn(seed, len(pairs))):
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
