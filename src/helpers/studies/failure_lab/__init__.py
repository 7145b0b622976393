"""The failure-mode lab: synthetic lesions and models, the size x mode x severity sweep, calibration to a
common Dice, and the planted reversal analysed by the study's own code.

Its modules, in import order: ``lesions`` (synthetic lesions, closed forms, shared checks), ``sweep`` (the size x
mode x severity sweep), ``models`` (test set, synthetic models, calibration), ``reversal`` (evaluation and the
planted reversal), ``figures``. This package re-exports the lab's API, so ``from helpers.studies import failure_lab``.
"""

from helpers.studies.failure_lab.lesions import draw_lesion, canvas_shape, analytic_expectation
from helpers.studies.failure_lab.sweep import SHAPES, sweep, sweep_summary, dice_ties
from helpers.studies.failure_lab.models import (
    SyntheticCase, make_test_set, SyntheticModel, full_set_dice, calibrate, calibrate_models,
)
from helpers.studies.failure_lab.reversal import evaluate_models, use_hd95_variant, DEMO_MODELS, reversal_demo
from helpers.studies.failure_lab.figures import (
    plot_metric_vs_size, plot_sweep_grid, plot_dice_vs_boundary, plot_mode_gallery, plot_demo,
)

__all__ = [
    "SHAPES", "draw_lesion", "canvas_shape", "analytic_expectation", "sweep", "sweep_summary", "dice_ties",
    "SyntheticCase", "make_test_set", "SyntheticModel", "full_set_dice", "calibrate", "calibrate_models",
    "evaluate_models", "use_hd95_variant", "DEMO_MODELS", "reversal_demo", "plot_metric_vs_size", "plot_sweep_grid",
    "plot_dice_vs_boundary", "plot_mode_gallery", "plot_demo",
]
