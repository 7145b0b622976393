"""One training protocol for every model family of a dataset, checkpoints that resume, and test predictions.

Conventions
-----------
- Data: prepared cases (``helpers.data.preprocessing.load_prepared``): ``image`` ``float32 (n_slices, channels, y, x)``,
  ``mask`` ``bool (n_slices, y, x)``, ``ignore`` ``bool`` of the same shape or None. A volume is a stack of axial
  slices (axis order ``(z, y, x)``); a 2D image is a stack of one. All training and validation happen on this
  *prepared grid*; test predictions are mapped back to the original grid with ``helpers.data.preprocessing.restore``.
- Budget: ``epochs`` x ``steps_per_epoch`` optimiser steps of ``batch_size`` square patches of ``patch_size``
  pixels. An *epoch* is one evaluation period: ``steps_per_epoch`` steps (None: one pass, i.e. the number of
  training slices divided by the batch size, rounded up), then a validation; it is not necessarily a full pass.
- Sampling (small lesions are seen): each sample is, with probability ``foreground_fraction``, centred on a
  lesion chosen *uniformly among the 2D connected components* (8-connectivity) of all training slices, so that a
  3-pixel lesion is drawn as often as a large one, with a random shift of up to a quarter patch; otherwise a
  uniformly drawn slice and position. Patches overlapping the image border are zero-padded.
- Augmentation (MONAI dictionary transforms, the same family for all models): flips along y and x (p=0.5 each),
  90-degree rotations (p=0.5), small rotations of up to ``rotation_degrees`` (p=0.3, bilinear for the image,
  nearest for the masks), intensity scaling and shift of up to 10 % (p=0.5 each) and Gaussian noise (sd 0.05,
  p=0.2).
- Loss: ``"dice_ce"``: MONAI ``DiceCELoss(sigmoid=True, batch=True)``: soft Dice over the whole batch (one Dice
  per batch, robust when many patches hold no lesion) plus binary cross-entropy, weights 1 and 1. Voxels in
  ``ignore`` do not count: their logit is replaced by a constant -20 and their target by 0 before the loss, so
  they contribute no gradient and (almost) nothing to either term.
- Initialisation: every model's logits get one learnable bias initialised so that the untrained model predicts
  the foreground probability ``foreground_prior`` (default 0.01; ``helpers.learning.models.WithOutputBias``).
- Optimiser AdamW (``learning_rate``, ``weight_decay``); learning rate cosine-annealed from ``learning_rate`` to 0
  over the full budget (step-wise).
- Validation after each epoch: the slices of every validation case (all of them, or with ``val_max_slices`` that
  many: three quarters evenly spaced over the slices holding lesion, a quarter over the others) are predicted
  whole (zero-padded to the model's multiple), thresholded at 0.5 without component clean-up, and Dice is computed
  per *case* over those slices on the prepared grid, ignore voxels excluded (:func:`helpers.metrics.dice`: both
  empty scores 1).
  Validation Dice is the mean over cases.
- Early stopping: stop when validation Dice has not improved (strictly) for ``patience`` epochs (0: never stop
  early). ``checkpoint_best.pt`` holds the weights of the best epoch (ties keep the earlier epoch); test
  predictions use them.
- Determinism: weights are initialised after ``torch.manual_seed(seed)``; patch sampling and augmentation at step
  ``s`` draw from generators seeded with ``(seed, s)``, so a resumed run sees exactly the batches an
  uninterrupted run would. On CPU ``torch.use_deterministic_algorithms(True)`` and a fixed thread count
  (``helpers.compute.runtime.torch_settings``; default :func:`helpers.compute.runtime.task_threads`); the same
  seed on the same machine and thread count gives identical weights and predictions.
- GPU (when ``torch.cuda.is_available()``): mixed precision (bfloat16 autocast) and ``gpu_batch_scale`` times
  larger batches switch on by themselves; both are recorded in ``config.json``.

Files per model (``<ws>/models/<dataset>/<model>/``; extra seeds under ``_seeds/seed<k>/<model>/``):
``checkpoint_last.pt`` (model, optimiser, scheduler, step, history; resumes an interrupted run),
``checkpoint_best.pt``, ``config.json`` (everything needed to re-run: protocol, model kwargs, seeds, package
versions, git commit, device, threads, split and a SHA-256 of the prepared training and validation arrays) and
``history.csv`` (one row per epoch). A finished training whose configuration is unchanged is not re-run.

Grid: :func:`train_all` and :func:`predict_all` run one task per (model, seed) (:func:`train_task`,
:func:`predict_task`), in-process or on a Dask scheduler (``helpers.compute.cluster``).
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

from helpers.compute.runtime import default_device, torch_settings  # first: sets OMP_WAIT_POLICY before torch's first import
import torch
from scipy import ndimage

from helpers import metrics
from helpers.base import provenance
from helpers.learning import models as _models
from helpers.data import predictions as _predictions
from helpers.base.io import atomic_write, read_json, write_csv, write_json
from helpers.base.paths import Workspace
from helpers.data.preprocessing import load_prepared, restore
from helpers.base.progress import progress_bar
from helpers.data.splits import load_splits
from helpers.compute.cluster import GridTask, grid_priority, run_grid
from helpers.base.plots import get_axes, model_color

CHECKPOINT_LAST = "checkpoint_last.pt"
CHECKPOINT_BEST = "checkpoint_best.pt"
CONFIG = "config.json"
HISTORY = "history.csv"
SEEDS_FOLDER = "_seeds"
IGNORE_LOGIT = -20.0
LOSSES = ("dice_ce",)


@dataclass(frozen=True)
class TrainingProtocol:
    """Everything shared by all models trained on one dataset (see the module docstring for each rule).

    The defaults are the ``smoke`` budget (a pipeline check, not a trained model).

    Attributes
    ----------
    size : str
        Named model width (``helpers.learning.models.SIZES``).
    epochs : int
        Maximum number of epochs (evaluation periods).
    steps_per_epoch : int or None
        Optimiser steps per epoch; None = ceil(training slices / batch size).
    batch_size : int
        Patches per step on CPU (``gpu_batch_scale`` times more on a GPU).
    patch_size : int
        Side of the square training patch in prepared pixels; a multiple of 32 and at least 64, so that every
        family accepts it (``helpers.learning.models.min_input_size``).
    learning_rate, weight_decay : float
        AdamW settings; the learning rate is cosine-annealed to 0 over ``epochs * steps_per_epoch`` steps.
    loss : {"dice_ce"}
        The named loss.
    patience : int
        Early-stopping patience in epochs (0 = train the full budget).
    foreground_fraction : float
        Probability that a patch is centred on a lesion (lesion-uniform sampling).
    augment : bool
        Apply the augmentation family.
    rotation_degrees : float
        Largest small-angle rotation.
    val_max_slices : int or None
        Validate on at most this many slices per validation case: a quarter evenly spaced over its slices without
        lesion, the rest over its slices with lesion (all slices when the case has no more than this many);
        None = all slices. A validation pass then predicts the same number of slices per case, whatever the
        case's lesion load.
    foreground_prior : float or None
        Initial foreground probability of every model (``helpers.learning.models.WithOutputBias``); None: none.
    gpu_batch_scale : int
        Batch multiplier on a GPU.
    """

    size: str = "smoke"
    epochs: int = 3
    steps_per_epoch: int | None = 4
    batch_size: int = 4
    patch_size: int = 64
    learning_rate: float = 1e-2
    weight_decay: float = 1e-4
    loss: str = "dice_ce"
    patience: int = 0
    foreground_fraction: float = 0.5
    augment: bool = True
    rotation_degrees: float = 15.0
    val_max_slices: int | None = 8
    foreground_prior: float | None = 0.01
    gpu_batch_scale: int = 4

    def __post_init__(self):
        _models.check_size(self.size)
        for name in ("epochs", "batch_size", "patch_size", "gpu_batch_scale"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("steps_per_epoch", "val_max_slices"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        if isinstance(self.patience, bool) or not isinstance(self.patience, (int, np.integer)) or self.patience < 0:
            raise ValueError(f"patience must be a non-negative integer, got {self.patience!r}")
        if self.patch_size % 32 or self.patch_size < 64:
            raise ValueError(
                f"patch_size must be a multiple of 32 and at least 64 (every model family accepts it), "
                f"got {self.patch_size}"
            )
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate!r}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ValueError(f"weight_decay must be non-negative, got {self.weight_decay!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {list(LOSSES)}, got {self.loss!r}")
        if not 0.0 <= self.foreground_fraction <= 1.0:
            raise ValueError(f"foreground_fraction must lie in [0, 1], got {self.foreground_fraction!r}")
        if self.foreground_prior is not None and not 0.0 < self.foreground_prior < 1.0:
            raise ValueError(f"foreground_prior must lie in (0, 1) or be None, got {self.foreground_prior!r}")
        if not 0.0 <= self.rotation_degrees <= 180.0:
            raise ValueError(f"rotation_degrees must lie in [0, 180], got {self.rotation_degrees!r}")

    def to_dict(self) -> dict:
        return asdict(self)


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


def _rng(seed: int, step: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(step), int(stream)])


# --------------------------------------------------------------------------------------------- data


def _check_cases(cases, what: str) -> list:
    cases = list(cases)
    if not cases:
        raise ValueError(f"{what} must hold at least one case")
    channels = None
    for case in cases:
        for attr in ("case_id", "image", "mask"):
            if not hasattr(case, attr):
                raise TypeError(f"{what}: every case needs case_id, image and mask; got {type(case).__name__}")
        image, mask = np.asarray(case.image), np.asarray(case.mask)
        if image.ndim != 4 or image.dtype != np.float32:
            raise ValueError(
                f"{what}: case {case.case_id!r} image must be float32 (n_slices, channels, y, x), "
                f"got {image.dtype} {image.shape}"
            )
        if mask.dtype != bool or mask.shape != (image.shape[0], *image.shape[2:]):
            raise ValueError(
                f"{what}: case {case.case_id!r} mask must be bool {(image.shape[0], *image.shape[2:])}, "
                f"got {mask.dtype} {mask.shape}"
            )
        ignore = getattr(case, "ignore", None)
        if ignore is not None and (np.asarray(ignore).dtype != bool or np.shape(ignore) != mask.shape):
            raise ValueError(f"{what}: case {case.case_id!r} ignore must be bool {mask.shape} or None")
        if channels is None:
            channels = image.shape[1]
        elif image.shape[1] != channels:
            raise ValueError(f"{what}: case {case.case_id!r} has {image.shape[1]} channels, others {channels}")
    return cases


def data_hash(cases: Sequence) -> str:
    """SHA-256 over the ids, images, masks and ignore masks of ``cases`` (in the order given)."""
    digest = hashlib.sha256()
    for case in cases:
        digest.update(str(case.case_id).encode())
        for array in (case.image, case.mask, getattr(case, "ignore", None)):
            if array is None:
                digest.update(b"none")
            else:
                array = np.ascontiguousarray(array)
                digest.update(f"{array.dtype}{array.shape}".encode())
                digest.update(array.tobytes())
    return digest.hexdigest()


class _Sampler:
    """Patch sampling over the training slices (see the module docstring)."""

    def __init__(self, cases, patch_size: int, foreground_fraction: float):
        self.cases = cases
        self.patch = patch_size
        self.fg = foreground_fraction
        self.slices = [(c, s) for c in range(len(cases)) for s in range(cases[c].mask.shape[0])]
        anchors = []
        structure = np.ones((3, 3), bool)
        for c, case in enumerate(cases):
            for s in np.flatnonzero(case.mask.reshape(case.mask.shape[0], -1).any(axis=1)):
                labels, n = ndimage.label(case.mask[s], structure=structure)
                # the first voxel (raster order) of each component stands for it; a shift is added when drawn
                firsts = ndimage.minimum(np.arange(labels.size).reshape(labels.shape), labels, np.arange(1, n + 1))
                for flat in np.atleast_1d(firsts).astype(int):
                    y, x = divmod(flat, labels.shape[1])
                    anchors.append((c, int(s), y, x))
        self.anchors = anchors

    def draw(self, rng: np.random.Generator, n: int):
        images, masks, ignores = [], [], []
        for _ in range(n):
            if self.anchors and rng.random() < self.fg:
                c, s, y, x = self.anchors[rng.integers(len(self.anchors))]
                jitter = rng.integers(-(self.patch // 4), self.patch // 4 + 1, size=2)
                top, left = y - self.patch // 2 + jitter[0], x - self.patch // 2 + jitter[1]
            else:
                c, s = self.slices[rng.integers(len(self.slices))]
                h, w = self.cases[c].mask.shape[1:]
                top = rng.integers(0, max(h - self.patch, 0) + 1)
                left = rng.integers(0, max(w - self.patch, 0) + 1)
            case = self.cases[c]
            h, w = case.mask.shape[1:]
            top = int(np.clip(top, 0, max(h - self.patch, 0)))
            left = int(np.clip(left, 0, max(w - self.patch, 0)))
            window = (slice(top, top + self.patch), slice(left, left + self.patch))
            image = _pad(case.image[s][(slice(None), *window)], self.patch)
            mask = _pad(case.mask[s][window][None], self.patch)
            ignore = case.ignore[s][window][None] if getattr(case, "ignore", None) is not None else None
            ignore = _pad(ignore, self.patch) if ignore is not None else np.zeros_like(mask)
            images.append(image)
            masks.append(mask)
            ignores.append(ignore)
        return np.stack(images), np.stack(masks), np.stack(ignores)


def _pad(array: np.ndarray, size: int) -> np.ndarray:
    h, w = array.shape[-2:]
    if h >= size and w >= size:
        return np.ascontiguousarray(array)
    return np.pad(array, ((0, 0), (0, size - h), (0, size - w)))


def _augmentation(protocol: TrainingProtocol):
    from monai.transforms import (
        Compose,
        RandFlipd,
        RandGaussianNoised,
        RandRotate90d,
        RandRotated,
        RandScaleIntensityd,
        RandShiftIntensityd,
    )

    keys = ("image", "label", "ignore")
    angle = math.radians(protocol.rotation_degrees)
    return Compose(
        [
            RandFlipd(keys, prob=0.5, spatial_axis=0),
            RandFlipd(keys, prob=0.5, spatial_axis=1),
            RandRotate90d(keys, prob=0.5, max_k=3),
            RandRotated(
                keys, range_x=angle, prob=0.3, mode=("bilinear", "nearest", "nearest"), padding_mode="zeros"
            ),
            RandScaleIntensityd("image", factors=0.1, prob=0.5),
            RandShiftIntensityd("image", offsets=0.1, prob=0.5),
            RandGaussianNoised("image", prob=0.2, std=0.05, sample_std=False),
        ]
    )


def _augment(transform, seed: int, step: int, images, masks, ignores):
    transform.set_random_state(seed=int(_rng(seed, step, 2).integers(2**31 - 1)))
    out_i, out_m, out_g = [], [], []
    for image, mask, ignore in zip(images, masks, ignores):
        sample = transform(
            {
                "image": torch.from_numpy(image),
                "label": torch.from_numpy(mask.astype(np.float32)),
                "ignore": torch.from_numpy(ignore.astype(np.float32)),
            }
        )
        out_i.append(_plain(sample["image"]))
        out_m.append(_plain(sample["label"]) > 0.5)
        out_g.append(_plain(sample["ignore"]) > 0.5)
    return torch.stack(out_i), torch.stack(out_m), torch.stack(out_g)


def _plain(x) -> torch.Tensor:
    x = x.as_tensor() if hasattr(x, "as_tensor") else torch.as_tensor(x)
    return x.float().contiguous()


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

    Each batch of whole slices is zero-padded to ``multiple`` (:func:`helpers.learning.models.forward_padded`), the model
    runs in evaluation mode without gradients, and the sigmoid of its logits is cropped back to the slice size.
    ``multiple`` and ``min_size`` come from :func:`helpers.learning.models.input_multiple` and
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
    """Mean over ``cases`` of the per-case Dice at threshold 0.5 on the prepared grid (module docstring)."""
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
    train_cases = _check_cases(train_cases, "train_cases")
    val_cases = _check_cases(val_cases, "val_cases")
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
    sampler = _Sampler(train_cases, protocol.patch_size, protocol.foreground_fraction)
    transform = _augmentation(protocol) if protocol.augment else None
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


def _train_epoch(run: _Run, sampler: _Sampler, transform, loss_fn, *, seed: int, steps: int, batch_size: int,
                 device: str, amp: bool) -> list[float]:
    """``steps`` optimiser steps; step ``s`` samples and augments from generators seeded with ``(seed, s)``.
    Returns the training loss of each step."""
    state, losses = run.state, []
    for _ in range(steps):
        step = state.step
        images, masks, ignores = sampler.draw(_rng(seed, step, 1), batch_size)
        if transform is not None:
            x, y, g = _augment(transform, seed, step, images, masks, ignores)
        else:
            x, y, g = (torch.from_numpy(images), torch.from_numpy(masks), torch.from_numpy(ignores))
        x, y, g = x.to(device), y.to(device), g.to(device)
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


# --------------------------------------------------------------------------------------------- workspace level


def model_folder(ws: Workspace, dataset: str, model: str, *, seed_index: int = 0, seed: int | None = None) -> Path:
    """``models/<dataset>/<model>`` for the first seed, ``models/<dataset>/_seeds/seed<seed>/<model>`` else."""
    return ws.models(dataset, model) if seed_index == 0 else ws.models(dataset) / SEEDS_FOLDER / f"seed{seed}" / model


def predictions_root(ws: Workspace, dataset: str, *, seed_index: int = 0, seed: int | None = None) -> Path:
    """The predictions root of one seed (the first seed: ``predictions/<dataset>``; see ``helpers.data.predictions``)."""
    base = ws.predictions(dataset)
    return base if seed_index == 0 else base / SEEDS_FOLDER / f"seed{seed}"


def dataset_channels(ws, dataset: str) -> int:
    """Image channels of the dataset's prepared arrays (read from its first training case)."""
    ws = _workspace(ws)
    splits = load_splits(ws, dataset)
    if not splits.get("train"):
        raise ValueError(f"{ws.results(dataset) / 'splits.json'}: the 'train' split is empty")
    return int(load_prepared(ws, dataset, splits["train"][0]).image.shape[1])


def _workspace(ws) -> Workspace:
    return ws if isinstance(ws, Workspace) else Workspace.at(ws)


def _check_models(models) -> list[str]:
    models = [models] if isinstance(models, str) else list(models)
    if not models:
        raise ValueError("models must name at least one model")
    for name in models:
        _models.check_model_name(name)
    return models


def _seeds(seed: int, seeds: int) -> list[int]:
    if isinstance(seeds, bool) or not isinstance(seeds, (int, np.integer)) or seeds < 1:
        raise ValueError(f"seeds must be a positive integer, got {seeds!r}")
    return [int(seed) + i for i in range(int(seeds))]


def _wants_gpu(device: str | None) -> bool:
    """Whether grid tasks with this ``device`` must run on a GPU worker (explicit CUDA, or None where the
    submitting process sees a GPU)."""
    return default_device().startswith("cuda") if device is None else str(device).startswith("cuda")


def _load_split_cases(ws: Workspace, dataset: str, parts: Sequence[str]) -> dict[str, list]:
    splits = load_splits(ws, dataset)
    for part in parts:
        if not splits.get(part):
            raise ValueError(f"{ws.results(dataset) / 'splits.json'}: the {part!r} split is empty")
    return {part: [load_prepared(ws, dataset, c) for c in splits[part]] for part in parts}


def train_task(workspace, dataset: str, model: str, *, seed: int, seed_index: int = 0,
               protocol: TrainingProtocol = TrainingProtocol(), num_threads: int | None = None,
               device: str | None = None) -> dict:
    """One unit of the training grid: train ``model`` with ``seed`` on the dataset's split (reading the prepared
    arrays from the workspace) and return its row of ``training_summary.csv`` plus ``up_to_date`` (True when a
    finished training with this configuration was found and nothing was trained).

    ``num_threads`` None: the task's thread count (:func:`helpers.compute.runtime.task_threads`)."""
    ws = _workspace(workspace)
    cases = _load_split_cases(ws, dataset, ("train", "val"))
    folder = model_folder(ws, dataset, model, seed_index=seed_index, seed=seed)
    before = _mtime(folder / CHECKPOINT_LAST)
    result = train_model(
        model, cases["train"], cases["val"], folder, protocol=protocol, seed=seed,
        num_threads=num_threads, device=device, progress=False,
        extra_config={"dataset": dataset},
    )  # fmt: skip
    row = {"dataset": dataset, **result.as_row()}
    row["folder"] = Path(row["folder"]).relative_to(ws.root).as_posix()
    return {**row, "up_to_date": before is not None and before == _mtime(folder / CHECKPOINT_LAST)}


def _mtime(path: Path) -> int | None:
    return path.stat().st_mtime_ns if path.exists() else None


def train_all(
    ws,
    dataset: str,
    protocol: TrainingProtocol = TrainingProtocol(),
    *,
    models: Sequence[str] = _models.MODEL_NAMES,
    seed: int = 0,
    seeds: int = 1,
    num_threads: int | None = None,
    device: str | None = None,
    scheduler: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Train every model in ``models`` (and ``seeds`` seeds each) on the dataset's train split under one protocol.

    Each (model, seed) is one task of a grid (:func:`train_task`), run in-process one after another
    (``scheduler`` None) or on the Dask scheduler at ``scheduler`` (see ``helpers.compute.cluster``); CUDA tasks ask for
    the resource ``GPU=1``. Reads the split (``results/<dataset>/splits.json``) and the prepared arrays; writes
    each model's folder (:func:`model_folder`) and ``results/<dataset>/training_summary.csv``; returns that table
    (one row per model and seed: ``dataset, model, seed, params, best_val_dice, best_epoch, epochs, steps,
    seconds, images_per_second, stopped_early, device, folder``). Seeds are ``seed, seed + 1, ...,
    seed + seeds - 1``. Finished trainings with an unchanged configuration are skipped; interrupted ones resume.
    """

    ws = _workspace(ws)
    models = _check_models(models)
    seed_list = _seeds(seed, seeds)
    splits = load_splits(ws, dataset)
    for part in ("train", "val"):
        if not splits.get(part):
            raise ValueError(f"{ws.results(dataset) / 'splits.json'}: the {part!r} split is empty")
    tasks = [
        GridTask(f"{dataset} · {name} · seed {s}", train_task, (str(ws.root), dataset, name),
                 {"seed": s, "seed_index": index, "protocol": protocol, "num_threads": num_threads,
                  "device": device}, gpu=_wants_gpu(device))
        for index, s in enumerate(seed_list) for name in models
    ]  # fmt: skip
    rows = run_grid(tasks, scheduler=scheduler, name=f"train {dataset}", progress=progress)
    summary = pd.DataFrame([{k: v for k, v in row.items() if k != "up_to_date"} for row in rows])
    write_csv(summary, ws.results(dataset) / "training_summary.csv")
    return summary


def predict_task(workspace, dataset: str, model: str, *, seed: int, seed_index: int = 0,
                 min_component_voxels: int = 0, save_probabilities: bool = False, image_format: str = "png",
                 num_threads: int | None = None, device: str | None = None) -> list[dict]:
    """One unit of the prediction grid: predict every test case with one model and seed (see
    :func:`predict_all`) and return one row per case."""
    ws = _workspace(workspace)
    device = default_device() if device is None else device
    cases = _load_split_cases(ws, dataset, ("test",))["test"]
    root = predictions_root(ws, dataset, seed_index=seed_index, seed=seed)
    folder = model_folder(ws, dataset, model, seed_index=seed_index, seed=seed)
    rows = []
    with torch_settings(num_threads=num_threads, deterministic=True):
        net = load_best_model(folder).to(device)
        size = read_json(folder / CONFIG)["protocol"]["size"]
        multiple, min_size = _models.input_multiple(model, size), _models.min_input_size(model, size)
        for case in cases:
            stack = predict_stack(net, case.image, multiple=multiple, min_size=min_size, device=device,
                                  amp=device != "cpu")  # fmt: skip
            prob = np.asarray(restore(stack, case), dtype=np.float32)
            kind = getattr(case, "kind", "volume")
            if kind == "image" and prob.ndim == 3 and prob.shape[0] == 1:
                prob = prob[0]
            prob = np.clip(prob, 0.0, 1.0)
            mask = _predictions.postprocess(prob, threshold=0.5, min_component_voxels=min_component_voxels)
            path = _predictions.write_prediction(
                root, model, case.case_id, mask, kind=kind, affine=getattr(case, "affine", None),
                prob=prob if save_probabilities else None, image_format=image_format,
            )  # fmt: skip
            rows.append({"dataset": dataset, "model": model, "seed": seed, "case_id": case.case_id,
                         "path": path.relative_to(ws.root).as_posix(),
                         "predicted_voxels": int(mask.sum())})  # fmt: skip
    return rows


def predict_all(
    ws,
    dataset: str,
    *,
    models: Sequence[str] = _models.MODEL_NAMES,
    seed: int = 0,
    seeds: int = 1,
    min_component_voxels: int = 0,
    save_probabilities: bool = False,
    image_format: str = "png",
    num_threads: int | None = None,
    device: str | None = None,
    scheduler: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Predict every test case with each model's best checkpoint and write it in the dataset's own format.

    Each prepared test stack is predicted slice by slice (:func:`predict_stack`), mapped back to the original grid
    with ``helpers.data.preprocessing.restore``, then :func:`helpers.data.predictions.postprocess` applies the shared rule
    (threshold 0.5, remove components smaller than ``min_component_voxels`` original voxels) and
    :func:`helpers.data.predictions.write_prediction` writes it (NIfTI with the source affine for volumes;
    ``image_format`` for 2D images). The rule is recorded in ``results/<dataset>/inference.json``. Each (model,
    seed) is one grid task (:func:`predict_task`), in-process or on the Dask scheduler at ``scheduler``.

    Returns a table with one row per model, seed and case: ``dataset, model, seed, case_id, path,
    predicted_voxels``.
    """

    ws = _workspace(ws)
    models = _check_models(models)
    seed_list = _seeds(seed, seeds)
    if not load_splits(ws, dataset).get("test"):
        raise ValueError(f"{ws.results(dataset) / 'splits.json'}: the 'test' split is empty")
    tasks = [
        GridTask(f"{dataset} · predict {name} · seed {s}", predict_task, (str(ws.root), dataset, name),
                 {"seed": s, "seed_index": index, "min_component_voxels": min_component_voxels,
                  "save_probabilities": save_probabilities, "image_format": image_format,
                  "num_threads": num_threads, "device": device}, gpu=_wants_gpu(device))
        for index, s in enumerate(seed_list) for name in models
    ]  # fmt: skip
    # the predictions finish the training section: they overtake other datasets' queued training
    rows = [row for rows in run_grid(tasks, scheduler=scheduler, name=f"predict {dataset}", progress=progress,
                                     priority=grid_priority(finishing=True))
            for row in rows]
    write_json(
        {"threshold": 0.5, "threshold_rule": "prob >= 0.5", "min_component_voxels": int(min_component_voxels),
         "connectivity": "full (ndim)", "grid": "original", "models": models, "seeds": seed_list,
         "image_format": image_format, "probabilities": bool(save_probabilities)},
        ws.results(dataset) / "inference.json",
    )  # fmt: skip
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------- reading and plots


def load_histories(ws, dataset: str, *, models: Sequence[str] = _models.MODEL_NAMES, seed: int = 0, seeds: int = 1):
    """All ``history.csv`` of a dataset as one long table with ``model`` and ``seed`` columns (missing skipped)."""
    ws = _workspace(ws)
    frames = []
    for index, s in enumerate(_seeds(seed, seeds)):
        for name in _check_models(models):
            path = model_folder(ws, dataset, name, seed_index=index, seed=s) / HISTORY
            if path.exists():
                frame = pd.read_csv(path)
                frame.insert(0, "seed", s)
                frame.insert(0, "model", name)
                frames.append(frame)
    columns = ["model", "seed", "epoch", "step", "train_loss", "val_dice", "learning_rate", "seconds"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def plot_training_curves(history: pd.DataFrame, *, metric: str = "train_loss", ax=None):
    """One line per model (and seed) of ``metric`` (``train_loss`` or ``val_dice``) against the optimiser step."""

    if metric not in ("train_loss", "val_dice", "learning_rate"):
        raise ValueError(f"metric must be 'train_loss', 'val_dice' or 'learning_rate', got {metric!r}")
    missing = {"model", "seed", "step", metric} - set(history.columns)
    if missing:
        raise ValueError(f"history lacks columns {sorted(missing)}")
    fig, ax = get_axes(ax)
    for index, (model, frame) in enumerate(history.groupby("model", sort=False)):
        for j, (s, run) in enumerate(frame.groupby("seed")):
            ax.plot(run["step"], run[metric], marker="o", ms=3, color=model_color(model, index),
                    alpha=1.0 if j == 0 else 0.5, label=model if j == 0 else None)  # fmt: skip
    ax.set_xlabel("optimiser step")
    ax.set_ylabel({"train_loss": "training loss (Dice + CE)", "val_dice": "validation Dice",
                   "learning_rate": "learning rate"}[metric])  # fmt: skip
    if metric == "val_dice":
        ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    return ax


def plot_summary(summary: pd.DataFrame, *, column: str = "best_val_dice", ax=None):
    """Bar chart of one summary column (e.g. ``best_val_dice``, ``images_per_second``) per model, mean over seeds."""

    if column not in summary.columns:
        raise ValueError(f"summary has no column {column!r}")
    fig, ax = get_axes(ax)
    means = summary.groupby("model", sort=False)[column].mean()
    ax.bar(range(len(means)), means.to_numpy(), color=[model_color(m, i) for i, m in enumerate(means.index)])
    ax.set_xticks(range(len(means)), means.index, rotation=20)
    ax.set_ylabel(column.replace("_", " "))
    return ax


__all__ = [
    "TrainingProtocol", "TrainingResult", "TrainingState", "train_model", "train_all", "predict_all",
    "predict_stack", "validation_dice", "load_best_model", "load_histories", "model_folder", "predictions_root",
    "plot_training_curves", "plot_summary", "data_hash", "dataset_channels",
]
