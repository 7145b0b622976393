"""Tests of helpers.studies.small_data.data: synthetic vessels, the folder loader, the CV splits and multi-class
scores."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest
import tifffile

from helpers import metrics
from helpers.studies.small_data import data as sd
from helpers.base.paths import Workspace

# --------------------------------------------------------------------------------------------------------------
# Synthetic data
# --------------------------------------------------------------------------------------------------------------


def test_make_vessel_is_deterministic_and_has_four_classes():
    a_img, a_mask = sd.make_vessel(64, seed=3)
    b_img, b_mask = sd.make_vessel(64, seed=3)
    c_img, _ = sd.make_vessel(64, seed=4)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_mask, b_mask)
    assert not np.array_equal(a_img, c_img)
    assert a_img.shape == (64, 64, 3) and a_img.dtype == np.uint8
    assert set(np.unique(a_mask)) == {0, 1, 2, 3}


def test_make_vessel_rings_are_nested():
    # Concentric rings: lumen inside neointima inside media. Along any row through the lumen the labels, read
    # from the image border inwards, never jump from background straight to lumen.
    _, mask = sd.make_vessel(128, seed=1)
    ys, xs = np.nonzero(mask == 1)
    row = mask[int(np.median(ys))]
    first_fg = np.argmax(row > 0)
    assert row[first_fg] == 3  # the outermost structure met is the media
    # Every lumen pixel's 4-neighbours are lumen or neointima (lumen never touches media or background):
    # the neointima is at least 0.015 * 128 ~ 2 px thick.
    from scipy import ndimage

    ring = ndimage.binary_dilation(mask == 1) & (mask != 1)
    assert set(np.unique(mask[ring])) <= {2}


def test_write_small_data_layout_and_areas(tmp_path):
    table = sd.write_small_data(tmp_path, seed=0, n_images=3, size=48)
    assert list(table["case_id"]) == ["vessel_01", "vessel_02", "vessel_03"]
    names = sorted(p.name for p in (tmp_path / "images").iterdir())
    assert names == ["vessel_01.png", "vessel_02.png", "vessel_03.png"]
    mask = iio.imread(tmp_path / "masks" / "vessel_02.png")
    # Areas in the table are pixel counts of the written mask; they sum to the image size 48 * 48 = 2304.
    row = table.iloc[1]
    assert row["area_lumen"] == int((mask == 1).sum())
    assert sum(row[f"area_{c}"] for c in sd.CLASSES) == 2304


def test_write_small_data_images_do_not_depend_on_count(tmp_path):
    sd.write_small_data(tmp_path / "a", seed=5, n_images=2, size=40)
    sd.write_small_data(tmp_path / "b", seed=5, n_images=4, size=40)
    a = iio.imread(tmp_path / "a" / "images" / "vessel_02.png")
    b = iio.imread(tmp_path / "b" / "images" / "vessel_02.png")
    assert np.array_equal(a, b)


@pytest.mark.parametrize("size", [16, 31, 40.0, True])
def test_make_vessel_rejects_bad_size(size):
    with pytest.raises(ValueError, match="size must be an integer >= 32"):
        sd.make_vessel(size, seed=0)


# --------------------------------------------------------------------------------------------------------------
# Loader
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path):
    sd.write_small_data(tmp_path, seed=0, n_images=3, size=40)
    return tmp_path


def test_load_round_trip(folder):
    cases = sd.load_small_data(folder)
    assert [c.case_id for c in cases] == ["vessel_01", "vessel_02", "vessel_03"]
    raw = iio.imread(folder / "images" / "vessel_01.png")
    # 8-bit images are divided by 255.
    assert np.allclose(cases[0].image, raw / 255.0, atol=1e-6)
    assert cases[0].image.dtype == np.float32 and cases[0].mask.dtype == np.uint8


def test_load_tiff_grayscale_and_uint16(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    img = np.full((4, 5), 65535, dtype=np.uint16)
    img[0, 0] = 0
    tifffile.imwrite(tmp_path / "images" / "a.tif", img)
    tifffile.imwrite(tmp_path / "masks" / "a.tiff", np.zeros((4, 5), dtype=np.uint8))
    (case,) = sd.load_small_data(tmp_path)
    # Grayscale repeated to 3 channels; 16-bit divided by 65535: 0 -> 0, 65535 -> 1.
    assert case.image.shape == (4, 5, 3)
    assert case.image[0, 0, 2] == 0.0 and case.image[1, 1, 0] == 1.0


def test_load_missing_mask(folder):
    (folder / "masks" / "vessel_02.png").unlink()
    with pytest.raises(ValueError, match=r"vessel_02\.png: no mask for this image"):
        sd.load_small_data(folder)


def test_load_mask_without_image(folder):
    (folder / "images" / "vessel_03.png").unlink()
    with pytest.raises(ValueError, match=r"vessel_03\.png: no image for this mask"):
        sd.load_small_data(folder)


def test_load_missing_folder(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(ValueError, match="mask folder not found"):
        sd.load_small_data(tmp_path)


def test_load_empty_folder(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        sd.load_small_data(tmp_path)


def test_load_mask_value_out_of_range(folder):
    mask = iio.imread(folder / "masks" / "vessel_01.png")
    mask[0, 0] = 7
    iio.imwrite(folder / "masks" / "vessel_01.png", mask)
    with pytest.raises(ValueError, match=r"vessel_01\.png: mask values \[7\] outside 0\.\.3"):
        sd.load_small_data(folder)


def test_load_shape_mismatch(folder):
    iio.imwrite(folder / "masks" / "vessel_01.png", np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match=r"mask shape \(10, 10\) differs from image shape \(40, 40\)"):
        sd.load_small_data(folder)


def test_load_rgb_mask_rejected(folder):
    iio.imwrite(folder / "masks" / "vessel_01.png", np.zeros((40, 40, 3), np.uint8))
    with pytest.raises(ValueError, match="mask must be a 2D label image"):
        sd.load_small_data(folder)


def test_load_unreadable_file(folder):
    (folder / "images" / "vessel_01.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"vessel_01\.png: cannot read image file"):
        sd.load_small_data(folder)


def test_load_float_image_out_of_range(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    tifffile.imwrite(tmp_path / "images" / "a.tif", np.full((3, 3, 3), 2.0, np.float32))
    tifffile.imwrite(tmp_path / "masks" / "a.tif", np.zeros((3, 3), np.uint8))
    with pytest.raises(ValueError, match=r"float image must lie in \[0, 1\]"):
        sd.load_small_data(tmp_path)


def test_load_duplicate_stem(folder):
    tifffile.imwrite(folder / "images" / "vessel_01.tif", np.zeros((40, 40, 3), np.uint8))
    with pytest.raises(ValueError, match="two image files for case 'vessel_01'"):
        sd.load_small_data(folder)


def test_prepare_small_data_writes_manifest(tmp_path):
    ws = Workspace(tmp_path)
    cases, summary = sd.prepare_small_data(ws, seed=1, n_images=2, size=40)
    from helpers.base.io import read_json

    manifest = read_json(ws.results("small_data") / "data_manifest.json")
    assert manifest["source"] == "synthetic" and manifest["n_cases"] == 2
    # Fractions of a case sum to 1.
    fractions = summary[[f"fraction_{c}" for c in sd.CLASSES]].sum(axis=1)
    assert np.allclose(fractions, 1.0)


def test_resize_case_keeps_labels():
    img = np.random.default_rng(0).random((40, 40, 3)).astype(np.float32)
    mask = np.zeros((40, 40), np.uint8)
    mask[10:30, 10:30] = 3
    mask[15:25, 15:25] = 1
    small_img, small_mask = sd.resize_case(img, mask, 20)
    assert small_img.shape == (20, 20, 3) and small_mask.shape == (20, 20)
    # Nearest neighbour never invents a label (no 2 between 1 and 3).
    assert set(np.unique(small_mask)) == {0, 1, 3}


# --------------------------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------------------------


def test_multiclass_scores_hand_derived():
    # 1 x 10 strip. ref: 0 0 1 1 1 1 2 2 3 3; pred: 0 1 1 1 2 2 2 2 3 0.
    ref = np.array([[0, 0, 1, 1, 1, 1, 2, 2, 3, 3]])
    pred = np.array([[0, 1, 1, 1, 2, 2, 2, 2, 3, 0]])
    t = sd.multiclass_scores(ref, pred).set_index("class")
    # lumen: |A|=4, |B|=3, |A∩B|=2 -> Dice 4/7, IoU 2/5.
    assert t.loc["lumen", "dice"] == pytest.approx(4 / 7)
    assert t.loc["lumen", "iou"] == pytest.approx(2 / 5)
    # neointima: |A|=2, |B|=4, |A∩B|=2 -> Dice 4/6, IoU 2/4.
    assert t.loc["neointima", "dice"] == pytest.approx(2 / 3)
    assert t.loc["neointima", "iou"] == pytest.approx(0.5)
    # media: |A|=2, |B|=1, |A∩B|=1 -> Dice 2/3, IoU 1/2.
    assert t.loc["media", "dice"] == pytest.approx(2 / 3)
    # background: |A|=2, |B|=2, |A∩B|=1 -> Dice 1/2.
    assert t.loc["background", "dice"] == pytest.approx(0.5)
    macro = sd.macro_scores(sd.multiclass_scores(ref, pred))
    # Macro over foreground only: (4/7 + 2/3 + 2/3) / 3.
    assert macro["dice"] == pytest.approx((4 / 7 + 2 / 3 + 2 / 3) / 3)
    assert macro["n_classes"] == 3 and macro["n_absent"] == 0


def test_class_absent_from_both_scores_one_and_is_left_out_of_the_macro_mean_and_counted():
    # neointima and media are in neither map: Dice 1 (helpers.metrics' both-empty rule), excluded and counted.
    ref = np.array([[0, 1, 1]])
    pred = np.array([[0, 1, 2]])
    t = sd.multiclass_scores(ref, pred).set_index("class")
    assert t.loc["media", "dice"] == 1.0 and t.loc["media", "iou"] == 1.0
    assert t.loc["neointima", "dice"] == 0.0  # predicted, not in the reference: a false detection
    macro = sd.macro_scores(t.reset_index())
    # lumen: |A|=2, |B|=1, |A∩B|=1 -> Dice 2/3; neointima 0; media left out.
    assert macro["dice"] == pytest.approx((2 / 3 + 0) / 2) and macro["n_classes"] == 2 and macro["n_absent"] == 1
    same = sd.macro_scores(sd.multiclass_scores(np.array([[0, 1, 1]]), np.array([[0, 1, 1]])))
    assert same["dice"] == 1.0 and same["n_classes"] == 1 and same["n_absent"] == 2


def test_both_empty_policy_value():
    t = sd.multiclass_scores(np.zeros((2, 2), int), np.zeros((2, 2), int))
    assert (t.loc[t["foreground"], "dice"] == 1.0).all() and (t.loc[t["foreground"], "iou"] == 1.0).all()
    macro = sd.macro_scores(t)
    assert np.isnan(macro["dice"]) and macro["n_classes"] == 0 and macro["n_absent"] == 3


def test_per_class_scores_are_the_metrics_module_dice_and_iou():
    rng = np.random.default_rng(3)
    ref, pred = rng.integers(0, 4, (9, 11)), rng.integers(0, 4, (9, 11))
    t = sd.multiclass_scores(ref, pred)
    for k in range(4):
        assert t.loc[k, "dice"] == metrics.dice(ref == k, pred == k)
        assert t.loc[k, "iou"] == metrics.iou(ref == k, pred == k)


def test_class_missing_in_prediction_scores_zero():
    ref = np.array([[2, 2, 0]])
    pred = np.array([[0, 0, 0]])
    t = sd.multiclass_scores(ref, pred).set_index("class")
    assert t.loc["neointima", "dice"] == 0.0 and t.loc["neointima", "iou"] == 0.0


def test_dice_iou_relation_property():
    # Per class, IoU = Dice / (2 - Dice) whenever defined.
    rng = np.random.default_rng(0)
    for _ in range(20):
        ref, pred = rng.integers(0, 4, (12, 12)), rng.integers(0, 4, (12, 12))
        t = sd.multiclass_scores(ref, pred)
        assert np.allclose(t["iou"], t["dice"] / (2 - t["dice"]))
        assert ((t["dice"] >= 0) & (t["dice"] <= 1)).all()
        swapped = sd.multiclass_scores(pred, ref)
        assert np.allclose(t["dice"], swapped["dice"])  # symmetric


def test_cross_check_monai():
    # MONAI DiceMetric / MeanIoU on one-hot maps, foreground classes, per class.
    import torch
    from monai.metrics import DiceMetric, MeanIoU

    rng = np.random.default_rng(1)
    ref, pred = rng.integers(0, 4, (16, 16)), rng.integers(0, 4, (16, 16))
    onehot = lambda a: torch.nn.functional.one_hot(torch.from_numpy(a), 4).permute(2, 0, 1)[None].float()  # noqa: E731
    dice = DiceMetric(include_background=False, reduction="none")(onehot(pred), onehot(ref)).numpy()[0]
    iou = MeanIoU(include_background=False, reduction="none")(onehot(pred), onehot(ref)).numpy()[0]
    t = sd.multiclass_scores(ref, pred)
    fg = t[t["foreground"]]
    assert np.allclose(fg["dice"], dice, atol=1e-6)
    assert np.allclose(fg["iou"], iou, atol=1e-6)


def test_scores_errors():
    with pytest.raises(ValueError, match=r"ref shape \(2, 2\) and pred shape \(2, 3\) differ"):
        sd.multiclass_scores(np.zeros((2, 2), int), np.zeros((2, 3), int))
    with pytest.raises(ValueError, match="pred has labels outside 0..3"):
        sd.multiclass_scores(np.zeros((2, 2), int), np.full((2, 2), 4))
    with pytest.raises(TypeError, match="ref must hold integer labels"):
        sd.multiclass_scores(np.zeros((2, 2)), np.zeros((2, 2), int))


def test_data_summary_columns(folder):
    summary = sd.data_summary(sd.load_small_data(folder))
    assert isinstance(summary, pd.DataFrame) and len(summary) == 3
    assert list(summary.columns[:3]) == ["case_id", "height", "width"]
