"""The lesion tables of the specification grid (:mod:`helpers.analysis.multiverse`) and the one call per dataset that
writes its results.

Each combination of the structural axes (connectivity, clean-up) is one evaluation of the predictions with
:func:`helpers.metrics.lesions.evaluate_case_and_lesions` (the study's one lesion engine), at the minimum overlap of
1 voxel and with every tolerance of the grid: the other axes are reductions of these tables. A table is *wide*: one
row per model and reference lesion (false-positive components are not part of a boundary comparison), with the
columns :func:`lesion_frame` lists. Predictions are read once per model and case; a clean-up is applied to the
binary prediction as written (:func:`helpers.data.predictions.postprocess`, full connectivity), so a clean-up
smaller than the one the predictions were written with cannot be applied and its specifications are counted
``note`` rows.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.analysis.multiverse import (
    AXIS_BY_NAME, joint_tests, reversal_shares, specification_grid,
)
from helpers.data import predictions as _predictions
from helpers.evaluation import in_plane_voxel_mm
from helpers.metrics import image_diagonal, tolerance_name
from helpers.metrics.lesions import REFERENCE, evaluate_case_and_lesions
from helpers.base.progress import progress_bar

__all__ = ["WIDE_COLUMNS", "lesion_frame", "structural_tables", "dataset_multiverse"]

#: The value columns of a wide lesion table besides the ``contour_f1_<t>vox`` tolerance columns.
WIDE_COLUMNS = ("model", "case_id", "lesion_id", "overlap_voxels", "n_voxels", "area_fraction", "penalty_mm", "dice",
                "hd95", "hd95_pooled", "assd", "masd")


def lesion_frame(table: pd.DataFrame, *, model: str, case_id: str, penalty_mm: float,
                 tolerance_columns: dict[int, str]) -> pd.DataFrame:
    """The wide rows of one case's lesion table (:func:`helpers.metrics.lesions.evaluate_lesions`): reference
    lesions only, ``tolerance_columns`` mapping a tolerance in voxels to the table's column of contour F1 at it."""
    ref = table[table["kind"] == REFERENCE]
    out = pd.DataFrame({"model": model, "case_id": str(case_id), "lesion_id": ref["lesion_id"].to_numpy(),
                        "overlap_voxels": ref["overlap_voxels"].to_numpy(), "n_voxels": ref["n_voxels"].to_numpy(),
                        "area_fraction": ref["area_fraction"].to_numpy(), "penalty_mm": float(penalty_mm)})
    for name in ("dice", "hd95", "hd95_pooled", "assd", "masd"):
        out[name] = ref[name].to_numpy(dtype=float)
    for voxels, column in tolerance_columns.items():
        out[f"contour_f1_{int(voxels)}vox"] = ref[column].to_numpy(dtype=float)
    return out


def structural_tables(cases: Sequence, predictions_root, *, models: Sequence[str] | None = None,
                      connectivity: Sequence[str] = AXIS_BY_NAME["connectivity"].values,
                      cleanup_voxels: Sequence[int] = AXIS_BY_NAME["cleanup_voxels"].values, applied: int = 0,
                      tolerance_voxels: Sequence[int] = AXIS_BY_NAME["tolerance_voxels"].values,
                      progress: bool = False) -> tuple[dict, list[str]]:
    """``({(connectivity, cleanup_voxels): wide table}, notes)``: one evaluation per combination.

    ``applied`` is the clean-up the predictions were written with (``inference.json``); a smaller one is left
    out with a note. Tolerances are ``tolerance_voxels`` times one in-plane voxel
    (:func:`helpers.evaluation.in_plane_voxel_mm`)."""
    cases = list(cases)
    root = Path(predictions_root)
    models = _predictions.list_models(root) if models is None else [str(m) for m in models]
    voxel = in_plane_voxel_mm(cases)
    tolerances = {int(v): float(v) * voxel for v in tolerance_voxels}
    first, rest = tolerances[int(tolerance_voxels[0])], tuple(tolerances.values())
    columns = {v: tolerance_name("contour_f1", t) for v, t in tolerances.items()}
    notes = [f"clean-up {k} voxels below the applied {applied}: needs probabilities" for k in cleanup_voxels
             if k < applied]
    cleanups = [int(k) for k in cleanup_voxels if k >= applied]
    frames: dict = {(c, k): [] for c in connectivity for k in cleanups}
    for model, case in progress_bar([(m, c) for m in models for c in cases], progress=progress, desc="multiverse"):
        written = _predictions.read_prediction(root, model, case)
        spacing = tuple(float(s) for s in case.spacing) if case.spacing is not None else None
        penalty = image_diagonal(case.mask.shape, spacing)
        for k in cleanups:
            pred = written if k <= max(applied, 1) else _predictions.postprocess(
                written.astype(np.float32), threshold=0.5, min_component_voxels=k)
            for c in connectivity:
                _, table = evaluate_case_and_lesions(
                    case.mask, pred, spacing=spacing, connectivity=1 if c == "face" else None,
                    ignore=getattr(case, "ignore", None), min_overlap=1, tolerance=first, lesion_tolerances=rest,
                    penalty=penalty)
                table = table.assign(**{columns[v]: table["contour_f1"] for v in columns
                                        if columns[v] not in table.columns})
                frames[(c, k)].append(lesion_frame(table, model=model, case_id=str(case.case_id),
                                                   penalty_mm=penalty, tolerance_columns=columns))
    return {key: pd.concat(parts, ignore_index=True) for key, parts in frames.items() if parts}, notes


def dataset_multiverse(cases: Sequence, predictions_root, *, dataset: str, applied: int = 0,
                       models: Sequence[str] | None = None, axes: dict | None = None, n_resamples: int = 1000,
                       n_permutations: int = 10_000, seed: int = 0, progress: bool = False) -> dict:
    """The whole grid of one dataset: ``{"grid", "shares", "joint", "notes", "seconds"}`` (DataFrames, a list of
    notes, the seconds spent in the evaluations and in the reductions)."""
    axes = axes or {}
    start = time.perf_counter()
    tables, notes = structural_tables(
        cases, predictions_root, models=models, applied=applied,
        connectivity=axes.get("connectivity", AXIS_BY_NAME["connectivity"].values),
        cleanup_voxels=axes.get("cleanup_voxels", AXIS_BY_NAME["cleanup_voxels"].values),
        tolerance_voxels=axes.get("tolerance_voxels", AXIS_BY_NAME["tolerance_voxels"].values), progress=progress)
    evaluated = time.perf_counter()
    grid, differences = specification_grid(tables, dataset=dataset, axes=axes, n_resamples=n_resamples, seed=seed,
                                           case_ids=[str(c.case_id) for c in cases], with_case_differences=True)
    shares = reversal_shares(grid)
    joint = joint_tests(differences, dataset=dataset, n_permutations=n_permutations, seed=seed)
    done = time.perf_counter()
    return {"grid": grid, "shares": shares, "joint": joint, "notes": notes,
            "seconds": {"evaluations": evaluated - start, "reductions": done - evaluated,
                        "n_tables": len(tables)}}
