"""Tests of helpers.data.datasets: the registry of datasets and the typed loader options."""

import ast
from pathlib import Path

import pandas as pd
import pytest

import helpers
from helpers import analysis, data
from helpers.data import datasets, layouts
from helpers.base.paths import Workspace

SRC = Path(helpers.__file__).parent
# tiny sizes: the round trip checks the layout, not the generator's realism
TINY = {
    "wmh": {"n_training": 1, "n_test": 1, "shape": (4, 32, 32)},
    "lits": {"n_volumes": 2, "shape": (4, 48, 48)},
    "idrid": {"n_training": 1, "n_test": 1, "shape": (64, 96)},
}


def test_registry_names_and_order():
    assert datasets.DATASETS[:3] == ("wmh", "lits", "idrid")  # the paper's three, in its order
    assert all(datasets.get(name).name == name for name in datasets.DATASETS)
    with pytest.raises(ValueError, match=r"dataset must be one of \('wmh', 'lits', 'idrid'.*\), got 'brats'"):
        datasets.get("brats")


@pytest.mark.parametrize("name", datasets.DATASETS)
def test_reader_reads_the_synthetic_stand_in_in_the_real_layout(tmp_path, name):
    # round trip: the entry's generator writes the real layout, the entry's finder and reader read it back
    entry = datasets.get(name)
    params = entry.generate(tmp_path, seed=0, **TINY.get(name, {}))
    assert params["dataset"] == name
    found = entry.find(tmp_path, entry.loader_options())
    assert [f.dataset for f in found] == [name] * len(found)
    if name in TINY:  # the tiny sizes write one training and one test case (LiTS: two volumes)
        assert len(found) == 2
    assert found
    case = entry.read(found[0])
    assert case.mask.dtype == bool and case.mask.ndim == entry.spatial_dims
    assert len(case.spacing) == entry.spatial_dims
    # the same cases through the generic front, which looks the reader up in the registry
    assert [c.case_id for c in data.load_cases(name, tmp_path)] == [f.case_id for f in found]


@pytest.mark.parametrize("name", datasets.DATASETS)
def test_recipe_kind_matches_dimensionality(name):
    entry = datasets.get(name)
    assert entry.recipe.dataset == name
    assert entry.recipe.kind == ("volume" if entry.spatial_dims == 3 else "image")


def test_titles_and_modalities_come_from_the_registry():
    cases = pd.DataFrame({"split": ["test", "train"]})
    lesions = pd.DataFrame({"split": ["test"], "area_fraction": [0.01]})
    row = data.summary_table("lits", cases, lesions).iloc[0]
    assert (row["dataset"], row["modality"]) == ("LiTS", "CT")
    table = analysis.dataset_summary(
        pd.DataFrame([{"dataset": "idrid", "test_cases": 3, "lesions": 10, "q1_upper": 0.002}]))
    first = table.iloc[0]
    assert first["modality"] == "Fundus" and first["paper_test_cases"] == 81 and first["paper_lesions"] == 1760
    assert first["paper_q1_upper_percent"] == 1.5


def test_display_names_come_from_the_registry_never_from_upper_casing_the_key():
    assert [datasets.display_name(n) for n in datasets.DATASETS] == ["WMH", "LiTS", "IDRiD"]
    assert datasets.display_name("Dataset501_Brain") == "Dataset501_Brain"  # a user's dataset keeps its name
    with pytest.raises(TypeError, match="dataset name must be a non-empty string, got None"):
        datasets.display_name(None)
    offenders = [f"{path.relative_to(SRC)}:{node.lineno}" for path in sorted(SRC.rglob("*.py"))
                 for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                 if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "upper"]
    assert not offenders, f"display names are the registry's (datasets.display_name), not .upper(): {offenders}"


def test_no_other_module_spells_out_dataset_titles_or_keeps_a_table_per_dataset():
    # the registry is the one home of these facts: no other module names a title, caption or the paper's name of
    # a dataset in a string literal, or holds a dict keyed by the dataset names (the old MODALITY, TITLE,
    # DATASET_TITLES, PAPER_DATASETS, GENERATORS, _KIND tables)
    # the study's datasets (a user dataset registered by another test, e.g. one called "masks", is not a fact here)
    study = [e for e in datasets.REGISTRY.values() if e.data_source == "study"]
    facts = {e.title for e in study} | {e.caption for e in study}
    facts |= {e.paper.name for e in study if e.paper is not None}
    names = set(datasets.DATASETS)
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path == SRC / "data" / "datasets.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in facts:
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno} {node.value!r}")
            if isinstance(node, ast.Dict) and names <= {k.value for k in node.keys if isinstance(k, ast.Constant)}:
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno} a dict keyed by the dataset names")
    assert not offenders, offenders


def test_no_branch_on_a_dataset_name_outside_the_registry():
    # `if dataset == "wmh"` and friends are registry lookups now
    names = set(datasets.DATASETS)
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path == SRC / "data" / "datasets.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare):
                consts = [c for c in [node.left, *node.comparators] if isinstance(c, ast.Constant)]
                if any(c.value in names for c in consts):
                    offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not offenders, offenders


def test_loader_options_from_a_profile_mapping():
    assert datasets.loader_options("wmh") == layouts.WMHOptions()
    assert datasets.loader_options("wmh", {"modalities": ["FLAIR"]}).modalities == ("FLAIR",)
    # lesion types are kept in the layout's order, whatever order the profile lists them in
    assert datasets.loader_options("idrid", {"lesion_types": ["SE", "MA"]}).lesion_types == ("MA", "SE")
    options = datasets.loader_options("lits", {"target": "liver"})
    assert datasets.loader_options("lits", options.as_dict()) == options  # the manifest's record reads back
    assert datasets.loader_options("lits", options) is options


@pytest.mark.parametrize("name, mapping, error, match", [
    ("wmh", {"target": "liver"}, TypeError,
     r"unknown option for dataset 'wmh': 'target'; allowed: modalities, ignore_other_pathology"),
    ("lits", {"target": "kidney"}, ValueError, r"target must be one of \('tumour', 'liver'\), got 'kidney'"),
    ("idrid", {"lesion_types": ["MA", "OD"]}, ValueError, r"lesion_types must be .*never the optic disc"),
    ("idrid", {"lesion_types": "MA"}, ValueError, r"lesion_types must be a non-empty sequence"),
    ("wmh", {"modalities": ["FLAIR", "FLAIR"]}, ValueError, "modalities must not repeat"),
    ("wmh", {"ignore_other_pathology": 1}, TypeError, "ignore_other_pathology must be bool, got 1"),
    ("lits", ["target"], TypeError, "loader options of 'lits' must be a mapping, got list"),
])
def test_bad_lesion_target_option_names_it(name, mapping, error, match):
    with pytest.raises(error, match=match):
        datasets.loader_options(name, mapping)


def test_options_of_another_dataset_are_refused(tmp_path):
    with pytest.raises(TypeError, match="loader options of dataset 'wmh' must be WMHOptions, got LiTSOptions"):
        data.find_cases("wmh", tmp_path, layouts.LiTSOptions())


def test_load_split_cases_reads_only_that_split(tmp_path, monkeypatch):
    ws = Workspace.at(tmp_path)
    summary = data.prepare_dataset(ws, "idrid", seed=0, synthetic=TINY["idrid"] | {"n_training": 3, "n_test": 2},
                                   loader=datasets.loader_options("idrid", {"lesion_types": ["MA", "HE"]}),
                                   progress=False)
    read = []
    entry = datasets.get("idrid")
    original = entry.read

    def counting(files):
        read.append(files.case_id)
        return original(files)

    monkeypatch.setitem(datasets.REGISTRY, "idrid", datasets.Dataset(**{**entry.__dict__, "read": counting}))
    cases = data.load_split_cases(ws, "idrid", split="test")
    assert [c.case_id for c in cases] == list(summary.splits.test) == read  # only the test cases were read
    # the recorded loader options were used: only MA and HE in the target
    assert all(set(c.meta["lesion_types_present"]) <= {"MA", "HE"} for c in cases)
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'val', 'test'\), got 'holdout'"):
        data.load_split_cases(ws, "idrid", split="holdout")


def test_load_cases_by_id_keeps_the_order_and_names_missing_ids(tmp_path):
    datasets.get("idrid").generate(tmp_path, seed=0, **TINY["idrid"])
    cases = data.load_cases("idrid", tmp_path, case_ids=["IDRiD_02", "IDRiD_01"])
    assert [c.case_id for c in cases] == ["IDRiD_02", "IDRiD_01"]
    with pytest.raises(ValueError, match=r"cases not found in the idrid data: \['IDRiD_09'\]"):
        data.load_cases("idrid", tmp_path, case_ids=["IDRiD_09"])


def test_prepare_dataset_records_the_resolved_loader_options(tmp_path):
    summary = data.prepare_dataset(Workspace.at(tmp_path), "lits", seed=0,
                                   synthetic=TINY["lits"] | {"n_volumes": 4}, progress=False)
    assert summary.manifest["options"]["loader"] == {"target": "tumour"}
    # 4 volumes, no official test subset: round(4 * 0.3) = 1 test volume
    assert summary.table()["test_cases"].iloc[0] == 1


def test_a_registry_entry_resolves_to_itself():
    entry = datasets.get("lits")
    assert datasets.get(entry) is entry is datasets.REGISTRY["lits"]
    with pytest.raises(ValueError, match="dataset must be one of"):
        datasets.get("LiTS")
