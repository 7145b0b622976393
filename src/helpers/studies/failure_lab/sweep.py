"""The failure-mode lab's sweep: metrics of single synthetic lesions against size x failure mode x severity.

The mechanism under test (paper, section 5): a contour displaced by ``d`` voxels is a large fraction of a small
lesion's radius but touches few voxels, so Dice (an area ratio) barely moves while boundary distances grow by
the full ``d``. Here every ingredient is controlled: lesion shape and size, the failure mode (a
:mod:`helpers.evaluation.perturb` operator) and its severity.

Conventions
-----------
- Axis order, spacing and units as in :mod:`helpers.studies.failure_lab.lesions` (mm; voxels at unit spacing).
- Metrics are computed by the study's engine (:func:`helpers.metrics.evaluate_case`) with their documented
  definitions and empty-mask policy: a lesion that a failure mode deletes gets Dice 0 and the penalty distance,
  which is reported in the ``penalty`` column and never dropped. In the sweep every lesion sits on the same
  canvas, so the penalty (the canvas diagonal) is one fixed, stated number.
- Metric names, directions and labels are the registry's (:data:`helpers.metrics.METRICS`); the sweep records
  the metrics it tags ``"sweep"`` (``dice``, ``hd``, ``hd95`` (maximum of the two directed 95th percentiles),
  ``hd95_pooled`` (95th percentile of both directed sets pooled), ``assd``, ``nsd`` and ``contour_f1``, both at
  ``tolerance`` mm).
- Randomness only through explicit seeds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from helpers.evaluation import perturb
from helpers.base.checks import as_int, as_positive, as_spacing
from helpers.metrics import METRICS, evaluate_case, metric_names
from helpers.base.progress import progress_bar
from helpers.studies.failure_lab.lesions import as_mode_name, as_ndim, canvas_shape, draw_lesion, seed_for

__all__ = ["SHAPES", "sweep", "sweep_summary", "dice_ties"]

#: Shapes of the synthetic lesions of the sweep.
SHAPES: tuple[str, ...] = ("disk", "irregular")


# ---------------------------------------------------------------------------------------------- validation
def _as_list(values, name: str, check) -> list:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a sequence, got {values!r}")
    values = [check(v) for v in values]
    if not values:
        raise ValueError(f"{name} must not be empty")
    return values


# --------------------------------------------------------------------------------------------------- sweep
def _case_metric_values(ref, pred, *, spacing, tolerance, penalty) -> tuple[dict[str, float], bool]:
    m = evaluate_case(ref, pred, spacing=spacing, tolerance=tolerance, penalty=penalty)
    return m.metric_values(), bool(m.penalty_used)


def sweep(
    radii_mm: Sequence[float],
    modes: Sequence[str],
    severities_mm: Sequence[float],
    *,
    shapes: Sequence[str] = SHAPES,
    ndim: int = 2,
    spacing=None,
    n_repeats: int = 2,
    irregularity: float = 0.2,
    n_protrusions: int = 2,
    tolerance: float = 1.0,
    seed: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """Metrics of single synthetic lesions against size x failure mode x severity, as a tidy table.

    Each (shape, radius, repeat) lesion is drawn once on one canvas shared by the whole sweep (sized for the
    largest radius plus a margin covering the largest severity's reach), centred with a random sub-voxel
    offset so that digitisation varies between repeats; every (mode, severity) perturbs the same lesion
    (:func:`helpers.evaluation.perturb.perturb_lesions`, lesion seed fixed per repeat) and is evaluated with
    :func:`helpers.metrics.evaluate_case`.

    Parameters
    ----------
    radii_mm : sequence of float
        Base lesion radii (mm), from a few voxels to large.
    modes : sequence of str
        Keys of :data:`helpers.evaluation.perturb.FAILURE_MODES`.
    severities_mm : sequence of float
        Severities (mm) applied to every mode.
    shapes : sequence of {"disk", "irregular"}
        ``"disk"``: digital disks/spheres (the analytic case); ``"irregular"``: lobed lesions with
        ``n_protrusions`` thin spikes (:func:`draw_lesion`, ``irregularity``).
    ndim : {2, 3}
    spacing : sequence of float, optional
    n_repeats : int
        Lesions per (shape, radius).
    tolerance : float
        NSD and contour-F1 tolerance (mm).
    seed : int
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    pandas.DataFrame
        Long table: ``lesion_shape, radius_mm, repeat, mode, severity_mm, n_voxels, area_fraction, metric, value,
        penalty`` (``penalty`` True when the value is the empty-prediction penalty, i.e. the mode deleted the
        lesion; ``area_fraction`` = lesion voxels / canvas voxels), plus one ``mode == "none"`` row set per
        lesion with severity 0 (the unperturbed reference, a check: Dice 1, distances 0).
    """
    ndim = as_ndim(ndim)
    spacing_t = as_spacing(spacing, ndim)
    radii = _as_list(radii_mm, "radii_mm", lambda v: as_positive(v, "radii_mm"))
    modes = _as_list(modes, "modes", as_mode_name)
    severities = _as_list(severities_mm, "severities_mm", lambda v: as_positive(v, "severities_mm", allow_zero=True))
    shapes = _as_list(shapes, "shapes", lambda v: v if v in SHAPES else _bad_shape(v))
    n_repeats = as_int(n_repeats, "n_repeats", 1)
    seed = as_int(seed, "seed", 0)
    reach = max(perturb.FAILURE_MODES[m].reach_mm(max(severities), {}) for m in modes)
    extent = max(radii) * (1 + irregularity) * (1 + 0.8)  # lobes and protrusions of draw_lesion
    shape = canvas_shape(extent, reach + 2 * max(spacing_t) + 2.0, ndim=ndim, spacing=spacing_t)
    centre = np.array([(n // 2) * s for n, s in zip(shape, spacing_t)])
    penalty = float(math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing_t))))
    rows = []
    jobs = [(sh, r, k) for sh in shapes for r in radii for k in range(n_repeats)]
    # no explicit disable=False when progress is wanted, so that TQDM_DISABLE=1 (executed notebooks) still applies
    for shape_kind, radius, repeat in progress_bar(jobs, progress=progress, desc="sweep"):
        rng = np.random.default_rng([seed, SHAPES.index(shape_kind), int(round(radius * 1000)), repeat])
        jitter = rng.uniform(-0.5, 0.5, ndim) * np.asarray(spacing_t)
        irregular = shape_kind == "irregular"
        ref = draw_lesion(
            shape, centre + jitter, radius, spacing=spacing_t, irregularity=irregularity if irregular else 0.0,
            n_protrusions=n_protrusions if irregular else 0, rng=rng,
        )
        n_voxels = int(ref.sum())
        base = {"lesion_shape": shape_kind, "radius_mm": radius, "repeat": repeat, "n_voxels": n_voxels,
                "area_fraction": n_voxels / ref.size}
        lesion_seed = seed_for(seed, repeat, int(round(radius * 1000)))
        settings = [("none", 0.0)] + [(m, s) for m in modes for s in severities]
        for mode, severity in settings:
            pred = ref if mode == "none" else perturb.perturb_lesions(
                ref, mode, severity, spacing=spacing_t, seed=lesion_seed
            )
            values, penalised = _case_metric_values(ref, pred, spacing=spacing_t, tolerance=tolerance,
                                                    penalty=penalty)
            for name in metric_names(table="sweep"):
                rows.append({**base, "mode": mode, "severity_mm": severity, "metric": name,
                             "value": values[name], "penalty": penalised and METRICS[name].penalised})
    return pd.DataFrame(rows)


def _bad_shape(value):
    raise ValueError(f"shapes must be among {SHAPES}, got {value!r}")


def sweep_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean over repeats per (lesion_shape, mode, severity, radius, metric), with ``n`` and ``n_penalty``."""
    keys = ["lesion_shape", "mode", "severity_mm", "radius_mm", "metric"]
    missing = [c for c in [*keys, "value", "penalty"] if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks columns {missing}; has {list(table.columns)}")
    return (
        table.groupby(keys, sort=True)
        .agg(value=("value", "mean"), n=("value", "size"), n_penalty=("penalty", "sum"))
        .reset_index()
    )


def dice_ties(
    table: pd.DataFrame, *, metric: str = "hd95", dice_window: float = 0.01, dice_range: tuple = (0.0, 1.0)
) -> pd.DataFrame:
    """Pairs of failure modes that Dice calls a tie but ``metric`` separates, per shape, radius and severity.

    For each (shape, radius, severity) the summarised Dice of every pair of modes is compared; pairs whose Dice
    differ by at most ``dice_window`` and both lie in ``dice_range`` (inclusive; e.g. ``(0.5, 0.99)`` to leave out
    deleted lesions and untouched ones) are listed with their ``metric`` values and the ratio worse/better
    (``inf`` when the better is 0). Sorted by ratio, largest first.
    """
    window = as_positive(dice_window, "dice_window", allow_zero=True)
    low, high = (float(v) for v in dice_range)
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"dice_range must be (low, high) with 0 <= low <= high <= 1, got {dice_range!r}")
    summary = sweep_summary(table)
    summary = summary[summary["mode"] != "none"]
    wide = summary.pivot_table(index=["lesion_shape", "radius_mm", "severity_mm", "mode"], columns="metric",
                               values="value").reset_index()
    if metric not in wide.columns:
        raise ValueError(f"metric {metric!r} is not in the sweep; has {sorted(summary['metric'].unique())}")
    rows = []
    for key, sub in wide.groupby(["lesion_shape", "radius_mm", "severity_mm"], sort=True):
        sub = sub.reset_index(drop=True)
        for i in range(len(sub)):
            for j in range(i + 1, len(sub)):
                a, b = sub.loc[i], sub.loc[j]
                if abs(a["dice"] - b["dice"]) > window or not all(low <= d <= high for d in (a["dice"], b["dice"])):
                    continue
                lo, hi = sorted([a[metric], b[metric]])
                rows.append({"lesion_shape": key[0], "radius_mm": key[1], "severity_mm": key[2], "mode_a": a["mode"],
                             "mode_b": b["mode"], "dice_a": a["dice"], "dice_b": b["dice"],
                             f"{metric}_a": a[metric], f"{metric}_b": b[metric],
                             "ratio": hi / lo if lo > 0 else (np.inf if hi > 0 else 1.0)})
    out = pd.DataFrame(rows)
    return out.sort_values("ratio", ascending=False).reset_index(drop=True) if len(out) else out
