"""Profiles: ``profiles/<name>.yaml`` (or a path to a YAML file) read and its structure checked before anything
runs: the datasets, the per-dataset sections' parameters and the study sections."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import yaml

from helpers.base.paths import project_root, resolve
from helpers.data.datasets import DATASETS, is_dataset
from helpers.runner.errors import StudyError
from helpers.runner.sections import DATASET_SECTIONS, STUDY_SECTIONS, Section

__all__ = ["load_profile"]


_PROFILE_KEYS = {"profile", "description", "seed", "datasets", "sections", "study"}


def load_profile(profile: str) -> tuple[dict, Path]:
    """Read ``profiles/<profile>.yaml`` (or a path to a YAML file) and check its structure."""

    path = Path(profile)
    if path.suffix not in (".yaml", ".yml"):
        path = project_root() / "profiles" / f"{profile}.yaml"
    path = resolve(path)
    if not path.exists():
        available = sorted(p.stem for p in (project_root() / "profiles").glob("*.yaml"))
        raise StudyError(f"profile {profile!r}: {path} not found (available: {', '.join(available) or 'none'})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise StudyError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise StudyError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    unknown = set(data) - _PROFILE_KEYS
    if unknown:
        raise StudyError(f"{path}: unknown top-level key(s) {sorted(unknown)}; allowed: {sorted(_PROFILE_KEYS)}")
    datasets = data.get("datasets") or {}
    if not isinstance(datasets, dict) or not datasets:
        raise StudyError(f"{path}: 'datasets' must map at least one of {list(DATASETS)} to its section parameters")
    for name, sections in datasets.items():
        if not is_dataset(name):
            raise StudyError(f"{path}: unknown dataset {name!r} under 'datasets'; known: {list(DATASETS)}")
        _check_section_mapping(path, f"datasets.{name}", sections or {}, DATASET_SECTIONS)
    _check_section_mapping(path, "sections", data.get("sections") or {}, DATASET_SECTIONS)
    _check_section_mapping(path, "study", data.get("study") or {}, STUDY_SECTIONS)
    data.setdefault("profile", path.stem)
    data.setdefault("seed", 0)
    return data, path


def _check_section_mapping(path: Path, where: str, mapping, allowed: Iterable[Section]) -> None:
    names = {s.name for s in allowed}
    if not isinstance(mapping, dict):
        raise StudyError(f"{path}: '{where}' must be a mapping of section name to parameters")
    for key, params in mapping.items():
        if key not in names:
            raise StudyError(f"{path}: unknown section {key!r} under '{where}'; known: {sorted(names)}")
        if params is not None and not isinstance(params, dict):
            raise StudyError(f"{path}: '{where}.{key}' must be a mapping of parameter names to values")
