"""Figures for the statistics of :mod:`helpers.stats`.

Every function takes ``ax=None`` (a new figure is made through :func:`helpers.plots.get_axes`), draws one
statistic and returns the axes; colours per model come from :func:`helpers.plots.model_color` so a model looks
the same in every chapter. Ranks are drawn with rank 1 (best) first: on the left of a critical-difference
axis, at the top of a rank plot.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from helpers.plots import get_axes, model_color
from helpers.stats import FriedmanNemenyi, NemenyiResult, RankBootstrap

__all__ = [
    "plot_critical_difference",
    "plot_friedman_nemenyi",
    "plot_rank_blobs",
    "plot_model_intervals",
    "plot_paired_differences",
    "plot_rank_trajectories",
]


def _colors(models) -> dict:
    return {m: model_color(str(m), i) for i, m in enumerate(models)}


def plot_critical_difference(result: NemenyiResult, *, ax=None, title: str | None = None):
    """Critical-difference diagram (Demsar 2006, Fig. 1) of a :func:`helpers.stats.nemenyi_test` result.

    A mean-rank axis from 1 (best, left) to k; each model hangs from its mean rank, the better half labelled on
    the left, the rest on the right; thick bars join models whose mean ranks differ by less than the critical
    difference (not distinguishable by the Nemenyi test); the CD itself is drawn as a scale bar above the axis.
    """
    if not isinstance(result, NemenyiResult):
        raise TypeError(f"result must be a NemenyiResult, got {type(result).__name__}")
    k = result.k
    ranks = result.mean_ranks
    names = list(ranks.index)
    n_left = (k + 1) // 2
    line_height = 0.35
    n_groups = len(result.groups)
    bottom = -(max(n_left, k - n_left) + 1) * line_height - n_groups * 0.12
    fig, ax = get_axes(ax, figsize=(7.0, 1.4 + 0.3 * k))
    colors = _colors(names)

    ax.plot([1, k], [0, 0], color="black", linewidth=1.0)
    for tick in range(1, k + 1):
        ax.plot([tick, tick], [0, 0.08], color="black", linewidth=1.0)
        ax.text(tick, 0.12, str(tick), ha="center", va="bottom")
    cd = result.critical_difference
    ax.plot([1, 1 + cd], [0.55, 0.55], color="black", linewidth=1.5)
    for end in (1, 1 + cd):
        ax.plot([end, end], [0.5, 0.6], color="black", linewidth=1.0)
    ax.text(1 + cd / 2, 0.63, f"CD = {cd:.2f} (alpha = {result.alpha:g})", ha="center", va="bottom")

    for i, name in enumerate(names):
        r = float(ranks[name])
        if i < n_left:
            y = -(i + 1) * line_height - n_groups * 0.12
            x_text, align = 0.6, "right"
        else:
            y = -(k - i) * line_height - n_groups * 0.12
            x_text, align = k + 0.4, "left"
        ax.plot([r, r, x_text], [0, y, y], color=colors[name], linewidth=1.0)
        ax.text(x_text + (-0.05 if align == "right" else 0.05), y, f"{name} ({r:.2f})", ha=align, va="center")

    for g, group in enumerate(result.groups):
        lo, hi = float(ranks[group[0]]), float(ranks[group[-1]])
        y = -0.1 - g * 0.12
        ax.plot([lo - 0.03, hi + 0.03], [y, y], color="black", linewidth=3.0, solid_capstyle="round")

    # The rank axis takes the middle 40 % of the width; the labels (up to ~25 characters) take the sides.
    span = k - 0.2
    pad = (span / 0.4 - span) / 2.0
    ax.set_xlim(0.6 - pad, k + 0.4 + pad)
    ax.set_ylim(bottom, 1.0)
    ax.set_axis_off()
    direction = "higher is better" if result.higher_is_better else "lower is better"
    heading = title or f"Nemenyi critical difference, N = {result.n}, k = {k}"
    ax.set_title(f"{heading}\nmean rank, 1 = best ({direction})")
    return ax


def plot_friedman_nemenyi(result: FriedmanNemenyi, *, ax=None, title: str | None = None):
    """The critical-difference diagram when the Friedman (Iman-Davenport) test rejects; otherwise the mean ranks
    alone, greyed, with "no difference detected" and the Iman-Davenport p (no post-hoc bars are drawn)."""
    if not isinstance(result, FriedmanNemenyi):
        raise TypeError(f"result must be a FriedmanNemenyi, got {type(result).__name__}")
    f = result.friedman
    p_text = f"Iman-Davenport p = {f.iman_davenport_p:.3g}"
    if result.nemenyi is not None:
        heading = title or f"Nemenyi critical difference, N = {f.n}, k = {f.k}"
        return plot_critical_difference(result.nemenyi, ax=ax, title=f"{heading}; {p_text}")
    k = f.k
    ranks = f.mean_ranks.sort_values(kind="stable")
    fig, ax = get_axes(ax, figsize=(7.0, 1.4 + 0.3 * k))
    grey = "#9a9a9a"
    ax.plot([1, k], [0, 0], color=grey, linewidth=1.0)
    for tick in range(1, k + 1):
        ax.plot([tick, tick], [0, 0.08], color=grey, linewidth=1.0)
        ax.text(tick, 0.12, str(tick), ha="center", va="bottom", color=grey)
    for i, (name, r) in enumerate(ranks.items()):
        y = -(i + 1) * 0.35
        ax.plot([r, r, k + 0.4], [0, y, y], color=grey, linewidth=1.0)
        ax.text(k + 0.45, y, f"{name} ({r:.2f})", ha="left", va="center", color=grey)
    ax.text((1 + k) / 2, 0.45, f"no difference detected\n({p_text} > alpha = {result.alpha:g}; Nemenyi not run)",
            ha="center", va="bottom", color="black", fontsize=9)
    ax.set_xlim(0.5, k + 2.5)
    ax.set_ylim(-(k + 1) * 0.35, 1.0)
    ax.set_axis_off()
    heading = title or f"Friedman test, N = {f.n}, k = {k}"
    ax.set_title(f"{heading}\nmean rank, 1 = best (greyed: no post-hoc test)", color=grey)
    return ax


def plot_rank_blobs(result: RankBootstrap, *, ax=None, confidence: float = 0.95, title: str | None = None):
    """Blob plot of bootstrap rank distributions (as challengeR): one column per model, ordered by observed
    rank; a disc at each rank with area proportional to the share of resamples giving that rank; a black cross
    at the observed rank and a line over the equal-tailed ``confidence`` interval of the bootstrap ranks."""
    if not isinstance(result, RankBootstrap):
        raise TypeError(f"result must be a RankBootstrap, got {type(result).__name__}")
    summary = result.summary(confidence=confidence)
    distribution = result.distribution()
    order = list(summary["model"])
    colors = _colors(result.models)
    fig, ax = get_axes(ax, figsize=(max(3.5, 0.8 * len(order) + 1.5), 3.5))
    for x, name in enumerate(order):
        rows = distribution[distribution["model"] == name]
        ax.scatter(
            np.full(len(rows), x), rows["rank"], s=400 * rows["share"], color=colors[name], alpha=0.7,
            edgecolors="none",
        )
        row = summary[summary["model"] == name].iloc[0]
        ax.plot([x, x], [row["rank_low"], row["rank_high"]], color="black", linewidth=1.0)
        ax.scatter([x], [row["observed_rank"]], marker="x", color="black", s=30, zorder=3)
    k = len(order)
    ax.set_xticks(range(k), order, rotation=30, ha="right")
    ax.set_yticks(range(1, k + 1))
    ax.set_ylim(k + 0.6, 0.4)
    ax.set_ylabel("rank (1 = best)")
    ax.set_title(title or f"Bootstrap ranks, {result.n_resamples} resamples of N = {result.n} ({result.scheme})")
    return ax


def plot_model_intervals(summary: pd.DataFrame, *, ax=None, metric: str = "value", title: str | None = None):
    """Forest plot of :func:`helpers.stats.summarize_models`: each model's mean and its confidence interval,
    labelled with n and the interval method ("BCa" or "percentile")."""
    required = {"model", "mean", "ci_low", "ci_high", "n", "ci_method"}
    if not isinstance(summary, pd.DataFrame) or not required.issubset(summary.columns):
        raise ValueError(f"summary must be a DataFrame with columns {sorted(required)}")
    fig, ax = get_axes(ax, figsize=(5.0, 0.45 * len(summary) + 1.0))
    colors = _colors(summary["model"])
    y = np.arange(len(summary))[::-1]
    for yi, (_, row) in zip(y, summary.iterrows()):
        ax.plot([row["ci_low"], row["ci_high"]], [yi, yi], color=colors[row["model"]], linewidth=2.0)
        ax.scatter([row["mean"]], [yi], color=colors[row["model"]], zorder=3)
    labels = [f"{m} (n={n}, {'BCa' if c == 'BCa' else 'pct'})" for m, n, c in
              zip(summary["model"], summary["n"], summary["ci_method"])]
    ax.set_yticks(y, labels)
    ax.set_xlabel(f"mean {metric} with {summary['confidence'].iloc[0]:.0%} bootstrap CI"
                  if "confidence" in summary.columns else f"mean {metric}")
    if title:
        ax.set_title(title)
    return ax


def plot_paired_differences(pairs: pd.DataFrame, *, ax=None, metric: str = "value", title: str | None = None):
    """Forest plot of :func:`helpers.stats.paired_comparisons`: mean difference (a - b) with its CI per pair,
    a zero line, and the Holm-adjusted sign-flip p-value beside each pair."""
    required = {"model_a", "model_b", "mean_difference", "ci_low", "ci_high", "p_holm"}
    if not isinstance(pairs, pd.DataFrame) or not required.issubset(pairs.columns):
        raise ValueError(f"pairs must be a DataFrame with columns {sorted(required)}")
    fig, ax = get_axes(ax, figsize=(5.5, 0.35 * len(pairs) + 1.0))
    y = np.arange(len(pairs))[::-1]
    ax.axvline(0.0, color="0.6", linewidth=0.8)
    ax.hlines(y, pairs["ci_low"], pairs["ci_high"], color="0.2", linewidth=1.5)
    ax.scatter(pairs["mean_difference"], y, color="black", zorder=3, s=12)
    ax.set_yticks(y, [f"{a} - {b}" for a, b in zip(pairs["model_a"], pairs["model_b"])])
    right = float(np.nanmax(pairs["ci_high"]))
    for yi, p in zip(y, pairs["p_holm"]):
        ax.annotate(f"p_Holm={p:.3f}", (right, yi), xytext=(6, 0), textcoords="offset points", va="center",
                    fontsize=7)
    ax.set_xlabel(f"paired difference in {metric} (a - b)")
    if title:
        ax.set_title(title)
    return ax


def plot_rank_trajectories(ranks: pd.DataFrame, *, group: str, ax=None, model: str = "model",
                           rank: str = "rank", title: str | None = None):
    """Each model's rank per ranking occasion (fold, seed) from :func:`helpers.stats.ranks_by_group`, one line
    per model; crossing lines are rank volatility."""
    if not isinstance(ranks, pd.DataFrame) or not {group, model, rank}.issubset(ranks.columns):
        raise ValueError(f"ranks must be a DataFrame with columns {group!r}, {model!r}, {rank!r}")
    occasions = list(pd.unique(ranks[group]))
    position = {o: i for i, o in enumerate(occasions)}
    models = list(pd.unique(ranks[model]))
    colors = _colors(models)
    fig, ax = get_axes(ax, figsize=(max(4.0, 0.5 * len(occasions) + 2.0), 3.2))
    for name in models:
        rows = ranks[ranks[model] == name]
        ax.plot([position[o] for o in rows[group]], rows[rank], marker="o", markersize=3, label=str(name),
                color=colors[name], linewidth=1.2)
    k = len(models)
    ax.set_xticks(range(len(occasions)), [str(o) for o in occasions])
    ax.set_yticks(range(1, k + 1))
    ax.set_ylim(k + 0.5, 0.5)
    ax.set_xlabel(group)
    ax.set_ylabel("rank (1 = best)")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7)
    if title:
        ax.set_title(title)
    return ax
