"""Perturbation operators: the paper's small-lesion failure modes as controlled, named edits of a reference mask.

Each operator is a pure function ``op(mask, severity, *, spacing=None, ...)`` that returns a new boolean mask
of the same shape; :func:`perturb_lesions` applies one of them to every lesion of a reference separately
(label the reference, perturb each lesion in a crop around it, recombine by union). The failure modes and the
meaning of their severity (always in millimetres, i.e. in voxels when ``spacing`` is ``None``):

=====================  ====================================================================================
``offset``             translation of the lesion by ``severity`` mm in a random direction (contour offset)
``dilate``             dilation by a Euclidean ball of radius ``severity`` mm (over-segmentation)
``erode``              erosion by a Euclidean ball of radius ``severity`` mm (under-segmentation)
``smooth``             Gaussian blur with standard deviation ``severity`` mm, thresholded at 0.5 (over-smoothing)
``protrusions``        opening by a ball of diameter ``severity`` mm: parts thinner than that are removed
``fragment``           cuts of width ``severity`` mm through the lesion centroid (fragmentation)
``one_side``           erosion from one side, ``severity`` mm deep at the pole (asymmetric under-segmentation)
``blobs``              spurious false-positive balls of radius ``severity`` mm near the lesion
=====================  ====================================================================================

Conventions
-----------
- Axis order: 3D masks are ``(z, y, x)``, 2D masks ``(y, x)``; vectors (directions, shifts) follow the same
  numpy axis order.
- ``spacing``: one positive float per axis in millimetres; ``None`` means 1 per axis. Severities, radii, widths
  and shifts are in millimetres and are converted to voxels with ``spacing``; balls are Euclidean balls in mm,
  so they are ellipsoids in voxels when the spacing is anisotropic.
- Digital balls: the ball of radius ``r`` mm is the set of voxel offsets whose physical length is ``<= r``
  (plus 1e-9 mm, so that a radius of exactly ``sqrt(2)`` includes the diagonal). Dilation keeps every voxel
  within ``r`` of the mask (a Euclidean distance transform of the background); erosion keeps the voxels whose
  nearest background voxel lies farther than ``r``. With ``r = 1`` and unit spacing they equal
  :func:`scipy.ndimage.binary_dilation` / ``binary_erosion`` with the cross-shaped structure.
- Image border: voxels outside the image are background. Erosion therefore eats lesions from the image border
  (as :func:`scipy.ndimage.binary_erosion` with ``border_value=0``), and what a translation or dilation pushes
  out of the image is lost.
- Translations move by whole voxels: the shift in voxels ``shift_mm / spacing`` is rounded to the nearest
  integer per axis (halves to even, :func:`numpy.rint`).
- Randomness (directions, cut orientations, blob positions) only through an explicit ``numpy.random.Generator``
  (``rng``) or, for :func:`perturb_lesions`, a ``seed``: lesion ``i`` draws from its own stream
  ``default_rng([seed, i])``, so the same lesion gets the same direction at every severity (common random
  numbers: metric curves and calibration are monotone in severity rather than noisy).
- Empty-mask policy: every operator maps an empty mask to an empty mask (no lesion, nothing to perturb);
  ``blobs`` places no blob without a lesion to place it near.
- Connectivity (for lesions and for fragmentation) is full (``ndim``) unless told otherwise, as in
  :mod:`helpers.metrics.lesions`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from helpers.metrics.lesions import label_lesions
from helpers.base.checks import as_generator, as_int, as_mask, as_nonnegative, as_spacing

__all__ = [
    "random_direction", "translate", "offset", "dilate", "erode", "smooth", "remove_protrusions", "fragment",
    "erode_one_side", "add_blobs", "FailureMode", "FAILURE_MODES", "perturb_lesions",
]

_EPS_MM = 1e-9  # distances are compared with this slack so that radius sqrt(2) includes the diagonal neighbour


# ----------------------------------------------------------------------------------------------- validation
def _as_severity(value, name: str) -> float:
    return as_nonnegative(value, name, unit="millimetres")


def _as_vector(vector, ndim: int, name: str) -> np.ndarray:
    if isinstance(vector, (str, bytes)) or not hasattr(vector, "__len__"):
        raise TypeError(f"{name} must be a sequence of {ndim} numbers (numpy axis order), got {vector!r}")
    try:
        values = np.asarray(vector, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a sequence of {ndim} numbers (numpy axis order), got {vector!r}") from None
    if values.shape != (ndim,):
        raise ValueError(f"{name} must have one value per axis ({ndim}), got {vector!r}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} must be finite, got {vector!r}")
    return values


def _as_direction(direction, ndim: int) -> np.ndarray:
    values = _as_vector(direction, ndim, "direction")
    norm = float(np.linalg.norm(values))
    if norm == 0:
        raise ValueError(f"direction must be a non-zero vector, got {direction!r}")
    return values / norm


# ----------------------------------------------------------------------------------------------- primitives
def _shift_voxels(mask: np.ndarray, shift: tuple[int, ...]) -> np.ndarray:
    """``mask`` moved by whole voxels; what leaves the image is lost, what enters is background."""
    out = np.zeros_like(mask)
    src, dst = [], []
    for s, n in zip(shift, mask.shape):
        if abs(s) >= n:
            return out
        src.append(slice(max(0, -s), n - max(0, s)))
        dst.append(slice(max(0, s), n - max(0, -s)))
    out[tuple(dst)] = mask[tuple(src)]
    return out


def _grow(mask: np.ndarray, radius_mm: float, spacing: tuple[float, ...]) -> np.ndarray:
    if not mask.any():
        return mask.copy()
    distance = ndimage.distance_transform_edt(~mask, sampling=spacing)
    return distance <= radius_mm + _EPS_MM


def _shrink(mask: np.ndarray, radius_mm: float, spacing: tuple[float, ...]) -> np.ndarray:
    if not mask.any():
        return mask.copy()
    padded = np.pad(mask, 1, constant_values=False)  # outside the image is background
    distance = ndimage.distance_transform_edt(padded, sampling=spacing)[(slice(1, -1),) * mask.ndim]
    return distance > radius_mm + _EPS_MM


def random_direction(ndim: int, rng: np.random.Generator) -> np.ndarray:
    """A unit vector uniformly distributed on the circle (2D) or sphere (3D), in numpy axis order.

    Drawn as a normalised standard normal vector (isotropic in any dimension)."""
    rng = as_generator(rng)
    if ndim not in (2, 3):
        raise ValueError(f"ndim must be 2 or 3, got {ndim!r}")
    while True:
        v = rng.standard_normal(ndim)
        norm = float(np.linalg.norm(v))
        if norm > 1e-12:
            return v / norm


# ------------------------------------------------------------------------------------------------ operators
def translate(mask: np.ndarray, shift_mm, *, spacing=None) -> np.ndarray:
    """Move the mask by ``shift_mm`` (one value per axis, millimetres), rounded to whole voxels.

    Parameters
    ----------
    mask : numpy.ndarray of bool, 2D or 3D
    shift_mm : sequence of float
        The displacement per numpy axis in mm. Converted to voxels as ``numpy.rint(shift_mm / spacing)``.
    spacing : sequence of float, optional
        Voxel size per axis in mm (default 1).

    Returns
    -------
    numpy.ndarray of bool
        The moved mask; voxels moved out of the image are lost.
    """
    mask = as_mask(mask, "mask")
    spacing = as_spacing(spacing, mask.ndim)
    shift = _as_vector(shift_mm, mask.ndim, "shift_mm")
    voxels = tuple(int(v) for v in np.rint(shift / np.asarray(spacing)))
    return _shift_voxels(mask, voxels)


def offset(mask: np.ndarray, distance_mm: float, *, direction, spacing=None) -> np.ndarray:
    """Systematic contour offset: translate the mask by ``distance_mm`` along ``direction``.

    ``direction`` (numpy axis order) is normalised to unit length in physical space; the shift is then rounded
    to whole voxels per axis (see :func:`translate`), so the realised shift is the lattice vector nearest to
    ``distance_mm * direction``: exact along an axis, off by at most half a voxel per axis otherwise (a 1 mm
    shift along the 3D diagonal becomes the vector (1, 1, 1), 1.73 mm long). On a disk of radius ``r`` shifted
    by ``d`` (``d < 2r``):
    Hausdorff distance ``d`` and Dice ``(2/pi)(acos(u) - u sqrt(1 - u^2))`` with ``u = d/(2r)``, i.e.
    ``1 - 2d/(pi r)`` for small ``d`` (:func:`helpers.studies.failure_lab.analytic_expectation`).
    """
    mask = as_mask(mask, "mask")
    distance = _as_severity(distance_mm, "distance_mm")
    unit = _as_direction(direction, mask.ndim)
    return translate(mask, distance * unit, spacing=spacing)


def dilate(mask: np.ndarray, radius_mm: float, *, spacing=None) -> np.ndarray:
    """Over-segmentation: dilation by the Euclidean ball of radius ``radius_mm``.

    A voxel is kept when its distance (mm, between voxel centres) to the nearest mask voxel is ``<= radius_mm``.
    A disk of radius ``r`` becomes (up to digitisation) a disk of radius ``r + radius_mm``."""
    mask = as_mask(mask, "mask")
    spacing = as_spacing(spacing, mask.ndim)
    return _grow(mask, _as_severity(radius_mm, "radius_mm"), spacing)


def erode(mask: np.ndarray, radius_mm: float, *, spacing=None) -> np.ndarray:
    """Under-segmentation: erosion by the Euclidean ball of radius ``radius_mm``.

    A voxel is kept when its nearest background voxel (outside the image counts as background) lies farther
    than ``radius_mm``. Lesions thinner than ``2 * radius_mm`` disappear."""
    mask = as_mask(mask, "mask")
    spacing = as_spacing(spacing, mask.ndim)
    return _shrink(mask, _as_severity(radius_mm, "radius_mm"), spacing)


def smooth(mask: np.ndarray, sigma_mm: float, *, spacing=None) -> np.ndarray:
    """Over-smoothed boundary: blur the mask with a Gaussian of standard deviation ``sigma_mm`` and threshold.

    The mask (as 0/1) is filtered with :func:`scipy.ndimage.gaussian_filter` (``sigma = sigma_mm / spacing`` per
    axis, zeros outside the image, kernel truncated at 4 sigma) and voxels with a value ``>= 0.5`` are kept.
    Corners are rounded, protrusions thinner than about a sigma and concavities are filled or cut, and a
    lesion too small for its blur vanishes: the centre of a blurred disk of radius ``r`` is
    ``1 - exp(-r^2 / (2 sigma^2))``, below 0.5 when ``r < sigma * sqrt(2 ln 2) ~= 1.18 sigma``.
    ``sigma_mm = 0`` returns a copy."""
    mask = as_mask(mask, "mask")
    spacing = as_spacing(spacing, mask.ndim)
    sigma = _as_severity(sigma_mm, "sigma_mm")
    if sigma == 0 or not mask.any():
        return mask.copy()
    blurred = ndimage.gaussian_filter(
        mask.astype(np.float64), sigma=[sigma / s for s in spacing], mode="constant", cval=0.0, truncate=4.0
    )
    return blurred >= 0.5 - 1e-12


def remove_protrusions(mask: np.ndarray, width_mm: float, *, spacing=None, connectivity=None) -> np.ndarray:
    """Missed thin protrusions: morphological opening by the ball of diameter ``width_mm``.

    Opening (erosion then dilation by the ball of radius ``width_mm / 2``, see :func:`erode`, :func:`dilate`)
    removes every part of a lesion narrower than ``width_mm`` and keeps its wider core. Definitional choice:
    a lesion (connected component, ``connectivity`` as :func:`helpers.metrics.lesions.label_lesions`) that has no core
    at all (its opening is empty) is kept unchanged: it *is* a thin structure rather than a lesion with a
    protrusion, and deleting it would be a missed lesion, a different failure mode."""
    mask = as_mask(mask, "mask")
    spacing = as_spacing(spacing, mask.ndim)
    radius = _as_severity(width_mm, "width_mm") / 2.0
    if radius == 0 or not mask.any():
        return mask.copy()
    opened = _grow(_shrink(mask, radius, spacing), radius, spacing) & mask
    labels, n = label_lesions(mask, connectivity=connectivity)
    if n:
        kept = np.zeros(n + 1, dtype=bool)
        kept[np.unique(labels[opened])] = True
        coreless = ~kept[labels] & (labels > 0)
        opened |= coreless
    return opened


def _cut_normals(ndim: int, n_cuts: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``n_cuts`` plane normals, evenly spaced in angle with a random phase, all planes sharing one axis."""
    phase = rng.uniform(0.0, math.pi)
    angles = [phase + k * math.pi / n_cuts for k in range(n_cuts)]
    if ndim == 2:
        return [np.array([math.cos(a), math.sin(a)]) for a in angles]
    axis = random_direction(3, rng)
    helper = np.eye(3)[int(np.argmin(np.abs(axis)))]
    u = np.cross(axis, helper)
    u /= np.linalg.norm(u)
    v = np.cross(axis, u)
    return [math.cos(a) * u + math.sin(a) * v for a in angles]


def fragment(
    mask: np.ndarray, width_mm: float, *, n_cuts: int = 2, spacing=None, rng: np.random.Generator
) -> np.ndarray:
    """Fragmentation: cut the mask by ``n_cuts`` thin lines (planes in 3D) through its centroid.

    The cuts pass through the centroid (mm) of the whole ``mask``; their orientations are evenly spaced in angle
    (``pi / n_cuts`` apart, random phase from ``rng``; in 3D the planes share a random axis), so ``n_cuts``
    cuts split a convex lesion into ``2 * n_cuts`` pieces. A voxel at signed distance ``d`` (mm) from a cut is
    removed when ``|d| < width_mm / 2`` or ``0 <= d < sum_i spacing_i |n_i|`` (``n`` the unit normal): the second
    band is the thinnest cut that leaves no two neighbours (full connectivity) on opposite sides, so the pieces
    are disconnected even for ``width_mm = 0`` (an axis-aligned cut is then one voxel thick).

    Parameters
    ----------
    width_mm : float
        Cut width in mm (the severity).
    n_cuts : int
        Number of cuts (>= 1).
    rng : numpy.random.Generator
        Source of the orientations.
    """
    mask = as_mask(mask, "mask")
    spacing = as_spacing(spacing, mask.ndim)
    width = _as_severity(width_mm, "width_mm")
    n_cuts = as_int(n_cuts, "n_cuts", 1)
    rng = as_generator(rng)
    normals = _cut_normals(mask.ndim, n_cuts, rng)
    if not mask.any():
        return mask.copy()
    coords = np.nonzero(mask)
    points = np.stack(coords, axis=1) * np.asarray(spacing)
    centre = points.mean(axis=0)
    removed = np.zeros(len(points), dtype=bool)
    for normal in normals:
        d = (points - centre) @ normal
        band = float(np.sum(np.abs(normal) * np.asarray(spacing)))
        removed |= (np.abs(d) < width / 2.0) | ((d >= 0) & (d < band))
    out = mask.copy()
    out[tuple(c[removed] for c in coords)] = False
    return out


def erode_one_side(mask: np.ndarray, depth_mm: float, *, direction, spacing=None) -> np.ndarray:
    """Asymmetric under-segmentation: erosion from one side, by a line segment of length ``depth_mm``.

    A voxel ``x`` is kept when every voxel of the digital segment from ``x`` to ``x + depth_mm * u`` lies in
    the mask (``u`` the unit ``direction``, numpy axis order; segment points sampled every quarter of the
    smallest spacing and rounded to voxels; outside the image is background). The side of the lesion facing
    ``+direction`` is eaten, the opposite side is untouched. On a disk of radius ``r`` the result is the
    intersection with the disk moved by ``-depth_mm * u``: a lens, ``depth_mm`` thinner at the pole
    (Hausdorff distance ``depth_mm``)."""
    mask = as_mask(mask, "mask")
    spacing = as_spacing(spacing, mask.ndim)
    depth = _as_severity(depth_mm, "depth_mm")
    unit = _as_direction(direction, mask.ndim)
    if depth == 0 or not mask.any():
        return mask.copy()
    steps = int(math.ceil(depth / (0.25 * min(spacing)))) + 1
    ts = np.linspace(0.0, depth, steps)
    offsets = {tuple(int(v) for v in np.rint(t * unit / np.asarray(spacing))) for t in ts}
    out = mask.copy()
    for o in offsets:
        if any(o):
            # x is kept only if x + o is in the mask: shift the mask by -o and intersect
            out &= _shift_voxels(mask, tuple(-v for v in o))
    return out


def add_blobs(
    mask: np.ndarray,
    radius_mm: float,
    *,
    n_blobs: int = 1,
    gap_mm: float = 2.0,
    spacing=None,
    rng: np.random.Generator,
) -> np.ndarray:
    """Spurious false positives: add ``n_blobs`` balls of radius ``radius_mm`` near the mask.

    Each blob centre is drawn uniformly (``rng``) among the voxels whose distance to the mask lies in
    ``[gap_mm + radius_mm, gap_mm + radius_mm + max(spacing))``, so the blob's nearest voxel is about
    ``gap_mm`` from the lesion and never touches it; the blob is the digital ball of radius ``radius_mm`` around
    its centre (at least the centre voxel). Blobs are placed one after the other and may touch each other.
    The mask itself is unchanged (its voxels are all kept). Policy: when no centre fits inside the image the
    remaining blobs are not placed (the result is still a superset of ``mask``); an empty mask gets no blob.

    Parameters
    ----------
    radius_mm : float
        Blob radius in mm (the severity); ``0`` gives single-voxel blobs.
    n_blobs : int
        Blobs per call (>= 0).
    gap_mm : float
        Distance from the lesion to the blob's nearest voxel, in mm.
    rng : numpy.random.Generator
        Source of the positions.
    """
    mask = as_mask(mask, "mask")
    spacing = as_spacing(spacing, mask.ndim)
    radius = _as_severity(radius_mm, "radius_mm")
    gap = _as_severity(gap_mm, "gap_mm")
    n_blobs = as_int(n_blobs, "n_blobs", 0)
    rng = as_generator(rng)
    out = mask.copy()
    if not mask.any() or n_blobs == 0:
        return out
    distance = ndimage.distance_transform_edt(~mask, sampling=spacing)
    low = gap + radius
    candidates = np.flatnonzero((distance >= low - _EPS_MM) & (distance < low + max(spacing)))
    grids = None
    for _ in range(n_blobs):
        if candidates.size == 0:
            break
        centre = np.unravel_index(int(candidates[rng.integers(candidates.size)]), mask.shape)
        if grids is None:
            grids = np.ogrid[tuple(slice(0, n) for n in mask.shape)]
        squared = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, spacing))
        out |= squared <= (radius + _EPS_MM) ** 2
    return out


# ------------------------------------------------------------------------------------------- failure modes
@dataclass(frozen=True)
class FailureMode:
    """One failure mode: how to apply it to a single lesion and how far its effect can reach.

    Attributes
    ----------
    name : str
        Registry key.
    label : str
        Human-readable name (figures, tables).
    severity : str
        What the severity (mm) means.
    apply : callable
        ``apply(mask, severity, *, spacing, rng, **options) -> mask`` for one lesion.
    reach_mm : callable
        ``reach_mm(severity, options) -> float``: how far (mm) outside the lesion the result can extend; the
        crop margin of :func:`perturb_lesions`.
    options : tuple of str
        The option names ``apply`` accepts.
    """

    name: str
    label: str
    severity: str
    apply: Callable[..., np.ndarray]
    reach_mm: Callable[[float, Mapping], float]
    options: tuple[str, ...] = ()


def _apply_offset(mask, severity, *, spacing, rng):
    return offset(mask, severity, direction=random_direction(mask.ndim, rng), spacing=spacing)


def _apply_one_side(mask, severity, *, spacing, rng):
    return erode_one_side(mask, severity, direction=random_direction(mask.ndim, rng), spacing=spacing)


FAILURE_MODES: dict[str, FailureMode] = {
    m.name: m
    for m in (
        FailureMode("offset", "contour offset", "shift (mm)", _apply_offset, lambda s, o: s),
        FailureMode(
            "dilate", "dilation", "radius (mm)", lambda m, s, *, spacing, rng: dilate(m, s, spacing=spacing),
            lambda s, o: s,
        ),
        FailureMode(
            "erode", "erosion", "radius (mm)", lambda m, s, *, spacing, rng: erode(m, s, spacing=spacing),
            lambda s, o: 0.0,
        ),
        FailureMode(
            "smooth", "over-smoothing", "blur sigma (mm)", lambda m, s, *, spacing, rng: smooth(m, s, spacing=spacing),
            lambda s, o: 4.0 * s,
        ),
        FailureMode(
            "protrusions", "missed thin protrusions", "width removed (mm)",
            lambda m, s, *, spacing, rng: remove_protrusions(m, s, spacing=spacing),
            lambda s, o: 0.0,
        ),
        FailureMode(
            "fragment", "fragmentation", "cut width (mm)",
            lambda m, s, *, spacing, rng, n_cuts=2: fragment(m, s, n_cuts=n_cuts, spacing=spacing, rng=rng),
            lambda s, o: 0.0, ("n_cuts",),
        ),
        FailureMode("one_side", "asymmetric under-segmentation", "depth (mm)", _apply_one_side, lambda s, o: 0.0),
        FailureMode(
            "blobs", "spurious blobs", "blob radius (mm)",
            lambda m, s, *, spacing, rng, n_blobs=1, gap_mm=2.0: add_blobs(
                m, s, n_blobs=n_blobs, gap_mm=gap_mm, spacing=spacing, rng=rng
            ),
            lambda s, o: float(o.get("gap_mm", 2.0)) + 2.0 * s, ("n_blobs", "gap_mm"),
        ),
    )
}


def _as_mode(mode) -> FailureMode:
    if isinstance(mode, FailureMode):
        return mode
    if not isinstance(mode, str):
        raise TypeError(f"mode must be a failure-mode name (str), got {mode!r}")
    if mode not in FAILURE_MODES:
        raise ValueError(f"mode must be one of {sorted(FAILURE_MODES)}, got {mode!r}")
    return FAILURE_MODES[mode]


def perturb_lesions(
    ref: np.ndarray,
    mode: str,
    severity: float,
    *,
    spacing=None,
    seed: int = 0,
    fraction: float = 1.0,
    connectivity: int | None = None,
    options: Mapping | None = None,
) -> np.ndarray:
    """Apply a failure mode to each lesion of a reference mask separately and recombine the results.

    The reference is labelled (:func:`helpers.metrics.lesions.label_lesions`, ``connectivity``); lesion ``i`` is cut out
    with a margin of the mode's reach (plus one voxel), with the other lesions removed from its crop, perturbed
    there, and pasted back by union (so a dilated lesion may merge with its neighbour, as a model's would).
    Lesion ``i`` draws all its randomness from ``numpy.random.default_rng([seed, i])``: first one uniform number
    that decides whether it is perturbed at all (``< fraction``), then the mode's own draws. The stream does not
    depend on ``severity``, so a lesion keeps its direction, cuts and blob site as the severity grows.

    Parameters
    ----------
    ref : numpy.ndarray of bool
        The reference mask, 2D or 3D.
    mode : str
        A key of :data:`FAILURE_MODES`.
    severity : float
        The mode's severity in mm (see the module table).
    spacing : sequence of float, optional
        Voxel size in mm (default 1).
    seed : int
        Seed of the per-lesion random streams (>= 0).
    fraction : float
        Probability in [0, 1] that a lesion is perturbed; unperturbed lesions are copied unchanged.
    connectivity : int, optional
        Lesion connectivity (default full).
    options : mapping, optional
        The mode's own options (``n_cuts`` for ``fragment``; ``n_blobs``, ``gap_mm`` for ``blobs``).

    Returns
    -------
    numpy.ndarray of bool
        The perturbed mask (the "prediction"). An empty reference gives an empty mask.
    """
    ref = as_mask(ref, "ref")
    spacing = as_spacing(spacing, ref.ndim)
    mode = _as_mode(mode)
    severity = _as_severity(severity, "severity")
    seed = as_int(seed, "seed", 0)
    if isinstance(fraction, bool) or not isinstance(fraction, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"fraction must be a number in [0, 1], got {fraction!r}")
    if not 0.0 <= float(fraction) <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
    options = dict(options or {})
    unknown = sorted(set(options) - set(mode.options))
    if unknown:
        raise ValueError(f"options {unknown} are not options of mode {mode.name!r} (it takes {list(mode.options)})")
    labels, n = label_lesions(ref, connectivity=connectivity)
    out = np.zeros_like(ref)
    reach = float(mode.reach_mm(severity, options))
    margin = [int(math.ceil(reach / s)) + 1 for s in spacing]
    for i, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        rng = np.random.default_rng([seed, i])
        crop = tuple(
            slice(max(0, b.start - m), min(size, b.stop + m)) for b, m, size in zip(box, margin, ref.shape)
        )
        lesion = labels[crop] == i
        if rng.random() < float(fraction):
            lesion = mode.apply(lesion, severity, spacing=spacing, rng=rng, **options)
        out[crop] |= lesion
    return out
