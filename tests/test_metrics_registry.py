"""Tests of the metric registry (helpers.metrics.METRICS): every metric a table carries is registered, queries
return the paper's lists, and every registered direction agrees with a hand-built case."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from helpers import analysis
from helpers.studies import failure_lab
from helpers.evaluation import evaluate_case_tables, evaluate_cases, lesion_rows
from helpers.metrics.lesions import LESION_METRICS, evaluate_lesions
from helpers.metrics import (
    METRICS, Metric, evaluate_case, higher_is_better, label, metric, metric_names, split_tolerance_name,
    tolerance_name,
)
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


def _worse(ref):
    # lesion A shifted one column right, lesion B missed, one false-positive pixel
    pred = np.zeros_like(ref)
    pred[4:8, 5:9] = True
    pred[30, 30] = True
    return pred


@pytest.fixture
def tables(tmp_path):
    ref = _reference()
    case = _Case("c0", ref, np.zeros((32, 32, 3), np.uint8))
    root = tmp_path / "p"
    write_prediction(root, "exact", case.case_id, ref, kind="image")
    write_prediction(root, "worse", case.case_id, _worse(ref), kind="image")
    per_case, per_lesion, _ = evaluate_cases([case], root, dataset="idrid", tolerance=1.0, tolerances=(1.0, 2.0),
                                             progress=False)
    return per_case, per_lesion


# ------------------------------------------------------------------------------------------------ coverage
def test_every_metric_the_evaluation_writes_is_registered(tables):
    per_case, per_lesion = tables
    for name in set(per_case["metric"]) | set(per_lesion["metric"]):
        assert isinstance(metric(name), Metric), name  # raises ValueError for an unregistered name
    # and every metric the registry puts in a table is written there
    assert set(metric_names(table="case")) <= set(per_case["metric"])
    assert set(metric_names(table="lesion")) <= set(per_lesion["metric"])
    assert {tolerance_name(n, t) for n in ("nsd", "contour_f1") for t in (1.0, 2.0)} <= set(per_case["metric"])


def test_every_aggregated_metric_is_registered(tables):
    aggregates = analysis.aggregate(analysis.analysis_units(*tables), min_lesions=1)
    assert set(aggregates["metric"]) <= set(METRICS)
    assert set(metric_names(primary=True)) <= set(aggregates["metric"])


def test_every_lesion_table_metric_column_is_registered():
    ref = _reference()
    table = evaluate_lesions(ref, _worse(ref), tolerances=(2,))
    not_metrics = {"lesion_id", "kind", "detected", "n_voxels", "volume_mm3", "area_fraction", "n_pred_components",
                   "overlap_voxels", "penalty"} | {c for c in table.columns if c.startswith("bbox_")}
    columns = set(table.columns) - not_metrics
    assert columns == set(LESION_METRICS) | {"nsd_tol2", "contour_f1_tol2"}
    for name in columns:
        assert metric(name).per_lesion


def test_sweep_records_the_registry_sweep_metrics():
    table = failure_lab.sweep([2.0], ["offset"], [1.0], shapes=["disk"], n_repeats=1, progress=False)
    assert tuple(dict.fromkeys(table["metric"])) == metric_names(table="sweep")


# ------------------------------------------------------------------------------------------------- queries
def test_queries_return_the_papers_lists_in_order():
    assert metric_names(primary=True) == ("dice", "iou", "hd95", "assd", "masd", "nsd", "contour_f1",
                                          "lesion_recall", "fp_lesions_per_case")
    assert metric_names(primary=True, computed=True) == ("dice", "iou", "hd95", "assd", "masd", "nsd", "contour_f1")
    assert metric_names(primary=True, kind="detection") == ("lesion_recall", "fp_lesions_per_case")
    assert metric_names(against_dice=True) == ("hd95", "assd", "contour_f1")
    assert metric_names(kind="distance") == ("hd", "hd95", "hd95_pooled", "assd", "masd")
    assert metric_names(table="sweep") == ("dice", "hd", "hd95", "hd95_pooled", "assd", "nsd", "contour_f1")
    assert metric_names(table="lesion", per_lesion=True) == ("dice", "iou", "hd95", "hd95_pooled", "assd", "masd",
                                                             "nsd", "contour_f1")
    with pytest.raises(ValueError, match="kind must be one of"):
        metric_names(kind="shape")
    with pytest.raises(ValueError, match="table must be one of"):
        metric_names(table="per_case")


def test_one_name_for_contour_f1():
    assert "contour_f1" in METRICS and "boundary_f1" not in METRICS
    result = evaluate_case(_reference(), _reference())
    assert result.contour_f1 == 1.0 and "boundary_f1" not in result.metric_values()
    with pytest.raises(AttributeError, match="boundary_f1"):
        result.boundary_f1


def test_tolerance_names_round_trip():
    assert tolerance_name("nsd", 2.0) == "nsd_tol2"
    assert tolerance_name("contour_f1", 2.39583) == "contour_f1_tol2.39583"
    assert split_tolerance_name("contour_f1_tol2.39583") == ("contour_f1", 2.39583)
    assert split_tolerance_name("hd95_pooled") == ("hd95_pooled", None)
    assert metric("nsd_tol3").name == "nsd"
    with pytest.raises(ValueError, match="no tolerance variants"):
        tolerance_name("dice", 1.0)
    with pytest.raises(ValueError, match="unknown metric 'dice_tol2'"):
        metric("dice_tol2")
    with pytest.raises(ValueError, match="unknown metric 'volume_error'"):
        metric("volume_error")


def test_labels_and_units():
    assert label("hd95") == "HD95" and label("hd95", unit=True) == "HD95 (mm)"
    assert label("dice", unit=True) == "Dice"  # no unit, no brackets
    assert label("contour_f1_tol2") == "contour F1 at 2 mm"
    assert label("fp_lesions_per_case") == "FP lesions / case"


def test_directions_and_overrides():
    assert higher_is_better("hd95_pooled") is False  # once missing from the ranking's table
    assert higher_is_better("contour_f1_tol2.4") is True
    assert higher_is_better("volume_error", {"volume_error": "lower"}) is False
    with pytest.raises(ValueError, match="metric 'volume_error' has no direction"):
        higher_is_better("volume_error")
    with pytest.raises(ValueError, match="must be 'higher' or 'lower'"):
        higher_is_better("x", {"x": "up"})


def test_metric_entries_are_validated():
    with pytest.raises(ValueError, match="kind must be one of"):
        Metric("x", "shape", True, "", "x")
    with pytest.raises(ValueError, match=r"tables \['per_case'\] unknown"):
        Metric("x", "overlap", True, "", "x", frozenset({"per_case"}))
    assert [m.name for m in METRICS.values() if m.penalised] == list(metric_names(kind="distance"))


# ------------------------------------------------------------------------------------------------ directions
def _better(name: str, good: float, bad: float) -> bool:
    return good > bad if higher_is_better(name) else good < bad


@pytest.mark.parametrize("name", metric_names(computed=True))
def test_image_level_direction_agrees_with_a_hand_case(name):
    # A 6x6 square (rows 5-10) and a prediction moved down by 2 rows and one row taller (rows 7-13, 42 px): overlap
    # rows 7-10 = 24 px, Dice 2*24/(36+42) = 8/13; the top edge is 2 rows off, the bottom edge 3, so HD = 3; at
    # tolerance 1 those edges miss, so NSD and contour F1 are below 1. The perfect prediction must be better.
    ref = np.zeros((20, 20), bool)
    ref[5:11, 5:11] = True
    shifted = np.zeros_like(ref)
    shifted[7:14, 5:11] = True
    perfect, moved = evaluate_case(ref, ref), evaluate_case(ref, shifted)
    assert moved.dice == pytest.approx(8 / 13) and moved.hd == pytest.approx(3.0)
    assert _better(name, perfect.values[name], moved.values[name])


def test_detection_directions_agree_with_a_hand_case(tables):
    per_case, per_lesion = tables
    case = per_case.set_index(["model", "metric"])["value"]
    # exact: both lesions found, no false positive; worse: B missed (recall 1/2), one false-positive pixel
    assert (case[("exact", "lesion_recall")], case[("worse", "lesion_recall")]) == (1.0, 0.5)
    assert (case[("exact", "fp_lesions")], case[("worse", "fp_lesions")]) == (0.0, 1.0)
    for name in ("lesion_recall", "fp_lesions"):
        assert _better(name, case[("exact", name)], case[("worse", name)])
    detected = per_lesion[per_lesion["metric"] == "detected"].groupby("model")["value"].sum()
    assert (detected["exact"], detected["worse"]) == (2.0, 1.0) and _better("detected", 2.0, 1.0)
    false_positive = per_lesion[per_lesion["metric"] == "false_positive"].groupby("model")["value"].sum()
    assert false_positive.get("exact", 0.0) == 0.0 and false_positive["worse"] == 1.0
    assert _better("false_positive", 0.0, 1.0)
    aggregates = analysis.aggregate(analysis.analysis_units(per_case, per_lesion), min_lesions=1)
    overall = aggregates[aggregates["stratum"] == "overall"].set_index(["model", "metric"])["value"]
    assert (overall[("exact", "fp_lesions_per_case")], overall[("worse", "fp_lesions_per_case")]) == (0.0, 1.0)
    assert _better("fp_lesions_per_case", 0.0, 1.0)


def test_penalty_flag_follows_the_registry_kind():
    # A missed lesion: its distance rows (registry kind "distance") hold the penalty, its scores are a defined 0.
    ref = _reference()
    case = _Case("c0", ref, np.zeros((32, 32, 3), np.uint8))
    _, table = evaluate_case_tables(case, _worse(ref), dataset="d", model="m")
    rows = lesion_rows(table, dataset="d", model="m", case_id="c0")
    missed = rows[(rows["lesion_id"] == 2) & (rows["kind"] == "lesion")].set_index("metric")
    for name in metric_names(table="lesion", per_lesion=True):
        assert bool(missed.loc[name, "penalty"]) == metric(name).penalised, name
    assert not missed.loc["detected", "penalty"]
