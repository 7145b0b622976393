"""Training, hyper-parameter optimisation, cross-validation, Monte Carlo dropout and explainability views of the
small-data study.

Conventions
-----------
- Tensors are ``(batch, channel, y, x)``; numpy images ``(y, x, 3)``, label maps ``(y, x)``; lengths in pixels.
- Loss (the same for every model): the study's composite focal + Dice loss on softmax probabilities with
  one-hot targets, background included in both terms, ``lambda_focal = 1``; the Dice weight ``lambda_dice`` and
  the focal ``gamma`` are tuned (:func:`focal_dice_loss`).
- Training: Adam, a fixed number of epochs, mini-batches shuffled by a seeded generator, augmentation by random
  flips and 90-degree rotations (label-preserving for a cross-section). Weights, shuffling, augmentation and
  dropout are all drawn from ``seed``.
- Scoring happens at the resolution of the stored reference mask: class probabilities predicted at the model's
  input resolution are resized bilinearly to the reference size, then ``argmax``.
- Hyper-parameter optimisation: Optuna (TPE or Gaussian-process sampler), the same number of trials and epochs for
  every model, objective = mean macro foreground Dice over the validation images of one fixed inner split.
  As in the study, that split is drawn from the same N images that the cross-validation later tests on
  (non-nested), so the cross-validated scores are optimistic; the notebook says so. Searches are stored in an
  Optuna journal in the workspace; one trial is one grid task (``helpers.cluster``), trial k seeded with
  ``(seed, k)`` so that a resumed search proposes what an uninterrupted one would; median pruning on the
  validation Dice after each epoch.
- Grid: one trial, and one model on one cross-validation fold, are tasks run in-process or on a Dask scheduler.
- Uncertainty: Monte Carlo dropout (dropout layers active, batch norm in inference mode) with ``passes``
  stochastic forward passes; predictive entropy of the mean probabilities (natural log) and mutual information.
- Empty-class policy of the scores: as :func:`helpers.smalldata.multiclass_scores`.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from . import smalldata as sd
from . import smallmodels as sm

# (optuna, transformers and MONAI import ``tqdm.auto``; its "IProgress not found" warning is filtered once, in
# ``helpers/__init__.py``; the package's own bars use plain tqdm through ``helpers.progress``.)

#: Search space of the hyper-parameter optimisation: name -> (kind, low, high).
SEARCH_SPACE: dict[str, tuple[str, float, float]] = {
    "lr": ("log", 1e-4, 1e-2),
    "weight_decay": ("log", 1e-6, 1e-3),
    "dropout": ("float", 0.0, 0.5),
    "gamma": ("float", 0.0, 3.0),
    "lambda_dice": ("float", 0.25, 2.0),
}
DEFAULT_PARAMS: dict[str, float] = {"lr": 3e-3, "weight_decay": 1e-5, "dropout": 0.1, "gamma": 2.0, "lambda_dice": 1.0}


# --------------------------------------------------------------------------------------------------------------
# Tensors, loss, training
# --------------------------------------------------------------------------------------------------------------


def stack_cases(cases: Sequence[sd.VesselCase], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize cases to ``size x size`` (:func:`helpers.smalldata.resize_case`) and stack them:
    ``x`` float32 ``(n, 3, size, size)``, ``y`` int64 ``(n, size, size)``."""
    if not cases:
        raise ValueError("cases must not be empty")
    pairs = [sd.resize_case(c.image, c.mask, size) for c in cases]
    x = torch.from_numpy(np.stack([p[0] for p in pairs]).transpose(0, 3, 1, 2).copy())
    y = torch.from_numpy(np.stack([p[1] for p in pairs]).astype(np.int64))
    return x, y


class FocalDiceLoss(torch.nn.Module):
    """``lambda_dice * Dice + lambda_focal * Focal`` on softmax probabilities (see :func:`focal_dice_loss`)."""

    def __init__(self, *, gamma: float, lambda_dice: float, lambda_focal: float):
        super().__init__()
        from monai.losses import DiceLoss, FocalLoss

        self.dice = DiceLoss(softmax=True, to_onehot_y=True, include_background=True)
        self.focal = FocalLoss(use_softmax=True, to_onehot_y=True, include_background=True, gamma=gamma)
        self.lambda_dice, self.lambda_focal = lambda_dice, lambda_focal

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.lambda_dice * self.dice(logits, target) + self.lambda_focal * self.focal(logits, target)


def focal_dice_loss(*, gamma: float = 2.0, lambda_dice: float = 1.0, lambda_focal: float = 1.0) -> FocalDiceLoss:
    """The composite focal + Dice loss of the study, for logits ``(batch, c, y, x)`` and labels ``(batch, 1, y, x)``.

    - Dice: MONAI ``DiceLoss`` on softmax probabilities and one-hot targets, ``1 - (2 sum p t + 1e-5) /
      (sum p + sum t + 1e-5)`` per image and class, averaged over classes (background included) and batch.
    - Focal: MONAI ``FocalLoss(use_softmax=True)``: ``-(1 - p_t)^gamma log p_t`` at the true class, averaged over
      all ``batch x class x pixel`` elements (so a per-pixel mean divided by ``c``).

    MONAI's own ``DiceFocalLoss`` is not used: in MONAI 1.6 its focal term is the *sigmoid* (one-vs-rest) focal
    loss even with ``softmax=True``, which is not the multi-class focal loss.
    """
    if gamma < 0 or lambda_dice < 0 or lambda_focal < 0:
        raise ValueError(
            f"gamma, lambda_dice and lambda_focal must be >= 0, got {gamma}, {lambda_dice}, {lambda_focal}")
    return FocalDiceLoss(gamma=gamma, lambda_dice=lambda_dice, lambda_focal=lambda_focal)


def _augment(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator):
    """Random horizontal flip, vertical flip and 90-degree rotation, one draw per batch."""
    flips = torch.randint(0, 2, (2,), generator=generator).tolist()
    k = int(torch.randint(0, 4, (1,), generator=generator))
    dims = [d for d, f in zip((-1, -2), flips) if f]
    if dims:
        x, y = x.flip(dims), y.flip(dims)
    return torch.rot90(x, k, (-2, -1)), torch.rot90(y, k, (-2, -1))


def _check_params(params: dict) -> dict:
    unknown = set(params) - set(DEFAULT_PARAMS)
    if unknown:
        raise ValueError(f"params has unknown keys {sorted(unknown)}; known: {sorted(DEFAULT_PARAMS)}")
    return {**DEFAULT_PARAMS, **params}


def train_model(
    name: str,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    params: dict | None = None,
    epochs: int = 10,
    batch_size: int = 2,
    width: int = 16,
    seed: int = 0,
    checkpoint=None,
    augment: bool = True,
    threads: int | None = 1,
    device: str = "cpu",
    on_epoch_end=None,
):
    """Train one model from scratch (or from its checkpoint) on ``x, y``.

    Parameters
    ----------
    name : str
        One of :data:`helpers.smallmodels.MODELS`.
    x, y : torch.Tensor
        Images ``(n, 3, s, s)`` in ``[0, 1]`` and labels ``(n, s, s)``.
    params : dict
        Hyper-parameters (keys of :data:`DEFAULT_PARAMS`; missing keys take the defaults).
    epochs, batch_size, width : int
        Passes over the training images, images per step, base channel width.
    seed : int
        Seed of initialisation, shuffling, augmentation and dropout.
    threads : int or None
        Torch intra-op threads while training (restored afterwards); None leaves torch's setting.
    device : str
        Torch device to train on (``"cpu"``, ``"cuda"``); the model stays there. On CUDA, dropout draws from the
        CUDA generator, which ``torch.manual_seed`` seeds but ``fork_rng`` does not restore.
    on_epoch_end : callable, optional
        ``on_epoch_end(epoch, model)`` after each epoch (1-based), e.g. a validation for pruning; it may put the
        model in eval mode (training resumes in train mode) and must not draw from torch's global generator.

    Returns
    -------
    model : torch.nn.Module
        In eval mode, on ``device``.
    history : pandas.DataFrame
        ``epoch, loss`` (mean training loss per epoch), ``seconds``.
    """
    params = _check_params(params or {})
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if x.ndim != 4 or y.ndim != 3 or x.shape[0] != y.shape[0] or x.shape[-2:] != y.shape[-2:]:
        raise ValueError(f"x (n, 3, s, s) and y (n, s, s) do not match: {tuple(x.shape)}, {tuple(y.shape)}")
    n_classes = 4 if int(y.max()) < 4 else int(y.max()) + 1
    device = _check_device(device)
    model = sm.build_model(name, n_classes=n_classes, width=width, dropout=params["dropout"], seed=seed,
                           checkpoint=checkpoint).to(device)
    loss_fn = focal_dice_loss(gamma=params["gamma"], lambda_dice=params["lambda_dice"])
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=params["lr"], weight_decay=params["weight_decay"])
    generator = torch.Generator().manual_seed(int(seed))
    history = []
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]), torch_threads(threads):
        torch.manual_seed(int(seed) + 1)  # dropout masks
        model.train()
        for epoch in range(epochs):
            order = torch.randperm(x.shape[0], generator=generator)
            losses = []
            for i in range(0, len(order), batch_size):
                idx = order[i : i + batch_size]
                xb, yb = x[idx], y[idx]
                if augment:
                    xb, yb = _augment(xb, yb, generator)
                if xb.shape[0] == 1 and _has_batchnorm(model):
                    # Batch norm cannot estimate statistics from one image of a 1x1 map; pair it with a flip.
                    xb, yb = torch.cat([xb, xb.flip(-1)]), torch.cat([yb, yb.flip(-1)])
                optimizer.zero_grad()
                xb, yb = xb.to(device), yb.to(device)
                loss = loss_fn(model(xb), yb.unsqueeze(1))
                loss.backward()
                optimizer.step()
                losses.append(loss.detach().item())
            history.append({"epoch": epoch + 1, "loss": float(np.mean(losses))})
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, model)
                model.train()
    model.eval()
    hist = pd.DataFrame(history)
    hist["seconds"] = time.perf_counter() - start
    return model, hist


def _check_device(device) -> torch.device:
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be a torch device name such as 'cpu' or 'cuda', got {device!r}") from None


def _model_device(model) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def _has_batchnorm(model) -> bool:
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


class torch_threads:
    """Context manager: run torch with ``n`` intra-op threads, restoring the previous number afterwards.

    Small models on a shared CPU train several times faster on one thread than on two contended ones."""

    def __init__(self, n: int | None):
        self.n, self.previous = n, None

    def __enter__(self):
        self.previous = torch.get_num_threads()
        if self.n:
            torch.set_num_threads(int(self.n))
        return self

    def __exit__(self, *exc):
        torch.set_num_threads(self.previous)
        return False


@torch.no_grad()
def predict_proba(model, x: torch.Tensor, *, batch_size: int = 4) -> np.ndarray:
    """Softmax class probabilities ``(n, c, s, s)`` in eval mode (dropout off)."""
    model.eval()
    device = _model_device(model)
    out = [torch.softmax(model(x[i : i + batch_size].to(device)), dim=1).cpu()
           for i in range(0, x.shape[0], batch_size)]
    return torch.cat(out).numpy()


def _enable_dropout(model) -> None:
    model.eval()
    for module in model.modules():
        if isinstance(module, (torch.nn.Dropout, torch.nn.Dropout2d, torch.nn.Dropout3d)):
            module.train()


@torch.no_grad()
def mc_dropout_predict(model, x: torch.Tensor, *, passes: int, seed: int = 0, batch_size: int = 4) -> dict:
    """Monte Carlo dropout: ``passes`` forward passes with dropout active (batch norm in inference mode).

    Returns
    -------
    dict
        ``mean`` ``(n, c, s, s)``: mean softmax probabilities; ``entropy`` ``(n, s, s)``: predictive entropy
        ``H[mean_t p_t]`` (nats); ``mutual_information`` ``(n, s, s)``: ``H[mean_t p_t] - mean_t H[p_t]``
        (the epistemic part); ``passes``.
    """
    if isinstance(passes, bool) or not isinstance(passes, (int, np.integer)) or passes < 2:
        raise ValueError(f"passes must be an integer >= 2, got {passes!r}")
    if not any(isinstance(m, (torch.nn.Dropout, torch.nn.Dropout2d)) for m in model.modules()):
        raise ValueError("model has no dropout layer: Monte Carlo dropout is undefined")
    _enable_dropout(model)
    device = _model_device(model)
    total = None
    total_entropy = None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        for _ in range(passes):
            p = torch.cat([torch.softmax(model(x[i : i + batch_size].to(device)), 1).cpu()
                           for i in range(0, x.shape[0], batch_size)])
            h = -(p * torch.log(p.clamp_min(1e-12))).sum(1)
            total = p if total is None else total + p
            total_entropy = h if total_entropy is None else total_entropy + h
    model.eval()
    mean = total / passes
    entropy = -(mean * torch.log(mean.clamp_min(1e-12))).sum(1)
    return {"mean": mean.numpy(), "entropy": entropy.numpy(),
            "mutual_information": (entropy - total_entropy / passes).clamp_min(0).numpy(), "passes": passes}


def to_reference_size(proba: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize probabilities ``(c, s, s)`` (or a map ``(s, s)``) bilinearly to ``shape``."""
    t = torch.from_numpy(np.asarray(proba, dtype=np.float32))
    squeeze = t.ndim == 2
    t = t[None, None] if squeeze else t[None]
    if tuple(t.shape[-2:]) != tuple(shape):
        t = F.interpolate(t, size=tuple(shape), mode="bilinear", align_corners=False)
    return t[0, 0].numpy() if squeeze else t[0].numpy()


# --------------------------------------------------------------------------------------------------------------
# Hyper-parameter optimisation
# --------------------------------------------------------------------------------------------------------------


def hpo_split(case_ids: Sequence[str], *, seed: int = 0) -> dict:
    """The fixed inner split of the optimisation: fold 0 of the seeded 3-fold split is the validation set."""
    fold = sd.cv_folds(case_ids, protocol="3fold", seed=seed)[0]
    return {"train": fold["train"], "val": fold["test"]}


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
                   sampler: str, space: dict, batch_size: int, checkpoint=None, device: str = "cpu") -> str:
    """The Optuna study of one model's search: the model name and a hash of everything that defines its trials
    (data, split, sizes, budget per trial, sampler, space), so that a changed configuration starts a new study in
    the same storage and an unchanged one resumes. The trial budget ``n_trials`` is not part of it: raising it
    continues the study."""
    import hashlib
    import json

    h = hashlib.sha256()
    for case in cases:
        h.update(case.case_id.encode())
        h.update(np.ascontiguousarray(case.image).tobytes())
        h.update(np.ascontiguousarray(case.mask).tobytes())
    h.update(json.dumps({"size": size, "epochs": epochs, "width": width, "seed": seed, "sampler": sampler,
                         "space": {k: list(v) for k, v in space.items()}, "batch_size": batch_size,
                         "checkpoint": None if checkpoint is None else str(checkpoint), "device": str(device)},
                        sort_keys=True).encode())
    return f"{name}-{h.hexdigest()[:12]}"


def _open_study(storage, study_name: str):
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
    # trials at that epoch (from the third trial on, never in the first epoch)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
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
              prune: bool = True) -> dict:
    """One HPO trial as a grid task: the study's ``index``-th finished trial (0-based), run unless it exists.

    The sampler is seeded with ``(seed, index)``, so trial ``index`` proposes the same parameters whether the
    search ran without a break or resumed after one; trials left running by an interruption are marked failed
    and ignored. With ``prune``, the validation macro Dice is reported after each epoch and the median pruner
    may stop the trial. Returns ``{"up_to_date": bool, "state": ...}``."""
    import optuna

    space = dict(SEARCH_SPACE if space is None else space)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=optuna.exceptions.ExperimentalWarning)
        study = _open_study(storage, study_name)
        _fail_interrupted_trials(study)
        finished = _finished_trials(study)
        if len(finished) > index:
            return {"up_to_date": True, "state": finished[index].state.name}
        if len(finished) < index:
            raise ValueError(f"study {study_name!r} has {len(finished)} finished trials; trial {index} must wait "
                             f"for trial {len(finished)}")
        trial_seed = int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])
        make = optuna.samplers.GPSampler if sampler == "gp" else optuna.samplers.TPESampler
        study.sampler = make(seed=trial_seed)
        split = hpo_split([c.case_id for c in cases], seed=seed)
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

        with torch_threads(threads):
            study.optimize(objective, n_trials=1)
    last = study.get_trials(deepcopy=False)[-1]
    if last.state.name not in _FINISHED:
        raise RuntimeError(f"HPO trial {index} of {name} ended {last.state.name}")
    return {"up_to_date": False, "state": last.state.name}


def hpo_tasks(name: str, cases: Sequence[sd.VesselCase], *, n_trials: int, storage, size: int, epochs: int,
              width: int = 16, seed: int = 0, sampler: str = "tpe", space: dict | None = None, checkpoint=None,
              batch_size: int = 2, threads: int | None = None, device: str = "cpu",
              prune: bool = True) -> tuple[str, list]:
    """The study name and the grid tasks of one model's search: trial k waits for trial k-1 (a sequential
    search, resumable); the searches of different models run side by side. ``threads`` None: the task's
    thread count (:func:`helpers.cluster.task_threads`)."""
    from .cluster import GridTask

    space = dict(SEARCH_SPACE if space is None else space)
    study_name = hpo_study_name(name, cases, size=size, epochs=epochs, width=width, seed=seed, sampler=sampler,
                                space=space, batch_size=batch_size, checkpoint=checkpoint, device=device)
    tasks = []
    for k in range(int(n_trials)):
        tasks.append(GridTask(
            f"hpo {name} · trial {k}", hpo_trial, (None if storage is None else str(storage), study_name, name,
                                                   list(cases)),
            {"index": k, "size": size, "epochs": epochs, "width": width, "seed": seed, "sampler": sampler,
             "space": space, "checkpoint": checkpoint, "batch_size": batch_size, "threads": threads,
             "device": device, "prune": prune},
            gpu=str(device).startswith("cuda"), after=(f"hpo {name} · trial {k - 1}",) if k else ()))
    return study_name, tasks


def hpo_results(storage, study_name: str, name: str, cases: Sequence[sd.VesselCase], *, n_trials: int,
                sampler: str, seed: int = 0, space: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """The first ``n_trials`` finished trials of a stored search and its best (completed) trial."""
    space = dict(SEARCH_SPACE if space is None else space)
    study = _open_study(storage, study_name)
    finished = _finished_trials(study)[: int(n_trials)]
    rows = [{"model": name, "trial": k, "value": t.value, "state": t.state.name.lower(),
             "seconds": (t.datetime_complete - t.datetime_start).total_seconds(), **t.params}
            for k, t in enumerate(finished)]
    complete = [(k, t) for k, t in enumerate(finished) if t.state.name == "COMPLETE"]
    if not complete:
        raise ValueError(f"HPO of {name}: none of {len(finished)} trials completed (all pruned)")
    k, best_trial = max(complete, key=lambda kt: (kt[1].value, -kt[0]))  # ties: the earlier trial
    split = hpo_split([c.case_id for c in cases], seed=seed)
    best = {"model": name, "value": float(best_trial.value), "trial": int(k), "params": dict(best_trial.params),
            "sampler": sampler, "n_trials": int(n_trials), "val_cases": split["val"],
            "space": {key: list(v) for key, v in space.items()}, "study": study_name}
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
) -> tuple[pd.DataFrame, dict]:
    """Bayesian hyper-parameter optimisation of one model on the fixed inner split (:func:`hpo_split`).

    Parameters
    ----------
    n_trials : int
        The budget (the same for every model).
    sampler : {"tpe", "gp"}
        Optuna ``TPESampler`` or ``GPSampler`` (Gaussian-process surrogate, as in the study), seeded with
        ``(seed, trial index)`` (:func:`hpo_trial`).
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
        ``{"model", "value", "trial", "params", "sampler", "n_trials", "val_cases", "space", "study"}``.
    """
    from .cluster import run_grid

    if isinstance(n_trials, bool) or not isinstance(n_trials, (int, np.integer)) or n_trials < 1:
        raise ValueError(f"n_trials must be a positive integer, got {n_trials!r}")
    if sampler not in ("tpe", "gp"):
        raise ValueError(f"sampler must be 'tpe' or 'gp', got {sampler!r}")
    if storage is None and scheduler is not None:
        raise ValueError("a search on a Dask scheduler needs a storage file that the workers share")
    study_name, tasks = hpo_tasks(name, cases, n_trials=n_trials, storage=storage, size=size, epochs=epochs,
                                  width=width, seed=seed, sampler=sampler, space=space, checkpoint=checkpoint,
                                  batch_size=batch_size, threads=threads, device=device, prune=prune)
    if storage is None:  # one in-memory study for all trials: run them here
        import optuna

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=optuna.exceptions.ExperimentalWarning)
            with _memory_journal() as path:
                return optimize(name, cases, n_trials=n_trials, size=size, epochs=epochs, width=width, seed=seed,
                                sampler=sampler, space=space, checkpoint=checkpoint, batch_size=batch_size,
                                threads=threads, device=device, storage=path, prune=prune)
    run_grid(tasks, scheduler=scheduler, name=f"hpo {name}", progress=False)
    return hpo_results(storage, study_name, name, cases, n_trials=n_trials, sampler=sampler, seed=seed, space=space)


@contextlib.contextmanager
def _memory_journal():
    """A throw-away journal file (an in-memory search still runs its trials one task at a time)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder) / "hpo.journal"


# --------------------------------------------------------------------------------------------------------------
# Cross-validation
# --------------------------------------------------------------------------------------------------------------


@dataclass
class CVResult:
    """Outcome of :func:`cross_validate`.

    ``scores``: tidy, one row per ``protocol, seed, fold, model, image, class`` with ``dice, iou, status``
    (class ``"macro"`` is the mean over foreground classes; models that did not run have NaN scores and their
    reason in ``status``). ``predictions``: ``{(protocol, seed, model, image): label map}`` at reference
    size. ``uncertainty``: the same keys -> predictive entropy map (when ``mc_passes`` > 0). ``history``:
    training losses per fold."""

    scores: pd.DataFrame
    predictions: dict = field(default_factory=dict)
    uncertainty: dict = field(default_factory=dict)
    history: pd.DataFrame | None = None
    models: dict = field(default_factory=dict)


def _score_rows(case, pred, base):
    per_class = sd.multiclass_scores(case.mask, pred)
    rows = [{**base, "class": r["class"], "dice": r["dice"], "iou": r["iou"]}
            for r in per_class[per_class["foreground"]].to_dict("records")]
    macro = sd.macro_scores(per_class)
    rows.append({**base, "class": "macro", "dice": macro["dice"], "iou": macro["iou"]})
    return rows


def cross_validate(
    cases: Sequence[sd.VesselCase],
    *,
    models: Sequence[str],
    splits: Sequence[dict],
    params: dict | None = None,
    cnn_size: int = 256,
    sam_size: int = 1024,
    epochs: int = 10,
    width: int = 16,
    checkpoints: dict | None = None,
    mc_passes: int = 0,
    batch_size: int = 2,
    keep_models: Sequence[tuple] = (),
    threads: int | None = 1,
    device: str = "cpu",
    scheduler: str | None = None,
    progress: bool = True,
) -> CVResult:
    """Train and test every model on every fold of ``splits`` (the same folds for every model).

    One model on one fold is one grid task (:func:`cv_task`), run in-process or on the Dask scheduler at
    ``scheduler``; each is deterministic from its fold's seed, so the outcome does not depend on where it ran.

    Parameters
    ----------
    models : sequence of str
        Names from :data:`helpers.smallmodels.MODELS`; those that cannot run (no checkpoint) get rows with NaN
        scores and the reason in ``status``.
    splits : sequence of dict
        From :func:`helpers.smalldata.make_splits`.
    params : dict
        ``{model: hyper-parameters}`` (e.g. the best trial of :func:`optimize`); missing -> defaults.
    cnn_size, sam_size : int
        Input resolution of the CNNs and SegFormer, and of the SAM family.
    checkpoints : dict
        ``{"sam": path, "medsam": path, "medsam_unet": path}``.
    mc_passes : int
        Monte Carlo dropout passes for the uncertainty maps (0: none).
    device : str
        Torch device for training and inference (``"cuda"`` for the paper profile); results come back to numpy.
    keep_models : sequence of tuple
        ``(protocol, seed, fold, model)`` whose trained model is kept in ``CVResult.models`` (for saliency and
        attention views).
    """
    from .cluster import GridTask, run_grid

    params = params or {}
    checkpoints = checkpoints or {}
    by_id = {c.case_id: c for c in cases}
    for s in splits:
        missing = [i for i in s["train"] + s["test"] if i not in by_id]
        if missing:
            raise ValueError(f"splits name cases not in cases: {missing}")
    keep = set(map(tuple, keep_models))
    tasks = [
        GridTask(f"cv {split['protocol']} · seed {split['seed']} · fold {split['fold']} · {name}", cv_task,
                 (name, split, [by_id[i] for i in split["train"] + split["test"]]),
                 {"params": params.get(name, {}), "checkpoint": checkpoints.get(name), "cnn_size": cnn_size,
                  "sam_size": sam_size, "epochs": epochs, "width": width, "mc_passes": mc_passes,
                  "batch_size": batch_size, "keep": (split["protocol"], split["seed"], split["fold"], name) in keep,
                  "threads": threads, "device": device},
                 gpu=str(device).startswith("cuda"))
        for name in models for split in splits
    ]  # fmt: skip
    outcomes = run_grid(tasks, scheduler=scheduler, name="cross-validation", progress=progress)
    result = CVResult(scores=pd.DataFrame([row for o in outcomes for row in o["rows"]]))
    history = [o["history"] for o in outcomes if o["history"] is not None]
    result.history = pd.concat(history, ignore_index=True) if history else pd.DataFrame()
    for o in outcomes:
        result.predictions.update(o["predictions"])
        result.uncertainty.update(o["uncertainty"])
        result.models.update({key: _rebuild(*saved, device) for key, saved in o["model"].items()})
    return result


def cv_task(name: str, split: dict, cases: Sequence[sd.VesselCase], *, params: dict, checkpoint=None,
            cnn_size: int = 256, sam_size: int = 1024, epochs: int = 10, width: int = 16, mc_passes: int = 0,
            batch_size: int = 2, keep: bool = False, threads: int | None = 1, device: str = "cpu") -> dict:
    """One unit of the cross-validation grid: one model on one fold (train, predict the test images, score
    them). ``cases`` holds the fold's training and test cases. Returns ``rows`` (score rows), ``history``,
    ``predictions`` and ``uncertainty`` (keyed ``(protocol, seed, model, image)``) and ``model``
    (``{(protocol, seed, fold, model): (build arguments, state dict)}`` when ``keep``)."""
    by_id = {c.case_id: c for c in cases}
    status = sm.model_status(name, checkpoint)
    base = {"protocol": split["protocol"], "seed": split["seed"], "fold": split["fold"], "model": name}
    test_cases = [by_id[i] for i in split["test"]]
    out = {"rows": [], "history": None, "predictions": {}, "uncertainty": {}, "model": {}}
    if status != "ok":
        for case in test_cases:
            for cls in [*sd.CLASSES[1:], "macro"]:
                out["rows"].append({**base, "image": case.case_id, "class": cls, "dice": np.nan, "iou": np.nan,
                                    "status": status})
        return out
    size = sm.input_size(name, cnn_size=cnn_size, sam_size=sam_size)
    with torch_threads(threads):
        xt, yt = stack_cases([by_id[i] for i in split["train"]], size)
        model, hist = train_model(name, xt, yt, params=params, epochs=epochs, width=width,
                                  seed=split["seed"] * 1000 + split["fold"], checkpoint=checkpoint,
                                  batch_size=batch_size, threads=threads, device=device)
        out["history"] = hist.assign(**base)
        xs, _ = stack_cases(test_cases, size)
        if mc_passes:
            mc = mc_dropout_predict(model, xs, passes=mc_passes, seed=split["seed"])
            proba = mc["mean"]
        else:
            proba = predict_proba(model, xs)
    for k, case in enumerate(test_cases):
        pred = to_reference_size(proba[k], case.mask.shape).argmax(0).astype(np.uint8)
        key = (split["protocol"], split["seed"], name, case.case_id)
        out["predictions"][key] = pred
        if mc_passes:
            out["uncertainty"][key] = to_reference_size(mc["entropy"][k], case.mask.shape)
        for row in _score_rows(case, pred, {**base, "image": case.case_id}):
            out["rows"].append({**row, "status": "ok"})
    if keep:  # weights and how to rebuild the model (a model object may not survive serialisation)
        build = {"name": name, "n_classes": 4 if int(yt.max()) < 4 else int(yt.max()) + 1, "width": width,
                 "dropout": _check_params(params)["dropout"], "checkpoint": checkpoint}
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        out["model"][(split["protocol"], split["seed"], split["fold"], name)] = (build, state)
    return out


def _rebuild(build: dict, state: dict, device) -> torch.nn.Module:
    model = sm.build_model(build["name"], n_classes=build["n_classes"], width=build["width"],
                           dropout=build["dropout"], checkpoint=build["checkpoint"])
    model.load_state_dict(state)
    return model.to(_check_device(device)).eval()


def fold_scores(scores: pd.DataFrame, *, metric: str = "dice") -> pd.DataFrame:
    """Macro score per ``protocol, seed, model, fold``: the mean over the fold's test images (``n`` images;
    NaN rows of models that did not run stay NaN)."""
    macro = scores[scores["class"] == "macro"]
    return (macro.groupby(["protocol", "seed", "model", "fold"], as_index=False)
            .agg(value=(metric, "mean"), n=(metric, "count")))


# --------------------------------------------------------------------------------------------------------------
# Explainability
# --------------------------------------------------------------------------------------------------------------


def error_map(ref: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-pixel outcome: 0 correct background, 1 correct foreground class, 2 wrong class."""
    ref, pred = np.asarray(ref), np.asarray(pred)
    if ref.shape != pred.shape:
        raise ValueError(f"ref shape {ref.shape} and pred shape {pred.shape} differ")
    out = np.where(ref == pred, (ref > 0).astype(np.uint8), np.uint8(2))
    return out.astype(np.uint8)


def error_location(ref: np.ndarray, pred: np.ndarray, *, tolerance_px: float = 2.0) -> dict:
    """Boundary disagreement or gross failure: the share of wrong pixels that a small boundary shift explains.

    A wrong pixel ``p`` is a *boundary disagreement* when its predicted label occurs in the reference within
    ``tolerance_px`` of ``p`` (Euclidean distance between pixel centres): moving a reference boundary by at most
    that much would make it right. Otherwise it is a *gross* error (a class predicted where the reference has
    none nearby, such as a missed lumen or a vessel predicted as background). This is the study's "visual
    paradox" check in numbers: a low score made of boundary disagreements looks competent.

    Returns
    -------
    dict
        ``n_error``, ``n_boundary``, ``n_gross``, ``boundary_fraction`` (``n_boundary / n_error``; NaN when there is
        no error), ``tolerance_px``.
    """
    from scipy import ndimage

    ref, pred = np.asarray(ref), np.asarray(pred)
    if ref.shape != pred.shape:
        raise ValueError(f"ref shape {ref.shape} and pred shape {pred.shape} differ")
    if tolerance_px < 0:
        raise ValueError(f"tolerance_px must be >= 0, got {tolerance_px}")
    errors = ref != pred
    explained = np.zeros(ref.shape, bool)
    for label in np.unique(pred[errors]):
        present = ref == label
        if present.any():
            near = ndimage.distance_transform_edt(~present) <= tolerance_px
            explained |= errors & (pred == label) & near
    n_error, n_boundary = int(errors.sum()), int(explained.sum())
    frac = n_boundary / n_error if n_error else float("nan")
    return {"n_error": n_error, "n_boundary": n_boundary, "n_gross": n_error - n_boundary,
            "boundary_fraction": float(frac), "tolerance_px": tolerance_px}


def uncertainty_error_auc(uncertainty: np.ndarray, errors: np.ndarray) -> dict:
    """How uncertainty relates to errors: the AUROC of uncertainty as a detector of wrong pixels.

    AUROC = P(u_error > u_correct) + 0.5 P(tie) (Mann-Whitney U / (n_error n_correct)): 0.5 means the
    uncertainty map says nothing about errors, 1 that every wrong pixel is more uncertain than every correct one.

    Returns
    -------
    dict
        ``auroc`` (NaN when all pixels are right or all wrong), ``mean_uncertainty_error``,
        ``mean_uncertainty_correct``, ``n_error``, ``n_correct``.
    """
    from scipy.stats import rankdata

    u, e = np.asarray(uncertainty, dtype=float).ravel(), np.asarray(errors, dtype=bool).ravel()
    if u.shape != e.shape:
        raise ValueError(f"uncertainty and errors differ in size: {u.size}, {e.size}")
    if not np.all(np.isfinite(u)):
        raise ValueError("uncertainty has non-finite values")
    n1, n0 = int(e.sum()), int((~e).sum())
    if n1 == 0 or n0 == 0:
        auc = float("nan")
    else:
        ranks = rankdata(u)  # average ranks for ties
        auc = float((ranks[e].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))
    return {"auroc": auc, "mean_uncertainty_error": float(u[e].mean()) if n1 else float("nan"),
            "mean_uncertainty_correct": float(u[~e].mean()) if n0 else float("nan"), "n_error": n1, "n_correct": n0}


def mean_thickness(mask: np.ndarray) -> float:
    """Mean thickness of a ring-shaped region in pixels: ``2 * area / boundary length``.

    Exact for an annulus (``2 pi (R^2 - r^2) / (2 pi (R + r)) = R - r``) and a long band; the boundary length is
    the Crofton estimate ``skimage.measure.perimeter_crofton`` (4 directions) summed over inner and outer
    contours (within 1-2% on digital circles, where ``perimeter`` overestimates by about 6%). NaN for an empty mask
    or one whose perimeter is zero (isolated pixels)."""
    from skimage.measure import perimeter_crofton

    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2D, got shape {mask.shape}")
    if not mask.any():
        return float("nan")
    padded = np.pad(mask, 1)  # a region touching the border still has a boundary there
    length = perimeter_crofton(padded, directions=4)
    # skimage gives isolated pixels no perimeter: such specks have no measurable thickness.
    return float(2 * mask.sum() / length) if length > 0 else float("nan")


#: Wall structures compared by the morphology view: name -> label set.
WALL_PARTS = {"neointima": (2,), "media": (3,), "wall": (2, 3)}


def morphology(ref: np.ndarray, pred: np.ndarray) -> pd.DataFrame:
    """Morphology agreement of one image: per foreground class the area (pixels), and the mean thickness
    (:func:`mean_thickness`, NaN for empty or single-pixel masks) of the neointima, the media and the whole
    wall (neointima + media).

    Returns
    -------
    pandas.DataFrame
        ``quantity, structure, ref, pred, difference`` (pred - ref).
    """
    ref, pred = np.asarray(ref), np.asarray(pred)
    if ref.shape != pred.shape:
        raise ValueError(f"ref shape {ref.shape} and pred shape {pred.shape} differ")
    rows = []
    for k, name in enumerate(sd.CLASSES):
        if k:
            rows.append({"quantity": "area_px", "structure": name, "ref": float((ref == k).sum()),
                         "pred": float((pred == k).sum())})
    for name, labels in WALL_PARTS.items():
        rows.append({"quantity": "thickness_px", "structure": name, "ref": mean_thickness(np.isin(ref, labels)),
                     "pred": mean_thickness(np.isin(pred, labels))})
    out = pd.DataFrame(rows)
    out["difference"] = out["pred"] - out["ref"]
    return out


def gradient_saliency(model, x: torch.Tensor, *, target_class: int) -> np.ndarray:
    """Vanilla gradient saliency (Simonyan et al. 2014): ``max_channel |d S / d x|`` with ``S`` the sum of the
    ``target_class`` logits over the pixels predicted as that class (all pixels when none is). Eval mode.

    Parameters
    ----------
    x : torch.Tensor
        One image ``(1, 3, s, s)``.

    Returns
    -------
    numpy.ndarray
        ``(s, s)``, scaled to a maximum of 1 (all zeros when the gradient vanishes).
    """
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"x must be one image (1, 3, s, s), got {tuple(x.shape)}")
    model.eval()
    x = x.detach().to(_model_device(model)).clone().requires_grad_(True)
    logits = model(x)
    if not 0 <= target_class < logits.shape[1]:
        raise ValueError(f"target_class must be in 0..{logits.shape[1] - 1}, got {target_class}")
    region = logits.argmax(1) == target_class
    if not region.any():
        region = torch.ones_like(region)
    logits[:, target_class][region].sum().backward()
    sal = x.grad.abs().amax(1)[0].cpu().numpy()
    peak = sal.max()
    return sal / peak if peak > 0 else sal


def attention_map(model, x: torch.Tensor) -> np.ndarray:
    """Encoder attention of a transformer model, as a map over the image.

    Definition: for each attention layer, the attention each key position *receives*, averaged over heads and
    query positions, reshaped to the key grid, resized bilinearly to the image and scaled to a maximum of 1;
    then averaged over layers. Layers whose key grid is a single cell (SegFormer at small inputs, where the
    spatial reduction leaves one key) carry no spatial information and are skipped. SegFormer: all encoder
    layers (keys on the spatially reduced grid). SAM family:
    the global-attention layers of the ViT image encoder (windowed layers are skipped).

    Raises
    ------
    ValueError
        For models without attention (U-Net, DeepLabV3+), or when no layer has more than one key position.
    """
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"x must be one image (1, 3, s, s), got {tuple(x.shape)}")
    size = tuple(x.shape[-2:])
    maps = []

    def add(received: torch.Tensor):
        if received.numel() < 2:  # a key grid of one cell carries no spatial information
            return
        side = int(round(received.numel() ** 0.5))
        grid = received.reshape(1, 1, side, -1)
        grid = F.interpolate(grid, size=size, mode="bilinear", align_corners=False)[0, 0]
        maps.append((grid / grid.max().clamp_min(1e-12)).cpu().numpy())

    model.eval()
    x = x.to(_model_device(model))
    with torch.no_grad():
        if isinstance(model, sm.SegFormer):
            _, attentions = model(x, output_attentions=True)
            for a in attentions:  # (1, heads, queries, keys)
                add(a[0].mean(0).mean(0))
        elif isinstance(model, (sm.PromptedSam, sm.MedSamUNet)):
            encoder = model.sam.vision_encoder if isinstance(model, sm.PromptedSam) else model.encoder
            from transformers.models.sam.modeling_sam import SamVisionAttention

            captured = []

            def recompute(mod, args, kwargs, out):
                # The SDPA attention does not return its weights: recompute them with the eager formula
                # (same parameters, same input), which does.
                hidden = args[0] if args else kwargs["hidden_states"]
                captured.append(SamVisionAttention.forward(mod, hidden)[1])

            hooks = [encoder.layers[i].attn.register_forward_hook(recompute, with_kwargs=True)
                     for i in encoder.config.global_attn_indexes]
            try:
                model(x)
            finally:
                for h in hooks:
                    h.remove()
            for a in captured:  # (heads, queries, keys) for one image
                add(a.reshape(-1, a.shape[-2], a.shape[-1]).mean(0).mean(0))
        else:
            raise ValueError(f"attention maps need a transformer model, got {type(model).__name__}")
    if not maps:
        raise ValueError(f"no attention layer has more than one key position at input size {size}")
    return np.mean(maps, axis=0)


# --------------------------------------------------------------------------------------------------------------
# Study steps (one per notebook cell) and their figures
# --------------------------------------------------------------------------------------------------------------

DATASET = sd.DATASET


def hpo_storage(ws) -> Path:
    """The Optuna journal of the small-data searches: ``results/small_data/hpo.journal`` (shared by workers)."""
    return ws.results(DATASET) / "hpo.journal"


def run_hpo(ws, cases, *, models: Sequence[str], n_trials: int, size: int, sam_size: int = 1024, epochs: int,
            width: int = 16, batch_size: int = 2, seed: int = 0, sampler: str = "tpe",
            checkpoints: dict | None = None, device: str = "cpu", prune: bool = True, scheduler: str | None = None,
            progress: bool = True):
    """Optimise every model with the same budget; models that cannot run are recorded with their reason.

    The searches live in one Optuna journal in the workspace (:func:`hpo_storage`): one trial is one grid task,
    the trials of a model run in sequence and the models side by side (on the Dask scheduler at ``scheduler``, or
    in-process), and an interrupted search continues where it stopped. Writes
    ``results/small_data/hpo_trials.csv`` (all trials), ``best_params.json`` (per model: best trial and
    parameters, or ``status``) and ``search_space.json``.

    Returns
    -------
    trials : pandas.DataFrame
    best : dict
        ``{model: {...}}`` as :func:`optimize`'s second output, plus ``status``.
    """
    from .cluster import run_grid
    from .io import write_csv, write_json

    if isinstance(n_trials, bool) or not isinstance(n_trials, (int, np.integer)) or n_trials < 1:
        raise ValueError(f"n_trials must be a positive integer, got {n_trials!r}")
    if sampler not in ("tpe", "gp"):
        raise ValueError(f"sampler must be 'tpe' or 'gp', got {sampler!r}")
    checkpoints = checkpoints or {}
    storage = hpo_storage(ws)
    names, tasks, best = {}, [], {}
    for name in models:
        status = sm.model_status(name, checkpoints.get(name))
        if status != "ok":
            best[name] = {"model": name, "status": status}
            continue
        names[name], model_tasks = hpo_tasks(
            name, cases, n_trials=n_trials, storage=storage, size=sm.input_size(name, cnn_size=size, sam_size=sam_size),
            epochs=epochs, width=width, seed=seed, sampler=sampler, checkpoint=checkpoints.get(name),
            batch_size=batch_size, threads=1, device=device, prune=prune)  # one thread, as cross-validation:
        tasks.extend(model_tasks)  # the same numbers in-process and on any cluster
    run_grid(tasks, scheduler=scheduler, name="hpo small_data", progress=progress)
    frames = []
    for name in models:
        if name in names:
            trials, b = hpo_results(storage, names[name], name, cases, n_trials=n_trials, sampler=sampler, seed=seed)
            frames.append(trials)
            best[name] = {**b, "status": "ok"}
    trials = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    out = ws.results(DATASET)
    write_csv(trials, out / "hpo_trials.csv")
    write_json({name: best[name] for name in models}, out / "best_params.json")
    write_json({k: list(v) for k, v in SEARCH_SPACE.items()}, out / "search_space.json")
    return trials, best


def run_cv(ws, cases, *, models: Sequence[str], protocols: Sequence[str] = sd.PROTOCOLS, seeds: Sequence[int] = (0,),
           best: dict | None = None, cnn_size: int = 256, sam_size: int = 1024, epochs: int = 10, width: int = 16,
           batch_size: int = 2, checkpoints: dict | None = None, mc_passes: int = 0, device: str = "cpu",
           scheduler: str | None = None, progress: bool = True) -> CVResult:
    """Cross-validate every model under every protocol and seed on the same splits.

    Uses the best parameters of :func:`run_hpo` (``best``); keeps the trained models of the first seed's
    folds (for saliency and attention views). Writes ``splits.json``, ``scores.csv`` (per protocol, seed,
    fold, model, image, class: ``dice, iou, status``), ``model_status.csv`` and ``training_history.csv``.
    """
    from .io import write_csv, write_json

    ids = [c.case_id for c in cases]
    splits = sd.make_splits(ids, protocols=protocols, seeds=seeds)
    params = {m: b.get("params", {}) for m, b in (best or {}).items() if b.get("status") == "ok"}
    keep = [(s["protocol"], s["seed"], s["fold"], m) for s in splits if s["seed"] == list(seeds)[0] for m in models]
    result = cross_validate(cases, models=models, splits=splits, params=params, cnn_size=cnn_size,
                            sam_size=sam_size, epochs=epochs, width=width, checkpoints=checkpoints,
                            mc_passes=mc_passes, batch_size=batch_size, keep_models=keep, device=device,
                            scheduler=scheduler, progress=progress)
    out = ws.results(DATASET)
    write_json({"splits": splits, "rule": "loocv: one case per fold; 3fold: seeded permutation, array_split",
                "seeds": list(seeds)}, out / "splits.json")
    write_csv(result.scores, out / "scores.csv")
    status = pd.DataFrame([{"model": m, "status": sm.model_status(m, (checkpoints or {}).get(m))} for m in models])
    write_csv(status, out / "model_status.csv")
    write_csv(result.history, out / "training_history.csv")
    return result


def uncertainty_table(cases, result: CVResult) -> pd.DataFrame:
    """How Monte Carlo uncertainty relates to errors, per ``protocol, seed, model, image``: the AUROC of the
    entropy as a detector of wrong pixels and the mean entropy on wrong and right pixels
    (:func:`uncertainty_error_auc`)."""
    by_id = {c.case_id: c for c in cases}
    rows = []
    for (protocol, seed, model, image), entropy in result.uncertainty.items():
        errors = by_id[image].mask != result.predictions[(protocol, seed, model, image)]
        rows.append({"protocol": protocol, "seed": seed, "model": model, "image": image,
                     **uncertainty_error_auc(entropy, errors)})
    return pd.DataFrame(rows)


def morphology_table(cases, result: CVResult, *, protocol: str, seed: int) -> pd.DataFrame:
    """Morphology agreement (:func:`morphology`) of every model's test prediction of every image."""
    by_id = {c.case_id: c for c in cases}
    frames = []
    for (p, s, model, image), pred in result.predictions.items():
        if p == protocol and s == seed:
            frames.append(morphology(by_id[image].mask, pred).assign(model=model, image=image))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def best_worst_folds(scores: pd.DataFrame, *, model: str, protocol: str, seed: int) -> dict:
    """The best and the worst fold of ``model`` (by the fold's mean macro Dice) with their test images."""
    part = scores[(scores["model"] == model) & (scores["protocol"] == protocol) & (scores["seed"] == seed)
                  & (scores["class"] == "macro") & (scores["status"] == "ok")]
    if part.empty:
        raise ValueError(f"no scores for model {model!r}, protocol {protocol!r}, seed {seed}")
    folds = part.groupby("fold")["dice"].mean()
    best, worst = int(folds.idxmax()), int(folds.idxmin())
    images = part.groupby("fold")["image"].apply(list)
    return {"best": best, "worst": worst, "best_dice": float(folds[best]), "worst_dice": float(folds[worst]),
            "best_images": images[best], "worst_images": images[worst]}


_CLASS_COLORS = np.array([[1, 1, 1], [0.55, 0.8, 0.95], [0.95, 0.6, 0.8], [0.45, 0.2, 0.55]])
_ERROR_COLORS = np.array([[1, 1, 1], [0.85, 0.85, 0.85], [0.85, 0.1, 0.1]])


def _show(ax, img, title):
    ax.imshow(img, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()


def plot_visual_paradox(cases, result: CVResult, scores: pd.DataFrame, *, model: str, protocol: str, seed: int):
    """The study's visual-paradox check: the best and the worst fold of one model side by side (image,
    reference, prediction, errors in red), with each error map's share of boundary disagreements
    (:func:`error_location`, 2 px). Returns the figure."""
    import matplotlib.pyplot as plt

    folds = best_worst_folds(scores, model=model, protocol=protocol, seed=seed)
    by_id = {c.case_id: c for c in cases}
    picks = [("best", folds["best_images"][0], folds["best_dice"]),
             ("worst", folds["worst_images"][0], folds["worst_dice"])]
    fig, axes = plt.subplots(2, 4, figsize=(8, 4.2))
    for row, (label, image, value) in zip(axes, picks):
        case = by_id[image]
        pred = result.predictions[(protocol, seed, model, image)]
        loc = error_location(case.mask, pred)
        _show(row[0], case.image, f"{label} fold: {image}\nfold macro Dice {value:.3f}")
        _show(row[1], _CLASS_COLORS[case.mask], "reference")
        _show(row[2], _CLASS_COLORS[pred], f"{model}")
        _show(row[3], _ERROR_COLORS[error_map(case.mask, pred)],
              f"errors: {loc['n_error']} px\n{loc['boundary_fraction']:.0%} boundary shifts (<= 2 px)")
    fig.tight_layout()
    return fig


def plot_explanations(cases, result: CVResult, *, model: str, protocol: str, seed: int, image: str, size: int):
    """The study's five views for one model and one test image: error map, uncertainty map (MC-dropout
    entropy), morphology agreement (areas and thicknesses, reference vs prediction), attention map (transformers
    only; a note otherwise) and gradient saliency for the neointima. Returns the figure."""
    import matplotlib.pyplot as plt

    by_id = {c.case_id: c for c in cases}
    case = by_id[image]
    key = (protocol, seed, model, image)
    pred = result.predictions[key]
    folds = [f for (p, s, f, m) in result.models if (p, s, m) == (protocol, seed, model)
             and image in _test_images(result, p, s, m, f)]
    if not folds:
        raise ValueError(f"no kept model of {model!r} tested {image!r} under {protocol} seed {seed} "
                         "(cross_validate keep_models)")
    trained = result.models[(protocol, seed, folds[0], model)]
    x, _ = stack_cases([case], size)
    fig, axes = plt.subplots(1, 5, figsize=(13, 2.9))
    _show(axes[0], _ERROR_COLORS[error_map(case.mask, pred)], "error map (red: wrong class)")
    if key in result.uncertainty:
        im = axes[1].imshow(result.uncertainty[key], cmap="magma")
        fig.colorbar(im, ax=axes[1], fraction=0.046)
        axes[1].set_title("MC-dropout entropy (nats)", fontsize=8)
    else:
        axes[1].set_title("no MC dropout run", fontsize=8)
    axes[1].set_axis_off()
    morph = morphology(case.mask, pred)
    labels = [f"{r.structure}\n{'area/100' if r.quantity == 'area_px' else 'thick.'}" for r in morph.itertuples()]
    scale = np.where(morph["quantity"] == "area_px", 0.01, 1.0)
    pos = np.arange(len(morph))
    axes[2].bar(pos - 0.2, morph["ref"] * scale, 0.4, label="reference", color="#999999")
    axes[2].bar(pos + 0.2, morph["pred"] * scale, 0.4, label="prediction", color="#4c72b0")
    axes[2].set_xticks(pos, labels, fontsize=6, rotation=60)
    axes[2].legend(fontsize=6)
    axes[2].set_title("morphology (px)", fontsize=8)
    try:
        _show(axes[3], attention_map(trained, x), "encoder attention")
        axes[3].images[0].set_cmap("viridis")
    except ValueError as err:
        note = "convolutional model" if "transformer" in str(err) else "key grid of one cell\nat this input size"
        axes[3].text(0.5, 0.5, f"{model}: no attention map\n({note})", ha="center", va="center", fontsize=8)
        axes[3].set_axis_off()
    _show(axes[4], gradient_saliency(trained, x, target_class=2), "gradient saliency (neointima)")
    axes[4].images[0].set_cmap("inferno")
    fig.tight_layout()
    return fig


def _test_images(result: CVResult, protocol, seed, model, fold) -> list:
    s = result.scores
    part = s[(s["protocol"] == protocol) & (s["seed"] == seed) & (s["model"] == model) & (s["fold"] == fold)]
    return part["image"].unique().tolist()
