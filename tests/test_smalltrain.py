"""Tests of helpers.smalltrain: loss, training, MC dropout, HPO, cross-validation and explainability views."""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import smalldata as sd
from helpers import smallmodels as sm
from helpers import smalltrain as st

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    root = tmp_path_factory.mktemp("vessels")
    sd.write_small_data(root, seed=0, n_images=6, size=48)
    return sd.load_small_data(root)


# --------------------------------------------------------------------------------------------------------------
# Loss
# --------------------------------------------------------------------------------------------------------------


def test_focal_dice_loss_hand_derived():
    # 2x2 image, one pixel per class, all logits 0 -> p = 1/4 everywhere.
    # Dice per class: 1 - 2 * (1/4) / (1 + 4 * 1/4) = 1 - 0.5/2 = 0.75; mean over classes 0.75.
    # Focal at the true class: (1 - 1/4)^2 * ln 4 = 0.5625 * 1.3863 = 0.7798 for 4 of 16 (class x pixel)
    # elements, mean over the 16 elements = 0.7798 / 4 = 0.19495. Total 0.94495.
    y = torch.tensor([[[0, 1], [2, 3]]]).unsqueeze(1)
    loss = st.focal_dice_loss()(torch.zeros(1, 4, 2, 2), y)
    assert float(loss) == pytest.approx(0.75 + 0.5625 * math.log(4) / 4, abs=1e-5)
    # Weights: only the Dice term, and gamma = 0 turns the focal term into cross-entropy (ln 4 / 4).
    assert float(st.focal_dice_loss(lambda_focal=0)(torch.zeros(1, 4, 2, 2), y)) == pytest.approx(0.75, abs=1e-5)
    ce = st.focal_dice_loss(lambda_dice=0, gamma=0)(torch.zeros(1, 4, 2, 2), y)
    assert float(ce) == pytest.approx(math.log(4) / 4, abs=1e-6)


def test_focal_term_matches_torch_cross_entropy_at_gamma_zero():
    # Independent implementation: torch cross-entropy (mean over pixels) / number of classes.
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(2, 4, 5, 5, generator=g), torch.randint(0, 4, (2, 5, 5), generator=g)
    ours = st.focal_dice_loss(lambda_dice=0, gamma=0)(logits, y.unsqueeze(1))
    assert float(ours) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, y)) / 4, rel=1e-5)


def test_focal_dice_loss_near_zero_for_confident_correct_prediction():
    y = torch.tensor([[[0, 1], [2, 3]]])
    logits = 50 * torch.nn.functional.one_hot(y, 4).permute(0, 3, 1, 2).float()
    assert float(st.focal_dice_loss()(logits, y.unsqueeze(1))) < 1e-4


def test_focal_dice_loss_rejects_negative_weights():
    with pytest.raises(ValueError, match="must be >= 0"):
        st.focal_dice_loss(gamma=-1)


# --------------------------------------------------------------------------------------------------------------
# Training and prediction
# --------------------------------------------------------------------------------------------------------------


def test_train_model_is_deterministic_and_learns(cases):
    x, y = st.stack_cases(cases[:4], 32)
    a, hist_a = st.train_model("deeplabv3plus", x, y, epochs=6, width=4, seed=3, params={"lr": 1e-2})
    b, hist_b = st.train_model("deeplabv3plus", x, y, epochs=6, width=4, seed=3, params={"lr": 1e-2})
    assert hist_a["loss"].tolist() == hist_b["loss"].tolist()
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert hist_a["loss"].iloc[-1] < hist_a["loss"].iloc[0]
    assert not a.training  # returned in eval mode


def test_train_model_restores_thread_count(cases):
    before = torch.get_num_threads()
    x, y = st.stack_cases(cases[:2], 32)
    st.train_model("unet", x, y, epochs=1, width=4, threads=1)
    assert torch.get_num_threads() == before


def test_train_model_errors(cases):
    x, y = st.stack_cases(cases[:2], 32)
    with pytest.raises(ValueError, match=r"params has unknown keys \['momentum'\]"):
        st.train_model("unet", x, y, params={"momentum": 0.9})
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        st.train_model("unet", x, y, epochs=0)
    with pytest.raises(ValueError, match="do not match"):
        st.train_model("unet", x, y[:1])
    with pytest.raises(ValueError, match="device must be a torch device name"):
        st.train_model("unet", x, y, device="gpu0")


def test_stack_cases_shapes(cases):
    x, y = st.stack_cases(cases[:3], 32)
    assert x.shape == (3, 3, 32, 32) and x.dtype == torch.float32
    assert y.shape == (3, 32, 32) and y.dtype == torch.int64
    with pytest.raises(ValueError, match="cases must not be empty"):
        st.stack_cases([], 32)


def test_mc_dropout_properties(cases):
    model = sm.build_model("unet", width=4, dropout=0.3, seed=0)
    x, _ = st.stack_cases(cases[:2], 32)
    out = st.mc_dropout_predict(model, x, passes=4, seed=0)
    assert np.allclose(out["mean"].sum(1), 1, atol=1e-5)
    # 0 <= MI <= entropy <= ln(classes).
    assert (out["mutual_information"] >= 0).all()
    assert (out["mutual_information"] <= out["entropy"] + 1e-6).all()
    assert (out["entropy"] <= math.log(4) + 1e-6).all()
    assert out["mutual_information"].max() > 0  # dropout does vary the passes
    again = st.mc_dropout_predict(model, x, passes=4, seed=0)
    assert np.array_equal(out["mean"], again["mean"])  # seeded


def test_mc_dropout_without_effective_dropout_equals_plain_prediction(cases):
    # With p = 0 every pass is the same network: mutual information 0, mean = eval-mode prediction.
    model = sm.build_model("unet", width=4, dropout=0.0, seed=0)
    x, _ = st.stack_cases(cases[:1], 32)
    out = st.mc_dropout_predict(model, x, passes=3)
    assert np.allclose(out["mean"], st.predict_proba(model, x), atol=1e-5)
    assert np.allclose(out["mutual_information"], 0, atol=1e-5)


def test_mc_dropout_errors():
    with pytest.raises(ValueError, match="passes must be an integer >= 2"):
        st.mc_dropout_predict(torch.nn.Conv2d(3, 4, 1), torch.rand(1, 3, 8, 8), passes=1)
    with pytest.raises(ValueError, match="model has no dropout layer"):
        st.mc_dropout_predict(torch.nn.Conv2d(3, 4, 1), torch.rand(1, 3, 8, 8), passes=2)


# --------------------------------------------------------------------------------------------------------------
# HPO and cross-validation
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sampler", ["tpe", "gp"])
def test_optimize_budget_and_space(cases, sampler):
    trials, best = st.optimize("deeplabv3plus", cases, n_trials=2, size=32, epochs=1, width=4, sampler=sampler)
    assert len(trials) == 2 and list(trials["trial"]) == [0, 1]
    for key, (_, low, high) in st.SEARCH_SPACE.items():
        assert trials[key].between(low, high).all()
    assert best["value"] == pytest.approx(trials["value"].max())
    assert best["params"] == {k: trials.loc[trials["value"].idxmax(), k] for k in st.SEARCH_SPACE}
    # The inner validation split is fold 0 of the seeded 3-fold split: 2 of 6 images.
    assert best["val_cases"] == sd.cv_folds([c.case_id for c in cases], protocol="3fold", seed=0)[0]["test"]


def test_optimize_errors(cases):
    with pytest.raises(ValueError, match="sampler must be 'tpe' or 'gp'"):
        st.optimize("unet", cases, n_trials=1, size=32, epochs=1, sampler="random")
    with pytest.raises(ValueError, match="n_trials must be a positive integer"):
        st.optimize("unet", cases, n_trials=0, size=32, epochs=1)


@pytest.fixture(scope="module")
def cv(cases):
    ids = [c.case_id for c in cases]
    splits = sd.make_splits(ids, protocols=["loocv", "3fold"], seeds=[0])
    keep = [(s["protocol"], s["seed"], s["fold"], "segformer") for s in splits if s["protocol"] == "loocv"]
    return st.cross_validate(cases, models=["segformer", "medsam"], splits=splits, cnn_size=32, epochs=1, width=4,
                             mc_passes=2, keep_models=keep, progress=False)


def test_cross_validate_every_image_scored_once_and_not_run_rows_kept(cv, cases):
    s = cv.scores
    assert set(s.columns) >= {"protocol", "seed", "fold", "model", "image", "class", "dice", "iou", "status"}
    macro = s[s["class"] == "macro"]
    counts = macro.groupby(["protocol", "seed", "model"])["image"].agg(lambda x: sorted(x))
    assert all(v == sorted(c.case_id for c in cases) for v in counts)  # each image exactly once
    medsam = s[s["model"] == "medsam"]
    # 2 protocols x 6 images x (3 classes + macro) rows, all NaN with the reason.
    assert len(medsam) == 2 * 6 * 4
    assert medsam["dice"].isna().all() and (medsam["status"] == "not run: no checkpoint given").all()
    ok = s[s["model"] == "segformer"]
    assert (ok["status"] == "ok").all() and ok["dice"].between(0, 1).all()
    assert len(cv.uncertainty) == 2 * 6  # MC-dropout maps for the model that ran
    assert len(cv.models) == 6  # the kept LOOCV folds


def test_cross_validate_rejects_unknown_case(cases):
    with pytest.raises(ValueError, match=r"splits name cases not in cases: \['ghost'\]"):
        st.cross_validate(cases, models=["unet"], splits=[{"protocol": "loocv", "seed": 0, "fold": 0,
                                                            "train": ["ghost"], "test": []}], progress=False)


def test_macro_row_is_mean_of_class_rows(cv):
    s = cv.scores[(cv.scores["model"] == "segformer")]
    classes = s[s["class"] != "macro"].groupby(["protocol", "image"])["dice"].mean()
    macro = s[s["class"] == "macro"].set_index(["protocol", "image"])["dice"]
    assert np.allclose(classes.sort_index(), macro.sort_index(), equal_nan=True)


def _table(values: dict) -> pd.DataFrame:
    """Scores table from {(protocol, model): [per-image macro dice]}, one fold per image (LOOCV-like)."""
    rows = []
    for (protocol, model), vals in values.items():
        for i, v in enumerate(vals):
            rows.append({"protocol": protocol, "seed": 0, "fold": i, "model": model, "image": f"v{i}",
                         "class": "macro", "dice": v, "iou": v / (2 - v), "status": "ok"})
    return pd.DataFrame(rows)


def test_best_worst_folds_hand():
    scores = _table({("loocv", "a"): [0.5, 0.9, 0.2, 0.7]})
    out = st.best_worst_folds(scores, model="a", protocol="loocv", seed=0)
    assert (out["best"], out["worst"]) == (1, 2)
    assert out["best_images"] == ["v1"] and out["worst_dice"] == 0.2
    with pytest.raises(ValueError, match="no scores for model 'b'"):
        st.best_worst_folds(scores, model="b", protocol="loocv", seed=0)


# --------------------------------------------------------------------------------------------------------------
# Explainability
# --------------------------------------------------------------------------------------------------------------


def test_error_map_hand():
    ref = np.array([[0, 1, 2]])
    pred = np.array([[0, 1, 3]])
    assert st.error_map(ref, pred).tolist() == [[0, 1, 2]]


def test_error_location_hand():
    # 10 x 10, ref: label 0 in columns 0-4, 1 in columns 5-9.
    ref = np.zeros((10, 10), int)
    ref[:, 5:] = 1
    pred = ref.copy()
    pred[:, 5] = 0  # 10 errors: label 0 occurs 1 px away (column 4): boundary shifts
    pred[0, 9] = 0  # 1 error: the nearest label-0 pixel is column 4, 5 px away: gross at 2 px, shift at 5 px
    out = st.error_location(ref, pred, tolerance_px=2)
    assert (out["n_error"], out["n_boundary"], out["n_gross"]) == (11, 10, 1)
    assert out["boundary_fraction"] == pytest.approx(10 / 11)
    assert st.error_location(ref, pred, tolerance_px=5)["boundary_fraction"] == 1.0
    assert math.isnan(st.error_location(ref, ref)["boundary_fraction"])


def test_error_location_missed_disc_is_mostly_gross():
    # A disc of radius 6 predicted as background: only disc pixels within 2 px of a background pixel are
    # boundary shifts. Count them by brute force over all pixel pairs.
    yy, xx = np.mgrid[:20, :20]
    ref = (np.hypot(yy - 10, xx - 10) <= 6).astype(int)
    pred = np.zeros_like(ref)
    bg = np.argwhere(ref == 0)
    near = sum(np.hypot(*(bg - p).T).min() <= 2 for p in np.argwhere(ref == 1))
    out = st.error_location(ref, pred, tolerance_px=2)
    assert out["n_error"] == ref.sum() and out["n_boundary"] == near
    assert out["boundary_fraction"] < 0.7


def test_error_location_predicted_class_absent_from_reference():
    ref = np.zeros((3, 3), int)
    pred = ref.copy()
    pred[1, 1] = 3  # media predicted where the reference has none at all
    assert st.error_location(ref, pred)["n_gross"] == 1


def test_uncertainty_error_auc_hand_and_scipy():
    u = np.array([0.1, 0.2, 0.3, 0.4])
    assert st.uncertainty_error_auc(u, np.array([0, 0, 1, 1]))["auroc"] == 1.0
    assert st.uncertainty_error_auc(u, np.array([1, 1, 0, 0]))["auroc"] == 0.0
    assert st.uncertainty_error_auc(np.ones(4), np.array([1, 0, 1, 0]))["auroc"] == 0.5  # ties count half
    assert math.isnan(st.uncertainty_error_auc(u, np.zeros(4))["auroc"])
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(0)
    u, e = rng.integers(0, 5, 200).astype(float), rng.random(200) < 0.3
    expected = mannwhitneyu(u[e], u[~e]).statistic / (e.sum() * (~e).sum())
    assert st.uncertainty_error_auc(u, e)["auroc"] == pytest.approx(expected, abs=1e-12)


def test_mean_thickness_of_annulus_matches_radial_width():
    # Annulus R = 30, r = 20: thickness R - r = 10 (2 * area / (2 pi R + 2 pi r) = R - r); pixelisation and the
    # Crofton perimeter estimate allow 3%.
    yy, xx = np.mgrid[:100, :100]
    r = np.hypot(yy - 49.5, xx - 49.5)
    assert st.mean_thickness((r >= 20) & (r < 30)) == pytest.approx(10, rel=0.03)
    assert st.mean_thickness((r >= 20) & (r < 24)) == pytest.approx(4, rel=0.03)
    assert st.mean_thickness((r >= 10) & (r < 40)) == pytest.approx(30, rel=0.03)
    assert math.isnan(st.mean_thickness(np.zeros((5, 5), bool)))


def test_morphology_identical_masks_have_zero_difference():
    _, mask = sd.make_vessel(64, seed=2)
    table = st.morphology(mask, mask)
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
    sal = st.gradient_saliency(conv, x, target_class=2)
    expected = np.zeros((4, 4))
    expected[:, :2] = 1.0
    assert np.array_equal(sal, expected)
    with pytest.raises(ValueError, match=r"target_class must be in 0\.\.3"):
        st.gradient_saliency(conv, x, target_class=4)


def test_attention_map_segformer_and_cnn():
    seg = sm.build_model("segformer", width=8, seed=0)
    amap = st.attention_map(seg, torch.rand(1, 3, 64, 64))
    assert amap.shape == (64, 64) and np.isfinite(amap).all() and amap.max() <= 1 + 1e-6
    with pytest.raises(ValueError, match="attention maps need a transformer model, got UNet"):
        st.attention_map(sm.build_model("unet", width=4), torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="no attention layer has more than one key position"):
        st.attention_map(seg, torch.rand(1, 3, 32, 32))


def test_attention_map_tiny_sam_matches_eager_attention(tmp_path):
    # Cross-check: the weights recomputed from the SDPA layers equal those an eager-attention copy of the same
    # checkpoint returns itself (transformers' own output_attentions path).
    from transformers import SamModel

    SamModel(sm.tiny_sam_config(64)).save_pretrained(tmp_path)
    model = sm.build_model("sam", checkpoint=tmp_path)
    x = torch.rand(1, 3, 64, 64)
    amap = st.attention_map(model, x)
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


def test_figures_render(cv, cases):
    import matplotlib.pyplot as plt

    fig = st.plot_visual_paradox(cases, cv, cv.scores, model="segformer", protocol="loocv", seed=0)
    assert len(fig.axes) == 8
    plt.close(fig)
    image = cases[0].case_id
    fig = st.plot_explanations(cases, cv, model="segformer", protocol="loocv", seed=0, image=image, size=32)
    assert len(fig.axes) >= 5
    plt.close(fig)
