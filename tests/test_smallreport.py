"""Tests of helpers.studies.small_data.report: the small-data study's statistics, tables, figures and conclusion."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from helpers.studies.small_data import report as sr
from helpers.base.paths import Workspace


def test_summarize_and_conclusion_follow_the_numbers(tmp_path, macro_scores):
    rng = np.random.default_rng(0)
    base = rng.uniform(0.6, 0.8, 9)
    # "a" beats "b" by 0.1 on every image under both protocols; "c" equals "b" minus 0.05.
    values = {}
    for protocol in ("loocv", "3fold"):
        values[(protocol, "a")] = base + 0.1
        values[(protocol, "b")] = base
        values[(protocol, "c")] = base - 0.05
    ws = Workspace(tmp_path)
    out = sr.summarize(ws, macro_scores(values), n_resamples=200)
    summary = out.summary.set_index(["protocol", "model"])
    assert summary.loc[("loocv", "a"), "mean"] == pytest.approx(base.mean() + 0.1)
    assert summary.loc[("loocv", "a"), "n"] == 9
    assert (ws.results("small_data") / "summary.csv").exists()
    overlap = sr.ci_overlap(out.summary)
    assert list(overlap["leader"]) == ["a", "a"] and list(overlap["runner_up"]) == ["b", "b"]
    text = sr.conclusion(out)
    assert "Both protocols name the same leader by mean macro Dice (`a`)" in text
    # Same order on all 9 images: Friedman chi2 = 12/(9*3*4) * 9^2 * (1 + 4 + 9) - 3*9*4 = 18, p = e^-9.
    assert out.friedman["statistic"].iloc[0] == pytest.approx(18.0)
    assert "rejects equal mean ranks" in text


def test_summarize_writes_every_table_it_returns(tmp_path, macro_scores):
    base = np.linspace(0.6, 0.8, 9)
    values = {("loocv", "a"): base + 0.01, ("loocv", "b"): base, ("3fold", "a"): base, ("3fold", "b"): base + 0.01}
    ws = Workspace(tmp_path)
    out = sr.summarize(ws, macro_scores(values), n_resamples=50)
    assert list(out.tables()) == ["summary", "pairs", "friedman", "fold_ranks", "rank_ranges", "rank_agreement"]
    for name in out.tables():
        assert (ws.results("small_data") / f"{name}.csv").is_file()
    assert set(out.nemenyi) == {"loocv", "3fold"}
    # Each protocol ranks the models oppositely on every image: Kendall's tau between the protocols is -1.
    assert out.rank_agreement["kendall_tau"].tolist() == [-1.0]


def test_conclusion_reports_a_changing_leader(tmp_path, macro_scores):
    base = np.linspace(0.6, 0.8, 9)
    values = {("loocv", "a"): base + 0.01, ("loocv", "b"): base, ("3fold", "a"): base, ("3fold", "b"): base + 0.01}
    out = sr.summarize(Workspace(tmp_path), macro_scores(values), n_resamples=200)
    assert "The leader by mean macro Dice **changes with the protocol** (loocv: `a`, 3fold: `b`)" in sr.conclusion(out)


def test_image_scores_drop_not_run_rows(macro_scores):
    # As the cross-validation writes them: a model that ran ("ok") and one that did not (NaN, with its reason).
    scores = macro_scores({("loocv", "segformer"): [0.5, 0.7]})
    not_run = scores.assign(model="medsam", dice=np.nan, iou=np.nan, status="not run: no checkpoint given")
    per_image = sr.image_scores(pd.concat([scores, not_run], ignore_index=True))
    assert set(per_image["model"]) == {"segformer"}
    assert (per_image["n_seeds"] == 1).all()
    assert per_image["value"].tolist() == [0.5, 0.7]


def test_image_scores_average_over_seeds(macro_scores):
    # Image v0 scored 0.4 under seed 0 and 0.6 under seed 1: its macro score is 0.5 over n_seeds = 2.
    scores = pd.concat([macro_scores({("3fold", "a"): [0.4]}), macro_scores({("3fold", "a"): [0.6]}).assign(seed=1)])
    per_image = sr.image_scores(scores)
    assert per_image[["value", "n_seeds"]].to_numpy().tolist() == [[0.5, 2]]


def test_best_table_lists_models_that_did_not_run():
    best = {"unet": {"status": "ok", "value": 0.8, "trial": 3, "params": {"lr": 0.001}},
            "medsam": {"model": "medsam", "status": "not run: no checkpoint given"}}
    table = sr.best_table(best)
    assert table.loc["unet", "value"] == 0.8 and table.loc["unet", "lr"] == 0.001
    assert np.isnan(table.loc["medsam", "value"]) and np.isnan(table.loc["medsam", "lr"])


def test_report_figures_render(tmp_path, macro_scores):
    base = np.linspace(0.6, 0.8, 9)
    values = {(p, m): base + d for p in ("loocv", "3fold") for m, d in (("a", 0.1), ("b", 0.0), ("c", -0.05))}
    out = sr.summarize(Workspace(tmp_path), macro_scores(values), n_resamples=50)
    fig = sr.plot_summary(out)
    assert len(fig.axes) == 2  # one panel per protocol
    plt.close(fig)
    fig = sr.plot_critical_differences(out)
    assert len(fig.axes) == 2
    plt.close(fig)
    fig = sr.plot_rank_volatility(out)
    assert len(fig.axes[0].lines) == 3  # one line per model
    plt.close(fig)
    table = pd.DataFrame({"model": ["a", "a", "b"], "mean_uncertainty_correct": [0.1, 0.2, 0.1],
                          "mean_uncertainty_error": [0.5, 0.4, 0.3]})
    ax = sr.plot_uncertainty_vs_error(table)
    assert len(ax.collections) == 2  # one scatter per model
    plt.close(ax.figure)
