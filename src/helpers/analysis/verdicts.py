"""The first study's claims, computed: per dataset (top-3 Dice equivalence, the Q1 spread against all lesions, the
Dice leader against each boundary metric's leader in Q1, the reversals' sign under the bootstrap) and across
datasets (the paper's agreement counts and largest Q1 differences), each ending in one of the three verdicts of
:mod:`helpers.analysis.claims` with the evidence it rests on.

Rules (each stated once, here; the methods page quotes them)
-----------------------------------------------------------
* **Unit of inference: the case.** Every interval is a paired case bootstrap (all units of a drawn case come with
  it; stratified by site when the cases carry one, :func:`helpers.stats.bootstrap.resample_indices`); every p-value
  the exact or Monte-Carlo sign-flip test over cases. A claim resting on fewer than ``min_cases`` cases (a
  :class:`Settings` field, default :data:`helpers.stats.bootstrap.MIN_CASES`) is ``cannot be assessed``.
* **Precondition.** The first study's claims concern competent, near-tied models; where the dataset's precondition
  (:mod:`helpers.analysis.preconditions`) is not met, every claim but the equivalence one is ``cannot be assessed``
  with the failed conditions as the reason.
* **Top-3 Dice equivalence** (``top3_dice_equivalent``): each pair of the top three models by overall Dice is
  tested with the sign-flip TOST over cases (:func:`helpers.stats.inference.signflip_equivalence`) at each margin
  of ``margins`` (0.01, 0.02 Dice); supported when every pair is equivalent at the largest margin (the
  intersection-union test: p = the largest pair p), not supported otherwise. The paired-t TOST and the smallest
  margin at which each pair is equivalent (:func:`helpers.stats.inference.smallest_equivalence_margin`) are shown
  beside.
* **Q1 spread wider than all lesions** (``q1_spread_wider``, per boundary metric): the spread (largest minus
  smallest mean) of the top three models' lesion-level means on the *common* lesion set, in Q1 and over all
  lesions of the same set (like for like); for distances relative to the best (smallest) mean, in % (the
  paper's unit; undefined when that mean is 0: ``cannot be assessed``), for contour F1 absolute. Supported when
  the case-bootstrap interval of (Q1 spread - all-lesions spread) lies above 0; not supported otherwise.
* **Dice leader not the boundary leader in Q1** (``dice_leader_not_boundary_leader_q1``, per boundary metric):
  the Dice leader is the top model by overall Dice; the metric's Q1 leader the best Q1 common-set mean. Supported
  when they differ *and* the paired difference between them keeps its sign in >= 95 % of the resamples with the
  family's Holm-adjusted sign-flip p <= alpha (the pair is resolved); not supported when the Dice leader leads, or
  the two are not resolved (tied at the data's resolution).
* **Reversal sign stable** (``reversal_sign_stable``, per boundary metric): every top-model pair whose Q1 order
  under Dice and under the metric differ (an observed reversal) has a boundary difference that keeps its sign in
  >= 95 % of resamples with Holm-adjusted p <= alpha; ``cannot be assessed`` when no reversal is observed.
* **Multiplicity**: Holm over each dataset's family of claims (the rows with a p-value), then over the
  cross-dataset family (:func:`helpers.analysis.claims.holm_within_study`).
* **Seeds**: with k >= 2 trained seeds a claim is computed for each; it is ``supported`` for the architectures
  only when it holds in every seed, and its ``our_value`` says "holds in j of k seeds"
  (:func:`combine_seeds`). With one seed every verdict concerns the trained weights.

Imports :mod:`helpers.analysis.units`, :mod:`helpers.analysis.claims`, :mod:`helpers.stats` and
:mod:`helpers.metrics`; never matplotlib.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from helpers.analysis.claims import CANNOT, NOT_SUPPORTED, SUPPORTED, claim_row, claims_frame, holm_within_study
from helpers.analysis.units import analysis_units, common_lesions  # noqa: F401  (common_lesions: documented set)
from helpers.metrics import higher_is_better
from helpers.stats.bootstrap import (
    MIN_CASES, directional_robustness, percentile_bounds, resample_indices, resample_weights, resampled_means,
    sufficient_statistics, two_level_means,
)
from helpers.stats.inference import detectable_difference, holm_adjust, signflip_equivalence, tost_paired

__all__ = [
    "BOUNDARY_METRICS", "Settings", "dice_by_case", "equivalence_table", "spread_interval", "robustness",
    "dataset_claims", "combine_seeds", "agreement_at_resolution", "cross_dataset_claims", "architecture_intervals",
]

#: The boundary metrics the claims are made for (the paper's section 4.2-4.3).
BOUNDARY_METRICS = ("hd95", "assd", "contour_f1")
_RELATIVE = {"hd95": True, "assd": True, "masd": True, "contour_f1": False, "nsd": False}


@dataclass(frozen=True)
class Settings:
    """The stated parameters of the verdicts (a profile may override each)."""

    alpha: float = 0.05
    min_cases: int = MIN_CASES
    n_resamples: int = 2000
    seed: int = 0
    confidence: float = 0.95
    margins: tuple[float, ...] = (0.01, 0.02)
    top_k: int = 3
    power: float = 0.8
    metrics: tuple[str, ...] = BOUNDARY_METRICS

    @property
    def margin(self) -> float:
        """The margin the equivalence verdict is read at: the largest stated one."""
        return float(max(self.margins))


def _row_extremes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise min and max ignoring NaN; NaN for a row without any finite value (a resample that drew no unit),
    without numpy's all-NaN warning."""
    finite = np.isfinite(values)
    low = np.where(finite, values, np.inf).min(axis=1)
    high = np.where(finite, values, -np.inf).max(axis=1)
    empty = ~finite.any(axis=1)
    return np.where(empty, np.nan, low), np.where(empty, np.nan, high)


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def dice_by_case(units: pd.DataFrame, models: Sequence[str]) -> pd.DataFrame:
    """The per-case overall Dice of ``models`` (cases x models) from a unit table of
    :func:`helpers.analysis.analysis_units`: the overall stratum's Dice units, cases without a reference lesion
    (``excluded``) left out, cases missing a model dropped (counted by the caller through the shape)."""
    u = units[(units["stratum"] == "overall") & (units["metric"] == "dice") & units["model"].isin(list(models))]
    if "excluded" in u.columns:
        u = u[~u["excluded"].astype(bool)]
    wide = u.pivot_table(index="case_id", columns="model", values="value", aggfunc="first")
    return wide.reindex(columns=list(models)).dropna()


def equivalence_table(dice: pd.DataFrame, *, margins: Sequence[float], alpha: float = 0.05,
                      seed: int = 0) -> pd.DataFrame:
    """Every pair of the columns of ``dice`` (cases x models) at every margin: ``model_a, model_b, margin, n,
    mean_difference, ci_low, ci_high`` (the 90 % t-interval), ``p_t``, ``p_signflip``, ``equivalent_t``,
    ``equivalent`` (the sign-flip TOST: the verdict's test), ``smallest_margin``."""
    rows = []
    for a, b in itertools.combinations(dice.columns, 2):
        x, y = dice[a].to_numpy(float), dice[b].to_numpy(float)
        t_any = tost_paired(x, y, margin=max(margins), alpha=alpha) if len(x) else None
        smallest = (max(abs(t_any.ci_low), abs(t_any.ci_high)) if t_any is not None and
                    math.isfinite(t_any.ci_low) else math.nan)
        for margin in margins:
            if len(x) == 0:
                rows.append({"model_a": a, "model_b": b, "margin": margin, "n": 0, "equivalent": False,
                             "equivalent_t": False})
                continue
            t = tost_paired(x, y, margin=margin, alpha=alpha)
            sf = signflip_equivalence(x, y, margin=margin, alpha=alpha, seed=seed)
            rows.append({"model_a": a, "model_b": b, "margin": margin, "n": len(x),
                         "mean_difference": t.mean_difference, "ci_low": t.ci_low, "ci_high": t.ci_high,
                         "p_t": t.p_value, "p_signflip": sf.p_value, "equivalent_t": bool(t.equivalent),
                         "equivalent": bool(sf.equivalent), "smallest_margin": smallest})
    return pd.DataFrame(rows)


def spread_interval(units: pd.DataFrame, *, models: Sequence[str], metric: str, case_ids: Sequence[str],
                    weights: np.ndarray, confidence: float = 0.95) -> dict:
    """The top models' spread of ``metric`` in Q1 and over all lesions (lesion-level units of one lesion set) and
    the case-bootstrap interval of their difference, from resample ``weights`` (shared with the other claims).

    Returns ``q1, all, difference`` (observed), ``ci_low, ci_high`` (of the difference), ``q1_ci_low, q1_ci_high,
    all_ci_low, all_ci_high`` (of each spread), ``relative`` (whether the
    spread is relative to the best mean, in %), ``undefined`` (the reason when a spread's denominator is 0),
    ``n_cases`` (cases holding Q1 units of every model), ``n_lesions`` (Q1 units per model), ``q1_abs``,
    ``all_abs`` (absolute spreads, in the metric's unit)."""
    relative = _RELATIVE.get(metric, False)
    higher = higher_is_better(metric)
    out = {"relative": relative}
    spreads_obs, spreads_boot = {}, {}
    for stratum in ("Q1", "all_lesions"):
        u = units[(units["stratum"] == stratum) & (units["metric"] == metric) & units["model"].isin(list(models))]
        sums, counts, _ = sufficient_statistics(u, case_ids=case_ids, models=models)
        total = counts.sum(axis=0)
        if stratum == "Q1":
            out["n_cases"] = int((counts > 0).all(axis=1).sum())
            out["n_lesions"] = int(total.min()) if len(total) else 0
        with np.errstate(invalid="ignore", divide="ignore"):
            observed = sums.sum(axis=0) / total
        boot = resampled_means(sums, counts, weights)
        best_obs = observed.max() if higher else observed.min()
        out[f"{'q1' if stratum == 'Q1' else 'all'}_abs"] = float(observed.max() - observed.min())
        if relative:
            if not np.isfinite(best_obs) or best_obs <= 0:
                out["undefined"] = f"the best model's mean {metric} in {stratum} is {_fmt(float(best_obs))}"
            low, high = _row_extremes(boot)
            with np.errstate(invalid="ignore", divide="ignore"):
                spreads_obs[stratum] = (observed.max() - observed.min()) / best_obs * 100
                spreads_boot[stratum] = np.where(low > 0, (high - low) / low * 100, np.nan)
        else:
            low, high = _row_extremes(boot)
            spreads_obs[stratum] = observed.max() - observed.min()
            spreads_boot[stratum] = high - low
    for stratum, key in (("Q1", "q1"), ("all_lesions", "all")):
        values = spreads_boot[stratum][np.isfinite(spreads_boot[stratum])]
        out[f"{key}_ci_low"], out[f"{key}_ci_high"] = percentile_bounds(values, confidence=confidence)
    diff = spreads_boot["Q1"] - spreads_boot["all_lesions"]
    finite = diff[np.isfinite(diff)]
    low, high = percentile_bounds(finite, confidence=confidence)
    out.update(q1=float(spreads_obs["Q1"]), all=float(spreads_obs["all_lesions"]),
               difference=float(spreads_obs["Q1"] - spreads_obs["all_lesions"]), ci_low=low, ci_high=high,
               n_valid=int(finite.size))
    out.setdefault("undefined", "")
    return out


def robustness(units: pd.DataFrame, *, case_ids: Sequence[str], models: Sequence[str], settings: Settings,
               strata_of_cases: Sequence | None = None) -> pd.DataFrame:
    """The paired case bootstrap of every model pair in the overall, all-lesions and Q1 strata for Dice and the
    boundary metrics (:func:`helpers.stats.bootstrap.directional_robustness`, stratified by site when given)."""
    u = units[units["stratum"].isin(["overall", "all_lesions", "Q1"])
              & units["metric"].isin(["dice", *settings.metrics])]
    return directional_robustness(
        u, case_ids=case_ids, models=models, n_resamples=settings.n_resamples, seed=settings.seed,
        confidence=settings.confidence, group_by=("dataset", "lesion_set", "stratum", "metric"),
        alpha=settings.alpha, min_cases=settings.min_cases, strata=strata_of_cases)


def _pair_row(table: pd.DataFrame, stratum: str, metric: str, a: str, b: str) -> pd.Series | None:
    sub = table[(table["stratum"] == stratum) & (table["metric"] == metric)
                & (((table["model_a"] == a) & (table["model_b"] == b)) | ((table["model_a"] == b)
                                                                         & (table["model_b"] == a)))]
    return None if sub.empty else sub.iloc[0]


def _resolved(row: pd.Series | None, p_holm: float | None, alpha: float) -> bool:
    """A pair is resolved under a metric when its difference keeps its sign in >= 1 - alpha of the resamples and
    its (family-adjusted) sign-flip p is at most alpha."""
    if row is None or p_holm is None or not np.isfinite(p_holm):
        return False
    share = row.get("share_same_sign", np.nan)
    return bool(np.isfinite(share) and share >= 1 - alpha and p_holm <= alpha)


def _per_case_differences(units: pd.DataFrame, stratum: str, metric: str, a: str, b: str) -> np.ndarray:
    return _per_case_series(units, stratum, metric, a, b).to_numpy(float)


def dataset_claims(per_case: pd.DataFrame, per_lesion: pd.DataFrame, *, dataset: str, data_source: str,
                   top_models: Sequence[str], precondition_failed: Sequence[str] = (), settings: Settings = Settings(),
                   case_sites: Mapping[str, str] | None = None, n_seeds: int = 1
                   ) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """The first study's claims for one dataset (module docstring), with Holm over the dataset's family.

    ``top_models``: the top models by overall Dice, best first (the precondition's); ``precondition_failed``: its
    failed conditions (empty when met); ``case_sites``: case id -> site for the stratified draw. Returns the claims
    rows (:func:`helpers.analysis.claims.claims_frame`) and the evidence tables: ``equivalence``, ``spreads``,
    ``robustness``."""
    s = settings
    units = analysis_units(per_case, per_lesion, lesion_set="common")
    models = sorted(units["model"].astype(str).unique())
    case_ids = sorted(per_case["case_id"].astype(str).unique())
    units = units.assign(case_id=units["case_id"].astype(str))
    top = [str(m) for m in top_models][: s.top_k]
    if len(models) < 2:  # one model (a user's single model): every claim compares models
        common1 = {"dataset": dataset, "data_source": data_source, "n_seeds": n_seeds}
        rows = [claim_row(key, metric=metric, our_value="", verdict=CANNOT, n_cases=len(case_ids),
                          reason=f"one model evaluated ({', '.join(models) or 'none'}): nothing to compare", **common1)
                for key, metrics in (("top3_dice_equivalent", (None,)), ("q1_spread_wider", s.metrics),
                                     ("dice_leader_not_boundary_leader_q1", s.metrics),
                                     ("reversal_sign_stable", s.metrics))
                for metric in metrics]
        empty = {"equivalence": pd.DataFrame(), "robustness": pd.DataFrame(), "spreads": pd.DataFrame()}
        return holm_within_study(claims_frame(rows)), empty
    sites = [case_sites.get(c) for c in case_ids] if case_sites else None
    if sites is not None and (any(x is None for x in sites) or len(set(sites)) < 2):
        sites = None
    common = {"dataset": dataset, "data_source": data_source, "n_seeds": n_seeds, "min_cases": s.min_cases}
    pending: list[dict] = []   # rows with a p-value: their verdict waits for Holm over the family
    rows: list[dict] = []
    evidence: dict[str, pd.DataFrame] = {}
    blocked = "precondition not met: " + "; ".join(precondition_failed) if precondition_failed else ""

    # top-3 Dice equivalence
    dice = dice_by_case(units, top)
    eq = equivalence_table(dice, margins=s.margins, alpha=s.alpha, seed=s.seed) if len(top) >= 2 else pd.DataFrame()
    evidence["equivalence"] = eq
    n_eq = len(dice)
    if len(top) < s.top_k:
        rows.append(claim_row("top3_dice_equivalent", our_value="", verdict=CANNOT, n_cases=n_eq,
                              reason=f"only {len(top)} model(s): no top {s.top_k}", **common))
    elif n_eq < s.min_cases:
        rows.append(claim_row("top3_dice_equivalent", our_value="", verdict=CANNOT, n_cases=n_eq,
                              reason=f"{n_eq} cases < {s.min_cases}", **common))
    else:
        at = eq[eq["margin"] == s.margin]
        held = {m: int(eq[eq["margin"] == m]["equivalent"].sum()) for m in s.margins}
        spread = float(dice.mean().max() - dice.mean().min())
        smallest = float(eq["smallest_margin"].max())
        value = (f"Dice spread {spread:.3f}; smallest equivalence margin {smallest:.3f}; equivalent pairs: "
                 + ", ".join(f"{held[m]}/{len(at)} at ±{m:g}" for m in s.margins))
        pending.append({"key": "top3_dice_equivalent", "p_raw": float(at["p_signflip"].max()), "our_value": value,
                        "n_cases": n_eq, "decide": lambda p, ok=bool(at["equivalent"].all()):
                        SUPPORTED if ok else NOT_SUPPORTED, "reason": f"sign-flip TOST at ±{s.margin:g} Dice"})

    # the bootstrap shared by the other claims
    weights = resample_weights(resample_indices(len(case_ids), s.n_resamples, seed=s.seed, strata=sites),
                               len(case_ids))
    table = robustness(units, case_ids=case_ids, models=models, settings=s, strata_of_cases=sites)
    evidence["robustness"] = table
    spreads = []
    for metric in s.metrics:
        if blocked:
            for key in ("q1_spread_wider", "dice_leader_not_boundary_leader_q1", "reversal_sign_stable"):
                rows.append(claim_row(key, metric=metric, our_value="", verdict=CANNOT, n_cases=len(case_ids),
                                      reason=blocked, **common))
            continue
        # the spread, like for like
        sp = spread_interval(units, models=top, metric=metric, case_ids=case_ids, weights=weights,
                             confidence=s.confidence)
        spreads.append({"metric": metric, **sp})
        unit = "%" if sp["relative"] else ""
        value = (f"Q1 {_fmt(sp['q1'], 1 if unit else 3)}{unit} vs all lesions {_fmt(sp['all'], 1 if unit else 3)}"
                 f"{unit}; difference {_fmt(sp['difference'], 1 if unit else 3)} (95 % CI "
                 f"{_fmt(sp['ci_low'], 1 if unit else 3)} to {_fmt(sp['ci_high'], 1 if unit else 3)})")
        if sp["n_cases"] < s.min_cases:
            rows.append(claim_row("q1_spread_wider", metric=metric, our_value=value, verdict=CANNOT,
                                  n_cases=sp["n_cases"], n_lesions=sp["n_lesions"],
                                  reason=f"{sp['n_cases']} cases hold Q1 lesions of every top model "
                                         f"(< {s.min_cases})", **common))
        elif sp["undefined"]:
            rows.append(claim_row("q1_spread_wider", metric=metric, our_value=value, verdict=CANNOT,
                                  n_cases=sp["n_cases"], n_lesions=sp["n_lesions"],
                                  reason=f"relative spread undefined: {sp['undefined']}", **common))
        else:
            verdict = SUPPORTED if sp["ci_low"] > 0 else NOT_SUPPORTED
            rows.append(claim_row("q1_spread_wider", metric=metric, our_value=value, verdict=verdict,
                                  n_cases=sp["n_cases"], n_lesions=sp["n_lesions"], **common))
        # the Dice leader against the metric's Q1 leader
        q1 = table[(table["stratum"] == "Q1") & (table["metric"] == metric)]
        means = {}
        for r in q1.itertuples():
            means[r.model_a], means[r.model_b] = r.mean_a, r.mean_b
        leader = top[0]
        if not means or not np.isfinite(list(means.values())).all():
            rows.append(claim_row("dice_leader_not_boundary_leader_q1", metric=metric, our_value="", verdict=CANNOT,
                                  n_cases=0, reason=f"no Q1 {metric} mean for every model", **common))
        else:
            order = sorted(means, key=lambda m: (-means[m] if higher_is_better(metric) else means[m], m))
            best = order[0]
            rank = order.index(leader) + 1 if leader in order else None
            row = _pair_row(table, "Q1", metric, leader, best) if best != leader else None
            n_cases = int(row["n_cases"]) if row is not None else int(q1["n_cases"].min())
            value = f"Dice leader {leader} ranks {rank} of {len(order)} on Q1 {metric}; leader {best}"
            if best == leader:
                rows.append(claim_row("dice_leader_not_boundary_leader_q1", metric=metric, our_value=value,
                                      verdict=NOT_SUPPORTED if n_cases >= s.min_cases else CANNOT,
                                      n_cases=n_cases, reason="" if n_cases >= s.min_cases else
                                      f"{n_cases} cases < {s.min_cases}", **common))
            elif n_cases < s.min_cases:
                rows.append(claim_row("dice_leader_not_boundary_leader_q1", metric=metric, our_value=value,
                                      verdict=CANNOT, n_cases=n_cases, reason=f"{n_cases} cases < {s.min_cases}",
                                      **common))
            else:
                d = _per_case_differences(units, "Q1", metric, leader, best)
                pending.append({"key": "dice_leader_not_boundary_leader_q1", "metric": metric,
                                "p_raw": float(row["p_value"]), "our_value": value
                                + f"; difference {_fmt(abs(row['difference']))} (95 % CI {_fmt(row['ci_low'])} to "
                                  f"{_fmt(row['ci_high'])})", "n_cases": n_cases,
                                "n_lesions": int(min(row["n_units_a"], row["n_units_b"])),
                                "detectable": _fmt(detectable_difference(d, alpha=s.alpha, power=s.power)),
                                "decide": lambda p, r=row: SUPPORTED if _resolved(r, p, s.alpha) else NOT_SUPPORTED,
                                "reason_if_not": "the two are not resolved: tied at the data's resolution"})
        # the reversals' sign
        reversals = q1[q1["model_a"].isin(top) & q1["model_b"].isin(top) & q1["reversal_observed"].astype(bool)]
        if reversals.empty:
            rows.append(claim_row("reversal_sign_stable", metric=metric, our_value="no reversal among the top models",
                                  verdict=CANNOT, n_cases=int(q1["n_cases"].min()) if len(q1) else 0,
                                  reason=f"no top-model pair is ordered oppositely by Dice and {metric} in Q1",
                                  **common))
        else:
            n_cases = int(reversals["n_cases"].min())
            pairs = ", ".join(f"{r.model_a}/{r.model_b}" for r in reversals.itertuples())
            if n_cases < s.min_cases:
                rows.append(claim_row("reversal_sign_stable", metric=metric, our_value=f"reversed: {pairs}",
                                      verdict=CANNOT, n_cases=n_cases, reason=f"{n_cases} cases < {s.min_cases}",
                                      **common))
            else:
                worst = reversals.loc[reversals["p_value"].idxmax()]
                shares = ", ".join(f"{r.share_same_sign:.2f}" for r in reversals.itertuples())
                pending.append({"key": "reversal_sign_stable", "metric": metric, "p_raw": float(worst["p_value"]),
                                "our_value": f"reversed: {pairs}; sign kept in {shares} of resamples",
                                "n_cases": n_cases, "n_lesions": int(reversals[["n_units_a", "n_units_b"]].min().min()),
                                "decide": lambda p, r=worst: SUPPORTED if _resolved(r, p, s.alpha) else NOT_SUPPORTED,
                                "reason_if_not": "a reversed pair's boundary difference does not keep its sign"})
    evidence["spreads"] = pd.DataFrame(spreads)
    return _finish(rows, pending, common, s), evidence


def _finish(rows: list[dict], pending: list[dict], common: dict, s: Settings) -> pd.DataFrame:
    """Holm over the family's p-values, then each pending row's verdict from its adjusted p."""
    if pending:
        finite = [i for i, p in enumerate(pending) if np.isfinite(p["p_raw"])]
        adjusted = [float("nan")] * len(pending)  # a row without a p-value (no difference to test) stays out
        for i, value in zip(finite, holm_adjust([pending[i]["p_raw"] for i in finite]) if finite else []):
            adjusted[i] = float(value)
        for p, p_holm in zip(pending, adjusted):
            verdict = p["decide"](float(p_holm))
            rows.append(claim_row(p["key"], metric=p.get("metric"), our_value=p["our_value"], verdict=verdict,
                                  n_cases=p["n_cases"], n_lesions=p.get("n_lesions"),
                                  p_raw=p["p_raw"] if np.isfinite(p["p_raw"]) else None,
                                  detectable_difference=p.get("detectable") if verdict == NOT_SUPPORTED else None,
                                  reason=p.get("reason", "") or (p.get("reason_if_not", "") if verdict ==
                                                                  NOT_SUPPORTED else ""),
                                  **common))
    return holm_within_study(claims_frame(rows))


def combine_seeds(per_seed: Mapping[int, pd.DataFrame], *, main_seed: int) -> pd.DataFrame:
    """One claims table from the tables of k seeds (same claims, same order of computation): the main seed's row,
    with ``n_seeds`` = k and "holds in j of k seeds" added to ``our_value``; supported only when every seed's
    verdict is supported (otherwise not supported: "a property of the trained weights, not of the
    architectures"); cannot be assessed where the main seed's row cannot."""
    main = per_seed[main_seed].copy()
    k = len(per_seed)
    if k < 2:
        return main
    key = ["claim_id", "metric"]
    verdicts = pd.concat([t[key + ["verdict"]].assign(seed=s) for s, t in per_seed.items()], ignore_index=True)
    held = verdicts.assign(ok=verdicts["verdict"] == SUPPORTED).groupby(key)["ok"].sum()
    assessed = verdicts.assign(ok=verdicts["verdict"] != CANNOT).groupby(key)["ok"].sum()
    for i, row in main.iterrows():
        j = int(held.get((row["claim_id"], row["metric"]), 0))
        n = int(assessed.get((row["claim_id"], row["metric"]), 0))
        main.at[i, "n_seeds"] = k
        if row["verdict"] == CANNOT:
            continue
        main.at[i, "our_value"] = f"{row['our_value']}; holds in {j} of {k} seeds"
        if row["verdict"] == SUPPORTED and j < k:
            main.at[i, "verdict"] = NOT_SUPPORTED
            main.at[i, "reason"] = (f"holds in {j} of {k} seeds ({n} assessed): a property of the trained weights, "
                                    "not of the architectures")
    return main


def agreement_at_resolution(tables: Mapping[str, pd.DataFrame], top: Mapping[str, Sequence[str]], *,
                            metric: str, alpha: float = 0.05, stratum: str = "Q1") -> pd.DataFrame:
    """Per dataset and top-model pair: the strict orders of Dice and ``metric`` (means) and, at the data's
    resolution, whether each difference is resolved (sign kept in >= 95 % of resamples and Holm p <= alpha in
    the bootstrap table); ``status`` is ``agree`` / ``disagree`` (both resolved), ``tied`` otherwise;
    ``strict`` is ``agree`` / ``disagree`` from the observed means alone."""
    rows = []
    for dataset, table in tables.items():
        for a, b in itertools.combinations(list(top[dataset]), 2):
            rd, rm = _pair_row(table, stratum, "dice", a, b), _pair_row(table, stratum, metric, a, b)
            if rd is None or rm is None:
                rows.append({"dataset": dataset, "model_a": a, "model_b": b, "strict": "n/a", "status": "n/a",
                             "n_cases": 0})
                continue
            fav_d, fav_m = rd["better"], rm["better"]
            strict = "agree" if fav_d == fav_m else "disagree"
            resolved = _resolved(rd, rd["p_holm"], alpha) and _resolved(rm, rm["p_holm"], alpha)
            rows.append({"dataset": dataset, "model_a": a, "model_b": b, "dice_better": fav_d,
                         "metric_better": fav_m, "strict": strict, "status": strict if resolved else "tied",
                         "dice_resolved": _resolved(rd, rd["p_holm"], alpha),
                         "metric_resolved": _resolved(rm, rm["p_holm"], alpha),
                         "n_cases": int(min(rd["n_cases"], rm["n_cases"]))})
    return pd.DataFrame(rows).assign(metric=metric)


def cross_dataset_claims(tables: Mapping[str, pd.DataFrame], top: Mapping[str, Sequence[str]], *,
                         data_source: str, met: Mapping[str, bool], n_seeds: int = 1,
                         settings: Settings = Settings(), paper_agreement: Mapping[str, tuple[int, int]]
                         ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The cross-dataset claims: the agreement counts against the paper's (strict and at the data's resolution)
    and the largest Q1 difference between top models per boundary metric, over the datasets whose precondition
    is met (``met``). Returns the claims rows (Holm over this family) and the agreement table."""
    s = settings
    used = {d: t for d, t in tables.items() if met.get(d, False)}
    left_out = sorted(d for d in tables if not met.get(d, False))
    note = f"left out (precondition not met): {', '.join(left_out)}" if left_out else ""
    common = {"dataset": "all", "data_source": data_source, "n_seeds": n_seeds, "min_cases": s.min_cases}
    rows, pending, agreements = [], [], []
    for metric in s.metrics:
        if not used:
            for key in ("agreement_counts", "q1_max_difference"):
                rows.append(claim_row(key, metric=metric, our_value="", verdict=CANNOT, n_cases=0,
                                      reason="no dataset meets the precondition", **common))
            continue
        ag = agreement_at_resolution(used, top, metric=metric, alpha=s.alpha)
        agreements.append(ag)
        n = len(ag)
        strict_agree = int((ag["strict"] == "agree").sum())
        counts = ag["status"].value_counts()
        agree, disagree, tied = (int(counts.get(k, 0)) for k in ("agree", "disagree", "tied"))
        paper = paper_agreement.get(metric)
        value = (f"strict: {strict_agree}/{n} agree; at the data's resolution: {agree} agree, {disagree} disagree, "
                 f"{tied} tied")
        n_cases = int(ag["n_cases"].sum())
        reason = note
        if agree + disagree == 0:
            verdict, reason = CANNOT, "; ".join(x for x in (
                f"no top-model pair is resolved under both Dice and {metric}: the orders are ties at the data's "
                "resolution", note) if x)
        else:
            verdict = SUPPORTED if disagree > 0 else NOT_SUPPORTED
        rows.append(claim_row("agreement_counts", metric=metric, our_value=value, verdict=verdict, n_cases=n_cases,
                              reason=reason, paper_value=f"{paper[0]}/{paper[1]} agree" if paper else None,
                              min_cases=0 if verdict == CANNOT else 1, **{k: v for k, v in common.items()
                                                                         if k != "min_cases"}))
        # the largest Q1 difference among the top models
        best = None
        for dataset, table in used.items():
            q1 = table[(table["stratum"] == "Q1") & (table["metric"] == metric)
                       & table["model_a"].isin(top[dataset]) & table["model_b"].isin(top[dataset])]
            for r in q1.itertuples():
                lo = min(abs(r.mean_a), abs(r.mean_b))
                size = abs(r.difference) / lo * 100 if _RELATIVE.get(metric) and lo > 0 else abs(r.difference)
                if best is None or size > best[0]:
                    best = (size, dataset, r)
        if best is None:
            rows.append(claim_row("q1_max_difference", metric=metric, our_value="", verdict=CANNOT, n_cases=0,
                                  reason=f"no Q1 {metric} comparison among the top models", **common))
            continue
        size, dataset, r = best
        unit = " %" if _RELATIVE.get(metric) else ""
        value = (f"{size:.1f}{unit} ({dataset}: {r.model_a} vs {r.model_b}, 95 % CI of the difference "
                 f"{_fmt(r.ci_low)} to {_fmt(r.ci_high)})" if unit else
                 f"{size:.3f} ({dataset}: {r.model_a} vs {r.model_b}, 95 % CI {_fmt(r.ci_low)} to {_fmt(r.ci_high)})")
        if r.n_cases < s.min_cases or not np.isfinite(r.p_value):
            rows.append(claim_row("q1_max_difference", metric=metric, our_value=value, verdict=CANNOT,
                                  n_cases=int(r.n_cases), reason=f"{int(r.n_cases)} cases < {s.min_cases}", **common))
        else:
            pending.append({"key": "q1_max_difference", "metric": metric, "p_raw": float(r.p_value),
                            "our_value": value, "n_cases": int(r.n_cases),
                            "n_lesions": int(min(r.n_units_a, r.n_units_b)),
                            "decide": lambda p, rr=r: SUPPORTED if _resolved(pd.Series(rr._asdict()), p, s.alpha)
                            else NOT_SUPPORTED,
                            "reason_if_not": "the largest difference is within its bootstrap's reach"})
    claims = _finish(rows, pending, common, s)
    return claims, (pd.concat(agreements, ignore_index=True) if agreements else pd.DataFrame())


def architecture_intervals(units_by_seed: Mapping[int, pd.DataFrame], models: Sequence[str], *,
                           comparisons: Sequence[tuple[str, str]] = (("overall", "dice"), ("Q1", "hd95"),
                                                                      ("Q1", "assd"), ("Q1", "contour_f1")),
                           n_resamples: int = 2000, seed: int = 0, confidence: float = 0.95) -> pd.DataFrame:
    """Architecture-level differences over training seeds: for each pair of ``models`` and each (stratum, metric),
    the per-case mean differences of every seed (``units_by_seed``: seed -> unit table of
    :func:`helpers.analysis.analysis_units`) as a seeds x cases matrix, their grand mean, its two-level bootstrap
    interval (:func:`helpers.stats.bootstrap.two_level_means`: seeds, then cases within them), each seed's own
    mean difference and in how many seeds its sign is the grand mean's (``same_sign_seeds`` of ``n_seeds``)."""
    rows = []
    seeds = sorted(units_by_seed)
    for a, b in itertools.combinations(list(models), 2):
        for stratum, metric in comparisons:
            per_seed = {}
            for k in seeds:
                d = _per_case_series(units_by_seed[k], stratum, metric, a, b)
                per_seed[k] = d
            cases = sorted(set().union(*(set(d.index) for d in per_seed.values())))
            if not cases:
                continue
            matrix = np.array([[per_seed[k].get(c, np.nan) for c in cases] for k in seeds], dtype=float)
            seed_means = np.array([np.nanmean(r) if np.isfinite(r).any() else np.nan for r in matrix])
            grand = float(np.nanmean(seed_means))
            boot = two_level_means(matrix, n_resamples, seed=seed)
            low, high = percentile_bounds(boot[np.isfinite(boot)], confidence=confidence)
            rows.append({"model_a": a, "model_b": b, "stratum": stratum, "metric": metric, "n_seeds": len(seeds),
                         "n_cases": len(cases), "difference": grand, "ci_low": low, "ci_high": high,
                         "seed_differences": " ".join(f"{x:.4g}" for x in seed_means),
                         "same_sign_seeds": int(np.sum(np.sign(seed_means) == np.sign(grand))),
                         "resolved": bool(low > 0 or high < 0)})
    return pd.DataFrame(rows)


def _per_case_series(units: pd.DataFrame, stratum: str, metric: str, a: str, b: str) -> pd.Series:
    u = units[(units["stratum"] == stratum) & (units["metric"] == metric) & units["model"].isin([a, b])]
    if "excluded" in u.columns:
        u = u[~u["excluded"].astype(bool)]
    means = u.groupby(["case_id", "model"])["value"].mean().unstack()
    if a not in means or b not in means:
        return pd.Series(dtype=float)
    return (means[a] - means[b]).dropna()
