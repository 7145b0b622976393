"""The regression run's training numbers, checked at a tolerance (nbval compares only their structure).

Training results depend on the processor (MKL and oneDNN pick kernels per CPU; a few optimiser steps amplify
last-bit differences), so the committed notebook ``02_training.ipynb`` shows them marked ``≈`` and nbval's
sanitiser reduces them to their place in the layout. This test compares the values of the smoke run in
``build/nbval`` (``results/wmh/training_summary.csv`` and the trained predictions set aside in
``predictions/wmh/_trained``) with those the committed notebook shows, at tolerances wide enough for another
processor and narrow enough to catch a broken training loop or inference:

- best validation Dice: within 0.1 (other CPUs changed it by 0.001 and, for the attention U-Net, by 0.056);
- predicted test voxels per model: within a factor of 2 or 500 voxels (another CPU changed 235 to 359, a third
  to 138: the smoke models are a dozen optimiser steps from random and their outputs sit near the 0.5 threshold).

A training loop that stops learning (Dice near 0), an inference that predicts nothing or everything, or a model
swapped for another fails them.

It needs that smoke run, so ``make nbval`` runs it (``HONEST_TRAINING_REGRESSION=1``) after the study; elsewhere it
is skipped.
"""

from __future__ import annotations

import os
import re

import nbformat
import pandas as pd
import pytest

from helpers.data import predictions
from helpers.base.paths import Workspace, project_root

pytestmark = pytest.mark.skipif(os.environ.get("HONEST_TRAINING_REGRESSION") != "1",
                                reason="needs the smoke run in build/nbval: run by `make nbval`")

NOTEBOOK = project_root() / "notebooks" / "02_training.ipynb"
DICE_TOLERANCE = 0.1
VOXEL_FACTOR, VOXEL_SLACK = 2.0, 500


def _html_rows(cell_start: str) -> list[list[str]]:
    """The rows (header rows included) of the DataFrame a cell of the committed notebook shows, parsed from its
    HTML output, cell texts without tags."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith(cell_start))
    html = next(o["data"]["text/html"] for o in cell.outputs if "text/html" in o.get("data", {}))
    return [[re.sub(r"<.*?>", "", cell).strip() for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", html, re.S)]


def _html_table(cell_start: str) -> pd.DataFrame:
    rows = _html_rows(cell_start)
    header = rows[0]
    body = [r for r in rows[1:] if len(r) == len(header)]
    return pd.DataFrame(body, columns=[h or "index" for h in header])


def _value(text: str) -> float:
    return float(text.replace("≈", "").strip())


def test_best_validation_dice_matches_the_committed_run_at_a_tolerance():
    shown = _html_table("summary = grid.train_all")
    summary = pd.read_csv(Workspace.at("build/nbval").results("wmh") / "training_summary.csv")
    assert sorted(shown["model"]) == sorted(summary["model"])
    for _, row in shown.iterrows():
        got = float(summary.loc[summary["model"] == row["model"], "best_val_dice"].iloc[0])
        assert abs(got - _value(row["best_val_dice"])) <= DICE_TOLERANCE, (row["model"], got, row["best_val_dice"])


def test_predicted_voxels_match_the_committed_run_at_a_tolerance():
    # the table per (model, seed): body rows are [model, seed, cases, predicted_voxels]
    rows = [r for r in _html_rows("written = grid.predict_all") if len(r) == 4 and r[0] and r[1].isdigit()]
    assert len(rows) == 4, rows
    root = Workspace.at("build/nbval").predictions("wmh") / "_trained"
    if not root.is_dir():  # a regression run that evaluates the trained predictions (predictions_from: trained)
        root = root.parent
    for model, _, _, shown in rows:
        got = sum(int(predictions.read_prediction(root, model, case).sum())
                  for case in predictions.list_cases(root, model))
        expected = _value(shown)
        assert (expected / VOXEL_FACTOR <= got <= expected * VOXEL_FACTOR) or abs(got - expected) <= VOXEL_SLACK, (
            model, got, expected)
