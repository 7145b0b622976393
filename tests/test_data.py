"""Tests of helpers.data: loaders for the real layouts (trees written by hand here, independent of the
synthetic generator), validation errors naming the file, the data section's outputs and checkpoints."""

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import tifffile
import imageio.v3 as iio

from helpers import data
from helpers.data import layouts
from helpers.data.datasets import loader_options
from helpers.data.layouts import Case
from helpers.data import check_dataset, find_cases, load_cases, prepare_dataset, q1_upper_bound, read_case
from helpers.base.paths import Workspace

SHAPE = (4, 6, 5)  # (z, y, x)
ZOOMS = (0.9, 0.8, 3.0)  # NIfTI (x, y, z) -> spacing (3.0, 0.8, 0.9)


def _affine(zooms=ZOOMS, shift=0.0):
    a = np.diag([*zooms, 1.0])
    a[:3, 3] = (10.0 + shift, -5.0, 2.0)
    return a


def _nifti(path: Path, zyx: np.ndarray, *, zooms=ZOOMS, affine=None, dtype=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(zyx).transpose(2, 1, 0)
    if dtype is not None:
        arr = arr.astype(dtype)
    img = nib.Nifti1Image(arr, _affine(zooms) if affine is None else affine)
    nib.save(img, str(path))
    return path


def _wmh_label():
    label = np.zeros(SHAPE, dtype=np.uint8)
    label[1, 1:3, 1:3] = 1  # lesion 1: 4 voxels
    label[3, 5, 4] = 1  # lesion 2: 1 voxel
    label[2, 0, 0] = 2  # other pathology
    return label


def _wmh_subject(folder: Path, *, ext=".nii.gz", flair_value=None):
    flair = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE) if flair_value is None else flair_value
    _nifti(folder / "pre" / f"FLAIR{ext}", flair)
    _nifti(folder / "pre" / f"T1{ext}", -np.ones(SHAPE, dtype=np.float32))
    _nifti(folder / f"wmh{ext}", _wmh_label(), dtype=np.uint8)


@pytest.fixture
def wmh2022(tmp_path):
    root = tmp_path / "wmh"
    _wmh_subject(root / "training" / "Utrecht" / "0")
    _wmh_subject(root / "training" / "Amsterdam" / "GE3T" / "100")
    _wmh_subject(root / "test" / "Singapore" / "51")
    # observers' extra annotations must not be read as subjects
    _nifti(root / "additional_annotations" / "observer_o3" / "training" / "Utrecht" / "0" / "result.nii.gz",
           _wmh_label(), dtype=np.uint8)
    return root


# ----------------------------------------------------------------------------------------------- conventions

def test_nifti_axis_convention():
    xyz = np.arange(24).reshape(2, 3, 4)  # (x, y, z)
    zyx = layouts.from_nifti_array(xyz)
    assert zyx.shape == (4, 3, 2)
    assert zyx[3, 2, 1] == xyz[1, 2, 3]
    np.testing.assert_array_equal(layouts.to_nifti_array(zyx), xyz)
    four = np.zeros((2, 3, 4, 5))
    assert layouts.from_nifti_array(four).shape == (4, 3, 2, 5)
    with pytest.raises(ValueError, match="arr must be 3D"):
        layouts.to_nifti_array(np.zeros((2, 2)))


def test_q1_upper_bound_hand_derived():
    # numpy linear interpolation: position 0.25 * (5 - 1) = 1 -> the second smallest value
    assert q1_upper_bound([5.0, 1.0, 4.0, 2.0, 3.0]) == 2.0
    # position 0.25 * 3 = 0.75 between 1 and 2 -> 1.75
    assert q1_upper_bound([1.0, 2.0, 3.0, 4.0]) == 1.75
    assert np.isnan(q1_upper_bound([]))


# ----------------------------------------------------------------------------------------------- WMH

def test_wmh_2022_tree(wmh2022):
    cases = {c.case_id: c for c in load_cases("wmh", wmh2022)}
    assert sorted(cases) == ["Amsterdam_GE3T_100", "Singapore_51", "Utrecht_0"]
    case = cases["Utrecht_0"]
    assert isinstance(case, Case)
    assert case.image.shape == (*SHAPE, 2) and case.image.dtype == np.float32
    # channel 0 is FLAIR (the arange written above), channel 1 is T1 (-1 everywhere), in (z, y, x) order
    assert case.image[2, 3, 1, 0] == 2 * 30 + 3 * 5 + 1
    assert np.all(case.image[..., 1] == -1)
    assert case.spacing == pytest.approx((3.0, 0.8, 0.9), abs=1e-6)  # NIfTI stores float32 zooms
    assert case.mask.dtype == bool and int(case.mask.sum()) == 5
    assert case.ignore is not None and int(case.ignore.sum()) == 1 and case.ignore[2, 0, 0]
    assert not np.any(case.mask & case.ignore)
    np.testing.assert_allclose(case.affine, _affine())
    assert case.subset == "training" and cases["Singapore_51"].subset == "test"
    assert cases["Amsterdam_GE3T_100"].meta["site"] == "Amsterdam"
    assert cases["Amsterdam_GE3T_100"].meta["scanner"] == "GE3T"
    assert case.source.endswith("Utrecht/0/pre/FLAIR.nii.gz")


def test_wmh_prediction_maps_back_to_source_grid(wmh2022):
    case = next(c for c in load_cases("wmh", wmh2022) if c.case_id == "Utrecht_0")
    exported = nib.Nifti1Image(layouts.to_nifti_array(case.mask.astype(np.uint8)), case.affine)
    label = np.asarray(nib.load(str(wmh2022 / "training/Utrecht/0/wmh.nii.gz")).dataobj)
    np.testing.assert_array_equal(np.asarray(exported.dataobj), (label == 1).astype(np.uint8))


def test_wmh_2017_tree_uncompressed(tmp_path):
    root = tmp_path / "wmh2017"
    _wmh_subject(root / "Utrecht" / "0", ext=".nii")
    _wmh_subject(root / "GE3T" / "100", ext=".nii")
    cases = {c.case_id: c for c in load_cases("wmh", root)}
    assert sorted(cases) == ["Amsterdam_GE3T_100", "Utrecht_0"]
    assert cases["Utrecht_0"].subset is None and cases["Utrecht_0"].meta["layout"] == "2017"
    assert cases["Amsterdam_GE3T_100"].meta["scanner"] == "GE3T"
    assert cases["Utrecht_0"].source.endswith("FLAIR.nii")


def test_wmh_options(wmh2022):
    case = find_cases("wmh", wmh2022, loader_options("wmh", {"modalities": ("FLAIR",),
                                                             "ignore_other_pathology": False}))[0]
    loaded = read_case(case)
    assert loaded.image.shape == SHAPE and loaded.ignore is None
    with pytest.raises(ValueError, match="modalities must be a non-empty sequence"):
        loader_options("wmh", {"modalities": ("FLAIR", "DWI")})
    with pytest.raises(TypeError, match="unknown option for dataset 'wmh'"):
        loader_options("wmh", {"lesion_types": ("MA",)})


def test_wmh_missing_file(wmh2022):
    missing = wmh2022 / "training" / "Utrecht" / "0" / "pre" / "T1.nii.gz"
    missing.unlink()
    with pytest.raises(FileNotFoundError, match=r"WMH image file .*Utrecht/0/pre/T1\.nii\.gz.*not found"):
        find_cases("wmh", wmh2022)


def test_wmh_missing_label(wmh2022):
    (wmh2022 / "test" / "Singapore" / "51" / "wmh.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"WMH label file .*Singapore/51/wmh\.nii\.gz"):
        find_cases("wmh", wmh2022)


def test_wmh_unreadable_file(wmh2022):
    bad = wmh2022 / "training" / "Utrecht" / "0" / "pre" / "FLAIR.nii.gz"
    bad.write_bytes(b"this is not a nifti file")
    files = next(f for f in find_cases("wmh", wmh2022) if f.case_id == "Utrecht_0")
    with pytest.raises(ValueError, match=r"WMH image file .*Utrecht/0/pre/FLAIR\.nii\.gz.*unreadable"):
        read_case(files)


def test_wmh_label_shape_mismatch(wmh2022):
    _nifti(wmh2022 / "training" / "Utrecht" / "0" / "wmh.nii.gz", np.zeros((4, 6, 4)), dtype=np.uint8)
    files = next(f for f in find_cases("wmh", wmh2022) if f.case_id == "Utrecht_0")
    with pytest.raises(ValueError, match=r"WMH label file .*wmh\.nii\.gz.*shape \(4, 6, 4\).*does not match"):
        read_case(files)


def test_wmh_grid_mismatch(wmh2022):
    folder = wmh2022 / "training" / "Utrecht" / "0"
    _nifti(folder / "pre" / "T1.nii.gz", np.zeros(SHAPE, dtype=np.float32), affine=_affine(shift=2.0))
    files = next(f for f in find_cases("wmh", wmh2022) if f.case_id == "Utrecht_0")
    with pytest.raises(ValueError, match=r"WMH image file .*T1\.nii\.gz.*grid \(affine\) does not match.*max "
                                         r"difference 2 mm"):
        read_case(files)


def test_wmh_label_values_outside_set(wmh2022):
    label = _wmh_label()
    label[0, 0, 0] = 3
    _nifti(wmh2022 / "training" / "Utrecht" / "0" / "wmh.nii.gz", label, dtype=np.uint8)
    files = next(f for f in find_cases("wmh", wmh2022) if f.case_id == "Utrecht_0")
    with pytest.raises(ValueError, match=r"label file .*wmh\.nii\.gz.*label values \[3\] outside the expected set"):
        read_case(files)


def test_wmh_non_integer_labels(wmh2022):
    label = _wmh_label().astype(np.float32)
    label[0, 0, 0] = 0.5
    _nifti(wmh2022 / "training" / "Utrecht" / "0" / "wmh.nii.gz", label, dtype=np.float32)
    files = next(f for f in find_cases("wmh", wmh2022) if f.case_id == "Utrecht_0")
    with pytest.raises(ValueError, match="non-integer label values"):
        read_case(files)


def test_wmh_non_finite_intensity(wmh2022):
    flair = np.ones(SHAPE, dtype=np.float32)
    flair[1, 1, 1] = np.nan
    flair[0, 0, 0] = np.inf
    _wmh_subject(wmh2022 / "training" / "Utrecht" / "0", flair_value=flair)
    files = next(f for f in find_cases("wmh", wmh2022) if f.case_id == "Utrecht_0")
    with pytest.raises(ValueError, match=r"FLAIR\.nii\.gz.*2 non-finite intensities"):
        read_case(files)


# (a zero zoom cannot be provoked: nibabel replaces it by 1 on load, with a logged warning)
@pytest.mark.parametrize("zoom", [np.nan, np.inf])
def test_wmh_bad_spacing(wmh2022, zoom):
    path = wmh2022 / "training" / "Utrecht" / "0" / "pre" / "FLAIR.nii.gz"
    img = nib.load(str(path))
    img = nib.Nifti1Image(np.asarray(img.dataobj), img.affine, img.header)
    img.header["pixdim"][3] = zoom  # the z zoom
    nib.save(img, str(path))
    files = next(f for f in find_cases("wmh", wmh2022) if f.case_id == "Utrecht_0")
    with pytest.raises(ValueError, match=r"FLAIR\.nii\.gz.*spacing must be positive and finite"):
        read_case(files)


def test_wmh_no_subjects(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no WMH subject folders found"):
        find_cases("wmh", tmp_path / "empty")


def test_root_missing_and_bad_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match="folder not found"):
        find_cases("wmh", tmp_path / "nowhere")
    with pytest.raises(ValueError, match="dataset must be one of"):
        find_cases("brats", tmp_path)
    with pytest.raises(TypeError, match="root must be a path"):
        find_cases("wmh", 3)


# ----------------------------------------------------------------------------------------------- LiTS

def _lits_label(tumour=True):
    label = np.zeros(SHAPE, dtype=np.uint8)
    label[:, 1:5, 1:4] = 1  # liver: 4 * 4 * 3 = 48 voxels
    if tumour:
        label[2, 2:4, 2] = 2  # tumour: 2 voxels
    return label


def test_lits_batches_paired_by_id_across_folders(tmp_path):
    root = tmp_path / "lits"
    hu = np.full(SHAPE, -3024.0, dtype=np.float32)
    _nifti(root / "Training Batch 1" / "volume-0.nii", hu, dtype=np.int16)
    _nifti(root / "Training Batch 1" / "volume-10.nii", hu, dtype=np.int16)
    # a mirror with segmentations in another folder: pairing is by id, not by folder
    _nifti(root / "labels" / "segmentation-0.nii", _lits_label(), dtype=np.uint8)
    _nifti(root / "labels" / "segmentation-10.nii", _lits_label(tumour=False), dtype=np.uint8)
    cases = {c.case_id: c for c in load_cases("lits", root)}
    assert sorted(cases) == ["volume-0", "volume-10"]
    assert int(cases["volume-0"].mask.sum()) == 2 and not cases["volume-10"].mask.any()
    assert cases["volume-0"].image.min() == -3024.0  # raw HU, outliers kept
    assert cases["volume-0"].ignore is None and cases["volume-0"].subset == "training"
    liver = read_case(find_cases("lits", root, layouts.LiTSOptions(target="liver"))[0])
    assert int(liver.mask.sum()) == 48
    with pytest.raises(ValueError, match="target must be one of"):
        layouts.LiTSOptions(target="kidney")


def test_lits_missing_segmentation(tmp_path):
    root = tmp_path / "lits"
    _nifti(root / "Training Batch 2" / "volume-28.nii", np.zeros(SHAPE), dtype=np.int16)
    with pytest.raises(FileNotFoundError, match=r"volume-28\.nii.*no segmentation-28\.nii"):
        find_cases("lits", root)


def test_lits_msd_copy_detected(tmp_path):
    task = tmp_path / "msd" / "Task03_Liver"
    _nifti(task / "imagesTr" / "liver_3.nii.gz", np.zeros(SHAPE), dtype=np.int16)
    _nifti(task / "labelsTr" / "liver_3.nii.gz", _lits_label(), dtype=np.uint8)
    (task / "imagesTr" / "._liver_3.nii.gz").write_bytes(b"macOS resource fork")
    (task / "dataset.json").write_text(json.dumps({
        "labels": {"0": "background", "1": "liver", "2": "cancer"},
        "training": [{"image": "./imagesTr/liver_3.nii.gz", "label": "./labelsTr/liver_3.nii.gz"}],
    }))
    for root in (tmp_path / "msd", task):  # the dataset root or the task folder itself
        cases = load_cases("lits", root)
        assert [c.case_id for c in cases] == ["liver_3"]
        assert int(cases[0].mask.sum()) == 2 and cases[0].meta["layout"] == "msd"


def test_lits_msd_without_tumour_label(tmp_path):
    task = tmp_path / "Task03_Liver"
    task.mkdir()
    (task / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "liver"}}))
    with pytest.raises(ValueError, match=r"dataset\.json.*do not name"):
        find_cases("lits", tmp_path)


# ----------------------------------------------------------------------------------------------- IDRiD

IDRID_HW = (12, 18)


def _idrid_tree(root: Path):
    base = root / "A. Segmentation"
    gt = base / "2. All Segmentation Groundtruths"
    for subset_dir in ("a. Training Set", "b. Testing Set"):
        for folder in layouts.IDRID_FOLDERS.values():
            (gt / subset_dir / folder).mkdir(parents=True, exist_ok=True)
    image = np.full((*IDRID_HW, 3), 120, dtype=np.uint8)
    for stem, subset_dir in (("IDRiD_01", "a. Training Set"), ("IDRiD_55", "b. Testing Set")):
        path = base / "1. Original Images" / subset_dir / f"{stem}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        iio.imwrite(path, image, extension=".jpg")
    train = gt / "a. Training Set"
    ma = np.zeros(IDRID_HW, dtype=np.uint8)
    ma[2, 2] = 1
    ma[2, 5] = 1  # two single-pixel microaneurysms
    tifffile.imwrite(train / "1. Microaneurysms" / "IDRiD_01_MA.tif", ma)  # single-channel 0/1
    ex = np.zeros((*IDRID_HW, 3), dtype=np.uint8)
    ex[6:8, 6:9, 0] = 255  # one exudate of 6 pixels, RGB mask with lesion in red
    tifffile.imwrite(train / "3. Hard Exudates" / "IDRiD_01_EX.tif", ex, photometric="rgb")
    od = np.zeros(IDRID_HW, dtype=np.uint8)
    od[0:4, 10:14] = 255
    tifffile.imwrite(train / "5. Optic Disc" / "IDRiD_01_OD.tif", od)
    tifffile.imwrite(gt / "b. Testing Set" / "5. Optic Disc" / "IDRiD_55_OD.tif", od)
    return root


def test_idrid_absent_masks_mean_no_lesion(tmp_path):
    root = _idrid_tree(tmp_path / "idrid")
    cases = {c.case_id: c for c in load_cases("idrid", root)}
    assert sorted(cases) == ["IDRiD_01", "IDRiD_55"]
    one = cases["IDRiD_01"]
    assert one.image.shape == (*IDRID_HW, 3) and one.image.dtype == np.uint8
    assert one.spacing == (1.0, 1.0) and one.affine is None and one.subset == "training"
    assert int(one.mask.sum()) == 2 + 6  # MA union EX; the optic disc is never part of the target
    assert not one.mask[0:4, 10:14].any()
    assert one.meta["lesion_types_present"] == ["MA", "EX"]
    assert one.meta["lesion_types_absent"] == ["HE", "SE"]
    assert one.meta["lesions_per_type"] == {"MA": 2, "HE": 0, "EX": 1, "SE": 0}
    assert not cases["IDRiD_55"].mask.any() and cases["IDRiD_55"].subset == "test"
    report = data.describe_cases("idrid", cases.values())
    assert report["lesions_per_type"] == {"MA": 2, "HE": 0, "EX": 1, "SE": 0}
    assert report["absent_masks_per_type"] == {"HE": 2, "SE": 2, "MA": 1, "EX": 1}
    assert report["cases_without_target"] == ["IDRiD_55"]
    assert report["cases_per_subset"] == {"training": 1, "test": 1}


def test_idrid_lesion_type_option(tmp_path):
    root = _idrid_tree(tmp_path / "idrid")
    only_ex = read_case(find_cases("idrid", root, loader_options("idrid", {"lesion_types": ["EX"]}))[0])
    assert int(only_ex.mask.sum()) == 6
    with pytest.raises(ValueError, match="never the optic disc"):
        loader_options("idrid", {"lesion_types": ["MA", "OD"]})


def test_idrid_mask_shape_mismatch(tmp_path):
    root = _idrid_tree(tmp_path / "idrid")
    path = root / "A. Segmentation/2. All Segmentation Groundtruths/a. Training Set/2. Haemorrhages/IDRiD_01_HE.tif"
    tifffile.imwrite(path, np.zeros((12, 17), dtype=np.uint8))
    files = find_cases("idrid", root)[0]
    with pytest.raises(ValueError, match=r"IDRiD_01_HE\.tif.*shape \(12, 17\) does not match the image \(12, 18\)"):
        read_case(files)


def test_idrid_negative_mask_values(tmp_path):
    root = _idrid_tree(tmp_path / "idrid")
    path = root / "A. Segmentation/2. All Segmentation Groundtruths/a. Training Set/2. Haemorrhages/IDRiD_01_HE.tif"
    tifffile.imwrite(path, np.full(IDRID_HW, -1, dtype=np.int16))
    with pytest.raises(ValueError, match=r"IDRiD_01_HE\.tif.*negative values"):
        read_case(find_cases("idrid", root)[0])


def test_idrid_mask_without_image(tmp_path):
    root = _idrid_tree(tmp_path / "idrid")
    path = root / "A. Segmentation/2. All Segmentation Groundtruths/b. Testing Set/4. Soft Exudates/IDRiD_60_SE.tif"
    tifffile.imwrite(path, np.zeros(IDRID_HW, dtype=np.uint8))
    with pytest.raises(FileNotFoundError, match=r"IDRiD_60_SE\.tif.*no image IDRiD_60\.jpg"):
        find_cases("idrid", root)


def test_idrid_missing_mask_folder(tmp_path):
    root = _idrid_tree(tmp_path / "idrid")
    shutil.rmtree(root / "A. Segmentation/2. All Segmentation Groundtruths/a. Training Set/2. Haemorrhages")
    with pytest.raises(FileNotFoundError, match=r"mask folder .*2\. Haemorrhages.*not found"):
        find_cases("idrid", root)


def test_idrid_unreadable_image(tmp_path):
    root = _idrid_tree(tmp_path / "idrid")
    (root / "A. Segmentation/1. Original Images/a. Training Set/IDRiD_01.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=r"IDRiD image file .*IDRiD_01\.jpg.*unreadable"):
        read_case(find_cases("idrid", root)[0])


def test_idrid_wrong_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="no 'A. Segmentation/1. Original Images' folder"):
        find_cases("idrid", tmp_path)


# ----------------------------------------------------------------------------------------------- the section

SMALL = {
    "wmh": {"n_training": 4, "n_test": 2, "shape": (6, 48, 48)},
    "lits": {"n_volumes": 6, "shape": (6, 48, 48)},
    "idrid": {"n_training": 4, "n_test": 2, "shape": (64, 96)},
}


@pytest.mark.parametrize("dataset", ["wmh", "lits", "idrid"])
def test_prepare_dataset_writes_consistent_outputs(tmp_path, dataset):
    ws = Workspace(tmp_path)
    summary = prepare_dataset(ws, dataset, seed=0, synthetic=SMALL[dataset], progress=False)
    results = ws.results(dataset)
    manifest = json.loads((results / "data_manifest.json").read_text())
    assert manifest["source"] == "synthetic" and manifest["synthetic"] is True
    assert manifest["generator"]["seed"] == 0 and manifest["n_cases"] == 6
    cases = pd.read_csv(results / "cases.csv")
    lesions = pd.read_csv(results / "lesions.csv")
    assert len(cases) == 6 and set(cases["split"]) == {"train", "val", "test"}
    assert int(cases["n_lesions"].sum()) == len(lesions) == len(summary.lesions)
    assert {"dataset", "split", "case_id", "lesion_id", "n_voxels", "volume_mm3", "area_fraction"} <= set(lesions)
    assert (lesions["area_fraction"] > 0).all() and (lesions["area_fraction"] <= 1).all()
    splits = json.loads((results / "splits.json").read_text())
    assert sorted(splits["train"] + splits["val"] + splits["test"]) == sorted(cases["case_id"])
    assert len(list(ws.prepared(dataset).glob("*.npz"))) == 6
    assert (results / "preprocessing.json").is_file()
    table = summary.table()
    assert table.loc[0, "test_cases"] == len(splits["test"])
    assert table.loc[0, "test_lesions"] == int((lesions["split"] == "test").sum())
    checks = check_dataset(ws, dataset)
    assert checks["passed"].all(), checks.to_string()


def test_prepare_dataset_is_deterministic(tmp_path):
    a = prepare_dataset(Workspace(tmp_path / "a"), "lits", seed=4, synthetic=SMALL["lits"], progress=False)
    b = prepare_dataset(Workspace(tmp_path / "b"), "lits", seed=4, synthetic=SMALL["lits"], progress=False)
    pd.testing.assert_frame_equal(a.lesions, b.lesions)
    assert a.splits == b.splits


def test_check_dataset_detects_tampered_lesion_table(tmp_path):
    ws = Workspace(tmp_path)
    prepare_dataset(ws, "idrid", seed=0, synthetic=SMALL["idrid"], progress=False)
    path = ws.results("idrid") / "lesions.csv"
    lesions = pd.read_csv(path)
    lesions.iloc[1:].to_csv(path, index=False)
    checks = check_dataset(ws, "idrid").set_index("check")
    assert not checks.loc["lesion counts reproduce from the saved masks", "passed"]
    assert checks.loc["every test case has a valid mask", "passed"]


def test_prepare_dataset_real_root(tmp_path, wmh2022):
    ws = Workspace(tmp_path / "ws")
    summary = prepare_dataset(ws, "wmh", data_root=wmh2022, seed=0, val_fraction=0.5, progress=False)
    assert summary.manifest["synthetic"] is False and summary.manifest["source"] == str(wmh2022.resolve())
    assert summary.splits.test == ("Singapore_51",)
    # two lesions per subject (a 2x2 square and a single voxel; 26-connectivity keeps them apart)
    assert summary.cases["n_lesions"].tolist() == [2, 2, 2]
    assert summary.cases.set_index("case_id").loc["Utrecht_0", "ignore_voxels"] == 1
    assert sorted(summary.report["cases_with_ignore_region"]) == ["Amsterdam_GE3T_100", "Singapore_51", "Utrecht_0"]


def test_quartile_edges_hand_derived():
    lesions = pd.DataFrame({"split": ["test"] * 5 + ["train"],
                            "area_fraction": [0.01, 0.02, 0.03, 0.04, 0.05, 0.5]})
    edges = data.quartile_edges(lesions).set_index("split")
    # test: 1..5 % -> quartiles at positions 1, 2, 3 of 0..4: 2, 3, 4 %
    assert edges.loc["test", ["q25_percent", "q50_percent", "q75_percent"]].tolist() == pytest.approx([2, 3, 4])
    assert edges.loc["val", "n_lesions"] == 0 and np.isnan(edges.loc["val", "q25_percent"])
    assert edges.loc["all", "n_lesions"] == 6 and edges.loc["all", "max_percent"] == pytest.approx(50)


def test_report_lesion_counts_match_skimage():
    # independent implementation: skimage.measure.label with full connectivity
    from skimage.measure import label

    rng = np.random.default_rng(0)
    cases = []
    for i in range(4):
        mask = rng.random((5, 16, 16)) > 0.85
        cases.append(Case(f"c{i}", np.zeros(mask.shape, np.float32), mask, None, (3.0, 1.0, 1.0), None, "x"))
    report = data.describe_cases("lits", cases)
    expected = sum(int(label(c.mask, connectivity=3).max()) for c in cases)
    assert report["n_lesions"] == expected
    assert data.describe_cases("lits", cases, connectivity=1)["n_lesions"] == sum(
        int(label(c.mask, connectivity=1).max()) for c in cases)


def test_plots_return_axes(tmp_path):
    import matplotlib.pyplot as plt

    lesions = pd.DataFrame({"split": ["test"] * 4, "area_fraction": [1e-4, 1e-3, 1e-2, 2e-2]})
    ax = data.plot_lesion_sizes(lesions)
    assert len(ax.lines) == 4  # three quartile edges and the 1.5 % reference
    assert ax.get_xscale() == "log"
    plt.close(ax.figure)
    ws = Workspace(tmp_path)
    summary = prepare_dataset(ws, "idrid", seed=0, synthetic=SMALL["idrid"], progress=False)
    axes = data.plot_examples(ws, "idrid", summary.cases["case_id"][:2])
    assert [a.get_title() for a in axes] == list(summary.cases["case_id"][:2])
    plt.close(axes[0].figure)


def test_plot_small_lesions_crops_q1_lesions_at_native_pixels(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    summary = prepare_dataset(Workspace(tmp_path), "idrid", seed=0, synthetic={"n_training": 2, "n_test": 2,
                              "shape": (170, 256)}, progress=False)
    test = summary.lesions[summary.lesions["split"] == "test"]
    n_q1 = int((test["area_fraction"] <= q1_upper_bound(test["area_fraction"])).sum())
    axes = data.plot_small_lesions(summary, n=3, margin=4)
    assert len(axes) == min(3, n_q1)
    smallest = test.sort_values("area_fraction").iloc[0]
    image = axes[0].get_images()[0]
    # the first panel is the smallest lesion: its bounding box plus a 4-pixel margin (clipped at the border), drawn
    # with nearest-neighbour pixels
    h = min(int(smallest["bbox_max_0"]) + 4, 170) - max(int(smallest["bbox_min_0"]) - 4, 0)
    w = min(int(smallest["bbox_max_1"]) + 4, 256) - max(int(smallest["bbox_min_1"]) - 4, 0)
    assert image.get_array().shape == (h, w)
    assert image.get_interpolation() == "nearest"
    with pytest.raises(ValueError, match="n must be a positive integer"):
        data.plot_small_lesions(summary, n=0)


# ---- a dataset one folder deeper than given (an archive unpacked into a folder of its own name) ----------------


def test_idrid_doubled_segmentation_folder_is_found_and_named(tmp_path):
    # unzipping "A. Segmentation.zip" into a folder of that name: IDRiD/A. Segmentation/A. Segmentation/1. ...
    inner = _idrid_tree(tmp_path / "tmp")
    root = tmp_path / "IDRiD"
    (root / "A. Segmentation").mkdir(parents=True)
    shutil.move(str(inner / "A. Segmentation"), str(root / "A. Segmentation" / "A. Segmentation"))
    found = find_cases("idrid", root)
    assert [f.case_id for f in found] == [f.case_id for f in find_cases("idrid", root / "A. Segmentation")]
    assert data.dataset_folder(found, root) == (root / "A. Segmentation").resolve()
    assert len(load_cases("idrid", root)) == len(found)


def test_wmh_unpacked_into_a_folder_of_its_own_name_is_found(wmh2022, tmp_path):
    outer = tmp_path / "download"
    outer.mkdir()
    shutil.move(str(wmh2022), str(outer / "wmh"))
    found = find_cases("wmh", outer)
    assert data.dataset_folder(found, outer) == (outer / "wmh").resolve()
    assert {f.case_id for f in found} == {f.case_id for f in find_cases("wmh", outer / "wmh")}


def test_a_broken_dataset_one_level_down_reports_its_own_error(wmh2022, tmp_path):
    outer = tmp_path / "download"
    outer.mkdir()
    shutil.move(str(wmh2022), str(outer / "wmh"))
    (outer / "wmh" / "training" / "Utrecht" / "0" / "pre" / "T1.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"WMH image file .*Utrecht/0/pre/T1\.nii\.gz.*not found"):
        find_cases("wmh", outer)


def test_nothing_found_lists_the_first_levels_of_the_folder(tmp_path):
    root = tmp_path / "mystery"
    (root / "images" / "scans").mkdir(parents=True)
    (root / "images" / "notes.txt").write_text("x")
    (root / "README").write_text("x")
    with pytest.raises(ValueError) as info:
        find_cases("lits", root)
    message = str(info.value)
    assert "no LiTS volumes found" in message
    assert f"root {str(root)!r} holds:\n  README\n  images/\n    notes.txt\n    scans/" in message
