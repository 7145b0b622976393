"""Tests of helpers.data.preprocessing: normalisation per modality (hand values and MONAI cross-checks), resizing
with the recorded scale, restoring predictions to the original grid, persistence."""

import numpy as np
import pytest
import torch
from monai.transforms import NormalizeIntensity, ScaleIntensityRange

from helpers.data import datasets
from helpers.data.layouts import Case
from helpers.base.paths import Workspace
from helpers.data.preprocessing import (
    PreparedCase, load_prepared, normalize_ct, normalize_fundus, normalize_mri, prepare_case, preprocessing_record,
    restore, save_prepared,
)


def _recipe(dataset):
    return datasets.get(dataset).recipe


def _volume_case(image, mask=None, ignore=None, spacing=(3.0, 1.0, 1.0)):
    spatial = image.shape[:3]
    mask = np.zeros(spatial, dtype=bool) if mask is None else mask
    return Case("v1", image, mask, ignore, spacing, "training", "v1.nii", np.eye(4), {})


def _fundus_case(image, mask=None):
    mask = np.zeros(image.shape[:2], dtype=bool) if mask is None else mask
    return Case("IDRiD_01", image, mask, None, (1.0, 1.0), "training", "IDRiD_01.jpg", None, {})


def test_ct_window_hand_values():
    # window (-200, 250): width 450; -200 -> 0, 25 -> 225 / 450 = 0.5, 250 -> 1; outside clipped
    hu = np.array([-3024.0, -200.0, 25.0, 250.0, 3071.0], dtype=np.float32).reshape(1, 1, 5)
    out = normalize_ct(_volume_case(hu))
    np.testing.assert_allclose(out[0, 0, :, 0], [0.0, 0.0, 0.5, 1.0, 1.0])


def test_ct_window_matches_monai():
    rng = np.random.default_rng(0)
    hu = rng.uniform(-1500, 1500, (3, 8, 8)).astype(np.float32)
    ours = normalize_ct(_volume_case(hu), ct_window=(-100, 200))[..., 0]
    theirs = ScaleIntensityRange(a_min=-100, a_max=200, b_min=0.0, b_max=1.0, clip=True)(torch.from_numpy(hu))
    np.testing.assert_allclose(ours, np.asarray(theirs), atol=1e-6)


def test_ct_window_rejects_bad_window():
    with pytest.raises(ValueError, match="ct_window must be two finite HU values"):
        normalize_ct(_volume_case(np.zeros((1, 2, 2), dtype=np.float32)), ct_window=(100, -100))


def test_mri_zscore_within_foreground_matches_monai_nonzero():
    # a head (one blob of values 50..150) on a zero background: Otsu separates them exactly, so the foreground
    # is the nonzero set and MONAI's NormalizeIntensity(nonzero=True) is an independent reference inside it
    rng = np.random.default_rng(1)
    flair = np.zeros((4, 16, 16), dtype=np.float32)
    flair[:, 3:13, 4:12] = rng.uniform(50, 150, (4, 10, 8))
    t1 = np.where(flair > 0, rng.uniform(200, 400, flair.shape), 0).astype(np.float32)
    out = normalize_mri(_volume_case(np.stack([flair, t1], axis=-1)), z_clip=10.0)
    inside = flair > 0
    for c, channel in enumerate((flair, t1)):
        ref = np.asarray(NormalizeIntensity(nonzero=True)(torch.from_numpy(channel)))
        np.testing.assert_allclose(out[..., c][inside], ref[inside], atol=1e-4)
        assert abs(out[..., c][inside].mean()) < 1e-5 and abs(out[..., c][inside].std() - 1) < 1e-4


def test_mri_zscore_clipped():
    flair = np.zeros((2, 10, 10), dtype=np.float32)
    flair[:, 2:8, 2:8] = 100.0
    flair[0, 4, 4] = 1e6  # an outlier far above the rest
    out = normalize_mri(_volume_case(flair), z_clip=3.0)
    assert out.max() == 3.0 and out.min() >= -3.0


def test_fundus_zscore_in_field_of_view_and_zero_outside():
    image = np.zeros((20, 30, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:20, :30]
    fov = (yy - 10) ** 2 + (xx - 15) ** 2 < 81
    rng = np.random.default_rng(2)
    image[fov] = rng.integers(40, 250, (int(fov.sum()), 3))
    out = normalize_fundus(_fundus_case(image))
    assert out.shape == (20, 30, 3)
    assert np.all(out[~fov] == 0)
    np.testing.assert_allclose(out[fov].mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(out[fov].std(axis=0), 1, atol=1e-4)


def test_prepare_volume_shapes_and_scale():
    image = np.random.default_rng(3).normal(100, 10, (5, 40, 60, 2)).astype(np.float32)
    mask = np.zeros((5, 40, 60), dtype=bool)
    mask[2, 10:30, 20:40] = True
    ignore = np.zeros_like(mask)
    ignore[0, :4, :4] = True
    prepared = prepare_case(_volume_case(image, mask, ignore), _recipe("wmh"), size=(20, 30))
    assert prepared.image.shape == (5, 2, 20, 30) and prepared.image.dtype == np.float32
    assert prepared.mask.shape == (5, 20, 30) and prepared.ignore.shape == (5, 20, 30)
    assert prepared.scale == (1.0, 0.5, 0.5)
    assert prepared.original_shape == (5, 40, 60) and prepared.kind == "volume"
    # a 20 x 20 square halves to 10 x 10 (order-1 resize of an aligned block, thresholded at 0.5)
    assert int(prepared.mask[2].sum()) == 100 and not prepared.mask[[0, 1, 3, 4]].any()
    assert int(prepared.ignore[0].sum()) == 4


def test_prepare_factor_equals_size():
    image = np.random.default_rng(4).uniform(0, 255, (40, 60, 3)).astype(np.uint8)
    a = prepare_case(_fundus_case(image), _recipe("idrid"), factor=0.25)
    b = prepare_case(_fundus_case(image), _recipe("idrid"), size=(10, 15))
    assert a.image.shape == (1, 3, 10, 15) and a.scale == (0.25, 0.25) == b.scale
    np.testing.assert_array_equal(a.image, b.image)
    with pytest.raises(ValueError, match="give size or factor, not both"):
        prepare_case(_fundus_case(image), _recipe("idrid"), size=(10, 15), factor=0.25)
    with pytest.raises(ValueError, match=r"factor must be a float in \(0, 1\]"):
        prepare_case(_fundus_case(image), _recipe("idrid"), factor=2)
    with pytest.raises(ValueError, match="size must be two positive integers"):
        prepare_case(_fundus_case(image), _recipe("idrid"), size=(10,))


def test_downscaling_removes_a_single_pixel_lesion():
    # the documented effect of shrinking: a 1-pixel lesion averages to 1/16 < 0.5 at factor 1/4 and vanishes
    image = np.full((40, 40, 3), 120, dtype=np.uint8)
    mask = np.zeros((40, 40), dtype=bool)
    mask[21, 21] = True
    prepared = prepare_case(_fundus_case(image, mask), _recipe("idrid"), factor=0.25)
    assert not prepared.mask.any()


def test_restore_identity_without_resize():
    mask = np.zeros((3, 12, 14), dtype=bool)
    mask[1, 3:7, 2:9] = True
    prepared = prepare_case(_volume_case(np.ones((3, 12, 14), dtype=np.float32) * 0, mask), _recipe("lits"))
    restored = restore(prepared.mask, prepared)
    assert restored.shape == (3, 12, 14) and restored.dtype == np.float32
    np.testing.assert_array_equal(restored >= 0.5, mask)


def test_restore_after_resize_recovers_a_large_lesion():
    image = np.full((64, 96, 3), 120, dtype=np.uint8)
    mask = np.zeros((64, 96), dtype=bool)
    mask[16:48, 24:72] = True
    prepared = prepare_case(_fundus_case(image, mask), _recipe("idrid"), size=(32, 48))
    restored = restore(prepared.mask, prepared) >= 0.5
    assert restored.shape == (64, 96)
    iou = (restored & mask).sum() / (restored | mask).sum()
    assert iou > 0.95


def test_restore_rejects_wrong_shape():
    prepared = prepare_case(_fundus_case(np.zeros((8, 8, 3), dtype=np.uint8)), _recipe("idrid"))
    with pytest.raises(ValueError, match=r"stack must have shape \(1, 8, 8\)"):
        restore(np.zeros((8, 8)), prepared)


def test_prepare_rejects_non_case_and_bad_dataset():
    with pytest.raises(TypeError, match="case must be a helpers.data.layouts.Case"):
        prepare_case(np.zeros((2, 2)), _recipe("wmh"))
    with pytest.raises(ValueError, match="dataset must be one of"):
        _recipe("brats")
    with pytest.raises(TypeError, match="recipe must be a helpers.data.preprocessing.Recipe"):
        preprocessing_record("lits")


def test_save_and_load_roundtrip(tmp_path):
    ws = Workspace(tmp_path)
    image = np.random.default_rng(5).normal(0, 1, (4, 10, 12)).astype(np.float32)
    mask = image > 1
    prepared = prepare_case(_volume_case(image, mask, ignore=image < -2), _recipe("wmh"), size=(5, 6))
    path = save_prepared(ws, "wmh", prepared)
    assert path == tmp_path / "prepared" / "wmh" / "v1.npz"
    loaded = load_prepared(ws, "wmh", "v1")
    assert isinstance(loaded, PreparedCase)
    for name in ("image", "mask", "ignore", "affine"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(prepared, name))
    for name in ("case_id", "spacing", "original_shape", "scale", "kind", "record"):
        assert getattr(loaded, name) == getattr(prepared, name)


def test_load_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"prepared file .*nope\.npz.*not found"):
        load_prepared(Workspace(tmp_path), "lits", "nope")


def test_record_names_the_choices():
    record = preprocessing_record(_recipe("lits"), size=(64, 64))
    assert record["normalization"]["window_hu"] == [-200.0, 250.0]
    assert record["resize"]["size"] == [64, 64] and record["kind"] == "volume"
    assert preprocessing_record(_recipe("idrid"))["samples"] == "one image per case"


def test_restore_volume_after_resize_shape_and_values():
    # a constant probability stays constant through order-1 resizing; the slice axis is untouched
    image = np.zeros((3, 20, 30), dtype=np.float32)
    prepared = prepare_case(_volume_case(image), _recipe("lits"), size=(10, 15))
    stack = np.full((3, 10, 15), 0.25, dtype=np.float32)
    stack[1] = 0.75
    restored = restore(stack, prepared)
    assert restored.shape == (3, 20, 30)
    np.testing.assert_allclose(restored[[0, 2]], 0.25, atol=1e-6)
    np.testing.assert_allclose(restored[1], 0.75, atol=1e-6)


def test_liver_roi_zeroes_outside_the_dilated_liver(tmp_path):
    import nibabel as nib

    from helpers.data.layouts import to_nifti_array

    # a 1 x 9 x 9 label: liver = the single voxel (4, 4), spacing 1 x 2 x 1 mm (y, x).
    # A 2 mm disc reaches 1 voxel along y (2 mm) and 2 along x (1 mm each); (y, x) = (1, 1) offsets are
    # sqrt(2^2 + 1^2) = 2.24 mm away: outside. So the ROI is the plus-shape {(4,2..6), (3,4), (5,4)}: 7 voxels.
    label = np.zeros((1, 9, 9), dtype=np.uint8)
    label[0, 4, 4] = 1
    path = tmp_path / "segmentation-0.nii"
    nib.save(nib.Nifti1Image(to_nifti_array(label), np.diag([1.0, 2.0, 1.0, 1.0])), str(path))
    hu = np.full((1, 9, 9), 250.0, dtype=np.float32)  # normalises to 1 everywhere
    case = Case("volume-0", hu, np.zeros((1, 9, 9), bool), None, (1.0, 2.0, 1.0), "training", "v.nii", np.eye(4),
                {"label_file": str(path)})
    prepared = prepare_case(case, _recipe("lits"), liver_roi_mm=2.0)
    inside = prepared.image[0, 0] == 1.0
    expected = np.zeros((9, 9), bool)
    expected[4, 2:7] = True
    expected[3, 4] = expected[5, 4] = True
    np.testing.assert_array_equal(inside, expected)
    assert not prepared.image[0, 0][~expected].any()  # outside: the window floor, 0
    assert prepared.record["region_of_interest"]["margin_mm"] == 2.0
    assert prepare_case(case, _recipe("lits")).record["region_of_interest"] is None
    with pytest.raises(ValueError, match="liver_roi_mm applies to LiTS only"):
        prepare_case(_volume_case(hu), _recipe("wmh"), liver_roi_mm=2.0)
    with pytest.raises(ValueError, match="needs a LiTS case with meta\\['label_file'\\]"):
        prepare_case(_volume_case(hu), _recipe("lits"), liver_roi_mm=2.0)
    with pytest.raises(ValueError, match="liver_roi_mm must be a non-negative finite number"):
        prepare_case(case, _recipe("lits"), liver_roi_mm=-1.0)
