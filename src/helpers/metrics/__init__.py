"""The metrics: one empty-mask policy, surface distances computed once per case and reduced to every
boundary metric, the metric registry and the per-case evaluation, pictures of the definitions, and (in
:mod:`helpers.metrics.lesions`) lesion labelling, tables, size quartiles and the lesion-wise protocol.

This package re-exports the case-level metric API, so ``from helpers import metrics; metrics.dice(...)``.
Imports :mod:`helpers.base` only.
"""

from helpers.metrics.distances import (
    DEFAULT_TOLERANCE, DEFAULT_PERCENTILE, TOLERANCE_SLACK, image_diagonal, resolve_penalty, boundary, mask_box,
    union_of_boxes, Crop, on_boundary, nearest_distances, linear_percentile, SurfaceDistances, surface_distances,
    dice, iou, hausdorff, hd95, assd, masd, nsd, contour_f1, overlap_counts,
)
from helpers.metrics.registry import (
    CaseInputs, METRIC_KINDS, TABLES, Metric, METRICS, tolerance_name, split_tolerance_name, metric, metric_names,
    VOXEL_SUFFIX, voxel_tolerance_name,
    higher_is_better, label, CaseMetrics, case_metrics_from, evaluate_case, empty_mask_table,
)
from helpers.metrics.pictures import plot_boundaries, plot_distance_map

__all__ = [
    "DEFAULT_TOLERANCE", "DEFAULT_PERCENTILE", "TOLERANCE_SLACK", "image_diagonal", "resolve_penalty", "boundary",
    "mask_box", "union_of_boxes", "Crop", "on_boundary", "nearest_distances", "linear_percentile",
    "SurfaceDistances", "surface_distances", "dice", "iou", "hausdorff", "hd95", "assd", "masd", "nsd",
    "contour_f1", "CaseInputs", "METRIC_KINDS", "TABLES", "Metric", "METRICS", "tolerance_name", "VOXEL_SUFFIX", "voxel_tolerance_name",
    "split_tolerance_name", "metric", "metric_names", "higher_is_better", "label", "CaseMetrics", "overlap_counts",
    "case_metrics_from", "evaluate_case", "empty_mask_table", "plot_boundaries", "plot_distance_map",
]
