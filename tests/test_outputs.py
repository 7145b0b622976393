"""Every file a run writes under ``results/`` has a declared writer: a section of :mod:`helpers.runner.sections`
whose ``results`` (saved through the context) or ``writes`` (written by the helpers it calls) name it.

It reads the smoke run in ``build/nbval``, so ``make nbval`` runs it (``HONEST_TRAINING_REGRESSION=1``) after the
study; elsewhere it is skipped. The declarations alone are checked in tests/test_notebooks.py."""

from __future__ import annotations

import os

import pytest

from helpers.base.paths import Workspace
from helpers.data.datasets import DATASETS
from helpers.runner import sections

pytestmark = pytest.mark.skipif(os.environ.get("HONEST_TRAINING_REGRESSION") != "1",
                                reason="needs the smoke run in build/nbval: run by `make nbval`")


def _declared(scope: str) -> set[str]:
    chosen = [s for s in sections.SECTIONS
              if (s.scope == "dataset" and scope in DATASETS) or (s.scope == "study" and s.dataset == scope)]
    return {name for s in chosen for name in s.results + s.writes} | set(sections.RUNNER_WRITES.get(scope, ()))


def test_every_result_file_of_the_smoke_run_is_declared_by_a_section():
    ws = Workspace.at("build/nbval")
    folders = {scope: ws.results(None if scope == sections.GLOBAL else scope)
               for scope in (*DATASETS, sections.GLOBAL, sections.SMALL_DATA)}
    assert folders[sections.GLOBAL].is_dir(), "no smoke run in build/nbval"
    undeclared = {}
    checked = 0
    for scope, folder in folders.items():
        if not folder.is_dir():
            continue
        files = sorted(p.name for p in folder.iterdir() if p.is_file())
        checked += len(files)
        missing = [f for f in files if f not in _declared(scope)]
        if missing:
            undeclared[scope] = missing
    assert checked > 50, f"only {checked} files found"
    assert not undeclared, f"files without a declared writer (add them to a Section): {undeclared}"


def test_the_claims_table_of_the_smoke_run_keeps_its_promises():
    import pandas as pd

    from helpers.analysis.claims import CANNOT, CLAIM_COLUMNS, VERDICTS
    from helpers.stats.bootstrap import MIN_CASES

    table = pd.read_csv(Workspace.at("build/nbval").results() / "claims.csv")
    assert list(table.columns[: len(CLAIM_COLUMNS)]) == list(CLAIM_COLUMNS)
    assert set(table["verdict"]) <= set(VERDICTS) and len(table) >= 10
    assert set(table["study"]) >= {"small_lesions", "small_data", "method"}
    # no verdict of the first study on fewer cases than the minimum; every "cannot be assessed" says why
    first = table[(table["study"] == "small_lesions") & (table["verdict"] != CANNOT) & (table["dataset"] != "all")]
    assert (first["n_cases"] >= MIN_CASES).all()
    assert table.loc[table["verdict"] == CANNOT, "reason"].fillna("").str.len().gt(0).all()
