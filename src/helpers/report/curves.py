"""The specification curve (Simonsohn, Simmons and Nelson 2020): one pair's effect under every specification of the
grid, sorted, with its interval, above an indicator panel of the choices each specification makes.

Draws the rows of :func:`helpers.analysis.multiverse.specification_grid`; no computation of its own beyond
sorting. Imports :mod:`helpers.base.plots`, :mod:`helpers.analysis.multiverse` and the metric registry's labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from helpers.analysis.multiverse import AXES, FAMILIES, NOT_APPLICABLE
from helpers.base.plots import subplots
from helpers.metrics import label

__all__ = ["plot_specification_curves", "plot_grid_error"]


def _text(value) -> str:
    """An axis value as text, the same whether it was read back from a CSV (``1.0``) or not (``1``)."""
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def plot_specification_curves(grid: pd.DataFrame, *, dataset: str, stratum: str = "Q1",
                              families: Sequence[str] = FAMILIES, pair: tuple[str, str] | None = None):
    """One column per metric family: the sorted differences metric(A) - metric(B) of one pair (default the pair of
    the two best models by Dice, the grid's first pair) with their case-bootstrap intervals, red where Dice and the
    metric order the pair oppositely, the primary specification ringed; below, one row per axis value, a mark
    where the specification uses it. Returns the figure."""
    sub = grid[(grid["dataset"] == dataset) & (grid["stratum"] == stratum)]
    if pair is None and len(sub):
        pair = (sub["model_a"].iloc[0], sub["model_b"].iloc[0])
    sub = sub[(sub["model_a"] == pair[0]) & (sub["model_b"] == pair[1])] if pair else sub
    rows = [(axis.name, value) for axis in AXES if not (axis.q1_only and stratum != "Q1") for value in axis.values]
    fig, axes = subplots(2, len(families), figsize=(4.2 * len(families), 2.6 + 0.16 * len(rows)), squeeze=False,
                         gridspec_kw={"height_ratios": [1.0, 0.09 * len(rows)]})
    for j, family in enumerate(families):
        top, bottom = axes[0, j], axes[1, j]
        part = sub[sub["metric"] == family].sort_values("difference", kind="stable").reset_index(drop=True)
        x = np.arange(len(part))
        reversed_ = part["reversed"].fillna(False).astype(bool).to_numpy()
        colors = np.where(reversed_, "#c44e52", "#4c72b0")
        top.vlines(x, part["low"], part["high"], colors=colors, alpha=0.25, linewidth=0.8)
        top.scatter(x, part["difference"], c=colors, s=4)
        primary = part.index[part["is_primary"].astype(bool)]
        if len(primary):
            top.scatter(primary, part.loc[primary, "difference"], s=60, facecolors="none", edgecolors="black")
        top.axhline(0.0, color="gray", linewidth=0.8)
        share = reversed_.mean() if len(part) else float("nan")
        top.set_title(f"{label(family)}: {pair[0] if pair else ''} - {pair[1] if pair else ''}\n"
                      f"reversed in {share:.0%} of {len(part)} specifications", fontsize=9)
        top.set_ylabel("metric(A) - metric(B)\n(A: the better Dice)" if j == 0 else "")
        top.set_xticks([])
        for i, (axis, value) in enumerate(rows):
            used = (part[axis].map(_text).to_numpy() == _text(value) if axis in part
                    else np.zeros(len(part), dtype=bool))
            if str(value) == NOT_APPLICABLE:
                continue
            bottom.scatter(x[used], np.full(used.sum(), i), s=2, marker="|", color="black")
        bottom.set_yticks(range(len(rows)))
        bottom.set_yticklabels([f"{a}={v}" for a, v in rows] if j == 0 else [], fontsize=6)
        bottom.set_ylim(len(rows) - 0.5, -0.5)
        bottom.set_xlim(top.get_xlim())
        bottom.set_xlabel("specifications, sorted by difference")
    fig.suptitle(f"{dataset}, {stratum}: which conclusions survive every definition", fontsize=10)
    fig.tight_layout()
    return fig


_STYLES = ("-", "--", ":", "-.")


def plot_grid_error(errors: pd.DataFrame, *, title: str = ""):
    """The grid's own error (:func:`helpers.metrics.grid_error.grid_error_table` rows): the largest absolute error of
    each metric (over the perturbation amounts) against the shape's size in voxels, one panel per perturbation
    (shift, grow), one colour per metric and one line style per spacing. Returns the figure."""
    kinds = list(dict.fromkeys(errors["perturbation"]))
    fig, axes = subplots(1, len(kinds), figsize=(4.6 * len(kinds) + 2.4, 3.4), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        sub = errors[errors["perturbation"] == kind]
        metrics = list(dict.fromkeys(errors["metric"]))
        spacings = list(dict.fromkeys(errors["spacing"]))
        for (spacing, name), part in sub.groupby(["spacing", "metric"], sort=False):
            part = part.groupby("radius_mm").agg(n_voxels=("n_voxels", "mean"), abs_error_max=("abs_error_max", "max"))
            part = part.sort_values("n_voxels")
            ax.plot(part["n_voxels"], part["abs_error_max"], marker="o", markersize=3,
                    color=f"C{metrics.index(name)}", linestyle=_STYLES[spacings.index(spacing) % len(_STYLES)],
                    label=f"{label(name)} ({spacing})")
        ax.set_xscale("log")
        ax.set_xlabel("lesion size (voxels)")
        ax.set_ylabel("largest |voxel - exact| (mm; F1 unitless)")
        verb = {"shift": "shifted", "grow": "grown"}.get(kind, kind)
        ax.set_title(f"{verb} by a sub-voxel amount" if not title else f"{title}: {verb}")
    axes[0, -1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    return fig
