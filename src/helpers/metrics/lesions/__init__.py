"""Lesion-wise evaluation: connected-component labelling, lesion tables, lesion kinds and size quartiles,
and the lesion-wise protocol (matching, attribution of predicted components, per-lesion metrics).

This package re-exports the lesion API, so ``from helpers.metrics import lesions; lesions.label_lesions(...)``.
"""

from helpers.metrics.lesions.labels import (
    label_lesions, lesion_table, REFERENCE, FALSE_POSITIVE, QUARTILES, quartile_edges, assign_quartiles,
    with_quartile_bounds,
)
from helpers.metrics.lesions.matching import LESION_METRICS, evaluate_lesions, evaluate_case_and_lesions, lesion_summary

__all__ = [
    "label_lesions", "lesion_table", "LESION_METRICS", "evaluate_lesions", "evaluate_case_and_lesions",
    "lesion_summary", "REFERENCE", "FALSE_POSITIVE", "QUARTILES", "quartile_edges", "assign_quartiles",
    "with_quartile_bounds",
]
