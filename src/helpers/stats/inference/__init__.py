"""Hypothesis tests for small N: sign-flip tests, Holm, effect sizes, equivalence tests (TOST), Friedman with
Iman-Davenport and Nemenyi, and the units x models table they read.

Every function here answers one question a reader of a small-N benchmark should ask: is a paired difference
distinguishable from zero at this N (sign-flip test, effect sizes, the smallest attainable p), is it within a margin
("similar Dice": paired TOST, t or sign-flip, and the smallest margin the data support), which of many
comparisons survive a family-wise correction (Holm), and do the models' ranks differ beyond chance (Friedman,
Iman-Davenport, Nemenyi). Intervals and every resampling live in :mod:`helpers.stats.bootstrap`; ranks (one tie
policy: average ranks) in :mod:`helpers.stats.ranking`.

This package re-exports the inference API of its modules: ``wide`` (the units x models table, with the
statistics' argument checks of :mod:`helpers.base.checks`), ``paired`` (paired tests and effect sizes, Holm),
``equivalence`` (paired equivalence tests) and ``friedman`` (Friedman, Iman-Davenport, Nemenyi).
"""

from helpers.stats.inference.wide import as_rng, as_level, as_count, check_nan_policy, as_wide, complete_units
from helpers.stats.inference.paired import (
    cohens_dz, hedges_correction, SignFlipResult, sign_flip_test, min_attainable_p, attainable_p_table, holm_adjust,
    detectable_difference,
    JointSignFlipResult, joint_sign_flip_test,
)
from helpers.stats.inference.equivalence import (
    EquivalenceResult, tost_paired, signflip_equivalence, smallest_equivalence_margin,
)
from helpers.stats.inference.friedman import (
    FriedmanResult, friedman_test, nemenyi_q, nemenyi_critical_difference, NemenyiResult, nemenyi_test,
    FriedmanNemenyi, friedman_then_nemenyi,
)

__all__ = [
    "as_rng", "as_level", "as_count", "check_nan_policy", "as_wide", "complete_units", "cohens_dz",
    "hedges_correction", "SignFlipResult", "sign_flip_test", "min_attainable_p", "attainable_p_table",
    "holm_adjust", "FriedmanResult", "friedman_test", "nemenyi_q", "nemenyi_critical_difference", "NemenyiResult",
    "nemenyi_test", "FriedmanNemenyi", "friedman_then_nemenyi", "EquivalenceResult", "tost_paired",
    "signflip_equivalence", "smallest_equivalence_margin", "detectable_difference", "JointSignFlipResult",
    "joint_sign_flip_test",
]
