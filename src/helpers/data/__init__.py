"""Data: the published on-disk layouts and their readers, the synthetic stand-ins written in those layouts,
preprocessing, the dataset registry, splits and predictions on disk.

This package re-exports the generic front over the registry (:mod:`helpers.data.cases`: ``find_cases``,
``load_cases``, ``prepare_dataset``, the data report), so ``from helpers import data; data.find_cases(...)``.
Imports :mod:`helpers.base` and :mod:`helpers.metrics`.
"""

from helpers.data.cases import (
    find_cases, dataset_folder, read_case, load_cases, manifest_root, load_split_cases, describe_cases,
    DatasetSummary, q1_upper_bound, summary_table, quartile_edges, prepare_dataset, load_summary, check_dataset,
    plot_lesion_sizes, plot_examples, plot_small_lesions,
)
from helpers.data.datasets import is_user_dataset, read_case_files

__all__ = [
    "find_cases", "dataset_folder", "read_case", "read_case_files", "is_user_dataset", "load_cases", "manifest_root",
    "load_split_cases", "describe_cases", "DatasetSummary", "q1_upper_bound", "summary_table", "quartile_edges",
    "prepare_dataset",
    "load_summary", "check_dataset", "plot_lesion_sizes", "plot_examples", "plot_small_lesions",
]
