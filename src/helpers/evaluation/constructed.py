"""Constructed predictions: the regression run's stand-in for the trained models' test predictions.

Why
---
Trained weights depend on the processor: MKL and oneDNN choose their kernels per CPU, the last bits of a
reduction differ, and a few optimiser steps amplify them into a different best validation Dice and a few hundred
different predicted voxels. Committed notebook outputs computed from trained models can therefore not be compared
exactly on another machine. Under the training section's switch ``predictions_from = "constructed"`` (the
``smoke`` profile, i.e. the regression run behind ``make test``), the models are still trained and their test
predictions still written, but they are then set aside (``predictions/<dataset>/_trained/<model>/``, which
:func:`helpers.data.predictions.list_models` skips) and every model's evaluated prediction is *constructed* from the
test case's reference mask by one failure mode of :mod:`helpers.evaluation.perturb` at one severity (:data:`RULES`),
seeded. Those masks use only integer shifts, Euclidean distance transforms compared with a slack and a seeded
``numpy.random.Generator``: the same bits on every machine, so every evaluation chapter downstream is an exact
regression check of the metric definitions, tables and statistics.

Conventions
-----------
- Masks on the case's original grid: ``(z, y, x)`` volumes, ``(y, x)`` images. Severities are given in in-plane
  voxels (:class:`Rule`) and applied in mm with the case's own spacing
  (:func:`helpers.evaluation.perturb.perturb_lesions`).
- Model ``i`` of :data:`RULES` (in its order) draws from seed ``seed + i``; lesion ``j`` of a case from
  ``default_rng([seed + i, j])`` (perturb's own convention).
- The record ``results/<dataset>/predictions_source.json`` says which predictions the evaluation reads; the
  provenance banner of every page of the dataset shows it (:class:`helpers.runner.context.Context`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from helpers.evaluation import perturb as _perturb
from helpers.data import predictions as _predictions
from helpers.data import load_split_cases
from helpers.base.io import read_json, write_json
from helpers.base.paths import Workspace

__all__ = [
    "SOURCES", "TRAINED_FOLDER", "RECORD", "Rule", "RULES", "check_source", "construct", "write_constructed",
    "use_predictions", "predictions_source", "MARK", "mark_machine_dependent",
]

#: Values of the training section's ``predictions_from`` parameter.
SOURCES = ("trained", "constructed")
TRAINED_FOLDER = "_trained"
RECORD = "predictions_source.json"


@dataclass(frozen=True)
class Rule:
    """How one model's prediction is constructed: a failure mode of :mod:`helpers.evaluation.perturb` at one severity.

    Severities and distance options are in *in-plane voxels*: multiplied by the case's largest in-plane spacing
    (the last two axes) to give millimetres, so that every rule changes every dataset's masks (a 1 mm dilation
    would not change a WMH mask of 2.4 mm voxels)."""

    mode: str
    voxels: float
    options: tuple[tuple[str, float], ...] = ()

    def describe(self) -> str:
        label = _perturb.FAILURE_MODES[self.mode].label
        return f"{label}, {self.voxels:g} voxel{'s' if self.voxels != 1 else ''}"

    def in_mm(self, spacing) -> tuple[float, dict]:
        """The severity and options in mm for a case of voxel size ``spacing`` (None: 1 mm)."""
        unit = 1.0 if spacing is None else float(max(spacing[-2:]))
        options = {name: (value * unit if name.endswith("_mm") else value) for name, value in self.options}
        return self.voxels * unit, options


#: One rule per model family. The modes are those whose result does not hinge on a floating-point threshold
#: (no Gaussian blur): dilation/erosion compare distances with a slack, offsets move by whole voxels.
RULES: dict[str, Rule] = {
    "unet": Rule("dilate", 1.0),
    "resunet": Rule("erode", 1.0),
    "attention_unet": Rule("offset", 2.0),
    "hybrid_transformer": Rule("blobs", 1.0, (("n_blobs", 1), ("gap_mm", 2.0))),  # gap: 2 voxels
}


def check_source(value) -> str:
    if value not in SOURCES:
        raise ValueError(f"predictions_from must be one of {list(SOURCES)}, got {value!r}")
    return value


def construct(ref: np.ndarray, model: str, *, spacing=None, seed: int = 0) -> np.ndarray:
    """The constructed prediction of ``model`` for one reference mask (see :data:`RULES`)."""
    if model not in RULES:
        raise ValueError(f"model {model!r} has no construction rule; known: {sorted(RULES)}")
    index = list(RULES).index(model)
    severity_mm, options = RULES[model].in_mm(spacing)
    return _perturb.perturb_lesions(ref, RULES[model].mode, severity_mm, spacing=spacing, seed=int(seed) + index,
                                    options=options)


def _set_aside(root, model: str) -> None:
    """Move ``<root>/<model>`` (the trained model's predictions) to ``<root>/_trained/<model>``."""
    source = root / model
    if not source.is_dir():
        return
    target = root / TRAINED_FOLDER / model
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)


def write_constructed(ws: Workspace, dataset: str, cases: Sequence, *, models: Sequence[str], seed: int = 0,
                      image_format: str = "png") -> pd.DataFrame:
    """Set the trained predictions of ``models`` aside and write constructed ones in their place.

    ``cases`` are the test cases (:func:`helpers.data.load_split_cases`); the reference is ``Case.mask``.
    Returns one row per model and case: ``dataset, model, case_id, rule, predicted_voxels``; writes
    ``results/<dataset>/predictions_source.json``.
    """
    ws = Workspace.at(ws)
    models = [models] if isinstance(models, str) else list(models)
    unknown = [m for m in models if m not in RULES]
    if unknown:
        raise ValueError(f"models {unknown} have no construction rule; known: {sorted(RULES)}")
    root = ws.predictions(dataset)
    rows = []
    for model in models:
        _set_aside(root, model)
        for case in cases:
            mask = construct(case.mask, model, spacing=case.spacing, seed=seed)
            kind = "image" if mask.ndim == 2 else "volume"
            _predictions.write_prediction(root, model, case.case_id, mask, kind=kind,
                                          affine=getattr(case, "affine", None), image_format=image_format)
            rows.append({"dataset": dataset, "model": model, "case_id": case.case_id,
                         "rule": RULES[model].describe(), "predicted_voxels": int(mask.sum())})
    write_json({"source": "constructed", "seed": int(seed), "trained_predictions": f"{TRAINED_FOLDER}/<model>",
                "rules": {m: {"mode": RULES[m].mode, "severity_in_plane_voxels": RULES[m].voxels,
                              "options": dict(RULES[m].options)} for m in models}},
               ws.results(dataset) / RECORD)
    return pd.DataFrame(rows)


def use_predictions(ws: Workspace, dataset: str, *, source: str, trained: pd.DataFrame, models: Sequence[str],
                    seed: int = 0, image_format: str = "png") -> pd.DataFrame:
    """Decide which test predictions the evaluation chapters read, after the trained models wrote theirs.

    ``source="trained"``: the trained models' (``trained``, the table of :func:`helpers.learning.grid.predict_all`);
    ``source="constructed"``: constructed ones (:func:`write_constructed`). Writes the record
    ``results/<dataset>/predictions_source.json`` and returns one row per model and case: ``model, case_id, rule,
    predicted_voxels``.
    """
    check_source(source)
    if source == "trained":
        write_json({"source": "trained"}, ws.results(dataset) / RECORD)
        out = trained.loc[trained["seed"] == int(seed), ["model", "case_id", "predicted_voxels"]].copy()
        out.insert(2, "rule", "trained model")
        return out.reset_index(drop=True)
    cases = load_split_cases(ws, dataset, split="test")
    return write_constructed(ws, dataset, cases, models=models, seed=seed, image_format=image_format)[
        ["model", "case_id", "rule", "predicted_voxels"]]


def predictions_source(ws: Workspace, dataset: str) -> dict | None:
    """The record of which predictions a dataset's evaluation reads, or None before the training section ran."""
    path = ws.results(dataset) / RECORD
    return read_json(path) if path.is_file() else None


#: The mark of a machine-dependent number in notebook outputs (see :func:`mark_machine_dependent`).
MARK = "≈"


def mark_machine_dependent(table: pd.DataFrame, columns: Sequence[str], *, decimals: int = 3) -> pd.DataFrame:
    """A copy of ``table`` with ``columns`` formatted as ``≈<value>``: numbers that depend on the processor's
    floating-point kernels (training results).

    The mark tells the reader that the value differs in its last digits from machine to machine; nbval's
    sanitiser (``tests/nbval_sanitize.cfg``) reduces every ``≈<number>`` to its structure, and
    ``tests/test_training_regression.py`` checks the values at a tolerance. Floats are printed with ``decimals``
    decimals. The sanitiser also takes the spaces before a mark, so the layout of a column does not depend on the
    digits as long as its header is wider than its values (``best_val_dice``, ``predicted_voxels``).
    """
    out = table.copy()
    for column in columns:
        values = out[column]
        if pd.api.types.is_integer_dtype(values):
            out[column] = values.map(lambda v: f"{MARK}{int(v)}")
        else:
            out[column] = values.map(lambda v: f"{MARK}nan" if pd.isna(v) else f"{MARK}{float(v):.{decimals}f}")
    return out
