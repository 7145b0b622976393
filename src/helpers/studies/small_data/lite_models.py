"""The small-data study's two LiteMedSAM models (``medsam``, ``medsam_unet``; registered in
:mod:`helpers.studies.small_data.models`) and the cache that makes their frozen parts affordable on a CPU.

Conventions
-----------
- Input ``(batch, 3, 256, 256)`` in ``[0, 1]``, min-max normalised per image (as LiteMedSAM was trained); output
  class logits ``(batch, n_classes, 256, 256)``.
- Frozen parts run once per distinct input image and process: an augmented image is a flip/rotation of a resized
  one, a bit-exact tensor, so the cache key (weights sha256, part, digest of the image's bytes) is exact. At
  most :data:`CACHE_ENTRIES` entries (9 images x 8 flips/rotations need 72 per part); CPU copies.
- Shared between the processes of a cluster: inside :func:`feature_folder_used` (which the grid tasks of the
  search and the cross-validation enter when they run on a cluster) a missing entry is read from, or computed
  and written to, a folder of the workspace (:func:`feature_folder`, ``cache/litemedsam``; one ``.pt`` file per
  key, written atomically; about 19 MB per image and flip/rotation, 1.4 GB for 9 images, removed by the
  cross-validation when it ends). :func:`feature_tasks` fills it first, each image's 8 flips/rotations one grid
  task, so every worker reads what one of them computed: in the default run each of the two workers otherwise
  computed all of them (about 4 s per image and part on one thread). An unreadable file is computed again.
- Frozen parts keep their published batch-norm statistics when the model is put in training mode.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from helpers.base.io import atomic_write
from helpers.base.paths import Workspace
from helpers.compute.cluster import GridTask, as_scheduler
from helpers.studies.small_data import data as sd
from helpers.studies.small_data.litemedsam import IMAGE_SIZE, LiteMedSam, load_litemedsam, unit_normalize

__all__ = ["LITE_MODELS", "CACHE_ENTRIES", "FEATURE_FOLDER", "clear_feature_cache", "cached", "encoder_features",
           "feature_folder", "shared_folder", "feature_folder_used", "feature_tasks", "remove_feature_folder",
           "fill_features", "PromptedLiteMedSam", "LiteMedSamUNet"]

#: The study's models built on LiteMedSAM (registered in :mod:`helpers.studies.small_data.models`).
LITE_MODELS: tuple[str, ...] = ("medsam", "medsam_unet")
_FEATURES: dict = {}
CACHE_ENTRIES = 512
#: The shared folder of the frozen parts' outputs, inside the workspace.
FEATURE_FOLDER = Path("cache") / "litemedsam"
_SHARED: list[Path | None] = [None]  # the folder this process reads and writes (feature_folder_used)


def feature_folder(ws) -> Path:
    """The workspace's folder of shared frozen-part outputs (:data:`FEATURE_FOLDER`)."""
    return Workspace.at(ws).root / FEATURE_FOLDER


def shared_folder(ws, scheduler) -> Path | None:
    """The folder a grid on ``scheduler`` shares the frozen parts through: the workspace's
    (:func:`feature_folder`) on a cluster, whose workers are separate processes; None in-process, where the
    memory cache is already shared."""
    return feature_folder(ws) if as_scheduler(scheduler) is not None else None


@contextmanager
def feature_folder_used(folder: str | os.PathLike | None):
    """Within the block, :func:`cached` shares its entries through ``folder`` (None: this process only)."""
    before = _SHARED[0]
    _SHARED[0] = None if folder is None else Path(folder)
    try:
        yield
    finally:
        _SHARED[0] = before


def remove_feature_folder(ws) -> None:
    """Delete the workspace's shared frozen-part outputs (a cache: recomputed when needed)."""
    shutil.rmtree(feature_folder(ws), ignore_errors=True)


def _shared_file(key) -> Path:
    sha, part, digest = key
    return _SHARED[0] / f"{sha[:16]}-{part}-{digest}.pt"


def _read_shared(key):
    path = _shared_file(key)
    if not path.is_file():
        return None
    try:
        return torch.load(path, weights_only=True)
    except Exception:  # an unreadable cache file (not written by this code): computed again and replaced
        return None


def clear_feature_cache() -> None:
    """Forget every cached frozen-part output."""
    _FEATURES.clear()


def cached(lite: LiteMedSam, x: torch.Tensor, part: str, compute) -> list[torch.Tensor]:
    """``compute(one image (1, ...)) -> list of tensors`` for each image of ``x``, run under ``no_grad`` once per
    distinct image (see the module docstring), concatenated over the batch."""
    out = []
    for image in x:
        key = (lite.sha256, part, hashlib.blake2b(image.detach().cpu().numpy().tobytes(), digest_size=16).hexdigest())
        if key not in _FEATURES:
            value = None if _SHARED[0] is None else _read_shared(key)
            if value is None:
                with torch.no_grad():
                    value = [t.cpu() for t in compute(image[None])]
                if _SHARED[0] is not None:
                    atomic_write(_shared_file(key), lambda p, v=value: torch.save(v, p))
            if len(_FEATURES) >= CACHE_ENTRIES:
                _FEATURES.pop(next(iter(_FEATURES)))
            _FEATURES[key] = value
        out.append(_FEATURES[key])
    return [torch.cat([o[k] for o in out]).to(x.device) for k in range(len(out[0]))]


def encoder_features(lite: LiteMedSam, x: torch.Tensor, *, frozen: bool) -> list[torch.Tensor]:
    """``[stage 0 (128 ch, 1/2), stage 1 (160 ch, 1/4), embedding (256 ch, 1/4)]`` of unit-normalised images.

    Cached (:func:`cached`) for a frozen encoder with the published weights; computed every time for a trainable
    one, one with other weights (``sha256`` None), or when input gradients are asked for (saliency)."""
    def run(images):
        f = lite.image_encoder.features(images)
        return [f[0], f[1], f[-1]]

    if not frozen or lite.sha256 is None or x.requires_grad:
        return run(x)
    return cached(lite, x, "encoder", run)


class _LiteBase(nn.Module):
    def __init__(self, lite: LiteMedSam, freeze_encoder: bool):
        super().__init__()
        self.lite, self.frozen = lite, bool(freeze_encoder)
        if self.frozen:
            for p in self.lite.image_encoder.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:  # batch norm of a frozen encoder keeps its published statistics
            self.lite.image_encoder.eval()
        return self

    @staticmethod
    def _check(x):
        if x.ndim != 4 or x.shape[1:] != (3, IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"x must be (batch, 3, {IMAGE_SIZE}, {IMAGE_SIZE}) for LiteMedSAM, got {tuple(x.shape)}")

    def _features(self, x):
        self._check(x)
        return encoder_features(self.lite, unit_normalize(x), frozen=self.frozen)


class PromptedLiteMedSam(_LiteBase):
    """LiteMedSAM fine-tuned under its own prompt (``medsam``).

    Prompt: the box of the whole image, fixed (LiteMedSAM was trained with box prompts), with the "no mask" dense
    embedding. The image encoder, the prompt and the decoder's two-way transformer are frozen, so their outputs are
    computed once per image (:func:`cached`); trained: the decoder's output upscaling and its mask hypernetworks.
    The decoder's three multimask outputs are the logits of the foreground classes and the background logit is 0
    (SAM's threshold), so one pass gives every class. Dropout on the transformer's image output. (The paper
    prompted with learnable tokens; training them would need the transformer's backward pass at every step, about
    four times the cost: see the chapter.)"""

    def __init__(self, lite: LiteMedSam, *, n_classes: int, dropout: float, freeze_encoder: bool = True):
        super().__init__(lite, True)
        if not freeze_encoder:
            raise ValueError("medsam keeps its encoder frozen (only the decoder's upscaling and mask heads train)")
        if not 2 <= n_classes <= 4:
            raise ValueError(f"medsam predicts background + up to 3 foreground classes, got n_classes={n_classes}")
        self.n_classes = n_classes
        decoder = lite.mask_decoder
        for module in (lite.prompt_encoder, lite.shared_image_embedding, decoder.transformer, decoder.iou_token,
                       decoder.mask_tokens, decoder.iou_prediction_head):  # (the quality head is not used)
            for p in module.parameters():
                p.requires_grad_(False)
        self.dropout = nn.Dropout2d(dropout)

    def _transformer(self, images):
        lite, decoder = self.lite, self.lite.mask_decoder
        emb = encoder_features(lite, images, frozen=True)[-1]
        box = torch.tensor([[[0.0, 0.0, IMAGE_SIZE - 1.0, IMAGE_SIZE - 1.0]]], device=emb.device)
        sparse, dense = lite.prompt_encoder(None, None, box, None)  # (1, 1, 2, 256), (1, 256, 64, 64)
        tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight])[None, None]
        tokens = torch.cat([tokens.expand(len(emb), -1, -1, -1), sparse.expand(len(emb), -1, -1, -1)], dim=2)
        points, image = decoder.transformer(point_embeddings=tokens, image_embeddings=emb + dense,
                                            image_positional_embeddings=lite.image_positional_embeddings(len(emb)),
                                            attention_similarity=None)
        return [points[:, 0, 1:1 + decoder.num_mask_tokens], image[:, 0]]  # (b, 4, 256), (b, 64*64, 256)

    def forward(self, x):
        self._check(x)
        xn = unit_normalize(x)
        mask_tokens, image = cached(self.lite, xn, "decoder", self._transformer) \
            if self.lite.sha256 is not None and not x.requires_grad else self._transformer(xn)
        decoder, side = self.lite.mask_decoder, int(image.shape[1] ** 0.5)
        emb = self.dropout(image.transpose(1, 2).reshape(len(x), -1, side, side))
        up = decoder.activation(decoder.upscale_layer_norm(decoder.upscale_conv1(emb)))
        up = decoder.activation(decoder.upscale_conv2(up))
        hyper = torch.stack([decoder.output_hypernetworks_mlps[i](mask_tokens[:, i]) for i in range(1, self.n_classes)],
                            dim=1)
        fg = (hyper @ up.flatten(2)).reshape(len(x), -1, *up.shape[-2:])
        return torch.cat([torch.zeros_like(fg[:, :1]), fg], dim=1)


class LiteMedSamUNet(_LiteBase):
    """LiteMedSAM's encoder under a U-Net-style decoder (``medsam_unet``): the embedding (1/4) and stage 1 (1/4)
    concatenated and fused to ``4w`` channels by a 1x1 MONAI ``UnetrBasicBlock``, then one ``UnetrUpBlock`` to 1/2
    and ``w`` channels with stage 0 (projected to ``w`` by a 1x1 ``UnetrBasicBlock``) as skip, dropout, a 1x1
    classifier, and the
    logits resized bilinearly from 1/2 (128 px) to the 256 px input. The decoder stops at 1/2 to keep its cost
    near the other models' (the default profile scores at 128 px). Encoder frozen by default."""

    def __init__(self, lite: LiteMedSam, *, n_classes: int, width: int, dropout: float, freeze_encoder: bool = True):
        super().__init__(lite, freeze_encoder)
        from monai.networks.blocks import UnetrBasicBlock, UnetrUpBlock

        w, kw = width, dict(spatial_dims=2, norm_name="batch", res_block=True)
        self.skip2 = UnetrBasicBlock(in_channels=128, out_channels=w, kernel_size=1, stride=1, **kw)
        self.fuse4 = UnetrBasicBlock(in_channels=256 + 160, out_channels=4 * w, kernel_size=1, stride=1, **kw)
        self.up2 = UnetrUpBlock(in_channels=4 * w, out_channels=w, kernel_size=3, upsample_kernel_size=2, **kw)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(w, n_classes, 1)

    def forward(self, x):
        s0, s1, emb = self._features(x)
        d = self.up2(self.fuse4(self.dropout(torch.cat([emb, s1], dim=1))), self.skip2(s0))
        return F.interpolate(self.classifier(self.dropout(d)), size=x.shape[-2:], mode="bilinear",
                             align_corners=False)


def fill_features(images: torch.Tensor, *, models: Sequence[str], folder: str | os.PathLike,
                  draws: Sequence = sd.DIHEDRAL) -> int:
    """Compute the frozen parts that ``models`` (``medsam``, ``medsam_unet``) read, for every flip/rotation of
    each image of ``images`` (``(b, 3, 256, 256)``, as the study resizes them) that the training augmentation
    draws (``draws``: :data:`helpers.studies.small_data.data.DIHEDRAL`), into ``folder``; entries already there
    are kept. A grid task (:func:`feature_tasks`). Returns the number of distinct images handled (8 per input
    image)."""
    unknown = set(models) - set(LITE_MODELS)
    if unknown:
        raise ValueError(f"fill_features: no frozen parts are cached for {sorted(unknown)}")
    lite = load_litemedsam()
    prompted = PromptedLiteMedSam(lite, n_classes=4, dropout=0.0).eval() if "medsam" in models else None
    seen = set()
    with feature_folder_used(folder), torch.no_grad():
        for image in images:
            for flips, k in draws:
                x = sd.dihedral(image[None], flips=flips, k=k)
                seen.add(hashlib.blake2b(x.numpy().tobytes(), digest_size=16).hexdigest())
                if prompted is not None:
                    prompted(x)  # the encoder's and the decoder transformer's outputs
                else:
                    encoder_features(lite, unit_normalize(x), frozen=True)
    return len(seen)


def feature_tasks(cases: Sequence, *, models: Sequence[str], folder) -> list[GridTask]:
    """One grid task per case (labelled ``litemedsam features · <case id>``) filling ``folder`` for the LiteMedSAM
    models among ``models`` (those that can run), from the cases resized as the study feeds them
    (:func:`helpers.studies.small_data.data.stack_cases`); none when ``folder`` is None or no such model runs."""
    lite_models = [m for m in models if m in LITE_MODELS]
    if folder is None or not lite_models:
        return []
    images = sd.stack_cases(list(cases), IMAGE_SIZE)[0]
    return [GridTask(f"litemedsam features · {c.case_id}", fill_features, (images[k:k + 1].clone(),),
                     {"models": lite_models, "folder": str(folder)}) for k, c in enumerate(cases)]
