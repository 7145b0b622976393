import json

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

from helpers import metrics
from helpers.data import predictions
from helpers.learning import grid, training
from helpers.learning.protocol import Sampler, TrainingProtocol, data_hash
from helpers.base.paths import Workspace
from helpers.data.preprocessing import PreparedCase, save_prepared
from helpers.data.splits import Splits, save_splits

TINY = TrainingProtocol(size="smoke", epochs=2, steps_per_epoch=1, batch_size=2, patch_size=64)


def _case(case_id, *, seed, kind="volume", n=3, hw=(64, 64), original=(48, 56), channels=1, ignore=False):
    rng = np.random.default_rng(seed)
    mask = np.zeros((n, *hw), bool)
    mask[:, 20:28, 30:40] = True
    mask[n // 2, 50:53, 10:13] = True
    image = (rng.normal(size=(n, channels, *hw)) + 2.0 * mask[:, None]).astype(np.float32)
    ign = None
    if ignore:
        ign = np.zeros_like(mask)
        ign[:, 0:4, 0:4] = True
    if kind == "image":
        return PreparedCase(case_id, image[:1], mask[:1], None if ign is None else ign[:1], (1.0, 1.0), original,
                            (hw[0] / original[0], hw[1] / original[1]), None, "image")
    affine = np.diag([0.9, 0.9, 3.0, 1.0])
    return PreparedCase(case_id, image, mask, ign, (3.0, 0.9, 0.9), (n, *original),
                        (1.0, hw[0] / original[0], hw[1] / original[1]), affine, "volume")


def _dataset(ws, dataset="wmh", *, kind="volume", channels=1):
    ids = {"train": ["a", "b"], "val": ["c"], "test": ["d", "e"]}
    for i, case_id in enumerate(ids["train"] + ids["val"] + ids["test"]):
        save_prepared(ws, dataset, _case(case_id, seed=i, kind=kind, channels=channels, ignore=case_id == "a"))
    save_splits(ws, dataset, Splits(**ids))
    return ids


def _weights(folder, name="checkpoint_best.pt"):
    return torch.load(folder / name, map_location="cpu", weights_only=False)["model"]


def _same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def cases():
    return [_case("a", seed=0, ignore=True), _case("b", seed=1)], [_case("c", seed=2)]


# --------------------------------------------------------------------------------------------- protocol


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"patch_size": 48}, "patch_size must be a multiple of 32 and at least 64"),
        ({"patch_size": 32}, "patch_size must be a multiple of 32 and at least 64"),
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"steps_per_epoch": 0}, "steps_per_epoch must be a positive integer or None"),
        ({"loss": "focal"}, "loss must be one of"),
        ({"foreground_fraction": 1.5}, r"foreground_fraction must lie in \[0, 1\]"),
        ({"patience": -1}, "patience must be a non-negative integer"),
        ({"size": "xl"}, "size must be one of"),
        ({"learning_rate": 0.0}, "learning_rate must be positive"),
    ],
)
def test_protocol_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainingProtocol(**kwargs)


# --------------------------------------------------------------------------------------------- pieces


def test_sampler_anchors_one_per_2d_component_and_foreground_patches_hold_lesion():
    mask = np.zeros((2, 64, 64), bool)
    mask[0, 5:8, 5:8] = True  # component 1 (slice 0)
    mask[0, 40, 40] = mask[0, 41, 41] = True  # diagonal pair: one component under 8-connectivity
    mask[1, 60:64, 0:2] = True  # component 3 (slice 1), touching the border
    case = PreparedCase("x", np.zeros((2, 1, 64, 64), np.float32), mask, None, (1, 1, 1), (2, 64, 64),
                        (1, 1, 1), None, "volume")
    sampler = Sampler([case], patch_size=64, foreground_fraction=1.0)
    assert sorted(sampler.anchors) == [(0, 0, 5, 5), (0, 0, 40, 40), (0, 1, 60, 0)]
    images, masks, ignores = sampler.draw(np.random.default_rng(0), 12)
    assert images.shape == (12, 1, 64, 64) and masks.shape == ignores.shape == (12, 1, 64, 64)
    assert all(m.any() for m in masks)  # every patch is centred (within a quarter patch) on a lesion


def test_sampler_pads_slices_smaller_than_the_patch():
    mask = np.zeros((1, 40, 50), bool)
    mask[0, 10:12, 10:12] = True
    case = PreparedCase("x", np.ones((1, 1, 40, 50), np.float32), mask, None, (1, 1), (40, 50), (1, 1), None, "image")
    images, masks, _ = Sampler([case], 64, 0.0).draw(np.random.default_rng(1), 2)
    assert images.shape == (2, 1, 64, 64)
    assert images[:, :, :40, :50].min() == 1.0 and images[:, :, 40:, :].max() == 0.0  # zero padding at the end
    assert masks.sum() == 2 * 4


class _Threshold(torch.nn.Module):
    """Predicts exactly the voxels whose first channel is 1 (logit +20, else -20)."""

    def forward(self, x):
        return torch.where(x[:, :1] > 0.5, 20.0, -20.0)


def _validation_case(ref, pred, ignore=None):
    return PreparedCase("v", pred[:, None].astype(np.float32), ref, ignore, (1, 1), ref.shape[1:], (1, 1), None,
                        "image")


def test_validation_dice_hand_derived_and_empty_policy():
    ref = np.zeros((1, 4, 4), bool)
    ref[0, 0, :4] = True  # 4 voxels
    pred = np.zeros_like(ref)
    pred[0, 0, :2] = True  # 2 of them
    net = _Threshold()
    assert training.validation_dice(net, [_validation_case(ref, pred)], multiple=1) == pytest.approx(2 * 2 / 6)
    empty = np.zeros_like(ref)
    assert training.validation_dice(net, [_validation_case(empty, empty)], multiple=1) == 1.0
    ignore = np.zeros_like(ref)
    ignore[0, 0, 2:] = True  # the two missed voxels are ignored -> perfect
    assert training.validation_dice(net, [_validation_case(ref, pred, ignore)], multiple=1) == 1.0
    # the mean over cases: (2/3 + 1) / 2
    both = [_validation_case(ref, pred), _validation_case(empty, empty)]
    assert training.validation_dice(net, both, multiple=1) == pytest.approx((2 / 3 + 1) / 2)


def test_loss_does_not_see_ignored_voxels():
    loss = training._loss_fn(TINY)
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 8, 8)
    target = torch.rand(2, 1, 8, 8) > 0.7
    ignore = torch.zeros_like(target)
    ignore[:, :, :3] = True
    changed = logits.clone()
    changed[ignore] = 50.0  # any logit under the ignore mask
    flipped = target.clone()
    flipped[ignore] = ~flipped[ignore]  # any target under the ignore mask
    assert float(loss(logits, target, ignore)) == pytest.approx(float(loss(changed, flipped, ignore)), abs=1e-7)
    assert float(loss(logits, target, ignore)) != pytest.approx(float(loss(changed, flipped, torch.zeros_like(ignore))))


def test_data_hash_changes_with_any_voxel(cases):
    train, _ = cases
    altered = PreparedCase(**{**train[1].__dict__, "mask": train[1].mask.copy()})
    altered.mask[0, 0, 0] = ~altered.mask[0, 0, 0]
    assert data_hash(train) == data_hash(list(train))
    assert data_hash(train) != data_hash([train[0], altered])


# --------------------------------------------------------------------------------------------- train_model


def test_train_model_writes_checkpoints_config_and_history(tmp_path, cases):
    train, val = cases
    result = training.train_model("unet", train, val, tmp_path, protocol=TINY, seed=5, num_threads=1, progress=False)
    for name in ("checkpoint_best.pt", "checkpoint_last.pt", "config.json", "history.csv"):
        assert (tmp_path / name).is_file()
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["seed"] == 5 and config["model"] == "unet" and config["protocol"]["epochs"] == 2
    assert config["train_cases"] == ["a", "b"] and config["val_cases"] == ["c"]
    assert config["data_hash"] == data_hash([*train, *val])
    assert config["total_steps"] == 2 and config["effective_batch_size"] == 2 and config["torch_threads"] == 1
    assert {"torch", "monai", "numpy"} <= set(config["package_versions"])
    assert config["params"] == result.params > 0
    history = pd.read_csv(tmp_path / "history.csv")
    assert history["epoch"].tolist() == [1, 2] and history["step"].tolist() == [1, 2]
    # the best epoch is the first one reaching the highest validation Dice
    assert result.best_epoch == int(history["epoch"][history["val_dice"].idxmax()])
    assert result.best_val_dice == pytest.approx(history["val_dice"].max())
    assert result.steps == 2 and result.epochs == 2 and not result.stopped_early and result.images_per_second > 0
    # the cosine schedule reaches 0 after the last step
    assert history["learning_rate"].iloc[-1] == pytest.approx(0.0, abs=1e-12)


def test_two_runs_with_one_seed_are_identical_and_another_seed_differs(tmp_path, cases):
    train, val = cases
    for folder, seed in (("a", 1), ("b", 1), ("c", 2)):
        training.train_model("resunet", train, val, tmp_path / folder, protocol=TINY, seed=seed, num_threads=1,
                             progress=False)
    assert _same_weights(_weights(tmp_path / "a"), _weights(tmp_path / "b"))
    assert not _same_weights(_weights(tmp_path / "a"), _weights(tmp_path / "c"))
    model_a, model_b = (training.load_best_model(tmp_path / f) for f in "ab")
    prob_a = training.predict_stack(model_a, val[0].image, multiple=4)
    prob_b = training.predict_stack(model_b, val[0].image, multiple=4)
    np.testing.assert_array_equal(prob_a, prob_b)


def test_an_interrupted_run_resumes_to_the_same_result(tmp_path, cases):
    train, val = cases
    protocol = TrainingProtocol(epochs=3, steps_per_epoch=2, batch_size=2, patch_size=64)
    full = training.train_model("unet", train, val, tmp_path / "full", protocol=protocol, seed=0, num_threads=1,
                                progress=False)

    def interrupt(row):
        if row["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        training.train_model("unet", train, val, tmp_path / "cut", protocol=protocol, seed=0, num_threads=1,
                             progress=False, on_epoch_end=interrupt)
    assert pd.read_csv(tmp_path / "cut" / "history.csv")["epoch"].tolist() == [1]
    seen = []
    resumed = training.train_model("unet", train, val, tmp_path / "cut", protocol=protocol, seed=0, num_threads=1,
                                   progress=False, on_epoch_end=lambda row: seen.append(row["epoch"]))
    assert seen == [2, 3]  # it continued after epoch 1 rather than starting again
    assert resumed.steps == full.steps == 6
    last = "checkpoint_last.pt"
    assert _same_weights(_weights(tmp_path / "full", last), _weights(tmp_path / "cut", last))
    columns = ["epoch", "step", "train_loss", "val_dice", "learning_rate"]
    pd.testing.assert_frame_equal(full.history[columns], resumed.history[columns])


def test_a_finished_run_is_skipped_and_a_changed_protocol_retrains(tmp_path, cases):
    train, val = cases
    kwargs = {"seed": 0, "num_threads": 1, "progress": False}
    first = training.train_model("unet", train, val, tmp_path, protocol=TINY, **kwargs)
    stamp = (tmp_path / "checkpoint_last.pt").stat().st_mtime_ns
    again = training.train_model("unet", train, val, tmp_path, protocol=TINY, **kwargs)
    assert (tmp_path / "checkpoint_last.pt").stat().st_mtime_ns == stamp  # nothing was trained or written
    assert again.best_val_dice == first.best_val_dice and again.steps == first.steps
    longer = TrainingProtocol(**{**TINY.to_dict(), "epochs": 3})
    third = training.train_model("unet", train, val, tmp_path, protocol=longer, **kwargs)
    assert third.steps == 3 and (tmp_path / "checkpoint_last.pt").stat().st_mtime_ns != stamp


def test_early_stopping_when_validation_dice_stops_improving(tmp_path, cases):
    # a learning rate of 1e-12 leaves predictions unchanged, so validation Dice never improves strictly after
    # epoch 1; with patience 1 training stops after epoch 2 of 5 and keeps epoch 1 as the best
    train, val = cases
    protocol = TrainingProtocol(epochs=5, steps_per_epoch=1, batch_size=2, learning_rate=1e-12, patience=1)
    result = training.train_model("unet", train, val, tmp_path, protocol=protocol, seed=0, num_threads=1,
                                  progress=False)
    assert result.stopped_early and result.epochs == 2 and result.best_epoch == 1


def test_train_model_rejects_bad_input(tmp_path, cases):
    train, val = cases
    with pytest.raises(ValueError, match="model name must be one of"):
        training.train_model("segformer", train, val, tmp_path, progress=False)
    with pytest.raises(ValueError, match="train_cases must hold at least one case"):
        training.train_model("unet", [], val, tmp_path, progress=False)
    bad = PreparedCase(**{**train[0].__dict__, "mask": train[0].mask.astype(np.uint8)})
    with pytest.raises(ValueError, match="train_cases: case 'a' mask must be bool"):
        training.train_model("unet", [bad], val, tmp_path, progress=False)
    with pytest.raises(TypeError, match="protocol must be a TrainingProtocol"):
        training.train_model("unet", train, val, tmp_path, protocol={"epochs": 1}, progress=False)
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda'"):
        training.train_model("unet", train, val, tmp_path, device="tpu", progress=False)


# --------------------------------------------------------------------------------------------- workspace level


def test_train_all_and_predict_all_write_predictions_the_metrics_read(tmp_path):
    ws = Workspace(tmp_path)
    ids = _dataset(ws)
    models = ["unet", "hybrid_transformer"]
    summary = grid.train_all(ws, "wmh", TINY, models=models, seed=0, num_threads=1, progress=False)
    assert summary["model"].tolist() == models
    assert {"dataset", "model", "seed", "params", "best_val_dice", "epochs", "steps", "seconds",
            "images_per_second"} <= set(summary.columns)
    pd.testing.assert_frame_equal(pd.read_csv(ws.results("wmh") / "training_summary.csv")[["model", "params"]],
                                  summary[["model", "params"]])
    written = grid.predict_all(ws, "wmh", models=models, min_component_voxels=3, save_probabilities=True,
                               num_threads=1, progress=False)
    assert len(written) == 4
    assert grid.dataset_channels(ws, "wmh") == 1
    root = ws.predictions("wmh")
    assert predictions.list_models(root) == sorted(models)
    for model in models:
        for case_id in ids["test"]:
            ref = np.zeros((3, 48, 56), bool)  # the original grid, not the prepared 64 x 64
            pred = predictions.read_prediction(root, model, case_id, shape=ref.shape)
            assert 0.0 <= metrics.dice(ref | pred, pred) <= 1.0
            prob = predictions.read_probabilities(root, model, case_id)
            np.testing.assert_array_equal(pred, predictions.postprocess(prob, min_component_voxels=3))
    inference = json.loads((ws.results("wmh") / "inference.json").read_text())
    assert inference["threshold"] == 0.5 and inference["min_component_voxels"] == 3
    history = grid.load_histories(ws, "wmh", models=models)
    assert history.groupby("model").size().to_dict() == {m: 2 for m in models}


def test_predictions_are_identical_across_two_runs_with_one_seed(tmp_path):
    arrays = []
    for run in ("one", "two"):
        ws = Workspace(tmp_path / run)
        ids = _dataset(ws)
        grid.train_all(ws, "wmh", TINY, models=["attention_unet"], seed=3, num_threads=1, progress=False)
        grid.predict_all(ws, "wmh", models=["attention_unet"], seed=3, save_probabilities=True,
                         num_threads=1, progress=False)
        arrays.append([predictions.read_probabilities(ws.predictions("wmh"), "attention_unet", c) for c in ids["test"]])
    for first, second in zip(*arrays):
        np.testing.assert_array_equal(first, second)


def test_fundus_predictions_are_png_on_the_original_grid_and_extra_seeds_go_aside(tmp_path):
    ws = Workspace(tmp_path)
    ids = _dataset(ws, "idrid", kind="image", channels=3)
    assert grid.dataset_channels(ws, "idrid") == 3
    summary = grid.train_all(ws, "idrid", TINY, models=["unet"], seed=0, seeds=2, num_threads=1, progress=False)
    assert summary["seed"].tolist() == [0, 1]
    assert (ws.models("idrid") / "_seeds" / "seed1" / "unet" / "checkpoint_best.pt").is_file()
    grid.predict_all(ws, "idrid", models=["unet"], seed=0, seeds=2, num_threads=1, progress=False)
    root = ws.predictions("idrid")
    assert predictions.list_models(root) == ["unet"]
    assert predictions.list_models(root / "_seeds" / "seed1") == ["unet"]
    for case_id in ids["test"]:
        assert (root / "unet" / f"{case_id}.png").is_file()
        assert predictions.read_prediction(root, "unet", case_id).shape == (48, 56)


def test_plots_return_axes(tmp_path, cases):
    matplotlib.use("Agg")
    train, val = cases
    training.train_model("unet", train, val, tmp_path / "models" / "wmh" / "unet", protocol=TINY, num_threads=1,
                         progress=False)
    history = grid.load_histories(Workspace(tmp_path), "wmh", models=["unet", "resunet"])
    assert history["model"].unique().tolist() == ["unet"]
    ax = grid.plot_training_curves(history, metric="val_dice")
    assert ax.get_ylabel() == "validation Dice" and len(ax.lines) == 1
    summary = pd.DataFrame({"model": ["unet", "resunet"], "best_val_dice": [0.5, 0.25]})
    ax = grid.plot_summary(summary)
    assert [p.get_height() for p in ax.patches] == [0.5, 0.25]
    with pytest.raises(ValueError, match="metric must be"):
        grid.plot_training_curves(history, metric="hd95")
    matplotlib.pyplot.close("all")


def test_validation_slices_take_three_quarters_from_lesion_slices_and_a_quarter_from_the_others():
    mask = np.zeros((20, 4, 4), bool)
    mask[2:14, 1, 1] = True  # lesion on slices 2..13 (12 slices), none on 0, 1 and 14..19 (8 slices)
    case = PreparedCase("v", np.zeros((20, 1, 4, 4), np.float32), mask, None, (1, 1, 1), (20, 4, 4), (1, 1, 1),
                        None, "volume")
    # 8 slices: 8 // 4 = 2 without lesion (first and last of 0, 1, 14..19: 0 and 19) and 6 with lesion:
    # linspace(0, 11, 6) = 0, 2.2, 4.4, 6.6, 8.8, 11 -> positions 0, 2, 4, 7, 9, 11 -> slices 2, 4, 6, 9, 11, 13
    assert training._validation_slices(case, 8).tolist() == [0, 2, 4, 6, 9, 11, 13, 19]
    # 3 slices: 3 // 4 = 0 without lesion; linspace(0, 11, 3) = 0, 5.5, 11 -> 0, 6 (half to even), 11
    assert training._validation_slices(case, 3).tolist() == [2, 8, 13]
    assert training._validation_slices(case, None).tolist() == list(range(20))
    assert training._validation_slices(case, 20).tolist() == list(range(20))
    # too few lesion slices: the others fill up (2 lesion slices, so 6 of the 18 others)
    few = np.zeros((20, 4, 4), bool)
    few[[5, 6], 1, 1] = True
    case_few = PreparedCase("w", np.zeros((20, 1, 4, 4), np.float32), few, None, (1, 1, 1), (20, 4, 4), (1, 1, 1),
                            None, "volume")
    picked = training._validation_slices(case_few, 8).tolist()
    assert len(picked) == 8 and {5, 6} <= set(picked) and picked[0] == 0 and picked[-1] == 19
    # no lesion at all: evenly spaced over every slice
    empty = PreparedCase("e", np.zeros((20, 1, 4, 4), np.float32), np.zeros((20, 4, 4), bool), None, (1, 1, 1),
                         (20, 4, 4), (1, 1, 1), None, "volume")
    assert training._validation_slices(empty, 5).tolist() == [0, 5, 10, 14, 19]


def test_record_validation_keeps_the_earlier_epoch_on_ties_and_stops_after_patience():
    # validation Dice per epoch 0.5, 0.5, 0.4 with patience 2: epoch 1 stays best (a tie is no improvement),
    # epochs 2 and 3 are bad, so training stops early after epoch 3 of 10.
    state = training.TrainingState()
    improved = []
    for dice in (0.5, 0.5, 0.4):
        state.epoch += 1
        improved.append(training._record_validation(state, dice, patience=2, epochs=10))
    assert improved == [True, False, False]
    assert (state.best_dice, state.best_epoch, state.bad_epochs) == (0.5, 1, 2)
    assert state.stopped_early and state.finished
    # patience 0 never stops early; the budget ends the training
    state = training.TrainingState(epoch=2)
    assert training._record_validation(state, 0.1, patience=0, epochs=3) and not state.finished
    state.epoch = 3
    assert not training._record_validation(state, 0.0, patience=0, epochs=3)
    assert state.finished and not state.stopped_early
