"""The failure-mode lab: synthetic lesions and models, the size x mode x severity sweep, calibration to a
common Dice, and the planted reversal analysed by the study's own code.

This package re-exports the lab's API, so ``from helpers.studies import failure_lab``.
"""

from helpers.studies.failure_lab.sweep import (
    SHAPES, draw_lesion, canvas_shape, analytic_expectation, sweep, sweep_summary, dice_ties, SyntheticCase,
    make_test_set, SyntheticModel, full_set_dice, calibrate, calibrate_models, evaluate_models, use_hd95_variant,
    DEMO_MODELS, reversal_demo, plot_metric_vs_size, plot_sweep_grid, plot_dice_vs_boundary, plot_mode_gallery,
    plot_demo,
)

__all__ = [
    "SHAPES", "draw_lesion", "canvas_shape", "analytic_expectation", "sweep", "sweep_summary", "dice_ties",
    "SyntheticCase", "make_test_set", "SyntheticModel", "full_set_dice", "calibrate", "calibrate_models",
    "evaluate_models", "use_hd95_variant", "DEMO_MODELS", "reversal_demo", "plot_metric_vs_size", "plot_sweep_grid",
    "plot_dice_vs_boundary", "plot_mode_gallery", "plot_demo",
]
