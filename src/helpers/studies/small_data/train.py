"""Loss, training and prediction of the small-data study (its search: ``helpers.studies.small_data.hpo``; its
cross-validation: ``helpers.studies.small_data.cv``; its explanations: ``helpers.studies.small_data.explain``).

Conventions
-----------
- Tensors are ``(batch, channel, y, x)``; numpy images ``(y, x, 3)``, label maps ``(y, x)``; lengths in pixels.
- Loss (the same for every model): the study's composite focal + Dice loss on softmax probabilities with
  one-hot targets, background included in both terms, ``lambda_focal = 1``; the Dice weight ``lambda_dice`` and
  the focal ``gamma`` are tuned (:func:`focal_dice_loss`).
- Training: Adam, a fixed number of epochs, mini-batches shuffled by a seeded generator, augmentation by random
  flips and 90-degree rotations (label-preserving for a cross-section). Weights, shuffling, augmentation and
  dropout are all drawn from ``seed``; torch threads come from ``helpers.compute.runtime``.
- Scoring happens at the resolution of the stored reference mask: class probabilities predicted at the model's
  input resolution are resized bilinearly to the reference size, then ``argmax``.
- Uncertainty: Monte Carlo dropout (dropout layers active, batch norm in inference mode) with ``passes``
  stochastic forward passes; predictive entropy of the mean probabilities (natural log) and mutual information.
- Empty-class policy of the scores: as :func:`helpers.studies.small_data.data.multiclass_scores`
  (``helpers.metrics``' Dice).
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from helpers.studies.small_data import data as sd
from helpers.studies.small_data.data import stack_cases  # the study's tensors (defined with the resizing)
from helpers.studies.small_data import models as sm
from helpers.compute.runtime import check_device, torch_settings

__all__ = [
    "DEFAULT_PARAMS", "stack_cases", "FocalDiceLoss", "focal_dice_loss", "softmax_focal", "check_params", "train_model",
    "model_device", "predict_proba", "mc_dropout_predict", "to_reference_size", "fold_scores", "DATASET",
]

# (optuna, transformers and MONAI import ``tqdm.auto``; its "IProgress not found" warning is filtered once, in
# ``helpers/__init__.py``; the package's own bars use plain tqdm through ``helpers.base.progress``.)

DEFAULT_PARAMS: dict[str, float] = {"lr": 3e-3, "weight_decay": 1e-5, "dropout": 0.1, "gamma": 2.0, "lambda_dice": 1.0}


# --------------------------------------------------------------------------------------------------------------
# Tensors, loss, training
# --------------------------------------------------------------------------------------------------------------


class FocalDiceLoss(torch.nn.Module):
    """``lambda_dice * Dice + lambda_focal * Focal`` on softmax probabilities (see :func:`focal_dice_loss`)."""

    def __init__(self, *, gamma: float, lambda_dice: float, lambda_focal: float):
        super().__init__()
        from monai.losses import DiceLoss

        self.dice = DiceLoss(softmax=True, to_onehot_y=True, include_background=True)
        self.gamma, self.lambda_dice, self.lambda_focal = gamma, lambda_dice, lambda_focal

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (self.lambda_dice * self.dice(logits, target)
                + self.lambda_focal * softmax_focal(logits, target, gamma=self.gamma))


def softmax_focal(logits: torch.Tensor, target: torch.Tensor, *, gamma: float) -> torch.Tensor:
    """The multi-class focal loss ``-(1 - p_t)^gamma log p_t`` at each pixel's true class, summed and divided by
    ``batch x class x pixel`` elements (MONAI ``FocalLoss(use_softmax=True, include_background=True)``'s value).

    Unlike MONAI 1.6's ``softmax_focal_loss``, its gradient stays finite where a probability rounds to exactly 1:
    for ``0 < gamma < 1`` the modulating factor's derivative ``gamma (1 - p)^(gamma - 1)`` is infinite at ``p = 1``,
    so MONAI's backward pass gives NaN once a model is confident (in float32 a softmax reaches 1.0 from a logit gap
    of about 17), and every later step is NaN. Here ``1 - p_t`` is ``-expm1(log p_t)``, floored at the dtype's
    machine epsilon before the power (the floor passes no gradient; the loss value differs by less than
    ``eps^gamma log p_t``, about 1e-7 at p_t = 1 - eps)."""
    log_pt = logits.log_softmax(1).gather(1, target.long())
    modulator = (-torch.expm1(log_pt)).clamp_min(torch.finfo(logits.dtype).eps).pow(gamma)
    return -(modulator * log_pt).sum() / logits.numel()


def focal_dice_loss(*, gamma: float = 2.0, lambda_dice: float = 1.0, lambda_focal: float = 1.0) -> FocalDiceLoss:
    """The composite focal + Dice loss of the study, for logits ``(batch, c, y, x)`` and labels ``(batch, 1, y, x)``.

    - Dice: MONAI ``DiceLoss`` on softmax probabilities and one-hot targets, ``1 - (2 sum p t + 1e-5) /
      (sum p + sum t + 1e-5)`` per image and class, averaged over classes (background included) and batch.
    - Focal: :func:`softmax_focal`, ``-(1 - p_t)^gamma log p_t`` at the true class, averaged over all
      ``batch x class x pixel`` elements (so a per-pixel mean divided by ``c``): MONAI ``FocalLoss(use_softmax=True)``'s
      value, with a gradient that stays finite for ``gamma < 1`` (MONAI's is NaN once a probability reaches 1).

    MONAI's own ``DiceFocalLoss`` is not used: in MONAI 1.6 its focal term is the *sigmoid* (one-vs-rest) focal
    loss even with ``softmax=True``, which is not the multi-class focal loss.
    """
    if gamma < 0 or lambda_dice < 0 or lambda_focal < 0:
        raise ValueError(
            f"gamma, lambda_dice and lambda_focal must be >= 0, got {gamma}, {lambda_dice}, {lambda_focal}")
    return FocalDiceLoss(gamma=gamma, lambda_dice=lambda_dice, lambda_focal=lambda_focal)


def _augment(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator):
    """Random horizontal flip, vertical flip and 90-degree rotation, one draw per batch."""
    flips = tuple(bool(f) for f in torch.randint(0, 2, (2,), generator=generator).tolist())
    k = int(torch.randint(0, 4, (1,), generator=generator))
    return sd.dihedral(x, flips=flips, k=k), sd.dihedral(y, flips=flips, k=k)


def check_params(params: dict) -> dict:
    """``params`` completed with :data:`DEFAULT_PARAMS`; unknown keys are an error naming them."""
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
        One of :data:`helpers.studies.small_data.models.MODELS`.
    x, y : torch.Tensor
        Images ``(n, 3, s, s)`` in ``[0, 1]`` and labels ``(n, s, s)``.
    params : dict
        Hyper-parameters (keys of :data:`DEFAULT_PARAMS`; missing keys take the defaults).
    epochs, batch_size, width : int
        Passes over the training images, images per step, base channel width.
    seed : int
        Seed of initialisation, shuffling, augmentation and dropout.
    threads : int or None
        Torch intra-op threads while training (restored afterwards); None: :func:`helpers.compute.runtime.task_threads`.
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
    params = check_params(params or {})
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if x.ndim != 4 or y.ndim != 3 or x.shape[0] != y.shape[0] or x.shape[-2:] != y.shape[-2:]:
        raise ValueError(f"x (n, 3, s, s) and y (n, s, s) do not match: {tuple(x.shape)}, {tuple(y.shape)}")
    n_classes = 4 if int(y.max()) < 4 else int(y.max()) + 1
    device = check_device(device)
    model = sm.build_model(name, n_classes=n_classes, width=width, dropout=params["dropout"], seed=seed,
                           checkpoint=checkpoint).to(device)
    loss_fn = focal_dice_loss(gamma=params["gamma"], lambda_dice=params["lambda_dice"])
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=params["lr"], weight_decay=params["weight_decay"])
    generator = torch.Generator().manual_seed(int(seed))
    history = []
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]), torch_settings(num_threads=threads, deterministic=None):
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


def model_device(model) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def _has_batchnorm(model) -> bool:
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def predict_proba(model, x: torch.Tensor, *, batch_size: int = 4) -> np.ndarray:
    """Softmax class probabilities ``(n, c, s, s)`` in eval mode (dropout off)."""
    model.eval()
    device = model_device(model)
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
    device = model_device(model)
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


def fold_scores(scores: pd.DataFrame, *, metric: str = "dice") -> pd.DataFrame:
    """Macro score per ``protocol, seed, model, fold``: the mean over the fold's test images (``n`` images;
    NaN rows of models that did not run stay NaN)."""
    macro = scores[scores["class"] == "macro"]
    return (macro.groupby(["protocol", "seed", "model", "fold"], as_index=False)
            .agg(value=(metric, "mean"), n=(metric, "count")))


# --------------------------------------------------------------------------------------------------------------
# Study steps (one per notebook cell) and their figures
# --------------------------------------------------------------------------------------------------------------

DATASET = sd.DATASET


