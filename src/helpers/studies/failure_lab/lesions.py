"""Synthetic lesions of the failure-mode lab, and what a perfect disk should measure.

Digital disks/spheres and irregular lobed lesions with thin protrusions (:func:`draw_lesion`), the canvas that holds
them (:func:`canvas_shape`), the continuum expectations of the metrics for a disk or ball under a failure mode
(:func:`analytic_expectation`), and the lab's shared argument checks and seeds.

Conventions
-----------
- Axis order ``(z, y, x)`` / ``(y, x)``; ``spacing`` in mm per axis (``None`` = 1); radii, severities and
  distances in mm (voxels at unit spacing).
- Randomness only through explicit seeds (:func:`seed_for` derives one stream per case and step).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from helpers.evaluation import perturb
from helpers.base.checks import as_int, as_positive, as_spacing

__all__ = ["as_ndim", "as_mode_name", "seed_for", "draw_lesion", "canvas_shape", "analytic_expectation"]


# ---------------------------------------------------------------------------------------------- validation
def as_ndim(ndim) -> int:
    """``ndim`` checked to be 2 or 3."""
    if ndim not in (2, 3) or isinstance(ndim, bool):
        raise ValueError(f"ndim must be 2 or 3, got {ndim!r}")
    return int(ndim)


def as_mode_name(mode) -> str:
    """``mode`` checked to be a key of :data:`helpers.evaluation.perturb.FAILURE_MODES`."""
    if not isinstance(mode, str) or mode not in perturb.FAILURE_MODES:
        raise ValueError(f"mode must be one of {sorted(perturb.FAILURE_MODES)}, got {mode!r}")
    return mode


def seed_for(seed: int, *keys: int) -> int:
    """One integer seed drawn from ``SeedSequence([seed, *keys])``: a stream per case and step."""
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
    ndim = as_ndim(len(shape))
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
    ndim = as_ndim(ndim)
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
    mode = as_mode_name(mode)
    ndim = as_ndim(ndim)
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
