"""The small-data study's report: its statistics over images and folds, their tables, figures and the conclusion.

Everything here is a pure function of the cross-validation's tidy scores (``scores.csv``: one row per
``protocol, seed, fold, model, image, class`` with ``dice, iou, status``, written by the cross-validation) and of
the hyper-parameter search's best parameters; the statistics are those of the core (:mod:`helpers.stats.bootstrap`:
BCa intervals and pairwise comparisons; :mod:`helpers.stats.inference`: Friedman, Iman-Davenport and Nemenyi;
:mod:`helpers.stats.ranking`: rank volatility), the figures those of :mod:`helpers.report.figures`.

Units: an image's macro score (mean over foreground classes, then over seeds); a ranking occasion is one
``protocol, seed, fold``. Models that did not run are listed in ``model_status.csv`` and left out here.

Imports: pandas, numpy, matplotlib (figures), the statistics modules, :mod:`helpers.report.figures` and
:func:`helpers.studies.small_data.train.fold_scores` (the fold means of the scores table).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from helpers.stats.bootstrap import paired_comparisons, summarize_models
from helpers.report.figures import plot_friedman_nemenyi, plot_model_intervals, plot_rank_trajectories
from helpers.stats.inference import FriedmanNemenyi, friedman_then_nemenyi
from helpers.base.io import write_csv
from helpers.base.plots import get_axes, model_color, subplots
from helpers.stats.ranking import rank_agreement, rank_ranges, ranks_by_group
from helpers.studies.small_data.data import DATASET
from helpers.studies.small_data.train import fold_scores

__all__ = [
    "SmallDataStatistics", "image_scores", "summarize", "ci_overlap", "conclusion", "best_table", "search_statement",
    "plot_search_history", "plot_summary", "plot_critical_differences", "plot_rank_volatility", "plot_uncertainty_vs_error",
]


@dataclass(frozen=True)
class SmallDataStatistics:
    """The statistics of the chapter (:func:`summarize`); each table is also ``results/small_data/<field>.csv``.

    Attributes
    ----------
    summary : pandas.DataFrame
        Per protocol and model: mean over images with its BCa interval
        (:func:`helpers.stats.bootstrap.summarize_models`).
    pairs : pandas.DataFrame
        Per protocol, every model pair (:func:`helpers.stats.bootstrap.paired_comparisons`); empty with one model.
    friedman : pandas.DataFrame
        Per protocol: ``statistic, p_value, iman_davenport_p, n, k, verdict, nemenyi_run``.
    fold_ranks : pandas.DataFrame
        Each model's rank on every ``protocol, seed, fold`` (:func:`helpers.stats.ranking.ranks_by_group`).
    rank_ranges : pandas.DataFrame
        How far each model's rank moves over the folds (:func:`helpers.stats.ranking.rank_ranges`).
    rank_agreement : pandas.DataFrame
        Kendall's tau between the protocols' orders (:func:`helpers.stats.ranking.rank_agreement`).
    nemenyi : dict
        ``{protocol: FriedmanNemenyi}``: the gated post-hoc result per protocol (not written).
    """

    summary: pd.DataFrame
    pairs: pd.DataFrame
    friedman: pd.DataFrame
    fold_ranks: pd.DataFrame
    rank_ranges: pd.DataFrame
    rank_agreement: pd.DataFrame
    nemenyi: dict[str, FriedmanNemenyi]

    def tables(self) -> dict[str, pd.DataFrame]:
        """The written tables by file stem, in field order (``nemenyi`` is not a table)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "nemenyi"}


def image_scores(scores: pd.DataFrame, *, metric: str = "dice") -> pd.DataFrame:
    """Macro score per ``protocol, model, image``: the mean over seeds (``n_seeds``) of the image's test score;
    rows of models that did not run are dropped here (they are listed in ``model_status.csv``)."""
    ok = scores[(scores["class"] == "macro") & (scores["status"] == "ok")]
    return (ok.groupby(["protocol", "model", "image"], as_index=False, sort=False)
            .agg(value=(metric, "mean"), n_seeds=(metric, "count")))


def _image_statistics(per_image: pd.DataFrame, *, metric: str, seed: int, n_resamples: int):
    """Per protocol over images: intervals, pairwise comparisons and the gated Friedman/Nemenyi procedure."""
    summary, pairs, friedman, nemenyi = [], [], [], {}
    for protocol, part in per_image.groupby("protocol", sort=False):
        s = summarize_models(part, unit="image", seed=seed, n_resamples=n_resamples)
        summary.append(s.assign(protocol=protocol, metric=metric))
        if part["model"].nunique() >= 2:
            pairs.append(paired_comparisons(part, unit="image", higher_is_better=True, seed=seed,
                                            n_resamples=n_resamples).assign(protocol=protocol))
            gated = friedman_then_nemenyi(part, unit="image", higher_is_better=True)
            f = gated.friedman
            friedman.append({"protocol": protocol, "statistic": f.statistic, "p_value": f.p_value,
                             "iman_davenport_p": f.iman_davenport_p, "n": f.n, "k": f.k,
                             "verdict": gated.verdict, "nemenyi_run": gated.nemenyi is not None})
            nemenyi[protocol] = gated
    pairs_table = pd.concat(pairs, ignore_index=True) if pairs else pd.DataFrame()
    return pd.concat(summary, ignore_index=True), pairs_table, pd.DataFrame(friedman), nemenyi


def _rank_volatility(scores: pd.DataFrame, per_image: pd.DataFrame, *, metric: str):
    """Ranks per fold occasion, their ranges, and Kendall's tau between the protocols' orders."""
    folds = fold_scores(scores[scores["status"] == "ok"], metric=metric)
    ranks = (ranks_by_group(folds, group=["protocol", "seed", "fold"], higher_is_better=True)
             if folds["model"].nunique() >= 2 else pd.DataFrame())
    ranges = rank_ranges(ranks) if not ranks.empty else pd.DataFrame()
    agreement = (rank_agreement(per_image, protocol="protocol", higher_is_better=True)
                 if per_image["protocol"].nunique() >= 2 and per_image["model"].nunique() >= 2 else pd.DataFrame())
    return ranks, ranges, agreement


def summarize(ws, scores: pd.DataFrame, *, metric: str = "dice", seed: int = 0,
              n_resamples: int = 2000) -> SmallDataStatistics:
    """The statistics of the chapter, per protocol.

    Units are the images (each image's macro score, mean over seeds): mean with BCa 95% interval per model,
    Friedman test and Nemenyi critical difference over images, paired sign-flip comparisons with Holm; rank
    volatility over folds (every ``protocol, seed, fold`` is a ranking occasion, models ranked by the fold's
    mean score) and Kendall's tau between the protocols' orderings.

    Writes ``summary.csv``, ``pairs.csv``, ``friedman.csv``, ``fold_ranks.csv``, ``rank_ranges.csv`` and
    ``rank_agreement.csv``; returns them with the Nemenyi results (:class:`SmallDataStatistics`).
    """
    per_image = image_scores(scores, metric=metric)
    if per_image.empty:
        raise ValueError("scores has no model that ran: nothing to summarize")
    summary, pairs, friedman, nemenyi = _image_statistics(per_image, metric=metric, seed=seed,
                                                          n_resamples=n_resamples)
    ranks, ranges, agreement = _rank_volatility(scores, per_image, metric=metric)
    result = SmallDataStatistics(summary=summary, pairs=pairs, friedman=friedman, fold_ranks=ranks,
                                 rank_ranges=ranges, rank_agreement=agreement, nemenyi=nemenyi)
    for name, table in result.tables().items():
        write_csv(table, ws.results(DATASET) / f"{name}.csv")
    return result


def ci_overlap(summary: pd.DataFrame) -> pd.DataFrame:
    """Per protocol: the leader (best mean), the runner-up, and whether their intervals overlap."""
    rows = []
    for protocol, part in summary.groupby("protocol", sort=False):
        part = part.sort_values("mean", ascending=False)
        if len(part) < 2:
            continue
        a, b = part.iloc[0], part.iloc[1]
        rows.append({"protocol": protocol, "leader": a["model"], "runner_up": b["model"],
                     "gap": a["mean"] - b["mean"], "overlap": bool(a["ci_low"] <= b["ci_high"])})
    return pd.DataFrame(rows)


def conclusion(stats_out: SmallDataStatistics, *, alpha: float = 0.05) -> str:
    """A conclusion in Markdown that follows the numbers (leaders per protocol, interval overlap, Friedman,
    Holm-adjusted pairs, rank ranges), whatever they show."""
    summary = stats_out.summary
    lines = []
    overlap = ci_overlap(summary)
    leaders = dict(zip(overlap["protocol"], overlap["leader"]))
    for r in overlap.itertuples():
        lines.append(f"- **{r.protocol}**: `{r.leader}` leads `{r.runner_up}` by {r.gap:.3f} macro Dice; their 95% "
                     f"intervals {'overlap' if r.overlap else 'do not overlap'}.")
    if len(set(leaders.values())) > 1:
        lines.append("- The leader by mean macro Dice **changes with the protocol** ("
                     + ", ".join(f"{p}: `{m}`" for p, m in leaders.items())
                     + "): the ranking is a property of the split.")
    elif leaders:
        lines.append(f"- Both protocols name the same leader by mean macro Dice (`{next(iter(leaders.values()))}`); "
                     "the critical-difference diagram orders by mean rank over images, which can differ.")
    for r in stats_out.friedman.itertuples():
        verdict = "rejects" if r.iman_davenport_p <= alpha else "does not reject"
        lines.append(f"- Friedman ({r.protocol}, N = {r.n} images, k = {r.k} models): Iman-Davenport p = "
                     f"{r.iman_davenport_p:.3f}, {verdict} equal mean ranks at {alpha}"
                     + ("; Nemenyi post-hoc run." if r.iman_davenport_p <= alpha else "; no post-hoc test."))
    pairs = stats_out.pairs
    if not pairs.empty:
        n_sig = int(pairs["significant"].sum())
        lines.append(f"- Paired sign-flip tests with Holm: {n_sig} of {len(pairs)} model pairs differ at {alpha} "
                     f"(smallest attainable Holm-adjusted p: {pairs['min_attainable_p_holm'].min():.3f}).")
    ranges = stats_out.rank_ranges
    if not ranges.empty:
        moving = ranges[ranges["rank_range"] > 0]
        lines.append(f"- Across folds and seeds, {len(moving)} of {len(ranges)} models change rank (largest range "
                     f"{ranges['rank_range'].max():.1f} places).")
    return "\n".join(lines)


def best_table(best: dict) -> pd.DataFrame:
    """One row per model of :func:`run_hpo`'s ``best``: ``status``, best validation macro Dice (``value``),
    the best trial and its parameters (NaN for models that did not run)."""
    rows = []
    for model, b in best.items():
        rows.append({"model": model, "status": b.get("status"), "value": b.get("value", np.nan),
                     "trial": b.get("trial", np.nan), **b.get("params", {})})
    return pd.DataFrame(rows).set_index("model")


def search_statement(best: dict) -> str:
    """Markdown lines, one per model of :func:`run_hpo`'s ``best``: the chosen configuration with its objective
    and the trial that found it (a model-based or a start-up trial), or that the search failed (best objective
    below the floor: the defaults are used instead) or could not run."""
    lines = []
    for model, b in best.items():
        status = str(b.get("status"))
        if "value" not in b:
            lines.append(f"- **{model}**: not searched ({status}).")
            continue
        phase = "a start-up (random) trial" if b["trial"] < b.get("n_startup", 0) else "a model-based trial"
        if status == "ok":
            params = ", ".join(f"{k} = {v:.3g}" for k, v in b["params"].items())
            lines.append(f"- **{model}**: best validation macro Dice {b['value']:.3f} (trial {b['trial']} of "
                         f"{b['n_trials']}, {phase}); chosen: {params}.")
        else:
            lines.append(f"- **{model}**: the search failed: its best validation macro Dice {b['value']:.3f} stays "
                         f"below the floor {b.get('floor', np.nan):.2f}, so its configuration is not used; "
                         "cross-validation trains it with the default parameters.")
    return "\n".join(lines)


def plot_search_history(trials: pd.DataFrame):
    """Each model's search: the objective of every trial (open markers: pruned, at their last reported value;
    grey band: the sampler's random start-up) and the best so far over completed trials."""
    models = list(pd.unique(trials["model"]))
    if not models:
        raise ValueError("no trials to plot")
    fig, axes = subplots(1, len(models), figsize=(3.2 * len(models), 2.8), squeeze=False, sharey=True)
    for i, (ax, model) in enumerate(zip(axes[0], models)):
        part = trials[trials["model"] == model].sort_values("trial")
        color = model_color(model, i)
        startup = part.loc[part["phase"] == "start-up", "trial"] if "phase" in part else pd.Series(dtype=float)
        if len(startup):
            ax.axvspan(-0.5, startup.max() + 0.5, color="0.92", zorder=0, label="start-up (random)")
        done = part["state"] == "complete"
        ax.scatter(part.loc[done, "trial"], part.loc[done, "value"], s=16, color=color, label="complete")
        ax.scatter(part.loc[~done, "trial"], part.loc[~done, "value"], s=16, facecolors="none", edgecolors=color,
                   label="pruned")
        running = part["value"].where(done).cummax()
        ax.step(part["trial"], running, where="post", color=color, lw=1.2, label="best so far")
        ax.set_title(model, fontsize=9)
        ax.set_xlabel("trial")
    axes[0, 0].set_ylabel("validation macro Dice")
    axes[0, 0].legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    return fig


def plot_summary(stats_out: SmallDataStatistics, *, metric: str = "macro Dice"):
    """Each model's mean score with its BCa interval, one panel per protocol
    (:func:`helpers.report.figures.plot_model_intervals`)."""
    summary = stats_out.summary
    protocols = list(pd.unique(summary["protocol"]))
    fig, axes = subplots(1, len(protocols), figsize=(5.2 * len(protocols), 0.5 * summary["model"].nunique() + 1.4),
                             squeeze=False, sharex=True)  # one scale, so the protocols compare at a glance
    for ax, protocol in zip(axes[0], protocols):
        plot_model_intervals(summary[summary["protocol"] == protocol].reset_index(drop=True), ax=ax, metric=metric,
                             title=protocol)
    fig.tight_layout()
    return fig


def plot_critical_differences(stats_out: SmallDataStatistics):
    """Critical-difference diagrams (Nemenyi over images), one panel per protocol; greyed with "no difference
    detected" where the Friedman (Iman-Davenport) test does not reject."""
    nemenyi = stats_out.nemenyi
    if not nemenyi:
        raise ValueError("no Nemenyi result: fewer than two models ran")
    fig, axes = subplots(len(nemenyi), 1, figsize=(6, 2.2 * len(nemenyi)), squeeze=False)
    for ax, (protocol, result) in zip(axes[:, 0], nemenyi.items()):
        plot_friedman_nemenyi(result, ax=ax, title=f"{protocol} (N = {result.friedman.n} images)")
    fig.tight_layout()
    return fig


def plot_rank_volatility(stats_out: SmallDataStatistics):
    """Each model's rank on every fold (every ``protocol, seed, fold`` is a ranking occasion)."""
    ranks = stats_out.fold_ranks.copy()
    if ranks.empty:
        raise ValueError("no fold ranks: fewer than two models ran")
    ranks["occasion"] = [f"{p} s{s} f{f}" for p, s, f in zip(ranks["protocol"], ranks["seed"], ranks["fold"])]
    ax = plot_rank_trajectories(ranks, group="occasion", title="rank of each model on each fold")
    ax.tick_params(axis="x", labelrotation=90, labelsize=6)
    return ax.figure


def plot_uncertainty_vs_error(table: pd.DataFrame, *, ax=None):
    """Mean MC-dropout entropy on wrong vs right pixels, one point per model and image (above the diagonal:
    errors are more uncertain)."""
    fig, ax = get_axes(ax, figsize=(4, 3.5))
    for i, (model, part) in enumerate(table.groupby("model", sort=False)):
        ax.scatter(part["mean_uncertainty_correct"], part["mean_uncertainty_error"], s=14, label=model,
                   color=model_color(model, i))
    hi = float(np.nanmax(table[["mean_uncertainty_correct", "mean_uncertainty_error"]].to_numpy()))
    ax.plot([0, hi], [0, hi], color="0.6", lw=0.8, ls="--")
    ax.set_xlabel("mean entropy, correct pixels (nats)")
    ax.set_ylabel("mean entropy, wrong pixels (nats)")
    ax.legend(fontsize=7)
    return ax
