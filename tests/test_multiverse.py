"""The specification grid (helpers.analysis.multiverse), its joint sign-flip test and the voxel grid's own error
(helpers.metrics.grid_error), on hand-made lesion tables and analytic shapes with values derived by hand."""

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import integrate

from helpers.analysis.multiverse import (
    AXES, AXIS_BY_NAME, FAMILIES, Specification, reversal_shares, specification_grid, specifications,
    summary_sentences,
)
from helpers.metrics.grid_error import (
    ball_mask, exact_metrics, exceeds_grid_error, grid_error_bound, grid_error_table, voxel_metrics,
)
from helpers.stats.inference import joint_sign_flip_test

STRUCTURAL = [(c, k) for c in AXIS_BY_NAME["connectivity"].values for k in AXIS_BY_NAME["cleanup_voxels"].values]


def _table(rows):
    """A wide lesion table from (model, case, lesion, size, dice, hd95, hd95_pooled, assd, masd, f1) tuples; every
    lesion detected with 5 overlapping voxels, the f1 the same at every tolerance, n_voxels = area * 1000."""
    out = []
    for model, case, lesion, area, dice, hd95, pooled, assd, masd, f1 in rows:
        out.append({"model": model, "case_id": case, "lesion_id": lesion, "overlap_voxels": 5,
                    "n_voxels": int(area * 1000), "area_fraction": area, "penalty_mm": 100.0, "dice": dice,
                    "hd95": hd95, "hd95_pooled": pooled, "assd": assd, "masd": masd, "contour_f1_1vox": f1,
                    "contour_f1_2vox": f1, "contour_f1_3vox": f1})
    return pd.DataFrame(out)


def _dominated_case():
    """Three models, four cases, two lesions each: on every lesion Dice orders A > B > C and every boundary metric
    orders them the other way (A worst). Any selection of lesions (all models keep the same lesions: all
    detected) and any mean or median then keeps both orders (order statistics of pointwise-larger values are
    larger), so every pair is reversed under every specification: share 1 by hand."""
    rows = []
    for case, lesion in itertools.product(["c1", "c2", "c3", "c4"], [1, 2]):
        area = 0.001 * (int(case[1]) * 2 + lesion)
        for model, dice, bad in (("A", 0.9, 3.0), ("B", 0.8, 2.0), ("C", 0.7, 1.0)):
            rows.append((model, case, lesion, area, dice - 0.01 * lesion, bad + lesion, bad + lesion + 0.5,
                         bad + 0.1 * lesion, bad + 0.2 * lesion, 0.9 - 0.2 * bad))
    return _table(rows)


def _grid(table, **kwargs):
    tables = {key: table for key in STRUCTURAL}
    return specification_grid(tables, dataset="toy", n_resamples=50, seed=0, **kwargs)


def test_reversal_under_every_specification_has_share_one():
    grid = _grid(_dominated_case())
    assert set(zip(grid["model_a"], grid["model_b"])) == {("A", "B"), ("A", "C"), ("B", "C")}
    shares = reversal_shares(grid)
    overall = shares[shares["axis"] == "all"]
    assert len(overall) == 2 * 3 * 3  # strata x families x pairs
    assert (overall["share_reversed"] == 1.0).all()
    assert (overall["n_assessed"] == overall["n_specifications"]).all()
    assert overall["primary_reversed"].astype(bool).all()
    q1 = overall[(overall["stratum"] == "Q1")].set_index("metric")["n_specifications"]
    # hd95: 2 variants x 2 connectivity x 2 overlap x 2 clean-up x 3 sets x 2 size x 2 edges x 2 aggregation
    assert q1["hd95"].iloc[0] == 384 and q1["assd"].iloc[0] == 384 and q1["contour_f1"].iloc[0] == 576


def test_reversal_only_under_pooled_hd95_has_the_pooled_share():
    """Two models; A has the higher Dice and the lower (better) directed-max HD95 on every lesion but the higher
    (worse) pooled HD95: the HD95 reversal holds exactly in the specifications that pool, i.e. in 1 of the 2
    values of the HD95 axis and whatever the other axes say: share 1/2 by hand; the other families never."""
    rows = []
    for case, lesion in itertools.product(["c1", "c2", "c3", "c4"], [1, 2]):
        area = 0.001 * (int(case[1]) * 2 + lesion)
        rows.append(("A", case, lesion, area, 0.9, 1.0 + lesion, 5.0 + lesion, 1.0, 1.0, 0.8))
        rows.append(("B", case, lesion, area, 0.8, 2.0 + lesion, 4.0 + lesion, 2.0, 2.0, 0.7))
    grid = _grid(_table(rows))
    shares = reversal_shares(grid)
    hd = shares[(shares["metric"] == "hd95")]
    n_pooled = sum(s.hd95_variant == "pooled" for s in specifications("hd95", "Q1"))
    assert n_pooled / len(specifications("hd95", "Q1")) == 0.5
    assert (hd[hd["axis"] == "all"]["share_reversed"] == 0.5).all()
    assert (hd[(hd["axis"] == "hd95_variant") & (hd["value"] == "pooled")]["share_reversed"] == 1.0).all()
    assert (hd[(hd["axis"] == "hd95_variant") & (hd["value"] == "directed_max")]["share_reversed"] == 0.0).all()
    assert not hd[hd["axis"] == "all"]["primary_reversed"].astype(bool).any()
    others = shares[(shares["metric"] != "hd95") & (shares["axis"] == "all")]
    assert (others["share_reversed"] == 0.0).all()
    lines = summary_sentences(shares, datasets=["toy", "absent"])
    assert "absent, Q1: cannot be assessed (no pair of models with Q1 lesions)." in lines
    assert "toy, Q1: no reversal of A and B by hd95 under the primary definition, but one in 50% of the " \
           "specifications." in lines


def _sensitive_tables():
    """A hand-made case in which every axis value moves some number (see the test)."""
    rows = []
    sizes = {("c1", 1): (0.001, 400), ("c1", 2): (0.002, 100), ("c2", 1): (0.003, 300), ("c2", 2): (0.004, 200),
             ("c3", 1): (0.005, 900), ("c3", 2): (0.006, 600), ("c4", 1): (0.007, 700), ("c4", 2): (0.008, 800)}
    for (case, lesion), (area, voxels) in sizes.items():
        for model, shift in (("A", 0.0), ("B", 0.3), ("C", 0.6)):
            k = area * 1000
            rows.append({"model": model, "case_id": case, "lesion_id": lesion, "overlap_voxels": 5,
                         "n_voxels": voxels, "area_fraction": area, "penalty_mm": 100.0,
                         "dice": 0.9 - 0.1 * shift - 0.01 * k**2, "hd95": 1 + shift + k**2, "hd95_pooled": 2 + k,
                         "assd": 1 + shift * k, "masd": 1 + shift * k**2, "contour_f1_1vox": 0.5 + 0.01 * k**2 - shift,
                         "contour_f1_2vox": 0.6 + 0.02 * k - shift, "contour_f1_3vox": 0.7 - shift})
    table = pd.DataFrame(rows)
    # B misses c1/1 (overlap 0, penalty values), detects c2/1 with only 2 voxels (lost at min_overlap 3)
    miss = (table["model"] == "B") & (table["case_id"] == "c1") & (table["lesion_id"] == 1)
    table.loc[miss, ["overlap_voxels", "dice", "contour_f1_1vox", "contour_f1_2vox", "contour_f1_3vox"]] = 0
    table.loc[miss, ["hd95", "hd95_pooled", "assd", "masd"]] = 100.0
    table.loc[(table["model"] == "B") & (table["case_id"] == "c2") & (table["lesion_id"] == 1), "overlap_voxels"] = 2
    tables = {}
    for i, key in enumerate(STRUCTURAL):
        t = table.copy()
        t.loc[t["model"] == "A", ["hd95", "hd95_pooled", "assd", "masd"]] += 0.1 * i
        t.loc[t["model"] == "A", "dice"] -= 0.01 * i
        tables[key] = t
    return tables


def test_every_axis_value_changes_a_number():
    grid = specification_grid(_sensitive_tables(), dataset="toy", n_resamples=20, seed=0)
    numbers = ["difference", "dice_difference", "n_lesions", "n_lesions_b"]
    axis_names = [a.name for a in AXES]
    for axis in AXES:
        for value in axis.values[1:]:
            others = [n for n in axis_names if n != axis.name]
            base = grid[grid[axis.name] == axis.primary]
            alt = grid[grid[axis.name] == value]
            merged = base.merge(alt, on=["stratum", "metric", "model_a", "model_b", *others], suffixes=("", "_alt"))
            assert len(merged), (axis.name, value)
            moved = np.zeros(len(merged), dtype=bool)
            for n in numbers:
                x, y = merged[n].to_numpy(dtype=float), merged[f"{n}_alt"].to_numpy(dtype=float)
                moved |= ~np.isclose(x, y, equal_nan=True)
            assert moved.any(), f"axis {axis.name} value {value!r} changes no number"


def test_specifications_and_primary():
    prim = Specification.primary("contour_f1")
    assert prim.tolerance_voxels == 1 and prim.hd95_variant == "" and prim.lesion_set == "common"
    assert prim.is_primary("contour_f1")
    assert len(specifications("hd95", "all_lesions")) == 2 * 2 * 2 * 2 * 3 * 2
    assert len(specifications("hd95", "Q1", axes={"connectivity": ("full",), "cleanup_voxels": (1,)})) == 96
    with pytest.raises(ValueError, match="unknown axes"):
        specifications("hd95", axes={"percentile": (95,)})
    with pytest.raises(ValueError, match="not among"):
        specifications("hd95", axes={"min_overlap": (7,)})
    assert set(FAMILIES) == {"hd95", "assd", "contour_f1"}
    with pytest.raises(ValueError, match="primary combination"):
        specification_grid({("face", 1): _dominated_case()}, dataset="toy", n_resamples=10)


# ------------------------------------------------------------------------------------------------ joint test
def test_joint_sign_flip_is_calibrated_under_the_null():
    """200 simulated curves without a true difference (10 cases, 6 correlated specifications, symmetric case
    effects): the exact joint test at 0.05 rejects in about 5 % of them. Monte-Carlo standard error of a rejection
    rate of 0.05 over 200 simulations: sqrt(0.05 * 0.95 / 200) = 0.0154; the test accepts 0.05 +- 3 SE."""
    rng = np.random.default_rng(2026)
    n_sims, rejections = 200, 0
    for _ in range(n_sims):
        case = rng.standard_normal((10, 1))
        d = case + 0.5 * rng.standard_normal((10, 6))
        rejections += joint_sign_flip_test(d).p_value <= 0.05
    rate = rejections / n_sims
    se = np.sqrt(0.05 * 0.95 / n_sims)
    assert abs(rate - 0.05) <= 3 * se, rate


def test_joint_sign_flip_detects_a_shift_and_handles_edges():
    rng = np.random.default_rng(1)
    d = 1.5 + rng.standard_normal((12, 4))
    result = joint_sign_flip_test(d)
    assert result.exact and result.n_sign_vectors == 2**12 and result.p_value < 0.01
    # one column of identical positive differences: only the all-same vectors reach it: p = 2 / 2^n
    assert joint_sign_flip_test(np.ones((5, 1))).p_value == pytest.approx(2 / 32)
    mc = joint_sign_flip_test(np.ones((30, 2)), n_permutations=999, seed=3)
    assert not mc.exact and mc.p_value == pytest.approx(1 / 1000)
    assert np.isnan(joint_sign_flip_test(np.zeros((4, 3))).p_value)
    with pytest.raises(ValueError, match="finite"):
        joint_sign_flip_test(np.array([[np.nan, 1.0]]))


# ------------------------------------------------------------------------------------------------ grid error
def test_disc_shifted_by_a_sub_voxel_amount_by_hand():
    """Disc of radius 1 at a voxel centre (spacing 1): the plus of 5 voxels, boundary = its 4 arms. Shifted by
    0.4 along x it holds the voxels with y^2 + (x - 0.4)^2 <= 1: (0, 0) and (0, 1), both boundary voxels.
    ref_to_pred: arm (0, 1) -> 0, the other three arms -> 1; pred_to_ref: (0, 1) -> 0, (0, 0) -> 1. So voxel
    HD = 1, HD95 (directed max) = max(p95[0,1,1,1] = 1, p95[0,1] = 0.95) = 1, ASSD = 4/6, MASD = (3/4 + 1/2)/2.
    Exact: two unit circles 0.4 apart: HD = 0.4; the voxel error of HD is 0.6."""
    ref = ball_mask((11, 11), (5.0, 5.0), 1.0, (1.0, 1.0))
    pred = ball_mask((11, 11), (5.0, 5.4), 1.0, (1.0, 1.0))
    assert ref.sum() == 5 and pred.sum() == 2 and pred[5, 5] and pred[5, 6]
    voxel = voxel_metrics(ref, pred, spacing=(1.0, 1.0), tolerance_mm=1.0)
    assert voxel["hd"] == 1.0 and voxel["hd95"] == 1.0
    assert voxel["assd"] == pytest.approx(4 / 6) and voxel["masd"] == pytest.approx(0.625)
    assert voxel["contour_f1"] == 1.0  # every distance <= 1
    exact = exact_metrics(1.0, ndim=2, shift_mm=0.4, tolerance_mm=1.0)
    assert exact["hd"] == pytest.approx(0.4)
    assert voxel["hd"] - exact["hd"] == pytest.approx(0.6)
    # exact ASSD: the mean over theta of |sqrt(1 + 0.16 - 0.8 cos theta) - 1| (independent quadrature)
    mean, _ = integrate.quad(lambda t: abs(np.sqrt(1.16 - 0.8 * np.cos(t)) - 1.0), 0, np.pi, points=[np.arccos(0.2)])
    assert exact["assd"] == pytest.approx(mean / np.pi, abs=1e-6)
    assert exact["masd"] == exact["assd"] and exact["contour_f1"] == 1.0
    assert exact["hd95"] < 0.4  # the percentile of d, whose maximum 0.4 is reached only at theta = 0 and pi


def test_grown_shapes_have_the_grown_amount_as_exact_distance():
    exact = exact_metrics(3.0, ndim=3, grow_mm=0.5, tolerance_mm=0.4)
    assert exact["hd95"] == exact["assd"] == exact["masd"] == 0.5 and exact["contour_f1"] == 0.0
    with pytest.raises(ValueError, match="exactly one"):
        exact_metrics(1.0, ndim=2)


def test_grid_error_table_shrinks_with_size_and_bounds_a_difference():
    table = grid_error_table([1.5, 6.0], spacing=(1.0, 1.0), shift_mm=0.5, n_offsets=4, seed=0)
    assert set(table["metric"]) == {"hd95", "hd95_pooled", "assd", "masd", "contour_f1"}
    assd = table[table["metric"] == "assd"].set_index("radius_mm")
    assert assd.loc[6.0, "n_voxels"] > assd.loc[1.5, "n_voxels"]
    assert (table["n_offsets"] == 4).all() and np.isfinite(table["abs_error_max"]).all()
    bound = grid_error_bound(table, metric="assd", n_voxels=assd.loc[1.5, "n_voxels"])
    assert bound == pytest.approx(assd.loc[1.5, "abs_error_max"])
    assert exceeds_grid_error(bound + 0.01, metric="assd", n_voxels=assd.loc[1.5, "n_voxels"],
                              errors=table)["verdict"] == "supported"
    assert exceeds_grid_error(bound / 2, metric="assd", n_voxels=assd.loc[1.5, "n_voxels"],
                              errors=table)["verdict"] == "not supported"
    assert exceeds_grid_error(np.nan, metric="assd", n_voxels=10, errors=table)["verdict"] == "cannot be assessed"


def test_mesh_based_values_match_the_analytic_ones_when_installed():
    """With the optional ``[mesh]`` extra: the mesh-based distances of a voxelised disc of radius 20 grown by half a
    voxel come close to the exact 0.5 (every boundary point is 0.5 from the other), as our analytic expectation
    says. The mesh of a voxel mask still carries the voxelisation of the shapes, hence the tolerance of a third of
    a voxel (pymeshmetrics 1.4.1 gives ASSD 0.471, our voxel ASSD 0.538)."""
    meshmetrics = pytest.importorskip("meshmetrics")
    ref = ball_mask((61, 61), (30.3, 30.6), 20.0, (1.0, 1.0))
    pred = ball_mask((61, 61), (30.3, 30.6), 20.5, (1.0, 1.0))
    exact = exact_metrics(20.0, ndim=2, grow_mm=0.5)
    metric = meshmetrics.DistanceMetrics(verbose=False)
    metric.set_input(ref, pred, spacing=(1.0, 1.0))
    assert metric.assd() == pytest.approx(exact["assd"], abs=1 / 3)
    assert metric.masd() == pytest.approx(exact["masd"], abs=1 / 3)
    assert abs(metric.assd() - 0.5) < abs(voxel_metrics(ref, pred, spacing=(1.0, 1.0))["assd"] - 0.5) + 0.1


def test_the_primary_specification_is_the_study_own_q1_comparison():
    """Cross-check on real masks: the grid's primary Q1 differences equal the differences of the study's own
    common-set Q1 means (helpers.analysis.aggregate over the long tables of the same lesion tables)."""
    from types import SimpleNamespace

    from scipy import ndimage

    from helpers import analysis
    from helpers.analysis.multiverse_tables import lesion_frame
    from helpers.evaluation import evaluate_case_tables, lesion_rows, reference_quartile_edges
    from helpers.metrics.lesions import assign_quartiles

    rng = np.random.default_rng(5)
    case_rows, long_frames, wide_frames = [], [], []
    for k in range(6):
        ref = np.zeros((64, 64), bool)
        for _ in range(8):
            r = rng.uniform(1.0, 5.0)
            ref |= ball_mask(ref.shape, rng.uniform(6, 58, 2), r, (1.0, 1.0))
        case = SimpleNamespace(case_id=f"c{k}", mask=ref, ignore=None, spacing=(1.0, 1.0))
        preds = {"A": ref.copy(), "B": ndimage.binary_dilation(ref), "C": np.roll(ref, 1, axis=1)}
        preds["A"][rng.integers(0, 64), :] = False
        for model, pred in preds.items():
            rows, table = evaluate_case_tables(case, pred, dataset="toy", model=model, tolerance=1.0)
            case_rows.extend(rows)
            long_frames.append(lesion_rows(table, dataset="toy", model=model, case_id=case.case_id))
            wide_frames.append(lesion_frame(table, model=model, case_id=case.case_id, penalty_mm=1.0,
                                            tolerance_columns={1: "contour_f1", 2: "contour_f1", 3: "contour_f1"}))
    per_case = pd.DataFrame(case_rows)
    per_lesion = pd.concat(long_frames, ignore_index=True)
    per_lesion["quartile"] = assign_quartiles(per_lesion["area_fraction"], reference_quartile_edges(per_lesion))
    agg = analysis.aggregate(analysis.analysis_units(per_case, per_lesion))
    means = agg[agg["stratum"] == "Q1"].set_index(["metric", "model"])["value"]
    wide = pd.concat(wide_frames, ignore_index=True)
    primary = {a.name: (a.primary,) for a in AXES}
    grid = specification_grid({("full", 1): wide}, dataset="toy", axes=primary, strata=("Q1",), n_resamples=20)
    assert len(grid) == 3 * 3 and grid["is_primary"].all()
    for row in grid.itertuples():
        assert row.difference == pytest.approx(means[(row.metric, row.model_a)] - means[(row.metric, row.model_b)])
        assert row.dice_difference == pytest.approx(means[("dice", row.model_a)] - means[("dice", row.model_b)])
