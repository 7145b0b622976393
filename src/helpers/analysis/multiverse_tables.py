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

from helpers.analysis.multiverse import AXES as AXES_LIST
from helpers.analysis.multiverse import AXIS_BY_NAME, joint_tests, reversal_shares, specification_grid
from helpers.data import predictions as _predictions
from helpers.data import load_split_cases
from helpers.evaluation import in_plane_voxel_mm, inference_record
from helpers.metrics import image_diagonal, tolerance_name
from helpers.metrics.grid_error import exceeds_grid_error, grid_error_at_spacing
from helpers.metrics.lesions import REFERENCE, evaluate_case_and_lesions
from helpers.base.progress import progress_bar

__all__ = ["WIDE_COLUMNS", "lesion_frame", "structural_tables", "dataset_multiverse", "dataset_spacing",
           "dataset_grid_error", "primary_vs_grid_error", "study_multiverse"]

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
    primary = tables.get((AXIS_BY_NAME["connectivity"].primary, AXIS_BY_NAME["cleanup_voxels"].primary))
    q1_voxels = _q1_voxels(primary) if primary is not None else float("nan")
    joint = joint_tests(differences, dataset=dataset, n_permutations=n_permutations, seed=seed)
    done = time.perf_counter()
    return {"grid": grid, "shares": shares, "joint": joint, "notes": notes, "q1_voxels": q1_voxels,
            "seconds": {"evaluations": evaluated - start, "reductions": done - evaluated,
                        "n_tables": len(tables)}}


def _q1_voxels(table: pd.DataFrame) -> float:
    """The median size in voxels of the Q1 reference lesions (area-fraction quartile of all reference lesions)."""
    once = table.drop_duplicates(["case_id", "lesion_id"])
    if not len(once):
        return float("nan")
    edge = np.quantile(once["area_fraction"].to_numpy(dtype=float), 0.25, method="linear")
    return float(np.median(once.loc[once["area_fraction"] <= edge, "n_voxels"]))


def dataset_spacing(cases: Sequence) -> tuple[float, ...]:
    """The median spacing per axis of ``cases`` (mm; 1 per axis for a case without spacing)."""
    spacings = [tuple(float(s) for s in c.spacing) if c.spacing is not None else (1.0,) * c.mask.ndim for c in cases]
    return tuple(float(v) for v in np.median(np.asarray(spacings, dtype=float), axis=0))


def dataset_grid_error(cases: Sequence, *, radii_voxels: Sequence[float] = (0.75, 1, 1.5, 2, 3, 4, 6),
                       n_offsets: int = 6, seed: int = 0) -> pd.DataFrame:
    """The grid error (:func:`helpers.metrics.grid_error.grid_error_table`) at a dataset's spacing: discs or balls
    of ``radii_voxels`` in-plane voxels shifted and grown by 0.3, 0.6 and 0.9 in-plane voxels, contour F1 at the
    study's primary tolerance (one in-plane voxel; :func:`helpers.metrics.grid_error.grid_error_at_spacing`)."""
    return grid_error_at_spacing(dataset_spacing(cases), radii_voxels=radii_voxels, n_offsets=n_offsets, seed=seed)


def primary_vs_grid_error(grid: pd.DataFrame, errors: pd.DataFrame, *, q1_voxels: float) -> pd.DataFrame:
    """The primary specification's Q1 differences beside the grid's own error for lesions of ``q1_voxels`` (the
    median Q1 lesion): ``exceeds_grid_error`` says "supported" when the difference is larger than every error of
    the analytic shapes of about that size (:func:`helpers.metrics.grid_error.exceeds_grid_error`)."""
    prim = grid[grid["is_primary"].astype(bool) & (grid["stratum"] == "Q1")]
    rows = []
    for row in prim.itertuples():
        name = row.value_column if row.metric != "contour_f1" else "contour_f1"
        check = exceeds_grid_error(row.difference, metric=name, n_voxels=q1_voxels, errors=errors)
        rows.append({"dataset": row.dataset, "metric": row.metric, "model_a": row.model_a, "model_b": row.model_b,
                     "difference": row.difference, "q1_median_voxels": q1_voxels, "grid_error_bound": check["bound"],
                     "exceeds_grid_error": check["verdict"]})
    return pd.DataFrame(rows)


def study_multiverse(ws, datasets: Sequence[str], *, axes: dict | None = None, n_resamples: int = 1000,
                     n_permutations: int = 10_000, radii_voxels: Sequence[float] = (0.75, 1, 1.5, 2, 3, 4, 6),
                     n_offsets: int = 6, seed: int = 0, progress: bool = False) -> dict:
    """The chapter's one call: every dataset's grid (:func:`dataset_multiverse`) on its test split and the
    predictions the training section wrote (clean-up as recorded in ``inference.json``), its grid error
    (:func:`dataset_grid_error`) and the primary differences beside it (:func:`primary_vs_grid_error`).

    Returns ``{"grid", "shares", "joint", "grid_error", "primary_vs_grid_error"}`` (DataFrames over datasets) and
    ``"timing"`` (seconds per dataset and step, the number of specifications, notes)."""
    parts: dict = {k: [] for k in ("grid", "shares", "joint", "grid_error", "primary_vs_grid_error")}
    timing: dict = {"datasets": {}, "n_resamples": int(n_resamples), "n_permutations": int(n_permutations)}
    for dataset in datasets:
        cases = load_split_cases(ws, dataset, split="test")
        applied = int(inference_record(ws, dataset).get("min_component_voxels", 0) or 0)
        out = dataset_multiverse(cases, ws.predictions(dataset), dataset=dataset, applied=applied, axes=axes,
                                 n_resamples=n_resamples, n_permutations=n_permutations, seed=seed,
                                 progress=progress)
        start = time.perf_counter()
        errors = dataset_grid_error(cases, radii_voxels=radii_voxels, n_offsets=n_offsets, seed=seed)
        errors.insert(0, "dataset", dataset)
        seconds = dict(out["seconds"], grid_error=time.perf_counter() - start)
        for key in ("grid", "shares", "joint"):
            parts[key].append(out[key])
        parts["grid_error"].append(errors)
        parts["primary_vs_grid_error"].append(primary_vs_grid_error(out["grid"], errors, q1_voxels=out["q1_voxels"]))
        timing["datasets"][dataset] = {**seconds, "n_cases": len(cases), "applied_cleanup_voxels": applied,
                                       "notes": out["notes"]}
    result = {k: pd.concat(v, ignore_index=True) if v else pd.DataFrame() for k, v in parts.items()}
    counts = result["grid"].groupby(["stratum", "metric"]).apply(
        lambda g: len(g.drop_duplicates([a.name for a in AXES_LIST])), include_groups=False) if len(result["grid"]) \
        else pd.Series(dtype=int)
    timing["n_specifications"] = {f"{s}/{m}": int(n) for (s, m), n in counts.items()}
    timing["seconds_total"] = float(sum(v["evaluations"] + v["reductions"] + v["grid_error"]
                                        for v in timing["datasets"].values()))
    result["timing"] = timing
    return result
