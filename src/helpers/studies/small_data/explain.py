"""Explanations of the small-data study's predictions: error maps and their location, uncertainty against
error, wall morphology, gradient saliency and attention maps, and the figures built from them.

Conventions
-----------
- Label maps ``(y, x)`` of the study's classes (``helpers.studies.small_data.data.CLASSES``); lengths and areas in
  pixels.
- Uncertainty maps are Monte Carlo dropout entropies (``helpers.studies.small_data.train.mc_dropout_predict``) kept by
  the cross-validation (:class:`helpers.studies.small_data.cv.CVResult`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from scipy.stats import rankdata
from skimage.measure import perimeter_crofton
from torch.nn import functional as F

from helpers.studies.small_data import data as sd
from helpers.studies.small_data import models as sm
from helpers.studies.small_data.cv import CVResult
from helpers.studies.small_data.train import model_device, stack_cases
from helpers.report.evidence_figures import add_class_key
from helpers.base.plots import pyplot

__all__ = [
    "error_map", "error_location", "uncertainty_error_auc", "mean_thickness", "WALL_PARTS", "morphology",
    "gradient_saliency", "attention_map", "uncertainty_table", "morphology_table", "best_worst_folds",
    "plot_visual_paradox", "plot_explanations",
]


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
    x = x.detach().to(model_device(model)).clone().requires_grad_(True)
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
    layers (keys on the spatially reduced grid). SAM (ViT-B):
    the global-attention layers of the ViT image encoder (windowed layers are skipped); LiteMedSAM's TinyViT has
    windowed attention only and is refused.

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
    x = x.to(model_device(model))
    with torch.no_grad():
        if isinstance(model, sm.SegFormer):
            _, attentions = model(x, output_attentions=True)
            for a in attentions:  # (1, heads, queries, keys)
                add(a[0].mean(0).mean(0))
        elif isinstance(model, sm.PromptedSam):
            encoder = model.sam.vision_encoder
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


def uncertainty_table(cases, result: CVResult) -> pd.DataFrame:
    """How Monte Carlo uncertainty relates to errors, per ``protocol, seed, model, image``: the AUROC of the
    entropy as a detector of wrong pixels and the mean entropy on wrong and right pixels
    (:func:`uncertainty_error_auc`). A map with non-finite values (a model whose training diverged) gets NaN and
    its count of non-finite pixels with a note, instead of stopping the chapter."""
    by_id = {c.case_id: c for c in cases}
    rows = []
    for (protocol, seed, model, image), entropy in result.uncertainty.items():
        errors = by_id[image].mask != result.predictions[(protocol, seed, model, image)]
        entropy = np.asarray(entropy, dtype=float)
        bad = int((~np.isfinite(entropy)).sum())
        if bad:  # a model whose outputs are not finite (its training diverged): counted, never scored
            rows.append({"protocol": protocol, "seed": seed, "model": model, "image": image, "auroc": np.nan,
                         "mean_uncertainty_error": np.nan, "mean_uncertainty_correct": np.nan,
                         "n_error": int(errors.sum()), "n_correct": int((~errors).sum()), "non_finite_pixels": bad,
                         "note": "model output not finite (training diverged): uncertainty undefined"})
            continue
        rows.append({"protocol": protocol, "seed": seed, "model": model, "image": image,
                     **uncertainty_error_auc(entropy, errors), "non_finite_pixels": 0, "note": ""})
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
    plt = pyplot()  # matplotlib with the package style (helpers.base.plots)

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
    add_class_key(fig, dict(zip(sd.CLASSES, map(tuple, _CLASS_COLORS))))
    return fig


def plot_explanations(cases, result: CVResult, *, model: str, protocol: str, seed: int, image: str, size: int):
    """The study's five views for one model and one test image: error map, uncertainty map (MC-dropout
    entropy), morphology agreement (areas and thicknesses, reference vs prediction), attention map (transformers
    only; a note otherwise) and gradient saliency for the neointima. Returns the figure."""
    plt = pyplot()  # matplotlib with the package style (helpers.base.plots)

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
