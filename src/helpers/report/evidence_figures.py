"""The figures behind a chapter's finding: per-lesion boundary error against lesion size, the small-lesion (Q1)
distribution per model, the rank heat map across metrics, the forest plot of the bootstrap's paired differences,
per-image scores of a tiny dataset and a class colour key.

Same rules as :mod:`helpers.report.figures`: one function per figure, ``ax=None`` (or ``axes=None``), styling from
:mod:`helpers.base.plots`, nothing computed but what is drawn (ranks come from
:func:`helpers.stats.ranking.rank_models`, the one ranking). Distances are labelled in the dataset's unit
(``unit``: ``"mm"``, or ``"px"`` for a photograph without a physical spacing), never assumed to be mm. Models are
named by :data:`helpers.analysis.MODEL_LABELS` and coloured by :data:`OKABE_ITO` with one line style each
(:func:`model_style`), so two models never look alike, also in grey print or to a colour-blind reader.

Inputs: ``per_lesion_metrics.csv`` (:data:`helpers.analysis.LESION_COLUMNS`), the aggregates of
:func:`helpers.analysis.aggregate`, ``bootstrap_directional_robustness.csv`` (the rows of
:func:`helpers.stats.bootstrap.directional_robustness`: ``stratum, metric, model_a, model_b, difference, ci_low,
ci_high, verdict``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from helpers.analysis.units import MODEL_LABELS, as_bool
from helpers.base.plots import get_axes, subplots
from helpers.metrics.lesions import QUARTILES
from helpers.metrics.registry import higher_is_better, label
from helpers.stats.ranking import rank_models

__all__ = [
    "OKABE_ITO", "LINE_STYLES", "model_style", "lesion_values", "plot_boundary_error_vs_size",
    "plot_q1_distribution", "plot_rank_heatmap", "plot_bootstrap_forest", "plot_per_image_scores",
    "add_class_key",
]

#: The Okabe-Ito colour-blind-safe palette (black left out: it is the reference's colour).
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#F0E442")
#: One line style per model, in the same order as the colours.
LINE_STYLES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1)), (0, (1, 1)), (0, (3, 1, 1, 1, 1, 1)))


def model_style(models: Sequence[str]) -> dict[str, dict]:
    """Colour, line style and marker per model (in the order given): matplotlib keyword arguments."""
    markers = ("o", "s", "^", "D", "v", "P", "X")
    return {m: {"color": OKABE_ITO[i % len(OKABE_ITO)], "linestyle": LINE_STYLES[i % len(LINE_STYLES)],
                "marker": markers[i % len(markers)]} for i, m in enumerate(models)}


def _name(model) -> str:
    return MODEL_LABELS.get(str(model), str(model))


def lesion_values(per_lesion: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The reference lesions' rows of ``metric`` with a finite value that is not a penalty (a missed lesion's
    distance is the penalty, not a boundary error): columns ``model, case_id, lesion_id, area_fraction, quartile,
    value``."""
    rows = per_lesion[(per_lesion["kind"] == "lesion") & (per_lesion["metric"] == metric)]
    if "penalty" in rows.columns:
        rows = rows[~as_bool(rows["penalty"])]
    rows = rows[np.isfinite(pd.to_numeric(rows["value"], errors="coerce"))]
    return rows[["model", "case_id", "lesion_id", "area_fraction", "quartile", "value"]].astype({"value": float})


def plot_boundary_error_vs_size(per_lesion: pd.DataFrame, *, metric: str = "hd95", edges: Sequence[float] = (),
                                voxel: float | None = None, unit: str = "mm", title: str = "", ax=None):
    """Per-lesion ``metric`` against lesion size (area fraction of the image, %, log axis): one colour and marker
    per model, the quartile edges as vertical lines (``edges``: upper edges of Q1-Q3 as fractions), one voxel
    (``voxel``, in ``unit``) as a horizontal line. Detected lesions only (missed ones hold the penalty); their
    count is in the legend."""
    fig, ax = get_axes(ax, figsize=(7.0, 4.0))
    values = lesion_values(per_lesion, metric)
    models = sorted(values["model"].unique())
    styles = model_style(models)
    for model in models:
        rows = values[values["model"] == model]
        ax.scatter(100 * rows["area_fraction"], rows["value"], s=10, alpha=0.6, color=styles[model]["color"],
                   marker=styles[model]["marker"], label=f"{_name(model)} (n = {len(rows)})", edgecolors="none")
    ax.set_xscale("log")
    for k, edge in enumerate(edges):
        if edge is not None and np.isfinite(edge) and edge > 0:
            ax.axvline(100 * edge, color="0.4", lw=0.8, ls=":")
            ax.annotate(f"Q{k + 1} | Q{k + 2}", (100 * edge, 1.0), xycoords=("data", "axes fraction"),
                        ha="center", va="bottom", fontsize=7, color="0.3")
    if voxel is not None and np.isfinite(voxel):
        ax.axhline(voxel, color="black", lw=0.9, ls="--", label=f"one voxel ({voxel:g} {unit})")
    ax.set_xlabel("lesion size (% of image area, log scale)")
    ax.set_ylabel(f"per-lesion {label(metric)} ({unit})")
    ax.legend(fontsize=7, loc="upper right", frameon=True)
    if title:
        ax.set_title(title, pad=14)
    return ax


def plot_q1_distribution(per_lesion: pd.DataFrame, *, metric: str = "hd95", voxel: float | None = None,
                         unit: str = "mm", stratum: str = "Q1", title: str = "", ax=None):
    """The distribution of per-lesion ``metric`` in ``stratum`` per model: a box (quartiles, whiskers at 1.5 IQR)
    over every detected lesion drawn as a dot, the mean as a white diamond and the count below; one voxel as a
    dashed line, where values pile up on a voxel grid."""
    fig, ax = get_axes(ax, figsize=(6.0, 3.8))
    values = lesion_values(per_lesion, metric)
    values = values[values["quartile"] == stratum]
    models = sorted(values["model"].unique())
    styles = model_style(models)
    data = [values.loc[values["model"] == m, "value"].to_numpy() for m in models]
    if models:
        ax.boxplot(data, positions=range(len(models)), widths=0.5, showfliers=False,
                   medianprops={"color": "black"})
    rng = np.random.default_rng(0)  # jitter only: the same picture on every run
    for i, (model, vals) in enumerate(zip(models, data)):
        ax.scatter(i + rng.uniform(-0.18, 0.18, len(vals)), vals, s=8, alpha=0.5, color=styles[model]["color"],
                   edgecolors="none", zorder=3)
        if len(vals):
            ax.scatter([i], [vals.mean()], marker="D", color="white", edgecolors="black", zorder=4, s=25)
    if voxel is not None and np.isfinite(voxel):
        ax.axhline(voxel, color="black", lw=0.9, ls="--", label=f"one voxel ({voxel:g} {unit})")
        ax.legend(fontsize=7, loc="upper right")
    ax.set_xticks(range(len(models)), [f"{_name(m)}\nn = {len(d)}" for m, d in zip(models, data)], fontsize=8)
    ax.set_ylabel(f"per-lesion {label(metric)} in {stratum} ({unit})")
    if not models:
        ax.text(0.5, 0.5, f"no detected lesion in {stratum}", ha="center", va="center", transform=ax.transAxes)
    if title:
        ax.set_title(title)
    return ax


def plot_rank_heatmap(aggregates: pd.DataFrame, *, metrics: Sequence[str], strata: Sequence[str] = ("overall",
                      *QUARTILES), title: str = "", axes=None):
    """Model ranks (1 = best) per metric, one panel per stratum: rows models (ordered by their Dice rank in the
    first stratum), columns metrics, each cell its rank. Equal values share the mean rank. ``aggregates``: columns
    ``stratum, metric, model, value`` (one lesion set)."""
    strata = [s for s in strata if s in set(aggregates["stratum"])]
    if axes is None:
        _, axes = subplots(1, max(len(strata), 1), figsize=(2.3 * max(len(strata), 1) + 1.6, 3.2), squeeze=False,
                           layout="constrained")
        axes = axes[0]
    models = sorted(aggregates["model"].unique())
    first = None
    image = None
    for ax, stratum in zip(axes, strata):
        sub = aggregates[aggregates["stratum"] == stratum]
        ranks = pd.DataFrame(index=models, columns=list(metrics), dtype=float)
        for metric in metrics:
            scores = sub[sub["metric"] == metric].set_index("model")["value"].astype(float).dropna()
            if len(scores) >= 2:
                ranks.loc[scores.index, metric] = rank_models(scores, metric=metric).astype(float)
        if first is None:
            key = "dice" if "dice" in ranks.columns else ranks.columns[0]
            first = list(ranks.sort_values(key, kind="mergesort").index)
        ranks = ranks.loc[first]
        image = ax.imshow(ranks.to_numpy(float), cmap="viridis_r", vmin=1, vmax=max(len(models), 2))
        for i in range(len(first)):
            for j in range(len(metrics)):
                r = ranks.iat[i, j]
                ax.text(j, i, "" if not np.isfinite(r) else f"{r:g}", ha="center", va="center", fontsize=8,
                        color="white" if np.isfinite(r) and r > (len(models) + 1) / 2 else "black")
        if not np.isfinite(ranks.to_numpy(float)).any():
            ax.text(0.5, 0.5, "not ranked\n(too few units)", ha="center", va="center", fontsize=8,
                    transform=ax.transAxes)
        ax.set_xticks(range(len(metrics)), [label(m) for m in metrics], rotation=45, ha="right")
        ax.set_yticks(range(len(first)), [_name(m) for m in first] if ax is axes[0] else [""] * len(first))
        ax.set_title(stratum)
    if image is not None:
        axes[-1].figure.colorbar(image, ax=list(axes), fraction=0.04, label="rank (1 = best)")
    if title:
        axes[0].figure.suptitle(title)
    return axes


def plot_bootstrap_forest(robustness: pd.DataFrame, *, stratum: str = "Q1", metrics: Sequence[str] | None = None,
                          unit: str = "mm", title: str = "", axes=None):
    """Forest plot of the paired bootstrap: per metric one panel, per model pair the observed difference (a - b)
    with its interval, a zero line, and the verdict beside it; a filled dot where the sign is kept under Holm."""
    rows = robustness[robustness["stratum"] == stratum]
    metrics = [m for m in (metrics or sorted(rows["metric"].unique())) if m in set(rows["metric"])]
    n_pairs = max((len(rows[rows["metric"] == m]) for m in metrics), default=1)
    if axes is None:
        _, axes = subplots(1, max(len(metrics), 1), figsize=(3.4 * max(len(metrics), 1) + 2.5,
                                                             0.42 * n_pairs + 1.4), squeeze=False,
                           layout="constrained")
        axes = axes[0]
    for k, (ax, metric) in enumerate(zip(axes, metrics)):
        sub = rows[rows["metric"] == metric].reset_index(drop=True)
        y = np.arange(len(sub))[::-1]
        ax.axvline(0.0, color="0.6", lw=0.8)
        ax.hlines(y, sub["ci_low"], sub["ci_high"], color="0.25", lw=1.6)
        kept = sub["verdict"].astype(str).str.startswith(_HELD)
        ax.scatter(sub["difference"], y, s=22, zorder=3, color=np.where(kept, "black", "white"),
                   edgecolors="black")
        ax.set_yticks(y, [f"{_name(a)} - {_name(b)}" for a, b in zip(sub["model_a"], sub["model_b"])]
                      if k == 0 else [""] * len(y), fontsize=8)
        unit_text = f" ({unit})" if metric in ("hd95", "hd95_pooled", "assd", "masd", "hd") else ""
        ax.set_xlabel(f"difference in {label(metric)}{unit_text}\n"
                      f"({'higher' if higher_is_better(metric) else 'lower'} is better)")
        ax.set_title(label(metric))
    if len(metrics):
        axes[0].figure.legend(handles=[
            _dot("black", "sign kept, Holm p <= alpha"), _dot("white", "other verdicts")],
            loc="lower center", ncol=2, fontsize=7, bbox_to_anchor=(0.5, -0.08))
    else:
        axes[0].text(0.5, 0.5, f"no paired difference in {stratum}", ha="center", va="center",
                     transform=axes[0].transAxes)
        axes[0].set_axis_off()
    if title:
        axes[0].figure.suptitle(title)
    return axes


#: The verdict of :func:`helpers.stats.bootstrap.verdict_names` whose sign is kept under Holm (any alpha).
_HELD = "sign kept, Holm p"


def _dot(color: str, text: str):
    from matplotlib.lines import Line2D  # drawn only where a figure is made

    return Line2D([], [], marker="o", ls="", markerfacecolor=color, markeredgecolor="black", label=text)


def plot_per_image_scores(scores: pd.DataFrame, *, value: str = "dice", image: str = "case_id",
                          model: str = "model", title: str = "", ax=None):
    """Each image's score per model (one column per image, one marker and colour per model, lines joining a
    model's images): at N = 9 every image is visible, and a ranking that rests on one image shows."""
    fig, ax = get_axes(ax, figsize=(7.0, 3.6))
    images = list(pd.unique(scores[image]))
    position = {c: i for i, c in enumerate(images)}
    models = list(pd.unique(scores[model]))
    styles = model_style(models)
    for m in models:
        rows = scores[scores[model] == m].groupby(image, sort=False)[value].mean()
        x = [position[c] for c in rows.index]
        order = np.argsort(x)
        ax.plot(np.asarray(x)[order], rows.to_numpy()[order], label=_name(m), lw=1.0, ms=5, **styles[m])
    ax.set_xticks(range(len(images)), [str(c) for c in images], rotation=45, ha="right")
    ax.set_xlabel("image")
    ax.set_ylabel(label(value) if value in ("dice", "iou") else value)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    if title:
        ax.set_title(title)
    return ax


def add_class_key(fig, colors: Mapping[str, Sequence[float] | str], *, title: str = "classes"):
    """A legend of the class colours of a label image (``colors``: class name -> colour) to the right of ``fig``;
    returns it."""
    from matplotlib.patches import Patch  # drawn only where a figure is made

    handles = [Patch(facecolor=c, edgecolor="0.3", label=name) for name, c in colors.items()]
    return fig.legend(handles=handles, title=title, loc="center left", fontsize=8, bbox_to_anchor=(1.0, 0.5),
                      frameon=False)
