"""Evaluating anyone's models on any dataset: plain folders of masks and nnU-Net raw datasets, multi-label maps and
the ignore label, grid checks (and nearest-neighbour resampling), the per-case cache (adding a model evaluates only
its cases; an interrupted evaluation resumes) and a single model's predictions through to a built book.

Fixtures are written here, tiny, with hand-derivable values. Most runs stop after the per-case evaluation
(``--cases-only``, in-process ``--scheduler none``); one runs the sections and builds the book."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from imageio import v3 as iio

from helpers.data import generic, splits
from helpers.data import predictions as P
from helpers.evaluation import tasks
from helpers.evaluation.cache import CACHE_FOLDER
from helpers.evaluation.tables import evaluate_case_tables
from helpers.runner import cli

AFFINE = np.diag([0.8, 0.8, 2.5, 1.0])  # (x, y, z) voxel sizes 0.8, 0.8, 2.5 mm


def _label_map() -> np.ndarray:
    """(x, y, z) = (12, 10, 6) NIfTI-order labels: tumour (1) 2 lesions of 8 and 4 voxels, cyst (2) one of 6
    voxels, ignore (3) a block of 4 voxels."""
    lab = np.zeros((12, 10, 6), np.uint8)
    lab[1:3, 1:3, 1:3] = 1  # 8 voxels
    lab[8:10, 6:8, 4] = 1  # 4 voxels
    lab[5:8, 1:3, 2] = 2  # 6 voxels
    lab[10:12, 8:10, 0] = 3  # 4 voxels: ignore
    return lab


def _nnunet(tmp_path, n=3):
    ds = tmp_path / "Dataset042_Toy"
    (ds / "labelsTs").mkdir(parents=True)
    (ds / "dataset.json").write_text(json.dumps({
        "labels": {"background": 0, "tumour": 1, "cyst": 2, "ignore": 3}, "file_ending": ".nii.gz",
        "channel_names": {"0": "CT"}, "numTraining": 0}))
    for i in range(n):
        nib.save(nib.Nifti1Image(_label_map(), AFFINE), str(ds / "labelsTs" / f"toy_{i:03d}.nii.gz"))
    return ds


def _predict(folder, n=3, *, drop_small=True, in_ignore=True):
    """nnU-Net-style outputs: the reference, the 4-voxel tumour missed, a predicted blob inside the ignore region."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        lab = _label_map()
        lab[lab == 3] = 0
        if drop_small:
            lab[8:10, 6:8, 4] = 0
        if in_ignore:
            lab[10:12, 8:10, 0] = 1  # predicted tumour inside the ignore region: neither TP nor FP
        nib.save(nib.Nifti1Image(lab, AFFINE), str(folder / f"toy_{i:03d}.nii.gz"))
        (folder / f"toy_{i:03d}.pkl").write_bytes(b"nnU-Net writes these too")
    return folder


def _run(args, capsys):
    code = cli.main(["evaluate", *args, "--scheduler", "none"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _cached(ws, dataset):
    return sorted(p.relative_to(ws / CACHE_FOLDER / dataset).as_posix()
                  for p in (ws / CACHE_FOLDER / dataset).rglob("*.pkl"))


# ---- readers, labels, grids -----------------------------------------------------------------------------------


def test_nnunet_labels_read_names_regions_ignore_and_file_ending(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps({
        "labels": {"background": 0, "liver": [1, 2], "tumour": 2, "ignore": 4}, "file_ending": ".nii.gz"}))
    names, ignore, ending = generic.nnunet_labels(tmp_path)
    assert names == {"liver": (1, 2), "tumour": (2,)} and ignore == 4 and ending == ".nii.gz"
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"a": "x"}}))
    with pytest.raises(ValueError, match="dataset.json.*label 'a'"):
        generic.nnunet_labels(tmp_path)


def test_png_masks_0_255_read_as_binary_other_values_name_the_file(tmp_path):
    mask = np.zeros((6, 7), np.uint8)
    mask[1:3, 2:5] = 255
    iio.imwrite(tmp_path / "a.png", mask)
    labels, grid = generic.read_mask_file(tmp_path / "a.png")
    assert labels.sum() == 6 and set(np.unique(labels)) == {0, 1}
    assert grid.shape == (6, 7) and grid.spacing == (1.0, 1.0)  # pixel units
    assert generic.read_mask_file(tmp_path / "a.png", spacing=(0.5, 0.25))[1].spacing == (0.5, 0.25)
    mask[0, 0] = 128
    iio.imwrite(tmp_path / "b.png", mask)
    with pytest.raises(ValueError, match=r"b\.png.*0 and 255"):
        generic.read_mask_file(tmp_path / "b.png")


def test_grid_differences_and_nearest_neighbour_resampling_of_a_flipped_affine(tmp_path):
    lab = _label_map()
    nib.save(nib.Nifti1Image(lab, AFFINE), str(tmp_path / "ref.nii.gz"))
    flipped = AFFINE.copy()
    flipped[0, 0] = -0.8
    flipped[0, 3] = 0.8 * (lab.shape[0] - 1)  # same world positions, x axis reversed
    nib.save(nib.Nifti1Image(lab[::-1].copy(), flipped), str(tmp_path / "flip.nii.gz"))
    ref, pred = generic.read_geometry(tmp_path / "ref.nii.gz"), generic.read_geometry(tmp_path / "flip.nii.gz")
    assert generic.grid_differences(ref, pred) == ["origin", "direction"]
    data, _ = generic.read_mask_file(tmp_path / "flip.nii.gz")
    back = generic.resample_nearest(data, pred, ref)
    assert np.array_equal(back, generic.read_mask_file(tmp_path / "ref.nii.gz")[0])


def test_user_case_takes_the_chosen_label_and_leaves_the_ignore_voxels_out(tmp_path):
    ds = _nnunet(tmp_path, n=1)
    preds = _predict(tmp_path / "preds", n=1)
    options = generic.UserOptions(layout="nnunet", label=(1,), label_name="tumour", ignore_label=3)
    files = generic.find_user(ds, options)
    case = generic.read_user(files[0])
    assert case.mask.sum() == 12 and case.ignore.sum() == 4 and case.spacing == pytest.approx((2.5, 0.8, 0.8))
    assert case.mask.shape == (6, 10, 12)  # (z, y, x)
    pred = P.read_prediction_file(preds / "toy_000.nii.gz", case)
    rows, _ = evaluate_case_tables(case, pred, dataset="toy", model="m")
    value = {r["metric"]: r["value"] for r in rows}
    assert value["dice"] == pytest.approx(2 * 8 / (12 + 8))  # the blob in the ignore region counts for nothing
    assert value["fp_lesions"] == 0 and value["lesion_recall"] == pytest.approx(0.5)
    cyst = generic.read_user(generic.find_user(ds, generic.UserOptions(layout="nnunet", label=(2,), ignore_label=3))[0])
    assert cyst.mask.sum() == 6


def test_evaluation_only_split_holds_every_case_as_test_and_round_trips():
    found = [type("C", (), {"case_id": c})() for c in ("b", "a")]
    split = splits.evaluation_split(found)
    assert split.test == ("a", "b") and split.train == () and split.val == ()
    assert splits.Splits.from_json(split.to_json()) == split
    with pytest.raises(ValueError, match="'train' is empty"):
        splits.Splits(train=(), val=("a",), test=("b",))
    marked = [type("C", (), {"case_id": c, "subset": "test", "meta": {"evaluation_only": True}})() for c in "xy"]
    assert splits.make_splits(marked, seed=0).evaluation_only  # a user dataset's cases: nothing to train on


# ---- the evaluate command --------------------------------------------------------------------------------------


def test_nnunet_two_labels_and_ignore_each_label_evaluated_under_its_json_name(tmp_path, capsys):
    ds = _nnunet(tmp_path)
    preds = _predict(tmp_path / "preds" / "modelA")
    ws = tmp_path / "ws"
    code, out, err = _run(["--nnunet", str(ds), "--predictions", str(preds), "--workspace", str(ws),
                           "--cases-only"], capsys)
    assert code == 0, err
    assert "tumour=[1] as 'toy-tumour', cyst=[2] as 'toy-cyst'; ignore label 3" in out
    assert "spacing range over 3 cases (per axis, z, y, x): 2.5 x 0.8 x 0.8 mm" in out
    assert out.index("matched        toy_000") < out.index("toy-tumour · modelA")  # the matching table first
    assert "evaluate toy-tumour: 3 case x model evaluated, 0 found in the cache" in out
    assert "evaluate toy-cyst: 3 case x model evaluated, 0 found in the cache" in out
    assert len(_cached(ws, "toy-tumour")) == 3 and len(_cached(ws, "toy-cyst")) == 3
    recorded = json.loads((ws / "user_datasets.json").read_text())
    assert set(recorded) == {"toy-tumour", "toy-cyst"} and recorded["toy-cyst"]["ignore_region"] is True


def test_plain_png_folder_and_mapping_csv(tmp_path, capsys):
    refs, preds = tmp_path / "masks", tmp_path / "preds" / "m1"
    refs.mkdir()
    preds.mkdir(parents=True)
    rows = []
    for i in range(2):
        mask = np.zeros((8, 9), np.uint8)
        mask[1:4, 1:4] = 255
        iio.imwrite(refs / f"img{i}.png", mask)
        iio.imwrite(preds / f"output_{chr(97 + i)}.png", mask)
        rows.append(f"img{i},output_{chr(97 + i)}.png")
    mapping = tmp_path / "map.csv"
    mapping.write_text("case_id,file\n" + "\n".join(rows) + "\n")
    ws = tmp_path / "ws"
    code, out, err = _run(["--labels", str(refs), "--predictions", str(preds), "--workspace", str(ws),
                           "--mapping", str(mapping), "--cases-only"], capsys)
    assert code == 0, err
    assert "pixel units (no --spacing given)" in out and "(mapping)" in out
    assert "evaluate masks: 2 case x model evaluated" in out


def test_plain_nifti_folder(tmp_path, capsys):
    refs = tmp_path / "refs"
    refs.mkdir()
    for i in range(2):
        nib.save(nib.Nifti1Image((_label_map() == 1).astype(np.uint8), AFFINE), str(refs / f"c{i}.nii.gz"))
    preds = tmp_path / "preds" / "net"
    preds.mkdir(parents=True)
    for i in range(2):
        nib.save(nib.Nifti1Image((_label_map() == 1).astype(np.uint8), AFFINE), str(preds / f"c{i}.nii.gz"))
    code, out, err = _run(["--labels", str(refs), "--predictions", str(preds), "--workspace", str(tmp_path / "ws"),
                           "--cases-only"], capsys)
    assert code == 0, err
    assert "labels evaluated label1=[1] as 'refs'" in out and "evaluate refs: 2 case x model evaluated" in out


def test_prediction_grids_shape_spacing_and_flipped_affine_are_errors_naming_both_files(tmp_path, capsys):
    ds = _nnunet(tmp_path, n=3)
    preds = tmp_path / "preds" / "bad"
    preds.mkdir(parents=True)
    lab = _label_map()
    nib.save(nib.Nifti1Image(lab[:-1], AFFINE), str(preds / "toy_000.nii.gz"))  # another shape
    nib.save(nib.Nifti1Image(lab, np.diag([0.9, 0.8, 2.5, 1.0])), str(preds / "toy_001.nii.gz"))  # spacing
    flipped = AFFINE.copy()
    flipped[0, 0], flipped[0, 3] = -0.8, 0.8 * (lab.shape[0] - 1)
    nib.save(nib.Nifti1Image(lab[::-1].copy(), flipped), str(preds / "toy_002.nii.gz"))  # flipped
    ws = tmp_path / "ws"
    code, out, err = _run(["--nnunet", str(ds), "--predictions", str(preds), "--workspace", str(ws), "--label",
                           "tumour", "--cases-only"], capsys)
    assert code == 1
    assert "3 prediction(s) not on their reference's grid" in err
    for i, what in enumerate(("shape", "spacing", "origin, direction")):
        assert f"prediction {preds / f'toy_{i:03d}.nii.gz'} and reference {ds / 'labelsTs' / f'toy_{i:03d}.nii.gz'}: " \
               f"{what} differ" in err
    assert "    prediction: shape (6, 10, 11)" in err and "    reference:  shape (6, 10, 12)" in err
    # with --resample-predictions the flipped one is resampled onto the reference's grid: a perfect prediction
    (preds / "toy_000.nii.gz").unlink()
    (preds / "toy_001.nii.gz").unlink()
    code, out, err = _run(["--nnunet", str(ds), "--predictions", str(preds), "--workspace", str(ws), "--label",
                           "tumour", "--cases-only", "--missing-as-empty", "--resample-predictions"], capsys)
    assert code == 0, err
    assert "resampled      bad/toy_002: nearest neighbour onto the reference's grid" in out
    staged = ws / "predictions" / "toy" / "bad" / "toy_002.nii.gz"
    assert not staged.is_symlink() and generic.grid_differences(
        generic.read_geometry(ds / "labelsTs" / "toy_002.nii.gz"), generic.read_geometry(staged)) == []
    case = generic.read_user(generic.find_user(ds, generic.UserOptions(layout="nnunet", label=(1,), ignore_label=3))[2])
    assert np.array_equal(P.read_prediction_file(staged, case), case.mask)


def test_cache_adding_a_model_evaluates_only_its_cases_and_an_interruption_resumes(tmp_path, capsys, monkeypatch):
    ds = _nnunet(tmp_path, n=3)
    root = tmp_path / "preds"
    _predict(root / "a")
    ws = tmp_path / "ws"
    args = ["--nnunet", str(ds), "--predictions", str(root), "--workspace", str(ws), "--label", "tumour",
            "--cases-only"]
    code, out, err = _run(args, capsys)
    assert code == 0, err and "evaluate toy: 3 case x model evaluated, 0 found in the cache" in out
    _predict(root / "b", drop_small=False)
    code, out, err = _run(args, capsys)
    assert code == 0, err
    assert "evaluate toy: 3 case x model evaluated, 3 found in the cache" in out  # only model b's cases
    # an interrupted evaluation: model c's second task fails; the run again evaluates only what is missing
    _predict(root / "c", in_ignore=False)
    real, calls = tasks.case_task, []

    def failing(files, path, **kwargs):
        calls.append(files.case_id)
        if kwargs["model"] == "c" and files.case_id == "toy_001":
            raise KeyboardInterrupt("interrupted")
        return real(files, path, **kwargs)

    monkeypatch.setattr(tasks, "case_task", failing)
    with pytest.raises(KeyboardInterrupt):
        cli.main(["evaluate", *args, "--scheduler", "none"])
    capsys.readouterr()
    monkeypatch.setattr(tasks, "case_task", real)
    code, out, err = _run(args, capsys)
    assert code == 0, err
    assert "evaluate toy: 2 case x model evaluated, 7 found in the cache" in out
    assert len(_cached(ws, "toy")) == 9


@pytest.mark.slow
def test_single_model_through_evaluate_to_a_built_book(tmp_path, capsys):
    ds = _nnunet(tmp_path, n=3)
    preds = _predict(tmp_path / "preds" / "mymodel")
    ws = tmp_path / "ws"
    code, out, err = _run(["--nnunet", str(ds), "--predictions", str(preds), "--workspace", str(ws), "--label",
                           "tumour", "--challenge-metrics", "wmh", "panoptic"], capsys)
    assert code == 0, err
    assert "failed" not in out
    assert len(_cached(ws, "toy")) == 3  # the evaluation chapter took the cluster's rows from the cache
    executed = ws / "book" / "executed" / "toy"
    assert not list(executed.glob("*.failed.ipynb"))
    html = ws / "_build" / "html" / "book" / "executed" / "toy"
    for chapter in ("01_data", "03_evaluation", "04_stratification", "05_reversals", "06_bootstrap",
                    "07_qualitative"):
        assert (html / f"{chapter}.html").is_file(), chapter
    page = (html / "06_bootstrap.html").read_text()
    assert "needs the predictions of at least two" in page
    per_case = pd.read_csv(ws / "results" / "toy" / "per_case_metrics.csv")
    assert set(per_case["model"]) == {"mymodel"} and per_case["case_id"].nunique() == 3
    dice = per_case.query("metric == 'dice'")["value"]
    assert np.allclose(dice, 2 * 8 / 20)
    assert np.allclose(per_case.query("metric == 'avd_percent'")["value"], 100 * 4 / 12)  # 8 of 12 voxels predicted
    assert np.allclose(per_case.query("metric == 'lesion_f1'")["value"], 2 * 0.5 * 1 / 1.5)
    edges = json.loads((ws / "results" / "toy" / "quartile_edges.json").read_text())
    assert edges["n_reference_lesions"] == 6  # the quartile edges come from this dataset's reference lesions
    report = json.loads((ws / "results" / "toy" / "data_report.json").read_text())
    assert report["data_source"].startswith("user")


# ---- challenge metric sets -------------------------------------------------------------------------------------


def test_challenge_metric_sets_hand_derived_and_named_in_the_registry():
    from helpers.metrics import METRICS
    from helpers.metrics.challenge import CHALLENGE_SETS, challenge_metric_names, challenge_values

    assert CHALLENGE_SETS["wmh"] == ("dice", "hd95", "avd_percent", "lesion_recall", "lesion_f1")
    assert all(name in METRICS for s in CHALLENGE_SETS.values() for name in s)
    names = challenge_metric_names(["wmh", "panoptic"])
    assert names == ("avd_percent", "lesion_f1", "panoptic_quality")
    ref = np.zeros((10, 10), bool)
    ref[1:3, 1:3] = True  # lesion A, 4 px
    ref[7, 7] = True  # lesion B, 1 px: missed
    pred = np.zeros((10, 10), bool)
    pred[1:3, 1:3] = True
    pred[2, 2] = False  # 3 of A's 4 px: IoU 0.75
    pred[5, 0:3] = True  # a false positive of 3 px
    got = challenge_values(ref, pred, names=names)
    assert got["avd_percent"] == (pytest.approx(100 * abs(6 - 5) / 5), "")  # 20 %
    assert got["lesion_f1"][0] == pytest.approx(0.5)  # recall 1/2, precision 1/2
    assert got["panoptic_quality"][0] == pytest.approx(0.75 / (1 + 0.5 + 0.5))
    ignore = np.zeros((10, 10), bool)
    ignore[5, :] = True  # the false positive lies in the ignore region
    got = challenge_values(ref, pred, names=names, ignore=ignore)
    assert got["avd_percent"][0] == pytest.approx(40.0)
    assert got["lesion_f1"][0] == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert got["panoptic_quality"][0] == pytest.approx(0.75 / 1.5)
    empty = challenge_values(np.zeros((4, 4), bool), np.zeros((4, 4), bool), names=names)
    assert np.isnan(empty["avd_percent"][0]) and empty["avd_percent"][1] == "empty reference"
    assert empty["panoptic_quality"][1] == "no lesion in either mask"
    with pytest.raises(ValueError, match="unknown challenge metric set"):
        challenge_metric_names(["brats"])
