"""Tests of helpers.report.figures for the statistics figures (the analysis figures are drawn in tests/test_analysis.py,
beside the aggregate tables they draw)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from helpers.stats import bootstrap, inference, ranking
from helpers.report import figures


def _long(matrix, models=None, units=None, metric=None):
    matrix = np.asarray(matrix, dtype=float)
    models = models or [f"m{j}" for j in range(matrix.shape[1])]
    units = units or [f"case{i}" for i in range(matrix.shape[0])]
    rows = [
        {"case_id": u, "model": m, "value": matrix[i, j]}
        for i, u in enumerate(units)
        for j, m in enumerate(models)
    ]
    frame = pd.DataFrame(rows)
    if metric is not None:
        frame["metric"] = metric
    return frame


def test_plot_critical_difference_draws_groups():
    matrix = np.tile([0.9, 0.8, 0.7], (5, 1))
    result = inference.nemenyi_test(_long(matrix, models=["a", "b", "c"]), higher_is_better=True)
    fig, ax = plt.subplots()
    try:
        returned = figures.plot_critical_difference(result, ax=ax)
        assert returned is ax
        # Group bars are the lines drawn with linewidth 3: two groups (a, b) and (b, c).
        assert sum(line.get_linewidth() == 3.0 for line in ax.lines) == 2
        texts = [t.get_text() for t in ax.texts]
        assert "a (1.00)" in texts and any(t.startswith("CD = 1.48") for t in texts)
    finally:
        plt.close(fig)
    with pytest.raises(TypeError, match="NemenyiResult"):
        figures.plot_critical_difference("x")


def test_plot_rank_blobs_and_other_figures():
    matrix = np.random.default_rng(0).normal(size=(9, 4))
    opened = []
    try:
        boot = bootstrap.bootstrap_ranks(matrix, higher_is_better=True, n_resamples=100)
        ax = figures.plot_rank_blobs(boot)
        opened.append(ax.figure)
        assert ax.get_ylim()[0] > ax.get_ylim()[1]  # rank 1 at the top
        assert len(ax.collections) == 2 * 4  # blobs and observed-rank cross per model
        ax = figures.plot_model_intervals(bootstrap.summarize_models(matrix, n_resamples=200))
        opened.append(ax.figure)
        ax = figures.plot_paired_differences(
            bootstrap.paired_comparisons(matrix, higher_is_better=True, n_resamples=200)
        )
        opened.append(ax.figure)
        assert len(ax.texts) == 6
        frame = _long(matrix)
        frame["fold"] = np.repeat([0, 1, 2], 12)
        ranks = ranking.ranks_by_group(frame, group="fold", higher_is_better=True)
        ax = figures.plot_rank_trajectories(ranks, group="fold")
        opened.append(ax.figure)
        assert len(ax.lines) == 4
    finally:
        for fig in opened:
            plt.close(fig)
    with pytest.raises(ValueError, match="summary must be a DataFrame"):
        figures.plot_model_intervals(pd.DataFrame({"model": ["a"]}))
