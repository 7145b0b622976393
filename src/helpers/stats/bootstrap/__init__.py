"""Every resampling, from one draw: intervals of a mean, per-model summaries and pairwise comparisons, the
paired case bootstrap of model differences and its verdicts, the rank bootstrap.

This package re-exports the bootstrap API of its modules: ``resampling`` (the one draw, intervals of a mean,
per-model summaries), ``comparisons`` (the paired case bootstrap of model differences, its verdicts, pairwise
comparisons) and ``ranks`` (the rank bootstrap).
"""

from helpers.stats.bootstrap.resampling import (
    resample_indices, two_level_means, resample_weights, sufficient_statistics, resampled_means, BootstrapInterval,
    percentile_bounds, bootstrap_mean_ci, summarize_models,
)
from helpers.stats.bootstrap.comparisons import (
    ALPHA, MIN_CASES, ZERO_TOLERANCE, verdict_names, verdict, bootstrap_p_value, joint_reversal_share, holm_within,
    paired_differences, directional_robustness, paired_comparisons,
)
from helpers.stats.bootstrap.ranks import RankBootstrap, bootstrap_ranks

__all__ = [
    "ALPHA", "MIN_CASES", "ZERO_TOLERANCE", "verdict_names", "resample_indices", "two_level_means", "resample_weights",
    "sufficient_statistics",
    "resampled_means", "BootstrapInterval", "percentile_bounds", "bootstrap_mean_ci", "summarize_models", "verdict",
    "bootstrap_p_value", "joint_reversal_share", "holm_within", "paired_differences", "directional_robustness",
    "paired_comparisons", "RankBootstrap", "bootstrap_ranks",
]
