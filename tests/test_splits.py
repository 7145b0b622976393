"""Tests of helpers.data.splits: by-subject splits, official subsets, site stratification, errors, persistence."""

from types import SimpleNamespace

import pytest

from helpers.base.io import write_json
from helpers.base.paths import Workspace
from helpers.data.splits import (
    Splits, cv_folds, cv_splits, cv_splits_table, inner_split, load_splits, make_splits, save_splits,
)


def _cases(n, *, subset=None, site=None, prefix="c"):
    return [SimpleNamespace(case_id=f"{prefix}{i:02d}", subset=subset, meta={} if site is None else {"site": site})
            for i in range(n)]


def test_counts_without_official_subset_hand_derived():
    # 10 cases, test_fraction 0.3 -> round(3.0) = 3 test; val_fraction 0.2 of the remaining share 0.7:
    # round(10 * 0.14) = round(1.4) = 1 val; train keeps 6.
    splits = make_splits(_cases(10), seed=0, val_fraction=0.2, test_fraction=0.3)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (6, 1, 3)
    assert splits.official_test is False and splits.stratified_by is None


def test_partition_is_disjoint_and_complete():
    cases = _cases(17)
    splits = make_splits(cases, seed=3)
    ids = splits.train + splits.val + splits.test
    assert sorted(ids) == sorted(c.case_id for c in cases)
    assert len(set(ids)) == len(ids)
    assert all(list(splits.ids(k)) == sorted(splits.ids(k)) for k in ("train", "val", "test"))


def test_deterministic_and_seed_dependent():
    cases = _cases(20)
    a = make_splits(cases, seed=1)
    assert a == make_splits(list(reversed(cases)), seed=1)  # input order does not matter
    assert any(make_splits(cases, seed=s).test != a.test for s in range(2, 6))


def test_official_test_subset_is_the_test_split():
    cases = _cases(6, subset="training", prefix="tr") + _cases(4, subset="test", prefix="te")
    splits = make_splits(cases, seed=0, val_fraction=0.2, test_fraction=0.9)
    assert splits.test == ("te00", "te01", "te02", "te03")
    # 6 training cases: round(6 * 0.2) = 1 val, 5 train; test_fraction is unused
    assert (len(splits.train), len(splits.val)) == (5, 1)
    assert splits.test_fraction is None and splits.official_test is True


def test_every_site_in_every_split_when_possible():
    cases = []
    for site in ("Utrecht", "Singapore", "Amsterdam"):
        cases += _cases(5, subset="training", site=site, prefix=site) + _cases(2, subset="test", site=site,
                                                                              prefix=site + "T")
    splits = make_splits(cases, seed=0, val_fraction=0.2)
    site_of = {c.case_id: c.meta["site"] for c in cases}
    for name in ("train", "val", "test"):
        assert {site_of[c] for c in splits.ids(name)} == {"Utrecht", "Singapore", "Amsterdam"}, name
    # round(15 * 0.2) = 3 validation cases; the systematic stratified order gives one per site
    assert len(splits.val) == 3
    assert splits.stratified_by == "site"


def test_empty_split_is_an_error_naming_it():
    # 2 cases: val gets 1 (n >= 2), test would get round(0.6) = 1 but train must keep one -> test empty
    with pytest.raises(ValueError, match="split 'test' is empty"):
        make_splits(_cases(2), seed=0)


def test_only_test_cases_gives_empty_train_error():
    with pytest.raises(ValueError, match="split 'train' is empty"):
        make_splits(_cases(3, subset="test"), seed=0)


def test_duplicate_ids_rejected():
    with pytest.raises(ValueError, match=r"duplicate case ids \['c00'\]"):
        make_splits(_cases(3) + _cases(1), seed=0)


@pytest.mark.parametrize("value", [0, 1, 1.5, -0.1, True])
def test_bad_fraction_rejected(value):
    with pytest.raises(ValueError, match="val_fraction must be a float in"):
        make_splits(_cases(10), seed=0, val_fraction=value)


def test_split_of_maps_each_case():
    splits = make_splits(_cases(10), seed=0)
    mapping = splits.split_of()
    assert len(mapping) == 10 and {mapping[c] for c in splits.val} == {"val"}


def test_save_and_load_roundtrip(tmp_path):
    ws = Workspace(tmp_path)
    splits = make_splits(_cases(10), seed=0)
    path = save_splits(ws, "lits", splits)
    assert path == tmp_path / "results" / "lits" / "splits.json"
    assert load_splits(ws, "lits") == splits


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="splits.json.*not found"):
        load_splits(Workspace(tmp_path), "wmh")


def test_load_rejects_empty_split_in_file(tmp_path):
    ws = Workspace(tmp_path)
    write_json({"train": ["a"], "val": [], "test": ["b"]}, ws.results("wmh") / "splits.json")
    with pytest.raises(ValueError, match="splits.json: split 'val' is empty"):
        load_splits(ws, "wmh")


def test_a_split_given_by_hand_and_bad_files(tmp_path):
    given = Splits(train=["b", "a"], val=["c"], test=["d"])
    assert given.train == ("a", "b") and given.rule == "given" and given.seed is None
    with pytest.raises(ValueError, match="split must be one of"):
        given.ids("validation")
    with pytest.raises(TypeError, match="must be a Splits record"):
        save_splits(Workspace(tmp_path), "wmh", {"train": ["a"], "val": ["b"], "test": ["c"]})
    ws = Workspace(tmp_path)
    write_json({"train": ["a"], "test": ["b"]}, ws.results("wmh") / "splits.json")
    with pytest.raises(ValueError, match=r"splits.json: missing the split\(s\) \['val'\]"):
        load_splits(ws, "wmh")
    write_json({"train": ["a"], "val": ["c"], "test": ["b"], "tset": []}, ws.results("wmh") / "splits.json")
    with pytest.raises(ValueError, match=r"splits.json: unknown entries \['tset'\]"):
        load_splits(ws, "wmh")


def test_splits_json_keeps_its_layout(tmp_path):
    # the file the data section writes: the lists of ids and how they were drawn, nothing else
    splits = make_splits(_cases(10), seed=0)
    path = save_splits(Workspace(tmp_path), "lits", splits)
    import json

    data = json.loads(path.read_text())
    assert set(data) == {"train", "val", "test", "rule", "seed", "val_fraction", "test_fraction",
                         "stratified_by", "official_test"}
    assert data["seed"] == 0 and data["rule"] == "test and val drawn by subject at random"
    assert data["test"] == list(splits.test) and data["test_fraction"] == 0.3 and data["official_test"] is False


def test_load_rejects_case_in_two_splits(tmp_path):
    ws = Workspace(tmp_path)
    write_json({"train": ["a"], "val": ["a"], "test": ["b"]}, ws.results("wmh") / "splits.json")
    with pytest.raises(ValueError, match="more than one split"):
        load_splits(ws, "wmh")


def test_accepts_case_objects_holding_arrays():
    # Case is a dataclass whose equality would compare arrays: the split must never compare cases
    import numpy as np

    from helpers.data.layouts import Case

    cases = [Case(f"s{i}", np.zeros((2, 2)), np.zeros((2, 2), bool), None, (1.0, 1.0), "training", "x", None,
                  {"site": "A" if i % 2 else "B"}) for i in range(8)]
    splits = make_splits(cases, seed=0)
    assert sorted(splits.train + splits.val + splits.test) == sorted(c.case_id for c in cases)


# --------------------------------------------------------------------------------------------------------------
# Cross-validation folds (small-data study)
# --------------------------------------------------------------------------------------------------------------

IDS = [f"v{i}" for i in range(9)]


@pytest.mark.parametrize("protocol", ["loocv", "3fold"])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_every_image_tested_exactly_once_per_repetition(protocol, seed):
    folds = cv_folds(IDS, protocol=protocol, seed=seed)
    tested = [c for f in folds for c in f["test"]]
    assert sorted(tested) == sorted(IDS)  # each exactly once
    for f in folds:
        assert set(f["train"]).isdisjoint(f["test"])
        assert sorted(f["train"] + f["test"]) == sorted(IDS)


def test_fold_sizes():
    assert len(cv_folds(IDS, protocol="loocv")) == 9
    assert [len(f["test"]) for f in cv_folds(IDS, protocol="3fold", seed=0)] == [3, 3, 3]
    # 10 cases in 3 folds: array_split gives 4, 3, 3.
    assert [len(f["test"]) for f in cv_folds([str(i) for i in range(10)], protocol="3fold")] == [4, 3, 3]


def test_3fold_depends_on_seed_and_is_reproducible():
    a = cv_folds(IDS, protocol="3fold", seed=0)
    assert a == cv_folds(IDS, protocol="3fold", seed=0)
    assert any(cv_folds(IDS, protocol="3fold", seed=s) != a for s in range(1, 5))


def test_cv_splits_and_table():
    splits = cv_splits(IDS, seeds=[0, 1])
    # 2 seeds x (9 LOOCV folds + 3 folds) = 24 folds.
    assert len(splits) == 24
    table = cv_splits_table(splits)
    tests = table[table["role"] == "test"].groupby(["protocol", "seed"])["case_id"].agg(lambda s: sorted(s))
    assert all(t == sorted(IDS) for t in tests)


def test_cv_splits_errors():
    with pytest.raises(ValueError, match="protocol must be one of"):
        cv_folds(IDS, protocol="5fold")
    with pytest.raises(ValueError, match="case_ids must be unique"):
        cv_folds(["a", "a", "b"], protocol="loocv")
    with pytest.raises(ValueError, match="3fold needs at least 3 cases"):
        cv_folds(["a", "b"], protocol="3fold")
    with pytest.raises(ValueError, match="seeds must not be empty"):
        cv_splits(IDS, seeds=[])


def test_inner_split_is_fold_0_of_the_seeded_3fold_split():
    fold = cv_folds(IDS, protocol="3fold", seed=4)[0]
    split = inner_split(IDS, seed=4)
    assert split == {"train": fold["train"], "val": fold["test"]}
    assert len(split["val"]) == 3 and sorted(split["train"] + split["val"]) == sorted(IDS)
