"""Model orderings under different metrics: ranks with ties, reversals, Kendall's tau and agreement counts.

Conventions
-----------
- The metric registry (:data:`helpers.metrics.METRICS`, :func:`helpers.metrics.higher_is_better`) says for
  every metric of the study whether a higher or a lower value is better. Every ranking in the package reads it;
  a metric missing from it must be given a direction explicitly (``directions=``).
- Rank 1 is the best model. Ties (exactly equal aggregate values) share the *average* of the ranks they span
  (fractional ranking, as :func:`scipy.stats.rankdata` ``method="average"``): two models tied for the lead both
  get rank 1.5. An order is written best first, ``"a > b = c > d"``, ``=`` joining tied models; tied models
  are listed alphabetically so the string is deterministic.
- NaN scores (a model with no value in a stratum) are not ranked: they are dropped from the order and counted
  in ``n_missing``; comparisons between two metrics use only the models that have a value under both.
- Kendall's tau is tau-b (ties in either ordering corrected for), the variant of :func:`scipy.stats.kendalltau`;
  it is computed on the ranks, best = 1 for both metrics, so tau = 1 means the same order and tau = -1 the
  reversed order, whatever the metrics' directions.
- Ties are not agreement. A model pair tied under *either* metric is "not comparable": it is counted apart
  (``not_comparable``) and never as agreeing or disagreeing. Every agreement count says how many pairs were
  comparable (:class:`PairCounts`), and :func:`compare_orders` reports ``pairs_comparable`` beside tau, so that
  equal penalty means (every model tied) cannot make two orders "agree".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from .metrics import higher_is_better, metric_names

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
    signed = s if higher_is_better(metric, directions) else -s
    ranks = (-signed).rank(method="average")
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


def _validate_long(table: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(table).__name__}")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing}; has {list(table.columns)}")


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
    _validate_long(aggregates, [*group_by, "model", "metric", "value"], "aggregates")
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
            both = values[[reference, metric]].dropna()
            models_all = set(values.index)
            r_ref = rank_models(both[reference], metric=reference, directions=directions)
            r_met = rank_models(both[metric], metric=metric, directions=directions)
            best = r_ref.min() if len(r_ref) else np.nan
            leaders = sorted(m for m in r_ref.index if r_ref[m] == best)
            leader_rank = float(np.mean([r_met[m] for m in leaders])) if leaders else np.nan
            top_models = list(r_ref.index[: int(top_k)])
            top = pairwise_agreement(r_ref, r_met, top_models)
            every = pairwise_agreement(r_ref, r_met)
            strict_same = order_string(r_ref) == order_string(r_met)
            rows.append(
                {
                    **dict(zip(group_by, key)),
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
                    "n_missing": len(models_all) - len(both),
                }
            )
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
    _validate_long(aggregates, [*group_by, "model", "metric", "value"], "aggregates")
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
