"""How the book shows the claims table: a chapter's finding box, the cross-dataset scorecard and the intro's
"What this run found".

Every word of a finding comes from :func:`helpers.analysis.claims.sentence` applied to a row of the claims table,
so a page cannot contradict its table: the box is one bullet per row, in registry order
(:func:`helpers.analysis.claims.rows_for`), and a page without rows says so instead of inventing text.

Where the rows come from
------------------------
A chapter's rows are in the file :func:`helpers.analysis.claims.page_file` names, in the page's results folder
(a dataset's ``claims.csv``, the first study's ``claims_small_lesions.csv``, ...), read by :func:`page_rows`; the
scorecard reads the first study's table (:func:`helpers.analysis.claims.study_file`) and the intro's summary the
run's ``results/claims.csv`` (:data:`helpers.analysis.claims.CLAIMS_FILE`, assembled by the runner). A missing file is not an empty table: the
box then states that the claims of this page were not computed.

A notebook shows its box with ``finding = findings.show_finding(ctx)`` (a ``hide-input`` cell right after the
precondition) and refreshes it with ``finding.update()`` in its last cell, after the chapter has saved its claims
rows (:class:`FindingBox`); the Markdown it displays is rendered by MyST (``nb_render_markdown_format: myst`` in
``_config.yml``), so the admonition is a real admonition and a pipe table a real table.

Imports :mod:`helpers.analysis` and :mod:`helpers.report.tables`; never matplotlib.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from helpers.analysis.claims import (
    CLAIM_COLUMNS, CLAIMS, CLAIMS_FILE, EXTRA_COLUMNS, FIRST_STUDY, page_file, rows_for, sentence, study_file,
)
from helpers.data.datasets import DATASETS, display_name
from helpers.report.tables import format_p, to_markdown

__all__ = [
    "FINDING_TITLE", "NO_ROWS", "NOT_COMPUTED", "finding_markdown", "read_claims", "page_rows", "finding_for",
    "FindingBox", "show_finding", "scorecard", "scorecard_markdown", "ScorecardBox", "show_scorecard", "run_summary_markdown",
    "CONCLUSION_SECTIONS",
]

#: The title of every chapter's finding box.
FINDING_TITLE = "Finding"
#: What a box says when the page's table has no row.
NO_ROWS = "This chapter has no rows in the claims table for {where}: it states no finding."
#: What a box says when the page's claims file does not exist.
NOT_COMPUTED = ("The claims of this page were not computed (`{file}` not found): run the chapter through the study "
                "runner to fill this box.")
#: The chapters that open with a finding box, in the book's order.
CONCLUSION_SECTIONS = ("stratification", "reversals", "bootstrap", "cross_dataset", "failure_modes", "small_data")

_CLAIM_SECTIONS = {spec.section for spec in CLAIMS.values()}


def _fence(body: str, *, title: str, kind: str) -> str:
    # four backticks: a sentence may contain three in a row only in theory, but a nested fence never breaks
    return f"````{{admonition}} {title}\n:class: {kind}\n{body}\n````"


def finding_markdown(rows, *, where: str = "this page", title: str = FINDING_TITLE) -> str:
    """MyST markdown of a finding box: an ``important`` admonition with one bullet per claims row (its
    :func:`~helpers.analysis.claims.sentence`, nothing else), in the order given; with no rows, a ``note``
    admonition saying that ``where`` has no claim rows. ``rows``: a DataFrame of the claims table or dicts."""
    records = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else [dict(r) for r in rows]
    if not records:
        return _fence(NO_ROWS.format(where=where), title=title, kind="note")
    return _fence("\n".join(f"- {sentence(_clean(r))}" for r in records), title=title, kind="important")


def _clean(row: Mapping) -> dict:
    """A row read from CSV: missing text cells as "", so the sentence never prints "nan"."""
    out = dict(row)
    for key in ("our_value", "paper_value", "reason", "data_source", "dataset", "detectable_difference"):
        value = out.get(key)
        if value is None or (isinstance(value, float) and pd.isna(value)):
            out[key] = ""
    for key in ("n_cases", "n_lesions", "n_seeds", "p_holm"):
        value = out.get(key)
        if value is not None and not isinstance(value, str) and pd.isna(value):
            out[key] = None
    return out


def read_claims(path) -> pd.DataFrame:
    """A claims table from CSV (columns of :data:`~helpers.analysis.claims.CLAIM_COLUMNS`, counts as integers);
    an error naming the file when it lacks a column the book reads."""
    path = Path(path)
    frame = pd.read_csv(path, dtype={"study": str, "dataset": str, "claim": str, "verdict": str,
                                     "paper_value": str, "our_value": str, "reason": str, "metric": str,
                                     "section": str, "claim_id": str})
    needed = {"claim", "verdict", "section"}
    if not needed.issubset(frame.columns):
        raise ValueError(f"{path}: a claims table needs columns {sorted(needed)}; has {list(frame.columns)}")
    for column in ("n_cases", "n_lesions", "n_seeds"):
        if column in frame.columns:
            frame[column] = pd.array(pd.to_numeric(frame[column], errors="coerce").round(), dtype="Int64")
    for column in (*CLAIM_COLUMNS, *EXTRA_COLUMNS):
        if column not in frame.columns:
            frame[column] = pd.NA
    return frame


def _page_dataset(scope: str) -> str | None:
    return scope if scope in DATASETS else None


def page_rows(results: Path, section: str, *, scope: str) -> pd.DataFrame | None:
    """The claims rows a page shows: the file :func:`~helpers.analysis.claims.page_file` names, in the page's
    results folder ``results``, restricted to ``section`` and, on a dataset's page, to that dataset; None when the
    file does not exist."""
    path = Path(results) / page_file(section)
    if not path.is_file():
        return None
    return rows_for(read_claims(path), section=section, dataset=_page_dataset(scope))


def finding_for(results: Path, section: str, *, scope: str) -> str:
    """The finding box's markdown for ``section`` on the page of ``scope`` (see :func:`page_rows`), or the note that
    the page's claims were not computed."""
    if section not in _CLAIM_SECTIONS:  # the registry names no claim for this chapter: nothing to compute
        return finding_markdown([], where=f"{_scope_words(scope)} (the claims registry names none for this chapter)")
    rows = page_rows(results, section, scope=scope)
    if rows is None:
        return _fence(NOT_COMPUTED.format(file=page_file(section)), title=FINDING_TITLE, kind="warning")
    where = f"{_scope_words(scope)}"
    return finding_markdown(rows, where=where)


def _scope_words(scope: str) -> str:
    if scope in DATASETS:
        return display_name(scope)
    return {"study": "the datasets of this run", "small_data": "the small-data study"}.get(scope, scope)


class _LiveBox:
    """A markdown box shown once with a display id (:meth:`show`) and replaced in place (:meth:`update`): an
    executed notebook keeps the updated output where the box was first shown. Subclasses give ``display_id``
    and :meth:`markdown`."""

    display_id: str

    def markdown(self) -> str:
        raise NotImplementedError

    def show(self):
        from IPython.display import Markdown, display  # lazy: IPython only where a notebook displays

        display(Markdown(self.markdown()), display_id=self.display_id)
        return self

    def update(self) -> str:
        """Re-read the box's source and replace the box shown by :meth:`show`; returns the markdown."""
        from IPython.display import Markdown, update_display  # lazy: IPython only where a notebook displays

        text = self.markdown()
        update_display(Markdown(text), display_id=self.display_id)
        return text


class FindingBox(_LiveBox):
    """A page's finding box, shown once near the top of the page and refreshed in place: the chapter computes its
    claims rows further down, so the box is displayed with a display id (:meth:`show`) and the chapter's last cell
    calls :meth:`update`, which re-reads the page's claims file and replaces the box's output (an executed
    notebook keeps the updated output where the box was first shown)."""

    def __init__(self, results: Path, section: str, scope: str):
        self.results, self.section, self.scope = Path(results), section, scope
        self.display_id = f"finding-{section}-{scope}"

    def markdown(self) -> str:
        """The box as it reads now (:func:`finding_for`)."""
        return finding_for(self.results, self.section, scope=self.scope)

    def __repr__(self) -> str:
        return f"FindingBox(section={self.section!r}, scope={self.scope!r})"


def show_finding(ctx, section: str | None = None) -> FindingBox:
    """Display the finding box of the page of ``ctx`` (a :class:`helpers.runner.context.Context`; ``section``
    defaults to the page's own) and return it: call ``.update()`` on it once the page has saved its claims rows."""
    return FindingBox(ctx.results, section or ctx.section.name, ctx.scope).show()


# ---------------------------------------------------------------------------------------------------------------
# The scorecard (cross-dataset chapter) and the intro's summary
# ---------------------------------------------------------------------------------------------------------------


def scorecard(claims: pd.DataFrame, *, study: str | None = None) -> pd.DataFrame:
    """One row per claims row, in registry order then dataset: ``claim`` (with its dataset), ``paper``, ``ours``,
    ``verdict``, ``evidence`` (cases, lesions, seeds, Holm p). ``study`` keeps one study's claims."""
    frame = claims if study is None else claims[claims["study"] == study]
    order = {key: i for i, key in enumerate(CLAIMS)}
    datasets = {name: i for i, name in enumerate(DATASETS)}
    frame = frame.assign(_o=frame["claim_id"].map(order), _d=frame["dataset"].map(datasets).fillna(len(datasets)))
    frame = frame.sort_values(["_o", "_d", "metric"], kind="mergesort")
    rows = []
    for row in frame.to_dict("records"):
        row = _clean(row)
        dataset = str(row.get("dataset") or "")
        where = display_name(dataset) if dataset in DATASETS else {"study": "all datasets"}.get(dataset, dataset)
        evidence = []
        for key, noun in (("n_cases", "case"), ("n_lesions", "lesion"), ("n_seeds", "seed")):
            if row.get(key) is not None:
                evidence.append(f"{int(row[key])} {noun}{'' if int(row[key]) == 1 else 's'}")
        if row.get("p_holm") is not None:
            evidence.append(f"p (Holm) {format_p(row['p_holm'])}")
        rows.append({"claim": f"{row['claim']} ({where})" if where else row["claim"],
                     "paper": row.get("paper_value", ""), "ours": row.get("our_value", ""),
                     "verdict": row["verdict"], "evidence": ", ".join(evidence)})
    return pd.DataFrame(rows, columns=["claim", "paper", "ours", "verdict", "evidence"])


def scorecard_markdown(claims: pd.DataFrame | None, *, study: str | None = None) -> str:
    """The scorecard as a table (verdicts in bold), or the note that the claims table was not assembled."""
    if claims is None:
        return (f"*The claims table (`results/{CLAIMS_FILE}`) was not assembled in this workspace: the scorecard "
                "is empty.*")
    table = scorecard(claims, study=study)
    if not len(table):
        return "*The claims table has no rows.*"
    table = table.assign(verdict=table["verdict"].map(lambda v: f"**{v}**"))
    return to_markdown(table, align_numbers=False)


class ScorecardBox(_LiveBox):
    """The cross-dataset scorecard shown near the top of its chapter and refreshed in place (:meth:`update`) once
    the chapter has saved the first study's claims table (``results/claims_<study>.csv``,
    :func:`helpers.analysis.claims.study_file`), like :class:`FindingBox`."""

    def __init__(self, results: Path, study: str = FIRST_STUDY):
        self.path = Path(results) / study_file(study)
        self.study = study
        self.display_id = f"scorecard-{study}"

    def claims(self) -> pd.DataFrame | None:
        return read_claims(self.path) if self.path.is_file() else None

    def markdown(self) -> str:
        claims = self.claims()
        if claims is None:
            return (f"*The claims of this chapter were not computed (`{self.path.name}` not found): the scorecard is "
                    "empty.*")
        return scorecard_markdown(claims, study=self.study)

    def __repr__(self) -> str:
        return f"ScorecardBox(study={self.study!r})"


def show_scorecard(ctx, *, study: str = FIRST_STUDY) -> ScorecardBox:
    """Display the scorecard of ``study``'s claims table in the results folder of ``ctx`` (the cross-dataset
    chapter's) and return it (call ``.update()`` once the chapter has saved the table)."""
    return ScorecardBox(ctx.results, study).show()


def run_summary_markdown(claims: pd.DataFrame | None, *, pages: Mapping[str, Sequence[str]] | None = None,
                         titles: Mapping[str, str] | None = None) -> str:
    """"What this run found": per conclusion chapter, how many of its claims rows are supported, not supported or
    cannot be assessed, and a link to the page(s) (``pages``: section -> document paths for ``{doc}``; ``titles``:
    section -> the chapter's title). The numbers
    are counted from the claims table, never written by hand."""
    lines = ["## What this run found", "",
             "Each chapter below opens with its finding, one sentence per row of the claims table "
             f"(`results/{CLAIMS_FILE}`); the counts are this run's verdicts.", ""]
    if claims is None or not len(claims):
        lines.append("The claims table of this run was not assembled: no finding is stated here.")
        return "\n".join(lines)
    for section in CONCLUSION_SECTIONS:
        rows = claims[claims["section"] == section]
        links = ", ".join(f"{{doc}}`/{p}`" for p in (pages or {}).get(section, ()))
        if not len(rows):
            continue
        counts = rows["verdict"].value_counts()
        said = ", ".join(f"{int(counts[v])} {v}" for v in ("supported", "not supported", "cannot be assessed")
                         if v in counts)
        name = (titles or {}).get(section, section.replace("_", " "))
        lines.append(f"- **{name}**: {len(rows)} claim rows ({said})"
                     + (f"; see {links}." if links else "."))
    return "\n".join(lines)
