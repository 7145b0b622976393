"""Sensitivity analyses that re-run the evaluation: the predicted-component clean-up threshold and the extra
training seeds.

Each evaluates predictions again with :mod:`helpers.evaluation` (the one row builder) and aggregates the rows
with :mod:`helpers.analysis`, exactly as the main evaluation's tables are aggregated, so this module sits above
both (study layer); :mod:`helpers.evaluation` itself never imports the analysis.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from helpers import analysis as _analysis
from helpers.data import predictions as _predictions
from helpers.evaluation import (
    EDGES_FILE, evaluate_case_tables, evaluate_cases, extra_seed_roots, lesion_rows, read_tables,
    reference_quartile_edges, case_tolerances,
)
from helpers.data import load_split_cases
from helpers.base.io import read_json
from helpers.metrics.lesions import assign_quartiles
from helpers.base.paths import Workspace
from helpers.base.progress import progress_bar

__all__ = [
    "seed_tables", "cleanup_sensitivity", "seed_aggregates"]


def cleanup_sensitivity(
    cases: Sequence,
    predictions_root,
    *,
    dataset: str,
    thresholds: Sequence[int],
    applied: int = 0,
    models: Sequence[str] | None = None,
    tolerance: float | None = None,
    min_overlap: int = 1,
    connectivity: int | None = None,
    penalty: float | None = None,
    min_lesions: int = 5,
    progress: bool = True,
) -> pd.DataFrame:
    """The predicted-component clean-up threshold as a sensitivity analysis: each prediction is cleaned again of
    components smaller than ``k`` voxels (:func:`helpers.data.predictions.postprocess`, full connectivity) for each
    ``k`` in ``thresholds`` and re-evaluated; detection and the Q1 common-set boundary metrics per ``k``.

    ``applied`` is the threshold the predictions were written with (``inference.json``): a smaller ``k`` cannot
    be undone from binary predictions, so its rows say so (``note``) instead of repeating ``applied``'s numbers.

    Returns
    -------
    pandas.DataFrame
        ``dataset, min_component_voxels, model, stratum, metric, value, n, n_penalty, rankable, note`` for
        ``lesion_recall`` and ``fp_lesions_per_case`` (overall) and Q1 ``dice``, ``hd95``, ``contour_f1`` of the
        ``common`` set.
    """
    cases = list(cases)
    root = Path(predictions_root)
    models = _predictions.list_models(root) if models is None else [str(m) for m in models]
    rows = []
    for k in thresholds:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ValueError(f"thresholds must be non-negative integers (voxels), got {k!r}")
        if k < applied:
            rows.append({"dataset": dataset, "min_component_voxels": int(k), "model": "", "stratum": "",
                         "metric": "", "value": np.nan, "n": 0, "n_penalty": 0, "rankable": False,
                         "note": f"below the applied clean-up ({applied} voxels): needs probabilities"})
            continue
        case_rows, frames = [], []
        for model, case in progress_bar([(m, c) for m in models for c in cases], progress=progress,
                                        desc=f"clean-up {k}"):
            pred = _predictions.read_prediction(root, model, case)
            pred = _predictions.postprocess(pred.astype(np.float32), threshold=0.5, min_component_voxels=int(k))
            primary, _, _ = case_tolerances(case, tolerance, ())
            part, table = evaluate_case_tables(case, pred, dataset=dataset, model=model, tolerance=primary,
                                               min_overlap=min_overlap, connectivity=connectivity, penalty=penalty)
            case_rows.extend(part)
            frames.append(lesion_rows(table, dataset=dataset, model=model, case_id=str(case.case_id)))
        per_case = pd.DataFrame(case_rows)
        per_lesion = pd.concat([f for f in frames if len(f)], ignore_index=True)
        edges = reference_quartile_edges(per_lesion)
        per_lesion["quartile"] = assign_quartiles(per_lesion["area_fraction"], edges)
        agg = _analysis.aggregate(_analysis.analysis_units(per_case, per_lesion), min_lesions=min_lesions)
        keep = (((agg["stratum"] == "overall") & agg["metric"].isin(["lesion_recall", "fp_lesions_per_case"]))
                | ((agg["stratum"] == "Q1") & agg["metric"].isin(["dice", "hd95", "contour_f1"])))
        sub = agg[keep].assign(min_component_voxels=int(k))
        rows.extend(sub[["dataset", "min_component_voxels", "model", "stratum", "metric", "value", "n",
                         "n_penalty", "rankable", "note"]].to_dict("records"))
    return pd.DataFrame(rows)


def seed_tables(ws: Workspace, dataset: str, *, main_seed: int = 0, predictions_root=None,
                cases: Sequence | None = None, split: str = "test", tolerance: float | None = None,
                min_overlap: int = 1, connectivity: int | None = None, penalty: float | None = None,
                progress: bool = True) -> dict[int, tuple[pd.DataFrame, pd.DataFrame]]:
    """The evaluation tables of every trained seed: ``{seed: (per_case, per_lesion)}``, the main seed's as written
    (:func:`read_tables`), the extra seeds' (:func:`extra_seed_roots`) evaluated here in the same way. Quartile
    edges are the main evaluation's (they depend on the reference lesions only), so a lesion is in the same
    quartile for every seed."""
    root = ws.predictions(dataset) if predictions_root is None else Path(predictions_root)
    tables = {int(main_seed): read_tables(ws, dataset)}
    extra = extra_seed_roots(root)
    if extra:
        info = read_json(ws.results(dataset) / EDGES_FILE)
        edges = np.array([info["edges"][k] for k in ("q1_upper", "q2_upper", "q3_upper")], dtype=float)
        cases = load_split_cases(ws, dataset, split=split) if cases is None else list(cases)
        tol = info.get("tolerance_mm") if tolerance is None else tolerance
        for k, seed_root in extra.items():
            pc, pl, _ = evaluate_cases(cases, seed_root, dataset=dataset, tolerance=tol, min_overlap=min_overlap,
                                       connectivity=connectivity, penalty=penalty, progress=progress)
            pl["quartile"] = assign_quartiles(pl["area_fraction"], edges)
            tables[int(k)] = (pc, pl)
    return tables


def seed_aggregates(ws: Workspace, dataset: str, *, main_seed: int = 0, min_lesions: int = 5,
                    tables: dict | None = None, **kwargs) -> pd.DataFrame:
    """Aggregates of every trained seed, with a ``seed`` column, from :func:`seed_tables` (or its result
    ``tables``): every lesion set (:func:`helpers.analysis.lesion_set_units`)."""
    tables = seed_tables(ws, dataset, main_seed=main_seed, **kwargs) if tables is None else tables
    return pd.concat([_analysis.aggregate(_analysis.lesion_set_units(pc, pl), min_lesions=min_lesions)
                      .assign(seed=int(k)) for k, (pc, pl) in tables.items()], ignore_index=True)
