"""Tests of helpers.data.synthetic: exact real layouts, determinism, label sets, plausible contrasts, heavy-tailed
lesion sizes, small lesions of a few voxels, visible LiTS tumours, and (slow) the default-profile sizes: Q1 upper
bound < 1.5 %, >= 20 test cases and >= 50 Q1 lesions of 8-60 pixels."""

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy import ndimage

from helpers.data import datasets
from helpers.data import synthetic
from helpers.data.layouts import IDRID_FOLDERS
from helpers.data.synthetic import common
from helpers.data import find_cases, load_cases, prepare_dataset
from helpers.metrics.lesions import lesion_table
from helpers.base.paths import Workspace


def _digest(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_wmh_2022_layout_exact(tmp_path):
    params = synthetic.write_wmh(tmp_path, seed=0, n_training=4, n_test=2, shape=(4, 32, 32))
    files = _files(tmp_path)
    assert "training/Utrecht/0/pre/FLAIR.nii.gz" in files
    assert "training/Utrecht/0/wmh.nii.gz" in files
    assert "training/Singapore/50/pre/T1.nii.gz" in files
    assert "training/Amsterdam/GE3T/100/wmh.nii.gz" in files  # the extra scanner level
    assert "test/Utrecht/2/pre/FLAIR.nii.gz" in files and "test/Singapore/51/wmh.nii.gz" in files
    assert len(files) == 6 * 3
    assert params["spacing"] == [3.0, 230.0 / 32, 230.0 / 32]
    img = nib.load(str(tmp_path / "training/Utrecht/0/pre/FLAIR.nii.gz"))
    assert img.shape == (32, 32, 4)  # stored (x, y, z)
    np.testing.assert_allclose(img.header.get_zooms(), (230 / 32, 230 / 32, 3.0), rtol=1e-6)


def test_wmh_2017_layout_uncompressed(tmp_path):
    synthetic.write_wmh(tmp_path, seed=0, n_training=3, n_test=1, shape=(4, 32, 32), vintage="2017",
                        compressed=False)
    files = _files(tmp_path)
    assert files[:3] == ["GE3T/100/pre/FLAIR.nii", "GE3T/100/pre/T1.nii", "GE3T/100/wmh.nii"]
    assert "Utrecht/0/wmh.nii" in files and "Utrecht/1/wmh.nii" in files and "Singapore/50/wmh.nii" in files
    assert not any(f.startswith(("training", "test")) for f in files)


def test_wmh_labels_and_contrast(tmp_path):
    synthetic.write_wmh(tmp_path, seed=1, n_training=3, n_test=0, shape=(8, 64, 64), p_other_pathology=1.0)
    cases = load_cases("wmh", tmp_path)
    for case in cases:
        assert case.mask.any() and case.ignore.any()  # every subject has WMH; p=1 gives label 2 everywhere
        flair, t1 = case.image[..., 0], case.image[..., 1]
        # the tissue around the lesions (a 2-voxel in-plane ring, mostly white matter)
        ring = ndimage.binary_dilation(case.mask, structure=np.ones((1, 5, 5), dtype=bool))
        normal = ring & ~case.mask & ~case.ignore & (flair > np.percentile(flair, 50))
        # lesions brighter than their surroundings on FLAIR, darker on T1, yet low contrast (< 2x)
        # (medians of the ring: it also touches ventricles and cortex)
        ratio = np.median(flair[case.mask]) / np.median(flair[normal])
        assert 1.05 < ratio < 2.0
        assert np.median(t1[case.mask]) < np.median(t1[normal])


def test_lits_layouts(tmp_path):
    synthetic.write_lits(tmp_path / "b", seed=0, n_volumes=3, shape=(4, 32, 32))
    assert _files(tmp_path / "b") == [f"Training Batch 1/{k}-{i}.nii" for k in ("segmentation", "volume")
                                      for i in range(3)]
    synthetic.write_lits(tmp_path / "m", seed=0, n_volumes=2, shape=(4, 32, 32), layout="msd")
    task = tmp_path / "m" / "Task03_Liver"
    assert json.loads((task / "dataset.json").read_text())["labels"] == {"0": "background", "1": "liver",
                                                                         "2": "cancer"}
    assert _files(task) == ["dataset.json", "imagesTr/liver_0.nii.gz", "imagesTr/liver_1.nii.gz",
                            "labelsTr/liver_0.nii.gz", "labelsTr/liver_1.nii.gz"]
    # the same seed gives the same data whichever layout it is written in
    a = load_cases("lits", tmp_path / "b")[0]
    b = load_cases("lits", tmp_path / "m")[0]
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.mask, b.mask)


def test_lits_volumes_without_tumour_and_hu(tmp_path):
    # p = 0.9 of 3 volumes: round(2.7) = 3 capped at 2, since volume 0 always has tumours
    synthetic.write_lits(tmp_path, seed=2, n_volumes=3, shape=(6, 48, 48), p_no_tumour=0.9)
    cases = {c.case_id: c for c in load_cases("lits", tmp_path)}
    assert cases["volume-0"].mask.any()  # the first volume always has tumours
    assert not cases["volume-1"].mask.any() and not cases["volume-2"].mask.any()
    seg = np.asarray(nib.load(str(tmp_path / "Training Batch 1/segmentation-0.nii")).dataobj)
    assert set(np.unique(seg).tolist()) == {0, 1, 2}
    vol = nib.load(str(tmp_path / "Training Batch 1/volume-0.nii"))
    assert vol.get_data_dtype() == np.int16
    image, mask = cases["volume-0"].image, cases["volume-0"].mask
    liver = np.asarray(seg).transpose(2, 1, 0) == 1
    assert image.min() == -2048  # out-of-field padding, as in real LiTS volumes
    # hypodense tumours: lower HU than the liver, by less than 100 HU (low contrast)
    assert 0 < image[liver].mean() - image[mask].mean() < 100


def test_idrid_layout_absent_masks_and_od(tmp_path):
    synthetic.write_idrid(tmp_path, seed=0, n_training=6, n_test=2, shape=(64, 96))
    base = tmp_path / "A. Segmentation"
    images = _files(base / "1. Original Images")
    assert images == [f"a. Training Set/IDRiD_0{i}.jpg" for i in range(1, 7)] + [
        "b. Testing Set/IDRiD_07.jpg", "b. Testing Set/IDRiD_08.jpg"]
    gt = base / "2. All Segmentation Groundtruths"
    od = sorted((gt / "a. Training Set" / "5. Optic Disc").glob("*.tif"))
    assert [p.name for p in od] == [f"IDRiD_0{i}_OD.tif" for i in range(1, 7)]
    n_masks = {t: len(list((gt / "a. Training Set" / f).glob("*.tif")))
               for t, f in IDRID_FOLDERS.items()}
    assert n_masks["SE"] < 6  # some images lack soft exudates: no file written
    ma = tifffile.imread(gt / "a. Training Set" / "1. Microaneurysms" / "IDRiD_01_MA.tif")
    assert ma.shape == (64, 96, 3) and set(np.unique(ma).tolist()) <= {0, 255} and not ma[..., 1:].any()
    cases = load_cases("idrid", tmp_path)
    assert all(c.image.shape == (64, 96, 3) for c in cases)
    assert sum(len(c.meta["lesion_types_absent"]) for c in cases) > 0


def test_lits_share_without_tumour_is_exact(tmp_path):
    # round(0.15 * 6) = round(0.9) = 1 tumour-free volume
    synthetic.write_lits(tmp_path, seed=0, n_volumes=6, shape=(4, 32, 32), p_no_tumour=0.15)
    assert sum(not c.mask.any() for c in load_cases("lits", tmp_path)) == 1


def test_deterministic_bytes(tmp_path):
    for name in ("a", "b"):
        synthetic.write_wmh(tmp_path / name / "wmh", seed=5, n_training=2, n_test=1, shape=(4, 32, 32))
        synthetic.write_idrid(tmp_path / name / "idrid", seed=5, n_training=2, n_test=1, shape=(64, 96))
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    synthetic.write_wmh(tmp_path / "c" / "wmh", seed=6, n_training=2, n_test=1, shape=(4, 32, 32))
    assert _digest(tmp_path / "a" / "wmh") != _digest(tmp_path / "c" / "wmh")


def test_lesion_patch_properties():
    rng = np.random.default_rng(0)
    for radius in (0.3, 1.0, 2.5, 6.0):
        patch = common._lesion_patch(rng, (radius, radius), 0.5)
        labels = lesion_table(patch)
        assert len(labels) == 1  # one placement is one connected lesion
        assert patch[tuple(s // 2 for s in patch.shape)]
    assert common._lesion_patch(rng, (0.3, 0.3, 0.3), 0.5).sum() == 1  # sub-voxel radius: a single voxel


def test_smooth_noise_standardised_on_both_paths():
    rng = np.random.default_rng(0)
    for sigma in (1.0, 12.0):  # direct filter, and the coarse-grid path (step 4)
        field = common.smooth_noise(rng, (20, 64, 64), sigma)
        assert field.shape == (20, 64, 64)
        assert abs(field.mean()) < 1e-9 and abs(field.std() - 1) < 1e-9


def test_heavy_tailed_sizes(tmp_path):
    synthetic.write_idrid(tmp_path, seed=3, n_training=4, n_test=0, shape=(170, 256))
    fractions = np.concatenate([lesion_table(c.mask)["area_fraction"].to_numpy()
                                for c in load_cases("idrid", tmp_path)])
    q1, median, top = np.quantile(fractions, [0.25, 0.5, 1.0])
    assert q1 < 0.015 / 10  # the smallest quartile far under 1.5 % of the image
    assert top > 10 * median  # a long right tail


@pytest.mark.parametrize("call, match", [
    (lambda p: synthetic.write_wmh(p, seed=0, n_training=0), "n_training must be an integer >= 1"),
    (lambda p: synthetic.write_wmh(p, seed=0, shape=(4, 32)), "shape must be 3 integers"),
    (lambda p: synthetic.write_wmh(p, seed=0, vintage="2019"), "vintage must be '2022' or '2017'"),
    (lambda p: synthetic.write_wmh(p, seed=0, spacing=(3.0, -1.0, 1.0)), "spacing must be 3 positive finite"),
    (lambda p: synthetic.write_lits(p, seed=0, layout="nnunet"), "layout must be 'batches' or 'msd'"),
    (lambda p: synthetic.write_lits(p, seed=0, p_no_tumour=1.0), r"p_no_tumour must be in \[0, 1\)"),
    (lambda p: synthetic.write_idrid(p, seed=0, lesion_scale=0), "lesion_scale must be a positive"),
    (lambda p: datasets.get("brats").generate(p, seed=0), "dataset must be one of"),
])
def test_bad_parameters(tmp_path, call, match):
    with pytest.raises(ValueError, match=match):
        call(tmp_path)


#: The data settings of the `default` profile (profiles/default.yaml: synthetic_options, and test_fraction for LiTS,
#: which has no official test subset); the profile sets `standin: paper`, the tests also check `voxel-floor`.
DEFAULT_PROFILE = {
    "wmh": ({"n_training": 16, "n_test": 20, "shape": (32, 128, 128)}, {}),
    "lits": ({"n_volumes": 50, "shape": (32, 128, 128), "tumours_per_volume": (8, 15), "p_no_tumour": 0.0},
             {"test_fraction": 0.5}),
    "idrid": ({"n_training": 20, "n_test": 20, "shape": (340, 512)}, {}),
}


def _q1_cross_sections(lesions, shape_yx) -> np.ndarray:
    """In-plane pixels of the largest cross-section of the test lesions in the smallest size quartile."""
    test = lesions[lesions["split"] == "test"]
    q1 = test[test["area_fraction"] <= np.quantile(test["area_fraction"], 0.25)]
    return np.round(q1["area_fraction"].to_numpy() * shape_yx[0] * shape_yx[1])


def test_the_default_profile_runs_the_paper_regime():
    import yaml

    from helpers.base.paths import project_root

    profile = yaml.safe_load((project_root() / "profiles" / "default.yaml").read_text())
    for dataset, (options, _) in DEFAULT_PROFILE.items():
        written = profile["datasets"][dataset]["data"]["synthetic_options"]
        assert written["standin"] == "paper"
        assert {k: tuple(v) if isinstance(v, list) else v for k, v in written.items() if k != "standin"} == options


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["wmh", "lits", "idrid"])
def test_default_profile_small_quartile_and_test_lesions(tmp_path, dataset):
    """The voxel-floor regime at the default profile's sizes: Q1 lesions a few voxels of radius."""
    options, split = DEFAULT_PROFILE[dataset]
    summary = prepare_dataset(Workspace(tmp_path), dataset, seed=0, synthetic=options, progress=False, **split)
    row = summary.table().iloc[0]
    assert row["q1_upper_bound"] < 0.015
    assert row["test_cases"] >= 20
    sections = _q1_cross_sections(summary.lesions, options["shape"][-2:])
    assert len(sections) >= 50  # enough small lesions for a Q1 recall to mean something
    # a few voxels of radius: most Q1 lesions cover 8 to 60 pixels in-plane (a lesion cut by the volume's end or the
    # white-matter / liver / field-of-view outline may be smaller)
    assert np.median(sections) >= 8 and sections.max() <= 60
    assert find_cases(dataset, tmp_path / "data" / dataset)  # the real loader reads the stand-in


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["wmh", "lits", "idrid"])
def test_default_profile_paper_regime_reaches_the_papers_q1_bound(tmp_path, dataset):
    """The paper regime at the default profile's sizes: the Q1 bound between 0.5 % and 3 % of the image area
    (the paper: 1.4-1.6 %), no Q1 lesion at the voxel floor (slivers under 12 voxels of section are removed)."""
    options, split = DEFAULT_PROFILE[dataset]
    summary = prepare_dataset(Workspace(tmp_path), dataset, seed=0, synthetic={**options, "standin": "paper"},
                              progress=False, **split)
    row = summary.table().iloc[0]
    assert 0.005 <= row["q1_upper_bound"] <= 0.03
    assert row["test_cases"] >= 20
    sections = _q1_cross_sections(summary.lesions, options["shape"][-2:])
    assert len(sections) >= 20 and sections.min() >= 8  # (the second rater may erode a section by a voxel)


def test_wmh_small_lesions_are_a_few_voxels(tmp_path):
    # the smallest WMH radius, 4 mm, is 2.2 pixels at the default grid's 230 / 128 = 1.8 mm: a disc of ~15 px
    synthetic.write_wmh(tmp_path, seed=0, n_training=3, n_test=0, shape=(16, 128, 128))
    lesions = pd.concat([lesion_table(c.mask, spacing=c.spacing).assign(split="test")
                         for c in load_cases("wmh", tmp_path)])
    sections = _q1_cross_sections(lesions, (128, 128))
    assert np.median(sections) >= 8 and np.quantile(sections, 0.9) <= 60


def test_lits_tumour_count_and_visibility(tmp_path):
    # exactly 5 placements per volume: nearby ones may merge, so 1 to 5 lesions per volume
    synthetic.write_lits(tmp_path, seed=0, n_volumes=3, shape=(16, 96, 96), tumours_per_volume=(5, 5),
                         p_no_tumour=0.0)
    for case in load_cases("lits", tmp_path):
        n = len(lesion_table(case.mask))
        assert 1 <= n <= 5
        seg = np.asarray(nib.load(case.meta["label_file"]).dataobj).transpose(2, 1, 0)
        liver = ndimage.binary_erosion(seg == 1, iterations=2)
        core = ndimage.binary_erosion(case.mask, structure=np.ones((1, 3, 3), bool))
        # the tumour core is darker than the liver by at least 3 noise standard deviations (noise sd 10 HU, the
        # contrast drawn in 55-85 HU and partly blurred away at the margin)
        assert core.any()
        assert np.mean(case.image[liver]) - np.mean(case.image[core]) > 3 * synthetic.LITS_NOISE_HU
    with pytest.raises(ValueError, match="tumours_per_volume must be two integers"):
        synthetic.write_lits(tmp_path / "x", seed=0, tumours_per_volume=(6, 5))
