"""The claims of a run, read from its workspace: which data produced it (``data_source``), the sites of the test
cases (for the stratified bootstrap), every trained seed's tables, and the per-dataset and cross-dataset claims
of :mod:`helpers.analysis.verdicts` computed from them, with the precondition of
:mod:`helpers.analysis.preconditions` checked first.

Files (each written by the section named; declared in :mod:`helpers.runner.sections`)
-------------------------------------------------------------------------------------
``results/<dataset>/claims.csv``, ``dice_equivalence.csv``, ``spread_intervals.csv``, ``claims_robustness.csv``
    The dataset's claims and their evidence (stratification section), read by the reversal, bootstrap and
    cross-dataset pages.
``results/study/claims.csv``, ``agreement_at_resolution.csv``
    The cross-dataset claims (cross-dataset section).
``results/claims.csv``
    Every claim of the run (:func:`helpers.analysis.claims.assemble`, called by the runner after the sections).

Imports :mod:`helpers.analysis.verdicts`, :mod:`helpers.analysis.preconditions`,
:mod:`helpers.analysis.sensitivity`, :mod:`helpers.analysis.paper`, :mod:`helpers.evaluation` and
:mod:`helpers.base.io`; never matplotlib.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from helpers.analysis import preconditions as _preconditions
from helpers.analysis.claims import claims_frame
from helpers.analysis.paper import PAPER_AGREEMENT
from helpers.analysis.sensitivity import seed_tables
from helpers.analysis.units import analysis_units
from helpers.analysis.verdicts import (
    Settings, architecture_intervals, combine_seeds, cross_dataset_claims, dataset_claims,
)
from helpers.base.io import read_json
from helpers.evaluation.constructed import predictions_source

__all__ = ["data_source", "case_sites", "run_dataset_claims", "run_cross_dataset_claims", "settings_from"]


def settings_from(**parameters) -> Settings:
    """:class:`helpers.analysis.verdicts.Settings` from notebook parameters (unknown keys are an error)."""
    known = set(Settings.__dataclass_fields__)
    unknown = sorted(set(parameters) - known)
    if unknown:
        raise ValueError(f"unknown verdict settings {unknown}; known: {sorted(known)}")
    if "margins" in parameters:
        parameters["margins"] = tuple(float(m) for m in parameters["margins"])
    if "metrics" in parameters:
        parameters["metrics"] = tuple(parameters["metrics"])
    return Settings(**parameters)


def data_source(ws, dataset: str) -> str:
    """What produced a dataset's results: ``synthetic`` (the built-in stand-ins), ``real`` (data read from a
    layout), ``user`` (a user's dataset, when the manifest says so), with ``, constructed predictions`` added when
    the evaluated predictions were constructed rather than trained (:mod:`helpers.evaluation.constructed`)."""
    path = ws.results(dataset) / "data_manifest.json"
    manifest = read_json(path) if path.is_file() else {}
    source = str(manifest.get("source", "unknown"))
    kind = manifest.get("data_source") or ("synthetic" if source == "synthetic" else
                                            "unknown" if source == "unknown" else "real")
    label = {"synthetic": "synthetic stand-in", "real": "real data", "user": "the user's data"}.get(kind, kind)
    record = predictions_source(ws, dataset) or {}
    if record.get("source") == "constructed":
        label += ", constructed predictions"
    return label


def case_sites(ws, dataset: str, case_ids: Sequence[str]) -> dict[str, str] | None:
    """Case id -> site for ``case_ids`` from the data section's ``cases.csv``, or None when the cases carry no
    site or a single one (then the bootstrap is not stratified)."""
    path = ws.results(dataset) / "cases.csv"
    if not path.is_file():
        return None
    cases = pd.read_csv(path, dtype={"case_id": str})
    if "site" not in cases.columns:
        return None
    sites = dict(zip(cases["case_id"].astype(str), cases["site"]))
    wanted = {c: sites.get(str(c)) for c in case_ids}
    values = [v for v in wanted.values() if isinstance(v, str) and v]
    if len(values) != len(wanted) or len(set(values)) < 2:
        return None
    return wanted


def run_dataset_claims(ws, dataset: str, *, settings: Settings = Settings(), tables: Mapping | None = None,
                       main_seed: int = 0, precondition: Mapping | None = None
                       ) -> tuple[pd.DataFrame, dict[str, pd.DataFrame], _preconditions.Precondition]:
    """The dataset's claims (:func:`helpers.analysis.verdicts.dataset_claims`) for every trained seed
    (``tables``: :func:`helpers.analysis.sensitivity.seed_tables`, read here when None), combined over seeds
    (:func:`helpers.analysis.verdicts.combine_seeds`); the main seed's precondition blocks the claims it must.
    Returns the claims, the main seed's evidence tables and the precondition."""
    tables = seed_tables(ws, dataset, main_seed=main_seed, progress=False) if tables is None else tables
    verdict = _preconditions.check(ws, dataset, **dict(precondition or {}))
    source = data_source(ws, dataset)
    per_seed, evidence = {}, {}
    for seed, (per_case, per_lesion) in tables.items():
        if int(seed) == int(main_seed):
            top, failed = verdict.top_models, verdict.failed
        else:
            other = _preconditions.evaluate(dataset, per_case, per_lesion, thresholds=verdict.thresholds)
            top, failed = other.top_models, verdict.failed
        case_ids = sorted(per_case["case_id"].astype(str).unique())
        claims, ev = dataset_claims(per_case, per_lesion, dataset=dataset, data_source=source, top_models=top,
                                    precondition_failed=failed, settings=settings,
                                    case_sites=case_sites(ws, dataset, case_ids), n_seeds=len(tables))
        per_seed[int(seed)] = claims
        if int(seed) == int(main_seed):
            evidence = ev
    if len(tables) >= 2:  # architecture-level intervals over seeds (two-level bootstrap), the main seed's top models
        units = {int(k): analysis_units(pc, pl, lesion_set="common") for k, (pc, pl) in tables.items()}
        evidence["architecture"] = architecture_intervals(
            units, list(verdict.top_models), n_resamples=settings.n_resamples, seed=settings.seed,
            confidence=settings.confidence)
    else:
        evidence["architecture"] = pd.DataFrame()
    return combine_seeds(per_seed, main_seed=int(main_seed)), evidence, verdict


def run_cross_dataset_claims(ws, datasets: Sequence[str], *, settings: Settings = Settings(),
                             precondition: Mapping | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The cross-dataset claims from each dataset's ``claims_robustness.csv`` and precondition; ``n_seeds`` is the
    smallest number of seeds behind the datasets' claims."""
    tables, top, met, seeds, sources = {}, {}, {}, [], set()
    for dataset in datasets:
        path = ws.results(dataset) / "claims_robustness.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found (run the dataset's stratification section first)")
        tables[dataset] = pd.read_csv(path)
        verdict = _preconditions.check(ws, dataset, **dict(precondition or {}))
        top[dataset], met[dataset] = list(verdict.top_models), verdict.met
        claims = pd.read_csv(ws.results(dataset) / "claims.csv")
        seeds.append(int(claims["n_seeds"].min()) if len(claims) else 1)
        sources.add(data_source(ws, dataset))
    claims, agreement = cross_dataset_claims(
        tables, top, data_source=" + ".join(sorted(sources)), met=met, n_seeds=min(seeds) if seeds else 1,
        settings=settings, paper_agreement=PAPER_AGREEMENT)
    return claims_frame(claims.to_dict("records")), agreement
