"""Tests of helpers.evaluation: a bring-your-own predictions folder evaluated end to end, with hand-derived values."""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from helpers.evaluation import evaluate_cases, evaluate_predictions, read_tables
from helpers.base.paths import Workspace
from helpers.data.predictions import write_prediction


@dataclass(frozen=True)
class _Case:
    case_id: str
    mask: np.ndarray
    image: np.ndarray
    ignore: np.ndarray | None = None
    spacing: tuple = (1.0, 1.0)


def _reference():
    # Two square lesions on a 32 x 32 image: A 4x4 (16 px), B 10x10 (100 px).
    ref = np.zeros((32, 32), bool)
    ref[4:8, 4:8] = True
    ref[15:25, 15:25] = True
    return ref


@pytest.fixture
def folder(tmp_path):
    ref = _reference()
    case = _Case("IDRiD_90", ref, np.zeros((32, 32, 3), np.uint8))
    root = tmp_path / "byo"
    write_prediction(root, "exact", case.case_id, ref, kind="image")
    shifted = np.zeros_like(ref)
    shifted[4:8, 5:9] = True  # lesion A shifted one column right
    shifted[15:25, 15:25] = True
    shifted[30, 30] = True  # a one-pixel false positive
    write_prediction(root, "shifted", case.case_id, shifted, kind="image")
    write_prediction(root, "empty", case.case_id, np.zeros_like(ref), kind="image")
    return case, root


def _value(table, **where):
    sel = table
    for k, v in where.items():
        sel = sel[sel[k] == v]
    assert len(sel) == 1, where
    return sel.iloc[0]


def test_byo_folder_end_to_end(folder, tmp_path):
    case, root = folder
    ws = Workspace.at(tmp_path / "ws")
    per_case, per_lesion = evaluate_predictions(ws, "idrid", predictions_root=root, cases=[case], tolerances=(1, 2),
                                                progress=False)
    assert sorted(per_case["model"].unique()) == ["empty", "exact", "shifted"]
    # exact prediction: Dice 1, HD95 0, recall 1, no false positive
    assert _value(per_case, model="exact", metric="dice")["value"] == 1.0
    assert _value(per_case, model="exact", metric="hd95")["value"] == 0.0
    assert _value(per_case, model="exact", metric="lesion_recall")["value"] == 1.0
    # shifted: overlap 12 + 100 of 116 + 117 voxels -> Dice 224 / 233; one false-positive component
    assert _value(per_case, model="shifted", metric="dice")["value"] == pytest.approx(224 / 233)
    assert _value(per_case, model="shifted", metric="fp_lesions")["value"] == 1.0
    # empty prediction: Dice 0, HD95 = the image diagonal sqrt(32^2 + 32^2), flagged as a penalty, recall 0
    row = _value(per_case, model="empty", metric="hd95")
    assert row["value"] == pytest.approx(np.hypot(32, 32)) and bool(row["penalty"])
    assert _value(per_case, model="empty", metric="lesion_recall")["value"] == 0.0
    assert {"contour_f1_tol1", "contour_f1_tol2"} <= set(per_case["metric"])

    # lesion A shifted by one column: Dice 2*12/32 = 0.75; boundary rings of 12 px each, six at distance 0 and
    # six at distance 1 in each direction -> HD95 = 1 (95th percentile of six 0s and six 1s), ASSD = 12/24 = 0.5
    a = per_lesion.query("model == 'shifted' and lesion_id == 1 and kind == 'lesion'")
    a = a.set_index("metric")["value"]
    assert a["dice"] == pytest.approx(0.75)
    assert a["hd95"] == pytest.approx(1.0)
    assert a["assd"] == pytest.approx(0.5)
    assert a["detected"] == 1.0

    # quartile edges from the two reference lesions (16 and 100 px of 1024): 25th percentile = (16 + 0.25*84)/1024
    edges = (tmp_path / "ws" / "results" / "idrid" / "quartile_edges.json").read_text()
    assert f"{37 / 1024:.6f}"[:7] in edges
    ref_rows = per_lesion[(per_lesion["kind"] == "lesion") & (per_lesion["metric"] == "dice")]
    assert set(ref_rows.loc[ref_rows["lesion_id"] == 1, "quartile"]) == {"Q1"}
    assert set(ref_rows.loc[ref_rows["lesion_id"] == 2, "quartile"]) == {"Q4"}
    # the one-pixel false positive (1/1024 of the image) falls in Q1 by its own size
    fp = per_lesion[per_lesion["kind"] == "false_positive"]
    assert len(fp) == 1 and fp.iloc[0]["quartile"] == "Q1" and fp.iloc[0]["model"] == "shifted"
    # missed lesions carry the penalty flag on their distance rows only: HD95, ASSD and MASD hold the image
    # diagonal; Dice, IoU, NSD and contour F1 are 0, a defined value, not a penalty
    empty = per_lesion[(per_lesion["model"] == "empty") & (per_lesion["kind"] == "lesion")]
    flagged = empty.groupby("metric")["penalty"].all()
    assert flagged[["hd95", "hd95_pooled", "assd", "masd"]].all() and (empty["metric"] == "hd95").sum() == 2
    assert not flagged[["detected", "dice", "iou", "nsd", "contour_f1"]].any()
    assert (empty.loc[empty["metric"] == "dice", "value"] == 0.0).all()
    # per-lesion MASD and NSD are written too: lesion A shifted by one column, MASD = ASSD = 0.5 (each directed
    # mean is 6 x 0 + 6 x 1 over 12), NSD at 1 px tolerance = 1 (every boundary pixel within 1 px)
    assert a["masd"] == pytest.approx(0.5) and a["nsd"] == pytest.approx(1.0)

    # the files round-trip
    pc, pl = read_tables(ws, "idrid")
    assert len(pc) == len(per_case) and len(pl) == len(per_lesion)
    assert set(pl["quartile"]) == {"Q1", "Q4"}


def test_models_subset_and_unknown_model(folder):
    case, root = folder
    per_case, _, _ = evaluate_cases([case], root, dataset="idrid", models=["exact"], progress=False)
    assert set(per_case["model"]) == {"exact"}
    with pytest.raises(ValueError, match=r"models \['nope'\] not found"):
        evaluate_cases([case], root, dataset="idrid", models=["nope"], progress=False)


def test_missing_prediction_names_the_file(folder):
    case, root = folder
    other = _Case("IDRiD_91", case.mask, case.image)
    with pytest.raises(FileNotFoundError, match="IDRiD_91"):
        evaluate_cases([case, other], root, dataset="idrid", models=["exact"], progress=False)


def test_missing_folder_and_empty_cases(tmp_path, folder):
    case, root = folder
    with pytest.raises(FileNotFoundError, match="predictions folder not found"):
        evaluate_cases([case], tmp_path / "nowhere", dataset="idrid")
    with pytest.raises(ValueError, match="cases is empty"):
        evaluate_cases([], root, dataset="idrid")


def test_ignore_mask_removes_voxels(tmp_path):
    # The prediction adds a blob inside the ignore region: it is neither a false positive nor an error.
    ref = _reference()
    ignore = np.zeros_like(ref)
    ignore[0:3, 25:32] = True
    pred = ref.copy()
    pred[0:3, 26:30] = True
    case = _Case("c1", ref, np.zeros((32, 32, 3), np.uint8), ignore=ignore)
    write_prediction(tmp_path / "p", "m", "c1", pred, kind="image")
    per_case, per_lesion, _ = evaluate_cases([case], tmp_path / "p", dataset="idrid", progress=False)
    assert _value(per_case, metric="dice")["value"] == 1.0
    assert _value(per_case, metric="fp_lesions")["value"] == 0.0


def test_volume_spacing_in_mm(tmp_path):
    # A 3D lesion shifted by one slice with 3 mm slices: HD95 in mm is 3 (every distance is 0 or 3 mm).
    ref = np.zeros((6, 12, 12), bool)
    ref[1:3, 4:8, 4:8] = True
    pred = np.zeros_like(ref)
    pred[2:4, 4:8, 4:8] = True
    case = _Case("v1", ref, np.zeros(ref.shape, np.float32), spacing=(3.0, 1.0, 1.0))
    write_prediction(tmp_path / "p", "m", "v1", pred, kind="volume")
    per_case, per_lesion, edges = evaluate_cases([case], tmp_path / "p", dataset="wmh", progress=False)
    assert _value(per_case, metric="dice")["value"] == pytest.approx(0.5)  # 16 of 32 + 32 voxels shared
    assert _value(per_case, metric="hd95")["value"] == pytest.approx(3.0)
    # one lesion: its largest axial cross-section 16 of 144 pixels; all three edges equal it
    np.testing.assert_allclose(edges, [16 / 144] * 3)


def test_example_crops(folder):
    case, root = folder
    _, per_lesion, _ = evaluate_cases([case], root, dataset="idrid", models=["exact", "shifted"], progress=False)
    examples = pd.DataFrame({"dataset": ["idrid"], "case_id": [case.case_id], "lesion_id": [1]})
    (crop,) = __import__("helpers.evaluation", fromlist=["example_crops"]).example_crops(
        [case], root, examples, per_lesion, models=["exact", "shifted"], margin=2)
    # lesion A spans rows/cols 4..7; with a margin of 2 the crop starts at 2 and holds the lesion's 16 pixels
    assert crop["reference"].sum() == 16 and crop["reference"][2:6, 2:6].all()
    assert crop["image"].shape[:2] == crop["reference"].shape
    assert crop["metrics"]["shifted"]["dice"] == pytest.approx(0.75)
    assert crop["predictions"]["shifted"].sum() == 16


def test_end_to_end_from_synthetic_data_folder(tmp_path):
    # The workspace route: synthetic IDRiD stand-in, splits.json and data_manifest.json as the data section
    # writes them, predictions = the reference itself for one model and an empty mask for another.
    from helpers import data
    from helpers.base import io
    from helpers.data import synthetic

    ws = Workspace.at(tmp_path)
    synthetic.write_idrid(ws.data("idrid"), seed=0, n_training=2, n_test=2, shape=(64, 96))
    cases = data.load_cases("idrid", ws.data("idrid"))
    test_ids = [c.case_id for c in cases][-2:]
    io.write_json({"train": [cases[0].case_id], "val": [cases[1].case_id], "test": test_ids},
                  ws.results("idrid") / "splits.json")
    io.write_json({"source": "synthetic"}, ws.results("idrid") / "data_manifest.json")
    for c in cases:
        write_prediction(ws.predictions("idrid"), "perfect", c.case_id, c.mask, kind="image")
        write_prediction(ws.predictions("idrid"), "empty", c.case_id, np.zeros_like(c.mask), kind="image")
    per_case, per_lesion = evaluate_predictions(ws, "idrid", progress=False)
    assert sorted(per_case["case_id"].unique()) == sorted(test_ids)
    perfect = per_case[(per_case["model"] == "perfect") & (per_case["metric"] == "dice")]
    assert (perfect["value"] == 1.0).all()
    n_lesions = sum(int(data_lesions) for data_lesions in per_case[(per_case["model"] == "empty")
                                                                   & (per_case["metric"] == "dice")]["n_ref_lesions"])
    empty_recall = per_lesion[(per_lesion["model"] == "empty") & (per_lesion["metric"] == "detected")]
    assert len(empty_recall) == n_lesions and (empty_recall["value"] == 0).all()
    edges = io.read_json(ws.results("idrid") / "quartile_edges.json")
    assert edges["n_reference_lesions"] == n_lesions and edges["n_cases"] == 2


def test_tolerance_defaults_to_one_in_plane_voxel():
    from helpers.evaluation import in_plane_voxel_mm, resolve_tolerances, tolerance_metrics

    # in-plane spacings (y, x) of three volumes: larger of the two 1.8, 1.8, 2.0 -> median 1.8 mm
    cases = [_Case(f"v{i}", np.zeros((2, 4, 4), bool), None, spacing=s)
             for i, s in enumerate([(3.0, 1.8, 1.8), (3.0, 1.5, 1.8), (5.0, 2.0, 2.0)])]
    assert in_plane_voxel_mm(cases) == pytest.approx(1.8)
    primary, extra = resolve_tolerances(cases, None, None)
    assert primary == pytest.approx(1.8) and extra == pytest.approx((1.8, 3.6, 5.4))
    assert resolve_tolerances(cases, 1.0, (1, 2)) == (1.0, (1.0, 2.0))  # numbers are mm, kept
    with pytest.raises(ValueError, match="cases is empty"):
        in_plane_voxel_mm([])
    pc = pd.DataFrame({"metric": ["contour_f1_tol5.4", "contour_f1_tol1.8", "nsd_tol1.8", "dice"]})
    assert tolerance_metrics(pc) == ["contour_f1_tol1.8", "contour_f1_tol5.4"]


def test_voxel_tolerance_separates_what_a_sub_voxel_tolerance_cannot(tmp_path):
    # 2 mm pixels, prediction shifted one pixel: with a 1 mm tolerance (below one pixel) only exact boundary
    # matches count and 1 mm / 2 mm give the same contour F1 as any value < 2; the default one-voxel tolerance
    # (2 mm) forgives the one-pixel shift: contour F1 1.
    ref = np.zeros((16, 16), bool)
    ref[4:10, 4:10] = True
    pred = np.roll(ref, 1, axis=1)
    case = _Case("c", ref, np.zeros((16, 16, 3), np.uint8), spacing=(2.0, 2.0))
    write_prediction(tmp_path / "p", "m", "c", pred, kind="image")
    per_case, _, _ = evaluate_cases([case], tmp_path / "p", dataset="idrid", tolerance=None, tolerances=None,
                                    progress=False)
    assert _value(per_case, metric="contour_f1")["value"] == pytest.approx(1.0)
    assert {"contour_f1_tol1vox", "contour_f1_tol2vox", "contour_f1_tol3vox", "nsd_tol1vox"} <= set(per_case["metric"])
    sub_voxel, _, _ = evaluate_cases([case], tmp_path / "p", dataset="idrid", tolerance=1.0, progress=False)
    assert _value(sub_voxel, metric="contour_f1")["value"] < 1.0




def test_tolerance_is_one_voxel_of_each_cases_own_grid(tmp_path):
    # WMH-like mixed grids: one case at 0.958 mm, one at 1.0 mm, both predicted one pixel off. One tolerance in mm
    # (the median voxel, 0.979 mm) lies above 0.958 but below 1.0, so the 1.0 mm case scores only its exact
    # matches (contour F1 < 1) and the 0.958 mm case forgives the shift (1.0): the same error scored by site.
    # Per-case voxels: both 1.0, and the Python API's default does exactly that.
    ref = np.zeros((16, 16), bool)
    ref[4:10, 4:10] = True
    pred = np.roll(ref, 1, axis=1)
    cases = [_Case("a", ref, np.zeros((16, 16, 3), np.uint8), spacing=(0.958, 0.958)),
             _Case("b", ref, np.zeros((16, 16, 3), np.uint8), spacing=(1.0, 1.0))]
    for c in cases:
        write_prediction(tmp_path / "p", "m", c.case_id, pred, kind="image")
    per_case, _, _ = evaluate_cases(cases, tmp_path / "p", dataset="idrid", progress=False)
    f1 = per_case[per_case["metric"] == "contour_f1"].set_index("case_id")["value"]
    assert f1.to_dict() == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}
    two = per_case[per_case["metric"] == "contour_f1_tol2vox"].set_index("case_id")["value"]
    assert (two == 1.0).all()
    median = float(np.median([0.958, 1.0]))
    one_mm, _, _ = evaluate_cases(cases, tmp_path / "p", dataset="idrid", tolerance=median, tolerances=(),
                                  progress=False)
    f1 = one_mm[one_mm["metric"] == "contour_f1"].set_index("case_id")["value"]
    assert f1["a"] == pytest.approx(1.0) and f1["b"] < 1.0
