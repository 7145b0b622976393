"""Tests of the claims table and its verdicts (helpers.analysis.claims, helpers.analysis.verdicts,
helpers.studies.small_data.claims): hand-made tables with hand-derived verdicts, one case per verdict a claim can
reach; the stratified and two-level draws; the detectable difference; combining seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from helpers.analysis import claims as C
from helpers.analysis import verdicts as V
from helpers.stats.bootstrap import resample_indices, resample_weights, two_level_means
from helpers.stats.inference import detectable_difference

MODELS = ("hybrid", "attention", "resunet", "unet")


def _tables(n_cases=30, *, dice=None, q1=None, other=None, q1_cases=None):
    """Per-case and per-lesion tables: per-case Dice ``dice[model](k)``; each case k in ``q1_cases`` (default all)
    holds one Q1 lesion and every case one Q4 lesion, detected by every model, with metric values
    ``q1[model][metric](k)`` / ``other[model][metric](k)``."""
    dice = dice or {m: (lambda k, b=0.85 - 0.001 * i: b) for i, m in enumerate(MODELS)}
    q1_cases = range(n_cases) if q1_cases is None else q1_cases
    per_case, per_lesion = [], []
    for m in MODELS:
        for k in range(n_cases):
            cid = f"c{k:02d}"
            per_case.append({"dataset": "wmh", "model": m, "case_id": cid, "metric": "dice", "value": dice[m](k),
                             "penalty": False})
            lesions = [("Q4", 2, other)] + ([("Q1", 1, q1)] if k in q1_cases else [])
            for quartile, lid, values in lesions:
                base = {"dataset": "wmh", "model": m, "case_id": cid, "lesion_id": lid, "kind": "lesion",
                        "detected": True, "area_fraction": 0.001 if quartile == "Q1" else 0.01,
                        "quartile": quartile, "penalty": False}
                per_lesion.append({**base, "metric": "detected", "value": 1.0})
                for metric in ("dice", "hd95", "assd", "contour_f1"):
                    value = values[m][metric](k) if values and m in values and metric in values[m] else {
                        "dice": 0.8, "hd95": 2.0, "assd": 1.0, "contour_f1": 0.8}[metric]
                    per_lesion.append({**base, "metric": metric, "value": value})
    return pd.DataFrame(per_case), pd.DataFrame(per_lesion)


SETTINGS = V.Settings(n_resamples=400, min_cases=10)


def _claims(per_case, per_lesion, **kwargs):
    claims, evidence = V.dataset_claims(per_case, per_lesion, dataset="wmh", data_source="synthetic",
                                        top_models=list(MODELS[:3]), settings=kwargs.pop("settings", SETTINGS),
                                        **kwargs)
    return claims.set_index(["claim_id", "metric"]), evidence


# ------------------------------------------------------------------------------------------------ the table
def test_claim_row_refuses_a_verdict_stronger_than_its_evidence():
    with pytest.raises(ValueError, match="verdict 'supported' on 3 cases"):
        C.claim_row("top3_dice_equivalent", dataset="wmh", data_source="synthetic", our_value="x",
                    verdict=C.SUPPORTED, n_cases=3, min_cases=10)
    with pytest.raises(ValueError, match="on an undefined value"):
        C.claim_row("q1_spread_wider", metric="hd95", dataset="wmh", data_source="synthetic", our_value="x",
                    verdict=C.NOT_SUPPORTED, n_cases=30, defined=False)
    with pytest.raises(ValueError, match="needs a reason"):
        C.claim_row("top3_dice_equivalent", dataset="wmh", data_source="synthetic", our_value="",
                    verdict=C.CANNOT, n_cases=3)
    with pytest.raises(ValueError, match="verdict must be one of"):
        C.claim_row("top3_dice_equivalent", dataset="wmh", data_source="synthetic", our_value="",
                    verdict="does not widen", n_cases=30)
    row = C.claim_row("q1_spread_wider", metric="hd95", dataset="wmh", data_source="synthetic", our_value="x",
                      verdict=C.CANNOT, n_cases=3, reason="too few")
    assert row["data_source"] == "synthetic stand-in" and row["paper_value"] == "14.7 % overall, 41.3 % in Q1"
    assert list(C.claims_frame([row]).columns) == [*C.CLAIM_COLUMNS, *C.EXTRA_COLUMNS]


def test_sentence_by_hand():
    row = C.claim_row("dice_leader_not_boundary_leader_q1", metric="hd95", dataset="lits", data_source="real",
                      our_value="Dice leader a ranks 3 of 4", verdict=C.NOT_SUPPORTED, n_cases=25, n_lesions=40,
                      n_seeds=3, p_raw=0.2, detectable_difference="0.812")
    row["p_holm"] = 0.4
    assert C.sentence(row) == (
        "In Q1 the Dice leader is not the HD95 leader (LiTS, real data): not supported. Ours: Dice leader a ranks "
        "3 of 4; paper: Dice leader third on HD95 in 2 of 3 datasets. Evidence: 25 cases, 40 lesions, 3 seeds, "
        "p = 0.400. Smallest difference detectable at 80 % power: 0.812.")


def test_holm_within_each_family_by_hand():
    rows = [C.claim_row("top3_dice_equivalent", dataset=d, data_source="synthetic", our_value="", verdict=C.SUPPORTED,
                        n_cases=30, p_raw=p) for d, p in (("wmh", 0.01), ("wmh", 0.04), ("lits", 0.03))]
    table = C.holm_within_study(C.claims_frame(rows))
    # wmh family: sorted 0.01, 0.04 -> 2 x 0.01 = 0.02, max(0.02, 1 x 0.04) = 0.04; lits alone: 0.03
    assert table["p_holm"].tolist() == pytest.approx([0.02, 0.04, 0.03])


# --------------------------------------------------------------------------------------------- the verdicts
def test_a_stratum_held_by_one_case_cannot_be_assessed():
    # 30 test cases, but every Q1 lesion sits in case c00: one case holds the whole Q1 comparison
    q1 = {m: {"hd95": lambda k, i=i: 1.0 + i} for i, m in enumerate(MODELS)}
    claims, _ = _claims(*_tables(q1=q1, q1_cases=[0]))
    for claim in ("q1_spread_wider", "dice_leader_not_boundary_leader_q1"):
        row = claims.loc[(claim, "hd95")]
        assert row["verdict"] == C.CANNOT and row["n_cases"] == 1
        assert "1 cases" in row["reason"] and pd.isna(row["p_holm"])
    two, _ = _claims(*_tables(q1=q1, q1_cases=[0, 1]))
    assert two.loc[("q1_spread_wider", "hd95"), "verdict"] == C.CANNOT
    assert two.loc[("q1_spread_wider", "hd95"), "n_cases"] == 2


def test_zero_best_model_hd95_cannot_be_assessed_never_does_not_widen():
    # Q1 HD95 of the top three: 0, 2, 3 (the best model exact on every small lesion); overall 10, 11, 12
    q1 = {"hybrid": {"hd95": lambda k: 0.0}, "attention": {"hd95": lambda k: 2.0}, "resunet": {"hd95": lambda k: 3.0}}
    other = {"hybrid": {"hd95": lambda k: 10.0}, "attention": {"hd95": lambda k: 11.0},
             "resunet": {"hd95": lambda k: 12.0}}
    claims, evidence = _claims(*_tables(q1=q1, other=other))
    row = claims.loc[("q1_spread_wider", "hd95")]
    assert row["verdict"] == C.CANNOT
    assert row["reason"].startswith("relative spread undefined: the best model's mean hd95 in Q1 is 0.000")
    spread = evidence["spreads"].set_index("metric").loc["hd95"]
    assert spread["q1_abs"] == pytest.approx(3.0)  # the absolute spread is reported beside


def test_spread_wider_supported_and_not_by_hand():
    # all lesions = one Q1 and one Q4 lesion per case. Q1 HD95 2, 3, 4 (spread (4 - 2) / 2 = 100 %); Q4 HD95 10,
    # 10.5, 11; all lesions pooled: 6, 6.75, 7.5 -> (7.5 - 6) / 6 = 25 %. Every case alike: the interval is a point.
    q1 = {"hybrid": {"hd95": lambda k: 2.0}, "attention": {"hd95": lambda k: 3.0}, "resunet": {"hd95": lambda k: 4.0}}
    other = {"hybrid": {"hd95": lambda k: 10.0}, "attention": {"hd95": lambda k: 10.5},
             "resunet": {"hd95": lambda k: 11.0}}
    claims, evidence = _claims(*_tables(q1=q1, other=other))
    spread = evidence["spreads"].set_index("metric").loc["hd95"]
    assert (spread["q1"], spread["all"]) == (pytest.approx(100.0), pytest.approx(25.0))
    assert claims.loc[("q1_spread_wider", "hd95"), "verdict"] == C.SUPPORTED
    # the same spread in Q1 as overall (Q4 at 2, 3, 4 as well): not wider
    same = {m: {"hd95": v["hd95"]} for m, v in q1.items()}
    claims, _ = _claims(*_tables(q1=q1, other=same))
    assert claims.loc[("q1_spread_wider", "hd95"), "verdict"] == C.NOT_SUPPORTED


def test_dice_equivalence_supported_and_not():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.002, size=(len(MODELS), 30))
    close = {m: (lambda k, i=i: 0.85 - 0.001 * i + noise[i, k]) for i, m in enumerate(MODELS)}
    claims, evidence = _claims(*_tables(dice=close))
    row = claims.loc[("top3_dice_equivalent", "")]
    assert row["verdict"] == C.SUPPORTED and row["n_cases"] == 30
    eq = evidence["equivalence"]
    assert set(eq["margin"]) == {0.01, 0.02} and eq["equivalent"].all()
    # hybrid 0.03 above the others on every case: not equivalent at 0.02
    apart = {**close, "hybrid": lambda k: 0.88 + noise[0, k]}
    claims, _ = _claims(*_tables(dice=apart))
    assert claims.loc[("top3_dice_equivalent", ""), "verdict"] == C.NOT_SUPPORTED


def test_dice_leader_claim_resolved_and_tied():
    # the Dice leader (hybrid) has HD95 1 mm worse than resunet on every Q1 lesion: resolved, supported
    q1 = {"hybrid": {"hd95": lambda k: 3.0 + 0.1 * (k % 3)}, "attention": {"hd95": lambda k: 2.5},
          "resunet": {"hd95": lambda k: 2.0 + 0.1 * (k % 3)}, "unet": {"hd95": lambda k: 2.6}}
    claims, _ = _claims(*_tables(q1=q1))
    row = claims.loc[("dice_leader_not_boundary_leader_q1", "hd95")]
    assert row["verdict"] == C.SUPPORTED and row["p_holm"] <= 0.05
    assert "Dice leader hybrid ranks 4 of 4" in row["our_value"]
    # symmetric noise around equal means: the leader differs by a hair, the pair is not resolved
    flip = {"hybrid": {"hd95": lambda k: 2.0 + (0.5 if k % 2 else -0.5)},
            "resunet": {"hd95": lambda k: 2.0 - (0.5 if k % 2 else -0.49)}}
    claims, _ = _claims(*_tables(q1=flip))
    row = claims.loc[("dice_leader_not_boundary_leader_q1", "hd95")]
    assert row["verdict"] == C.NOT_SUPPORTED and "not resolved" in row["reason"]
    assert float(row["detectable_difference"]) > 0


def test_precondition_not_met_blocks_the_claims():
    claims, _ = _claims(*_tables(), precondition_failed=("unet: overall Dice 0.600 < 0.75",))
    blocked = claims.drop(index=("top3_dice_equivalent", ""))
    assert (blocked["verdict"] == C.CANNOT).all()
    assert blocked["reason"].str.startswith("precondition not met: unet").all()


def test_agreement_counts_a_pair_within_its_interval_as_tied():
    def row(metric, a, b, better, share, p):
        return {"stratum": "Q1", "metric": metric, "model_a": a, "model_b": b, "better": better,
                "share_same_sign": share, "p_holm": p, "n_cases": 30}
    table = pd.DataFrame([
        row("dice", "x", "y", "x", 0.99, 0.01), row("hd95", "x", "y", "y", 0.99, 0.01),   # both resolved, opposite
        row("dice", "x", "z", "x", 0.60, 0.70), row("hd95", "x", "z", "z", 0.99, 0.01),   # Dice tied
        row("dice", "y", "z", "y", 0.99, 0.01), row("hd95", "y", "z", "y", 0.97, 0.20),   # HD95 not after Holm
    ])
    ag = V.agreement_at_resolution({"wmh": table}, {"wmh": ["x", "y", "z"]}, metric="hd95").set_index(
        ["model_a", "model_b"])
    assert ag["strict"].tolist() == ["disagree", "disagree", "agree"]
    assert ag["status"].tolist() == ["disagree", "tied", "tied"]


def test_seeds_two_of_three_is_not_an_architecture_level_verdict():
    def table(verdict):
        return C.claims_frame([C.claim_row("top3_dice_equivalent", dataset="wmh", data_source="synthetic",
                                           our_value="v", verdict=verdict, n_cases=30, n_seeds=3)])
    combined = V.combine_seeds({0: table(C.SUPPORTED), 1: table(C.SUPPORTED), 2: table(C.NOT_SUPPORTED)},
                               main_seed=0)
    row = combined.iloc[0]
    assert row["verdict"] == C.NOT_SUPPORTED and row["n_seeds"] == 3
    assert row["our_value"] == "v; holds in 2 of 3 seeds"
    assert "not of the architectures" in row["reason"]
    every = V.combine_seeds({s: table(C.SUPPORTED) for s in range(3)}, main_seed=0).iloc[0]
    assert every["verdict"] == C.SUPPORTED and every["our_value"] == "v; holds in 3 of 3 seeds"


# --------------------------------------------------------------------------------------- statistics pieces
def test_stratified_draw_keeps_each_site_and_draws_within_it():
    sites = ["a"] * 3 + ["b"] * 5 + ["c"] * 2
    idx = resample_indices(10, 500, seed=1, strata=sites)
    label = np.array(sites)
    weights = resample_weights(idx, 10)
    for site in "abc":
        members = label == site
        assert (weights[:, members].sum(axis=1) == members.sum()).all()  # each resample keeps the site's size
    assert np.array_equal(resample_indices(10, 5, seed=1, strata=["a"] * 10), resample_indices(10, 5, seed=1))
    with pytest.raises(ValueError, match="strata has 2 labels for 10 cases"):
        resample_indices(10, 5, seed=1, strata=["a", "b"])


def test_two_level_bootstrap_by_hand():
    # one seed: the case bootstrap of that seed's values; constant values: every resample is the constant
    assert np.allclose(two_level_means(np.full((3, 4), 2.5), 50, seed=0), 2.5)
    # two seeds whose cases are constant within a seed (0 and 1): a resample's mean is the share of seed-1 draws,
    # so its values are in {0, 0.5, 1} with probabilities 1/4, 1/2, 1/4
    values = np.array([[0.0] * 5, [1.0] * 5])
    means = two_level_means(values, 4000, seed=3)
    assert set(np.round(means, 9)) <= {0.0, 0.5, 1.0}
    assert np.mean(means == 0.5) == pytest.approx(0.5, abs=0.03)


def test_detectable_difference_by_hand():
    d = np.array([1.0, 2.0, 3.0, 4.0])  # sd = 1.2910, n = 4
    expected = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * np.std(d, ddof=1) / 2
    assert detectable_difference(d) == pytest.approx(expected)
    assert np.isnan(detectable_difference([1.0]))


# ------------------------------------------------------------------------------------------------ small data
def test_small_data_claims_by_hand():
    from helpers.studies.small_data.claims import small_data_claims

    rng = np.random.default_rng(4)
    base = rng.uniform(0.7, 0.9, size=9)
    per_image = pd.DataFrame([{"protocol": p, "model": m, "image": f"i{k}", "value": base[k] + off}
                              for p in ("loocv", "3fold") for m, off in (("a", 0.0), ("b", 0.004), ("c", -0.003))
                              for k in range(9)])
    summary = pd.DataFrame({"protocol": ["loocv"] * 3, "model": ["b", "a", "c"], "mean": [0.804, 0.8, 0.797],
                            "ci_low": [0.76, 0.75, 0.75], "ci_high": [0.85, 0.85, 0.84]})
    friedman = pd.DataFrame({"protocol": ["loocv", "3fold"], "iman_davenport_p": [0.4, 0.6], "n": [9, 9],
                             "k": [3, 3]})
    agreement = pd.DataFrame([{"protocol_a": "loocv", "protocol_b": "3fold", "n_models": 3, "kendall_tau": 1.0,
                               "leader_a": "b", "leader_b": "b", "same_leader": True}])
    claims, eq = small_data_claims(per_image, summary, friedman, agreement, data_source="synthetic")
    v = claims.set_index("claim_id")["verdict"]
    # constant differences of 0.004, 0.003, 0.007 on 9 images: exact sign-flip TOST p = 1/512 per pair at +/-0.05
    assert eq.query("margin == 0.05")["p_signflip"].tolist() == pytest.approx([1 / 512] * 3)
    assert v["no_model_better_equivalence"] == C.SUPPORTED
    assert v["no_model_better_friedman"] == C.SUPPORTED  # 0.4 and 0.6: no rejection
    assert v["rankings_disagree"] == C.NOT_SUPPORTED  # identical orders
    assert v["intervals_overlap"] == C.SUPPORTED
    # a model whose interval lies above the leader's... is the leader: put one below instead
    apart = summary.assign(ci_high=[0.85, 0.85, 0.74], ci_low=[0.76, 0.75, 0.70])
    claims, _ = small_data_claims(per_image, apart, friedman.assign(iman_davenport_p=[0.001, 0.6]),
                                  agreement.assign(kendall_tau=0.33, same_leader=False, leader_b="a"),
                                  data_source="synthetic")
    v = claims.set_index("claim_id")["verdict"]
    assert v["intervals_overlap"] == C.NOT_SUPPORTED
    assert v["no_model_better_friedman"] == C.NOT_SUPPORTED  # Holm: 2 x 0.001 = 0.002 <= 0.05
    assert v["rankings_disagree"] == C.SUPPORTED


def test_architecture_intervals_over_seeds_by_hand():
    # three seeds; a - b is +1 on every case of seeds 0 and 1 and -1 on every case of seed 2: grand mean 1/3,
    # each seed's mean +1, +1, -1 (same sign as the grand mean in 2 of 3 seeds); the two-level resamples can draw
    # seed 2 three times, so the interval reaches below 0: not resolved at the architecture level
    def units(diff):
        return pd.DataFrame([{"stratum": "overall", "metric": "dice", "model": m, "case_id": f"c{k}", "value": v,
                              "excluded": False} for k in range(12) for m, v in (("a", 0.8 + diff), ("b", 0.8))])
    table = V.architecture_intervals({0: units(1.0), 1: units(1.0), 2: units(-1.0)}, ["a", "b"],
                                     comparisons=(("overall", "dice"),), n_resamples=2000, seed=0)
    row = table.iloc[0]
    assert row["difference"] == pytest.approx(1 / 3) and row["same_sign_seeds"] == 2 and row["n_seeds"] == 3
    assert row["seed_differences"] == "1 1 -1"
    assert row["ci_low"] == pytest.approx(-1.0) and row["ci_high"] == pytest.approx(1.0) and not row["resolved"]


def test_method_claims_by_hand():
    from helpers.studies.failure_lab.calibration import method_claims

    calib = pd.DataFrame({"n_cases": [10, 20], "n_sims": [100, 100], "false_supported": [0.03, 0.07],
                          "false_supported_mcse": [0.017, 0.0255], "power": [0.7, 1.0], "null_coverage": [0.9, 0.94],
                          "planted_effect": [0.7, 0.7]})
    planted = pd.DataFrame([{"hd95_variant": "directed", "stratum": "overall", "order_dice": "a > b",
                             "order_hd95": "b > a", "planted_pair": "a vs b", "reversal_found": True,
                             "hd95_verdict": "sign kept, Holm p <= 0.05"}])
    table = method_claims(calib, planted).set_index("claim_id")
    # 0.07 <= 0.05 + 2 x 0.0255 = 0.101: within two Monte-Carlo errors of alpha
    assert table.loc["verdict_rule_calibrated", "verdict"] == C.SUPPORTED
    assert table.loc["planted_reversal_found", "verdict"] == C.SUPPORTED
    worse = method_claims(calib.assign(false_supported=[0.03, 0.12]), planted.assign(reversal_found=False))
    assert set(worse["verdict"]) == {C.NOT_SUPPORTED}


def test_one_model_gives_cannot_be_assessed_for_every_claim():
    per_case, per_lesion = _tables()
    one = per_case[per_case["model"] == "hybrid"], per_lesion[per_lesion["model"] == "hybrid"]
    claims, evidence = V.dataset_claims(*one, dataset="wmh", data_source="user", top_models=["hybrid"])
    assert len(claims) == 10 and set(claims["verdict"]) == {C.CANNOT}
    assert claims["reason"].str.startswith("one model evaluated (hybrid)").all()
    assert evidence["robustness"].empty


def test_assemble_reads_the_studies_tables_only(tmp_path):
    from helpers.base.paths import Workspace

    ws = Workspace.at(tmp_path)
    row = C.claim_row("top3_dice_equivalent", dataset="wmh", data_source="synthetic", our_value="v",
                      verdict=C.SUPPORTED, n_cases=30)
    (ws.results("wmh")).mkdir(parents=True)
    C.claims_frame([row]).to_csv(ws.results("wmh") / "claims.csv", index=False)
    pd.DataFrame({"x": [1]}).to_csv(ws.results("wmh") / "claims_robustness.csv", index=False)  # evidence, not claims
    (ws.results("wmh") / "claims_empty.csv").write_text("")
    table = C.assemble(ws)  # no cross-dataset table: each dataset's own claims
    assert len(table) == 1 and table.loc[0, "claim_id"] == "top3_dice_equivalent"
    C.claims_frame([row, row]).to_csv(ws.results() / "claims_small_lesions.csv", index=False)
    assert len(C.assemble(ws)) == 2 and (ws.results() / "claims.csv").is_file()
