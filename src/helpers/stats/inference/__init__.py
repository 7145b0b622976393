"""Hypothesis tests for small N: sign-flip tests, Holm, effect sizes, Friedman with Iman-Davenport and
Nemenyi, and the units x models table they read.

This package re-exports the inference API.
"""

from helpers.stats.inference.paired import (
    as_rng, as_level, as_count, check_nan_policy, as_wide, complete_units, cohens_dz, hedges_correction,
    SignFlipResult, sign_flip_test, min_attainable_p, attainable_p_table, holm_adjust, FriedmanResult,
    friedman_test, nemenyi_q, nemenyi_critical_difference, NemenyiResult, nemenyi_test, FriedmanNemenyi,
    friedman_then_nemenyi,
)

__all__ = [
    "as_rng", "as_level", "as_count", "check_nan_policy", "as_wide", "complete_units", "cohens_dz",
    "hedges_correction", "SignFlipResult", "sign_flip_test", "min_attainable_p", "attainable_p_table",
    "holm_adjust", "FriedmanResult", "friedman_test", "nemenyi_q", "nemenyi_critical_difference", "NemenyiResult",
    "nemenyi_test", "FriedmanNemenyi", "friedman_then_nemenyi",
]
