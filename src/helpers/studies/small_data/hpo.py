"""Hyper-parameter optimisation of the small-data study (Optuna).

Conventions
-----------
- The same number of trials and epochs for every model; objective = mean macro foreground Dice over the
  validation images of one fixed inner split (:func:`helpers.data.splits.inner_split`). As in the study, that split is
  drawn from the same N images that the cross-validation later tests on (non-nested), so the cross-validated
  scores are optimistic; the notebook says so.
- Each model's search is its own study, seeded per model (:func:`model_seed`: the seed and the model's name), so
  two models' searches draw different trials; every model gets the same budget of trials.
- Samplers (:func:`make_sampler`): TPE or Gaussian process (as in the study), with ``n_startup`` random start-up
  trials; the budget must exceed the start-up (:func:`check_budget`), so that the later trials are proposed by the
  sampler's model of the objective, not at random (Optuna's default start-up of 10 trials is longer than a
  CPU-sized budget: with 4 trials TPE never left it).
- Median pruning on the validation Dice after each epoch, never in the first ``PRUNER_STARTUP`` trials (so at least
  that many trials of every model complete) and never before half of the epochs (a model that still predicts only
  background early, as DeepLabV3+ does for its first epochs, is not judged then).
- A model whose best objective stays below ``floor`` (:data:`HPO_FLOOR`) has a failed search: its parameters are not
  used (status ``search failed``; cross-validation trains it with the defaults) and the chapter says so.
- Searches are stored in an Optuna journal in the workspace (:func:`hpo_storage`); one trial is one grid task
  (``helpers.compute.cluster``), trial k's sampler seeded with ``(model seed, k)`` so that a resumed search proposes
  what an uninterrupted one would.
- Training and prediction are those of ``helpers.studies.small_data.train``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from helpers.studies.small_data import data as sd
from helpers.studies.small_data import models as sm
from helpers.base.io import write_csv, write_json
from helpers.compute.runtime import torch_settings
from helpers.studies.small_data.train import DATASET, predict_proba, stack_cases, to_reference_size, train_model
from helpers.data.splits import inner_split
from helpers.compute.cluster import GridTask, run_grid
from helpers.studies.small_data import lite_models as lmm

__all__ = [
    "SEARCH_SPACE", "HPO_FLOOR", "N_STARTUP", "PRUNER_STARTUP", "model_seed", "make_sampler", "check_budget",
    "hpo_study_name", "hpo_trial", "hpo_tasks", "hpo_results", "optimize", "hpo_storage", "run_hpo",
]

# optuna is imported where it is used: it is heavy (about a second, and SQLAlchemy) and only the search needs it.
# The grid (``helpers.compute.cluster``) is imported where it is used too: it belongs to the runner, above this module.

#: Search space of the hyper-parameter optimisation: name -> (kind, low, high). Learning rates: 3e-4 to 3e-3.
#: Measured at 128 px, width 16, six training images (three Adam steps per epoch): with 8 epochs (24 steps)
#: DeepLabV3+ still predicts only background at every learning rate (validation macro Dice 0.000; the 0.000 of
#: the earlier search's trial at lr 0.0088 was this plus that rate's instability), and at 1e-2 the validation
#: Dice of every model jumps between 0.05 and 0.8 from epoch to epoch; from 24 epochs on, rates between 3e-4
#: and 3e-3 train every model (validation macro Dice 0.5-0.9).
SEARCH_SPACE: dict[str, tuple[str, float, float]] = {
    "lr": ("log", 3e-4, 3e-3),
    "weight_decay": ("log", 1e-6, 1e-3),
    "dropout": ("float", 0.0, 0.5),
    "gamma": ("float", 0.0, 3.0),
    "lambda_dice": ("float", 0.25, 2.0),
}


#: Floor of the best validation macro Dice below which a model's search counts as failed (its parameters unused).
HPO_FLOOR = 0.5
#: Default random start-up trials of the sampler (Optuna's default, 10, exceeds a CPU-sized budget).
N_STARTUP = 5
#: Trials of a model that the median pruner never prunes: at least this many trials of every model complete.
PRUNER_STARTUP = 2


def model_seed(seed: int, name: str) -> int:
    """The seed of one model's search: drawn from ``(seed, crc32(name))``, so that models' searches differ."""
    import zlib

    return int(np.random.SeedSequence([int(seed), zlib.crc32(str(name).encode())]).generate_state(1)[0])


def make_sampler(sampler: str, seed: int, *, n_startup: int = N_STARTUP):
    """An Optuna sampler: ``"tpe"`` (``TPESampler``), ``"gp"`` (``GPSampler``, a Gaussian-process surrogate) or
    ``"random"`` (``RandomSampler``, for comparison only); the first ``n_startup`` trials of a study are random."""
    import optuna

    if sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=int(n_startup), multivariate=True)
    if sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=int(n_startup))
    if sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"sampler must be 'tpe' or 'gp', got {sampler!r}")


def check_budget(n_trials, n_startup) -> tuple[int, int]:
    """``(n_trials, n_startup)`` checked: positive integers, the budget longer than the sampler's start-up."""
    if isinstance(n_trials, bool) or not isinstance(n_trials, (int, np.integer)) or n_trials < 1:
        raise ValueError(f"n_trials must be a positive integer, got {n_trials!r}")
    if isinstance(n_startup, bool) or not isinstance(n_startup, (int, np.integer)) or n_startup < 1:
        raise ValueError(f"n_startup must be a positive integer, got {n_startup!r}")
    if n_trials <= n_startup:
        raise ValueError(f"n_trials ({n_trials}) must exceed the sampler's {n_startup} random start-up trials, "
                         "or no trial is proposed by the sampler's model")
    return int(n_trials), int(n_startup)


def _suggest(trial, space):
    out = {}
    for key, (kind, low, high) in space.items():
        if kind not in ("log", "float"):
            raise ValueError(f"search space kind must be 'log' or 'float', got {kind!r} for {key}")
        out[key] = trial.suggest_float(key, low, high, log=kind == "log")
    return out


def _mean_macro_dice(model, x, cases) -> float:
    proba = predict_proba(model, x)
    values = []
    for p, case in zip(proba, cases):
        pred = to_reference_size(p, case.mask.shape).argmax(0)
        values.append(sd.macro_scores(sd.multiclass_scores(case.mask, pred))["dice"])
    return float(np.nanmean(values))


#: Finished trial states: they count towards the budget and inform the sampler.
_FINISHED = ("COMPLETE", "PRUNED")


def hpo_study_name(name: str, cases: Sequence[sd.VesselCase], *, size: int, epochs: int, width: int, seed: int,
                   sampler: str, space: dict, batch_size: int, checkpoint=None, device: str = "cpu",
                   n_startup: int = N_STARTUP) -> str:
    """The Optuna study of one model's search: the model name and a hash of everything that defines its trials
    (data, split, sizes, budget per trial, sampler, space), so that a changed configuration starts a new study in
    the same storage and an unchanged one resumes. The trial budget ``n_trials`` is not part of it: raising it
    continues the study."""
    h = hashlib.sha256()
    for case in cases:
        h.update(case.case_id.encode())
        h.update(np.ascontiguousarray(case.image).tobytes())
        h.update(np.ascontiguousarray(case.mask).tobytes())
    h.update(json.dumps({"size": size, "epochs": epochs, "width": width, "seed": seed, "sampler": sampler,
                         "space": {k: list(v) for k, v in space.items()}, "batch_size": batch_size,
                         "checkpoint": None if checkpoint is None else str(checkpoint), "device": str(device),
                         "n_startup": int(n_startup)},
                        sort_keys=True).encode())
    return f"{name}-{h.hexdigest()[:12]}"


def _open_study(storage, study_name: str, *, warmup: int = 1):
    """Create or load a maximising study: in memory (``storage`` None) or in an Optuna journal file."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if storage is not None:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        path = Path(storage)
        path.parent.mkdir(parents=True, exist_ok=True)
        storage = JournalStorage(JournalFileBackend(str(path)))
    # median pruning: a trial stops when its validation Dice after an epoch is below the median of the earlier
    # trials at that epoch (from trial PRUNER_STARTUP on, never in the first ``warmup`` epochs)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP, n_warmup_steps=int(warmup))
    return optuna.create_study(direction="maximize", storage=storage, study_name=study_name, load_if_exists=True,
                               pruner=pruner)


def _finished_trials(study) -> list:
    return [t for t in study.get_trials(deepcopy=False) if t.state.name in _FINISHED]


def _fail_interrupted_trials(study) -> None:
    """Trials left RUNNING by an interrupted run are marked FAIL (they neither count nor inform the sampler)."""
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)


def hpo_trial(storage, study_name: str, name: str, cases: Sequence[sd.VesselCase], *, index: int, size: int,
              epochs: int, width: int = 16, seed: int = 0, sampler: str = "tpe", space: dict | None = None,
              checkpoint=None, batch_size: int = 2, threads: int | None = 1, device: str = "cpu",
              prune: bool = True, n_startup: int = N_STARTUP, feature_folder=None) -> dict:
    """One HPO trial as a grid task: the study's ``index``-th finished trial (0-based), run unless it exists.
    ``feature_folder``: the LiteMedSAM models' shared frozen-part outputs
    (:func:`helpers.studies.small_data.lite_models.feature_folder_used`).

    The sampler (:func:`make_sampler`, ``n_startup`` random trials) is seeded with ``(model_seed(seed, name),
    index)``, so trial ``index`` proposes the same parameters whether the search ran without a break or resumed
    after one, and differs between models; trials left running by an interruption are marked failed
    and ignored. With ``prune``, the validation macro Dice is reported after each epoch and the median pruner
    may stop the trial. Returns ``{"up_to_date": bool, "state": ...}``."""
    import optuna

    space = dict(SEARCH_SPACE if space is None else space)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=optuna.exceptions.ExperimentalWarning)
        study = _open_study(storage, study_name, warmup=max(1, epochs // 2))
        _fail_interrupted_trials(study)
        finished = _finished_trials(study)
        if len(finished) > index:
            return {"up_to_date": True, "state": finished[index].state.name}
        if len(finished) < index:
            raise ValueError(f"study {study_name!r} has {len(finished)} finished trials; trial {index} must wait "
                             f"for trial {len(finished)}")
        trial_seed = int(np.random.SeedSequence([model_seed(seed, name), int(index)]).generate_state(1)[0])
        study.sampler = make_sampler(sampler, trial_seed, n_startup=n_startup)
        split = inner_split([c.case_id for c in cases], seed=seed)
        by_id = {c.case_id: c for c in cases}
        train_cases, val_cases = [by_id[i] for i in split["train"]], [by_id[i] for i in split["val"]]
        xt, yt = stack_cases(train_cases, size)
        xv, _ = stack_cases(val_cases, size)

        def objective(trial):
            params = _suggest(trial, space)
            scores = {}

            def report(epoch, model):
                scores[epoch] = _mean_macro_dice(model, xv, val_cases)
                trial.report(scores[epoch], epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned()

            model, _ = train_model(name, xt, yt, params=params, epochs=epochs, width=width, seed=seed,
                                   checkpoint=checkpoint, batch_size=batch_size, threads=threads, device=device,
                                   on_epoch_end=report if prune else None)
            return scores[epochs] if prune else _mean_macro_dice(model, xv, val_cases)

        with torch_settings(num_threads=threads, deterministic=None), lmm.feature_folder_used(feature_folder):
            study.optimize(objective, n_trials=1)
    last = study.get_trials(deepcopy=False)[-1]
    if last.state.name not in _FINISHED:
        raise RuntimeError(f"HPO trial {index} of {name} ended {last.state.name}")
    return {"up_to_date": False, "state": last.state.name}


def hpo_tasks(name: str, cases: Sequence[sd.VesselCase], *, n_trials: int, storage, size: int, epochs: int,
              width: int = 16, seed: int = 0, sampler: str = "tpe", space: dict | None = None, checkpoint=None,
              batch_size: int = 2, threads: int | None = None, device: str = "cpu",
              prune: bool = True, n_startup: int = N_STARTUP, feature_folder=None,
              first_after: Sequence[str] = ()) -> tuple[str, list]:
    """The study name and the grid tasks of one model's search: trial k waits for trial k-1 (a sequential
    search, resumable); the searches of different models run side by side. ``threads`` None: the task's
    thread count (:func:`helpers.compute.runtime.task_threads`). ``first_after``: labels trial 0 waits for (the
    tasks filling ``feature_folder``)."""

    space = dict(SEARCH_SPACE if space is None else space)
    study_name = hpo_study_name(name, cases, size=size, epochs=epochs, width=width, seed=seed, sampler=sampler,
                                space=space, batch_size=batch_size, checkpoint=checkpoint, device=device,
                                n_startup=n_startup)
    tasks = []
    for k in range(int(n_trials)):
        tasks.append(GridTask(
            f"hpo {name} · trial {k}", hpo_trial, (None if storage is None else str(storage), study_name, name,
                                                   list(cases)),
            {"index": k, "size": size, "epochs": epochs, "width": width, "seed": seed, "sampler": sampler,
             "space": space, "checkpoint": checkpoint, "batch_size": batch_size, "threads": threads,
             "device": device, "prune": prune, "n_startup": n_startup, "feature_folder": feature_folder},
            gpu=str(device).startswith("cuda"), after=(f"hpo {name} · trial {k - 1}",) if k else tuple(first_after)))
    return study_name, tasks


def hpo_results(storage, study_name: str, name: str, cases: Sequence[sd.VesselCase], *, n_trials: int,
                sampler: str, seed: int = 0, space: dict | None = None, n_startup: int = N_STARTUP,
                floor: float = HPO_FLOOR) -> tuple[pd.DataFrame, dict]:
    """The first ``n_trials`` finished trials of a stored search (``phase``: ``start-up`` for the sampler's random
    trials, ``model`` for those its model proposed) and its best (completed) trial; ``search_ok`` says whether the
    best value reaches ``floor``."""
    space = dict(SEARCH_SPACE if space is None else space)
    study = _open_study(storage, study_name)
    finished = _finished_trials(study)[: int(n_trials)]
    rows = [{"model": name, "trial": k, "value": t.value, "state": t.state.name.lower(),
             "phase": "start-up" if k < n_startup else "model",
             "seconds": (t.datetime_complete - t.datetime_start).total_seconds(), **t.params}
            for k, t in enumerate(finished)]
    complete = [(k, t) for k, t in enumerate(finished) if t.state.name == "COMPLETE"]
    if not complete:
        raise ValueError(f"HPO of {name}: none of {len(finished)} trials completed (all pruned)")
    k, best_trial = max(complete, key=lambda kt: (kt[1].value, -kt[0]))  # ties: the earlier trial
    split = inner_split([c.case_id for c in cases], seed=seed)
    best = {"model": name, "value": float(best_trial.value), "trial": int(k), "params": dict(best_trial.params),
            "sampler": sampler, "n_trials": int(n_trials), "val_cases": split["val"],
            "space": {key: list(v) for key, v in space.items()}, "study": study_name, "n_startup": int(n_startup),
            "floor": float(floor), "search_ok": bool(best_trial.value >= floor)}
    return pd.DataFrame(rows), best


def optimize(
    name: str,
    cases: Sequence[sd.VesselCase],
    *,
    n_trials: int,
    size: int,
    epochs: int,
    width: int = 16,
    seed: int = 0,
    sampler: str = "tpe",
    space: dict | None = None,
    checkpoint=None,
    batch_size: int = 2,
    threads: int | None = 1,
    device: str = "cpu",
    storage=None,
    prune: bool = True,
    scheduler: str | None = None,
    n_startup: int = N_STARTUP,
    floor: float = HPO_FLOOR,
) -> tuple[pd.DataFrame, dict]:
    """Bayesian hyper-parameter optimisation of one model on the fixed inner split
    (:func:`helpers.data.splits.inner_split`).

    Parameters
    ----------
    n_trials : int
        The budget (the same for every model).
    sampler : {"tpe", "gp"}
        Optuna ``TPESampler`` or ``GPSampler`` (Gaussian-process surrogate, as in the study), seeded with
        ``(model_seed(seed, name), trial index)`` (:func:`hpo_trial`).
    n_startup : int
        The sampler's random start-up trials; ``n_trials`` must exceed it (:func:`check_budget`).
    floor : float
        Best objective below which the search counts as failed (``best["search_ok"]`` False).
    space : dict
        Search space (default :data:`SEARCH_SPACE`).
    device : str
        Torch device of the trials.
    storage : path, optional
        Optuna journal file holding the study (None: in memory). A search stopped after k trials continues
        from trial k with the same storage; a search with a larger ``n_trials`` extends it.
    prune : bool
        Report validation Dice after each epoch to Optuna's median pruner (pruned trials count in the budget).
    scheduler : str, optional
        Dask scheduler address for the trials (one task per trial, in sequence); None: in-process.

    Returns
    -------
    trials : pandas.DataFrame
        One row per trial: ``model, trial, value`` (validation macro Dice), ``state`` (complete or pruned),
        ``seconds`` and one column per hyper-parameter.
    best : dict
        ``{"model", "value", "trial", "params", "sampler", "n_trials", "val_cases", "space", "study", "n_startup",
        "floor", "search_ok"}``.
    """

    n_trials, n_startup = check_budget(n_trials, n_startup)
    if sampler not in ("tpe", "gp"):
        raise ValueError(f"sampler must be 'tpe' or 'gp', got {sampler!r}")
    if storage is None and scheduler is not None:
        raise ValueError("a search on a Dask scheduler needs a storage file that the workers share")
    study_name, tasks = hpo_tasks(name, cases, n_trials=n_trials, storage=storage, size=size, epochs=epochs,
                                  width=width, seed=seed, sampler=sampler, space=space, checkpoint=checkpoint,
                                  batch_size=batch_size, threads=threads, device=device, prune=prune,
                                  n_startup=n_startup)
    if storage is None:  # one in-memory study for all trials: run them here
        import optuna

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=optuna.exceptions.ExperimentalWarning)
            with _memory_journal() as path:
                return optimize(name, cases, n_trials=n_trials, size=size, epochs=epochs, width=width, seed=seed,
                                sampler=sampler, space=space, checkpoint=checkpoint, batch_size=batch_size,
                                threads=threads, device=device, storage=path, prune=prune, n_startup=n_startup,
                                floor=floor)
    run_grid(tasks, scheduler=scheduler, name=f"hpo {name}", progress=False)
    return hpo_results(storage, study_name, name, cases, n_trials=n_trials, sampler=sampler, seed=seed, space=space,
                       n_startup=n_startup, floor=floor)


@contextlib.contextmanager
def _memory_journal():
    """A throw-away journal file (an in-memory search still runs its trials one task at a time)."""
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder) / "hpo.journal"


def hpo_storage(ws) -> Path:
    """The Optuna journal of the small-data searches: ``results/small_data/hpo.journal`` (shared by workers)."""
    return ws.results(DATASET) / "hpo.journal"


def run_hpo(ws, cases, *, models: Sequence[str], n_trials: int, size: int, sam_size: int = 1024, epochs: int,
            width: int = 16, batch_size: int = 2, seed: int = 0, sampler: str = "tpe",
            checkpoints: dict | None = None, device: str = "cpu", prune: bool = True, scheduler: str | None = None,
            progress: bool = True, n_startup: int = N_STARTUP, floor: float = HPO_FLOOR):
    """Optimise every model with the same budget; models that cannot run are recorded with their reason.

    The searches live in one Optuna journal in the workspace (:func:`hpo_storage`): one trial is one grid task,
    the trials of a model run in sequence and the models side by side (on the Dask scheduler at ``scheduler``, or
    in-process), and an interrupted search continues where it stopped. Generic over models: every name that
    :func:`helpers.studies.small_data.models.model_status` accepts gets its own seeded study and the same budget.
    A model whose best objective is below ``floor`` gets status ``search failed`` (its parameters are not used by
    cross-validation, which then trains it with the defaults). Writes
    ``results/small_data/hpo_trials.csv`` (all trials), ``best_params.json`` (per model: best trial and
    parameters, or ``status``) and ``search_space.json``.

    Returns
    -------
    trials : pandas.DataFrame
    best : dict
        ``{model: {...}}`` as :func:`optimize`'s second output, plus ``status``.
    """
    n_trials, n_startup = check_budget(n_trials, n_startup)
    if sampler not in ("tpe", "gp"):
        raise ValueError(f"sampler must be 'tpe' or 'gp', got {sampler!r}")
    checkpoints = checkpoints or {}
    storage = hpo_storage(ws)
    statuses = {m: sm.model_status(m, checkpoints.get(m)) for m in models}
    # on a cluster, the LiteMedSAM models' frozen parts are computed once, shared through the workspace
    folder = lmm.shared_folder(ws, scheduler)
    fill = lmm.feature_tasks(cases, models=[m for m in models if statuses[m] == "ok"], folder=folder)
    names, tasks, best = {}, list(fill), {}
    for name in models:
        status = statuses[name]
        if status != "ok":
            best[name] = {"model": name, "status": status}
            continue
        names[name], model_tasks = hpo_tasks(
            name, cases, n_trials=n_trials, storage=storage, size=sm.input_size(name, cnn_size=size, sam_size=sam_size),
            epochs=epochs, width=width, seed=seed, sampler=sampler, checkpoint=checkpoints.get(name),
            batch_size=batch_size, threads=1, device=device, prune=prune, n_startup=n_startup,  # one thread:
            feature_folder=folder, first_after=[t.label for t in fill] if name in sm.LITEMEDSAM_MODELS else ())
        tasks.extend(model_tasks)  # as cross-validation, the same numbers in-process and on any cluster
    run_grid(tasks, scheduler=scheduler, name="hpo small_data", progress=progress)
    frames = []
    for name in models:
        if name in names:
            trials, b = hpo_results(storage, names[name], name, cases, n_trials=n_trials, sampler=sampler, seed=seed,
                                    n_startup=n_startup, floor=floor)
            frames.append(trials)
            status = "ok" if b["search_ok"] else f"search failed (best {b['value']:.3f} < floor {floor:g})"
            best[name] = {**b, "status": status}
    trials = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    out = ws.results(DATASET)
    write_csv(trials, out / "hpo_trials.csv")
    write_json({name: best[name] for name in models}, out / "best_params.json")
    write_json({k: list(v) for k, v in SEARCH_SPACE.items()}, out / "search_space.json")
    return trials, best
