"""Tables as a reader sees them: one registry of column labels, one formatting rule per kind of number, and the
markdown the book shows.

Conventions
-----------
- Column names: :data:`COLUMN_LABELS` is the one place a raw column name (``relative_spread_percent``) becomes the
  words a reader sees ("spread among top 3 (%)"); a metric name reads as the metric registry's label
  (:func:`helpers.metrics.label`); any other name has its underscores replaced by spaces.
- Numbers: integers (and integral floats of a count column) print as integers; percentages (a column whose name
  ends ``_percent`` or ``_pct``) to one decimal; p-values (a column starting ``p_`` or named ``p``) to three
  decimals, and below 0.001 as ``< 0.001`` (never ``0.000``); other floats to three significant decimals
  (``digits``); missing values as an empty cell.
- Model names read as :data:`helpers.analysis.MODEL_LABELS` (``attention_unet`` -> "Attention U-Net"), also inside
  model orders (``unet > resunet``), which are never cut off.
- Constant columns (one value on every row) are dropped from the table and stated once, in a sentence below it
  (:func:`readable`), so a 19-column table with the paper's value repeated on every row reads as the columns that
  vary plus one line.
- A long per-case table is collapsed (:func:`collapsed`): a summary line, the CSV's name, and the table in a
  ``dropdown``.

Imports :mod:`helpers.metrics` (labels) and :mod:`helpers.analysis` (model labels); never matplotlib.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from helpers.analysis.units import MODEL_LABELS
from helpers.metrics.registry import METRICS, label as metric_label

__all__ = [
    "COLUMN_LABELS", "column_label", "model_label", "model_order", "format_p", "format_percent", "format_value",
    "format_column", "constant_columns", "readable", "to_markdown", "collapsed", "LONG_TABLE_ROWS", "show_table",
    "split_paper_columns",
]

#: The reader's name of each raw column name that the book shows (one place; add a column here, not in a cell).
COLUMN_LABELS: dict[str, str] = {
    "dataset": "dataset", "model": "model", "metric": "metric", "stratum": "stratum", "lesion_set": "lesion set",
    "case_id": "case", "lesion_id": "lesion", "seed": "seed", "n": "n", "n_cases": "cases",
    "n_lesions": "lesions", "n_seeds": "seeds", "n_models": "models", "n_units": "units",
    "n_units_a": "units (a)", "n_units_b": "units (b)", "n_valid": "valid resamples",
    "n_penalty": "penalised", "n_excluded": "excluded", "mean": "mean", "median": "median", "std": "SD",
    "value": "value", "ci_low": "CI low", "ci_high": "CI high", "difference": "difference (a - b)",
    "mean_difference": "mean difference (a - b)", "mean_a": "mean (a)", "mean_b": "mean (b)",
    "model_a": "model a", "model_b": "model b", "better": "better", "share_same_sign": "same sign (share)",
    "p_value": "p", "p_raw": "p (unadjusted)", "p_holm": "p (Holm)", "p": "p", "verdict": "verdict",
    "relative_spread_percent": "spread among top 3 (%)", "absolute_spread": "spread among top 3",
    "spread": "spread", "top_models": "top models", "order": "model order", "dice_order": "order by Dice",
    "metric_order": "order by metric", "order_dice": "order by Dice", "order_metric": "order by the metric",
    "order_changed": "order changed", "leader_rank_in_metric": "Dice leader's rank", "pairs_comparable":
    "comparable pairs", "top_pairs_agree": "top pairs agreeing", "top_pairs_comparable": "top pairs comparable",
    "top_pairs_not_comparable": "top pairs not comparable", "top_pairs": "top pairs", "note": "note",
    "joint_reversal_share": "joint reversal (share)", "kendall_tau": "Kendall's tau", "reversed": "order changed",
    "paper_value": "paper", "our_value": "ours", "paper": "paper", "ours": "ours", "claim": "claim",
    "data_source": "data", "reason": "reason", "detectable_difference": "detectable difference",
    "study": "study", "section": "chapter", "lesion_area_fraction": "lesion area (% of image)",
    "size_voxels": "size (voxels)", "q1_upper_percent": "Q1 upper bound (% of image)", "met": "precondition met",
    "top_spread": "top-3 Dice spread", "tie_tolerance": "tie tolerance", "seed_spread": "seed spread",
    "failed": "failed conditions", "n_q1_lesions": "Q1 lesions", "min_dice": "lowest Dice",
    "min_q1_recall": "lowest Q1 recall",
}

_MODEL_ORDER = re.compile(r"\s*(>|<|=|,)\s*")


def column_label(name: str) -> str:
    """The words a reader sees for column ``name``: :data:`COLUMN_LABELS`, else a metric's registry label, else the
    name with underscores as spaces."""
    name = str(name)
    if name in COLUMN_LABELS:
        return COLUMN_LABELS[name]
    if name in METRICS:
        return metric_label(name)
    return name.replace("_", " ")


def model_label(name) -> str:
    """The display name of a model (``"attention_unet"`` -> ``"Attention U-Net"``); unknown names unchanged."""
    return MODEL_LABELS.get(str(name), str(name))


def model_order(text) -> str:
    """A model order (``"unet > resunet = attention_unet"``) with every model's display name, in full."""
    if not isinstance(text, str):
        return "" if text is None or (isinstance(text, float) and math.isnan(text)) else str(text)
    parts = _MODEL_ORDER.split(text)
    return "".join(f" {p} " if p in (">", "<", "=") else (", " if p == "," else model_label(p.strip()))
                   for p in parts if p != "")


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def format_p(value) -> str:
    """A p-value: ``< 0.001`` below 0.001, else three decimals; empty when missing."""
    if _missing(value):
        return ""
    value = float(value)
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def format_percent(value) -> str:
    """A percentage to one decimal (``871.4``); empty when missing."""
    return "" if _missing(value) else f"{float(value):.1f}"


def format_value(value, *, digits: int = 3) -> str:
    """An integer as an integer (also an integral float such as ``12.0``), a float to ``digits`` decimals, a
    boolean as yes/no, text unchanged; empty when missing."""
    if _missing(value):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.{digits}f}"
    return str(value)


def _kind(name: str) -> str:
    name = str(name)
    if name == "p" or name.startswith("p_"):
        return "p"
    if name.endswith("_percent") or name.endswith("_pct"):
        return "percent"
    if name == "n" or name.startswith("n_") or name in ("seed", "rank"):
        return "count"
    if name in ("model", "model_a", "model_b", "better") or name.endswith("_model"):
        return "model"
    if name.endswith("order") or name.startswith("order_") or name == "top_models":
        return "order"
    return "value"


def format_column(name: str, values: pd.Series, *, digits: int = 3) -> pd.Series:
    """``values`` formatted by the rule of column ``name`` (see the module's conventions)."""
    kind = _kind(name)
    if kind == "p":
        return values.map(format_p)
    if kind == "percent":
        return values.map(format_percent)
    if kind == "count":
        return values.map(lambda v: "" if _missing(v) else (str(int(v)) if float(v).is_integer() else
                                                               format_value(v, digits=digits))
                          if isinstance(v, (int, float, np.integer, np.floating)) else format_value(v))
    if kind == "model":
        return values.map(lambda v: "" if _missing(v) else model_label(v))
    if kind == "order":
        return values.map(lambda v: model_order(v) if isinstance(v, str) else format_value(v, digits=digits))
    numbers = pd.to_numeric(values, errors="coerce")
    if values.dtype.kind == "f" and numbers.notna().any() and bool(
            np.all(np.isinf(numbers[numbers.notna()]) | (numbers[numbers.notna()] % 1 == 0))):
        # a float column holding whole numbers only (counts and ranks read back from CSV): integers
        return values.map(lambda v: "" if _missing(v) else format_value(int(v) if math.isfinite(v) else v))
    return values.map(lambda v: format_value(v, digits=digits))


def constant_columns(frame: pd.DataFrame, *, keep: Sequence[str] = ()) -> dict[str, object]:
    """The columns of ``frame`` with one value on every row (missing counts as a value), except ``keep``, with
    that value; none for a table of fewer than two rows."""
    if len(frame) < 2:
        return {}
    out = {}
    for column in frame.columns:
        if column in keep:
            continue
        values = frame[column]
        if values.isna().all() or (values.notna().all() and values.nunique(dropna=False) == 1):
            out[column] = values.iloc[0]
    return out


def readable(frame: pd.DataFrame, *, keep: Sequence[str] = (), drop_constant: bool = True,
             labels: Mapping[str, str] | None = None, digits: int = 3) -> tuple[pd.DataFrame, str]:
    """``(table, note)``: ``frame`` with every cell formatted (strings), constant columns dropped (unless in
    ``keep``) and its columns renamed for readers; ``note`` states each dropped column's value once ("" when none
    was dropped). ``labels`` overrides :data:`COLUMN_LABELS` for this table."""
    labels = {**COLUMN_LABELS, **(labels or {})}
    constant = constant_columns(frame, keep=keep) if drop_constant else {}
    shown = frame.drop(columns=list(constant))
    out = pd.DataFrame({c: format_column(c, shown[c], digits=digits) for c in shown.columns}, index=shown.index)
    out.columns = [labels.get(c, column_label(c)) for c in shown.columns]
    note = ""
    if constant:
        said = []
        for c, v in constant.items():
            text = format_column(c, pd.Series([v]), digits=digits).iloc[0]
            said.append(f"{labels.get(c, column_label(c))}: {text if text != '' else 'not available'}")
        note = "Same on every row: " + "; ".join(said) + "."
    return out, note


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(frame: pd.DataFrame, *, note: str = "", align_numbers: bool = True) -> str:
    """A pipe table of ``frame`` (cells as they are; numbers right-aligned when ``align_numbers``), then ``note``
    as a paragraph. A table without rows says so instead."""
    if not len(frame.columns):
        return note
    if not len(frame):
        return "*(no rows)*" + (f"\n\n{note}" if note else "")

    def numeric(column) -> bool:
        cells = [str(v) for v in frame[column] if str(v) != ""]
        return bool(cells) and all(re.fullmatch(r"[<>]?\s*-?[\d.,]+(e-?\d+)?", c) for c in cells)

    head = "| " + " | ".join(_cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---:" if align_numbers and numeric(c) else "---" for c in frame.columns) + "|"
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body]) + (f"\n\n{note}" if note else "")


#: Tables longer than this are collapsed by :func:`collapsed`.
LONG_TABLE_ROWS = 15


def collapsed(frame: pd.DataFrame, *, summary: str, csv_name: str = "", title: str = "Show the table",
              max_rows: int = LONG_TABLE_ROWS, **readable_options) -> str:
    """Markdown for a possibly long table: ``summary`` (and the CSV it is saved as), then the readable table, in a
    ``dropdown`` when it has more than ``max_rows`` rows (shown in full otherwise)."""
    table, note = readable(frame, **readable_options)
    text = to_markdown(table, note=note)
    lead = summary + (f" The full table is saved as `{csv_name}`." if csv_name else "")
    if len(frame) <= max_rows:
        return f"{lead}\n\n{text}"
    return f"{lead}\n\n:::{{dropdown}} {title} ({len(frame)} rows)\n{text}\n:::"


def show_table(frame: pd.DataFrame, *, summary: str = "", csv_name: str = "", max_rows: int = LONG_TABLE_ROWS,
               **readable_options):
    """The readable table of ``frame`` for a notebook cell (an IPython ``Markdown`` object: end a cell with it):
    :func:`readable` then :func:`to_markdown`, collapsed into a dropdown (:func:`collapsed`) when it is longer
    than ``max_rows`` rows or a ``summary`` is given."""
    from IPython.display import Markdown  # lazy: IPython only where a notebook displays

    if summary or len(frame) > max_rows:
        summary = summary or f"{len(frame)} rows."
        return Markdown(collapsed(frame, summary=summary, csv_name=csv_name, max_rows=max_rows, **readable_options))
    table, note = readable(frame, **readable_options)
    return Markdown(to_markdown(table, note=note))


def split_paper_columns(frame: pd.DataFrame, *, key: str = "model", prefix: str = "paper_"
                        ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(ours, paper)``: ``frame`` without its ``<prefix>*`` columns, and those columns once per ``key`` (the
    paper's values, repeated on every dataset's rows of a comparison table, as one row per ``key``; the prefix
    dropped from their names)."""
    paper_columns = [c for c in frame.columns if str(c).startswith(prefix)]
    ours = frame.drop(columns=paper_columns)
    paper = (frame[[key, *paper_columns]].drop_duplicates(key).reset_index(drop=True)
             .rename(columns={c: str(c)[len(prefix):] for c in paper_columns}))
    return ours, paper
