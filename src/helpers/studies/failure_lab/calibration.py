"""How often the study's verdict rule says "supported" when it should not, and when it should: a simulation with
constructed predictions.

The verdicts of :mod:`helpers.analysis.verdicts` read a paired difference between two models as resolved when it
keeps its sign in >= 95 % of the paired case-bootstrap resamples *and* its sign-flip p over cases is at most
alpha (:func:`helpers.stats.bootstrap.directional_robustness`, verdict ``sign kept, Holm p <= alpha``). This
module measures that rule's operating characteristics on test sets of the study's size, with the
constructed-prediction operators of the failure lab (:class:`helpers.studies.failure_lab.models.SyntheticModel`)
and the study's own engine and analysis code.

Design
------
* A *population* of ``pool_cases`` synthetic test cases (:func:`helpers.studies.failure_lab.models.make_test_set`)
  is evaluated once for three models: ``A`` and ``A_twin`` (the same failure mode and severity, independent
  random draws: no true difference) and ``B`` (the same mode at ``severity_mm + effect_mm``: a planted boundary
  difference).
* A simulated *test set* draws ``n_cases`` cases of the population without replacement; its Q1 common-set
  lesions are compared under ``metric`` (HD95 by default) exactly as the study compares trained models.
* The **false-supported rate** is the share of simulated test sets in which the rule resolves ``A`` vs
  ``A_twin``; the **power** the share in which it resolves ``A`` vs ``B`` in the planted direction; the
  **coverage** the share of null test sets whose 95 % bootstrap interval contains 0 (the interval the spread
  and maximum claims read). Each comes with its Monte-Carlo standard error ``sqrt(r (1 - r) / n_sims)``.
* The planted effect is stated as the population's mean paired Q1 difference (the truth the simulation knows).

The sign-flip test is exact under the null of symmetric per-case differences, so the false-supported rate is at
most alpha at every n; what the simulation adds is the power at the study's size, the coverage of the percentile
interval with few cases (cluster bootstraps under-cover with few clusters: Flynn & Peters 2004), and with them
the choice of the minimum number of cases (:data:`helpers.stats.bootstrap.MIN_CASES`).

Flynn TN, Peters TJ. Use of the bootstrap in analysing cost data from cluster randomised trials: some simulation
results. BMC Health Serv Res 4:33, 2004.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from helpers import analysis
from helpers.analysis.claims import CANNOT, NOT_SUPPORTED, SUPPORTED, claim_row, claims_frame
from helpers.base.checks import as_int
from helpers.stats import bootstrap
from helpers.studies.failure_lab.models import SyntheticModel, make_test_set
from helpers.studies.failure_lab.reversal import evaluate_models

__all__ = ["population", "simulate_verdicts", "method_claims"]


def population(*, pool_cases: int = 120, mode: str = "offset", severity_mm: float = 0.5, effect_mm: float = 0.5,
               seed: int = 0, shape: tuple[int, ...] = (96, 96)) -> pd.DataFrame:
    """The lesion-level units (:func:`helpers.analysis.analysis_units`, common set) of the three models ``A``,
    ``A_twin`` and ``B`` on a population of ``pool_cases`` synthetic cases (module docstring)."""
    cases = make_test_set(as_int(pool_cases, "pool_cases", 2), shape=shape, seed=seed)
    models = [SyntheticModel("A", mode, severity_mm=severity_mm),
              SyntheticModel("B", mode, severity_mm=severity_mm + effect_mm)]
    per_case, per_lesion = evaluate_models(models, cases, seed=seed)
    twin_case, twin_lesion = evaluate_models([SyntheticModel("A_twin", mode, severity_mm=severity_mm)], cases,
                                             seed=seed + 1)
    per_case = pd.concat([per_case, twin_case], ignore_index=True)
    per_lesion = pd.concat([per_lesion, twin_lesion], ignore_index=True)
    # quartiles from the reference lesions, the same for every model (evaluate_models assigns per call)
    per_lesion["quartile"] = per_lesion.groupby(["case_id", "lesion_id"])["quartile"].transform("first")
    return analysis.analysis_units(per_case, per_lesion, lesion_set="common")


def _resolved(units: pd.DataFrame, case_ids: list[str], a: str, b: str, *, metric: str, stratum: str,
              n_resamples: int, seed: int, alpha: float) -> tuple[bool, float, bool, float]:
    """(resolved, observed difference a - b, interval contains 0, n cases) of one comparison, by the study's rule."""
    u = units[(units["stratum"] == stratum) & (units["metric"] == metric) & units["model"].isin([a, b])]
    table = bootstrap.directional_robustness(u, case_ids=case_ids, models=[a, b], n_resamples=n_resamples, seed=seed,
                                             group_by=("metric",), alpha=alpha, min_cases=1)
    row = table.iloc[0]
    held = str(row["verdict"]).startswith("sign kept, Holm")
    return held, float(row["difference"]), bool(row["ci_low"] <= 0 <= row["ci_high"]), float(row["n_cases"])


def simulate_verdicts(units: pd.DataFrame, *, sizes: Sequence[int] = (10, 15, 20, 24, 30), n_sims: int = 200,
                      metric: str = "hd95", stratum: str = "Q1", n_resamples: int = 500, alpha: float = 0.05,
                      seed: int = 0) -> pd.DataFrame:
    """Per test-set size: the false-supported rate (A vs A_twin), the power (A vs B, planted direction), the null
    interval's coverage of 0, each with its Monte-Carlo standard error, the planted effect (population mean of the
    per-case Q1 difference B - A) and the median number of cases holding Q1 lesions."""
    rng = np.random.default_rng(as_int(seed, "seed", 0))
    pool = sorted(units["case_id"].astype(str).unique())
    sub = units[(units["stratum"] == stratum) & (units["metric"] == metric)]
    means = sub.groupby(["case_id", "model"])["value"].mean().unstack()
    effect = float((means["B"] - means["A"]).mean())
    rows = []
    for n in sizes:
        n = as_int(n, "size", 2)
        if n > len(pool):
            raise ValueError(f"test-set size {n} exceeds the population of {len(pool)} cases")
        false, power, covered, held_cases = 0, 0, 0, []
        for k in range(as_int(n_sims, "n_sims", 1)):
            ids = sorted(rng.choice(pool, size=n, replace=False).tolist())
            part = units[units["case_id"].isin(ids)]
            held, _, contains, k_cases = _resolved(part, ids, "A", "A_twin", metric=metric, stratum=stratum,
                                                   n_resamples=n_resamples, seed=k, alpha=alpha)
            false += held
            covered += contains
            held_cases.append(k_cases)
            held, diff, _, _ = _resolved(part, ids, "B", "A", metric=metric, stratum=stratum,
                                         n_resamples=n_resamples, seed=k, alpha=alpha)
            power += held and np.sign(diff) == np.sign(effect)
        rates = {"false_supported": false / n_sims, "power": power / n_sims, "null_coverage": covered / n_sims}
        rows.append({"n_cases": n, "n_sims": int(n_sims), **rates,
                     **{f"{k}_mcse": float(np.sqrt(v * (1 - v) / n_sims)) for k, v in rates.items()},
                     "planted_effect": effect, "metric": metric, "stratum": stratum, "alpha": alpha,
                     "median_cases_with_units": float(np.median(held_cases))})
    return pd.DataFrame(rows)


def method_claims(calibration_table: pd.DataFrame, planted: pd.DataFrame, *, alpha: float = 0.05) -> pd.DataFrame:
    """The method's own claims (:data:`helpers.analysis.claims.METHOD`): the verdict rule's false-supported rate is at
    most ``alpha`` within two Monte-Carlo standard errors at every simulated size (with the power beside), and the
    planted reversal of the laboratory (``planted``: the verdicts of :func:`helpers.studies.failure_lab.reversal
    .reversal_demo`, directed HD95, overall) is found with its HD95 sign kept after Holm."""
    common = {"dataset": "failure_lab", "data_source": "constructed", "n_seeds": None}
    rows = []
    if calibration_table.empty:
        rows.append(claim_row("verdict_rule_calibrated", our_value="", verdict=CANNOT, n_cases=0,
                              reason="no simulation ran", **common))
    else:
        t = calibration_table
        ok = bool((t["false_supported"] <= alpha + 2 * t["false_supported_mcse"].clip(lower=1 / t["n_sims"])).all())
        value = "; ".join(f"{int(r.n_cases)} cases: false {r.false_supported:.3f} (±{r.false_supported_mcse:.3f}), "
                          f"power {r.power:.2f}, null coverage {r.null_coverage:.3f}" for r in t.itertuples())
        rows.append(claim_row("verdict_rule_calibrated", our_value=f"{value} ({int(t['n_sims'].min())} simulated test "
                              f"sets per size; planted effect {t['planted_effect'].iloc[0]:.3f} mm)",
                              verdict=SUPPORTED if ok else NOT_SUPPORTED, n_cases=int(t["n_cases"].min()), **common))
    row = planted[(planted["hd95_variant"] == "directed") & (planted["stratum"] == "overall")] if len(planted) else planted
    if row.empty:
        rows.append(claim_row("planted_reversal_found", our_value="", verdict=CANNOT, n_cases=0,
                              reason="the planted reversal was not evaluated", **common))
    else:
        r = row.iloc[0]
        kept = str(r["hd95_verdict"]).startswith("sign kept, Holm")
        rows.append(claim_row("planted_reversal_found", our_value=(
            f"Dice order {r['order_dice']}; HD95 order {r['order_hd95']}; planted pair {r['planted_pair']}: "
            f"{r['hd95_verdict']}"), verdict=SUPPORTED if bool(r["reversal_found"]) and kept else NOT_SUPPORTED,
            n_cases=1, **common))
    return claims_frame(rows)
