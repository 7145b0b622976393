"""The one training protocol every model family of a dataset shares: its settings (:class:`TrainingProtocol`)
and the data it trains on (case checks, the data hash, lesion-uniform patch sampling, augmentation, the generators
of each step).

The loop that trains one model under it is :mod:`helpers.learning.training`; the train and predict grids are
:mod:`helpers.learning.grid`.

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
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

# first: models imports helpers.compute.runtime, which sets OMP_WAIT_POLICY before torch's first import
from helpers.learning import models as _models
import torch
from scipy import ndimage

__all__ = ["LOSSES", "TrainingProtocol", "rng", "check_cases", "data_hash", "Sampler", "augmentation", "augment"]

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


# --------------------------------------------------------------------------------------------- settings


def rng(seed: int, step: int, stream: int) -> np.random.Generator:
    """The generator of one step and stream, seeded with ``(seed, step, stream)`` (stream 1 samples, 2 augments)."""
    return np.random.default_rng([int(seed), int(step), int(stream)])


# --------------------------------------------------------------------------------------------- data


def check_cases(cases, what: str) -> list:
    """``cases`` as a list, checked: at least one, each with ``case_id``, a ``float32 (n, c, y, x)`` image, a
    ``bool (n, y, x)`` mask and ignore (or None), all with one channel count; errors name ``what``."""
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


class Sampler:
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


def augmentation(protocol: TrainingProtocol):
    """The augmentation family (module docstring): MONAI dictionary transforms of image, label and ignore."""
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


def augment(transform, seed: int, step: int, images, masks, ignores):
    """One batch through ``transform``, seeded from the generator of step ``step``: (images, masks, ignores) as
    tensors."""
    transform.set_random_state(seed=int(rng(seed, step, 2).integers(2**31 - 1)))
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
