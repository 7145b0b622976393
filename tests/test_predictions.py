from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import tifffile
from imageio import v3 as iio
from skimage import measure

from helpers.data import predictions as P


def _volume_mask():
    # asymmetric shape so that an axis mix-up cannot go unnoticed: (z, y, x) = (3, 4, 5)
    mask = np.zeros((3, 4, 5), bool)
    mask[0, 1, 2] = True
    mask[2, 3, 4] = True
    mask[1, 0:2, 0:3] = True
    return mask


# ------------------------------------------------------------------------------------------- postprocess


def test_postprocess_threshold_is_inclusive_at_one_half():
    prob = np.array([[0.49, 0.5, 0.51]], dtype=np.float32)
    assert P.postprocess(prob).tolist() == [[False, True, True]]


def test_postprocess_removes_components_smaller_than_k_hand_derived():
    prob = np.zeros((6, 6))
    prob[0, 0] = 0.9  # a single voxel: size 1
    prob[2, 2] = prob[3, 3] = prob[4, 4] = 0.8  # diagonal chain: one component of 3 under 8-connectivity
    assert P.postprocess(prob, min_component_voxels=0).sum() == 4
    assert P.postprocess(prob, min_component_voxels=1).sum() == 4  # k = 1 removes nothing (no component < 1)
    kept = P.postprocess(prob, min_component_voxels=3)  # size 1 < 3 removed, size 3 kept (not smaller)
    assert kept.sum() == 3 and not kept[0, 0] and kept[3, 3]
    assert P.postprocess(prob, min_component_voxels=4).sum() == 0


def test_postprocess_uses_full_connectivity_in_3d():
    prob = np.zeros((2, 2, 2))
    prob[0, 0, 0] = prob[1, 1, 1] = 1.0  # corner-touching: one component of 2 under 26-connectivity
    assert P.postprocess(prob, min_component_voxels=2).sum() == 2


def test_postprocess_matches_skimage_component_sizes_on_random_masks():
    rng = np.random.default_rng(0)
    for _ in range(5):
        prob = rng.random((6, 20, 20))
        k = int(rng.integers(2, 6))
        labels = measure.label(prob >= 0.5, connectivity=3)
        sizes = np.bincount(labels.ravel())
        expected = (labels > 0) & (sizes[labels] >= k)
        np.testing.assert_array_equal(P.postprocess(prob, min_component_voxels=k), expected)


def test_postprocess_empty_stays_empty():
    assert not P.postprocess(np.zeros((4, 4)), min_component_voxels=3).any()


@pytest.mark.parametrize(
    "prob, kwargs, message",
    [
        (np.zeros(4), {}, "prob must be a 2D or 3D float array"),
        (np.zeros((2, 2), int), {}, "prob must be a 2D or 3D float array"),
        (np.full((2, 2), np.nan), {}, "prob must be finite"),
        (np.zeros((2, 2)), {"min_component_voxels": -1}, "min_component_voxels must be a non-negative integer"),
        (np.zeros((2, 2)), {"min_component_voxels": 2.5}, "min_component_voxels must be a non-negative integer"),
    ],
)
def test_postprocess_rejects_bad_input(prob, kwargs, message):
    with pytest.raises(ValueError, match=message):
        P.postprocess(prob, **kwargs)


# ------------------------------------------------------------------------------------------- writing


def test_volume_round_trip_with_affine_and_axis_order(tmp_path):
    mask = _volume_mask()
    affine = np.diag([0.9, 0.8, 3.0, 1.0])
    affine[:3, 3] = [10, -5, 2]
    path = P.write_prediction(tmp_path, "unet", "case01", mask, kind="volume", affine=affine)
    assert path == tmp_path / "unet" / "case01.nii.gz"
    img = nib.load(str(path))
    np.testing.assert_allclose(img.affine, affine)
    data = np.asarray(img.dataobj)
    assert data.dtype == np.uint8 and data.shape == (5, 4, 3)  # NIfTI (x, y, z)
    assert data[2, 1, 0] == 1 and data[4, 3, 2] == 1  # voxel (z, y, x) = (0, 1, 2) lies at (x, y, z) = (2, 1, 0)
    assert set(np.unique(data)) == {0, 1}
    back = P.read_prediction(tmp_path, "unet", "case01", shape=mask.shape)
    assert back.dtype == bool
    np.testing.assert_array_equal(back, mask)
    assert [p.name for p in (tmp_path / "unet").iterdir()] == ["case01.nii.gz"]  # no temporary file left


def test_png_round_trip_stores_0_and_255(tmp_path):
    mask = np.zeros((6, 9), bool)
    mask[1:3, 4:8] = True
    path = P.write_prediction(tmp_path, "resunet", "IDRiD_55", mask, kind="image")
    raw = iio.imread(path)
    assert raw.dtype == np.uint8 and raw.shape == (6, 9) and set(np.unique(raw)) == {0, 255}
    np.testing.assert_array_equal(P.read_prediction(tmp_path, "resunet", "IDRiD_55"), mask)


def test_tif_round_trip_and_probabilities(tmp_path):
    mask = np.zeros((5, 7), bool)
    mask[2, 3] = True
    prob = np.where(mask, 0.75, 0.125).astype(np.float32)
    P.write_prediction(tmp_path, "unet", "a", mask, kind="image", image_format="tif", prob=prob)
    assert set(np.unique(tifffile.imread(tmp_path / "unet" / "a.tif"))) == {0, 255}
    np.testing.assert_array_equal(P.read_prediction(tmp_path, "unet", "a"), mask)
    np.testing.assert_array_equal(P.read_probabilities(tmp_path, "unet", "a"), prob)


def test_volume_probabilities(tmp_path):
    mask = _volume_mask()
    prob = np.where(mask, 0.9, 0.1).astype(np.float32)
    P.write_prediction(tmp_path, "unet", "c", mask, kind="volume", prob=prob)
    np.testing.assert_array_equal(P.read_probabilities(tmp_path, "unet", "c"), prob)
    assert P.list_cases(tmp_path, "unet") == ["c"]  # the probabilities folder holds no case of its own


def test_empty_prediction_is_written_and_read(tmp_path):
    P.write_prediction(tmp_path, "unet", "e", np.zeros((2, 3, 4), bool), kind="volume")
    assert not P.read_prediction(tmp_path, "unet", "e").any()


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"mask": np.zeros((2, 2), np.uint8), "kind": "image"}, TypeError, "mask must be a boolean array"),
        ({"mask": np.zeros((2, 2), bool), "kind": "volume"}, ValueError, "must have 3 axes"),
        ({"mask": np.zeros((2, 2), bool), "kind": "slab"}, ValueError, "kind must be 'volume' or 'image'"),
        ({"mask": np.zeros((2, 2), bool), "kind": "image", "image_format": "jpg"}, ValueError, "image_format"),
        ({"mask": np.zeros((2, 2), bool), "kind": "image", "prob": np.full((2, 2), 2.0)}, ValueError, r"\[0, 1\]"),
        ({"mask": np.zeros((2, 2), bool), "kind": "image", "prob": np.zeros((3, 2))}, ValueError, "prob shape"),
        ({"mask": np.zeros((2, 2, 2), bool), "kind": "volume", "affine": np.eye(3)}, ValueError, "affine"),
    ],
)
def test_write_prediction_rejects_bad_input(tmp_path, kwargs, error, message):
    with pytest.raises(error, match=message):
        P.write_prediction(tmp_path, "unet", "x", **kwargs)


@pytest.mark.parametrize("name", ["../evil", "", "_seeds", ".hidden"])
def test_write_prediction_rejects_bad_names(tmp_path, name):
    with pytest.raises(ValueError, match="model must be a non-empty file name"):
        P.write_prediction(tmp_path, name, "x", np.zeros((2, 2), bool), kind="image")


# ------------------------------------------------------------------------------------------- listing and reading


def test_list_models_skips_private_and_empty_folders(tmp_path):
    for model in ("unet", "attention_unet"):
        P.write_prediction(tmp_path, model, "a", np.zeros((2, 2), bool), kind="image")
    P.write_prediction(tmp_path / "_seeds" / "seed1", "unet", "a", np.zeros((2, 2), bool), kind="image")
    (tmp_path / "empty_model").mkdir()
    (tmp_path / "notes.txt").write_text("not a model")
    assert P.list_models(tmp_path) == ["attention_unet", "unet"]
    assert P.list_models(tmp_path / "_seeds" / "seed1") == ["unet"]
    assert P.list_models(tmp_path / "missing") == []


def test_bring_your_own_nnunet_style_prediction(tmp_path):
    # nnU-Net writes uint8 0/1 NIfTI in (x, y, z); any integer dtype with values {0, 1} is accepted
    mask = _volume_mask()
    (tmp_path / "nnunet").mkdir()
    nib.save(nib.Nifti1Image(np.transpose(mask).astype(np.int16), np.eye(4)), str(tmp_path / "nnunet" / "c7.nii.gz"))
    case = SimpleNamespace(case_id="c7", mask=mask)
    np.testing.assert_array_equal(P.read_prediction(tmp_path, "nnunet", case), mask)
    assert P.list_models(tmp_path) == ["nnunet"]


def test_read_missing_prediction_names_the_case(tmp_path):
    (tmp_path / "unet").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no prediction for case 'case9'"):
        P.read_prediction(tmp_path, "unet", "case9")


def test_read_shape_mismatch_names_the_file(tmp_path):
    P.write_prediction(tmp_path, "unet", "c", _volume_mask(), kind="volume")
    case = SimpleNamespace(case_id="c", mask=np.zeros((3, 4, 6), bool))
    message = r"c\.nii\.gz: prediction shape \(3, 4, 5\) differs from the case's \(3, 4, 6\)"
    with pytest.raises(ValueError, match=message):
        P.read_prediction(tmp_path, "unet", case)


def test_read_non_binary_nifti(tmp_path):
    (tmp_path / "m").mkdir()
    data = np.zeros((4, 4, 2), np.uint8)
    data[0, 0, 0] = 2  # a multi-label map, not a binary mask
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "m" / "c.nii.gz"))
    with pytest.raises(ValueError, match=r"c\.nii\.gz: non-binary values \[0, 2\]"):
        P.read_prediction(tmp_path, "m", "c")


def test_read_non_binary_png(tmp_path):
    (tmp_path / "m").mkdir()
    iio.imwrite(tmp_path / "m" / "c.png", np.array([[0, 128], [255, 0]], np.uint8))
    with pytest.raises(ValueError, match=r"c\.png: non-binary values"):
        P.read_prediction(tmp_path, "m", "c")


def test_png_with_0_and_1_is_accepted(tmp_path):
    (tmp_path / "m").mkdir()
    iio.imwrite(tmp_path / "m" / "c.png", np.array([[0, 1], [1, 0]], np.uint8))
    assert P.read_prediction(tmp_path, "m", "c").tolist() == [[False, True], [True, False]]


def test_read_rgb_png_is_rejected(tmp_path):
    (tmp_path / "m").mkdir()
    iio.imwrite(tmp_path / "m" / "c.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match=r"c\.png: expected a single-channel 2D image"):
        P.read_prediction(tmp_path, "m", "c")


def test_read_corrupt_file(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "c.nii.gz").write_bytes(b"this is not a nifti file")
    with pytest.raises(ValueError, match=r"c\.nii\.gz: cannot read prediction"):
        P.read_prediction(tmp_path, "m", "c")


def test_read_two_files_for_one_case(tmp_path):
    P.write_prediction(tmp_path, "m", "c", np.zeros((2, 2), bool), kind="image")
    P.write_prediction(tmp_path, "m", "c", np.zeros((2, 2), bool), kind="image", image_format="tif")
    with pytest.raises(ValueError, match="several predictions for case 'c'"):
        P.read_prediction(tmp_path, "m", "c")


def test_read_rejects_a_bad_case_argument(tmp_path):
    with pytest.raises(TypeError, match="case must be a case id or a Case"):
        P.read_prediction(tmp_path, "m", 3)


# ---- matching prediction files to cases ----------------------------------------------------------------------


def _cases(*ids, files=None):
    """Case-like records: ``case_id`` plus the case's own files (images, labels) as CaseFiles carries them."""
    files = files or {}
    return [SimpleNamespace(case_id=c, images=tuple(files.get(c, ())), labels={}) for c in ids]


def _touch(folder, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")
    return folder


def test_match_by_exact_case_id(tmp_path):
    folder = _touch(tmp_path / "m", "Utrecht_0.nii.gz", "Utrecht_2.nii.gz")
    m = P.match_predictions(_cases("Utrecht_0", "Utrecht_2"), folder)
    assert {c: (p.name, r) for c, (p, r) in m.matched.items()} == {
        "Utrecht_0": ("Utrecht_0.nii.gz", "case id"), "Utrecht_2": ("Utrecht_2.nii.gz", "case id")}
    assert m.unmatched == {} and m.missing == ()


def test_match_by_the_reference_files_own_name(tmp_path):
    # LiTS: case volume-3 has the files volume-3.nii and segmentation-3.nii; a tool named its output after the
    # reference; WMH's reference file is called wmh.nii.gz in every case, so that name ties nothing
    own = {"volume-3": ["/d/volume-3.nii", "/d/segmentation-3.nii"], "volume-4": ["/d/volume-4.nii", "/d/wmh.nii.gz"],
           "volume-5": ["/d/volume-5.nii", "/e/wmh.nii.gz"]}
    folder = _touch(tmp_path / "m", "segmentation-3.nii.gz", "wmh.nii.gz")
    m = P.match_predictions(_cases("volume-3", "volume-4", "volume-5", files=own), folder)
    assert {c: (p.name, r) for c, (p, r) in m.matched.items()} == {
        "volume-3": ("segmentation-3.nii.gz", "reference name")}
    assert [p.name for p in m.unmatched] == ["wmh.nii.gz"]
    assert m.missing == ("volume-4", "volume-5")


def test_match_by_nnunet_number(tmp_path):
    # nnU-Net: WMH_0012.nii.gz -> the case whose id ends in 12; 7 ends two case ids (ambiguous, left unmatched)
    folder = _touch(tmp_path / "m", "WMH_0012.nii.gz", "WMH_0000.nii.gz", "WMH_0007.nii.gz")
    cases = _cases("Utrecht_12", "Singapore_0", "GE3T_7", "Amsterdam_GE1T5_7")
    m = P.match_predictions(cases, folder)
    assert {c: (p.name, r) for c, (p, r) in m.matched.items()} == {
        "Utrecht_12": ("WMH_0012.nii.gz", "nnU-Net number"), "Singapore_0": ("WMH_0000.nii.gz", "nnU-Net number")}
    (reason,) = [r for p, r in m.unmatched.items() if p.name == "WMH_0007.nii.gz"]
    assert reason.startswith("number 7 ends several case ids")
    assert m.missing == ("GE3T_7", "Amsterdam_GE1T5_7")


def test_match_by_mapping_csv_takes_precedence(tmp_path):
    folder = _touch(tmp_path / "m", "a.png", "IDRiD_02.png", "b.png")
    csv = tmp_path / "map.csv"
    csv.write_text("case_id,file\nIDRiD_01,a.png\nIDRiD_02,b.png\n")
    m = P.match_predictions(_cases("IDRiD_01", "IDRiD_02"), folder, mapping=P.read_mapping(csv))
    assert {c: (p.name, r) for c, (p, r) in m.matched.items()} == {
        "IDRiD_01": ("a.png", "mapping"), "IDRiD_02": ("b.png", "mapping")}
    # the file named after the case is left over, listed with its reason, never silently dropped
    assert {p.name: r for p, r in m.unmatched.items()} == {"IDRiD_02.png": "case 'IDRiD_02' has b.png already"}
    table = m.table()
    assert table["status"].tolist() == ["matched", "matched", "unmatched file"]


def test_mapping_errors_name_the_file_and_the_case(tmp_path):
    folder = _touch(tmp_path / "m", "a.png")
    bad = tmp_path / "bad.csv"
    bad.write_text("case,path\nx,a.png\n")
    with pytest.raises(ValueError, match=r"bad\.csv.*expected the columns 'case_id,file'"):
        P.read_mapping(bad)
    with pytest.raises(ValueError, match=r"case ids not in the dataset: \['IDRiD_09'\]"):
        P.match_predictions(_cases("IDRiD_01"), folder, mapping={"IDRiD_09": "a.png"})
    with pytest.raises(FileNotFoundError, match=r"file 'z\.png' for case 'IDRiD_01' not found"):
        P.match_predictions(_cases("IDRiD_01"), folder, mapping={"IDRiD_01": "z.png"})


def test_unmatched_files_and_cases_without_prediction_are_listed(tmp_path):
    folder = _touch(tmp_path / "m", "Utrecht_0.nii.gz", "scan_final.nii.gz", "notes.txt")
    m = P.match_predictions(_cases("Utrecht_0", "Utrecht_1"), folder)
    assert {p.name: r for p, r in m.unmatched.items()} == {"scan_final.nii.gz": "no case of this name or number"}
    assert m.missing == ("Utrecht_1",)
    rows = m.table().to_dict("records")
    assert rows[-1] == {"status": "no prediction", "case_id": "Utrecht_1", "file": "", "rule": ""}


def test_a_second_file_for_a_matched_case_is_listed_not_used(tmp_path):
    folder = _touch(tmp_path / "m", "volume-3.nii.gz", "segmentation-3.nii.gz")
    own = {"volume-3": ["/d/volume-3.nii", "/d/segmentation-3.nii"]}
    m = P.match_predictions(_cases("volume-3", files=own), folder)
    assert {c: (p.name, r) for c, (p, r) in m.matched.items()} == {"volume-3": ("volume-3.nii.gz", "case id")}
    assert {p.name: r for p, r in m.unmatched.items()} == {
        "segmentation-3.nii.gz": "case 'volume-3' has volume-3.nii.gz already"}
