"""Analysis: the study's tables (analysis units per lesion set, aggregates with their n, spreads, reversals,
the paper's tables beside ours, findings), the precondition checked before a reversal is read, and the
sensitivity analyses that re-run the evaluation.

This package re-exports the tables' API of ``units`` (units and aggregates), ``paper`` (the paper's numbers and
its tables beside ours) and ``findings`` (tables read from the sections' files, qualitative examples, findings as
sentences), so ``from helpers import analysis; analysis.aggregate(...)``.
Imports :mod:`helpers.base`, :mod:`helpers.metrics`, :mod:`helpers.data`, :mod:`helpers.evaluation` and
:mod:`helpers.stats`; never matplotlib.
"""

from helpers.analysis.units import (
    STRATA, LESION_SETS, PRIMARY_LESION_SET, MIN_LESIONS, MODEL_LABELS, common_lesions, analysis_units,
    lesion_set_units, aggregate, select_lesion_set, rankable_rows, spread_table, reversal_table, seed_spread,
    seed_rankings, metric_variants, recall_at_thresholds, lesion_set_comparison,
)
from helpers.analysis.paper import (
    PAPER_FULL_SET_DICE, PAPER_SMALL_LESION, PAPER_Q1_MAX_DIFFERENCES, PAPER_AGREEMENT, PAPER_SPREADS,
    PAPER_DICE_LEADER_THIRD_HD95, pooled_q1_upper, dataset_summary, spread_comparison, small_lesion_comparison,
    agreement_counts, paper_full_set_dice, paper_q1_maxima, regime_calibration,
)
from helpers.analysis.findings import (
    collect, pooled_q1_upper_of, dataset_summaries, select_qualitative_examples, lesion_set_aggregates,
    common_set_sizes, findings,
)

__all__ = [
    "STRATA", "LESION_SETS", "PRIMARY_LESION_SET", "MIN_LESIONS", "common_lesions", "lesion_set_units",
    "select_lesion_set", "lesion_set_comparison", "lesion_set_aggregates", "paper_full_set_dice", "paper_q1_maxima",
    "regime_calibration",
    "pooled_q1_upper", "pooled_q1_upper_of", "common_set_sizes", "findings", "seed_spread", "seed_rankings",
    "MODEL_LABELS", "PAPER_FULL_SET_DICE", "PAPER_SMALL_LESION", "PAPER_Q1_MAX_DIFFERENCES", "PAPER_AGREEMENT",
    "PAPER_SPREADS", "PAPER_DICE_LEADER_THIRD_HD95", "analysis_units", "aggregate", "spread_table",
    "reversal_table", "dataset_summary", "spread_comparison", "small_lesion_comparison", "agreement_counts",
    "select_qualitative_examples", "metric_variants", "recall_at_thresholds", "collect", "dataset_summaries",
    "rankable_rows",
]
