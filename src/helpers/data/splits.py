"""Every split of both studies: deterministic train/validation/test splits by subject (the lesion study, saved once
and re-used by every later section) and the cross-validation folds of the small-data study.

Rules
-----
- The unit is the case (subject, volume or photograph), never a slice: all slices of a volume share a split.
- Official subsets are honoured: when any case has ``subset == "test"`` the official test cases form the test
  split and only the remaining cases are divided into train and validation (``test_fraction`` is then unused).
  Otherwise ``test_fraction`` of the cases are drawn for the test split.
- Sizes: without an official test subset, ``round(N * test_fraction)`` test cases (at least 1 when N >= 3) and
  ``round(N * val_fraction * (1 - test_fraction))`` validation cases (at least 1 when N >= 2); with one,
  ``round(N_pool * val_fraction)`` of the non-test cases go to validation. Train keeps the rest (at least one).
- Stratification: cases are grouped by ``meta["site"]`` when every case has one and there are several (WMH).
  The cases are put in a systematic stratified order (within each group a permutation drawn by
  ``numpy.random.default_rng(seed)``, case ``i`` of a group of ``n`` keyed ``(i + u) / n`` with one random
  offset ``u`` per group, all sorted by key); test takes the first cases of that order, validation the next,
  train the rest. Each split thus holds each site about in proportion, and every site as soon as the split
  has at least as many cases as there are sites.
- When every case is marked ``meta["evaluation_only"]`` by its finder (a user's dataset, evaluated only) the split
  is :func:`evaluation_split`: every case is a test case, train and validation are empty (``evaluation_only``).
- A split that ends up empty is an error (a too-small dataset or fraction), never a silent empty list.

A split is a frozen :class:`Splits` record (case ids per split as sorted tuples, none empty, none shared, and
how they were drawn). The saved file ``results/<dataset>/splits.json`` holds its JSON form ``{"train": [...],
"val": [...], "test": [...], "rule": ..., "seed": ..., "val_fraction": ..., "test_fraction": ...,
"stratified_by": ..., "official_test": ...}``; :func:`load_splits` is its one reader.

Cross-validation (small-data study)
-----------------------------------
- :func:`cv_folds`: one repetition of a protocol of :data:`CV_PROTOCOLS`: ``"loocv"`` (one fold per case) or
  ``"3fold"`` (a seeded permutation cut into 3 near-equal folds); every case is tested exactly once.
- :func:`cv_splits`: all folds of all protocols and repetitions (the same for every model);
  :func:`cv_splits_table` their long table.
- :func:`inner_split`: the fixed inner split of the hyper-parameter optimisation (fold 0 of the seeded 3-fold
  split as validation), drawn from the same images the cross-validation later tests on (non-nested).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from helpers.base.io import read_json, write_json
from helpers.base.paths import Workspace

__all__ = [
    "SPLITS", "CV_PROTOCOLS", "Splits", "make_splits", "evaluation_split", "save_splits", "load_splits", "cv_folds",
    "cv_splits",
    "cv_splits_table", "inner_split",
]

SPLITS = ("train", "val", "test")
#: Cross-validation protocols of the small-data study.
CV_PROTOCOLS: tuple[str, ...] = ("loocv", "3fold")


@dataclass(frozen=True)
class Splits:
    """A dataset's train/validation/test split by subject: the case ids of each split (sorted, none empty, no id
    in two splits, checked when built) and how they were drawn. Built by :func:`make_splits`, written by
    :func:`save_splits`, read back by :func:`load_splits` alone."""

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    rule: str = "given"
    seed: int | None = None
    val_fraction: float | None = None
    test_fraction: float | None = None
    stratified_by: str | None = None
    official_test: bool = False
    evaluation_only: bool = False

    def __post_init__(self):
        for name in SPLITS:
            ids = getattr(self, name)
            if isinstance(ids, str) or not isinstance(ids, (list, tuple)):
                raise TypeError(f"split {name!r} must be a list of case ids, got {type(ids).__name__}")
            object.__setattr__(self, name, tuple(sorted(str(c) for c in ids)))
            if not getattr(self, name) and not (self.evaluation_only and name != "test"):
                raise ValueError(f"split {name!r} is empty")
        seen = [c for name in SPLITS for c in getattr(self, name)]
        if len(seen) != len(set(seen)):
            shared = sorted({c for c in seen if seen.count(c) > 1})
            raise ValueError(f"case ids in more than one split: {shared}")

    def ids(self, split: str) -> tuple[str, ...]:
        """The case ids of ``split`` (one of :data:`SPLITS`)."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return getattr(self, split)

    def split_of(self) -> dict[str, str]:
        """``{case_id: split name}``."""
        return {case_id: name for name in SPLITS for case_id in getattr(self, name)}

    def to_json(self) -> dict:
        """The content of ``splits.json`` (lists of ids, then how they were drawn)."""
        return {"train": list(self.train), "val": list(self.val), "test": list(self.test), "rule": self.rule,
                "seed": self.seed, "val_fraction": self.val_fraction, "test_fraction": self.test_fraction,
                "stratified_by": self.stratified_by, "official_test": self.official_test,
                **({"evaluation_only": True} if self.evaluation_only else {})}

    @classmethod
    def from_json(cls, data, *, where: str = "splits") -> "Splits":
        """The record of a ``splits.json`` mapping; errors name ``where`` (the file) and the problem."""
        if not isinstance(data, dict):
            raise TypeError(f"{where}: expected a mapping, got {type(data).__name__}")
        missing = [k for k in SPLITS if k not in data]
        if missing:
            raise ValueError(f"{where}: missing the split(s) {missing}")
        unknown = sorted(set(data) - {*SPLITS, "rule", "seed", "val_fraction", "test_fraction", "stratified_by",
                                      "official_test", "evaluation_only"})
        if unknown:
            raise ValueError(f"{where}: unknown entries {unknown}")
        try:
            return cls(train=data["train"], val=data["val"], test=data["test"], rule=data.get("rule", "given"),
                       seed=data.get("seed"), val_fraction=data.get("val_fraction"),
                       test_fraction=data.get("test_fraction"), stratified_by=data.get("stratified_by"),
                       official_test=bool(data.get("official_test", False)),
                       evaluation_only=bool(data.get("evaluation_only", False)))
        except (TypeError, ValueError) as err:
            raise type(err)(f"{where}: {err}") from None


def _check_fraction(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < float(value) < 1):
        raise ValueError(f"{name} must be a float in (0, 1), got {value!r}")
    return float(value)


def _allocate(n: int, fraction: float, *, at_least_one: bool) -> int:
    k = int(round(n * fraction))
    return max(k, 1) if at_least_one else k


def make_splits(cases, *, seed: int, val_fraction: float = 0.2, test_fraction: float = 0.3) -> Splits:
    """Split cases by subject into train, validation and test.

    Parameters
    ----------
    cases : sequence
        Objects with ``case_id`` (str), ``subset`` (``"training"``, ``"test"`` or ``None``) and ``meta``
        (dict, optionally with ``"site"``): :class:`helpers.data.layouts.Case` or
        :class:`helpers.data.layouts.CaseFiles`.
    seed : int
        Seed of the shuffle; the same cases and seed give the same split.
    val_fraction : float in (0, 1)
        Share of the non-test cases (per group) that go to validation.
    test_fraction : float in (0, 1)
        Share of all cases (per group) drawn for test when there is no official test subset.

    Returns
    -------
    Splits
        ``train``, ``val``, ``test`` (sorted case ids) and the rule, seed, fractions and stratification.

    Raises
    ------
    ValueError
        Duplicate case ids, bad fractions, or an empty split (naming it and the group sizes).
    """
    val_fraction = _check_fraction("val_fraction", val_fraction)
    test_fraction = _check_fraction("test_fraction", test_fraction)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {seed!r}")
    cases = list(cases)
    ids = [str(c.case_id) for c in cases]
    if len(set(ids)) != len(ids):
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"cases: duplicate case ids {duplicates}")
    if cases and all((c.meta or {}).get("evaluation_only") for c in cases):
        return evaluation_split(cases)  # a user dataset's cases, marked by its finder: evaluated only
    official = any(c.subset == "test" for c in cases)
    sites = [(c.meta or {}).get("site") for c in cases]
    stratify = all(s is not None for s in sites) and len(set(sites)) > 1
    rng = np.random.default_rng(int(seed))
    test = sorted((c for c in cases if c.subset == "test"), key=lambda c: str(c.case_id)) if official else []
    groups: dict = {}  # the cases to divide (all but the official test cases), by site
    for c, site in zip(cases, sites):
        groups.setdefault(site if stratify else None, [])
        if not (official and c.subset == "test"):
            groups[site if stratify else None].append(c)
    # systematic stratified order: within each group a random permutation, case i of a group of n gets the key
    # (i + u) / n with one random offset u per group; sorting by key interleaves the groups proportionally, so
    # the first k cases hold about k * n_group / N of each group (every group once k >= number of groups)
    keyed = []
    for key in sorted(groups, key=str):
        members = sorted(groups[key], key=lambda c: str(c.case_id))
        offset = rng.random()
        for i, j in enumerate(rng.permutation(len(members))):
            keyed.append(((i + offset) / len(members), str(members[j].case_id), members[j]))
    order = [c for _, _, c in sorted(keyed, key=lambda t: (t[0], t[1]))]
    n = len(order)
    if official:
        n_test = 0
        n_val = _allocate(n, val_fraction, at_least_one=n >= 2)
    else:
        n_test = _allocate(n, test_fraction, at_least_one=n >= 3)
        n_val = _allocate(n, val_fraction * (1 - test_fraction), at_least_one=n >= 2)
        n_test = min(n_test, max(n - n_val - 1, 0))
        test = order[:n_test]
    n_val = min(n_val, max(n - n_test - 1, 0))
    out = {"train": [c.case_id for c in order[n_test + n_val:]],
           "val": [c.case_id for c in order[n_test:n_test + n_val]],
           "test": [c.case_id for c in test]}
    for name in SPLITS:
        if not out[name]:
            sizes = {str(k): len(v) for k, v in groups.items()}
            raise ValueError(f"split {name!r} is empty: {len(cases)} cases (per group {sizes}), official test subset "
                             f"{'used' if official else 'absent'}, val_fraction={val_fraction}, "
                             f"test_fraction={test_fraction}; use more cases or larger fractions")
    rule = ("official test subset -> test; rest split by subject into train/val" if official
            else "test and val drawn by subject at random")
    return Splits(train=out["train"], val=out["val"], test=out["test"],
                  rule=rule + (", stratified by site" if stratify else ""), seed=int(seed),
                  val_fraction=val_fraction, test_fraction=None if official else test_fraction,
                  stratified_by="site" if stratify else None, official_test=official)


def evaluation_split(cases) -> Splits:
    """A user dataset's split: every case is a test case (the dataset is evaluated, never trained on), train and
    validation empty (``evaluation_only``)."""
    ids = [str(c.case_id) for c in cases]
    if not ids:
        raise ValueError("cases: no case to evaluate")
    return Splits(train=(), val=(), test=ids, rule="evaluation only: every case of the user dataset is a test case",
                  official_test=True, evaluation_only=True)


def save_splits(ws, dataset: str, splits: Splits):
    """Write ``results/<dataset>/splits.json`` atomically; returns the path."""
    if not isinstance(splits, Splits):
        raise TypeError(f"splits must be a Splits record (make_splits, Splits.from_json), got "
                        f"{type(splits).__name__}")
    ws = Workspace.at(ws)
    return write_json(splits.to_json(), ws.results(dataset) / "splits.json")


def load_splits(ws, dataset: str) -> Splits:
    """Read ``results/<dataset>/splits.json``, the one reader of that file (errors name the file)."""
    ws = Workspace.at(ws)
    path = ws.results(dataset) / "splits.json"
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r}: not found; run the data section first")
    return Splits.from_json(read_json(path), where=str(path))


# --------------------------------------------------------------------------------------------- cross-validation


def cv_folds(case_ids: Sequence[str], *, protocol: str, seed: int = 0) -> list[dict]:
    """The folds of one repetition of a cross-validation protocol.

    ``"loocv"``: one fold per case, the case as test set, in the order given (the seed does not change
    leave-one-out; it changes only the training of each fold). ``"3fold"``: the cases shuffled with
    ``numpy.random.default_rng(seed)`` and cut into 3 consecutive, near-equal folds (``numpy.array_split``).

    Returns
    -------
    list of dict
        ``{"fold": int, "train": [ids], "test": [ids]}``; every case is tested exactly once.
    """
    ids = list(case_ids)
    if len(set(ids)) != len(ids):
        raise ValueError(f"case_ids must be unique, got {ids}")
    if protocol == "loocv":
        if len(ids) < 2:
            raise ValueError(f"loocv needs at least 2 cases, got {len(ids)}")
        groups = [[c] for c in ids]
    elif protocol == "3fold":
        if len(ids) < 3:
            raise ValueError(f"3fold needs at least 3 cases, got {len(ids)}")
        order = np.random.default_rng(seed).permutation(len(ids))
        groups = [[ids[i] for i in part] for part in np.array_split(order, 3)]
    else:
        raise ValueError(f"protocol must be one of {CV_PROTOCOLS}, got {protocol!r}")
    return [
        {"fold": f, "train": [c for c in ids if c not in set(test)], "test": list(test)}
        for f, test in enumerate(groups)
    ]


def cv_splits(case_ids: Sequence[str], *, protocols: Iterable[str] = CV_PROTOCOLS, seeds: Iterable[int] = (0,)):
    """All folds of all protocols and repetitions, the same for every model.

    Returns
    -------
    list of dict
        ``{"protocol", "seed", "fold", "train", "test"}``.
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must not be empty")
    protocols = list(protocols)
    if not protocols:
        raise ValueError("protocols must not be empty")
    return [
        {"protocol": p, "seed": s, **fold}
        for p in protocols
        for s in seeds
        for fold in cv_folds(case_ids, protocol=p, seed=s)
    ]


def cv_splits_table(splits: Sequence[dict]) -> pd.DataFrame:
    """Long table of cross-validation splits: one row per ``protocol, seed, fold, case_id`` with ``role``
    train/test."""
    rows = [
        {"protocol": s["protocol"], "seed": s["seed"], "fold": s["fold"], "case_id": c, "role": role}
        for s in splits
        for role in ("train", "test")
        for c in s[role]
    ]
    return pd.DataFrame(rows)


def inner_split(case_ids: Sequence[str], *, seed: int = 0) -> dict:
    """The fixed inner split of the hyper-parameter optimisation: fold 0 of the seeded 3-fold split is the
    validation set (``{"train": [...], "val": [...]}``)."""
    fold = cv_folds(case_ids, protocol="3fold", seed=seed)[0]
    return {"train": fold["train"], "val": fold["test"]}
