"""The failure-mode lab's figures: the sweep's metrics against lesion size, Dice against a boundary metric, a
gallery of the failure modes on one lesion, and the planted reversal's aggregates.

Each figure function computes nothing of its own beyond summarising the table it is given (:func:`sweep_summary`)
and drawing the closed forms of :func:`helpers.studies.failure_lab.lesions.analytic_expectation`; it returns the
axes or the figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from helpers.evaluation import perturb
from helpers.metrics import METRICS, evaluate_case, label, plot_boundaries
from helpers.base.plots import colormap, get_axes, model_color, subplots
from helpers.studies.failure_lab.lesions import analytic_expectation, as_mode_name, canvas_shape, draw_lesion
from helpers.studies.failure_lab.sweep import sweep_summary

__all__ = ["plot_metric_vs_size", "plot_sweep_grid", "plot_dice_vs_boundary", "plot_mode_gallery", "plot_demo"]


# --------------------------------------------------------------------------------------------------- figures
def _mode_color(mode: str):
    """A fixed colour per failure mode (its position in :data:`helpers.evaluation.perturb.FAILURE_MODES`, ``tab10``)."""
    return colormap("tab10").colors[list(perturb.FAILURE_MODES).index(mode)]



def plot_metric_vs_size(
    table: pd.DataFrame,
    *,
    mode: str,
    metric: str,
    shape: str = "disk",
    analytic: bool = True,
    ndim: int = 2,
    ax=None,
):
    """One metric against lesion radius for one failure mode, one line per severity.

    Each point is the mean over the repeats whose value is *not* the empty-prediction penalty; a point with
    some penalised repeats has a black edge, and where every repeat was penalised (the mode deleted the lesion:
    Dice 0, distances undefined) a black ``x`` is drawn at the top of a distance panel instead (the penalty,
    the canvas diagonal, would flatten the axis). Where :func:`analytic_expectation` has a closed form for the
    metric (``hd`` also for ``hd95``) and ``shape == "disk"``, it is drawn beside the measurement as a dashed
    line of the same colour; ``dice_small`` (the first-order Dice) dotted. Returns the axes.
    """
    as_mode_name(mode)
    required = ["lesion_shape", "mode", "metric", "severity_mm", "radius_mm", "value", "penalty"]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks columns {missing}; has {list(table.columns)}")
    sub = table[(table["mode"] == mode) & (table["metric"] == metric) & (table["lesion_shape"] == shape)]
    if sub.empty:
        raise ValueError(f"the sweep has no rows for mode {mode!r}, metric {metric!r}, shape {shape!r}")
    fig, ax = get_axes(ax, figsize=(4.0, 3.0))
    severities = sorted(sub["severity_mm"].unique())
    cmap = colormap("viridis")
    deleted = []
    for i, severity in enumerate(severities):
        color = cmap(0.15 + 0.7 * i / max(1, len(severities) - 1))
        rows = sub[sub["severity_mm"] == severity]
        stats = rows.groupby("radius_mm").apply(
            lambda g: pd.Series({"value": g.loc[~g["penalty"].astype(bool), "value"].mean(),
                                 "n_penalty": int(g["penalty"].astype(bool).sum())}),
            include_groups=False,
        ).reset_index()
        ax.plot(stats["radius_mm"], stats["value"], "o-", color=color, ms=3.5, lw=1.2, label=f"{severity:g} mm")
        some = stats[(stats["n_penalty"] > 0) & stats["value"].notna()]
        ax.scatter(some["radius_mm"], some["value"], s=22, facecolors="none", edgecolors="black", lw=0.8, zorder=3)
        deleted.extend(stats.loc[stats["value"].isna(), "radius_mm"].tolist())
        if analytic and shape == "disk":
            radii = np.linspace(float(stats["radius_mm"].min()), float(stats["radius_mm"].max()), 60)
            keys = ("hd",) if metric in ("hd", "hd95", "hd95_pooled") else (metric, f"{metric}_small")
            for key, style in zip(keys, ("--", ":")):
                values = [analytic_expectation(mode, r, severity, ndim=ndim).get(key, np.nan) for r in radii]
                if np.isfinite(values).any():
                    ax.plot(radii, values, style, color=color, lw=1.0)
    if deleted:
        top = ax.get_ylim()[1]
        ax.scatter(deleted, [top] * len(deleted), marker="x", color="black", s=18, zorder=4, clip_on=False)
    ax.set_xlabel("lesion radius (mm)")
    ax.set_ylabel(label(metric, unit=True))
    ax.set_title(f"{perturb.FAILURE_MODES[mode].label}")
    return ax


def plot_sweep_grid(
    table: pd.DataFrame,
    *,
    modes: Sequence[str],
    metrics: Sequence[str] = ("dice", "hd95", "assd", "contour_f1"),
    shape: str = "disk",
    ndim: int = 2,
):
    """A grid of :func:`plot_metric_vs_size` panels: one row per mode, one column per metric. Returns the figure."""
    modes, metrics = list(modes), list(metrics)
    fig, axes = subplots(len(modes), len(metrics), figsize=(2.6 * len(metrics), 2.1 * len(modes)),
                             squeeze=False, constrained_layout=True)
    for i, mode in enumerate(modes):
        for j, metric in enumerate(metrics):
            ax = plot_metric_vs_size(table, mode=mode, metric=metric, shape=shape, ndim=ndim, ax=axes[i, j])
            ax.set_title(perturb.FAILURE_MODES[mode].label if j == 0 else "")
            if i < len(modes) - 1:
                ax.set_xlabel("")
            if METRICS[metric].kind in ("overlap", "boundary"):  # scores in [0, 1]
                ax.set_ylim(-0.03, 1.03)
    axes[0, -1].legend(title="severity", fontsize=7, title_fontsize=7, loc="best")
    return fig


def plot_dice_vs_boundary(
    table: pd.DataFrame, *, radius_mm: float, metric: str = "hd95", shape: str = "irregular", ax=None
):
    """Dice against a boundary metric for every (mode, severity) at one lesion radius.

    Points in a vertical band share their Dice; their spread along the other axis is what Dice does not see.
    Returns the axes."""
    summary = sweep_summary(table)
    summary = summary[(summary["lesion_shape"] == shape) & np.isclose(summary["radius_mm"], radius_mm)]
    if summary.empty:
        raise ValueError(f"the sweep has no rows for radius_mm {radius_mm!r} and shape {shape!r}")
    wide = summary.pivot_table(index=["mode", "severity_mm"], columns="metric", values="value").reset_index()
    fig, ax = get_axes(ax, figsize=(4.2, 3.2))
    for mode, sub in wide.groupby("mode", sort=True):
        if mode == "none":
            continue
        ax.plot(sub["dice"], sub[metric], "o-", ms=4, lw=0.8, color=_mode_color(mode),
                label=perturb.FAILURE_MODES[mode].label)
    ax.set_xlabel(label("dice"))
    ax.set_ylabel(label(metric, unit=True))
    ax.set_title(f"{shape} lesions of radius {radius_mm:g} mm")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax


def plot_mode_gallery(
    radius_mm: float = 6.0,
    severity_mm: float = 2.0,
    *,
    modes: Sequence[str] | None = None,
    irregularity: float = 0.2,
    n_protrusions: int = 2,
    seed: int = 0,
):
    """One irregular lesion under every failure mode (reference and prediction boundaries, as
    :func:`helpers.metrics.plot_boundaries`), titled with Dice and HD95. Returns the figure."""
    modes = list(perturb.FAILURE_MODES) if modes is None else [as_mode_name(m) for m in modes]
    reach = max(perturb.FAILURE_MODES[m].reach_mm(severity_mm, {}) for m in modes)
    shape = canvas_shape(radius_mm * (1 + irregularity) * 1.8, reach + 2)
    centre = [(n // 2) for n in shape]
    rng = np.random.default_rng(seed)
    ref = draw_lesion(shape, centre, radius_mm, irregularity=irregularity, n_protrusions=n_protrusions, rng=rng)
    cols = min(4, len(modes))
    rows = int(math.ceil(len(modes) / cols))
    fig, axes = subplots(rows, cols, figsize=(2.3 * cols, 2.5 * rows), squeeze=False, constrained_layout=True)
    for ax, mode in zip(axes.flat, modes):
        pred = perturb.perturb_lesions(ref, mode, severity_mm, seed=seed)
        m = evaluate_case(ref, pred)
        plot_boundaries(ref, pred, ax=ax)
        ys, xs = np.nonzero(ref | pred)
        ax.set_xlim(xs.min() - 2.5, xs.max() + 2.5)
        ax.set_ylim(ys.max() + 2.5, ys.min() - 2.5)
        ax.set_title(f"{perturb.FAILURE_MODES[mode].label}\nDice {m.dice:.2f} · HD95 {m.hd95:.1f}", fontsize=8)
    for ax in list(axes.flat)[len(modes):]:
        ax.axis("off")
    return fig


def plot_demo(aggregates: pd.DataFrame, *, metrics: Sequence[str] = ("dice", "hd95", "assd", "contour_f1"),
              strata: Sequence[str] = ("overall", "Q1")):
    """Bars of each model's aggregate per metric (columns) and stratum (bar groups). Returns the figure."""
    metrics, strata = list(metrics), list(strata)
    models = list(dict.fromkeys(aggregates["model"]))
    fig, axes = subplots(1, len(metrics), figsize=(2.6 * len(metrics), 2.6), squeeze=False,
                             constrained_layout=True)
    width = 0.8 / max(1, len(models))
    for ax, metric in zip(axes[0], metrics):
        for i, model in enumerate(models):
            values = [
                aggregates[(aggregates["model"] == model) & (aggregates["metric"] == metric)
                           & (aggregates["stratum"] == s)]["value"].mean()
                for s in strata
            ]
            ax.bar(np.arange(len(strata)) + (i - (len(models) - 1) / 2) * width, values, width,
                   color=model_color(model, i), label=model)
        ax.set_xticks(np.arange(len(strata)), strata)
        ax.set_title(label(metric, unit=True))
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig
