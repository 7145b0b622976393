"""The analysis and statistics figures of the book: one function per figure, no computation of its own.

Every function takes ``ax=None`` (or ``axes=None`` for a multi-panel figure), makes a new figure through
:func:`helpers.base.plots.get_axes` (styling in one place) when none is given, draws tables computed elsewhere and
returns the axes; colours per model come from :func:`helpers.base.plots.model_color` so a model looks the same in every
chapter. Ranks are drawn with rank 1 (best) first: on the left of a critical-difference axis, at the top of a rank
plot.

Sources of what is drawn: spreads, reversals and aggregates from :mod:`helpers.analysis` (and the agreement counts
of :func:`helpers.stats.ranking.agreement_matrix`); the qualitative crops of :func:`helpers.evaluation.example_crops`;
the tests of :mod:`helpers.stats.inference` (Nemenyi, Friedman); intervals, pairwise comparisons and rank bootstraps
of :mod:`helpers.stats.bootstrap`; rank trajectories of :func:`helpers.stats.ranking.ranks_by_group`.

Imports: matplotlib, scikit-image (contours), :mod:`helpers.base.plots` and the statistics modules; nothing imports
this module but notebooks and the chapters' report modules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.image import imread
from matplotlib.lines import Line2D
from skimage import measure

from helpers.analysis import MODEL_LABELS, PRIMARY_LESION_SET, rankable_rows, select_lesion_set
from helpers.stats.bootstrap import RankBootstrap
from helpers.stats.inference import FriedmanNemenyi, NemenyiResult
from helpers.metrics.lesions import QUARTILES
from helpers.metrics import label, metric_names
from helpers.base.plots import get_axes, model_color, subplots
from helpers.stats.ranking import agreement_matrix
from helpers.data.datasets import display_name
from helpers.report.evidence_figures import model_style

#: The reference lesion's fill in the qualitative crops (pale yellow, translucent), drawn beneath the contours.
_REFERENCE_FILL = (1.0, 1.0, 0.55, 0.45)

__all__ = [
    "plot_overall_vs_small", "plot_quartile_disagreement", "plot_reversal_matrix", "plot_reversal_matrices",
    "plot_lesion_example", "plot_lesion_examples", "stack_figures", "plot_critical_difference",
    "plot_friedman_nemenyi", "plot_rank_blobs", "plot_model_intervals", "plot_paired_differences",
    "plot_rank_trajectories",
]


# ---------------------------------------------------------------------------------------------------------------
# The study's analysis figures (spreads, reversals, qualitative examples)
# ---------------------------------------------------------------------------------------------------------------


def plot_overall_vs_small(spreads: pd.DataFrame, *, metrics: Sequence[str] = metric_names(primary=True, computed=True),
                          ax=None):
    """Relative spread among the top 3 (by Dice) per metric, full test set vs Q1, on a linear axis with each bar's
    value written on it. One dataset: its values. Several: bars = mean over the datasets (said in the legend), one
    marker per dataset (named in the legend)."""
    fig, ax = get_axes(ax, figsize=(7.0, 3.8))
    x = np.arange(len(metrics))
    width = 0.38
    datasets = sorted(spreads["dataset"].unique()) if "dataset" in spreads.columns else []
    several = len(datasets) > 1
    markers = dict(zip(datasets, ("o", "s", "^", "D", "v", "P")))
    for k, (stratum, legend, color) in enumerate([("overall", "full test set", "#8c8c8c"),
                                                  ("Q1", "Q1 (small lesions)", "#D55E00")]):
        sub = spreads[spreads["stratum"] == stratum]
        means = np.array([sub.loc[sub["metric"] == m, "relative_spread_percent"].mean() for m in metrics], float)
        bars = ax.bar(x + (k - 0.5) * width, means, width, color=color, alpha=0.8,
                      label=f"{legend}{f', mean over {len(datasets)} datasets' if several else ''}")
        ax.bar_label(bars, labels=["" if not np.isfinite(v) else f"{v:.1f}" for v in means], fontsize=7,
                     padding=2)
        for i, v in enumerate(means):
            if not np.isfinite(v) and (sub["metric"] == metrics[i]).any():
                # (max - min) / min with min = 0, or no value: said, not drawn as an empty slot
                ax.annotate("undefined", (x[i] + (k - 0.5) * width, 0), xytext=(0, 2), textcoords="offset points",
                            ha="center", va="bottom", fontsize=6, rotation=90, color=color)
        if several:
            for dataset in datasets:
                rows = sub[sub["dataset"] == dataset]
                vals = [rows.loc[rows["metric"] == m, "relative_spread_percent"].mean() for m in metrics]
                ax.plot(x + (k - 0.5) * width, vals, markers[dataset], ms=4, color="black", ls="",
                        label=display_name(dataset) if k == 0 else None)
    ax.set_xticks(x, [label(m) for m in metrics])
    ax.set_ylabel("spread among top 3 by Dice\n(max - min) / min, %")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    return ax


def plot_quartile_disagreement(spreads: pd.DataFrame, reversals: pd.DataFrame, *,
                               metrics: Sequence[str] = metric_names(primary=True, computed=True), axes=None):
    """Two panels from Q4 (largest) to Q1 (smallest), linear axes: the relative spread among the top 3 per metric
    (its Q1 value written at the end of each line), and Kendall's tau between the Dice order and each boundary
    metric's order. With several datasets each point is the mean over them (said in the axis label)."""
    if axes is None:
        _, axes = subplots(1, 2, figsize=(10, 3.8))
    strata = ["Q4", "Q3", "Q2", "Q1"]
    n = spreads["dataset"].nunique() if "dataset" in spreads.columns else 1
    over = f"\n(mean over {n} datasets)" if n > 1 else ""
    for m in metrics:
        sub = spreads[spreads["metric"] == m]
        y = [sub.loc[sub["stratum"] == s, "relative_spread_percent"].mean() for s in strata]
        line, = axes[0].plot(strata, y, "o-", label=label(m))
        if np.isfinite(y[-1]):
            axes[0].annotate(f"{y[-1]:.1f}", (3, y[-1]), xytext=(4, 0), textcoords="offset points", fontsize=7,
                             va="center", color=line.get_color())
    axes[0].set_ylim(bottom=0)
    axes[0].set_ylabel(f"spread among top 3, %{over}")
    axes[0].set_xlabel("lesion-size quartile (large to small)")
    axes[0].legend(fontsize=7)
    for m in sorted(reversals["metric"].unique()) if len(reversals) else []:
        sub = reversals[reversals["metric"] == m]
        y = [sub.loc[sub["stratum"] == s, "kendall_tau"].mean() for s in strata]
        axes[1].plot(strata, y, "o-", label=f"Dice vs {label(m)}")
    axes[1].axhline(1.0, color="#8c8c8c", lw=0.8, ls=":")
    axes[1].set_ylim(-1.05, 1.05)
    axes[1].set_ylabel(f"Kendall's tau of model orders{over}")
    axes[1].set_xlabel("lesion-size quartile (large to small)")
    axes[1].legend(fontsize=7)
    return axes


def plot_reversal_matrix(same: pd.DataFrame, total: pd.DataFrame, *, title: str = "", colorbar: bool = True,
                         tied: pd.DataFrame | None = None, ax=None):
    """Heat map of metric x metric agreement: share of comparable strata (no tie in either order) whose model
    orders are identical, with counts ``same/comparable`` and, when ``tied`` is given, ``(+t tied)``."""
    fig, ax = get_axes(ax, figsize=(4.2, 3.6))
    share = (same / total.replace(0, np.nan)).astype(float)
    image = ax.imshow(share.to_numpy(), vmin=0, vmax=1, cmap="viridis")
    labels = [label(m) for m in same.index]
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i in range(len(labels)):
        for j in range(len(labels)):
            s = share.iat[i, j]
            text = f"{same.iat[i, j]}/{total.iat[i, j]}"
            if tied is not None and tied.iat[i, j]:
                text += f"\n+{tied.iat[i, j]} tied"
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color="black" if np.isfinite(s) and s > 0.6 else "white")
    ax.set_title(title)
    if colorbar:
        fig.colorbar(image, ax=ax, fraction=0.046, label="same order (share of comparable strata)")
    return ax


def plot_reversal_matrices(aggregates: pd.DataFrame, *, metrics: Sequence[str] = ("dice", "hd95", "assd",
                                                                                    "contour_f1"),
                           strata: Sequence[str] = ("overall", *QUARTILES), lesion_set: str = PRIMARY_LESION_SET,
                           axes=None):
    """One :func:`plot_reversal_matrix` panel per dataset, counted over ``strata`` of one lesion set (rankable
    rows only); returns the axes array."""
    datasets = sorted(aggregates["dataset"].unique())
    if axes is None:
        _, axes = subplots(1, len(datasets), figsize=(3.9 * len(datasets) + 1.0, 3.8), squeeze=False,
                               layout="constrained")
        axes = axes[0]
    sub = rankable_rows(select_lesion_set(aggregates, lesion_set))
    sub = sub[sub["stratum"].isin(list(strata))]
    for k, (ax, dataset) in enumerate(zip(axes, datasets)):
        same, total, tied = agreement_matrix(sub[sub["dataset"] == dataset], metrics=list(metrics))
        plot_reversal_matrix(same, total, tied=tied, title=f"{dataset}: identical model orders ({lesion_set})",
                             ax=ax, colorbar=k == len(datasets) - 1)
    return axes


def plot_lesion_examples(crops: Sequence[Mapping], *, unit: str = "mm", axes=None):
    """The qualitative figure: one :func:`plot_lesion_example` panel per crop, with a legend of the reference and
    the models (colour and line style)."""
    n = max(len(crops), 1)
    if axes is None:
        size = (3.4 * n, 4.1) if crops else (6.0, 0.8)
        fig, axes = subplots(1, n, figsize=size, squeeze=False)
        axes = axes[0]
    for ax, crop in zip(axes, crops):
        plot_lesion_example(crop, ax=ax, unit=unit)
    if not crops:
        axes[0].text(0.5, 0.5, "no small (Q1) lesion detected by every model", ha="center", va="center",
                     transform=axes[0].transAxes)
        axes[0].set_axis_off()
    if crops:
        from matplotlib.patches import Patch  # drawn only where a figure is made

        models = list(crops[0]["predictions"])
        styles = model_style(sorted(models))
        handles = [Patch(facecolor=_REFERENCE_FILL, edgecolor="black", label="reference")] + [
            Line2D([], [], color=styles[m]["color"], ls=styles[m]["linestyle"], lw=1.6,
                   label=MODEL_LABELS.get(m, m)) for m in models]
        axes[0].figure.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7,
                              bbox_to_anchor=(0.5, -0.06), frameon=False)
    return axes


def stack_figures(paths: Sequence, *, width: float = 10.0):
    """One figure showing saved PNG figures (e.g. each dataset's qualitative examples) one below the other.

    Missing files raise FileNotFoundError naming the file. Returns the axes array."""
    images = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: figure not found (run the dataset's section first)")
        images.append(imread(path))
    heights = [width * im.shape[0] / im.shape[1] for im in images]
    fig, axes = subplots(len(images), 1, figsize=(width, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, im in zip(axes[:, 0], images):
        ax.imshow(im)
        ax.set_axis_off()
    return axes[:, 0]


def plot_lesion_example(crop: Mapping, *, ax=None, title_metrics: bool = True, unit: str = "mm"):
    """One qualitative panel: the image crop, the reference filled beneath (translucent white with a thin black
    outline) and each model's contour above it in an Okabe-Ito colour and its own line style, so no contour hides
    under the reference and no two models look alike.

    ``crop`` (from :func:`helpers.evaluation.example_crops`): ``image`` 2D or RGB, ``reference`` 2D bool,
    ``predictions`` {model: 2D bool}, ``metrics`` {model: {"dice": ..., "hd95": ...}}, ``title``; ``unit`` of
    HD95 (``"px"`` for a photograph without a spacing).
    """
    fig, ax = get_axes(ax, figsize=(3, 3))
    image = np.asarray(crop["image"])
    ax.imshow(image, cmap=None if image.ndim == 3 else "gray", interpolation="nearest")
    reference = np.asarray(crop["reference"], bool)
    overlay = np.zeros((*reference.shape, 4))
    overlay[reference] = _REFERENCE_FILL
    ax.imshow(overlay, interpolation="nearest")
    for contour in measure.find_contours(np.pad(reference, 1).astype(float), 0.5):
        ax.plot(contour[:, 1] - 1, contour[:, 0] - 1, color="black", lw=0.8)
    lines = []
    styles = model_style(sorted(crop["predictions"]))  # the colours of every evidence figure
    for model, pred in crop["predictions"].items():
        for contour in measure.find_contours(np.pad(pred, 1).astype(float), 0.5):
            ax.plot(contour[:, 1] - 1, contour[:, 0] - 1, color=styles[model]["color"],
                    ls=styles[model]["linestyle"], lw=1.6)
        m = crop.get("metrics", {}).get(model, {})
        lines.append(f"{MODEL_LABELS.get(model, model)}: Dice {m.get('dice', np.nan):.2f}, "
                     f"HD95 {m.get('hd95', np.nan):.1f} {unit}")
    title = crop.get("title", "")
    ax.set_title(title + ("\n" + "\n".join(lines) if title_metrics else ""), fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


# ---------------------------------------------------------------------------------------------------------------
# Statistics figures (critical differences, intervals, rank bootstraps, rank trajectories)
# ---------------------------------------------------------------------------------------------------------------


def _colors(models) -> dict:
    return {m: model_color(str(m), i) for i, m in enumerate(models)}


def _draw_rank_axis(ax, k: int, *, cd: float, alpha: float) -> None:
    """The mean-rank axis 1..k of a critical-difference diagram with the CD drawn as a scale bar above it."""
    ax.plot([1, k], [0, 0], color="black", linewidth=1.0)
    for tick in range(1, k + 1):
        ax.plot([tick, tick], [0, 0.08], color="black", linewidth=1.0)
        ax.text(tick, 0.12, str(tick), ha="center", va="bottom")
    ax.plot([1, 1 + cd], [0.55, 0.55], color="black", linewidth=1.5)
    for end in (1, 1 + cd):
        ax.plot([end, end], [0.5, 0.6], color="black", linewidth=1.0)
    ax.text(1 + cd / 2, 0.63, f"CD = {cd:.2f} (alpha = {alpha:g})", ha="center", va="bottom")


def plot_critical_difference(result: NemenyiResult, *, ax=None, title: str | None = None):
    """Critical-difference diagram (Demsar 2006, Fig. 1) of a :func:`helpers.stats.inference.nemenyi_test` result.

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

    _draw_rank_axis(ax, k, cd=result.critical_difference, alpha=result.alpha)
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
    """Forest plot of :func:`helpers.stats.bootstrap.summarize_models`: each model's mean and its confidence interval,
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
    """Forest plot of :func:`helpers.stats.bootstrap.paired_comparisons`: mean difference (a - b) with its CI per pair,
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
    """Each model's rank per ranking occasion (fold, seed) from :func:`helpers.stats.ranking.ranks_by_group`, one line
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
