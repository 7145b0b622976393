"""Evaluation: one case (reference and prediction) to tidy per-case and per-lesion rows, over a split or a
folder of predictions; the failure-mode operators on masks and the constructed predictions of the
regression run.

This package re-exports the evaluation API (:mod:`helpers.evaluation.tables`), so
``from helpers import evaluation; evaluation.evaluate_predictions(...)``. Imports :mod:`helpers.base`,
:mod:`helpers.metrics` and :mod:`helpers.data`.
"""

from helpers.evaluation.tables import (
    PER_CASE_FILE, PER_LESION_FILE, EDGES_FILE, TOLERANCE_VOXELS, in_plane_voxel_mm, resolve_tolerances,
    case_voxel_mm, case_tolerances,
    tolerance_metrics, evaluate_case_tables, lesion_rows, evaluate_cases, reference_quartile_edges,
    inference_record, evaluate_predictions, SEEDS_FOLDER, extra_seed_roots, read_tables, example_crops,
)

__all__ = [
    "PER_CASE_FILE", "PER_LESION_FILE", "EDGES_FILE", "TOLERANCE_VOXELS", "in_plane_voxel_mm", "resolve_tolerances",
    "case_voxel_mm", "case_tolerances",
    "tolerance_metrics", "evaluate_case_tables", "lesion_rows", "evaluate_cases", "reference_quartile_edges",
    "inference_record", "evaluate_predictions", "SEEDS_FOLDER", "extra_seed_roots", "read_tables", "example_crops",
]
