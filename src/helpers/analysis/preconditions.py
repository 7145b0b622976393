"""The precondition of the study's claims, checked per dataset before any reversal is read.

Both papers make claims about models that are *good and close*: models tied on Dice that differ on small-lesion
boundaries (paper 000), and competent models whose ranking at N = 9 is split noise (paper 002). A reversal between
a model that finds the small lesions and one that misses them, or a "tie" among models still learning, is not
evidence for either claim. So, per dataset, before the reversal, bootstrap and cross-dataset chapters:

Conditions (each a :class:`Thresholds` field; defaults are the methods page's)
------------------------------------------------------------------------------
1. **Competent**: every model's overall Dice (the ``overall`` Dice of :func:`helpers.analysis.aggregate`: the mean
   per-case Dice over the test cases that have a reference lesion; tumour-free cases count as test cases below,
   not in this mean) is at least ``min_dice`` (0.75), and its Q1 lesion recall (detected / all
   reference lesions of the smallest size quartile, pooled over test cases, as ``lesion_recall`` in stratum Q1 of
   :func:`helpers.analysis.aggregate`) is at least ``min_q1_recall`` (0.8).
2. **Near-tied**: the top ``top_k`` (3) models by overall Dice are *equivalent* on Dice: for every pair of them
   the paired sign-flip TOST over the test cases (:func:`helpers.stats.inference.signflip_equivalence`) rejects
   a mean difference of ``tie_margin`` (0.02 Dice) or more at ``alpha`` (0.05); the paired-t TOST and the
   smallest margin at which each pair is equivalent are shown beside (:func:`helpers.analysis.verdicts
   .equivalence_table`). A spread under a margin is not a test of equivalence; this is. Seed-to-seed variation,
   when several seeds were trained, is reported beside the between-model spread, never used to widen the margin
   (more seed noise must not make a tie easier to reach).
3. **Enough evidence**: at least ``min_cases`` (20) test cases and ``min_q1_lesions`` (20) Q1 lesions in the
   *common* set (the lesions every model detected: the set the boundary comparisons use), with the number of Q1
   reference lesions beside.

A condition that cannot be evaluated (no Q1 lesion, fewer than ``top_k`` models) fails, with the reason.

Inputs are the evaluation tables of :mod:`helpers.evaluation` (``results/<dataset>/per_case_metrics.csv`` and
``per_lesion_metrics.csv``, written by the evaluation chapter; quartiles as assigned there) and, for the seed
spread, ``results/<dataset>/training_summary.csv`` (written by the training chapter).

Use in a chapter (one cell, at the top)::

    from helpers import preconditions
    preconditions.show(ctx, dataset)                       # a per-dataset chapter
    preconditions.show(ctx, ["wmh", "lits", "idrid"])      # the cross-dataset chapter
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from helpers.analysis import aggregate, analysis_units
from helpers.analysis.verdicts import dice_by_case, equivalence_table
from helpers.analysis.units import MODEL_LABELS
from helpers.data.datasets import display_name

__all__ = [
    "PER_CASE_FILE", "PER_LESION_FILE", "TRAINING_SUMMARY_FILE", "SMALL", "NOT_MET", "MET", "Thresholds",
    "Precondition", "model_table", "seed_spread", "evaluate", "check", "check_all", "to_markdown", "show",
]

PER_CASE_FILE = "per_case_metrics.csv"  # the names of helpers.evaluation (not imported: keeps this module light)
PER_LESION_FILE = "per_lesion_metrics.csv"
TRAINING_SUMMARY_FILE = "training_summary.csv"
SMALL = "Q1"
NOT_MET = "Precondition not met"
MET = "Precondition met"


@dataclass(frozen=True)
class Thresholds:
    """The stated thresholds of the precondition (see the module docstring); a profile may override each."""

    min_dice: float = 0.75
    min_q1_recall: float = 0.8
    tie_margin: float = 0.02
    alpha: float = 0.05
    top_k: int = 3
    min_cases: int = 20
    min_q1_lesions: int = 20

    def __post_init__(self):
        for name in ("min_dice", "min_q1_recall", "tie_margin", "alpha"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value <= 1):
                raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
        for name, low in (("top_k", 2), ("min_cases", 0), ("min_q1_lesions", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


@dataclass(frozen=True)
class Precondition:
    """The verdict for one dataset.

    Attributes
    ----------
    dataset : str
    met : bool
        True when no condition failed.
    failed : tuple of str
        One plain sentence per failed condition (empty when met).
    models : pandas.DataFrame
        One row per model, best Dice first: ``model, dice, q1_recall, q1_detected, q1_lesions, competent``.
    top_models : tuple of str
        The ``top_k`` models by overall Dice.
    top_spread : float
        Their Dice spread (NaN with fewer than ``top_k`` models).
    seed_spread : float or None
        The seed-to-seed spread of the top models' Dice (None: one seed), reported beside the between-model spread.
    seed_spread_source : str or None
        ``"test Dice"`` or ``"validation Dice"``.
    equivalence : pandas.DataFrame
        The top models' pairwise equivalence tests at ``tie_margin`` (:func:`helpers.analysis.verdicts
        .equivalence_table`).
    smallest_margin : float
        The largest, over the top pairs, of the smallest margin at which the pair is equivalent (NaN: untested).
    n_cases : int
        Test cases.
    n_q1_lesions : int
        Q1 reference lesions.
    n_q1_common : int
        Q1 lesions every model detected (the common set the boundary comparisons use).
    thresholds : Thresholds
    """

    dataset: str
    met: bool
    failed: tuple[str, ...]
    models: pd.DataFrame = field(repr=False, compare=False)
    top_models: tuple[str, ...]
    top_spread: float
    seed_spread: float | None
    seed_spread_source: str | None
    equivalence: pd.DataFrame = field(repr=False, compare=False)
    smallest_margin: float
    n_cases: int
    n_q1_lesions: int
    n_q1_common: int
    thresholds: Thresholds

    def as_row(self) -> dict:
        """A one-row summary (for the cross-dataset table)."""
        return {"dataset": self.dataset, "met": self.met, "n_cases": self.n_cases, "n_q1_lesions": self.n_q1_lesions,
                "min_dice": float(self.models["dice"].min()) if len(self.models) else math.nan,
                "min_q1_recall": float(self.models["q1_recall"].min()) if len(self.models) else math.nan,
                "n_q1_common": self.n_q1_common, "top_spread": self.top_spread,
                "smallest_margin": self.smallest_margin, "tie_margin": self.thresholds.tie_margin,
                "seed_spread": self.seed_spread,
                "failed": "; ".join(self.failed)}

    def to_markdown(self) -> str:
        """The verdict as markdown: a headline (``Precondition met`` / ``Precondition not met``), the failed
        conditions, and the per-model table."""
        t = self.thresholds
        head = MET if self.met else NOT_MET
        lines = [f"**{head} for {display_name(self.dataset)}.**"]
        if self.met:
            lines.append(f"Every model reaches overall Dice >= {t.min_dice:g} and Q1 lesion recall >= "
                         f"{t.min_q1_recall:g}; the top {t.top_k} models are equivalent on Dice within "
                         f"±{t.tie_margin:g} (paired sign-flip TOST over {self.n_cases} test cases, every pair); "
                         f"{self.n_q1_common} of {self.n_q1_lesions} Q1 lesions were found by every model. The "
                         "findings below test the papers' claims on models that are good and close.")
        else:
            lines.append("The findings below do not test the papers' claims, which are about models that are "
                         "competent and near-tied on Dice. Failed conditions:")
            lines += [f"- {reason}" for reason in self.failed]
        if len(self.models):
            lines += ["", "| model | overall Dice | Q1 recall | Q1 detected / lesions | competent |",
                      "|---|---:|---:|---:|:---:|"]
            for row in self.models.itertuples(index=False):
                lines.append(f"| {MODEL_LABELS.get(row.model, row.model)} | {row.dice:.3f} | {_fmt(row.q1_recall)} | "
                             f"{row.q1_detected} / {row.q1_lesions} | {'yes' if row.competent else 'no'} |")
        seeds = ("one training seed: verdicts concern the trained weights" if self.seed_spread is None else
                 f"seed-to-seed spread of the top models' Dice {self.seed_spread:.3f} ({self.seed_spread_source}), "
                 "beside the between-model spread, not used in the test")
        spread = "n/a" if math.isnan(self.top_spread) else f"{self.top_spread:.3f}"
        smallest = "n/a" if math.isnan(self.smallest_margin) else f"±{self.smallest_margin:.3f}"
        lines += ["", f"Top-{t.top_k} Dice spread {spread}; smallest margin at which every top pair is equivalent "
                  f"{smallest} (tested margin ±{t.tie_margin:g}); {seeds}."]
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        return self.to_markdown()


def _fmt(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks the columns {missing} (found {list(frame.columns)})")


def model_table(per_case: pd.DataFrame, per_lesion: pd.DataFrame) -> pd.DataFrame:
    """Per model: overall Dice and Q1 recall, the book's own aggregates (:func:`helpers.analysis.analysis_units`
    and :func:`helpers.analysis.aggregate`: the overall Dice is the mean per-case Dice over the cases with a
    reference lesion; the Q1 recall is pooled over the Q1 reference lesions) and the counts behind them; sorted by
    Dice, best first (ties by name). ``competent`` is filled in by :func:`evaluate`."""
    _require(per_case, ["model", "case_id", "metric", "value"], "per_case")
    _require(per_lesion, ["model", "case_id", "lesion_id", "kind", "metric", "value", "quartile"], "per_lesion")
    units = analysis_units(per_case, per_lesion)
    overall = aggregate(units).query("stratum == 'overall' and metric == 'dice'")
    dice = overall.drop_duplicates("model").set_index("model")["value"].rename("dice")
    q1 = units[(units["stratum"] == SMALL) & (units["metric"] == "lesion_recall")]
    detected = q1["value"].groupby(q1["model"])
    table = pd.DataFrame({"dice": dice})
    table["q1_detected"] = detected.sum().reindex(table.index).fillna(0).astype(int)
    table["q1_lesions"] = detected.size().reindex(table.index).fillna(0).astype(int)
    with np.errstate(invalid="ignore", divide="ignore"):
        table["q1_recall"] = np.where(table["q1_lesions"] > 0, table["q1_detected"] / table["q1_lesions"].clip(lower=1),
                                      np.nan)
    table = table.rename_axis("model").reset_index()
    table = table.sort_values(["dice", "model"], ascending=[False, True], kind="mergesort").reset_index(drop=True)
    return table[["model", "dice", "q1_recall", "q1_detected", "q1_lesions"]]


def seed_spread(per_seed: pd.DataFrame | None, models: Sequence[str], *, column: str = "dice") -> float | None:
    """The largest, over ``models``, of the range (max - min) of ``column`` across seeds; None when no model has more
    than one seed (or ``per_seed`` is None). ``per_seed`` has one row per model and seed (``model, seed, <column>``)."""
    if per_seed is None or len(per_seed) == 0:
        return None
    _require(per_seed, ["model", "seed", column], "per_seed")
    sub = per_seed[per_seed["model"].isin(list(models))]
    values = pd.to_numeric(sub[column], errors="raise")
    groups = values.groupby(sub["model"])
    counts = sub.groupby("model")["seed"].nunique()
    ranges = (groups.max() - groups.min())[counts > 1]
    return float(ranges.max()) if len(ranges) else None


def evaluate(dataset: str, per_case: pd.DataFrame, per_lesion: pd.DataFrame, *,
             thresholds: Thresholds = Thresholds(), per_seed: pd.DataFrame | None = None,
             seed_source: str = "test Dice", seed_column: str = "dice") -> Precondition:
    """The verdict from the evaluation tables (see the module docstring for the conditions).

    ``per_seed`` (optional): one row per model and seed with ``seed_column`` (test Dice per seed, or the training
    summary's ``best_val_dice`` with ``seed_source="validation Dice"``); its spread is reported, never used to widen
    the equivalence margin.
    """
    if not isinstance(thresholds, Thresholds):
        raise TypeError(f"thresholds must be a Thresholds, got {type(thresholds).__name__}")
    t = thresholds
    table = model_table(per_case, per_lesion)
    table["competent"] = (table["dice"] >= t.min_dice) & (table["q1_recall"].fillna(-1.0) >= t.min_q1_recall)
    failed: list[str] = []
    n_cases = int(per_case.loc[per_case["metric"] == "dice", "case_id"].nunique())
    n_q1 = int(table["q1_lesions"].max()) if len(table) else 0
    units = analysis_units(per_case, per_lesion, lesion_set="common")
    q1_common = units[(units["stratum"] == SMALL) & (units["metric"] == "dice")]
    n_q1_common = int(q1_common.groupby("model").size().min()) if len(q1_common) else 0
    if len(table) == 0:
        failed.append("no model was evaluated")
    for row in table.itertuples(index=False):
        if row.dice < t.min_dice:
            failed.append(f"{row.model}: overall Dice {row.dice:.3f} < {t.min_dice:g}")
        if row.q1_lesions == 0:
            failed.append(f"{row.model}: no Q1 reference lesion, Q1 recall undefined")
        elif row.q1_recall < t.min_q1_recall:
            failed.append(f"{row.model}: Q1 lesion recall {row.q1_recall:.3f} ({row.q1_detected} of {row.q1_lesions}) "
                          f"< {t.min_q1_recall:g}")
    top = tuple(table["model"].head(t.top_k))
    spread_seeds = seed_spread(per_seed, top, column=seed_column)
    equivalence = pd.DataFrame()
    smallest = math.nan
    if len(top) < t.top_k:
        top_spread = math.nan
        failed.append(f"only {len(top)} model(s) evaluated: no top {t.top_k} to compare")
    else:
        top_dice = table["dice"].head(t.top_k)
        top_spread = float(top_dice.max() - top_dice.min())
        dice = dice_by_case(units, top)
        equivalence = equivalence_table(dice, margins=(t.tie_margin,), alpha=t.alpha)
        smallest = float(equivalence["smallest_margin"].max()) if "smallest_margin" in equivalence else math.nan
        if len(dice) < 2 or not bool(equivalence["equivalent"].all()):
            bad = equivalence[~equivalence["equivalent"]] if len(equivalence) else equivalence
            pairs = ", ".join(f"{r.model_a}/{r.model_b} (p = {r.p_signflip:.3f})" for r in bad.itertuples()
                              if hasattr(r, "p_signflip"))
            failed.append(f"top {t.top_k} models ({', '.join(top)}) not shown equivalent on Dice within "
                          f"±{t.tie_margin:g} (sign-flip TOST over {len(dice)} cases at {t.alpha:g}"
                          + (f"; not equivalent: {pairs}" if pairs else "") + ")")
    if n_cases < t.min_cases:
        failed.append(f"{n_cases} test cases < {t.min_cases}")
    if n_q1_common < t.min_q1_lesions:
        failed.append(f"{n_q1_common} Q1 lesions in the common set (found by every model; {n_q1} Q1 reference "
                      f"lesions) < {t.min_q1_lesions}")
    return Precondition(dataset=dataset, met=not failed, failed=tuple(failed), models=table, top_models=top,
                        top_spread=top_spread, seed_spread=spread_seeds,
                        seed_spread_source=None if spread_seeds is None else seed_source, equivalence=equivalence,
                        smallest_margin=smallest, n_cases=n_cases, n_q1_lesions=n_q1, n_q1_common=n_q1_common,
                        thresholds=t)


def _results_dir(where, dataset: str) -> Path:
    """``results/<dataset>`` of a study context (``ctx.ws``), a :class:`helpers.base.paths.Workspace` or a path."""
    ws = getattr(where, "ws", where)
    if hasattr(ws, "results"):
        return Path(ws.results(dataset))
    return Path(where) / "results" / dataset


def check(where, dataset: str, *, thresholds: Thresholds | None = None, **overrides) -> Precondition:
    """Read ``results/<dataset>/per_case_metrics.csv``, ``per_lesion_metrics.csv`` and (for the seed spread, when
    more than one training seed ran) ``training_summary.csv`` below ``where`` (a study context, a workspace or a
    workspace folder) and return the verdict. ``overrides`` set :class:`Thresholds` fields (e.g. from a profile).
    """
    thresholds = Thresholds(**{**asdict(thresholds or Thresholds()), **overrides})
    results = _results_dir(where, dataset)
    paths = [results / PER_CASE_FILE, results / PER_LESION_FILE]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run the evaluation chapter (03) for {dataset!r} first")
    per_case, per_lesion = (pd.read_csv(p, keep_default_na=True) for p in paths)
    per_seed, source, column = None, "validation Dice", "best_val_dice"
    summary = results / TRAINING_SUMMARY_FILE
    if summary.is_file():
        frame = pd.read_csv(summary)
        if {"model", "seed", column} <= set(frame.columns) and (frame.groupby("model")["seed"].nunique() > 1).any():
            per_seed = frame
    return evaluate(dataset, per_case, per_lesion, thresholds=thresholds, per_seed=per_seed, seed_source=source,
                    seed_column=column)


def check_all(where, datasets: Sequence[str], **kwargs) -> list[Precondition]:
    """:func:`check` for each dataset."""
    return [check(where, d, **kwargs) for d in datasets]


def to_markdown(verdicts) -> str:
    """Markdown of one verdict or of several (the cross-dataset chapter: an overall headline, then each)."""
    if isinstance(verdicts, Precondition):
        return verdicts.to_markdown()
    verdicts = list(verdicts)
    failing = [display_name(v.dataset) for v in verdicts if not v.met]
    names = ", ".join(display_name(v.dataset) for v in verdicts)
    head = (f"**{MET} on every dataset ({names}).**" if not failing else
            f"**{NOT_MET} on {', '.join(failing)}:** the cross-dataset findings below do not test the papers' "
            "claims there.")
    return "\n\n".join([head, *(v.to_markdown() for v in verdicts)])


def show(where, datasets, **kwargs):
    """Check and display the verdict as markdown in a notebook (returns the verdict(s))."""
    from IPython.display import Markdown, display  # lazy: IPython is needed only where a notebook displays

    if isinstance(datasets, str):
        verdict = check(where, datasets, **kwargs)
    else:
        verdict = check_all(where, datasets, **kwargs)
    display(Markdown(to_markdown(verdict)))
    return verdict
