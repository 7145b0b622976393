"""The plan and its staleness: every task of a profile (a section for a dataset) in dependency order, with its
merged parameters validated against the notebook's parameters cell; each task's key (notebook source, parameters,
the package's code, the upstream sections' keys) and its stamp, which together say whether a section is up to
date."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import nbformat

from helpers.base import io as _io
from helpers.base.paths import Workspace, project_root, relative
from helpers.runner.errors import StudyError
from helpers.runner.sections import (
    DATASET_SECTIONS, RUNNER_PARAMETERS, SECTION_BY_NAME, SECTIONS, STUDY_SECTIONS, Section,
)

__all__ = [
    "Task", "notebooks_dir", "notebook_parameters", "plan", "notebook_source_hash", "code_hash", "assign_keys",
    "stamp_path", "executed_path", "is_up_to_date", "DATASETS_SECTIONS",
]

#: The study sections that read every dataset's sections: the runner passes them ``datasets`` (the profile's).
DATASETS_SECTIONS = ("cross_dataset", "multiverse")


@dataclass
class Task:
    section: Section
    dataset: str  # the dataset it runs for (GLOBAL/"small_data" for study sections)
    params: dict
    origin: str  # where the parameters come from, for error messages
    key: str = ""

    @property
    def label(self) -> str:
        return f"{self.dataset} · {self.section.name}"


def notebooks_dir() -> Path:
    return project_root() / "notebooks"


def notebook_parameters(path: Path) -> dict[str, dict]:
    """The parameters a notebook declares in its cell tagged ``parameters`` (name -> default, help)."""
    import papermill  # lazy: papermill pulls in nbclient and jupyter; `--help` and the tests of the plan need neither

    if not path.exists():
        raise StudyError(f"notebook {relative(path)} not found (section notebooks live in notebooks/)")
    declared = papermill.inspect_notebook(str(path))
    if not declared:
        raise StudyError(f"{relative(path)}: no cell tagged 'parameters' (the runner passes its parameters there)")
    return declared


def plan(profile: dict, profile_path: Path, workspace: str, *, datasets: Iterable[str] | None = None,
         sections: Iterable[str] | None = None) -> list[Task]:
    """Every task of the profile in dependency order, with its merged and validated parameters."""
    chosen = list(profile["datasets"]) if datasets is None else list(datasets)
    for name in chosen:
        if name not in profile["datasets"]:
            raise StudyError(f"dataset {name!r} is not in profile {relative(profile_path)} "
                             f"(it runs {list(profile['datasets'])})")
    wanted = None if sections is None else set(sections)
    if wanted is not None:
        unknown = wanted - set(SECTION_BY_NAME)
        if unknown:
            raise StudyError(f"unknown section(s) {sorted(unknown)}; known: {[s.name for s in SECTIONS]}")
    base = {"profile": profile["profile"], "workspace": workspace, "seed": int(profile["seed"])}
    study_params = profile.get("study") or {}
    tasks: list[Task] = []

    def add(section: Section, dataset: str, extra: dict, origin: str) -> None:
        params = {**base, "dataset": dataset, **extra}
        if section.name in DATASETS_SECTIONS:
            params.setdefault("datasets", list(profile["datasets"]))
        tasks.append(Task(section, dataset, params, origin))

    for section in STUDY_SECTIONS:
        if section.part == "method" and section.name in study_params:
            add(section, section.dataset, study_params.get(section.name) or {}, f"study.{section.name}")
    for dataset in chosen:
        own = profile["datasets"][dataset] or {}
        for section in DATASET_SECTIONS:
            merged = {**((profile.get("sections") or {}).get(section.name) or {}), **(own.get(section.name) or {})}
            add(section, dataset, merged, f"sections.{section.name} / datasets.{dataset}.{section.name}")
    for section in STUDY_SECTIONS:
        if section.part != "method" and section.name in study_params:
            add(section, section.dataset, study_params.get(section.name) or {}, f"study.{section.name}")
    for task in tasks:
        _validate_parameters(task, profile_path)
    if wanted is not None:
        tasks = [t for t in tasks if t.section.name in wanted]
    return tasks


def _validate_parameters(task: Task, profile_path: Path) -> None:
    path = notebooks_dir() / task.section.notebook
    declared = notebook_parameters(path)
    where = f"{relative(profile_path)} ({task.origin})"
    for name in RUNNER_PARAMETERS + (("datasets",) if task.section.name in DATASETS_SECTIONS else ()):
        if name not in declared:
            raise StudyError(f"{relative(path)}: the parameters cell lacks {name!r}, which the runner always passes")
    unknown = sorted(set(task.params) - set(declared))
    if unknown:
        raise StudyError(
            f"{where}: unknown parameter(s) {unknown} for notebook {relative(path)}; "
            f"it declares: {sorted(declared)}"
        )
    missing = sorted(
        name for name, info in declared.items()
        if "required" in (info.get("help") or "").lower() and name not in task.params
    )
    if missing:
        raise StudyError(f"{where}: missing required parameter(s) {missing} for notebook {relative(path)}")


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def notebook_source_hash(path: Path) -> str:
    """Hash of a notebook's cell types and sources (outputs and metadata do not count)."""

    nb = nbformat.read(path, as_version=4)
    return _digest([(c.cell_type, c.source) for c in nb.cells])


def code_hash() -> str:
    """Hash of the helpers package source: a change of code makes every section out of date."""
    pkg = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for file in sorted(pkg.rglob("*.py")):
        h.update(file.relative_to(pkg).as_posix().encode())
        h.update(file.read_bytes())
    return h.hexdigest()


def assign_keys(tasks: list[Task], ws: Workspace, all_datasets: Iterable[str]) -> None:
    """A task's key covers its notebook, its parameters, the code and its upstream sections' keys (read from their
    stamps when the upstream task is not in this plan)."""
    code = code_hash()
    keys: dict[tuple[str, str], str] = {}
    for task in tasks:
        upstream = []
        for dep in task.section.depends:
            targets = ([task.dataset] if task.section.scope == "dataset"
                       else list(task.params.get("datasets", all_datasets)))
            for ds in targets:
                upstream.append(keys.get((ds, dep)) or _stamp_key(ws, ds, dep))
        nb = notebooks_dir() / task.section.notebook
        task.key = _digest({"nb": notebook_source_hash(nb), "params": task.params, "code": code, "up": upstream})
        keys[(task.dataset, task.section.name)] = task.key


def stamp_path(ws: Workspace, dataset: str, section: str) -> Path:
    return ws.root / "results" / ".stamps" / dataset / f"{section}.json"


def executed_path(ws: Workspace, task: Task) -> Path:
    return ws.executed(task.dataset) / task.section.notebook


def _stamp_key(ws: Workspace, dataset: str, section: str) -> str | None:
    path = stamp_path(ws, dataset, section)
    if not path.exists():
        return None
    try:
        return _io.read_json(path).get("key")
    except ValueError:
        return None


def is_up_to_date(ws: Workspace, task: Task) -> bool:
    return _stamp_key(ws, task.dataset, task.section.name) == task.key and executed_path(ws, task).exists()
