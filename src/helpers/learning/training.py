"""Training one model under the protocol (:mod:`helpers.learning.protocol` states its rules): the loss, prediction
of a prepared stack, validation Dice, checkpoints that resume, and the loop split into steps.

Files per model (``<ws>/models/<dataset>/<model>/``; extra seeds under ``_seeds/seed<k>/<model>/``):
``checkpoint_last.pt`` (model, optimiser, scheduler, step, history; resumes an interrupted run),
``checkpoint_best.pt``, ``config.json`` (everything needed to re-run: protocol, model kwargs, seeds, package
versions, git commit, device, threads, split and a SHA-256 of the prepared training and validation arrays) and
``history.csv`` (one row per epoch). A finished training whose configuration is unchanged is not re-run.

The grids that train and predict every model of a dataset are :mod:`helpers.learning.grid`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

# first: importing runtime sets OMP_WAIT_POLICY before torch's first import
from helpers.compute.runtime import default_device, torch_settings
import torch

from helpers import metrics
from helpers.base import provenance
from helpers.learning import models as _models
from helpers.base.io import atomic_write, read_json, write_csv, write_json
from helpers.base.progress import progress_bar
from helpers.learning.protocol import TrainingProtocol, Sampler, augment, augmentation, check_cases, data_hash, rng

__all__ = [
    "CHECKPOINT_LAST", "CHECKPOINT_BEST", "CONFIG", "HISTORY", "TrainingResult", "TrainingState", "train_model",
    "predict_stack", "validation_dice", "load_best_model",
]

CHECKPOINT_LAST = "checkpoint_last.pt"
CHECKPOINT_BEST = "checkpoint_best.pt"
CONFIG = "config.json"
HISTORY = "history.csv"
IGNORE_LOGIT = -20.0


@dataclass(frozen=True)
class TrainingResult:
    """What one training produced (a row of ``training_summary.csv``)."""

    model: str
    seed: int
    folder: Path
    params: int
    best_val_dice: float
    best_epoch: int
    epochs: int
    steps: int
    seconds: float
    images_per_second: float
    stopped_early: bool
    device: str
    history: pd.DataFrame = field(repr=False, compare=False)

    def as_row(self) -> dict:
        row = {k: v for k, v in asdict(self).items() if k not in ("history", "folder")}
        row["folder"] = str(self.folder)
        return row


# --------------------------------------------------------------------------------------------- settings


def _bar(progress: bool, **kwargs):
    return progress_bar(progress=progress, **kwargs)


# --------------------------------------------------------------------------------------------- model state


def _loss_fn(protocol: TrainingProtocol):
    from monai.losses import DiceCELoss

    loss = DiceCELoss(sigmoid=True, batch=True)

    def compute(logits, target, ignore):
        logits = torch.where(ignore, torch.full_like(logits, IGNORE_LOGIT), logits)
        target = (target & ~ignore).to(logits.dtype)
        return loss(logits, target)

    return compute


def predict_stack(
    model: torch.nn.Module,
    image: np.ndarray,
    *,
    multiple: int,
    min_size: int = 0,
    batch_size: int = 16,
    device: str = "cpu",
    amp: bool = False,
) -> np.ndarray:
    """Foreground probabilities ``float32 (n_slices, y, x)`` of a prepared image stack, slice by slice.

    Each batch of whole slices is zero-padded to ``multiple`` (:func:`helpers.learning.models.forward_padded`),
    the model runs in evaluation mode without gradients, and the sigmoid of its logits is cropped back to the
    slice size. ``multiple`` and ``min_size`` come from :func:`helpers.learning.models.input_multiple` and
    :func:`helpers.learning.models.min_input_size`.
    """
    image = np.asarray(image)
    if image.ndim != 4:
        raise ValueError(f"image must be (n_slices, channels, y, x), got shape {image.shape}")
    was_training = model.training
    model.eval()
    out = np.empty((image.shape[0], *image.shape[2:]), dtype=np.float32)
    try:
        with torch.no_grad():
            for start in range(0, image.shape[0], batch_size):
                x = torch.from_numpy(np.ascontiguousarray(image[start : start + batch_size])).to(device)
                with _autocast(device, amp):
                    logits = _models.forward_padded(model, x, multiple, min_size=min_size)
                out[start : start + len(x)] = torch.sigmoid(logits.float())[:, 0].cpu().numpy()
    finally:
        model.train(was_training)
    return out


def _autocast(device: str, amp: bool):
    if amp and device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _evenly(values: np.ndarray, k: int) -> np.ndarray:
    """``k`` evenly spaced entries of ``values`` (first and last included; ``k <= len(values)``)."""
    if k <= 0:
        return values[:0]
    return values[np.unique(np.linspace(0, len(values) - 1, k).round().astype(int))]


def _validation_slices(case, max_slices: int | None) -> np.ndarray:
    """The slices of ``case`` that validation predicts: all of them when ``max_slices`` is None or the case has no
    more; else ``max_slices`` slices, a quarter of them (rounded down) evenly spaced over the slices without lesion
    and the rest evenly spaced over the slices with lesion (when one kind has too few slices, the other fills up)."""
    n = case.mask.shape[0]
    if max_slices is None or n <= max_slices:
        return np.arange(n)
    holds = case.mask.reshape(n, -1).any(axis=1)
    lesion, other = np.flatnonzero(holds), np.flatnonzero(~holds)
    n_lesion = min(len(lesion), max_slices - min(len(other), max_slices // 4))
    n_other = min(len(other), max_slices - n_lesion)
    return np.union1d(_evenly(lesion, n_lesion), _evenly(other, n_other))


def validation_dice(
    model, cases, *, multiple: int, min_size: int = 0, max_slices: int | None = None, device="cpu", amp=False
) -> float:
    """Mean over ``cases`` of the per-case Dice at threshold 0.5 on the prepared grid
    (:mod:`helpers.learning.protocol`)."""
    scores = []
    for case in cases:
        idx = _validation_slices(case, max_slices)
        prob = predict_stack(model, case.image[idx], multiple=multiple, min_size=min_size, device=device, amp=amp)
        ref, pred = case.mask[idx], prob >= 0.5
        if getattr(case, "ignore", None) is not None:
            ref, pred = ref & ~case.ignore[idx], pred & ~case.ignore[idx]
        scores.append(metrics.dice(ref, pred))
    return float(np.mean(scores))


def _config_hash(config: dict) -> str:
    keys = ("model", "seed", "protocol", "model_kwargs", "data_hash", "effective_batch_size", "amp")
    return hashlib.sha256(json.dumps({k: config[k] for k in keys}, sort_keys=True).encode()).hexdigest()[:16]


def _save_torch(obj, path: Path) -> None:
    atomic_write(path, lambda p: torch.save(obj, p), suffix=".pt")


def _load_torch(path: Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path}: cannot read checkpoint ({type(err).__name__}: {err})") from None


# --------------------------------------------------------------------------------------------- training


def train_model(
    model_name: str,
    train_cases: Sequence,
    val_cases: Sequence,
    folder,
    *,
    protocol: TrainingProtocol = TrainingProtocol(),
    seed: int = 0,
    num_threads: int | None = None,
    device: str | None = None,
    resume: bool = True,
    progress: bool = True,
    on_epoch_end: Callable[[dict], None] | None = None,
    extra_config: dict | None = None,
) -> TrainingResult:
    """Train one model under ``protocol`` and keep its best validation checkpoint.

    Parameters
    ----------
    model_name : str
        One of ``helpers.learning.models.MODEL_NAMES``.
    train_cases, val_cases : sequence of PreparedCase-like
        Objects with ``case_id``, ``image`` ``float32 (n, c, y, x)``, ``mask`` ``bool (n, y, x)`` and optional
        ``ignore``.
    folder : path
        Output folder (``checkpoint_last.pt``, ``checkpoint_best.pt``, ``config.json``, ``history.csv``).
    protocol : TrainingProtocol
        The shared protocol.
    seed : int
        Seeds weight initialisation, sampling and augmentation.
    num_threads : int, optional
        Torch CPU threads (default: :func:`helpers.compute.runtime.task_threads`).
    device : {"cpu", "cuda"}, optional
        Default: CUDA when available. On CUDA, bfloat16 autocast and ``protocol.gpu_batch_scale`` larger batches.
    resume : bool, default True
        Continue from ``checkpoint_last.pt`` when it exists with the same configuration hash; skip when that
        training has finished. With False, or a different configuration, training starts afresh.
    progress : bool
        Show a progress bar over epochs.
    on_epoch_end : callable, optional
        Called with the epoch's history row after its checkpoint is saved (raising in it interrupts training).
    extra_config : dict, optional
        Stored in ``config.json`` without influencing training (e.g. dataset and split).

    Returns
    -------
    TrainingResult
    """
    _models.check_model_name(model_name)
    if not isinstance(protocol, TrainingProtocol):
        raise TypeError(f"protocol must be a TrainingProtocol, got {type(protocol).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    train_cases = check_cases(train_cases, "train_cases")
    val_cases = check_cases(val_cases, "val_cases")
    in_channels = train_cases[0].image.shape[1]
    if val_cases[0].image.shape[1] != in_channels:
        raise ValueError(f"val_cases have {val_cases[0].image.shape[1]} channels, train_cases {in_channels}")
    device = default_device() if device is None else device
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    folder = Path(folder)
    config = _training_config(model_name, train_cases, val_cases, protocol=protocol, seed=int(seed),
                              amp=device.startswith("cuda"), extra_config=extra_config)  # fmt: skip

    with torch_settings(num_threads=num_threads, deterministic=True) as threads:
        run = _init_or_resume(config, folder, device=device, resume=resume)
        config.update(
            {
                "params": run.params,
                "device": device,
                "torch_threads": threads,
                "package_versions": provenance.package_versions(),
                "commit": provenance.git_commit(),
            }
        )
        write_json(config, folder / CONFIG)
        if not run.state.finished:
            _train_epochs(run, train_cases, val_cases, config, folder, protocol=protocol, device=device,
                          progress=progress, on_epoch_end=on_epoch_end)  # fmt: skip

    state = run.state
    return TrainingResult(
        model=model_name,
        seed=int(seed),
        folder=folder,
        params=run.params,
        best_val_dice=float(state.best_dice),
        best_epoch=int(state.best_epoch),
        epochs=int(state.epoch),
        steps=int(state.step),
        seconds=float(state.seconds),
        images_per_second=float(state.images_seen / state.train_seconds) if state.train_seconds else 0.0,
        stopped_early=bool(state.stopped_early),
        device=device,
        history=pd.DataFrame(state.history),
    )


@dataclass
class TrainingState:
    """The progress of one training, saved in ``checkpoint_last.pt`` (as a plain dict) after every epoch.

    ``best_dice`` starts at -1 so that the first validation always improves on it; ``bad_epochs`` counts the epochs
    since the last improvement (early stopping); ``train_seconds`` and ``images_seen`` cover the optimiser steps
    only (throughput), ``seconds`` the epochs with their validation."""

    step: int = 0
    epoch: int = 0
    best_dice: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list = field(default_factory=list)
    finished: bool = False
    stopped_early: bool = False
    train_seconds: float = 0.0
    images_seen: int = 0
    seconds: float = 0.0


@dataclass
class _Run:
    """What one training carries from epoch to epoch: the model, its optimiser and schedule, and its state."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    state: TrainingState
    params: int


def _training_config(model_name: str, train_cases, val_cases, *, protocol: TrainingProtocol, seed: int, amp: bool,
                     extra_config: dict | None) -> dict:
    """Everything that defines the training (its ``config_hash`` decides whether a checkpoint may be resumed)."""
    in_channels = train_cases[0].image.shape[1]
    batch_size = protocol.batch_size * (protocol.gpu_batch_scale if amp else 1)
    n_slices = sum(c.mask.shape[0] for c in train_cases)
    steps_per_epoch = protocol.steps_per_epoch or math.ceil(n_slices / batch_size)
    config = {
        "model": model_name,
        "family": _models.REGISTRY[model_name].describe(),
        "seed": seed,
        "protocol": protocol.to_dict(),
        "model_kwargs": _models.model_kwargs(model_name, in_channels=in_channels, size=protocol.size),
        "steps_per_epoch": steps_per_epoch,
        "total_steps": protocol.epochs * steps_per_epoch,
        "effective_batch_size": batch_size,
        "amp": amp,
        "memory_format": str(_models.MEMORY_FORMAT).removeprefix("torch."),
        "threshold": 0.5,
        "train_cases": [c.case_id for c in train_cases],
        "val_cases": [c.case_id for c in val_cases],
        "data_hash": data_hash([*train_cases, *val_cases]),
        **(extra_config or {}),
    }
    config["config_hash"] = _config_hash(config)
    return config


def _init_or_resume(config: dict, folder: Path, *, device: str, resume: bool) -> _Run:
    """A fresh model (weights drawn after ``torch.manual_seed(seed)``), optimiser and schedule, continued from
    ``checkpoint_last.pt`` when ``resume`` and its configuration hash matches."""
    protocol = config["protocol"]
    torch.manual_seed(config["seed"])
    model = _models.build_model(
        config["model"], in_channels=config["model_kwargs"]["in_channels"], size=protocol["size"],
        foreground_prior=protocol["foreground_prior"],
    ).to(device)  # fmt: skip
    optimizer = torch.optim.AdamW(model.parameters(), lr=protocol["learning_rate"],
                                  weight_decay=protocol["weight_decay"])  # fmt: skip
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config["total_steps"])
    run = _Run(model, optimizer, scheduler, TrainingState(), _models.count_parameters(model))
    last = folder / CHECKPOINT_LAST
    if resume and last.exists():
        saved = _load_torch(last)
        if saved.get("config_hash") == config["config_hash"]:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            torch.set_rng_state(saved["torch_rng"])
            run.state = TrainingState(**saved["state"])
    return run


def _train_epochs(run: _Run, train_cases, val_cases, config: dict, folder: Path, *, protocol: TrainingProtocol,
                  device: str, progress: bool, on_epoch_end) -> None:
    """Epochs until the budget is spent or early stopping ends the training, each followed by its validation, its
    checkpoints and its history row."""
    state, seed, amp = run.state, config["seed"], config["amp"]
    model_name = config["model"]
    multiple = _models.input_multiple(model_name, protocol.size)
    min_size = _models.min_input_size(model_name, protocol.size)
    sampler = Sampler(train_cases, protocol.patch_size, protocol.foreground_fraction)
    transform = augmentation(protocol) if protocol.augment else None
    loss_fn = _loss_fn(protocol)
    bar = _bar(progress, total=protocol.epochs, initial=state.epoch, desc=f"{model_name} seed {seed}", leave=False)
    run.model.train()
    while state.epoch < protocol.epochs and not state.finished:
        started = time.perf_counter()
        losses = _train_epoch(run, sampler, transform, loss_fn, seed=seed, steps=config["steps_per_epoch"],
                              batch_size=config["effective_batch_size"], device=device, amp=amp)  # fmt: skip
        train_seconds = time.perf_counter() - started
        dice = validation_dice(run.model, val_cases, multiple=multiple, min_size=min_size,
                               max_slices=protocol.val_max_slices, device=device, amp=amp)  # fmt: skip
        run.model.train()
        row = _end_epoch(run, config, folder, dice=dice, losses=losses, train_seconds=train_seconds,
                         seconds=time.perf_counter() - started, protocol=protocol)  # fmt: skip
        bar.update(1)
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_dice=f"{dice:.3f}")
        if on_epoch_end is not None:
            on_epoch_end(dict(row))
    bar.close()


def _train_epoch(run: _Run, sampler: Sampler, transform, loss_fn, *, seed: int, steps: int, batch_size: int,
                 device: str, amp: bool) -> list[float]:
    """``steps`` optimiser steps; step ``s`` samples and augments from generators seeded with ``(seed, s)``.
    Returns the training loss of each step."""
    state, losses = run.state, []
    for _ in range(steps):
        step = state.step
        images, masks, ignores = sampler.draw(rng(seed, step, 1), batch_size)
        if transform is not None:
            x, y, g = augment(transform, seed, step, images, masks, ignores)
        else:
            x, y, g = (torch.from_numpy(images), torch.from_numpy(masks), torch.from_numpy(ignores))
        x, y, g = _models.as_input(x.to(device)), y.to(device), g.to(device)
        with _autocast(device, amp):
            logits = run.model(x)
        loss = loss_fn(logits.float(), y, g)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        run.scheduler.step()
        losses.append(float(loss.detach()))
        state.step = step + 1
        state.images_seen += batch_size
    return losses


def _end_epoch(run: _Run, config: dict, folder: Path, *, dice: float, losses: list[float], train_seconds: float,
               seconds: float, protocol: TrainingProtocol) -> dict:
    """Book one finished epoch: its validation (best checkpoint, early stopping), its history row,
    ``checkpoint_last.pt`` and ``history.csv``. Returns the history row."""
    state = run.state
    state.epoch += 1
    state.train_seconds += train_seconds
    state.seconds += seconds
    if _record_validation(state, dice, patience=protocol.patience, epochs=protocol.epochs):
        best = {"model": run.model.state_dict(), "epoch": state.epoch, "val_dice": dice,
                "config_hash": config["config_hash"], "model_name": config["model"],
                "model_kwargs": config["model_kwargs"]}  # fmt: skip
        _save_torch(best, folder / CHECKPOINT_BEST)
    row = {
        "epoch": state.epoch,
        "step": state.step,
        "train_loss": float(np.mean(losses)),
        "val_dice": dice,
        "learning_rate": float(run.scheduler.get_last_lr()[0]),
        "seconds": state.seconds,
    }
    state.history.append(row)
    _save_last(run, config, folder)
    write_csv(pd.DataFrame(state.history), folder / HISTORY)
    return row


def _record_validation(state: TrainingState, dice: float, *, patience: int, epochs: int) -> bool:
    """Update the best epoch and early stopping after the validation of epoch ``state.epoch``; True when ``dice``
    improved strictly on the best so far (ties keep the earlier epoch)."""
    improved = dice > state.best_dice
    if improved:
        state.best_dice, state.best_epoch, state.bad_epochs = dice, state.epoch, 0
    else:
        state.bad_epochs += 1
    if patience and state.bad_epochs >= patience:
        state.stopped_early = True
    if state.stopped_early or state.epoch >= epochs:
        state.finished = True
    return improved


def _save_last(run: _Run, config: dict, folder: Path) -> None:
    """``checkpoint_last.pt``: weights, optimiser, schedule, torch's generator and the state (a resumed run
    continues exactly where this one stopped)."""
    _save_torch(
        {"model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
         "scheduler": run.scheduler.state_dict(), "torch_rng": torch.get_rng_state(),
         "state": asdict(run.state), "config_hash": config["config_hash"]},
        folder / CHECKPOINT_LAST,
    )  # fmt: skip


def load_best_model(folder) -> torch.nn.Module:
    """Rebuild the model saved in ``folder/checkpoint_best.pt`` (with its ``config.json``), in evaluation mode."""
    folder = Path(folder)
    path = folder / CHECKPOINT_BEST
    if not path.exists():
        raise FileNotFoundError(f"{path}: no best checkpoint (train the model first)")
    saved = _load_torch(path)
    config = read_json(folder / CONFIG)
    if saved.get("config_hash") != config.get("config_hash"):
        raise ValueError(f"{path}: checkpoint does not match {folder / CONFIG} (configuration hash differs)")
    kwargs = config["model_kwargs"]
    model = _models.build_model(
        config["model"], in_channels=kwargs["in_channels"], out_channels=kwargs["out_channels"],
        size=config["protocol"]["size"], foreground_prior=config["protocol"]["foreground_prior"],
    )  # fmt: skip
    model.load_state_dict(saved["model"])
    return model.eval()
