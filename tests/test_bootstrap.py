"""Tests of helpers.stats.bootstrap on constructed data with known answers."""

import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from helpers.stats import inference
from helpers.stats import bootstrap
from helpers.stats.bootstrap import resampling
from helpers.stats.bootstrap import (
    bootstrap_p_value, directional_robustness, holm_within, joint_reversal_share, paired_differences,
    resample_indices, resample_weights, resampled_means, sufficient_statistics, verdict,
)


def _units(values_by_model, metric="dice"):
    """values_by_model: {model: [value per case]} -> one unit per case."""
    rows = []
    for model, values in values_by_model.items():
        for i, v in enumerate(values):
            rows.append({"case_id": f"c{i}", "model": model, "metric": metric, "value": v})
    return pd.DataFrame(rows)


def test_weights_count_draws():
    idx = np.array([[0, 0, 2], [1, 2, 2]])
    w = resample_weights(idx, 3)
    assert w.tolist() == [[2, 0, 1], [0, 1, 2]]
    assert (resample_weights(resample_indices(7, 50, seed=1), 7).sum(axis=1) == 7).all()


def test_indices_reproducible_and_validated():
    assert (resample_indices(5, 10, seed=3) == resample_indices(5, 10, seed=3)).all()
    with pytest.raises(ValueError, match="n_resamples must be >= 1"):
        resample_indices(5, 0, seed=0)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 3\)"):
        resample_weights(np.array([[0, 3]]), 3)


def test_ratio_estimator_equals_loop():
    # Cross-check the matrix product against a plain loop over resamples and gathered lesions.
    rng = np.random.default_rng(0)
    n_cases = 9
    lesions = {c: rng.random((rng.integers(0, 4), 2)) for c in range(n_cases)}  # per case: lesions x 2 models
    sums = np.array([lesions[c].sum(axis=0) for c in range(n_cases)])
    counts = np.array([[len(lesions[c])] * 2 for c in range(n_cases)], dtype=float)
    idx = resample_indices(n_cases, 40, seed=5)
    got = resampled_means(sums, counts, resample_weights(idx, n_cases))
    for b in range(40):
        pooled = np.concatenate([lesions[c] for c in idx[b]]) if idx[b].size else np.empty((0, 2))
        expected = pooled.mean(axis=0) if len(pooled) else np.full(2, np.nan)
        np.testing.assert_allclose(got[b], expected, rtol=1e-12)


def test_constant_positive_difference_keeps_sign_everywhere():
    # Model a is exactly 0.05 better than b on every case: every resample's difference is 0.05.
    base = np.linspace(0.5, 0.9, 20)
    out = directional_robustness(_units({"a": base + 0.05, "b": base}), case_ids=[f"c{i}" for i in range(20)],
                                 n_resamples=500, seed=0)
    row = out.iloc[0]
    assert row["difference"] == pytest.approx(0.05)
    assert row["share_same_sign"] == 1.0
    assert row["ci_low"] == pytest.approx(0.05) and row["ci_high"] == pytest.approx(0.05)
    assert row["better"] == "a" and row["verdict"] == "sign kept, Holm p <= 0.05"
    # the verdict's p is the exact sign-flip p over the 20 cases: only the all-plus and all-minus sign vectors
    # reach |sum| = 20 x 0.05, so p = 2 / 2^20; one comparison, so Holm leaves it as is. The normal approximation
    # of the bootstrap (kept as p_bootstrap) says 0: every resampled difference is 0.05 (se 0)
    assert row["p_value"] == 2 / 2**20 and row["p_holm"] == 2 / 2**20 and row["family_size"] == 1
    assert row["p_bootstrap"] == 0.0 and row["n_cases"] == 20 and row["n_test_cases"] == 20


def test_lower_is_better_names_the_better_model():
    # HD95 of a exceeds b's by 1 mm everywhere: b is better, the difference a - b is +1.
    base = np.linspace(2, 6, 10)
    out = directional_robustness(_units({"a": base + 1, "b": base}, metric="hd95"),
                                 case_ids=[f"c{i}" for i in range(10)], n_resamples=200, seed=0)
    assert out.iloc[0]["difference"] == pytest.approx(1.0)
    assert out.iloc[0]["better"] == "b"


def test_symmetric_zero_mean_difference_keeps_sign_about_half():
    # Differences +-1 in 20 symmetric pairs plus one +0.01 so the observed mean is slightly positive; the
    # resampled mean is then positive in about half the resamples (binomial sd 0.5/sqrt(4000) ~ 0.008).
    d = np.concatenate([np.ones(20), -np.ones(20), [0.01]])
    n = len(d)
    out = directional_robustness(_units({"a": d, "b": np.zeros(n)}), case_ids=[f"c{i}" for i in range(n)],
                                 n_resamples=4000, seed=1)
    row = out.iloc[0]
    assert row["share_same_sign"] == pytest.approx(0.5, abs=0.05)
    assert row["verdict"] == "sign not stable (< 95 %)"
    assert row["ci_low"] < 0 < row["ci_high"]


def test_ci_matches_loop_percentiles():
    rng = np.random.default_rng(2)
    a, b = rng.random(15), rng.random(15)
    out = directional_robustness(_units({"a": a, "b": b}), case_ids=[f"c{i}" for i in range(15)],
                                 n_resamples=300, seed=7)
    idx = resample_indices(15, 300, seed=7)
    diffs = np.array([a[i].mean() - b[i].mean() for i in idx])
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    assert out.iloc[0]["ci_low"] == pytest.approx(lo) and out.iloc[0]["ci_high"] == pytest.approx(hi)
    assert out.iloc[0]["share_same_sign"] == pytest.approx(np.mean(np.sign(diffs) == np.sign(a.mean() - b.mean())))


def test_lesions_of_a_case_stay_together():
    # Case c0 has 3 lesions, c1 one lesion. A resample drawing c0 twice weighs 6 lesions against 0.
    units = pd.DataFrame({"case_id": ["c0", "c0", "c0", "c1"], "model": "a", "value": [1.0, 1.0, 1.0, 0.0]})
    sums, counts, n_nan = sufficient_statistics(units, case_ids=["c0", "c1"], models=["a"])
    assert sums.ravel().tolist() == [3.0, 0.0] and counts.ravel().tolist() == [3.0, 1.0]
    m = resampled_means(sums, counts, resample_weights(np.array([[0, 0], [0, 1], [1, 1]]), 2))
    assert m.ravel().tolist() == [1.0, 0.75, 0.0]


def test_nan_units_counted_not_used():
    units = pd.DataFrame({"case_id": ["c0", "c1"], "model": "a", "value": [1.0, np.nan]})
    sums, counts, n_nan = sufficient_statistics(units, case_ids=["c0", "c1", "c2"], models=["a"])
    assert counts.ravel().tolist() == [1.0, 0.0, 0.0] and n_nan.ravel().tolist() == [0.0, 1.0, 0.0]


def test_resample_without_units_is_nan_and_excluded():
    # Only case c0 has a lesion: resamples that miss c0 have no unit -> NaN, counted out of n_valid.
    units = pd.DataFrame({"case_id": ["c0", "c0"], "model": ["a", "b"], "value": [1.0, 0.5], "metric": "dice"})
    out = directional_robustness(units, case_ids=["c0", "c1", "c2"], n_resamples=1000, seed=0)
    # P(no c0 among 3 draws) = (2/3)^3 = 0.296 -> about 704 valid resamples.
    assert 640 < out.iloc[0]["n_valid"] < 770
    assert out.iloc[0]["share_same_sign"] == 1.0


def test_verdict_rules():
    assert verdict(0.1, 0.99, 0.01, n_cases=20) == "sign kept, Holm p <= 0.05"
    assert verdict(0.1, 0.96, 0.2, n_cases=20) == "sign kept in >= 95 % of resamples, not after Holm"
    assert verdict(0.1, 0.85, 0.3, n_cases=20) == "sign not stable (< 95 %)"
    assert verdict(0.0, np.nan, np.nan, n_cases=20) == "no observed difference"
    assert verdict(np.nan, np.nan, np.nan, n_cases=20) == "not estimable"
    # a small p alone keeps no sign: the share must reach 95 % too
    assert verdict(0.1, 0.90, 0.001, n_cases=20) == "sign not stable (< 95 %)"
    # exact +/- pairs of per-case differences leave -1.8e-15 on values of about 0.8: no observed difference
    assert verdict(-1.8e-15, 0.5, 0.9, n_cases=20, scale=0.8) == "no observed difference"
    assert verdict(-1.8e-15, 0.5, 0.9, n_cases=20, scale=0.0) != "no observed difference"  # no scale: exact 0 only
    assert verdict(0.1, 1.0, 0.0, n_cases=1) == "not testable (1 case < 12)"
    assert verdict(0.1, 1.0, 0.0, n_cases=2, min_cases=24) == "not testable (2 cases < 24)"


def _lesion_units(lesions_by_case: dict, model_values: dict) -> pd.DataFrame:
    """{case: n lesions} and {model: value per lesion in order} -> lesion units."""
    rows, k = [], 0
    for case, n in lesions_by_case.items():
        for j in range(n):
            for model, values in model_values.items():
                rows.append({"case_id": case, "model": model, "metric": "hd95", "value": values[k + j]})
        k += n
    return pd.DataFrame(rows)


def test_a_stratum_held_by_one_or_two_cases_is_not_testable():
    # 30 test cases; the stratum's 3 lesions all sit in case c7 and a is better on each: every resample draws c7
    # or no lesion, so the bootstrap sees no spread (its normal approximation says p = 0); the unit of inference
    # is the one case, so no verdict is read
    cases = [f"c{i}" for i in range(30)]
    units = _lesion_units({"c7": 3}, {"a": [1.0, 1.2, 1.1], "b": [2.0, 2.5, 2.2]})
    row = directional_robustness(units, case_ids=cases, n_resamples=400, seed=0).iloc[0]
    assert row["n_cases"] == 1 and row["n_test_cases"] == 30 and row["p_bootstrap"] == 0.0
    assert row["verdict"] == "not testable (1 case < 12)" and np.isnan(row["p_value"]) and np.isnan(row["p_holm"])
    # four lesions in two cases: still two cases
    units = _lesion_units({"c3": 2, "c9": 2}, {"a": [1.0, 1.2, 1.1, 0.9], "b": [2.0, 2.5, 2.2, 1.9]})
    row = directional_robustness(units, case_ids=cases, n_resamples=400, seed=0).iloc[0]
    assert row["n_cases"] == 2 and row["verdict"] == "not testable (2 cases < 12)" and row["family_size"] == 0


def test_minimum_case_guard():
    # a is better on every one of 4 cases: the sign is kept in every resample, but 4 < 12 cases gives no verdict
    out = directional_robustness(_units({"a": [0.9, 0.8, 0.7, 0.6], "b": [0.5, 0.4, 0.3, 0.2]}),
                                 case_ids=["c0", "c1", "c2", "c3"], n_resamples=200, seed=0)
    row = out.iloc[0]
    assert row["share_same_sign"] == 1.0 and row["verdict"] == "not testable (4 cases < 12)"
    assert row["min_cases"] == 12
    out = directional_robustness(_units({"a": [0.9, 0.8, 0.7, 0.6], "b": [0.5, 0.4, 0.3, 0.2]}),
                                 case_ids=["c0", "c1", "c2", "c3"], n_resamples=200, seed=0, min_cases=4)
    # with 4 cases the exact sign-flip p cannot go below 2 / 2^4 = 0.125: the sign is kept, no test can hold it
    assert out.iloc[0]["p_value"] == 0.125
    assert out.iloc[0]["verdict"] == "sign kept in >= 95 % of resamples, not after Holm"


def test_bootstrap_p_value():
    # resampled differences -1, 0, 1, 2, 3: sd (ddof 1) = sqrt(2.5); observed 1.96 sqrt(2.5) -> p = 0.05
    d = np.array([-1.0, 0.0, 1.0, 2.0, 3.0])
    assert bootstrap_p_value(d, 1.959963984540054 * np.sqrt(2.5)) == pytest.approx(0.05)
    assert bootstrap_p_value(d, -1.959963984540054 * np.sqrt(2.5)) == pytest.approx(0.05)  # two-sided
    assert bootstrap_p_value(np.array([0.5, 0.5, np.nan]), 0.5) == 0.0  # no spread: p 0
    assert np.isnan(bootstrap_p_value(d, 0.0)) and np.isnan(bootstrap_p_value(np.array([1.0]), 1.0))


def test_holm_on_a_known_family():
    # Family of 4 in dataset d: sorted p 0.005, 0.01, 0.03, 0.04 -> 4 x 0.005 = 0.02, 3 x 0.01 = 0.03,
    # 2 x 0.03 = 0.06, max(1 x 0.04, 0.06) = 0.06. Dataset e is its own family of 1; NaN is not tested.
    table = pd.DataFrame({"dataset": ["d", "d", "d", "d", "e", "e"],
                          "p_value": [0.01, 0.04, 0.03, 0.005, 0.04, np.nan]})
    out = holm_within(table)
    np.testing.assert_allclose(out["p_holm"].iloc[:5], [0.03, 0.06, 0.06, 0.02, 0.04])
    assert np.isnan(out["p_holm"].iloc[5])
    assert out["family_size"].tolist() == [4, 4, 4, 4, 1, 1]


def test_holm_family_spans_pairs_metrics_and_strata():
    base = np.linspace(0.5, 0.9, 12)
    frames = []
    for stratum in ("overall", "Q1"):
        for metric in ("dice", "hd95"):
            u = _units({"a": base + 0.05, "b": base, "c": base - 0.05}, metric=metric)
            frames.append(u.assign(stratum=stratum, dataset="d"))
    out = directional_robustness(pd.concat(frames), case_ids=[f"c{i}" for i in range(12)], n_resamples=100,
                                 seed=0, group_by=("dataset", "stratum", "metric"))
    # 3 pairs x 2 metrics x 2 strata = 12 comparisons in one family
    assert len(out) == 12 and (out["family_size"] == 12).all()
    assert (out["p_holm"] >= out["p_value"]).all()


def test_joint_reversal_share_full_when_every_case_reverses():
    # A wins Dice by 0.05 and loses HD95 by 1 mm on every case: every resample shows the reversal.
    base = np.linspace(0.5, 0.9, 15)
    units = pd.concat([_units({"a": base + 0.05, "b": base}, metric="dice"),
                       _units({"a": 3 + base + 1.0, "b": 3 + base}, metric="hd95")])
    out = directional_robustness(units, case_ids=[f"c{i}" for i in range(15)], n_resamples=400, seed=0)
    out = out.set_index("metric")
    assert out.loc["hd95", "joint_reversal_share"] == 1.0 and bool(out.loc["hd95", "reversal_observed"])
    assert np.isnan(out.loc["dice", "joint_reversal_share"])


def test_joint_reversal_share_about_half_under_symmetric_noise():
    # Dice favours a in every resample; the HD95 difference is symmetric noise around 0, so HD95 favours b in
    # about half the resamples (binomial sd 0.5 / sqrt(4000) ~ 0.008, plus the sampling of the noise itself).
    # Continuous noise, so that a resampled mean difference of exactly 0 (favouring neither) has probability 0.
    rng = np.random.default_rng(3)
    n = 60
    base = np.linspace(0.5, 0.9, n)
    noise = rng.normal(0.0, 1.0, size=n // 2)
    hd_diff = np.concatenate([noise, -noise])
    units = pd.concat([_units({"a": base + 0.05, "b": base}, metric="dice"),
                       _units({"a": 5 + hd_diff, "b": np.full(n, 5.0)}, metric="hd95")])
    out = directional_robustness(units, case_ids=[f"c{i}" for i in range(n)], n_resamples=4000, seed=1)
    share = out.set_index("metric").loc["hd95", "joint_reversal_share"]
    assert share == pytest.approx(0.5, abs=0.05)


def test_joint_reversal_share_function():
    # Dice (higher better) favours a when a - b > 0; HD95 (lower better) favours b when a - b > 0.
    assert joint_reversal_share([0.1, 0.1, -0.1, 0.1], [1.0, -1.0, 1.0, np.nan], reference_observed=0.1,
                                metric="hd95") == pytest.approx(1 / 3)
    # observed Dice favours b: the reversal is Dice favouring b while HD95 favours a (a - b < 0)
    assert joint_reversal_share([-0.1, -0.1], [-1.0, 1.0], reference_observed=-0.2, metric="hd95") == 0.5
    assert np.isnan(joint_reversal_share([0.1], [1.0], reference_observed=0.0, metric="hd95"))
    with pytest.raises(ValueError, match="equal length"):
        joint_reversal_share([0.1], [1.0, 2.0], reference_observed=0.1, metric="hd95")


def test_validation_messages():
    units = _units({"a": [1.0], "b": [0.0]})
    with pytest.raises(ValueError, match="units has case_id values not in case_ids"):
        directional_robustness(units, case_ids=["x"])
    with pytest.raises(ValueError, match="need at least two models"):
        directional_robustness(_units({"a": [1.0]}), case_ids=["c0"])
    with pytest.raises(ValueError, match="group_by must include 'metric'"):
        directional_robustness(units, case_ids=["c0"], group_by=("stratum",))
    with pytest.raises(ValueError, match="confidence must be in"):
        paired_differences(np.ones((1, 2)), np.ones((1, 2)), np.ones((3, 1)), models=["a", "b"], metric="dice",
                           confidence=1.5)


def test_speed_paper_scale():
    # 10,000 resamples, 4 models, 7 metrics, 3 datasets of 80 cases with ~25 lesions each: seconds, not minutes.
    rng = np.random.default_rng(0)
    metrics = ["dice", "iou", "hd95", "assd", "contour_f1", "lesion_recall", "fp_lesions_per_case"]
    frames = []
    for m in ["unet", "resunet", "attention_unet", "hybrid_transformer"]:
        case = np.repeat([f"c{i}" for i in range(80)], 25)
        for metric in metrics:
            frames.append(pd.DataFrame({"case_id": case, "model": m, "metric": metric, "value": rng.random(len(case))}))
    units = pd.concat(frames, ignore_index=True)
    start = time.perf_counter()
    for dataset_seed in range(3):
        out = directional_robustness(units, case_ids=[f"c{i}" for i in range(80)], n_resamples=10_000,
                                     seed=dataset_seed)
    elapsed = time.perf_counter() - start
    assert len(out) == 7 * 6
    assert elapsed < 30, f"bootstrap took {elapsed:.1f} s"


# ----------------------------------------------------------------------------------------------------------
# Intervals, per-model summaries, pairwise comparisons and the rank bootstrap over units
# ----------------------------------------------------------------------------------------------------------


def _long_units(matrix, models=None, units=None, metric=None):
    matrix = np.asarray(matrix, dtype=float)
    models = models or [f"m{j}" for j in range(matrix.shape[1])]
    units = units or [f"case{i}" for i in range(matrix.shape[0])]
    rows = [
        {"case_id": u, "model": m, "value": matrix[i, j]}
        for i, u in enumerate(units)
        for j, m in enumerate(models)
    ]
    frame = pd.DataFrame(rows)
    if metric is not None:
        frame["metric"] = metric
    return frame


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n", [5, 9, 30])
def test_bca_matches_scipy_with_same_generator(seed, n):
    # Same Generator state => identical resample indices (both draw integers(0, n, (B, n))), so the BCa
    # intervals agree to rounding.
    x = np.random.default_rng(100 + seed).gamma(2.0, 1.0, size=n)
    ours = bootstrap.bootstrap_mean_ci(x, n_resamples=4000, seed=np.random.default_rng(seed))
    ref = sps.bootstrap((x,), np.mean, n_resamples=4000, method="BCa", rng=np.random.default_rng(seed))
    assert ours.method == "BCa"
    assert ours.low == pytest.approx(ref.confidence_interval.low, rel=1e-10)
    assert ours.high == pytest.approx(ref.confidence_interval.high, rel=1e-10)


def test_bca_matches_scipy_on_tied_discrete_data():
    # Integer scores make many bootstrap means equal to the estimate: exercises the mid-rank z0.
    x = np.array([1.0, 1.0, 2.0, 2.0, 2.0, 5.0])
    ours = bootstrap.bootstrap_mean_ci(x, n_resamples=999, confidence=0.9, seed=np.random.default_rng(9))
    ref = sps.bootstrap(
        (x,), np.mean, n_resamples=999, confidence_level=0.9, method="BCa", rng=np.random.default_rng(9)
    )
    assert ours.method == "BCa"
    assert (ours.low, ours.high) == pytest.approx(tuple(ref.confidence_interval), rel=1e-10)


def test_percentile_matches_scipy():
    x = np.random.default_rng(7).normal(size=12)
    ours = bootstrap.bootstrap_mean_ci(x, n_resamples=3000, method="percentile", confidence=0.9, seed=5)
    ref = sps.bootstrap(
        (x,), np.mean, n_resamples=3000, method="percentile", confidence_level=0.9, rng=np.random.default_rng(5)
    )
    assert ours.method == "percentile"
    assert (ours.low, ours.high) == pytest.approx(tuple(ref.confidence_interval), rel=1e-12)


def test_bca_acceleration_is_jackknife_skewness():
    # For the mean, U_i = x_i - mean: x = [0, 0, 3] gives U = [-1, -1, 2], sum U^3 = 6, sum U^2 = 6,
    # a = 6 / (6 * 6^1.5) = 6^-1.5 = 0.0680414.
    result = bootstrap.bootstrap_mean_ci([0.0, 0.0, 3.0], n_resamples=1000, seed=0)
    assert result.acceleration == pytest.approx(6.0**-1.5, rel=1e-12)


def test_constant_differences_give_zero_width_interval():
    # Every resample of identical values has the same mean, so the interval collapses to that mean.
    result = bootstrap.bootstrap_mean_ci([0.1] * 9, n_resamples=500, seed=0)
    assert result.width == 0.0
    assert result.low == result.high == pytest.approx(0.1, abs=1e-15)
    assert result.method == "percentile (BCa undefined: zero spread, all values equal)"


def test_bca_zero_spread_when_the_mean_is_one_ulp_off():
    # np.mean([0.8] * 7) is 0.7999999999999999, one ulp below 0.8: a sum-of-squares test sees a tiny nonzero
    # spread and reports "BCa" with a meaningless acceleration. The range test sees all values equal.
    assert np.mean([0.8] * 7) != 0.8
    result = bootstrap.bootstrap_mean_ci([0.8] * 7, n_resamples=200, seed=0)
    assert result.method == "percentile (BCa undefined: zero spread, all values equal)"
    assert np.isnan(result.acceleration)
    assert result.low == pytest.approx(0.8) and result.high == pytest.approx(0.8)


def test_single_unit_falls_back_to_percentile():
    result = bootstrap.bootstrap_mean_ci([0.7], n_resamples=100, seed=0)
    assert (result.low, result.high, result.n) == (0.7, 0.7, 1)
    assert result.method == "percentile (BCa undefined: fewer than 2 units)"


def test_one_sided_bootstrap_distribution_falls_back():
    # x = eight zeros and one 1 (mean 1/9). With B = 2 and seed 3 neither resample draws index 8, so both
    # bootstrap means are 0 < 1/9: z0 = Phi^-1(1) = inf and BCa is undefined; the percentile interval is [0, 0].
    x = np.array([0.0] * 8 + [1.0])
    index = np.random.default_rng(3).integers(0, 9, (2, 9))
    assert not (index == 8).any()
    result = bootstrap.bootstrap_mean_ci(x, n_resamples=2, seed=3)
    assert result.method == "percentile (BCa undefined: bootstrap distribution entirely on one side of the estimate)"
    assert np.isinf(result.bias_correction)
    assert (result.low, result.high) == (0.0, 0.0)


def test_bootstrap_interval_properties():
    x = np.random.default_rng(3).normal(0.8, 0.1, size=15)
    narrow = bootstrap.bootstrap_mean_ci(x, confidence=0.5, n_resamples=2000, seed=1)
    wide = bootstrap.bootstrap_mean_ci(x, confidence=0.99, n_resamples=2000, seed=1)
    assert wide.low <= narrow.low <= narrow.estimate <= narrow.high <= wide.high
    shifted = bootstrap.bootstrap_mean_ci(x + 10.0, confidence=0.5, n_resamples=2000, seed=1)
    assert shifted.low == pytest.approx(narrow.low + 10.0) and shifted.high == pytest.approx(narrow.high + 10.0)
    again = bootstrap.bootstrap_mean_ci(x, confidence=0.5, n_resamples=2000, seed=1)
    assert again == narrow


def test_bootstrap_validation():
    with pytest.raises(ValueError, match="finite"):
        bootstrap.bootstrap_mean_ci([1.0, np.nan])
    with pytest.raises(ValueError, match="empty"):
        bootstrap.bootstrap_mean_ci([])
    with pytest.raises(ValueError, match="confidence must be in"):
        bootstrap.bootstrap_mean_ci([1.0, 2.0], confidence=1.5)
    with pytest.raises(ValueError, match="method"):
        bootstrap.bootstrap_mean_ci([1.0, 2.0], method="basic")
    with pytest.raises(TypeError, match="seed"):
        bootstrap.bootstrap_mean_ci([1.0, 2.0], seed=1.5)
    with pytest.raises(ValueError, match="n_resamples must be >= 2"):
        bootstrap.bootstrap_mean_ci([1.0, 2.0], n_resamples=1)


def test_summarize_models_counts_missing_and_reports_method():
    frame = _long_units([[0.5, 0.7], [0.6, np.nan], [0.7, 0.9]], models=["a", "b"])
    table = bootstrap.summarize_models(frame, n_resamples=500, seed=0)
    assert list(table["model"]) == ["a", "b"]
    assert table["n"].tolist() == [3, 2]
    assert table["n_missing"].tolist() == [0, 1]
    assert table["mean"].tolist() == pytest.approx([0.6, 0.8])
    # sd of [0.5, 0.6, 0.7] with ddof=1 is 0.1.
    assert table.loc[0, "sd"] == pytest.approx(0.1)
    # Both models have spread and a two-sided bootstrap distribution, so BCa is defined for both.
    assert table["ci_method"].tolist() == ["BCa", "BCa"]
    with pytest.raises(ValueError, match="missing values"):
        bootstrap.summarize_models(frame, nan_policy="raise")


def test_paired_comparisons_hand_case():
    # Two models, 4 cases; differences a - b = [0.1, 0.2, 0.3, 0.4] (all positive): exact p = 2/16.
    a = np.array([0.6, 0.7, 0.8, 0.9])
    b = a - np.array([0.1, 0.2, 0.3, 0.4])
    table = bootstrap.paired_comparisons(
        _long_units(np.column_stack([a, b]), models=["a", "b"]), higher_is_better=True, n_resamples=500
    )
    row = table.iloc[0]
    assert (row["model_a"], row["model_b"], row["n"]) == ("a", "b", 4)
    assert row["mean_difference"] == pytest.approx(0.25)
    assert row["p_value"] == 0.125 and row["p_holm"] == 0.125
    # d_z = 0.25 / sd([.1,.2,.3,.4]) = 0.25 / 0.1290994 = 1.9364917; g_z = d_z * J(3).
    assert row["cohens_dz"] == pytest.approx(0.25 / np.std([0.1, 0.2, 0.3, 0.4], ddof=1))
    assert row["hedges_gz"] == pytest.approx(row["cohens_dz"] * inference.hedges_correction(3))
    assert row["favoured"] == "a"
    assert row["min_attainable_p"] == 0.125 == row["min_attainable_p_holm"]
    assert not row["significant"]
    lower = bootstrap.paired_comparisons(np.column_stack([a, b]), higher_is_better=False, n_resamples=500)
    assert lower.loc[0, "favoured"] == "model_1"


def test_paired_comparisons_six_models_n9_cannot_be_significant():
    # Huge, consistent effects, yet with N = 9 and 15 pairs Holm's smallest p is 15/256 > 0.05.
    rng = np.random.default_rng(0)
    matrix = np.arange(6)[None, :] * 1.0 + rng.normal(0, 0.01, size=(9, 6))
    table = bootstrap.paired_comparisons(matrix, higher_is_better=True, n_resamples=300)
    assert len(table) == 15
    assert (table["p_value"] == 2 / 512).all()
    assert table["p_holm"].tolist() == pytest.approx([15 / 256] * 15)
    assert not table["significant"].any()
    assert (table["min_attainable_p_holm"] == 15 / 256).all()
    assert table["p_holm"].tolist() == pytest.approx(inference.holm_adjust(table["p_value"]).tolist())


def test_paired_comparisons_seed_contract():
    # Pair j uses child j of Generator(seed).spawn(n_pairs) for its bootstrap: the CI is reproducible alone.
    matrix = np.random.default_rng(3).normal(size=(9, 3))
    table = bootstrap.paired_comparisons(matrix, higher_is_better=True, n_resamples=400, seed=21)
    children = np.random.default_rng(21).spawn(3)
    interval = bootstrap.bootstrap_mean_ci(matrix[:, 1] - matrix[:, 2], n_resamples=400, seed=children[2])
    assert (table.loc[2, "ci_low"], table.loc[2, "ci_high"]) == (interval.low, interval.high)
    again = bootstrap.paired_comparisons(matrix, higher_is_better=True, n_resamples=400, seed=21)
    pd.testing.assert_frame_equal(table, again)


def test_paired_comparisons_nan_policy_per_pair():
    matrix = np.array([[0.5, 0.4, 0.3], [0.6, np.nan, 0.2], [0.7, 0.5, 0.1]])
    with pytest.raises(ValueError, match="missing values"):
        bootstrap.paired_comparisons(matrix, higher_is_better=True)
    table = bootstrap.paired_comparisons(matrix, higher_is_better=True, nan_policy="omit", n_resamples=200)
    assert table["n"].tolist() == [2, 3, 2]


def test_paired_comparisons_validation():
    with pytest.raises(ValueError, match="at least 2 models"):
        bootstrap.paired_comparisons(np.zeros((3, 1)), higher_is_better=True)
    with pytest.raises(TypeError, match="higher_is_better"):
        bootstrap.paired_comparisons(np.zeros((3, 2)), higher_is_better="yes")
    with pytest.raises(ValueError, match="alpha must be in"):
        bootstrap.paired_comparisons(np.zeros((3, 2)), higher_is_better=True, alpha=0.0)


def test_bootstrap_ranks_matches_naive_loop():
    rng = np.random.default_rng(2)
    matrix = rng.normal(size=(9, 4))
    result = bootstrap.bootstrap_ranks(matrix, higher_is_better=True, n_resamples=300, seed=8)
    index = np.random.default_rng(8).integers(0, 9, (300, 9))
    for b in (0, 17, 299):
        expected = sps.rankdata(-matrix[index[b]].mean(axis=0))
        assert result.ranks[b].tolist() == expected.tolist()
    assert result.ranks.sum(axis=1).tolist() == pytest.approx([10.0] * 300)  # 1 + 2 + 3 + 4 per resample
    assert result.observed_ranks.tolist() == sps.rankdata(-matrix.mean(axis=0)).tolist()


def test_bootstrap_ranks_dominant_model_and_distribution():
    # Model a is best in every unit: every resample ranks it first.
    matrix = np.column_stack([np.full(9, 0.9), np.linspace(0.1, 0.5, 9), np.linspace(0.5, 0.1, 9)])
    result = bootstrap.bootstrap_ranks(_long_units(matrix, models=["a", "b", "c"]), higher_is_better=True,
                                       n_resamples=200)
    summary = result.summary()
    assert summary.loc[0, "model"] == "a" and summary.loc[0, "p_first"] == 1.0
    distribution = result.distribution()
    assert distribution.groupby("model")["share"].sum().tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert distribution[distribution["model"] == "a"]["rank"].tolist() == [1.0]


def test_bootstrap_ranks_rank_then_aggregate_observed_equals_friedman_order():
    matrix = np.random.default_rng(4).normal(size=(9, 5))
    result = bootstrap.bootstrap_ranks(matrix, higher_is_better=True, n_resamples=50, scheme="rank-then-aggregate")
    friedman = inference.friedman_test(matrix, higher_is_better=True)
    expected = sps.rankdata(friedman.mean_ranks.to_numpy())
    assert result.observed_ranks.tolist() == expected.tolist()
    with pytest.raises(ValueError, match="scheme"):
        bootstrap.bootstrap_ranks(matrix, higher_is_better=True, scheme="mean")


def test_bca_levels_hand_derived():
    # x = (0, 0, 3): mean 1, deviations (-1, -1, 2), sum of squares 6, sum of cubes 6, so the jackknife
    # acceleration is a = 6 / (6 * 6^1.5) = 6^-1.5 = 0.0680. Resampled means (0, 1, 1, 2) around theta = 1:
    # one below, three at most, mid-rank proportion (1 + 3) / 8 = 0.5, so z0 = 0. At confidence 0.9 (tail 0.05,
    # z = -1.6449): alpha_1 = Phi(z / (1 - a z)) = Phi(-1.4793) = 0.0695, alpha_2 = Phi(1.6449 / (1 - 1.6449 a))
    # = Phi(1.8522) = 0.9680.
    from statistics import NormalDist

    phi, z = NormalDist().cdf, NormalDist().inv_cdf(0.05)
    a = 6.0**-1.5
    low, high, z0, acceleration, reason = resampling._bca_levels(np.array([0.0, 0.0, 3.0]), 1.0,
                                                                 np.array([0.0, 1.0, 1.0, 2.0]), 0.05)
    assert reason is None and z0 == 0.0 and acceleration == pytest.approx(a, rel=1e-12)
    assert low == pytest.approx(phi(z / (1 - a * z)), rel=1e-9) and low == pytest.approx(0.0695, abs=1e-4)
    assert high == pytest.approx(phi(-z / (1 + a * z)), rel=1e-9) and high == pytest.approx(0.9680, abs=1e-4)


def test_percentile_and_bca_read_the_same_resamples():
    # Same seed -> the same index matrix (resample_indices) -> the same bootstrap means for both methods; the
    # two intervals are quantiles of that one distribution, at (0.025, 0.975) and at the BCa levels.
    from statistics import NormalDist

    x = np.array([0.61, 0.70, 0.72, 0.75, 0.79, 0.80, 0.84, 0.90, 0.93])
    theta_b = x[resample_indices(x.size, 999, seed=7)].mean(axis=1)
    percentile = bootstrap.bootstrap_mean_ci(x, n_resamples=999, method="percentile", seed=7)
    bca = bootstrap.bootstrap_mean_ci(x, n_resamples=999, method="bca", seed=7)
    assert (percentile.low, percentile.high) == tuple(np.quantile(theta_b, [0.025, 0.975]))
    # BCa by hand from the same theta_b: mid-rank z0, jackknife acceleration of the mean, the two levels.
    theta = x.mean()
    z0 = NormalDist().inv_cdf((np.sum(theta_b < theta) + np.sum(theta_b <= theta)) / (2 * theta_b.size))
    u = x - theta
    a = np.sum(u**3) / (6 * np.sum(u**2) ** 1.5)
    levels = [NormalDist().cdf(z0 + (z0 + z) / (1 - a * (z0 + z))) for z in (-1.959963984540054, 1.959963984540054)]
    assert bca.method == "BCa" and bca.bias_correction == pytest.approx(z0, rel=1e-9)
    assert (bca.low, bca.high) == pytest.approx(tuple(np.quantile(theta_b, levels)), rel=1e-9)
    # A different seed draws different resamples (the equality above is not a coincidence of the data).
    other = bootstrap.bootstrap_mean_ci(x, n_resamples=999, method="percentile", seed=8)
    assert (other.low, other.high) != (percentile.low, percentile.high)
