"""Do the models' ranks differ beyond chance: the Friedman test with the Iman-Davenport F, then (only when it
rejects) the Nemenyi post-hoc test, as Demsar (2006) recommends.

Imports: numpy, pandas, scipy, :mod:`helpers.base.checks`, :mod:`helpers.stats.ranking` and
:mod:`helpers.stats.inference.wide` (the units x models table); ranking -> inference -> bootstrap.

Conventions
-----------
Direction
    Ranking procedures take an explicit keyword ``higher_is_better`` (True for Dice, False for HD95); ranks as
    :func:`helpers.stats.ranking.rank_rows` (rank 1 = best, average ranks for ties, as in Demsar 2006).
Missing values
    ``nan_policy="omit"`` drops incomplete units (listwise) and counts them in ``n_omitted``; every result
    carries ``n``.

Definitions
-----------
* Friedman test: chi-square statistic with the tie correction used by ``scipy.stats.friedmanchisquare``;
  Iman-Davenport F as recommended by Demsar (2006).
* Nemenyi post-hoc: critical difference CD = q_alpha sqrt(k (k + 1) / (6 N)), q_alpha = studentized range
  quantile (k groups, infinite df) / sqrt(2) (Demsar 2006, Table 5). Two models differ when their mean ranks
  differ by at least CD.

References
----------
Demsar J. Statistical comparisons of classifiers over multiple data sets. JMLR 7:1-30, 2006.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as _sps

from helpers.base.checks import as_count, as_level
from helpers.stats.inference.wide import as_wide, complete_units
from helpers.base.checks import as_direction
from helpers.stats.ranking import rank_rows

__all__ = [
    "FriedmanResult", "friedman_test", "nemenyi_q", "nemenyi_critical_difference", "NemenyiResult", "nemenyi_test",
    "FriedmanNemenyi", "friedman_then_nemenyi",
]


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
