"""The failure-mode laboratory: synthetic lesions, synthetic "models" made of failure modes, their calibration to a
common Dice, the size x mode x severity sweep, and the planted ranking reversal found by the study's own code.

The mechanism under test (paper, section 5): a contour displaced by ``d`` voxels is a large fraction of a small
lesion's radius but touches few voxels, so Dice (an area ratio) barely moves while boundary distances grow by
the full ``d``. Here every ingredient is controlled: lesion shape and size, the failure mode (a
:mod:`helpers.evaluation.perturb` operator) and its severity.

Conventions
-----------
- Axis order ``(z, y, x)`` / ``(y, x)``; ``spacing`` in mm per axis (``None`` = 1); radii, severities and
  distances in mm (voxels at unit spacing).
- Metrics are computed by the study's engine (:func:`helpers.metrics.evaluate_case`,
  :func:`helpers.metrics.lesions.evaluate_lesions`) with their documented definitions and empty-mask policy: a lesion
  that a failure mode deletes gets Dice 0 and the penalty distance, which is reported in the ``penalty``
  column and never dropped. In the sweep every lesion sits on the same canvas, so the penalty (the canvas
  diagonal) is one fixed, stated number.
- Metric names, directions and labels are the registry's (:data:`helpers.metrics.METRICS`); the sweep records
  the metrics it tags ``"sweep"`` (``dice``, ``hd``, ``hd95`` (maximum of the two directed 95th percentiles),
  ``hd95_pooled`` (95th percentile of both directed sets pooled), ``assd``, ``nsd`` and ``contour_f1``, both at
  ``tolerance`` mm).
- "Full-set Dice" of a model is the mean over test cases of the per-case Dice, the paper's full-test-set
  number (:func:`full_set_dice`).
- Randomness only through explicit seeds; case ``k`` of a test set is perturbed with seed
  ``SeedSequence([seed, k])`` so that a model's random choices (directions, cuts, blob sites) do not change
  while its severity is calibrated.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy import ndimage

from helpers import analysis
from helpers.stats import bootstrap
from helpers.evaluation import perturb
from helpers.base.checks import as_int, as_positive, as_spacing
from helpers.evaluation import evaluate_case_tables, lesion_rows, reference_quartile_edges
from helpers.metrics.lesions import assign_quartiles
from helpers.metrics import METRICS, dice, evaluate_case, label, metric_names, plot_boundaries
from helpers.base.plots import colormap, get_axes, model_color, subplots
from helpers.base.progress import progress_bar

__all__ = [
    "SHAPES", "draw_lesion", "canvas_shape", "analytic_expectation", "sweep", "sweep_summary", "dice_ties",
    "SyntheticCase", "make_test_set", "SyntheticModel", "full_set_dice", "calibrate", "calibrate_models",
    "evaluate_models", "use_hd95_variant", "DEMO_MODELS", "reversal_demo", "plot_metric_vs_size", "plot_sweep_grid",
    "plot_dice_vs_boundary", "plot_mode_gallery", "plot_demo",
]

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


def _as_ndim(ndim) -> int:
    if ndim not in (2, 3) or isinstance(ndim, bool):
        raise ValueError(f"ndim must be 2 or 3, got {ndim!r}")
    return int(ndim)


def _as_mode_name(mode) -> str:
    if not isinstance(mode, str) or mode not in perturb.FAILURE_MODES:
        raise ValueError(f"mode must be one of {sorted(perturb.FAILURE_MODES)}, got {mode!r}")
    return mode


def _seed_for(seed: int, *keys: int) -> int:
    return int(np.random.SeedSequence([int(seed), *map(int, keys)]).generate_state(1)[0])


# ------------------------------------------------------------------------------------------- synthetic lesions
def _radius_field(units: np.ndarray, rng: np.random.Generator, irregularity: float, n_harmonics: int) -> np.ndarray:
    """Relative radius ``1 + irregularity * g(u)`` of a star-shaped lesion, ``g`` in [-1, 1].

    ``g(u)`` is the mean of ``n_harmonics`` Chebyshev polynomials ``T_k(u . v_j)`` (orders 2..4, random axes
    ``v_j`` and signs): smooth lobes and dents on the unit circle or sphere, the same recipe in 2D and 3D."""
    if irregularity == 0 or n_harmonics == 0:
        return np.ones(units.shape[0])
    g = np.zeros(units.shape[0])
    for _ in range(n_harmonics):
        axis = perturb.random_direction(units.shape[1], rng)
        k = int(rng.integers(2, 5))
        cos = np.clip(units @ axis, -1.0, 1.0)
        g += rng.choice([-1.0, 1.0]) * np.cos(k * np.arccos(cos))
    return 1.0 + irregularity * g / n_harmonics


def draw_lesion(
    shape: tuple[int, ...],
    centre_mm,
    radius_mm: float,
    *,
    spacing=None,
    irregularity: float = 0.0,
    n_protrusions: int = 0,
    protrusion_length: float = 0.8,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """A synthetic lesion on a canvas: a disk/sphere, optionally irregular and with thin protrusions.

    Parameters
    ----------
    shape : tuple of int
        Canvas shape (2D or 3D).
    centre_mm : sequence of float
        Lesion centre in mm (numpy axis order; voxel ``i`` has its centre at ``i * spacing``).
    radius_mm : float
        Base radius in mm. With ``irregularity = 0`` and no protrusions the lesion is the digital disk/sphere
        ``{x : |x - centre| <= radius_mm}`` (voxel centres, physical distance).
    irregularity : float
        Relative amplitude in [0, 1) of smooth radial lobes (see :func:`_radius_field`): the boundary lies at
        ``radius_mm * (1 + irregularity * g(u))`` in direction ``u``.
    n_protrusions : int
        Thin spikes: segments from the centre outwards to ``protrusion_length * radius_mm`` beyond the
        boundary, in random directions, rasterised as the voxels within half the smallest spacing of the
        segment (one voxel wide). Bits of a spike not connected to the body (full connectivity) are dropped:
        the result is always one connected lesion (the largest component).
    rng : numpy.random.Generator, optional
        Needed when ``irregularity > 0`` or ``n_protrusions > 0``.

    Returns
    -------
    numpy.ndarray of bool
        The lesion mask (clipped to the canvas).
    """
    ndim = _as_ndim(len(shape))
    spacing = np.asarray(as_spacing(spacing, ndim))
    centre = np.asarray(centre_mm, dtype=float)
    if centre.shape != (ndim,):
        raise ValueError(f"centre_mm must have one value per axis ({ndim}), got {centre_mm!r}")
    radius = as_positive(radius_mm, "radius_mm")
    irregularity = as_positive(irregularity, "irregularity", allow_zero=True)
    if irregularity >= 1:
        raise ValueError(f"irregularity must be in [0, 1), got {irregularity!r}")
    n_protrusions = as_int(n_protrusions, "n_protrusions", 0)
    if (irregularity > 0 or n_protrusions > 0) and not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator for an irregular lesion, got {rng!r}")
    grids = np.meshgrid(*[np.arange(n) * s - c for n, s, c in zip(shape, spacing, centre)], indexing="ij")
    offsets = np.stack([g.ravel() for g in grids], axis=1)
    distance = np.linalg.norm(offsets, axis=1)
    if irregularity > 0:
        units = offsets / np.maximum(distance, 1e-12)[:, None]
        mask = distance <= radius * _radius_field(units, rng, irregularity, 3) + 1e-9
    else:
        mask = distance <= radius + 1e-9
    half_width = 0.5 * float(spacing.min()) + 1e-9
    for _ in range(n_protrusions):
        u = perturb.random_direction(ndim, rng)
        length = radius * (1 + irregularity) + protrusion_length * radius
        t = np.clip(offsets @ u, 0.0, length)
        mask |= np.linalg.norm(offsets - t[:, None] * u, axis=1) <= half_width
    mask = mask.reshape(shape)
    labels, n = ndimage.label(mask, structure=np.ones((3,) * ndim, dtype=bool))
    if n > 1:  # a rasterised spike can break into bits: keep the largest component, so a lesion is one lesion
        mask = labels == (1 + int(np.argmax(np.bincount(labels.ravel())[1:])))
    return mask


def canvas_shape(max_radius_mm: float, margin_mm: float, *, ndim: int = 2, spacing=None) -> tuple[int, ...]:
    """The smallest odd canvas holding a lesion of ``max_radius_mm`` with ``margin_mm`` on every side."""
    ndim = _as_ndim(ndim)
    spacing = as_spacing(spacing, ndim)
    half = as_positive(max_radius_mm, "max_radius_mm") + as_positive(margin_mm, "margin_mm", allow_zero=True)
    return tuple(2 * int(math.ceil(half / s)) + 1 for s in spacing)


# ------------------------------------------------------------------------------------------------ analytic
def analytic_expectation(mode: str, radius_mm: float, severity_mm: float, *, ndim: int = 2) -> dict[str, float]:
    """Continuum expectations for a disk (2D) or ball (3D) of radius ``r`` under a failure mode of severity ``s``.

    Returns the metrics for which a closed form exists (an empty dict otherwise):

    ``offset`` (translation by ``d``, ``d <= 2r``)
        HD = d. Dice = overlap / area: 2D lens ``(2/pi)(acos(u) - u sqrt(1 - u^2))``, ``u = d/(2r)``;
        3D lens ``(4r + d)(2r - d)^2 / (16 r^3)``. ``dice_small`` is the first-order form, ``1 - 2d/(pi r)``
        in 2D and ``1 - 3d/(4r)`` in 3D.
    ``dilate`` / ``erode`` (radius ``r +- s``)
        HD = ASSD = s (every boundary point moves by s); Dice ``2 min^n / (r^n + (r +- s)^n)`` with ``n = ndim``
        (erosion beyond ``r`` empties the lesion: Dice 0, no distance).
    ``one_side`` (2D, depth ``s``): the prediction is the lens ``A & (A - s u)``, HD = s and
        Dice ``2 L / (pi r^2 + L)`` with ``L`` the 2D lens area at distance ``s``.
    """
    mode = _as_mode_name(mode)
    ndim = _as_ndim(ndim)
    r = as_positive(radius_mm, "radius_mm")
    s = as_positive(severity_mm, "severity_mm", allow_zero=True)

    def lens_fraction(d: float) -> float:
        if d >= 2 * r:
            return 0.0
        if ndim == 2:
            u = d / (2 * r)
            return (2 / math.pi) * (math.acos(u) - u * math.sqrt(1 - u * u))
        return (4 * r + d) * (2 * r - d) ** 2 / (16 * r**3)

    if mode == "offset":
        small = 1 - 2 * s / (math.pi * r) if ndim == 2 else 1 - 3 * s / (4 * r)
        return {"dice": lens_fraction(s), "dice_small": small, "hd": s}
    if mode == "dilate":
        return {"dice": 2 * r**ndim / (r**ndim + (r + s) ** ndim), "hd": s, "assd": s}
    if mode == "erode":
        if s >= r:
            return {"dice": 0.0}
        return {"dice": 2 * (r - s) ** ndim / (r**ndim + (r - s) ** ndim), "hd": s, "assd": s}
    if mode == "one_side" and ndim == 2:
        kept = lens_fraction(s)
        return {"dice": 2 * kept / (1 + kept), "hd": s}
    return {}


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
    ndim = _as_ndim(ndim)
    spacing_t = as_spacing(spacing, ndim)
    radii = _as_list(radii_mm, "radii_mm", lambda v: as_positive(v, "radii_mm"))
    modes = _as_list(modes, "modes", _as_mode_name)
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
        lesion_seed = _seed_for(seed, repeat, int(round(radius * 1000)))
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


# ------------------------------------------------------------------------------------------- test set, models
@dataclass(frozen=True)
class SyntheticCase:
    """One synthetic test case: a reference mask of several lesions."""

    case_id: str
    mask: np.ndarray
    spacing: tuple[float, ...]


def make_test_set(
    n_cases: int,
    *,
    shape: tuple[int, ...] = (96, 96),
    spacing=None,
    lesions_per_case: tuple[int, int] = (3, 7),
    min_radius_mm: float = 1.5,
    max_radius_mm: float = 14.0,
    tail_index: float = 1.3,
    irregularity: float = 0.2,
    n_protrusions: int = 1,
    gap_mm: float = 6.0,
    seed: int = 0,
) -> list[SyntheticCase]:
    """A synthetic test set of many lesions with heavy-tailed sizes.

    Radii follow a Pareto law: ``r = min_radius_mm * U^(-1/tail_index)`` (``U`` uniform on (0, 1]) truncated at
    ``max_radius_mm`` (redrawn), so most lesions are a few voxels across and a few are large, as in WMH and
    IDRiD. Each case holds a uniform number of lesions in ``lesions_per_case`` (inclusive), irregular with
    ``n_protrusions`` spikes; a lesion is placed at a random position where every voxel lies farther than
    ``gap_mm`` from the lesions already placed and its box at least ``gap_mm`` from the image border (up to 200
    attempts, then the lesion is skipped; a lesion too large for the canvas is skipped; a case without any
    lesion raises ``ValueError``).
    """
    n_cases = as_int(n_cases, "n_cases", 1)
    ndim = _as_ndim(len(shape))
    spacing_t = as_spacing(spacing, ndim)
    low, high = (int(v) for v in lesions_per_case)
    if not 1 <= low <= high:
        raise ValueError(f"lesions_per_case must be (low, high) with 1 <= low <= high, got {lesions_per_case!r}")
    r_min = as_positive(min_radius_mm, "min_radius_mm")
    r_max = as_positive(max_radius_mm, "max_radius_mm")
    if r_max < r_min:
        raise ValueError(f"max_radius_mm must be >= min_radius_mm, got {r_max} < {r_min}")
    alpha = as_positive(tail_index, "tail_index")
    gap = as_positive(gap_mm, "gap_mm", allow_zero=True)
    rng = np.random.default_rng(as_int(seed, "seed", 0))
    border = [int(math.ceil(gap / s)) for s in spacing_t]
    cases = []
    for k in range(n_cases):
        mask = np.zeros(shape, dtype=bool)
        distance = np.full(shape, np.inf)  # distance (mm) to the lesions placed so far
        for _ in range(int(rng.integers(low, high + 1))):
            while True:
                r = r_min * (1.0 - rng.random()) ** (-1.0 / alpha)
                if r <= r_max:
                    break
            # the lesion is drawn once in its own box (lobes and spikes reach 1.8 (1 + irregularity) r), then moved
            local_shape = canvas_shape(r * (1 + irregularity) * 1.8, 0.0, ndim=ndim, spacing=spacing_t)
            centre = [(n // 2) * s for n, s in zip(local_shape, spacing_t)]
            lesion = draw_lesion(local_shape, centre, r, spacing=spacing_t, irregularity=irregularity,
                                 n_protrusions=n_protrusions, rng=rng)
            if _place(mask, distance, lesion, border=border, gap=gap, rng=rng):
                distance = ndimage.distance_transform_edt(~mask, sampling=spacing_t)
        if not mask.any():
            raise ValueError(f"case {k}: no lesion fits a canvas of shape {shape}; enlarge shape or shrink radii")
        cases.append(SyntheticCase(case_id=f"synth_{k:03d}", mask=mask, spacing=spacing_t))
    return cases


def _place(mask: np.ndarray, distance: np.ndarray, lesion: np.ndarray, *, border: list[int], gap: float,
           rng: np.random.Generator) -> bool:
    """Put ``lesion`` (a local box) into ``mask`` at a random corner where every lesion voxel is farther than
    ``gap`` mm (``distance``) from the lesions placed so far and the box keeps ``border`` voxels from the image
    border: up to 200 attempts. Returns whether it was placed (``mask`` is changed in place)."""
    highest = [n - ln - b for n, ln, b in zip(mask.shape, lesion.shape, border)]
    if any(h < b for h, b in zip(highest, border)):
        return False  # does not fit the canvas with its gap to the border
    for _attempt in range(200):
        corner = [int(rng.integers(b, h + 1)) for b, h in zip(border, highest)]
        box = tuple(slice(c, c + ln) for c, ln in zip(corner, lesion.shape))
        if np.all(distance[box][lesion] > gap):
            mask[box] |= lesion
            return True
    return False


@dataclass(frozen=True)
class SyntheticModel:
    """A synthetic "model": one failure mode applied to (a share of) the reference lesions.

    Attributes
    ----------
    name : str
    mode : str
        Key of :data:`helpers.evaluation.perturb.FAILURE_MODES`.
    severity_mm : float
        The mode's severity.
    fraction : float
        Share of lesions affected (see :func:`helpers.evaluation.perturb.perturb_lesions`).
    options : dict
        The mode's options.
    extra : tuple of dict
        Further failure modes applied, in order, to the result (each a dict with ``mode`` and optionally
        ``severity_mm``, ``fraction``, ``options``; the result of the previous step is relabelled into lesions
        first). They are not calibrated.
    tune : {"severity_mm", "fraction"}
        The parameter :func:`calibrate` sets. Severity suits modes whose Dice changes smoothly with it (an
        offset in random directions); modes whose digital effect jumps in whole voxels for every lesion at once
        (dilation, erosion, blob radius) are calibrated by the share of lesions they affect instead.
    """

    name: str
    mode: str
    severity_mm: float = 0.0
    fraction: float = 1.0
    options: dict = field(default_factory=dict)
    extra: tuple = ()
    tune: str = "severity_mm"

    def __post_init__(self):
        _as_mode_name(self.mode)
        if self.tune not in ("severity_mm", "fraction"):
            raise ValueError(f"tune must be 'severity_mm' or 'fraction', got {self.tune!r}")
        for step in self.extra:
            if not isinstance(step, Mapping) or "mode" not in step:
                raise ValueError(f"extra steps must be dicts with a 'mode', got {step!r}")
            unknown = sorted(set(step) - {"mode", "severity_mm", "fraction", "options"})
            if unknown:
                raise ValueError(f"extra step keys {unknown} unknown (mode, severity_mm, fraction, options)")
            _as_mode_name(step["mode"])

    def predict(self, case: SyntheticCase, *, index: int, seed: int = 0) -> np.ndarray:
        """The model's prediction for test case number ``index``.

        Step ``j`` (0 the main mode, then ``extra``) perturbs with seed ``SeedSequence([seed, index, j])``
        (step 0: ``[seed, index]``), so random choices depend only on the seed, the case and the step."""
        pred = perturb.perturb_lesions(
            case.mask, self.mode, self.severity_mm, spacing=case.spacing, seed=_seed_for(seed, index),
            fraction=self.fraction, options=self.options,
        )
        for j, step in enumerate(self.extra, start=1):
            pred = perturb.perturb_lesions(
                pred, step["mode"], step.get("severity_mm", 0.0), spacing=case.spacing,
                seed=_seed_for(seed, index, j), fraction=step.get("fraction", 1.0), options=step.get("options"),
            )
        return pred


def _as_cases(cases) -> list[SyntheticCase]:
    cases = list(cases)
    if not cases or not all(isinstance(c, SyntheticCase) for c in cases):
        raise TypeError("cases must be a non-empty sequence of SyntheticCase (see make_test_set)")
    return cases


def full_set_dice(model: SyntheticModel, cases: Sequence[SyntheticCase], *, seed: int = 0) -> float:
    """Mean over cases of the per-case Dice (:func:`helpers.metrics.dice`) of the model's predictions."""
    cases = _as_cases(cases)
    return float(np.mean([dice(c.mask, model.predict(c, index=k, seed=seed)) for k, c in enumerate(cases)]))


def calibrate(
    model: SyntheticModel,
    cases: Sequence[SyntheticCase],
    *,
    target_dice: float,
    tolerance: float = 0.004,
    max_severity_mm: float = 12.0,
    max_iterations: int = 30,
    seed: int = 0,
) -> tuple[SyntheticModel, float]:
    """Set the model's tuned parameter so that its full-set Dice is within ``tolerance`` of ``target_dice``.

    Bisection on ``model.tune``: the severity in ``[0, max_severity_mm]`` or the fraction in ``[0, 1]``, assuming
    Dice does not increase with it (true of every mode up to digitisation; the per-case seeds are fixed, so only
    the tuned parameter changes). Stops at the first value within tolerance; otherwise, after
    ``max_iterations`` halvings, returns the closest value seen if it is within tolerance.

    Returns
    -------
    (SyntheticModel, float)
        The calibrated model and the full-set Dice it reaches.

    Raises
    ------
    ValueError
        If the target lies outside the Dice range the parameter can reach, or no value reaches it within
        tolerance (a jump of the piecewise-constant Dice); the message names the model, the target and the
        closest Dice.
    """
    cases = _as_cases(cases)
    target = as_positive(target_dice, "target_dice")
    if target > 1:
        raise ValueError(f"target_dice must be in (0, 1], got {target_dice!r}")
    tol = as_positive(tolerance, "tolerance")
    name = model.tune
    lo, hi = 0.0, (as_positive(max_severity_mm, "max_severity_mm") if name == "severity_mm" else 1.0)

    def at(value: float) -> float:
        return full_set_dice(replace(model, **{name: value}), cases, seed=seed)

    d_lo, d_hi = at(lo), at(hi)
    for value, reached in ((lo, d_lo), (hi, d_hi)):
        if abs(reached - target) <= tol:
            return replace(model, **{name: value}), reached
    if not d_hi < target < d_lo:
        raise ValueError(
            f"model {model.name!r} ({model.mode}): target_dice {target:.3f} is outside the range "
            f"[{d_hi:.3f}, {d_lo:.3f}] reached for {name} {lo:g}..{hi:g}"
        )
    best = (abs(d_lo - target), lo, d_lo)
    for _ in range(as_int(max_iterations, "max_iterations", 1)):
        mid = 0.5 * (lo + hi)
        d_mid = at(mid)
        best = min(best, (abs(d_mid - target), mid, d_mid))
        if abs(d_mid - target) <= tol:
            return replace(model, **{name: mid}), d_mid
        lo, hi = (mid, hi) if d_mid > target else (lo, mid)
    if best[0] <= tol:
        return replace(model, **{name: best[1]}), best[2]
    raise ValueError(
        f"model {model.name!r} ({model.mode}): no {name} reaches target_dice {target:.3f} within {tol:g}; "
        f"closest {best[2]:.3f} at {name} {best[1]:.4f} (add cases or lesions to smooth the Dice curve)"
    )


def calibrate_models(
    models: Sequence[SyntheticModel],
    cases: Sequence[SyntheticCase],
    *,
    targets: Mapping[str, float] | float,
    tolerance: float = 0.004,
    max_severity_mm: float = 12.0,
    seed: int = 0,
) -> tuple[list[SyntheticModel], pd.DataFrame]:
    """Calibrate every model (:func:`calibrate`) to its target (one number for all, or ``{name: target}``).

    Returns the calibrated models and a table ``model, mode, tuned, severity_mm, fraction, target_dice,
    full_set_dice``."""
    models = list(models)
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ValueError(f"model names must be unique, got {names}")
    out, rows = [], []
    for m in models:
        target = targets if not isinstance(targets, Mapping) else targets.get(m.name)
        if target is None:
            raise ValueError(f"targets has no entry for model {m.name!r}")
        calibrated, achieved = calibrate(m, cases, target_dice=target, tolerance=tolerance,
                                         max_severity_mm=max_severity_mm, seed=seed)
        out.append(calibrated)
        rows.append({"model": m.name, "mode": m.mode, "tuned": m.tune, "severity_mm": calibrated.severity_mm,
                     "fraction": calibrated.fraction, "target_dice": float(target), "full_set_dice": achieved})
    return out, pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------- evaluation
def evaluate_models(
    models: Sequence[SyntheticModel],
    cases: Sequence[SyntheticCase],
    *,
    dataset: str = "failure_lab",
    tolerance: float = 1.0,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Evaluate synthetic models with the study's engine, into the study's tidy tables.

    Per case: the rows of :func:`helpers.evaluation.evaluate_case_tables` (the study's own per-case evaluation:
    :func:`helpers.metrics.evaluate_case` and the lesion counts of :func:`helpers.metrics.lesions.evaluate_lesions`).
    Per lesion: from the same :func:`helpers.metrics.lesions.evaluate_lesions` table, the study's rows, built by the
    study's one row builder :func:`helpers.evaluation.lesion_rows` (``detected``, every registered per-lesion
    metric, one ``false_positive`` row per false-positive component; ``penalty`` True only on a missed lesion's
    distance rows); size quartiles from :func:`helpers.evaluation.reference_quartile_edges` over the reference
    lesions' area fractions (all cases), so the tables feed :func:`helpers.analysis.analysis_units` unchanged.

    Returns
    -------
    per_case, per_lesion : pandas.DataFrame
        Columns as ``per_case_metrics.csv`` (``dataset, model, case_id, metric, value, penalty, ...``) and
        ``per_lesion_metrics.csv`` (``dataset, model, case_id, lesion_id, kind, detected, n_voxels,
        area_fraction, quartile, metric, value, penalty``; ``kind`` is :data:`helpers.metrics.lesions.REFERENCE` or
        :data:`helpers.metrics.lesions.FALSE_POSITIVE`).
    """
    cases = _as_cases(cases)
    case_rows, lesion_frames = [], []
    for model in models:
        for k, case in enumerate(cases):
            pred = model.predict(case, index=k, seed=seed)
            rows, lesions = evaluate_case_tables(case, pred, dataset=dataset, model=model.name, tolerance=tolerance)
            case_rows.extend(rows)
            lesion_frames.append(lesion_rows(lesions, dataset=dataset, model=model.name, case_id=case.case_id))
    per_case = pd.DataFrame(case_rows)
    per_lesion = pd.concat([f for f in lesion_frames if len(f)], ignore_index=True)
    per_lesion["quartile"] = assign_quartiles(per_lesion["area_fraction"], reference_quartile_edges(per_lesion))
    columns = ["dataset", "model", "case_id", "lesion_id", "kind", "detected", "n_voxels", "area_fraction",
               "quartile", "metric", "value", "penalty"]
    return per_case, per_lesion[columns]


def use_hd95_variant(table: pd.DataFrame, variant: str) -> pd.DataFrame:
    """The table with its ``hd95`` rows holding the chosen HD95 aggregation.

    ``"directed"`` (the study's default: maximum of the two directed 95th percentiles) returns the table as is;
    ``"pooled"`` replaces each ``hd95`` value by the same unit's ``hd95_pooled``. Rows of ``hd95_pooled`` are
    dropped either way, so the study's primary analysis (:func:`helpers.analysis.analysis_units` keeps the
    primary metrics of :data:`helpers.metrics.METRICS`, of which ``hd95`` is one) ranks the chosen variant as
    ``hd95``; both variants' directions come from the registry."""
    if variant not in ("directed", "pooled"):
        raise ValueError(f"variant must be 'directed' or 'pooled', got {variant!r}")
    if "metric" not in table.columns:
        raise ValueError(f"table lacks column 'metric'; has {list(table.columns)}")
    if variant == "directed":
        return table[table["metric"] != "hd95_pooled"].reset_index(drop=True)
    keep = table[table["metric"] != "hd95"]
    return keep.assign(metric=keep["metric"].replace({"hd95_pooled": "hd95"})).reset_index(drop=True)


# ------------------------------------------------------------------------------------------- the reversal
#: The models of the planted reversal. The Dice leader erodes every lesion from one side (asymmetric
#: under-segmentation): its contour is displaced by the calibrated depth, about pi voxels at the Dice of a
#: one-voxel dilation, on the eaten side. The runner-up dilates lesions by one voxel (contour displaced by 1
#: everywhere): the better boundary by construction. The third dilates like the runner-up and adds a
#: single-voxel-radius false-positive blob 4 mm beside half of the lesions: a small share of boundary voxels far
#: away, which the directed and the pooled HD95 weigh differently.
DEMO_MODELS: tuple[SyntheticModel, ...] = (
    SyntheticModel("one_side_model", "one_side"),
    SyntheticModel("dilation_model", "dilate", severity_mm=1.0, tune="fraction"),
    SyntheticModel(
        "dilation_blob_model", "dilate", severity_mm=1.0, tune="fraction",
        extra=({"mode": "blobs", "severity_mm": 1.0, "fraction": 0.5, "options": {"gap_mm": 4.0}},),
    ),
)


def _planted_verdicts(variant: str, reversals: pd.DataFrame, boot: pd.DataFrame, names: list[str]) -> list[dict]:
    """One verdict row per stratum (overall, Q1): the Dice and HD95 leaders, whether the order changed and the
    bootstrap verdict of the planted pair (``names[0]`` vs ``names[1]``) under HD95."""
    rows = []
    planted = boot[(boot["model_a"] == names[0]) & (boot["model_b"] == names[1])]
    for stratum in ("overall", "Q1"):
        rev = reversals[(reversals["stratum"] == stratum) & (reversals["metric"] == "hd95")]
        pair = planted[(planted["stratum"] == stratum) & (planted["metric"] == "hd95")]
        pair_dice = planted[(planted["stratum"] == stratum) & (planted["metric"] == "dice")]
        if rev.empty or pair.empty:
            continue
        rev, pair, pair_dice = rev.iloc[0], pair.iloc[0], pair_dice.iloc[0]
        hd_leader = rev["order_metric"].split(" > ")[0]
        rows.append({
            "hd95_variant": variant, "stratum": stratum, "order_dice": rev["order_dice"],
            "order_hd95": rev["order_metric"], "dice_leader": rev["leader"], "hd95_leader": hd_leader,
            "order_changed": bool(rev["order_changed"]),
            "dice_leader_rank_hd95": float(rev["leader_rank_in_metric"]),
            "planted_pair": f"{names[0]} vs {names[1]}",
            "dice_better": pair_dice["better"], "dice_share_same_sign": pair_dice["share_same_sign"],
            "hd95_better": pair["better"], "hd95_difference": pair["difference"],
            "hd95_ci_low": pair["ci_low"], "hd95_ci_high": pair["ci_high"],
            "hd95_share_same_sign": pair["share_same_sign"], "hd95_verdict": pair["verdict"],
            "reversal_found": bool(rev["leader"] == names[0] and pair["better"] == names[1]),
        })
    return rows


def reversal_demo(
    cases: Sequence[SyntheticCase],
    *,
    target_dice: float = 0.85,
    dice_gap: float = 0.006,
    models: Sequence[SyntheticModel] = DEMO_MODELS,
    tolerance: float = 1.0,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, pd.DataFrame]:
    """The planted ranking reversal, analysed by the study's own code.

    The first model is calibrated to ``target_dice + dice_gap / 2`` and the others to ``target_dice - dice_gap /
    2`` (all within 0.01 of each other), so Dice ranks the first model on top although its boundary is the
    worse one by construction. The models are evaluated (:func:`evaluate_models`) and analysed exactly as the
    trained models: :func:`helpers.analysis.analysis_units`, :func:`helpers.analysis.aggregate`,
    :func:`helpers.analysis.reversal_table` and :func:`helpers.stats.bootstrap.directional_robustness` (paired case
    bootstrap), once with the directed-max HD95 and once with the pooled HD95 (:func:`use_hd95_variant`).

    Returns
    -------
    dict of pandas.DataFrame
        ``calibration`` (:func:`calibrate_models`), ``per_case``, ``per_lesion``, and for each variant ``v`` in
        ``("directed", "pooled")``: ``aggregates_v``, ``reversals_v``, ``bootstrap_v``; ``verdicts`` (one row per
        variant and stratum: the Dice leader, the HD95 leader, whether the reversal was found and the bootstrap
        verdict of the planted pair under HD95).
    """
    cases = _as_cases(cases)
    models = list(models)
    if len(models) < 2:
        raise ValueError(f"models must hold at least two models, got {len(models)}")
    gap = as_positive(dice_gap, "dice_gap", allow_zero=True)
    if gap >= 0.01:
        raise ValueError(f"dice_gap must be < 0.01 (the models must agree within 0.01 Dice), got {dice_gap!r}")
    targets = {m.name: target_dice - gap / 2 for m in models}
    targets[models[0].name] = target_dice + gap / 2
    calibrated, calibration = calibrate_models(models, cases, targets=targets, tolerance=min(0.004, gap / 3) or 0.004,
                                               seed=seed)
    per_case, per_lesion = evaluate_models(calibrated, cases, tolerance=tolerance, seed=seed)
    out = {"calibration": calibration, "per_case": per_case, "per_lesion": per_lesion}
    case_ids = [c.case_id for c in cases]
    names = [m.name for m in calibrated]
    verdict_rows = []
    for variant in ("directed", "pooled"):
        units = analysis.analysis_units(use_hd95_variant(per_case, variant), use_hd95_variant(per_lesion, variant))
        aggregates = analysis.aggregate(units)
        reversals = analysis.reversal_table(aggregates, top_k=min(3, len(names)))
        boot = bootstrap.directional_robustness(
            units[units["metric"].isin(["dice", *metric_names(against_dice=True)])], case_ids=case_ids, models=names,
            n_resamples=n_resamples, seed=seed, group_by=("metric", "stratum"),
        )
        out[f"aggregates_{variant}"] = aggregates
        out[f"reversals_{variant}"] = reversals
        out[f"bootstrap_{variant}"] = boot
        verdict_rows.extend(_planted_verdicts(variant, reversals, boot, names))
    out["verdicts"] = pd.DataFrame(verdict_rows)
    return out


# --------------------------------------------------------------------------------------------------- figures
def _mode_color(mode: str):
    """A fixed colour per failure mode (its position in :data:`helpers.evaluation.perturb.FAILURE_MODES`, ``tab10``)."""
    return colormap("tab10").colors[list(perturb.FAILURE_MODES).index(mode)]



def plot_metric_vs_size(
    table: pd.DataFrame,
    *,
    mode: str,
    metric: str,
    shape: str = "disk",
    analytic: bool = True,
    ndim: int = 2,
    ax=None,
):
    """One metric against lesion radius for one failure mode, one line per severity.

    Each point is the mean over the repeats whose value is *not* the empty-prediction penalty; a point with
    some penalised repeats has a black edge, and where every repeat was penalised (the mode deleted the lesion:
    Dice 0, distances undefined) a black ``x`` is drawn at the top of a distance panel instead (the penalty,
    the canvas diagonal, would flatten the axis). Where :func:`analytic_expectation` has a closed form for the
    metric (``hd`` also for ``hd95``) and ``shape == "disk"``, it is drawn beside the measurement as a dashed
    line of the same colour; ``dice_small`` (the first-order Dice) dotted. Returns the axes.
    """
    _as_mode_name(mode)
    required = ["lesion_shape", "mode", "metric", "severity_mm", "radius_mm", "value", "penalty"]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks columns {missing}; has {list(table.columns)}")
    sub = table[(table["mode"] == mode) & (table["metric"] == metric) & (table["lesion_shape"] == shape)]
    if sub.empty:
        raise ValueError(f"the sweep has no rows for mode {mode!r}, metric {metric!r}, shape {shape!r}")
    fig, ax = get_axes(ax, figsize=(4.0, 3.0))
    severities = sorted(sub["severity_mm"].unique())
    cmap = colormap("viridis")
    deleted = []
    for i, severity in enumerate(severities):
        color = cmap(0.15 + 0.7 * i / max(1, len(severities) - 1))
        rows = sub[sub["severity_mm"] == severity]
        stats = rows.groupby("radius_mm").apply(
            lambda g: pd.Series({"value": g.loc[~g["penalty"].astype(bool), "value"].mean(),
                                 "n_penalty": int(g["penalty"].astype(bool).sum())}),
            include_groups=False,
        ).reset_index()
        ax.plot(stats["radius_mm"], stats["value"], "o-", color=color, ms=3.5, lw=1.2, label=f"{severity:g} mm")
        some = stats[(stats["n_penalty"] > 0) & stats["value"].notna()]
        ax.scatter(some["radius_mm"], some["value"], s=22, facecolors="none", edgecolors="black", lw=0.8, zorder=3)
        deleted.extend(stats.loc[stats["value"].isna(), "radius_mm"].tolist())
        if analytic and shape == "disk":
            radii = np.linspace(float(stats["radius_mm"].min()), float(stats["radius_mm"].max()), 60)
            keys = ("hd",) if metric in ("hd", "hd95", "hd95_pooled") else (metric, f"{metric}_small")
            for key, style in zip(keys, ("--", ":")):
                values = [analytic_expectation(mode, r, severity, ndim=ndim).get(key, np.nan) for r in radii]
                if np.isfinite(values).any():
                    ax.plot(radii, values, style, color=color, lw=1.0)
    if deleted:
        top = ax.get_ylim()[1]
        ax.scatter(deleted, [top] * len(deleted), marker="x", color="black", s=18, zorder=4, clip_on=False)
    ax.set_xlabel("lesion radius (mm)")
    ax.set_ylabel(label(metric, unit=True))
    ax.set_title(f"{perturb.FAILURE_MODES[mode].label}")
    return ax


def plot_sweep_grid(
    table: pd.DataFrame,
    *,
    modes: Sequence[str],
    metrics: Sequence[str] = ("dice", "hd95", "assd", "contour_f1"),
    shape: str = "disk",
    ndim: int = 2,
):
    """A grid of :func:`plot_metric_vs_size` panels: one row per mode, one column per metric. Returns the figure."""
    modes, metrics = list(modes), list(metrics)
    fig, axes = subplots(len(modes), len(metrics), figsize=(2.6 * len(metrics), 2.1 * len(modes)),
                             squeeze=False, constrained_layout=True)
    for i, mode in enumerate(modes):
        for j, metric in enumerate(metrics):
            ax = plot_metric_vs_size(table, mode=mode, metric=metric, shape=shape, ndim=ndim, ax=axes[i, j])
            ax.set_title(perturb.FAILURE_MODES[mode].label if j == 0 else "")
            if i < len(modes) - 1:
                ax.set_xlabel("")
            if METRICS[metric].kind in ("overlap", "boundary"):  # scores in [0, 1]
                ax.set_ylim(-0.03, 1.03)
    axes[0, -1].legend(title="severity", fontsize=7, title_fontsize=7, loc="best")
    return fig


def plot_dice_vs_boundary(
    table: pd.DataFrame, *, radius_mm: float, metric: str = "hd95", shape: str = "irregular", ax=None
):
    """Dice against a boundary metric for every (mode, severity) at one lesion radius.

    Points in a vertical band share their Dice; their spread along the other axis is what Dice does not see.
    Returns the axes."""
    summary = sweep_summary(table)
    summary = summary[(summary["lesion_shape"] == shape) & np.isclose(summary["radius_mm"], radius_mm)]
    if summary.empty:
        raise ValueError(f"the sweep has no rows for radius_mm {radius_mm!r} and shape {shape!r}")
    wide = summary.pivot_table(index=["mode", "severity_mm"], columns="metric", values="value").reset_index()
    fig, ax = get_axes(ax, figsize=(4.2, 3.2))
    for mode, sub in wide.groupby("mode", sort=True):
        if mode == "none":
            continue
        ax.plot(sub["dice"], sub[metric], "o-", ms=4, lw=0.8, color=_mode_color(mode),
                label=perturb.FAILURE_MODES[mode].label)
    ax.set_xlabel(label("dice"))
    ax.set_ylabel(label(metric, unit=True))
    ax.set_title(f"{shape} lesions of radius {radius_mm:g} mm")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax


def plot_mode_gallery(
    radius_mm: float = 6.0,
    severity_mm: float = 2.0,
    *,
    modes: Sequence[str] | None = None,
    irregularity: float = 0.2,
    n_protrusions: int = 2,
    seed: int = 0,
):
    """One irregular lesion under every failure mode (reference and prediction boundaries, as
    :func:`helpers.metrics.plot_boundaries`), titled with Dice and HD95. Returns the figure."""
    modes = list(perturb.FAILURE_MODES) if modes is None else [_as_mode_name(m) for m in modes]
    reach = max(perturb.FAILURE_MODES[m].reach_mm(severity_mm, {}) for m in modes)
    shape = canvas_shape(radius_mm * (1 + irregularity) * 1.8, reach + 2)
    centre = [(n // 2) for n in shape]
    rng = np.random.default_rng(seed)
    ref = draw_lesion(shape, centre, radius_mm, irregularity=irregularity, n_protrusions=n_protrusions, rng=rng)
    cols = min(4, len(modes))
    rows = int(math.ceil(len(modes) / cols))
    fig, axes = subplots(rows, cols, figsize=(2.3 * cols, 2.5 * rows), squeeze=False, constrained_layout=True)
    for ax, mode in zip(axes.flat, modes):
        pred = perturb.perturb_lesions(ref, mode, severity_mm, seed=seed)
        m = evaluate_case(ref, pred)
        plot_boundaries(ref, pred, ax=ax)
        ys, xs = np.nonzero(ref | pred)
        ax.set_xlim(xs.min() - 2.5, xs.max() + 2.5)
        ax.set_ylim(ys.max() + 2.5, ys.min() - 2.5)
        ax.set_title(f"{perturb.FAILURE_MODES[mode].label}\nDice {m.dice:.2f} · HD95 {m.hd95:.1f}", fontsize=8)
    for ax in list(axes.flat)[len(modes):]:
        ax.axis("off")
    return fig


def plot_demo(aggregates: pd.DataFrame, *, metrics: Sequence[str] = ("dice", "hd95", "assd", "contour_f1"),
              strata: Sequence[str] = ("overall", "Q1")):
    """Bars of each model's aggregate per metric (columns) and stratum (bar groups). Returns the figure."""
    metrics, strata = list(metrics), list(strata)
    models = list(dict.fromkeys(aggregates["model"]))
    fig, axes = subplots(1, len(metrics), figsize=(2.6 * len(metrics), 2.6), squeeze=False,
                             constrained_layout=True)
    width = 0.8 / max(1, len(models))
    for ax, metric in zip(axes[0], metrics):
        for i, model in enumerate(models):
            values = [
                aggregates[(aggregates["model"] == model) & (aggregates["metric"] == metric)
                           & (aggregates["stratum"] == s)]["value"].mean()
                for s in strata
            ]
            ax.bar(np.arange(len(strata)) + (i - (len(models) - 1) / 2) * width, values, width,
                   color=model_color(model, i), label=model)
        ax.set_xticks(np.arange(len(strata)), strata)
        ax.set_title(label(metric, unit=True))
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig
