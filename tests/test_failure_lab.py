"""Tests of helpers.studies.failure_lab: analytic expectations, synthetic lesions, the sweep against closed forms,
calibration to a common Dice, evaluation into the study's tables, and the planted ranking reversal."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from helpers.analysis import units as analysis
from helpers.studies import failure_lab as F
from helpers.metrics.lesions import REFERENCE

matplotlib.use("Agg")


# ------------------------------------------------------------------------------------------------ analytic
def test_analytic_offset_hand_values():
    # 2D, r = 1, d = 1: u = 1/2, (2/pi)(acos(1/2) - (1/2) sqrt(3/4)) = (2/pi)(1.047198 - 0.433013) = 0.391002
    e = F.analytic_expectation("offset", 1.0, 1.0)
    assert e["dice"] == pytest.approx(0.391002, abs=1e-6)
    assert e["hd"] == 1.0
    assert e["dice_small"] == pytest.approx(1 - 2 / math.pi)
    # 3D, r = 1, d = 1: (4 + 1)(2 - 1)^2 / 16 = 0.3125
    assert F.analytic_expectation("offset", 1.0, 1.0, ndim=3)["dice"] == pytest.approx(0.3125)
    # no overlap once d >= 2r
    assert F.analytic_expectation("offset", 1.0, 2.0)["dice"] == 0.0
    assert F.analytic_expectation("offset", 5.0, 0.0)["dice"] == pytest.approx(1.0)


def test_analytic_offset_small_shift_matches_first_order():
    # Dice = 1 - 2d/(pi r) + O((d/r)^3): at d/r = 0.01 the two agree to 1e-6
    e = F.analytic_expectation("offset", 100.0, 1.0)
    assert e["dice"] == pytest.approx(e["dice_small"], abs=1e-6)


def test_analytic_dilate_erode_one_side():
    assert F.analytic_expectation("dilate", 2.0, 1.0)["dice"] == pytest.approx(8 / 13)  # 2*4 / (4 + 9)
    assert F.analytic_expectation("dilate", 2.0, 1.0, ndim=3)["dice"] == pytest.approx(16 / 35)  # 2*8 / (8 + 27)
    assert F.analytic_expectation("erode", 2.0, 1.0)["dice"] == pytest.approx(2 / 5)  # 2*1 / (4 + 1)
    assert F.analytic_expectation("erode", 2.0, 2.0) == {"dice": 0.0}
    lens = F.analytic_expectation("offset", 1.0, 1.0)["dice"]
    assert F.analytic_expectation("one_side", 1.0, 1.0)["dice"] == pytest.approx(2 * lens / (1 + lens))
    assert F.analytic_expectation("blobs", 3.0, 1.0) == {}


# -------------------------------------------------------------------------------------------------- lesions
def test_draw_lesion_disk_is_the_digital_disk():
    # Gauss circle problem: 29 lattice points with x^2 + y^2 <= 9; 33 with x^2 + y^2 + z^2 <= 4
    assert F.draw_lesion((11, 11), (5, 5), 3.0).sum() == 29
    assert F.draw_lesion((9, 9, 9), (4, 4, 4), 2.0).sum() == 33


def test_draw_lesion_irregular_has_protrusions_and_is_connected():
    rng = np.random.default_rng(0)
    lesion = F.draw_lesion((61, 61), (30, 30), 8.0, irregularity=0.2, n_protrusions=2, rng=rng)
    assert ndimage.label(lesion, structure=np.ones((3, 3)))[1] == 1
    # the spikes reach 0.8 r beyond the lobed boundary: the lesion extends past 1.2 r = 9.6 in some direction
    ys, xs = np.nonzero(lesion)
    assert np.hypot(ys - 30, xs - 30).max() > 9.6


@pytest.mark.parametrize("seed", range(5))
def test_draw_lesion_3d_with_spikes_is_one_component(seed):
    lesion = F.draw_lesion((31, 31, 31), (15, 15, 15), 5.0, irregularity=0.2, n_protrusions=3,
                           rng=np.random.default_rng(seed))
    assert ndimage.label(lesion, structure=np.ones((3, 3, 3)))[1] == 1


def test_draw_lesion_anisotropic_spacing():
    # spacing (2, 1): radius 2 mm covers dy in {-1, 0, 1} (2 mm) and dx in -2..2; points with (2dy)^2 + dx^2 <= 4:
    # dy = 0: 5, dy = +-1: dx = 0 -> 1 each: 7
    assert F.draw_lesion((9, 9), (8.0, 4.0), 2.0, spacing=(2.0, 1.0)).sum() == 7


def test_draw_lesion_errors():
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        F.draw_lesion((11, 11), (5, 5), 3.0, irregularity=0.2)
    with pytest.raises(ValueError, match="irregularity must be in"):
        F.draw_lesion((11, 11), (5, 5), 3.0, irregularity=1.0, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="radius_mm must be finite and > 0"):
        F.draw_lesion((11, 11), (5, 5), 0.0)


# ---------------------------------------------------------------------------------------------------- sweep
@pytest.fixture(scope="module")
def disk_sweep():
    return F.sweep([3.0, 10.0], ["offset", "dilate", "erode"], [1.0, 2.0, 4.0], shapes=["disk"], n_repeats=2,
                   seed=0, progress=False)


def _value(table, **where):
    sub = table
    for key, value in where.items():
        sub = sub[sub[key] == value]
    return sub


def test_sweep_reference_rows_are_perfect(disk_sweep):
    none = _value(disk_sweep, mode="none")
    assert (none[none["metric"] == "dice"]["value"] == 1.0).all()
    assert (none[none["metric"] == "hd95"]["value"] == 0.0).all()


def test_sweep_dilation_hd95_equals_severity(disk_sweep):
    # dilation by an integer s moves every boundary voxel by exactly s along the axes: HD95 = s (directed max)
    for s in (1.0, 2.0, 4.0):
        values = _value(disk_sweep, mode="dilate", severity_mm=s, metric="hd95")["value"]
        np.testing.assert_allclose(values, s)


def test_sweep_offset_matches_disk_lens_and_hd(disk_sweep):
    # r = 10, d = 2: lens Dice 0.873 (continuum); digitised disks agree within 0.03; HD95 ~ d within a voxel
    rows = _value(disk_sweep, mode="offset", severity_mm=2.0, radius_mm=10.0)
    expected = F.analytic_expectation("offset", 10.0, 2.0)
    assert rows[rows["metric"] == "dice"]["value"].mean() == pytest.approx(expected["dice"], abs=0.03)
    assert rows[rows["metric"] == "hd"]["value"].mean() == pytest.approx(2.0, abs=1.0)


def test_sweep_dice_nearly_tied_while_hd95_differs_by_size(disk_sweep):
    # the mechanism: a shift of 1 costs a large lesion little Dice but the same HD as a small one
    big = _value(disk_sweep, mode="offset", severity_mm=1.0, radius_mm=10.0, metric="dice")["value"].mean()
    small = _value(disk_sweep, mode="offset", severity_mm=1.0, radius_mm=3.0, metric="dice")["value"].mean()
    assert big > 0.9 and small < big - 0.1


def test_sweep_erosion_deleting_a_lesion_is_a_penalty(disk_sweep):
    # erosion by 4 of a disk of radius 3 leaves nothing: Dice 0, distances hold the penalty (flagged)
    rows = _value(disk_sweep, mode="erode", severity_mm=4.0, radius_mm=3.0)
    assert (rows[rows["metric"] == "dice"]["value"] == 0.0).all()
    hd95 = rows[rows["metric"] == "hd95"]
    assert hd95["penalty"].all() and (hd95["value"] > 20).all()
    assert not rows[rows["metric"] == "dice"]["penalty"].any()


def test_sweep_summary_counts(disk_sweep):
    s = F.sweep_summary(disk_sweep)
    row = s[(s["mode"] == "erode") & (s["severity_mm"] == 4.0) & (s["radius_mm"] == 3.0) & (s["metric"] == "hd95")]
    assert int(row["n"].iloc[0]) == 2 and int(row["n_penalty"].iloc[0]) == 2


def test_sweep_errors():
    with pytest.raises(ValueError, match="mode must be one of"):
        F.sweep([3.0], ["melt"], [1.0], progress=False)
    with pytest.raises(ValueError, match="shapes must be among"):
        F.sweep([3.0], ["offset"], [1.0], shapes=["cube"], progress=False)
    with pytest.raises(ValueError, match="radii_mm must be finite and > 0"):
        F.sweep([-1.0], ["offset"], [1.0], progress=False)


def test_dice_ties_finds_hand_made_tie():
    rows = []
    for mode, dice, hd95 in (("offset", 0.80, 3.0), ("dilate", 0.805, 1.0), ("erode", 0.60, 1.0)):
        for metric, value in (("dice", dice), ("hd95", hd95)):
            rows.append({"lesion_shape": "disk", "radius_mm": 4.0, "repeat": 0, "mode": mode, "severity_mm": 1.0,
                         "metric": metric, "value": value, "penalty": False})
    ties = F.dice_ties(pd.DataFrame(rows), metric="hd95", dice_window=0.01)
    assert len(ties) == 1
    assert {ties.loc[0, "mode_a"], ties.loc[0, "mode_b"]} == {"offset", "dilate"}
    assert ties.loc[0, "ratio"] == pytest.approx(3.0)
    assert F.dice_ties(pd.DataFrame(rows), metric="hd95", dice_range=(0.81, 1.0)).empty
    with pytest.raises(ValueError, match="dice_range must be"):
        F.dice_ties(pd.DataFrame(rows), dice_range=(0.9, 0.5))


# --------------------------------------------------------------------------------------- test set, models
@pytest.fixture(scope="module")
def cases():
    return F.make_test_set(10, shape=(96, 96), min_radius_mm=2.5, max_radius_mm=12.0, seed=1)


def test_make_test_set_lesion_counts_and_determinism(cases):
    again = F.make_test_set(10, shape=(96, 96), min_radius_mm=2.5, max_radius_mm=12.0, seed=1)
    for a, b in zip(cases, again):
        np.testing.assert_array_equal(a.mask, b.mask)
    counts = [ndimage.label(c.mask, structure=np.ones((3, 3)))[1] for c in cases]
    assert min(counts) >= 1 and max(counts) <= 7
    assert len({c.case_id for c in cases}) == 10


def test_full_set_dice_of_identity_model_is_one(cases):
    assert F.full_set_dice(F.SyntheticModel("perfect", "offset", 0.0), cases) == 1.0


def test_calibration_reaches_matched_dice(cases):
    models = [
        F.SyntheticModel("offset", "offset"),
        F.SyntheticModel("dilate", "dilate", severity_mm=1.0, tune="fraction"),
        F.SyntheticModel("one_side", "one_side"),
    ]
    calibrated, table = F.calibrate_models(models, cases, targets=0.88, tolerance=0.004)
    assert (abs(table["full_set_dice"] - 0.88) <= 0.004).all()
    assert table["full_set_dice"].max() - table["full_set_dice"].min() <= 0.01
    # the reported Dice is what the calibrated model really reaches
    for model, achieved in zip(calibrated, table["full_set_dice"]):
        assert F.full_set_dice(model, cases) == pytest.approx(achieved, abs=1e-12)
    assert calibrated[1].severity_mm == 1.0 and 0 < calibrated[1].fraction < 1


def test_calibration_out_of_range_raises(cases):
    with pytest.raises(ValueError, match="outside the range"):
        F.calibrate(F.SyntheticModel("p", "protrusions"), cases, target_dice=0.3, max_severity_mm=4.0)


def test_calibration_of_a_jumping_dice_raises(cases):
    # dilation does nothing below 1 voxel and jumps at 1 for every lesion at once: 0.95 is not reachable
    with pytest.raises(ValueError, match="no severity_mm reaches target_dice 0.950"):
        F.calibrate(F.SyntheticModel("d", "dilate"), cases, target_dice=0.95, tolerance=0.002, max_severity_mm=3.0)


def test_synthetic_model_validation():
    with pytest.raises(ValueError, match="tune must be"):
        F.SyntheticModel("x", "offset", tune="radius")
    with pytest.raises(ValueError, match="mode must be one of"):
        F.SyntheticModel("x", "melt")
    with pytest.raises(ValueError, match="extra steps must be dicts with a 'mode'"):
        F.SyntheticModel("x", "offset", extra=({"severity_mm": 1.0},))


def test_extra_step_adds_blobs(cases):
    model = F.SyntheticModel("b", "dilate", 0.0, extra=({"mode": "blobs", "severity_mm": 0.0},))
    pred = model.predict(cases[0], index=0)
    n_ref = ndimage.label(cases[0].mask, structure=np.ones((3, 3)))[1]
    assert ndimage.label(pred, structure=np.ones((3, 3)))[1] == 2 * n_ref  # one single-voxel blob per lesion
    assert (pred & cases[0].mask).sum() == cases[0].mask.sum()


# ----------------------------------------------------------------------------------------------- evaluation
def test_evaluate_models_tables_feed_the_study(cases):
    perfect = F.SyntheticModel("perfect", "offset", 0.0)
    per_case, per_lesion = F.evaluate_models([perfect], cases[:3])
    assert set(analysis._CASE_COLUMNS) <= set(per_case.columns)
    assert set(analysis.LESION_COLUMNS) <= set(per_lesion.columns)
    dice = per_case[per_case["metric"] == "dice"]["value"]
    assert len(dice) == 3 and (dice == 1.0).all()
    assert (per_case[per_case["metric"] == "hd95"]["value"] == 0.0).all()
    assert (per_case[per_case["metric"] == "fp_lesions"]["value"] == 0.0).all()
    assert (per_case[per_case["metric"] == "lesion_recall"]["value"] == 1.0).all()
    ref = per_lesion[(per_lesion["kind"] == REFERENCE) & (per_lesion["metric"] == "detected")]
    n_ref = sum(ndimage.label(c.mask, structure=np.ones((3, 3)))[1] for c in cases[:3])
    assert len(ref) == n_ref and (ref["value"] == 1.0).all()
    assert set(per_lesion["quartile"]) <= {"Q1", "Q2", "Q3", "Q4"}
    units = analysis.analysis_units(per_case, per_lesion)
    assert set(units["stratum"]) >= {"overall", "Q1"}


def test_evaluate_models_penalty_flag_means_what_evaluation_means(cases):
    # A model that predicts nothing misses every lesion: distance rows flagged, the Dice 0 rows not, exactly as
    # helpers.evaluation's per_lesion table (both are built by helpers.evaluation.lesion_rows).
    nothing = F.SyntheticModel("nothing", "erode", 50.0)
    _, per_lesion = F.evaluate_models([nothing], cases[:2])
    ref = per_lesion[per_lesion["kind"] == REFERENCE]
    assert (ref.loc[ref["metric"] == "detected", "value"] == 0.0).all()
    flagged = ref.groupby("metric")["penalty"].all()
    assert flagged[["hd95", "hd95_pooled", "assd"]].all()
    assert not ref.loc[ref["metric"].isin(["dice", "iou", "nsd", "contour_f1", "detected"]), "penalty"].any()


def test_use_hd95_variant_swaps_values():
    table = pd.DataFrame({"case_id": ["a", "a", "a"], "metric": ["dice", "hd95", "hd95_pooled"],
                          "value": [0.9, 3.0, 1.0]})
    pooled = F.use_hd95_variant(table, "pooled")
    assert pooled.set_index("metric")["value"].to_dict() == {"dice": 0.9, "hd95": 1.0}
    directed = F.use_hd95_variant(table, "directed")
    assert directed.set_index("metric")["value"].to_dict() == {"dice": 0.9, "hd95": 3.0}
    with pytest.raises(ValueError, match="variant must be 'directed' or 'pooled'"):
        F.use_hd95_variant(table, "mean")


# ------------------------------------------------------------------------------------------------ reversal
@pytest.fixture(scope="module")
def demo():
    test_set = F.make_test_set(16, shape=(128, 128), min_radius_mm=2.5, max_radius_mm=16.0, seed=0)
    return F.reversal_demo(test_set, target_dice=0.85, n_resamples=300, seed=0)


def test_reversal_demo_models_are_dice_matched(demo):
    dice = demo["calibration"].set_index("model")["full_set_dice"]
    assert dice.max() - dice.min() <= 0.01
    assert dice.idxmax() == "one_side_model"  # planted: the worse boundary leads on Dice


def test_reversal_detector_finds_the_planted_reversal(demo):
    v = demo["verdicts"]
    row = v[(v["hd95_variant"] == "directed") & (v["stratum"] == "overall")].iloc[0]
    assert row["dice_leader"] == "one_side_model"
    assert row["order_changed"] and row["reversal_found"]
    assert row["hd95_better"] == "dilation_model"
    assert row["hd95_verdict"] == "sign kept, Holm p <= 0.05" and row["hd95_share_same_sign"] >= 0.95
    assert row["dice_leader_rank_hd95"] > 1


def test_reversal_demo_hd95_variants_differ_for_blob_model(demo):
    # the blobs are a small share of boundary voxels: the pooled HD95 dilutes them, the directed max does not
    agg = {v: demo[f"aggregates_{v}"] for v in ("directed", "pooled")}
    pick = lambda a: a[(a["stratum"] == "overall") & (a["metric"] == "hd95")].set_index("model")["value"]  # noqa: E731
    directed, pooled = pick(agg["directed"]), pick(agg["pooled"])
    assert directed["dilation_blob_model"] > pooled["dilation_blob_model"] + 0.5
    assert directed["dilation_model"] == pytest.approx(pooled["dilation_model"], abs=0.2)


def test_reversal_demo_rejects_large_gap(cases):
    with pytest.raises(ValueError, match="dice_gap must be < 0.01"):
        F.reversal_demo(cases, dice_gap=0.02)


# --------------------------------------------------------------------------------------------------- figures
def test_plot_metric_vs_size_draws_measurement_and_analytic(disk_sweep):
    ax = F.plot_metric_vs_size(disk_sweep, mode="offset", metric="dice", shape="disk")
    # 3 severities: one measured line, one exact and one first-order analytic line each
    assert len(ax.lines) == 9
    with pytest.raises(ValueError, match="no rows for mode 'smooth'"):
        F.plot_metric_vs_size(disk_sweep, mode="smooth", metric="dice")
    matplotlib.pyplot.close("all")


def test_figures_build(disk_sweep, demo):
    fig = F.plot_sweep_grid(disk_sweep, modes=["offset", "dilate"], metrics=["dice", "hd95"])
    assert len(fig.axes) == 4
    fig = F.plot_demo(demo["aggregates_directed"])
    assert len(fig.axes) == 4
    fig = F.plot_mode_gallery(5.0, 1.5, modes=["offset", "blobs"])
    assert sum(ax.has_data() for ax in fig.axes) == 2
    matplotlib.pyplot.close("all")


def test_sweep_in_3d_follows_the_sphere_lens():
    # axis-free check: a sphere of radius 8 shifted by d = 2 (rounded to a lattice vector v, |v| in [1.4, 2.9])
    # keeps the lens fraction (4r + |v|)(2r - |v|)^2 / (16 r^3) of its volume, within digitisation (0.03)
    table = F.sweep([8.0], ["offset"], [2.0], shapes=["disk"], ndim=3, n_repeats=2, seed=3, progress=False)
    rows = table[(table["mode"] == "offset")]
    for repeat in (0, 1):
        r = rows[rows["repeat"] == repeat]
        shift = float(r[r["metric"] == "hd"]["value"].iloc[0])  # HD of a translated sphere = the realised shift
        assert 1.4 <= shift <= 2.9
        expected = F.analytic_expectation("offset", 8.0, shift, ndim=3)["dice"]
        assert float(r[r["metric"] == "dice"]["value"].iloc[0]) == pytest.approx(expected, abs=0.03)


def test_make_test_set_3d_keeps_the_gap():
    test_set = F.make_test_set(3, shape=(40, 40, 40), min_radius_mm=2.0, max_radius_mm=6.0, gap_mm=3.0, seed=2)
    for case in test_set:
        labels, n = ndimage.label(case.mask, structure=np.ones((3, 3, 3)))
        assert n >= 1
        for i in range(1, n + 1):
            # every other lesion lies farther than the gap from lesion i
            distance = ndimage.distance_transform_edt(labels != i)
            others = (labels > 0) & (labels != i)
            assert not others.any() or distance[others].min() > 3.0


def test_reversal_detector_negative_control():
    # swap the roles: the Dice leader now has the better boundary, so there is no reversal to find
    test_set = F.make_test_set(12, shape=(128, 128), min_radius_mm=2.5, max_radius_mm=16.0, seed=4)
    models = (F.SyntheticModel("dilation_first", "dilate", severity_mm=1.0, tune="fraction"),
              F.SyntheticModel("one_side_second", "one_side"))
    out = F.reversal_demo(test_set, target_dice=0.85, models=models, n_resamples=200, seed=0)
    row = out["verdicts"].query("hd95_variant == 'directed' and stratum == 'overall'").iloc[0]
    assert row["dice_leader"] == "dilation_first"
    assert not row["order_changed"] and not row["reversal_found"]
    assert row["hd95_better"] == "dilation_first"
