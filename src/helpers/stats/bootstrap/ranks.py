"""The rank bootstrap: resample units with replacement (paired: every model sees the same resample) and re-rank
the models in every resample, for the distribution of each model's rank.

Imports: numpy, pandas, :mod:`helpers.base.checks`, :mod:`helpers.stats.ranking` (ranks: 1 = best, average
ranks for ties), :mod:`helpers.stats.inference` (the units x models table, :func:`helpers.stats.inference.as_wide`)
and :mod:`helpers.stats.bootstrap.resampling` (the one draw,
:func:`helpers.stats.bootstrap.resampling.resample_indices`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from helpers.base.checks import as_count, as_level
from helpers.stats.bootstrap.resampling import resample_indices
from helpers.stats.inference import as_wide, complete_units
from helpers.base.checks import as_direction
from helpers.stats.ranking import rank_rows

__all__ = ["RankBootstrap", "bootstrap_ranks"]


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
