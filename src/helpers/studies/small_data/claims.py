"""The second study's claims, computed from the small-data chapter's statistics, each ending in one of the three
verdicts of :mod:`helpers.analysis.claims`.

Rules (the unit is the image; the primary protocol is leave-one-out, the paper's)
---------------------------------------------------------------------------------
* ``no_model_better_friedman``: supported when the Friedman test (read through its Iman-Davenport F) does not
  reject equal mean ranks at ``alpha`` under *every* protocol; not supported when it rejects under one. A
  non-rejection is not evidence of equivalence: the next claim tests that.
* ``no_model_better_equivalence``: every pair of models is compared with the paired sign-flip TOST over the
  images (:func:`helpers.stats.inference.signflip_equivalence`) at each of ``margins`` (0.01, 0.02, 0.05 macro
  Dice); supported when every pair is equivalent at the largest margin, not supported otherwise; the smallest
  margin at which every pair is equivalent is stated. An exact sign-flip TOST cannot reach p <= 0.05 with fewer
  than 5 images (smallest p 1/2^n), so below :data:`MIN_IMAGES` the claim cannot be assessed.
* ``rankings_disagree``: supported when the protocols' orders by mean differ (Kendall's tau-b < 1 or another
  leader), not supported when they are identical; both orders rest on the same images.
* ``intervals_overlap``: supported when, under the primary protocol, every model's 95 % interval overlaps the
  leader's, not supported otherwise.
Holm over the family of the claims with a p-value (:func:`helpers.analysis.claims.holm_within_study`); the
Friedman and equivalence verdicts read the Holm-adjusted p.

Imports :mod:`helpers.analysis.claims`, :mod:`helpers.stats.inference`; never matplotlib.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd

from helpers.analysis.claims import CANNOT, NOT_SUPPORTED, SUPPORTED, claim_row, claims_frame, holm_within_study
from helpers.stats.inference import holm_adjust, signflip_equivalence, tost_paired

__all__ = ["MIN_IMAGES", "MARGINS", "equivalence_pairs", "small_data_claims"]

#: Fewest images at which an exact sign-flip TOST can reach p <= 0.05 (1 / 2^5 = 0.031).
MIN_IMAGES = 5
#: The equivalence margins of macro Dice (the verdict reads the largest).
MARGINS = (0.01, 0.02, 0.05)


def equivalence_pairs(per_image: pd.DataFrame, *, margins: Sequence[float] = MARGINS, alpha: float = 0.05,
                      seed: int = 0) -> pd.DataFrame:
    """Every model pair of one protocol's per-image scores (``model, image, value``) at every margin: ``model_a,
    model_b, margin, n, mean_difference, p_signflip, equivalent, p_t, equivalent_t, smallest_margin`` (the
    paired-t smallest margin, max(|ci|) of the 90 % interval)."""
    wide = per_image.pivot_table(index="image", columns="model", values="value", aggfunc="mean").dropna()
    rows = []
    for a, b in itertools.combinations(list(wide.columns), 2):
        x, y = wide[a].to_numpy(float), wide[b].to_numpy(float)
        for margin in margins:
            sf = signflip_equivalence(x, y, margin=margin, alpha=alpha, seed=seed)
            t = tost_paired(x, y, margin=margin, alpha=alpha)
            rows.append({"model_a": a, "model_b": b, "margin": float(margin), "n": len(x),
                         "mean_difference": sf.mean_difference, "p_signflip": sf.p_value,
                         "equivalent": bool(sf.equivalent), "p_t": t.p_value, "equivalent_t": bool(t.equivalent),
                         "smallest_margin": max(abs(t.ci_low), abs(t.ci_high)) if np.isfinite(t.ci_low) else np.nan})
    return pd.DataFrame(rows)


def small_data_claims(per_image: pd.DataFrame, summary: pd.DataFrame, friedman: pd.DataFrame,
                      agreement: pd.DataFrame, *, data_source: str, primary: str = "loocv", alpha: float = 0.05,
                      margins: Sequence[float] = MARGINS, seed: int = 0, n_seeds: int = 1
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The second study's claims (module docstring) from the chapter's tables: ``per_image`` (``protocol, model,
    image, value``: :func:`helpers.studies.small_data.report.image_scores`), ``summary``, ``friedman`` and
    ``agreement`` (the fields of :class:`helpers.studies.small_data.report.SmallDataStatistics`). Returns the rows
    and the equivalence table of the primary protocol."""
    common = {"dataset": "small_data", "data_source": data_source, "n_seeds": n_seeds}
    rows, pending = [], []
    models = sorted(per_image["model"].unique())
    n_images = int(per_image["image"].nunique())
    if len(models) < 2:
        reason = f"only {len(models)} model ran: nothing to compare"
        for key in ("no_model_better_friedman", "no_model_better_equivalence", "rankings_disagree",
                    "intervals_overlap"):
            rows.append(claim_row(key, our_value="", verdict=CANNOT, n_cases=n_images, reason=reason, **common))
        return holm_within_study(claims_frame(rows)), pd.DataFrame()
    # Friedman under every protocol
    if friedman.empty:
        rows.append(claim_row("no_model_better_friedman", our_value="", verdict=CANNOT, n_cases=n_images,
                              reason="the Friedman test did not run", **common))
    else:
        value = "; ".join(f"{r.protocol}: Iman-Davenport p = {r.iman_davenport_p:.3f} (N = {r.n}, k = {r.k})"
                          for r in friedman.itertuples())
        pending.append({"key": "no_model_better_friedman", "p_raw": float(friedman["iman_davenport_p"].min()),
                        "our_value": value, "n_cases": int(friedman["n"].min()),
                        "decide": lambda p: NOT_SUPPORTED if p <= alpha else SUPPORTED,
                        "reason": "a non-rejection is not evidence of equivalence (see the equivalence claim)"})
    # equivalence over images, primary protocol
    primary_images = per_image[per_image["protocol"] == primary]
    eq = equivalence_pairs(primary_images, margins=margins, alpha=alpha, seed=seed)
    n_primary = int(primary_images["image"].nunique())
    if n_primary < MIN_IMAGES:
        rows.append(claim_row("no_model_better_equivalence", our_value="", verdict=CANNOT, n_cases=n_primary,
                              reason=f"{n_primary} images < {MIN_IMAGES}: an exact sign-flip TOST cannot reach "
                                     f"p <= {alpha:g}", **common))
    else:
        largest = max(margins)
        at = eq[eq["margin"] == largest]
        held = {m: int(eq[eq["margin"] == m]["equivalent"].sum()) for m in margins}
        smallest = float(eq["smallest_margin"].max())
        value = (f"{primary}: smallest margin at which every pair is equivalent (t) ±{smallest:.3f}; equivalent "
                 "pairs (sign-flip): " + ", ".join(f"{held[m]}/{len(at)} at ±{m:g}" for m in margins))
        pending.append({"key": "no_model_better_equivalence", "p_raw": float(at["p_signflip"].max()),
                        "our_value": value, "n_cases": n_primary,
                        "decide": lambda p: SUPPORTED if p <= alpha else NOT_SUPPORTED,
                        "reason": f"sign-flip TOST at ±{largest:g} macro Dice, every pair"})
    # the protocols' orders
    if agreement.empty:
        rows.append(claim_row("rankings_disagree", our_value="", verdict=CANNOT, n_cases=n_images,
                              reason="fewer than two protocols ran", **common))
    else:
        r = agreement.iloc[0]
        differ = bool(r["kendall_tau"] < 1 - 1e-12 or not r["same_leader"])
        rows.append(claim_row("rankings_disagree", our_value=(
            f"Kendall tau-b {r['kendall_tau']:.3f} over {int(r['n_models'])} models; leaders by mean: "
            f"{r['protocol_a']} {r['leader_a']}, {r['protocol_b']} {r['leader_b']}"),
            verdict=SUPPORTED if differ else NOT_SUPPORTED, n_cases=n_images, **common))
    # interval overlap under the primary protocol
    part = summary[summary["protocol"] == primary].sort_values("mean", ascending=False)
    if len(part) < 2:
        rows.append(claim_row("intervals_overlap", our_value="", verdict=CANNOT, n_cases=n_images,
                              reason=f"fewer than two models under {primary}", **common))
    else:
        lead = part.iloc[0]
        apart = [m for m, lo, hi in zip(part["model"].iloc[1:], part["ci_low"].iloc[1:], part["ci_high"].iloc[1:])
                 if hi < lead["ci_low"] or lo > lead["ci_high"]]
        rows.append(claim_row("intervals_overlap", our_value=(
            f"{primary}: leader {lead['model']} {lead['mean']:.3f} [{lead['ci_low']:.3f}, {lead['ci_high']:.3f}]; "
            + (f"not overlapping it: {', '.join(apart)}" if apart else "every other interval overlaps it")),
            verdict=NOT_SUPPORTED if apart else SUPPORTED, n_cases=n_primary, **common))
    if pending:
        for p, p_holm in zip(pending, holm_adjust([p["p_raw"] for p in pending])):
            rows.append(claim_row(p["key"], our_value=p["our_value"], verdict=p["decide"](float(p_holm)),
                                  n_cases=p["n_cases"],
                                  p_raw=p["p_raw"], reason=p["reason"], **common))
    order = {"no_model_better_friedman": 0, "no_model_better_equivalence": 1, "rankings_disagree": 2,
             "intervals_overlap": 3}
    table = holm_within_study(claims_frame(rows))
    table = table.iloc[table["claim_id"].map(order).argsort(kind="mergesort")].reset_index(drop=True)
    return table, eq
