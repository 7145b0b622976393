"""The study's four model families, configured in one place.

Conventions
-----------
- All models are 2D (``spatial_dims=2``): volumes are trained and predicted as stacks of axial slices, so a
  network input is a tensor ``(batch, channels, y, x)`` and its output ``(batch, out_channels, y, x)`` holds
  *logits* (no activation; the training loss and inference apply the sigmoid).
- One binary target (the lesion mask), so ``out_channels=1`` by default.
- Size constraints live here and only here: :func:`input_multiple` says by which number the spatial size of
  an input must be divisible, and :func:`pad_to_multiple` / :func:`crop_to_shape` pad and crop to it. Padding is
  by zeros (the background value after z-scoring), always at the end of each axis, so that cropping back is
  ``[:y, :x]``.

Families (MONAI 1.6 classes)
----------------------------
``unet``
    :class:`monai.networks.nets.UNet` with ``num_res_units=0``: one convolution (conv, batch norm, PReLU) per
    encoder level, strided convolutions for down-sampling, transposed convolutions for up-sampling. Its first level
    has stride 1 (:func:`unet_levels`), so that its feature maps have the attention U-Net's resolutions and
    widths, full resolution first.
``resunet``
    The same :class:`~monai.networks.nets.UNet` with ``num_res_units=2``: every level is a residual unit of two
    convolutions with an identity (or 1x1) skip path. Same levels as ``unet``.
``attention_unet``
    :class:`monai.networks.nets.AttentionUnet`: a U-Net of two-convolution blocks whose skip connections pass
    through additive attention gates (Oktay et al. 2018). The size's ``channels`` and ``strides`` (a stride-1 block
    first), hence the same feature-map resolutions and widths as ``unet``.
``hybrid_transformer``
    :class:`monai.networks.nets.SwinUNETR` (``spatial_dims=2``): a Swin-Transformer encoder (shifted-window
    self-attention, patch size 2, four stages with patch merging) and a convolutional U-Net decoder (Hatamizadeh
    et al. 2022); its convolutional blocks use batch normalisation like the other families (:data:`NORM`). UNETR
    was not chosen: its plain ViT encoder needs a fixed image size and a 16-pixel patch,
    which leaves too few tokens at the study's small 2D sizes; SwinUNETR accepts any size divisible by 32.

Each family is one :class:`ModelFamily` entry of :data:`REGISTRY` (label, implementing class, description,
constructor); a new family is one entry there plus its keyword arguments in :func:`model_kwargs` and its input rule
in :func:`input_multiple`. The small-data study's architectures use the same record
(``helpers.studies.small_data.models``).

Sizes are named (``"smoke"``, ``"default"``, ``"paper"``); :data:`SIZES` lists their widths. Parameter counts
differ between families by design: the budget that is matched is the training protocol (steps, optimiser,
schedule, data), not the number of weights, as in the study this project reproduces. At the ``default`` and
``paper`` sizes the largest family has less than ten times the parameters of the smallest (default, 2 input
channels: U-Net 440k, Attention U-Net 494k, Residual U-Net 930k, SwinUNETR 1.43M; paper: 6.3M to 14.9M), so no
family wins by capacity alone. The ``smoke`` size is a pipeline check, not a comparison: its U-Net (27k) is about
50 times smaller than the smallest SwinUNETR MONAI builds (feature size 12, depth 1: 1.43M).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

# noqa: importing runtime sets OMP_WAIT_POLICY before torch's first import (see helpers.compute.runtime)
from helpers.compute import runtime  # noqa: F401
import torch
from monai.networks.nets import AttentionUnet, SwinUNETR, UNet
from torch import nn

__all__ = [
    "MODEL_NAMES", "NORM", "SIZES", "ModelFamily", "REGISTRY", "check_model_name", "check_size", "model_kwargs",
    "unet_levels", "WithOutputBias", "build_model", "count_parameters", "input_multiple", "min_input_size",
    "pad_to_multiple", "crop_to_shape", "forward_padded", "describe_models", "MEMORY_FORMAT", "as_input",
]

MODEL_NAMES = ("unet", "resunet", "attention_unet", "hybrid_transformer")

#: Memory layout of every built model's weights and of the batches it is given (:func:`as_input`): channels-last
#: (NHWC). On the 2-core CPU, one thread, a training step took 8-25 % less time than in torch's default NCHW layout
#: for every family (batch 8, 64 and 96 px patches; e.g. Residual U-Net 0.35 -> 0.30 s, U-Net 0.18 -> 0.14 s at
#: 96 px), because oneDNN's convolution kernels work in NHWC and NCHW tensors are reordered at every layer. The
#: values are the same weights and images; only the kernels' summation order differs, as between processors.
MEMORY_FORMAT = torch.channels_last

#: The normalisation layer of every family's convolutional blocks: batch normalisation, which MONAI's
#: ``AttentionUnet`` hard-codes in its blocks and attention gates (only the merge convolution of each of its decoder
#: levels keeps MONAI's default instance norm; it is left as MONAI builds it); ``UNet`` and SwinUNETR's convolutional
#: decoder (both instance by default) are set to it. Instance normalisation re-scales every patch's feature maps on
#: their own; trained alike (IDRiD stand-ins, default size, 400 steps), the U-Net's best validation Dice was 0.837
#: with instance and 0.938 with batch normalisation.
NORM = "batch"

#: Widths per named size. ``channels``/``strides`` are shared by the three convolutional families;
#: ``swin_*`` configure the hybrid. A U-Net with ``len(strides)`` down-samplings needs inputs divisible by
#: ``2 ** len(strides)``; SwinUNETR always needs 32 (patch 2, then four 2x patch mergings).
SIZES: dict[str, dict] = {
    "smoke": {
        "channels": (8, 16, 32),
        "strides": (2, 2),
        "swin_feature_size": 12,
        "swin_depths": (1, 1, 1, 1),
        "swin_num_heads": (3, 3, 3, 3),
    },
    "default": {
        "channels": (16, 32, 64, 128),
        "strides": (2, 2, 2),
        "swin_feature_size": 12,
        "swin_depths": (1, 1, 1, 1),
        "swin_num_heads": (3, 3, 6, 6),
    },
    "paper": {
        "channels": (32, 64, 128, 256, 512),
        "strides": (2, 2, 2, 2),
        "swin_feature_size": 24,
        "swin_depths": (2, 2, 2, 2),
        "swin_num_heads": (3, 6, 12, 24),
    },
}


@dataclass(frozen=True)
class ModelFamily:
    """One model family: its display label, the class that implements it, a one-line description and its
    constructor (``build(**kwargs) -> torch.nn.Module``).

    The same record describes the families of both studies: :data:`REGISTRY` here (the lesion study's binary
    segmenters) and ``helpers.studies.small_data.models.REGISTRY`` (the small-data study's multi-class segmenters)."""

    name: str
    label: str
    monai_class: str
    description: str
    build: Callable[..., nn.Module] | None = field(default=None, repr=False, compare=False)

    def describe(self) -> dict:
        """The descriptive fields (what ``config.json`` and the model tables record), without the constructor."""
        return {"name": self.name, "label": self.label, "monai_class": self.monai_class,
                "description": self.description}  # fmt: skip


#: The registry of the four families (the single place where they are described and built).
REGISTRY: dict[str, ModelFamily] = {
    "unet": ModelFamily("unet", "U-Net", "monai.networks.nets.UNet",
                        "UNet, num_res_units=0, first stride 1, batch norm", UNet),
    "resunet": ModelFamily("resunet", "Residual U-Net", "monai.networks.nets.UNet",
                           "UNet, num_res_units=2, first stride 1, batch norm", UNet),
    "attention_unet": ModelFamily(
        "attention_unet", "Attention U-Net", "monai.networks.nets.AttentionUnet", "attention-gated skips",
        AttentionUnet,
    ),
    "hybrid_transformer": ModelFamily(
        "hybrid_transformer", "SwinUNETR (2D)", "monai.networks.nets.SwinUNETR", "Swin encoder, CNN decoder",
        SwinUNETR,
    ),
}


def check_model_name(name) -> str:
    """``name`` when it names a family of :data:`REGISTRY`, else a ``ValueError`` listing them."""
    if not isinstance(name, str) or name not in REGISTRY:
        raise ValueError(f"model name must be one of {list(MODEL_NAMES)}, got {name!r}")
    return name


def check_size(size) -> dict:
    """The widths of the named ``size`` (:data:`SIZES`), else a ``ValueError`` listing the sizes."""
    if not isinstance(size, str) or size not in SIZES:
        raise ValueError(f"size must be one of {list(SIZES)}, got {size!r}")
    return SIZES[size]


def model_kwargs(name: str, *, in_channels: int, out_channels: int = 1, size: str = "smoke") -> dict:
    """The keyword arguments passed to the MONAI class of ``name`` at ``size`` (saved in config.json)."""
    check_model_name(name)
    widths = check_size(size)
    for arg, value in (("in_channels", in_channels), ("out_channels", out_channels)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{arg} must be a positive integer, got {value!r}")
    common = {"spatial_dims": 2, "in_channels": int(in_channels), "out_channels": int(out_channels)}
    if name in ("unet", "resunet"):
        channels, strides = unet_levels(size)
        return {
            **common,
            "channels": channels,
            "strides": strides,
            "num_res_units": 0 if name == "unet" else 2,
            "norm": NORM,
        }
    if name == "attention_unet":
        return {**common, "channels": widths["channels"], "strides": widths["strides"]}
    return {
        **common,
        "feature_size": widths["swin_feature_size"],
        "depths": widths["swin_depths"],
        "num_heads": widths["swin_num_heads"],
        "patch_size": 2,
        "window_size": 7,
        "norm_name": NORM,
    }


def unet_levels(size: str = "smoke") -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``channels`` and ``strides`` of MONAI's ``UNet`` for the ``unet`` and ``resunet`` families at ``size``: the
    size's widths with a first level of stride 1 and the deepest width repeated at the bottom.

    MONAI's ``UNet`` applies ``strides[i]`` in the convolution that produces ``channels[i]``, so with the size's
    ``channels`` and ``strides`` taken as they are its first feature map would already be at half resolution and
    no full-resolution features would reach the output; ``AttentionUnet`` instead begins with a stride-1 block.
    With ``channels + (channels[-1],)`` and ``(1,) + strides`` the U-Nets have the attention U-Net's feature maps:
    ``channels[k]`` at ``1 / 2**k`` of the input, full resolution first (default size: 16 at 1, 32 at 1/2, 64 at
    1/4, 128 at 1/8). A lesion of a few voxels is then seen at its own resolution by all three convolutional
    families."""
    widths = check_size(size)
    channels, strides = tuple(widths["channels"]), tuple(widths["strides"])
    return channels + (channels[-1],), (1,) + strides


class WithOutputBias(nn.Module):
    """A network followed by one learnable scalar added to its logits, initialised to ``log(p / (1 - p))`` so
    that an untrained model predicts the foreground probability ``p`` everywhere (the prior initialisation of
    Lin et al. 2017, *Focal loss for dense object detection*). Lesions occupy well under 1 % of an image; without
    it an untrained network predicts about half of every image as lesion, and a short budget ends there."""

    def __init__(self, network: nn.Module, foreground_prior: float):
        super().__init__()
        self.network = network
        self.bias = nn.Parameter(torch.tensor(float(np.log(foreground_prior / (1.0 - foreground_prior)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x) + self.bias


def build_model(
    name: str,
    *,
    in_channels: int,
    out_channels: int = 1,
    size: str = "smoke",
    spatial_dims: int = 2,
    foreground_prior: float | None = 0.01,
) -> nn.Module:
    """Build one model family with freshly initialised weights.

    Parameters
    ----------
    name : {"unet", "resunet", "attention_unet", "hybrid_transformer"}
        The family (see the module docstring for the MONAI class and configuration of each).
    in_channels : int
        Image channels (1 for FLAIR or CT, 3 for RGB fundus).
    out_channels : int, default 1
        Output channels; one logit map for a binary lesion mask.
    size : {"smoke", "default", "paper"}
        Named width (see :data:`SIZES`).
    spatial_dims : int, default 2
        Only 2 is supported: the study trains on 2D slices.
    foreground_prior : float in (0, 1) or None, default 0.01
        Wrap the network in :class:`WithOutputBias` so that its initial foreground probability is this value
        (the same for every family); None returns the bare MONAI network.

    Returns
    -------
    torch.nn.Module
        In the memory layout :data:`MEMORY_FORMAT` (give it batches through :func:`as_input`). Its initial weights
        come from torch's global generator: seed it (``torch.manual_seed``) first to make
        them reproducible (:func:`helpers.learning.training.train_model` does).
    """
    if spatial_dims != 2:
        raise ValueError(f"spatial_dims must be 2 (the study trains on 2D slices), got {spatial_dims!r}")
    if foreground_prior is not None and not (isinstance(foreground_prior, (int, float)) and 0 < foreground_prior < 1):
        raise ValueError(f"foreground_prior must lie in (0, 1) or be None, got {foreground_prior!r}")
    kwargs = model_kwargs(name, in_channels=in_channels, out_channels=out_channels, size=size)
    network = REGISTRY[name].build(**kwargs)
    model = network if foreground_prior is None else WithOutputBias(network, foreground_prior)
    return model.to(memory_format=MEMORY_FORMAT)


def as_input(x: torch.Tensor) -> torch.Tensor:
    """``x`` (a batch ``(n, channels, y, x)``) in the models' memory layout, :data:`MEMORY_FORMAT`."""
    return x.contiguous(memory_format=MEMORY_FORMAT)


def count_parameters(model: nn.Module, *, trainable_only: bool = True) -> int:
    """Number of (trainable, by default) scalar parameters of ``model``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only))


def input_multiple(name: str, size: str = "smoke") -> int:
    """The number the height and width of an input to ``name`` must be divisible by.

    U-Nets: ``2 ** len(strides)`` (every stride-2 level halves the size, and the decoder must restore it
    exactly). SwinUNETR: 32 (patch embedding of 2, then four patch mergings of 2; its decoder needs each stage
    to halve exactly).
    """
    check_model_name(name)
    widths = check_size(size)
    if name == "hybrid_transformer":
        return 32
    return int(np.prod(widths["strides"]))


def min_input_size(name: str, size: str = "smoke") -> int:
    """The smallest height and width ``name`` accepts in training mode: ``2 * input_multiple(name, size)``.

    The deepest feature map is the input divided by :func:`input_multiple`, and normalisation in training
    (instance norm, and batch norm on a batch of one) needs more than one element per channel, so the deepest map
    must be at least 2 x 2 (SwinUNETR: 64).
    """
    return 2 * input_multiple(name, size)


def pad_to_multiple(x: torch.Tensor, multiple: int, *, min_size: int = 0) -> torch.Tensor:
    """Zero-pad the last two axes of ``x`` at their end up to the next multiple of ``multiple`` (and at least
    ``min_size``, rounded up to the multiple).

    Zero is the background value of z-scored images; the padded border is cropped away again with
    :func:`crop_to_shape`, so it never reaches a prediction.
    """
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise ValueError(f"x must be a tensor with at least 2 axes, got {type(x).__name__}")
    if isinstance(multiple, bool) or not isinstance(multiple, (int, np.integer)) or multiple < 1:
        raise ValueError(f"multiple must be a positive integer, got {multiple!r}")
    h, w = x.shape[-2:]
    pad_h, pad_w = (-(-max(n, min_size) // multiple) * multiple - n for n in (h, w))
    if pad_h == 0 and pad_w == 0:
        return x
    return torch.nn.functional.pad(x, (0, pad_w, 0, pad_h))


def crop_to_shape(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple`: keep ``[..., :shape[0], :shape[1]]``."""
    return x[..., : shape[0], : shape[1]]


def forward_padded(model: nn.Module, x: torch.Tensor, multiple: int, *, min_size: int = 0) -> torch.Tensor:
    """Run ``model`` on ``x`` padded to ``multiple`` (and ``min_size``) and crop the logits back to ``x``'s size."""
    return crop_to_shape(model(as_input(pad_to_multiple(x, multiple, min_size=min_size))), tuple(x.shape[-2:]))


def describe_models(*, in_channels: int, size: str = "smoke", names=MODEL_NAMES):
    """One row per family: ``model, label, monai_class, configuration, params, input_multiple``.

    ``params`` counts the trainable parameters of a freshly built model with ``in_channels`` input channels.
    """
    import pandas as pd

    rows = []
    for name in names:
        family = REGISTRY[check_model_name(name)]
        rows.append(
            {
                "model": name,
                "label": family.label,
                "monai_class": family.monai_class,
                "configuration": family.description,
                "params": count_parameters(build_model(name, in_channels=in_channels, size=size)),
                "input_multiple": input_multiple(name, size),
            }
        )
    return pd.DataFrame(rows)
