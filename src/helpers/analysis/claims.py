"""The claims table: one row per claim of each paper, dataset and (where a claim is per metric) metric, with the
verdict the study's evidence allows and the evidence it rests on, and the one sentence each row renders to.

A verdict is one of three (:data:`VERDICTS`): ``supported`` (our data support the paper's claim), ``not supported``
(our data were able to show it and do not) or ``cannot be assessed`` (with the reason: an undefined denominator,
too few cases, the precondition not met, a single model). :func:`claim_row` refuses a row that says supported or
not supported with fewer cases than the stated minimum or with an undefined value, so no page can state a verdict
its evidence does not carry.

The registry :data:`CLAIMS` names each claim once: its study, the section (chapter) that shows it, the paper's
statement and the paper's value. The rows are computed by :mod:`helpers.analysis.verdicts` (first study) and
:mod:`helpers.studies.small_data.claims` (second study), each family Holm-adjusted where it is computed
(:func:`holm_within_study`); each dataset's rows are saved by its stratification section
(``results/<dataset>/claims.csv``), the first study's complete table by the cross-dataset section and the second
study's by the small-data section, the method's checks by the failure-mode laboratory (:func:`study_file`), and :func:`assemble` (called by the runner after the
sections) writes the run's ``results/claims.csv``. :func:`sentence` is the one place a row becomes words: the
chapters' finding boxes and the cross-dataset scorecard call it, so a page cannot contradict its table.

Imports :mod:`helpers.base.io`, :mod:`helpers.data.datasets` (display names) and
:func:`helpers.stats.inference.holm_adjust`; never matplotlib.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from helpers.base.io import write_csv
from helpers.data.datasets import DATASETS, display_name
from helpers.stats.inference import holm_adjust

__all__ = [
    "SUPPORTED", "NOT_SUPPORTED", "CANNOT", "VERDICTS", "CLAIM_COLUMNS", "EXTRA_COLUMNS", "ClaimSpec", "CLAIMS",
    "FIRST_STUDY", "SECOND_STUDY", "METHOD", "DATA_SOURCES", "claim_row", "claims_frame", "holm_within_study",
    "sentence", "rows_for", "study_file", "assemble", "CLAIMS_FILE", "PAGE_FILES", "page_file",
]

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
CANNOT = "cannot be assessed"
#: The only verdicts a claim can end in.
VERDICTS = (SUPPORTED, NOT_SUPPORTED, CANNOT)

#: The studies (the two papers) and the checks of the method itself (the failure-mode laboratory).
FIRST_STUDY = "small_lesions"
SECOND_STUDY = "small_data"
METHOD = "method"

#: What produced a row's data: a verdict on stand-ins tests the method, not the paper.
DATA_SOURCES = {"synthetic": "synthetic stand-in", "real": "real data", "user": "the user's data",
                "constructed": "constructed predictions"}

#: The columns of ``results/claims.csv``, in order.
CLAIM_COLUMNS = ("study", "dataset", "data_source", "claim", "paper_value", "our_value", "verdict", "n_cases",
                 "n_lesions", "n_seeds", "p_holm", "detectable_difference", "reason")
#: Further columns: the registry key, the metric a per-metric claim concerns, the section that shows it and the
#: raw (unadjusted) p-value the Holm adjustment starts from.
EXTRA_COLUMNS = ("claim_id", "metric", "section", "p_raw")

#: The name of the assembled table (in the workspace's ``results/``).
CLAIMS_FILE = "claims.csv"


@dataclass(frozen=True)
class ClaimSpec:
    """One claim of a paper: ``study``, the ``section`` whose page shows it, the ``statement`` (``{metric}`` is
    filled in for per-metric claims) and the paper's value (``{metric}`` likewise, or per metric in
    ``paper_values``)."""

    key: str
    study: str
    section: str
    statement: str
    paper_value: str = ""
    per_metric: bool = False
    paper_values: tuple[tuple[str, str], ...] = ()

    def text(self, metric: str | None = None) -> str:
        return self.statement.format(metric=_metric_label(metric)) if self.per_metric else self.statement

    def paper(self, metric: str | None = None) -> str:
        values = dict(self.paper_values)
        if metric is not None and metric in values:
            return values[metric]
        return self.paper_value


_METRIC_LABELS = {"dice": "Dice", "hd95": "HD95", "assd": "ASSD", "masd": "MASD", "contour_f1": "contour F1",
                  "nsd": "NSD", "lesion_recall": "lesion recall"}


def _metric_label(metric: str | None) -> str:
    return _METRIC_LABELS.get(metric or "", metric or "")


_SPECS = (
    ClaimSpec("top3_dice_equivalent", FIRST_STUDY, "stratification",
              "The top three models are equivalent on Dice (paired equivalence test over cases)",
              "Dice 0.842-0.851 (spread 0.009)"),
    ClaimSpec("q1_spread_wider", FIRST_STUDY, "stratification",
              "The {metric} spread among the top three models is wider in Q1 than over all lesions",
              per_metric=True,
              paper_values=(("hd95", "14.7 % overall, 41.3 % in Q1"), ("assd", "up to 36.8 % in Q1"),
                            ("contour_f1", "up to 0.112 in Q1"))),
    ClaimSpec("dice_leader_not_boundary_leader_q1", FIRST_STUDY, "reversals",
              "In Q1 the Dice leader is not the {metric} leader", per_metric=True,
              paper_values=(("hd95", "Dice leader third on HD95 in 2 of 3 datasets"),)),
    ClaimSpec("reversal_sign_stable", FIRST_STUDY, "bootstrap",
              "The Q1 {metric} difference that reverses the Dice order keeps its sign under the paired bootstrap",
              "directionally stable", per_metric=True),
    ClaimSpec("agreement_counts", FIRST_STUDY, "cross_dataset",
              "Dice and {metric} disagree on the order of top-model pairs in Q1 in a large share of comparisons",
              per_metric=True,
              paper_values=(("hd95", "4/9 agree"), ("assd", "5/9 agree"), ("contour_f1", "3/9 agree"))),
    ClaimSpec("q1_max_difference", FIRST_STUDY, "cross_dataset",
              "Top models differ markedly on {metric} in Q1 (largest pairwise difference)", per_metric=True,
              paper_values=(("hd95", "41.3 %"), ("assd", "36.8 %"), ("contour_f1", "0.112"))),
    ClaimSpec("no_model_better_friedman", SECOND_STUDY, "small_data",
              "No model is better than the others (Friedman test over images)", "Friedman/Nemenyi: no difference"),
    ClaimSpec("no_model_better_equivalence", SECOND_STUDY, "small_data",
              "The models are equivalent on macro Dice (paired equivalence test over images)",
              "bootstrap intervals overlap"),
    ClaimSpec("rankings_disagree", SECOND_STUDY, "small_data",
              "LOOCV and 3-fold cross-validation rank the models differently", "the two protocols disagree"),
    ClaimSpec("intervals_overlap", SECOND_STUDY, "small_data",
              "The models' bootstrap intervals of macro Dice overlap", "intervals overlap"),
    ClaimSpec("verdict_rule_calibrated", METHOD, "failure_modes",
              "The verdict rule calls a non-existent difference resolved in at most alpha of test sets",
              "(a check of this study's method)"),
    ClaimSpec("planted_reversal_found", METHOD, "failure_modes",
              "The study's code finds a planted Dice-HD95 reversal and the bootstrap keeps its HD95 sign",
              "(a check of this study's method)"),
)
#: The registry of claims, by key.
CLAIMS: dict[str, ClaimSpec] = {spec.key: spec for spec in _SPECS}


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def claim_row(key: str, *, dataset: str, data_source: str, our_value: str, verdict: str, n_cases,
              n_lesions=None, n_seeds=None, p_raw=None, detectable_difference=None, reason: str = "",
              metric: str | None = None, min_cases: int = 1, defined: bool = True,
              paper_value: str | None = None) -> dict:
    """One row of the claims table for the registered claim ``key``.

    ``verdict`` must be one of :data:`VERDICTS`; ``cannot be assessed`` needs a ``reason``. A row that says
    supported or not supported needs ``n_cases >= min_cases`` and ``defined`` (the value it reads is defined):
    anything else is a programming error and raises, so the table cannot carry a verdict stronger than its
    evidence. ``p_holm`` is filled in by :func:`holm_within_study`."""
    if key not in CLAIMS:
        raise ValueError(f"unknown claim {key!r}; registered: {sorted(CLAIMS)}")
    spec = CLAIMS[key]
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    if spec.per_metric and not metric:
        raise ValueError(f"claim {key!r} is per metric: give metric=")
    if verdict == CANNOT and not reason:
        raise ValueError(f"claim {key!r}: 'cannot be assessed' needs a reason")
    if verdict != CANNOT:
        if _is_missing(n_cases) or int(n_cases) < min_cases:
            raise ValueError(f"claim {key!r}: verdict {verdict!r} on {n_cases} cases (< {min_cases}); "
                             f"say '{CANNOT}' with the reason")
        if not defined:
            raise ValueError(f"claim {key!r}: verdict {verdict!r} on an undefined value; say '{CANNOT}'")
    return {
        "study": spec.study, "dataset": dataset, "data_source": DATA_SOURCES.get(data_source, data_source),
        "claim": spec.text(metric), "paper_value": spec.paper(metric) if paper_value is None else paper_value,
        "our_value": our_value, "verdict": verdict,
        "n_cases": None if _is_missing(n_cases) else int(n_cases),
        "n_lesions": None if _is_missing(n_lesions) else int(n_lesions),
        "n_seeds": None if _is_missing(n_seeds) else int(n_seeds),
        "p_holm": None, "detectable_difference": detectable_difference, "reason": reason,
        "claim_id": key, "metric": metric or "", "section": spec.section,
        "p_raw": None if _is_missing(p_raw) else float(p_raw),
    }


def claims_frame(rows: Iterable[Mapping]) -> pd.DataFrame:
    """Rows as a table with :data:`CLAIM_COLUMNS` then :data:`EXTRA_COLUMNS` (integers as nullable integers)."""
    frame = pd.DataFrame(list(rows), columns=[*CLAIM_COLUMNS, *EXTRA_COLUMNS])
    for column in ("n_cases", "n_lesions", "n_seeds"):
        frame[column] = pd.array(frame[column], dtype="Int64")
    for column in ("p_holm", "p_raw"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def holm_within_study(frame: pd.DataFrame) -> pd.DataFrame:
    """``p_holm``: Holm's step-down adjustment (:func:`helpers.stats.inference.holm_adjust`) of ``p_raw`` within
    each family of claims: the rows of one study and one dataset that carry a p-value (a dataset's claims of the
    first study; the cross-dataset claims; the small-data claims). Rows without a p-value keep NaN. Returns a
    copy."""
    out = frame.copy()
    out["p_holm"] = np.nan
    with_p = out[out["p_raw"].notna()]
    for _, group in with_p.groupby(["study", "dataset"], sort=False):
        out.loc[group.index, "p_holm"] = holm_adjust(group["p_raw"].to_numpy(dtype=float))
    return out


def _fmt_p(p) -> str:
    if _is_missing(p) or (isinstance(p, float) and math.isnan(p)):
        return ""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _count(value, noun: str) -> str:
    if _is_missing(value) or (not isinstance(value, str) and pd.isna(value)):
        return ""
    value = int(value)
    return f"{value} {noun}{'' if value == 1 else 's'}"


def sentence(row: Mapping) -> str:
    """The one sentence a claims row renders to: the claim, the verdict, our value beside the paper's, the evidence
    (cases, lesions, seeds, Holm-adjusted p) and, for ``cannot be assessed``, the reason; for ``not supported``, the
    smallest difference the study could have detected where known.

    >>> sentence({"claim": "X holds", "verdict": "supported", "our_value": "0.3", "paper_value": "0.4",
    ...           "n_cases": 30, "n_lesions": None, "n_seeds": 1, "p_holm": 0.0004, "reason": "",
    ...           "detectable_difference": None, "dataset": "wmh", "data_source": "synthetic stand-in"})
    'X holds (WMH, synthetic stand-in): supported. Ours: 0.3; paper: 0.4. Evidence: 30 cases, 1 seed, p < 0.001.'
    """
    dataset = str(row.get("dataset", "") or "")
    where = ", ".join(x for x in (_dataset_label(dataset), str(row.get("data_source", "") or "")) if x)
    head = f"{row['claim']}{f' ({where})' if where else ''}: {row['verdict']}."
    values = []
    if str(row.get("our_value", "") or ""):
        values.append(f"Ours: {row['our_value']}")
    if str(row.get("paper_value", "") or ""):
        values.append(f"paper: {row['paper_value']}")
    parts = [head]
    if values:
        parts.append("; ".join(values) + ".")
    evidence = [x for x in (_count(row.get("n_cases"), "case"), _count(row.get("n_lesions"), "lesion"),
                            _count(row.get("n_seeds"), "seed"), _fmt_p(row.get("p_holm"))) if x]
    if evidence:
        parts.append("Evidence: " + ", ".join(evidence) + ".")
    if row["verdict"] == CANNOT and row.get("reason"):
        parts.append(f"Why: {row['reason']}.")
    elif row.get("reason"):
        parts.append(f"Note: {row['reason']}.")
    detectable = row.get("detectable_difference")
    if row["verdict"] == NOT_SUPPORTED and not _is_missing(detectable) and str(detectable) not in ("", "nan"):
        parts.append(f"Smallest difference detectable at 80 % power: {detectable}.")
    return " ".join(parts)


def _dataset_label(dataset: str) -> str:
    # a registered dataset reads as the registry's display name (the one home of those names)
    if dataset in DATASETS:
        return display_name(dataset)
    return {"all": "all datasets", "small_data": "small data", "study": "all datasets"}.get(dataset, dataset)


def rows_for(frame: pd.DataFrame, *, section: str | None = None, dataset: str | None = None) -> pd.DataFrame:
    """The rows a page shows: those of ``section`` (and ``dataset``), in registry order."""
    out = frame
    if section is not None:
        out = out[out["section"] == section]
    if dataset is not None:
        out = out[out["dataset"] == dataset]
    order = {key: i for i, key in enumerate(CLAIMS)}
    return out.assign(_o=out["claim_id"].map(order)).sort_values(["_o", "metric"], kind="mergesort").drop(
        columns="_o")


#: The file, in a page's scope folder (``ctx.results``), that holds the claims rows the page shows.
PAGE_FILES = {"stratification": "claims.csv", "reversals": "claims.csv", "bootstrap": "claims.csv",
              "cross_dataset": "claims_small_lesions.csv", "failure_modes": "claims_method.csv",
              "small_data": "claims_small_data.csv"}


def page_file(section: str) -> str:
    """The file (in the page's scope folder: ``results/<dataset>/`` for a dataset's chapters, ``results/`` for the
    cross-dataset and failure-lab chapters, ``results/small_data/``) that holds the claims rows of ``section``'s
    page (:data:`PAGE_FILES`)."""
    if section not in PAGE_FILES:
        raise ValueError(f"section {section!r} shows no claims; those that do: {sorted(PAGE_FILES)}")
    return PAGE_FILES[section]


def study_file(study: str) -> str:
    """The file a study's claims are saved to by the section that completes them (``claims_<study>.csv``)."""
    if study not in (FIRST_STUDY, SECOND_STUDY, METHOD):
        raise ValueError(f"study must be {FIRST_STUDY!r}, {SECOND_STUDY!r} or {METHOD!r}, got {study!r}")
    return f"claims_{study}.csv"


def assemble(ws) -> pd.DataFrame:
    """Every claim of a run: the first study's table of the cross-dataset section (``results/claims_<study>.csv``:
    each dataset's claims and the cross-dataset ones; without it, each dataset's ``results/<dataset>/claims.csv``),
    the second study's (``results/small_data/claims_<study>
    .csv``) and the method's (``results/claims_method.csv``, failure-mode laboratory), those that exist, concatenated
    in that order and written atomically to ``results/claims.csv`` (:data:`CLAIMS_FILE`).
    The Holm adjustment stays each family's own (:func:`holm_within_study`, applied where the rows were computed).
    Returns the table (empty with the columns when no section has written claims)."""
    first = ws.results() / study_file(FIRST_STUDY)
    # without the cross-dataset section (the evaluate command), each dataset's own claims
    firsts = [first] if first.is_file() else sorted(ws.results().glob(f"*/{PAGE_FILES['stratification']}"))
    paths = [*firsts, ws.results(SECOND_STUDY) / study_file(SECOND_STUDY), ws.results() / study_file(METHOD)]
    frames = [pd.read_csv(path) for path in paths if path.is_file() and path.stat().st_size > 0]
    records = pd.concat(frames, ignore_index=True).to_dict("records") if frames else []
    table = claims_frame(records)
    write_csv(table, ws.results() / CLAIMS_FILE, index=False)
    return table
