"""The ``evaluate`` command: predictions made elsewhere, evaluated. The reference is one of the study's datasets
(``--dataset NAME --data-root DIR``) or any user's dataset (``--labels DIR``, a folder of masks, or ``--nnunet DIR``,
an nnU-Net raw dataset; :mod:`helpers.runner.userdata`), one dataset scope per chosen label. The prediction files
are matched to the test cases (the matching is printed before anything runs; a user dataset's cases are all test
cases), their grids checked, staged in the workspace; a user dataset's cases are then evaluated as per-case tasks on
the run's Dask cluster into the workspace's cache (:mod:`helpers.evaluation.tasks`), and the sections of
:data:`EVALUATE_SECTIONS` run (no training), then the book."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import yaml

from helpers import data as _data
from helpers.base import io as _io
from helpers.base.paths import Workspace, relative, resolve
from helpers.compute.cluster import GridError
from helpers.data import predictions as _predictions
from helpers.data import splits as _splits
from helpers.data.datasets import DATASETS, register_workspace
from helpers.data.predictions import SUFFIXES as _PREDICTION_SUFFIXES
from helpers.metrics.challenge import challenge_metric_names
from helpers.evaluation.tasks import evaluate_on_cluster, evaluation_params
from helpers.runner import userdata as _user
from helpers.runner.errors import StudyError
from helpers.runner.interrupts import signals
from helpers.runner.lock import workspace_lock
from helpers.runner.plan import plan
from helpers.runner.running import run_locked
from helpers.runner.scheduling import RunReport

__all__ = [
    "EVALUATE_SECTIONS", "add_evaluate_arguments", "prediction_models", "format_matching", "evaluate_command",
    "stage_predictions",
]


#: The sections the ``evaluate`` command runs (no training: the predictions come from elsewhere).
EVALUATE_SECTIONS = ("data", "evaluation", "stratification", "reversals", "bootstrap", "qualitative")


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    reference = parser.add_mutually_exclusive_group(required=True)
    reference.add_argument("--dataset", choices=DATASETS, help="one of the study's datasets (with --data-root)")
    reference.add_argument("--labels", metavar="DIR", help="a folder of reference masks (NIfTI, PNG, TIFF; NRRD/MHA "
                                                           "with SimpleITK), one file per case")
    reference.add_argument("--nnunet", metavar="DIR", help="an nnU-Net v2 raw dataset (DatasetXXX_Name/ with "
                                                           "dataset.json and labelsTs/)")
    parser.add_argument("--data-root", help="with --dataset: your copy of the dataset (its published layout)")
    parser.add_argument("--nnunet-split", choices=("Ts", "Tr"), default="Ts",
                        help="with --nnunet: labelsTs (default) or labelsTr (cross-validation predictions)")
    parser.add_argument("--label", action="append", metavar="N|NAME|all",
                        help="the label evaluated as lesion class (repeatable; a name of dataset.json, a number, or "
                             "'all' for each foreground label in turn, the default); each gets its own tables")
    parser.add_argument("--ignore-label", metavar="N|NAME",
                        help="label whose voxels count neither as truth nor as false positive (default: dataset.json's "
                             "'ignore' label)")
    parser.add_argument("--spacing", type=float, nargs="+", metavar="MM",
                        help="voxel size per axis (y x) of 2D masks, which have none (default: pixel units)")
    parser.add_argument("--name", help="the user dataset's name in tables and the book (default: its folder's)")
    parser.add_argument("--resample-predictions", action="store_true",
                        help="resample a prediction not on its reference's grid by nearest neighbour (default: stop)")
    parser.add_argument("--scheduler", default="local", metavar="ADDRESS|local|none",
                        help="Dask scheduler of the per-case evaluation tasks (as for `run`)")
    parser.add_argument("--workers", type=int, default=None, metavar="N", help="workers of the local cluster")
    parser.add_argument("--challenge-metrics", nargs="+", default=[], metavar="SET",
                        help="challenge metric sets the per-case table carries too: 'wmh' (the WMH challenge's five) "
                             "and/or 'panoptic' (panoptic quality)")
    parser.add_argument("--cases-only", action="store_true",
                        help="evaluate the cases into the workspace's cache and stop (no section, no book)")
    parser.add_argument("--predictions", required=True,
                        help="a folder of prediction files (one model, named after the folder) or of model folders")
    parser.add_argument("--workspace", default="build/evaluate",
                        help="where results and the book go: any folder, absolute or relative (to the project root)")
    parser.add_argument("--mapping", help="CSV with columns case_id,file tying files to cases explicitly")
    parser.add_argument("--missing-as-empty", action="store_true",
                        help="score a test case without a prediction as an empty prediction (default: stop)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and the bootstrap")
    parser.add_argument("--no-book", action="store_true", help="do not build the book")


def prediction_models(folder: Path) -> dict[str, Path]:
    """The models of a predictions folder: the folder itself when it holds prediction files (the model is named
    after it), else each sub-folder with prediction files (``_``/``.`` folders skipped)."""

    if not folder.is_dir():
        raise StudyError(f"--predictions {folder}: folder not found")
    if _predictions.list_cases(folder.parent, folder.name):
        return {folder.name: folder}
    models = {name: folder / name for name in _predictions.list_models(folder)}
    if not models:
        entries = sorted(p.name for p in folder.iterdir())[:10]
        raise StudyError(f"--predictions {folder}: no prediction files ({', '.join(_predictions_suffixes())}) in it "
                         f"or in its sub-folders; it holds: {entries or 'nothing'}")
    return models


def _predictions_suffixes() -> tuple[str, ...]:
    return _predictions.SUFFIXES


def format_matching(model: str, table, test_ids: set[str]) -> str:
    """The matching of one model's files as the lines the ``evaluate`` command prints before anything runs."""
    in_test = table["case_id"].isin(test_ids)
    matched = table[(table["status"] == "matched") & in_test]
    elsewhere = table[(table["status"] == "matched") & ~in_test]
    unmatched = table[table["status"] == "unmatched file"]
    missing = table[(table["status"] == "no prediction") & in_test]
    lines = [f"predictions of model {model!r}: {len(matched)} test cases matched, {len(missing)} test cases without a "
             f"prediction, {len(unmatched)} unmatched files, {len(elsewhere)} files of cases outside the test split"]
    for _, row in matched.iterrows():
        lines.append(f"  matched        {row['case_id']:<36} {row['file']}  ({row['rule']})")
    for _, row in missing.iterrows():
        lines.append(f"  NO PREDICTION  {row['case_id']}")
    for _, row in unmatched.iterrows():
        lines.append(f"  unmatched file {row['file']:<36} ({row['rule']})")
    for _, row in elsewhere.iterrows():
        lines.append(f"  not evaluated  {row['file']:<36} (case {row['case_id']} is not in the test split)")
    return "\n".join(lines)


def evaluate_command(args, *, out=None) -> RunReport:
    """``python -m helpers.study evaluate``: match the prediction files to the dataset's test cases, print the
    matching, stage the matched files under ``<workspace>/predictions/<dataset>/<model>/<case_id>.<ext>`` (links),
    then run :data:`EVALUATE_SECTIONS` and build the book."""
    out = sys.stdout if out is None else out
    if not args.dataset:
        return _evaluate_user(args, out)
    if not args.data_root:
        raise StudyError("--dataset needs --data-root (your copy of the dataset)")
    dataset = args.dataset
    ws = Workspace.at(args.workspace)
    found, used = _read_dataset(args, out)
    split = _splits.make_splits(found, seed=args.seed)
    test_ids = set(split.test)
    print(f"split: {len(test_ids)} test cases ({split.rule})", file=out, flush=True)
    staged = _match_models(args, found, test_ids, out)
    prof = {"profile": "evaluate", "description": f"evaluate predictions from {relative(resolve(args.predictions))}",
            "seed": int(args.seed), "datasets": {dataset: {"data": {"data_root": str(used)}}}, "study": {}}
    prof_path = ws.root / "evaluate_profile.yaml"
    with workspace_lock(ws, f"helpers.study evaluate --dataset {dataset}", out=out), signals():
        _io.write_text(prof_path, "# written by `python -m helpers.study evaluate`\n"
                       + yaml.safe_dump(prof, sort_keys=False))
        by_id = {f.case_id: f for f in found}
        for model, files in staged.items():
            stage_predictions(ws.predictions(dataset), model, files, by_id)
        tasks = plan(prof, prof_path, relative(ws.root), sections=EVALUATE_SECTIONS)
        # Evaluation only: no training grid, so the sections run in-process, one after another.
        return run_locked(tasks, ws, prof, prof_path, force=False, book=not args.no_book, scheduler=None,
                          workers=None, out=out)


def _evaluate_user(args, out) -> RunReport | None:
    """``evaluate --labels/--nnunet``: every case is a test case; one dataset scope per chosen label; per-case tasks
    on the cluster fill the cache before the sections run."""
    ws = Workspace.at(args.workspace)
    root, scopes = _user.user_scopes(args, out)
    found = _user.find_scope_cases(scopes[0], root)
    spacing = scopes[0].options.spacing
    grids, line = _user.spacing_range(found, spacing)
    print(f"data: {len(found)} cases in {root} (every case is a test case); {line}", file=out, flush=True)
    test_ids = {f.case_id for f in found}
    staged = _match_models(args, found, test_ids, out)
    resample = _user.check_grids(staged, found, grids, resample=args.resample_predictions, spacing=spacing, out=out)
    challenge = list(args.challenge_metrics or [])
    try:
        challenge_metric_names(challenge)
    except ValueError as err:
        raise StudyError(f"--challenge-metrics: {err}") from None
    datasets = {s.name: {"data": {"data_root": str(root), "loader_options": s.options.as_dict()},
                         **({"evaluation": {"challenge_metrics": challenge}} if challenge else {})} for s in scopes}
    prof = {"profile": "evaluate", "description": f"evaluate predictions from {relative(resolve(args.predictions))}",
            "seed": int(args.seed), "datasets": datasets, "study": {}}
    prof_path = ws.root / "evaluate_profile.yaml"
    params = evaluation_params(None, None, challenge=challenge)  # one voxel of each case's grid, as the notebooks
    with workspace_lock(ws, f"helpers.study evaluate --{scopes[0].options.layout} {root}", out=out), signals():
        register_workspace(ws.root, {s.name: s.entry() for s in scopes})
        _io.write_text(prof_path, "# written by `python -m helpers.study evaluate`\n"
                       + yaml.safe_dump(prof, sort_keys=False))
        for scope in scopes:
            cases = _user.find_scope_cases(scope, root)
            by_id = {f.case_id: f for f in cases}
            jobs = []
            for model, files in staged.items():
                stage_predictions(ws.predictions(scope.name), model, files, by_id)
                for case_id, (ref_grid, pred_grid) in resample.get(model, {}).items():
                    target = _staged_file(ws.predictions(scope.name) / model, case_id)
                    target.unlink()
                    _user.write_resampled(files[case_id], target.parent / f"{case_id}{_suffix_of(target)}",
                                          ref_grid, pred_grid, spacing)
                jobs += [(by_id[c], _staged_file(ws.predictions(scope.name) / model, c), model) for c in sorted(files)]
            try:
                evaluate_on_cluster(jobs, dataset=scope.name, params=params, cache_root=ws.root,
                                    scheduler=args.scheduler, workers=args.workers, out=out)
            except GridError as err:
                raise StudyError(f"{err}; the cases finished so far are cached: run the command again to resume "
                                 "where it stopped") from None
        if args.cases_only:
            return None
        tasks = plan(prof, prof_path, relative(ws.root), sections=EVALUATE_SECTIONS)
        return run_locked(tasks, ws, prof, prof_path, force=False, book=not args.no_book, scheduler=None,
                          workers=None, out=out)


def _staged_file(folder: Path, case_id: str) -> Path:
    for suffix in _PREDICTION_SUFFIXES:
        if (folder / f"{case_id}{suffix}").exists() or (folder / f"{case_id}{suffix}").is_symlink():
            return folder / f"{case_id}{suffix}"
    raise StudyError(f"{folder}: no staged prediction for case {case_id!r}")


def _suffix_of(path: Path) -> str:
    return ".nii.gz" if path.name.endswith((".nii.gz", ".nii")) else ".png"


def _read_dataset(args, out) -> tuple[list, Path]:
    """The cases found under ``--data-root`` and the dataset folder they were found in."""
    if args.data_root == "synthetic":
        raise StudyError("--data-root synthetic: the stand-in is written by a run (use `run --profile smoke`); "
                         "point --data-root at a dataset folder, e.g. <workspace>/data/wmh of such a run")
    data_root = resolve(args.data_root)
    try:
        found = _data.find_cases(args.dataset, data_root)
    except (FileNotFoundError, ValueError) as err:
        raise StudyError(f"--data-root: {err}") from None
    used = _data.dataset_folder(found, data_root)
    note = "" if used == data_root.resolve() else f" (one level below {data_root})"
    print(f"data: {len(found)} {args.dataset} cases in {used}{note}", file=out, flush=True)
    return found, used


def _match_models(args, found: list, test_ids: set[str], out) -> dict[str, dict[str, Path | None]]:
    """For each model of ``--predictions``: its file per test case (None: no prediction, scored as empty with
    ``--missing-as-empty``); the matching is printed. Missing predictions without that flag stop the command."""
    mapping = _predictions.read_mapping(resolve(args.mapping)) if args.mapping else None
    staged: dict[str, dict[str, Path | None]] = {}
    problems = []
    for model, folder in prediction_models(resolve(args.predictions)).items():
        try:
            matching = _predictions.match_predictions(found, folder, mapping=mapping)
        except (FileNotFoundError, ValueError) as err:
            raise StudyError(f"--predictions {folder}: {err}") from None
        print(format_matching(model, matching.table(), test_ids), file=out, flush=True)
        files = {c: p for c, (p, _) in matching.matched.items() if c in test_ids}
        missing = sorted(test_ids - set(files))
        if missing and not args.missing_as_empty:
            problems.append(f"model {model!r}: no prediction for test case(s) {missing[:10]}"
                            + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""))
        staged[model] = {**files, **{c: None for c in missing}}
    if problems:
        raise StudyError("; ".join(problems) + ". Name the files by case id, give --mapping case_id,file, or score "
                         "them as empty predictions with --missing-as-empty")
    return staged


def stage_predictions(root: Path, model: str, files: dict, cases: dict) -> None:
    """Lay the matched files out as ``<root>/<model>/<case_id><suffix>`` (symbolic links, copies where links are
    not possible); a case mapped to ``None`` gets an empty prediction on its grid."""

    folder = root / model
    if folder.is_symlink() or folder.is_file():
        folder.unlink()
    elif folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for case_id, path in files.items():
        if path is None:
            case = _data.read_case(cases[case_id])
            kind = "image" if case.mask.ndim == 2 else "volume"
            _predictions.write_prediction(root, model, case_id, np.zeros(case.mask.shape, bool), kind=kind,
                                          affine=case.affine)
            continue
        suffix = next(s for s in _predictions.SUFFIXES if path.name.lower().endswith(s))
        target = folder / f"{case_id}{suffix}"
        try:
            target.symlink_to(path.resolve())
        except OSError:
            shutil.copyfile(path, target)
