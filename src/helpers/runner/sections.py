"""The sections of the study: one notebook each, run once per dataset or once for the whole study, with the sections
whose outputs it reads (:data:`SECTIONS`), and the parameters the runner passes to every section notebook."""

from __future__ import annotations

from dataclasses import dataclass

from helpers.runner.context import GLOBAL

__all__ = ["RUNNER_PARAMETERS", "Section", "SECTIONS", "SECTION_BY_NAME", "DATASET_SECTIONS", "STUDY_SECTIONS"]


#: Parameters the runner itself passes to every notebook; each section notebook must declare them.
RUNNER_PARAMETERS = ("dataset", "profile", "workspace", "seed")


@dataclass(frozen=True)
class Section:
    """One section of the study: a notebook, its scope and the sections whose outputs it reads.

    ``scope`` is ``"dataset"`` (run once per dataset, ``depends`` are sections of the same dataset) or ``"study"``
    (run once; ``depends`` are per-dataset sections of *every* dataset, ``dataset`` is the name it runs under)."""

    name: str
    notebook: str
    title: str
    scope: str = "dataset"
    depends: tuple[str, ...] = ()
    dataset: str = GLOBAL
    part: str = ""


SECTIONS: tuple[Section, ...] = (
    Section("metric_definitions", "00_metric_definitions.ipynb", "Metric definitions", scope="study", part="method"),
    Section("data", "01_data.ipynb", "Data"),
    Section("training", "02_training.ipynb", "Training", depends=("data",)),
    Section("evaluation", "03_evaluation.ipynb", "Overall metrics", depends=("data", "training")),
    Section("stratification", "04_stratification.ipynb", "Lesion-size stratification", depends=("evaluation",)),
    Section("reversals", "05_reversals.ipynb", "Ranking reversals", depends=("stratification",)),
    Section("bootstrap", "06_bootstrap.ipynb", "Bootstrap robustness", depends=("stratification",)),
    Section("qualitative", "07_qualitative.ipynb", "Qualitative examples", depends=("stratification",)),
    Section(
        "cross_dataset",
        "08_cross_dataset.ipynb",
        "Across datasets: the paper's tables",
        scope="study",
        depends=("data", "evaluation", "stratification", "reversals", "bootstrap"),
        part="across",
    ),
    Section("failure_modes", "09_failure_modes.ipynb", "Failure-mode laboratory", scope="study", part="across"),
    Section(
        "small_data", "10_small_data.ipynb", "Small data: is there a best model at N = 9?", scope="study",
        dataset="small_data", part="small",
    ),
)
SECTION_BY_NAME = {s.name: s for s in SECTIONS}
DATASET_SECTIONS = tuple(s for s in SECTIONS if s.scope == "dataset")
STUDY_SECTIONS = tuple(s for s in SECTIONS if s.scope == "study")
