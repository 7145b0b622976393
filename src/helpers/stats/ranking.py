"""Model orderings under different metrics: ranks with ties, reversals, Kendall's tau and agreement counts.

Conventions
-----------
- The metric registry (:data:`helpers.metrics.METRICS`, :func:`helpers.metrics.higher_is_better`) says for
  every metric of the study whether a higher or a lower value is better. Every ranking in the package reads it;
  a metric missing from it must be given a direction explicitly (``directions=``).
- Rank 1 is the best model. Ties (exactly equal aggregate values) share the *average* of the ranks they span
  (fractional ranking, as :func:`scipy.stats.rankdata` ``method="average"``): two models tied for the lead both
  get rank 1.5. This is the package's one tie policy: every ranking (of aggregates here, of models within a
  unit for the Friedman and Nemenyi tests in :mod:`helpers.stats.inference`, of resampled means in
  :mod:`helpers.stats.bootstrap`) goes through :func:`rank_rows`. An order is written best first,
  ``"a > b = c > d"``, ``=`` joining tied models; tied models are listed alphabetically so the string is
  deterministic.
- NaN scores (a model with no value in a stratum) are not ranked: they are dropped from the order and counted
  in ``n_missing``; comparisons between two metrics use only the models that have a value under both.
- Kendall's tau is tau-b (ties in either ordering corrected for), the variant of :func:`scipy.stats.kendalltau`;
  it is computed on the ranks, best = 1 for both metrics, so tau = 1 means the same order and tau = -1 the
  reversed order, whatever the metrics' directions.
- Ties are not agreement. A model pair tied under *either* metric is "not comparable": it is counted apart
  (``not_comparable``) and never as agreeing or disagreeing. Every agreement count says how many pairs were
  comparable (:class:`PairCounts`), and :func:`compare_orders` reports ``pairs_comparable`` beside tau, so that
  equal penalty means (every model tied) cannot make two orders "agree".
- Rank volatility (:func:`ranks_by_group`, :func:`rank_ranges`, :func:`rank_agreement`): the models ranked on
  every occasion (fold, seed, protocol) by their mean value there, with the direction given as a plain
  ``higher_is_better`` flag (validated by :func:`helpers.base.checks.as_direction`).

This module imports numpy, pandas and scipy only; it is the lowest of the statistics modules
(ranking -> inference -> bootstrap).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats as _sps

from helpers.base.checks import as_direction, check_columns
from helpers.metrics import higher_is_better, metric_names

__all__ = [
    "rank_rows", "rank_models", "order_string", "model_order", "kendall_tau", "PairCounts",
    "pairwise_agreement", "compare_orders", "agreement_matrix", "ranks_by_group", "rank_ranges", "rank_agreement",
]

def _as_scores(scores, name: str = "scores") -> pd.Series:
    if isinstance(scores, pd.Series):
        s = scores.copy()
    elif isinstance(scores, Mapping):
        s = pd.Series(dict(scores), dtype=float)
    else:
        raise TypeError(f"{name} must be a pandas Series or a mapping model -> value, got {type(scores).__name__}")
    if s.index.has_duplicates:
        raise ValueError(f"{name} has duplicate models: {sorted(set(s.index[s.index.duplicated()]))}")
    try:
        s = s.astype(float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must hold numbers, got {s.dtype}") from None
    s.index = s.index.map(str)
    return s


def rank_rows(matrix, *, higher_is_better: bool) -> np.ndarray:
    """Rank the models within each row (unit); rank 1 is the best, ties get average ranks.

    The one ranking step of the package (module docstring).

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
    higher_is_better = as_direction(higher_is_better)
    array = np.asarray(matrix, dtype=float)
    if array.ndim < 1 or array.shape[-1] < 1:
        raise ValueError(f"matrix must have at least one model along its last axis, got shape {array.shape}")
    if np.isnan(array).any():
        raise ValueError("matrix must not contain NaN; drop incomplete units first")
    return _sps.rankdata(-array if higher_is_better else array, method="average", axis=-1)


def rank_models(scores, *, metric: str, directions: Mapping[str, str] | None = None) -> pd.Series:
    """Rank models by one metric: 1 = best, ties share their average rank, NaN scores are left out.

    Parameters
    ----------
    scores : pandas.Series or mapping
        Aggregate value per model (index = model name).
    metric : str
        The metric's name, looked up in the registry (:func:`helpers.metrics.higher_is_better`; or
        ``directions``) for its direction.
    directions : mapping, optional
        Extra or overriding metric directions ("higher"/"lower").

    Returns
    -------
    pandas.Series
        Float ranks indexed by model, sorted best first (ties alphabetically); NaN-scored models absent.

    Examples
    --------
    >>> rank_models({"a": 0.8, "b": 0.9, "c": 0.8}, metric="dice").to_dict()
    {'b': 1.0, 'a': 2.5, 'c': 2.5}
    >>> rank_models({"a": 3.0, "b": 1.0}, metric="hd95").to_dict()
    {'b': 1.0, 'a': 2.0}
    """
    s = _as_scores(scores).dropna()
    if s.empty:
        return s
    ranks = pd.Series(rank_rows(s.to_numpy(), higher_is_better=higher_is_better(metric, directions)), index=s.index)
    order = sorted(ranks.index, key=lambda m: (ranks[m], m))
    return ranks.loc[order].astype(float)


def order_string(ranks: pd.Series) -> str:
    """Write ranks (from :func:`rank_models`) as an order, best first: ``"b > a = c"``."""
    if len(ranks) == 0:
        return ""
    groups: dict[float, list[str]] = {}
    for model, r in ranks.items():
        groups.setdefault(float(r), []).append(str(model))
    return " > ".join(" = ".join(sorted(groups[r])) for r in sorted(groups))


def model_order(scores, *, metric: str, directions: Mapping[str, str] | None = None) -> str:
    """The order of the models under ``metric``, best first, as a string (see :func:`order_string`)."""
    return order_string(rank_models(scores, metric=metric, directions=directions))


def kendall_tau(ranks_a: pd.Series, ranks_b: pd.Series) -> float:
    """Kendall's tau-b between two rankings of the same models (NaN if fewer than 2 models or a constant ranking).

    Only models present in both are compared. tau-b = (C - D) / sqrt((n0 - T_a) (n0 - T_b)), with C and D the
    concordant and discordant pairs, n0 = n (n - 1) / 2 and T_a, T_b the pairs tied in each ranking.
    """
    common = [m for m in ranks_a.index if m in ranks_b.index]
    a = np.asarray([ranks_a[m] for m in common], dtype=float)
    b = np.asarray([ranks_b[m] for m in common], dtype=float)
    n = len(common)
    if n < 2:
        return float("nan")
    i, j = np.triu_indices(n, k=1)
    da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
    n0 = len(i)
    tied_a, tied_b = int(np.sum(da == 0)), int(np.sum(db == 0))
    denominator = np.sqrt(float(n0 - tied_a) * float(n0 - tied_b))
    if denominator == 0:
        return float("nan")
    return float(np.sum(da * db) / denominator)


class PairCounts(NamedTuple):
    """Model pairs compared under two rankings: ordered alike, ordered oppositely, tied under either ranking."""

    agree: int
    disagree: int
    not_comparable: int

    @property
    def comparable(self) -> int:
        """Pairs strictly ordered by both rankings (``agree + disagree``)."""
        return self.agree + self.disagree

    @property
    def pairs(self) -> int:
        """All pairs looked at."""
        return self.agree + self.disagree + self.not_comparable


def pairwise_agreement(ranks_a: pd.Series, ranks_b: pd.Series, models: Sequence[str] | None = None) -> PairCounts:
    """Count the model pairs two rankings order alike, oppositely, or cannot compare (:class:`PairCounts`).

    A pair agrees when both rankings put the same model strictly ahead and disagrees when they put different
    models ahead; a pair tied under either ranking is *not comparable* (a tie is no evidence of agreement).
    ``models`` restricts the comparison (for instance to the top three under Dice); by default the models
    present in both.

    Examples
    --------
    >>> a = pd.Series({"x": 1.0, "y": 2.0, "z": 3.0})
    >>> b = pd.Series({"x": 1.5, "y": 1.5, "z": 3.0})
    >>> tuple(pairwise_agreement(a, b))  # (x, y) tied under b; (x, z) and (y, z) agree
    (2, 0, 1)
    """
    common = [m for m in (ranks_a.index if models is None else models) if m in ranks_a.index and m in ranks_b.index]
    agree = disagree = tied = 0
    for k, m1 in enumerate(common):
        for m2 in common[k + 1 :]:
            sa, sb = np.sign(ranks_a[m1] - ranks_a[m2]), np.sign(ranks_b[m1] - ranks_b[m2])
            if sa == 0 or sb == 0:
                tied += 1
            elif sa == sb:
                agree += 1
            else:
                disagree += 1
    return PairCounts(agree, disagree, tied)


def _compare_pair_of_metrics(values: pd.DataFrame, *, reference: str, metric: str, top_k: int,
                             directions: Mapping[str, str] | None) -> dict:
    """One row of :func:`compare_orders`: the orders of one group's models (``values``: model x metric) under
    ``reference`` and ``metric``, on the models with a value under both."""
    both = values[[reference, metric]].dropna()
    r_ref = rank_models(both[reference], metric=reference, directions=directions)
    r_met = rank_models(both[metric], metric=metric, directions=directions)
    best = r_ref.min() if len(r_ref) else np.nan
    leaders = sorted(m for m in r_ref.index if r_ref[m] == best)
    leader_rank = float(np.mean([r_met[m] for m in leaders])) if leaders else np.nan
    top = pairwise_agreement(r_ref, r_met, list(r_ref.index[:top_k]))
    every = pairwise_agreement(r_ref, r_met)
    strict_same = order_string(r_ref) == order_string(r_met)
    return {
        "reference": reference,
        "metric": metric,
        f"order_{reference}": order_string(r_ref),
        "order_metric": order_string(r_met),
        "order_changed": (not strict_same) if len(both) else np.nan,
        "kendall_tau": kendall_tau(r_ref, r_met),
        "leader": " = ".join(leaders),
        "leader_leads_metric": bool(leaders) and leader_rank == float(r_met.min()),
        "leader_rank_in_metric": leader_rank,
        "top_pairs_agree": top.agree,
        "top_pairs_disagree": top.disagree,
        "top_pairs_not_comparable": top.not_comparable,
        "top_pairs_comparable": top.comparable,
        "top_pairs": top.pairs,
        "pairs_comparable": every.comparable,
        "pairs_not_comparable": every.not_comparable,
        "n_models": len(both),
        "n_missing": len(values.index) - len(both),
    }


def compare_orders(
    aggregates: pd.DataFrame,
    *,
    reference: str = "dice",
    metrics: Sequence[str] = metric_names(against_dice=True),
    group_by: Sequence[str] = ("dataset", "stratum"),
    top_k: int = 3,
    directions: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Compare the model order under ``reference`` with the order under each of ``metrics``, per group.

    Parameters
    ----------
    aggregates : pandas.DataFrame
        Long table with columns ``model``, ``metric``, ``value`` and the ``group_by`` columns: one aggregate
        value per group, model and metric.
    reference : str
        The metric whose order is the reference (the paper ranks by Dice).
    metrics : sequence of str
        The metrics compared with the reference.
    group_by : sequence of str
        Columns defining a comparison (by default one per dataset and size stratum).
    top_k : int
        Pairwise agreement is also counted among the ``top_k`` models under the reference
        (the paper's "top-model comparisons": 3 pairs among the top 3).
    directions : mapping, optional
        Extra metric directions.

    Returns
    -------
    pandas.DataFrame
        One row per group and compared metric: ``order_<reference>`` and ``order_metric`` (best first),
        ``order_changed`` (the strict orders differ), ``kendall_tau`` (tau-b), ``leader`` (the reference
        leader; several joined by ``=`` if tied), ``leader_leads_metric`` (it also has the best rank under the
        metric, ties included), ``leader_rank_in_metric`` (its rank there, average rank for ties),
        ``top_pairs_agree``, ``top_pairs_disagree``, ``top_pairs_not_comparable`` (tied under either metric),
        ``top_pairs_comparable`` (agree + disagree) and ``top_pairs`` (all) among the top_k reference models
        (:func:`pairwise_agreement`), ``pairs_comparable`` / ``pairs_not_comparable`` over all models (the
        pairs behind tau), ``n_models`` (models with a value under both) and ``n_missing`` (models lacking one
        of the two).
    """
    group_by = list(group_by)
    check_columns(aggregates, [*group_by, "model", "metric", "value"], "aggregates")
    if not isinstance(top_k, (int, np.integer)) or top_k < 2:
        raise ValueError(f"top_k must be an integer >= 2, got {top_k!r}")
    rows = []
    groups = aggregates.groupby(group_by, sort=True, dropna=False) if group_by else [((), aggregates)]
    for key, sub in groups:
        key = key if isinstance(key, tuple) else (key,)
        values = sub.pivot_table(index="model", columns="metric", values="value", aggfunc="first", dropna=False)
        if reference not in values.columns:
            continue
        for metric in metrics:
            if metric not in values.columns:
                continue
            rows.append({**dict(zip(group_by, key)),
                         **_compare_pair_of_metrics(values, reference=reference, metric=metric, top_k=int(top_k),
                                                    directions=directions)})
    return pd.DataFrame(rows)


def agreement_matrix(
    aggregates: pd.DataFrame,
    *,
    metrics: Sequence[str],
    group_by: Sequence[str] = ("dataset", "stratum"),
    directions: Mapping[str, str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Metric x metric agreement of model orderings, counted over groups.

    Returns
    -------
    same_order : pandas.DataFrame
        For metrics i, j: the number of comparable groups in which the two strict orders are identical.
    comparable : pandas.DataFrame
        For metrics i, j: the number of groups in which both metrics order at least two models with no tie.
    not_comparable : pandas.DataFrame
        For metrics i, j: groups with at least two models under both metrics where either order has a tie (a
        tie is not agreement; these groups are counted here and nowhere else).
    """
    group_by = list(group_by)
    check_columns(aggregates, [*group_by, "model", "metric", "value"], "aggregates")
    metrics = list(metrics)
    same = pd.DataFrame(0, index=metrics, columns=metrics, dtype=int)
    total = pd.DataFrame(0, index=metrics, columns=metrics, dtype=int)
    tied = pd.DataFrame(0, index=metrics, columns=metrics, dtype=int)
    groups = aggregates.groupby(group_by, sort=True, dropna=False) if group_by else [((), aggregates)]
    for _, sub in groups:
        values = sub.pivot_table(index="model", columns="metric", values="value", aggfunc="first", dropna=False)
        for a in metrics:
            for b in metrics:
                if a not in values.columns or b not in values.columns:
                    continue
                keep = values[a].notna() & values[b].notna()
                if keep.sum() < 2:
                    continue
                ra = rank_models(values[a][keep], metric=a, directions=directions)
                rb = rank_models(values[b][keep], metric=b, directions=directions)
                if ra.duplicated().any() or rb.duplicated().any():
                    tied.loc[a, b] += 1
                    continue
                total.loc[a, b] += 1
                same.loc[a, b] += int(order_string(ra) == order_string(rb))
    return same, total, tied


# Rank volatility: the same models ranked on several occasions (folds, seeds, protocols)


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
    higher_is_better = as_direction(higher_is_better)
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


def _protocol_means(data: pd.DataFrame, *, protocol: str, model: str, value: str) -> pd.DataFrame:
    """Protocol x model table of mean values (NaN excluded), after validating ``data``."""
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
    return means


def _leader(means: pd.Series, *, higher_is_better: bool) -> str:
    """The model(s) ranked 1 by their means, joined by "=" when tied ("" when no model has a mean)."""
    means = means.dropna()
    if means.empty:
        return ""
    ranks = rank_rows(means.to_numpy(), higher_is_better=higher_is_better)
    return "=".join(map(str, means.index[ranks == ranks.min()]))


def _tau_and_p(means_a: pd.Series, means_b: pd.Series, *, higher_is_better: bool) -> tuple[float, float]:
    """Kendall's tau-b between two orders of the same models (:func:`kendall_tau`, the package's one tau) and
    scipy's p-value for it (exact for small k without ties); NaN for fewer than 2 models. tau-b does not depend on
    the direction: both orders flip together."""
    if len(means_a) < 2:
        return float("nan"), float("nan")
    ranks_a, ranks_b = (pd.Series(rank_rows(m.to_numpy(), higher_is_better=higher_is_better), index=m.index)
                        for m in (means_a, means_b))
    p = float(_sps.kendalltau(means_a.to_numpy(), means_b.to_numpy(), variant="b").pvalue)
    return kendall_tau(ranks_a, ranks_b), p


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
        One row per pair of protocol values: ``protocol_a, protocol_b, n_models, kendall_tau`` (:func:`kendall_tau`
        of the two orders), ``p_value``
        (scipy's exact p for small k without ties), ``leader_a, leader_b, same_leader`` (leader = best mean;
        ties joined with "=").
    """
    higher_is_better = as_direction(higher_is_better)
    means = _protocol_means(data, protocol=protocol, model=model, value=value)
    rows = []
    for name_a, name_b in itertools.combinations(means.index, 2):
        pair = means.loc[[name_a, name_b]].T.dropna()
        tau, p = _tau_and_p(pair[name_a], pair[name_b], higher_is_better=higher_is_better)
        leader_a = _leader(means.loc[name_a], higher_is_better=higher_is_better)
        leader_b = _leader(means.loc[name_b], higher_is_better=higher_is_better)
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
