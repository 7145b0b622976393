"""The failure-mode lab's test set and synthetic models, calibrated to a common Dice.

A synthetic test set of many lesions with heavy-tailed sizes (:func:`make_test_set`), synthetic "models" made of
failure modes (:class:`SyntheticModel`: a :mod:`helpers.evaluation.perturb` operator applied to the reference
lesions), and their calibration to a target full-set Dice (:func:`calibrate`, :func:`calibrate_models`).

Conventions
-----------
- Axis order, spacing and units as in :mod:`helpers.studies.failure_lab.lesions` (mm; voxels at unit spacing).
- "Full-set Dice" of a model is the mean over test cases of the per-case Dice, the paper's full-test-set
  number (:func:`full_set_dice`).
- Randomness only through explicit seeds; case ``k`` of a test set is perturbed with seed
  ``SeedSequence([seed, k])`` so that a model's random choices (directions, cuts, blob sites) do not change
  while its severity is calibrated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy import ndimage

from helpers.evaluation import perturb
from helpers.base.checks import as_int, as_positive, as_spacing
from helpers.metrics import dice
from helpers.studies.failure_lab.lesions import as_mode_name, as_ndim, canvas_shape, draw_lesion, seed_for

__all__ = [
    "SyntheticCase", "make_test_set", "SyntheticModel", "as_cases", "full_set_dice", "calibrate", "calibrate_models",
]


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
    ndim = as_ndim(len(shape))
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
        as_mode_name(self.mode)
        if self.tune not in ("severity_mm", "fraction"):
            raise ValueError(f"tune must be 'severity_mm' or 'fraction', got {self.tune!r}")
        for step in self.extra:
            if not isinstance(step, Mapping) or "mode" not in step:
                raise ValueError(f"extra steps must be dicts with a 'mode', got {step!r}")
            unknown = sorted(set(step) - {"mode", "severity_mm", "fraction", "options"})
            if unknown:
                raise ValueError(f"extra step keys {unknown} unknown (mode, severity_mm, fraction, options)")
            as_mode_name(step["mode"])

    def predict(self, case: SyntheticCase, *, index: int, seed: int = 0) -> np.ndarray:
        """The model's prediction for test case number ``index``.

        Step ``j`` (0 the main mode, then ``extra``) perturbs with seed ``SeedSequence([seed, index, j])``
        (step 0: ``[seed, index]``), so random choices depend only on the seed, the case and the step."""
        pred = perturb.perturb_lesions(
            case.mask, self.mode, self.severity_mm, spacing=case.spacing, seed=seed_for(seed, index),
            fraction=self.fraction, options=self.options,
        )
        for j, step in enumerate(self.extra, start=1):
            pred = perturb.perturb_lesions(
                pred, step["mode"], step.get("severity_mm", 0.0), spacing=case.spacing,
                seed=seed_for(seed, index, j), fraction=step.get("fraction", 1.0), options=step.get("options"),
            )
        return pred


def as_cases(cases) -> list[SyntheticCase]:
    """``cases`` as a list, checked to be a non-empty sequence of :class:`SyntheticCase`."""
    cases = list(cases)
    if not cases or not all(isinstance(c, SyntheticCase) for c in cases):
        raise TypeError("cases must be a non-empty sequence of SyntheticCase (see make_test_set)")
    return cases


def full_set_dice(model: SyntheticModel, cases: Sequence[SyntheticCase], *, seed: int = 0) -> float:
    """Mean over cases of the per-case Dice (:func:`helpers.metrics.dice`) of the model's predictions."""
    cases = as_cases(cases)
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
    cases = as_cases(cases)
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
