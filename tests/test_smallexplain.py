"""Tests of helpers.studies.small_data.explain: error maps, uncertainty, morphology, saliency, attention and their
figures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from helpers.studies.small_data import explain as smallexplain
from helpers.studies.small_data import data as sd
from helpers.studies.small_data import models as sm


def test_best_worst_folds_hand(macro_scores):
    scores = macro_scores({("loocv", "a"): [0.5, 0.9, 0.2, 0.7]})
    out = smallexplain.best_worst_folds(scores, model="a", protocol="loocv", seed=0)
    assert (out["best"], out["worst"]) == (1, 2)
    assert out["best_images"] == ["v1"] and out["worst_dice"] == 0.2
    with pytest.raises(ValueError, match="no scores for model 'b'"):
        smallexplain.best_worst_folds(scores, model="b", protocol="loocv", seed=0)


def test_error_map_hand():
    ref = np.array([[0, 1, 2]])
    pred = np.array([[0, 1, 3]])
    assert smallexplain.error_map(ref, pred).tolist() == [[0, 1, 2]]


def test_error_location_hand():
    # 10 x 10, ref: label 0 in columns 0-4, 1 in columns 5-9.
    ref = np.zeros((10, 10), int)
    ref[:, 5:] = 1
    pred = ref.copy()
    pred[:, 5] = 0  # 10 errors: label 0 occurs 1 px away (column 4): boundary shifts
    pred[0, 9] = 0  # 1 error: the nearest label-0 pixel is column 4, 5 px away: gross at 2 px, shift at 5 px
    out = smallexplain.error_location(ref, pred, tolerance_px=2)
    assert (out["n_error"], out["n_boundary"], out["n_gross"]) == (11, 10, 1)
    assert out["boundary_fraction"] == pytest.approx(10 / 11)
    assert smallexplain.error_location(ref, pred, tolerance_px=5)["boundary_fraction"] == 1.0
    assert math.isnan(smallexplain.error_location(ref, ref)["boundary_fraction"])


def test_error_location_missed_disc_is_mostly_gross():
    # A disc of radius 6 predicted as background: only disc pixels within 2 px of a background pixel are
    # boundary shifts. Count them by brute force over all pixel pairs.
    yy, xx = np.mgrid[:20, :20]
    ref = (np.hypot(yy - 10, xx - 10) <= 6).astype(int)
    pred = np.zeros_like(ref)
    bg = np.argwhere(ref == 0)
    near = sum(np.hypot(*(bg - p).T).min() <= 2 for p in np.argwhere(ref == 1))
    out = smallexplain.error_location(ref, pred, tolerance_px=2)
    assert out["n_error"] == ref.sum() and out["n_boundary"] == near
    assert out["boundary_fraction"] < 0.7


def test_error_location_predicted_class_absent_from_reference():
    ref = np.zeros((3, 3), int)
    pred = ref.copy()
    pred[1, 1] = 3  # media predicted where the reference has none at all
    assert smallexplain.error_location(ref, pred)["n_gross"] == 1


def test_uncertainty_error_auc_hand_and_scipy():
    u = np.array([0.1, 0.2, 0.3, 0.4])
    assert smallexplain.uncertainty_error_auc(u, np.array([0, 0, 1, 1]))["auroc"] == 1.0
    assert smallexplain.uncertainty_error_auc(u, np.array([1, 1, 0, 0]))["auroc"] == 0.0
    assert smallexplain.uncertainty_error_auc(np.ones(4), np.array([1, 0, 1, 0]))["auroc"] == 0.5  # ties count half
    assert math.isnan(smallexplain.uncertainty_error_auc(u, np.zeros(4))["auroc"])
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(0)
    u, e = rng.integers(0, 5, 200).astype(float), rng.random(200) < 0.3
    expected = mannwhitneyu(u[e], u[~e]).statistic / (e.sum() * (~e).sum())
    assert smallexplain.uncertainty_error_auc(u, e)["auroc"] == pytest.approx(expected, abs=1e-12)


def test_mean_thickness_of_annulus_matches_radial_width():
    # Annulus R = 30, r = 20: thickness R - r = 10 (2 * area / (2 pi R + 2 pi r) = R - r); pixelisation and the
    # Crofton perimeter estimate allow 3%.
    yy, xx = np.mgrid[:100, :100]
    r = np.hypot(yy - 49.5, xx - 49.5)
    assert smallexplain.mean_thickness((r >= 20) & (r < 30)) == pytest.approx(10, rel=0.03)
    assert smallexplain.mean_thickness((r >= 20) & (r < 24)) == pytest.approx(4, rel=0.03)
    assert smallexplain.mean_thickness((r >= 10) & (r < 40)) == pytest.approx(30, rel=0.03)
    assert math.isnan(smallexplain.mean_thickness(np.zeros((5, 5), bool)))


def test_morphology_identical_masks_have_zero_difference():
    _, mask = sd.make_vessel(64, seed=2)
    table = smallexplain.morphology(mask, mask)
    assert set(table["structure"]) == {"lumen", "neointima", "media", "wall"}
    assert np.allclose(table["difference"], 0)
    assert table.loc[table["structure"] == "lumen", "ref"].iloc[0] == (mask == 1).sum()


def test_gradient_saliency_hand():
    # A 1x1 convolution: logit of class 2 = 10 * channel 0, all other logits 0. The left half of the image has
    # channel 0 = 1 (predicted class 2), the right half 0 (ties -> class 0). d(sum of class-2 logits over the
    # left half)/dx = 10 on channel 0 of the left half, 0 elsewhere; scaled to max 1.
    conv = torch.nn.Conv2d(3, 4, 1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[2, 0] = 10.0
    x = torch.zeros(1, 3, 4, 4)
    x[..., :2] = 1.0
    sal = smallexplain.gradient_saliency(conv, x, target_class=2)
    expected = np.zeros((4, 4))
    expected[:, :2] = 1.0
    assert np.array_equal(sal, expected)
    with pytest.raises(ValueError, match=r"target_class must be in 0\.\.3"):
        smallexplain.gradient_saliency(conv, x, target_class=4)


def test_attention_map_segformer_and_cnn():
    seg = sm.build_model("segformer", width=8, seed=0)
    amap = smallexplain.attention_map(seg, torch.rand(1, 3, 64, 64))
    assert amap.shape == (64, 64) and np.isfinite(amap).all() and amap.max() <= 1 + 1e-6
    with pytest.raises(ValueError, match="attention maps need a transformer model, got UNet"):
        smallexplain.attention_map(sm.build_model("unet", width=4), torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="no attention layer has more than one key position"):
        smallexplain.attention_map(seg, torch.rand(1, 3, 32, 32))


def test_attention_map_tiny_sam_matches_eager_attention(tmp_path):
    # Cross-check: the weights recomputed from the SDPA layers equal those an eager-attention copy of the same
    # checkpoint returns itself (transformers' own output_attentions path).
    from transformers import SamModel

    SamModel(sm.tiny_sam_config(64)).save_pretrained(tmp_path)
    model = sm.build_model("sam", checkpoint=tmp_path)
    x = torch.rand(1, 3, 64, 64)
    amap = smallexplain.attention_map(model, x)
    assert amap.shape == (64, 64) and np.isfinite(amap).all()
    eager = SamModel.from_pretrained(tmp_path, local_files_only=True, attn_implementation="eager").vision_encoder
    captured = []
    hooks = [eager.layers[i].attn.register_forward_hook(lambda m, i, o: captured.append(o[1]))
             for i in eager.config.global_attn_indexes]
    with torch.no_grad():
        eager(model._normalize(x))
    for h in hooks:
        h.remove()
    maps = []
    for a in captured:
        received = a.reshape(-1, a.shape[-2], a.shape[-1]).mean(0).mean(0).reshape(1, 1, 4, 4)
        grid = torch.nn.functional.interpolate(received, size=(64, 64), mode="bilinear", align_corners=False)[0, 0]
        maps.append((grid / grid.max()).numpy())
    assert np.allclose(amap, np.mean(maps, axis=0), atol=1e-5)


def test_figures_render(small_cv, small_cases):
    import matplotlib.pyplot as plt

    fig = smallexplain.plot_visual_paradox(small_cases, small_cv, small_cv.scores, model="segformer", protocol="loocv",
                                           seed=0)
    assert len(fig.axes) == 8
    plt.close(fig)
    image = small_cases[0].case_id
    fig = smallexplain.plot_explanations(small_cases, small_cv, model="segformer", protocol="loocv", seed=0,
                                         image=image, size=32)
    assert len(fig.axes) >= 5
    plt.close(fig)


def test_uncertainty_table_counts_a_diverged_models_non_finite_map():
    import numpy as np
    from types import SimpleNamespace

    from helpers.studies.small_data.explain import uncertainty_table

    mask = np.zeros((4, 4), np.int64)
    mask[1:3, 1:3] = 1
    entropy = np.full((4, 4), 0.1)
    diverged = np.full((4, 4), np.nan)
    result = SimpleNamespace(uncertainty={("loocv", 0, "a", "img"): entropy, ("loocv", 0, "b", "img"): diverged},
                             predictions={("loocv", 0, "a", "img"): mask, ("loocv", 0, "b", "img"): np.zeros_like(mask)})
    table = uncertainty_table([SimpleNamespace(case_id="img", mask=mask)], result).set_index("model")
    assert table.loc["a", "non_finite_pixels"] == 0 and table.loc["a", "note"] == ""
    assert table.loc["b", "non_finite_pixels"] == 16 and np.isnan(table.loc["b", "auroc"])
    assert table.loc["b", "n_error"] == 4 and "training diverged" in table.loc["b", "note"]
