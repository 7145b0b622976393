"""The sections of the study: one notebook each, run once per dataset or once for the whole study, with the sections
whose outputs it reads and the files it writes (:data:`SECTIONS`), the scopes of the pages that are not a dataset,
and the parameters the runner passes to every section notebook.

A section declares every file its notebook saves through the context (``results``, ``figures``): ``ctx.save`` and
``ctx.show`` refuse any other name, and a chapter that reads another chapter's file asks the context for it by
section and name (``ctx.input("evaluation", "overall_metrics.csv")``), which checks that section declares it.
``writes`` lists what the helpers the section calls write themselves (the data section's tables, the training's
summary, the evaluation's tidy tables), so that every file of a workspace's ``results/`` has one declared writer."""

from __future__ import annotations

from dataclasses import dataclass

from helpers.data.datasets import display_name

__all__ = [
    "GLOBAL", "SMALL_DATA", "SCOPE_TITLES", "scope_title", "RUNNER_PARAMETERS", "Section", "SECTIONS",
    "SECTION_BY_NAME", "DATASET_SECTIONS", "STUDY_SECTIONS", "section", "RUNNER_WRITES",
]

#: The scope of the chapters that span datasets (their notebooks' ``dataset`` parameter).
GLOBAL = "study"
#: The scope of the small-data study's chapter (its own data, not a registered dataset).
SMALL_DATA = "small_data"
#: What a reader sees for a scope that is not a dataset.
SCOPE_TITLES = {GLOBAL: "Across datasets", SMALL_DATA: "Small data"}


def scope_title(scope: str) -> str:
    """The display name of a page's scope: the registry's display name of a dataset (``"LiTS"``), or the title of
    a scope that spans datasets or has its own data (``"Across datasets"``, ``"Small data"``)."""
    if scope in SCOPE_TITLES:
        return SCOPE_TITLES[scope]
    return display_name(scope)


#: Parameters the runner itself passes to every notebook; each section notebook must declare them.
RUNNER_PARAMETERS = ("dataset", "profile", "workspace", "seed")


@dataclass(frozen=True)
class Section:
    """One section of the study: a notebook, its scope, the sections whose outputs it reads and the files it writes.

    ``scope`` is ``"dataset"`` (run once per dataset, ``depends`` are sections of the same dataset) or ``"study"``
    (run once; ``depends`` are per-dataset sections of *every* dataset, ``dataset`` is the name it runs under).
    ``results`` and ``figures``: the file names its notebook saves with ``ctx.save`` / ``ctx.show`` (into the
    page's results and figures folders); ``writes``: the files the helpers it calls write into its results folder
    (``<name>`` or ``<model>/<name>`` for per-model files)."""

    name: str
    notebook: str
    title: str
    scope: str = "dataset"
    depends: tuple[str, ...] = ()
    dataset: str = GLOBAL
    part: str = ""
    results: tuple[str, ...] = ()
    figures: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()


SECTIONS: tuple[Section, ...] = (
    Section(
        "metric_definitions", "00_metric_definitions.ipynb", "Metric definitions", scope="study", part="method",
        results=("metric_definitions_empty_masks.csv", "metric_definitions_lesion_example.csv",
                 "metric_definitions_grid_error.csv"),
        figures=("metric_definitions_shifted_square.png", "metric_definitions_hd95_variants.png",
                 "metric_definitions_lesions.png", "metric_definitions_grid_error.png"),
        writes=("methods.md",),
    ),
    Section(
        "data", "01_data.ipynb", "Data",
        figures=("lesion_sizes.png", "small_lesions.png", "examples.png"),
        writes=("data_manifest.json", "splits.json", "cases.csv", "lesions.csv", "preprocessing.json",
                "data_report.json", "calibration.csv", "annotation_ceiling.csv"),
    ),
    Section(
        "training", "02_training.ipynb", "Training", depends=("data",),
        figures=("training_curves.png",),
        writes=("training_summary.csv", "predictions_source.json"),
    ),
    Section(
        "evaluation", "03_evaluation.ipynb", "Overall metrics", depends=("data", "training"),
        results=("overall_metrics.csv",),
        writes=("per_case_metrics.csv", "per_lesion_metrics.csv", "quartile_edges.json", "inference.json"),
    ),
    Section(
        "stratification", "04_stratification.ipynb", "Lesion-size stratification", depends=("evaluation",),
        results=("size_stratified_metrics.csv", "small_lesion_metrics.csv", "spread_among_top_models.csv",
                 "cleanup_sensitivity.csv", "seed_aggregates.csv", "seed_spread.csv", "seed_rankings.csv",
                 "claims.csv", "dice_equivalence.csv", "spread_intervals.csv", "claims_robustness.csv",
                 "architecture_intervals.csv", "regime_calibration.csv"),
        figures=("overall_vs_small_lesion_comparison.png", "quartile_disagreement.png", "boundary_error_vs_size.png",
                 "q1_hd95_distribution.png"),
    ),
    Section(
        "reversals", "05_reversals.ipynb", "Ranking reversals", depends=("stratification",),
        results=("ranking_reversals.csv",), figures=("ranking_reversal_matrix.png", "rank_heatmap.png"),
    ),
    Section(
        "bootstrap", "06_bootstrap.ipynb", "Bootstrap robustness", depends=("stratification",),
        results=("bootstrap_directional_robustness.csv",), figures=("bootstrap_forest.png",),
    ),
    Section(
        "qualitative", "07_qualitative.ipynb", "Qualitative examples", depends=("stratification",),
        figures=("qualitative_small_lesion_examples.png",),
    ),
    Section(
        "cross_dataset",
        "08_cross_dataset.ipynb",
        "Across datasets: the paper's tables",
        scope="study",
        depends=("data", "evaluation", "stratification", "reversals", "bootstrap"),
        part="across",
        results=("overall_metrics.csv", "size_stratified_metrics.csv", "small_lesion_metrics.csv",
                 "ranking_reversals.csv", "bootstrap_directional_robustness.csv", "paper_table_4_5_datasets.csv",
                 "paper_table_4_1_dice.csv", "paper_table_4_6_spreads.csv",
                 "paper_table_4_2_small_lesions.csv", "paper_table_4_2_small_lesions_by_lesion_set.csv",
                 "paper_q1_maxima.csv", "paper_table_4_3_agreement.csv",
                 "paper_table_4_3_agreement_by_lesion_set.csv", "claims_small_lesions.csv",
                 "agreement_at_resolution.csv"),
        figures=("overall_vs_small_lesion_comparison.png", "quartile_disagreement.png", "ranking_reversal_matrix.png",
                 "qualitative_small_lesion_examples.png"),
    ),
    Section(
        "multiverse", "08b_multiverse.ipynb", "Which conclusions survive every definition?", scope="study",
        depends=("data", "training", "evaluation"), part="across",
        results=("multiverse.csv", "multiverse_shares.csv", "multiverse_joint_tests.csv",
                 "multiverse_grid_error.csv", "multiverse_primary_vs_grid_error.csv", "multiverse_timing.json"),
        figures=("multiverse_curve_wmh.png", "multiverse_curve_lits.png", "multiverse_curve_idrid.png"),
    ),
    Section(
        "failure_modes", "09_failure_modes.ipynb", "Failure-mode laboratory", scope="study", part="across",
        results=("failure_modes_sweep.csv", "failure_modes_calibration.csv", "failure_modes_reversal_verdicts.csv",
                 "failure_modes_bootstrap.csv", "failure_modes_verdict_calibration.csv",
                 "claims_method.csv"),
        figures=("failure_modes_gallery.png", "failure_modes_sweep_disk.png", "failure_modes_sweep_irregular.png",
                 "failure_modes_dice_vs_hd95.png", "failure_modes_demo.png"),
    ),
    Section(
        "small_data", "10_small_data.ipynb", "Small data: is there a best model at N = 9?", scope="study",
        dataset=SMALL_DATA, part="small",
        figures=("small_data_cases.png", "small_data_per_image.png", "small_data_intervals.png", "small_data_cd.png",
                 "small_data_rank_volatility.png", "small_data_uncertainty.png", "small_data_explain.png",
                 "small_data_visual_paradox.png", "small_data_hpo_history.png"),
        writes=("data_manifest.json", "data_summary.csv", "splits.json", "scores.csv", "model_status.csv",
                "training_history.csv", "hpo.journal", "hpo_trials.csv", "best_params.json", "search_space.json",
                "summary.csv", "pairs.csv", "friedman.csv", "fold_ranks.csv", "rank_agreement.csv",
                "rank_ranges.csv", "zero_shot.csv"),
        results=("claims_small_data.csv", "equivalence.csv"),
    ),
)
SECTION_BY_NAME = {s.name: s for s in SECTIONS}
#: What the runner itself writes after the sections, by scope: the run's claims table
#: (:func:`helpers.analysis.claims.assemble`).
RUNNER_WRITES: dict[str, tuple[str, ...]] = {GLOBAL: ("claims.csv",)}
DATASET_SECTIONS = tuple(s for s in SECTIONS if s.scope == "dataset")
STUDY_SECTIONS = tuple(s for s in SECTIONS if s.scope == "study")


def section(name: str) -> Section:
    """The section called ``name`` (error naming the sections otherwise)."""
    if name not in SECTION_BY_NAME:
        raise ValueError(f"section must be one of {sorted(SECTION_BY_NAME)}, got {name!r}")
    return SECTION_BY_NAME[name]
