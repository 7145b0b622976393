"""Tests of helpers.studies.small_data.train: loss, training, prediction and MC dropout (the report is tested in
test_smallreport.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from helpers.studies.small_data import models as sm
from helpers.studies.small_data import train as st


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


@pytest.mark.parametrize("gamma", [0.0, 0.37, 0.91, 2.0, 3.0])
def test_focal_term_matches_monai_where_monai_is_finite(gamma):
    # Independent implementation: MONAI FocalLoss(use_softmax=True) on unsaturated logits (value and gradient).
    from monai.losses import FocalLoss

    g = torch.Generator().manual_seed(1)
    logits, y = torch.randn(2, 4, 6, 6, generator=g), torch.randint(0, 4, (2, 1, 6, 6), generator=g)
    ours_in, theirs_in = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    ours = st.softmax_focal(ours_in, y, gamma=gamma)
    theirs = FocalLoss(use_softmax=True, to_onehot_y=True, include_background=True, gamma=gamma)(theirs_in, y)
    ours.backward(), theirs.backward()
    assert float(ours.detach()) == pytest.approx(float(theirs.detach()), rel=1e-5)
    assert torch.allclose(ours_in.grad, theirs_in.grad, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("gamma", [0.3, 0.91])
def test_focal_gradient_stays_finite_on_a_confident_model(gamma):
    # A logit gap of 40 rounds the softmax to exactly 1.0 in float32; for 0 < gamma < 1 the factor (1 - p)^gamma
    # has an infinite derivative there, and MONAI 1.6's backward pass is NaN (what made the small-data U-Net's
    # LOOCV training diverge in the default run). Ours: finite, and the value is the analytic ~0.
    from monai.losses import FocalLoss

    y = torch.tensor([[[0, 1], [2, 3]]])
    logits = 40 * torch.nn.functional.one_hot(y, 4).permute(0, 3, 1, 2).float()
    ours_in, theirs_in = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    st.focal_dice_loss(gamma=gamma)(ours_in, y.unsqueeze(1)).backward()
    FocalLoss(use_softmax=True, to_onehot_y=True, include_background=True, gamma=gamma)(theirs_in,
                                                                                          y.unsqueeze(1)).backward()
    assert torch.isfinite(ours_in.grad).all()
    assert torch.isnan(theirs_in.grad).any()  # the defect the own implementation avoids (MONAI 1.6.1)
    assert float(st.softmax_focal(logits, y.unsqueeze(1), gamma=gamma)) == pytest.approx(0.0, abs=1e-12)


def test_focal_dice_loss_rejects_negative_weights():
    with pytest.raises(ValueError, match="must be >= 0"):
        st.focal_dice_loss(gamma=-1)


# --------------------------------------------------------------------------------------------------------------
# Training and prediction
# --------------------------------------------------------------------------------------------------------------


def test_train_model_is_deterministic_and_learns(small_cases):
    x, y = st.stack_cases(small_cases[:4], 32)
    a, hist_a = st.train_model("deeplabv3plus", x, y, epochs=6, width=4, seed=3, params={"lr": 1e-2})
    b, hist_b = st.train_model("deeplabv3plus", x, y, epochs=6, width=4, seed=3, params={"lr": 1e-2})
    assert hist_a["loss"].tolist() == hist_b["loss"].tolist()
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert hist_a["loss"].iloc[-1] < hist_a["loss"].iloc[0]
    assert not a.training  # returned in eval mode


def test_train_model_restores_thread_count(small_cases):
    before = torch.get_num_threads()
    x, y = st.stack_cases(small_cases[:2], 32)
    st.train_model("unet", x, y, epochs=1, width=4, threads=1)
    assert torch.get_num_threads() == before


def test_train_model_errors(small_cases):
    x, y = st.stack_cases(small_cases[:2], 32)
    with pytest.raises(ValueError, match=r"params has unknown keys \['momentum'\]"):
        st.train_model("unet", x, y, params={"momentum": 0.9})
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        st.train_model("unet", x, y, epochs=0)
    with pytest.raises(ValueError, match="do not match"):
        st.train_model("unet", x, y[:1])
    with pytest.raises(ValueError, match="device must be a torch device name"):
        st.train_model("unet", x, y, device="gpu0")


def test_stack_cases_shapes(small_cases):
    x, y = st.stack_cases(small_cases[:3], 32)
    assert x.shape == (3, 3, 32, 32) and x.dtype == torch.float32
    assert y.shape == (3, 32, 32) and y.dtype == torch.int64
    with pytest.raises(ValueError, match="cases must not be empty"):
        st.stack_cases([], 32)


def test_mc_dropout_properties(small_cases):
    model = sm.build_model("unet", width=4, dropout=0.3, seed=0)
    x, _ = st.stack_cases(small_cases[:2], 32)
    out = st.mc_dropout_predict(model, x, passes=4, seed=0)
    assert np.allclose(out["mean"].sum(1), 1, atol=1e-5)
    # 0 <= MI <= entropy <= ln(classes).
    assert (out["mutual_information"] >= 0).all()
    assert (out["mutual_information"] <= out["entropy"] + 1e-6).all()
    assert (out["entropy"] <= math.log(4) + 1e-6).all()
    assert out["mutual_information"].max() > 0  # dropout does vary the passes
    again = st.mc_dropout_predict(model, x, passes=4, seed=0)
    assert np.array_equal(out["mean"], again["mean"])  # seeded


def test_mc_dropout_without_effective_dropout_equals_plain_prediction(small_cases):
    # With p = 0 every pass is the same network: mutual information 0, mean = eval-mode prediction.
    model = sm.build_model("unet", width=4, dropout=0.0, seed=0)
    x, _ = st.stack_cases(small_cases[:1], 32)
    out = st.mc_dropout_predict(model, x, passes=3)
    assert np.allclose(out["mean"], st.predict_proba(model, x), atol=1e-5)
    assert np.allclose(out["mutual_information"], 0, atol=1e-5)


def test_mc_dropout_errors():
    with pytest.raises(ValueError, match="passes must be an integer >= 2"):
        st.mc_dropout_predict(torch.nn.Conv2d(3, 4, 1), torch.rand(1, 3, 8, 8), passes=1)
    with pytest.raises(ValueError, match="model has no dropout layer"):
        st.mc_dropout_predict(torch.nn.Conv2d(3, 4, 1), torch.rand(1, 3, 8, 8), passes=2)


# --------------------------------------------------------------------------------------------------------------
# Cross-validation scores for the report tests
# --------------------------------------------------------------------------------------------------------------


