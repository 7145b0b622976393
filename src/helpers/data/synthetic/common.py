"""Shared shapes and helpers of the synthetic stand-ins, which are written in exactly the real on-disk layouts.

The stand-ins exist so that the whole study runs (and is tested) without the real data, and so that the real
loaders in :mod:`helpers.data.layouts` are what reads them: every file is written at the path, with the name, format
and label values of the published dataset (see ``DATASETS.md``). They are *not* the real data and nothing
measured on them is a result of the paper. One generator module per dataset builds on this one:
:mod:`helpers.data.synthetic.wmh`, :mod:`helpers.data.synthetic.lits`, :mod:`helpers.data.synthetic.idrid`.

Lesion sizes are heavy-tailed (log-normal radii: many small lesions, a few large ones; the smallest a few voxels of
radius, see ``WMH_RADIUS_MM``, ``LITS_RADIUS_MM``, ``IDRID_MIN_RADIUS``), margins blurred (partial volume) and
shapes irregular (a union of offset ellipsoids whose boundary is perturbed by smoothed noise, :func:`place_lesions`),
so that the smallest size quartile is genuinely small (well under 1.5 % of the image area). Lesion radii are given
as (low, median, high); the smallest lesions are a few voxels of radius on the study's grids (default profile:
1.8 mm WMH pixels, 3.0 mm LiTS pixels, IDRiD frames 340 px high), i.e. about 8 to 60 voxels of in-plane area, so
that their boundary is something a model can place; the smallest quartile still stays far below 1.5 % of the image
area. Everything is a deterministic function of ``seed`` and the size parameters: the same call writes
byte-identical NIfTI/TIFF files (JPEG encoding is deterministic for a given Pillow version).

Conventions: arrays ``(z, y, x)``, spacing in mm per numpy axis; NIfTI files store ``(x, y, z)`` (see
:func:`helpers.data.layouts.to_nifti_array`). Generators return a dict of their parameters (for the data manifest).
Each dataset's generator is named in its registry entry (:mod:`helpers.data.datasets`).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

__all__ = [
    "check_positive_int", "check_shape", "check_spacing", "smooth_noise", "grid_mm", "ellipsoid_q", "place_lesions",
    "lognormal_radii", "overdispersed_count", "save_nifti",
]


# ----------------------------------------------------------------------------------------------- shared

def check_positive_int(name: str, value, minimum: int = 1) -> int:
    """``value`` checked to be an integer >= ``minimum`` (``ValueError`` naming ``name`` otherwise)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_shape(name: str, shape, ndim: int, minimum: int) -> tuple[int, ...]:
    """``shape`` checked to be ``ndim`` integers >= ``minimum``, as a tuple."""
    shape = tuple(shape) if isinstance(shape, (tuple, list)) else None
    if (
        shape is None
        or len(shape) != ndim
        or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= minimum for s in shape)
    ):
        raise ValueError(f"{name} must be {ndim} integers >= {minimum}, got {shape!r}")
    return tuple(int(s) for s in shape)


def check_spacing(name: str, spacing, ndim: int) -> tuple[float, ...]:
    """``spacing`` checked to be ``ndim`` positive finite floats, as a tuple."""
    try:
        values = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {ndim} positive finite floats, got {spacing!r}") from None
    if len(values) != ndim or not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"{name} must be {ndim} positive finite floats, got {spacing!r}")
    return values


def smooth_noise(rng: np.random.Generator, shape, sigma) -> np.ndarray:
    """Gaussian-smoothed white noise rescaled to zero mean and unit standard deviation.

    For wide kernels the noise is drawn on a grid coarser by ``step = sigma // 3`` per axis (still several
    samples per kernel width), smoothed there and interpolated back (order 1): the same kind of field at a
    fraction of the cost."""
    shape = tuple(int(n) for n in shape)
    sigma = np.broadcast_to(np.asarray(sigma, dtype=float), (len(shape),))
    step = np.maximum(1, np.floor(sigma / 3.0)).astype(int)
    if np.any(step > 1):
        coarse = tuple(int(np.ceil(n / k)) + 1 for n, k in zip(shape, step))
        small = ndimage.gaussian_filter(rng.standard_normal(coarse), sigma / step, mode="reflect")
        field = ndimage.zoom(small, step, order=1, grid_mode=False)[tuple(slice(0, n) for n in shape)]
    else:
        field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
    std = field.std()
    return (field - field.mean()) / (std if std > 0 else 1.0)


def grid_mm(shape, spacing) -> list[np.ndarray]:
    """Open (broadcastable) coordinate grids in mm, centred on the array's centre."""
    grids = []
    for axis, (n, s) in enumerate(zip(shape, spacing)):
        g = (np.arange(n) - (n - 1) / 2.0) * s
        view = [1] * len(shape)
        view[axis] = n
        grids.append(g.reshape(view))
    return grids


def ellipsoid_q(grids, center, semi_axes) -> np.ndarray:
    """Normalised squared distance ``sum(((g - c) / a) ** 2)``: < 1 inside the ellipsoid."""
    q = 0.0
    for g, c, a in zip(grids, center, semi_axes):
        q = q + ((g - c) / a) ** 2
    return q


def _lesion_patch(rng: np.random.Generator, radii_vox, irregularity: float) -> np.ndarray:
    """One irregular lesion as a small boolean patch centred on its array's centre.

    The shape is a union of one to four ellipsoids (the first centred, the others offset by about half a
    radius and smaller), whose boundary is perturbed by smoothed noise of relative amplitude
    ``irregularity``. Only the connected part holding the centre voxel is kept, so one placement is one
    lesion (before it possibly merges with a neighbour). Radii below half a voxel give a single voxel.
    """
    radii = np.maximum(np.asarray(radii_vox, dtype=float), 0.5)
    half = np.ceil(1.8 * radii).astype(int) + 1
    grids = np.meshgrid(*[np.arange(-h, h + 1, dtype=float) for h in half], indexing="ij", sparse=True)
    q = ellipsoid_q(grids, np.zeros(len(radii)), radii)
    n_extra = int(rng.integers(0, 4)) if radii.max() >= 1.5 else 0
    for _ in range(n_extra):
        offset = rng.normal(0.0, 0.55, radii.size) * radii
        q = np.minimum(q, ellipsoid_q(grids, offset, radii * rng.uniform(0.45, 0.85)))
    if radii.max() >= 1.5:
        noise = smooth_noise(rng, q.shape, sigma=max(0.8, float(radii.min()) / 2.5))
        inside = q < 1.0 + irregularity * noise
    else:
        inside = q < 1.0
    center = tuple(half)
    inside[center] = True
    labels, _ = ndimage.label(inside, structure=np.ones((3,) * inside.ndim, dtype=bool))
    return labels == labels[center]


def _paste(target: np.ndarray, patch: np.ndarray, center) -> None:
    """OR ``patch`` (centred on ``center``) into ``target`` in place, clipped at the borders."""
    src, dst = [], []
    for c, p, n in zip(center, patch.shape, target.shape):
        start = int(c) - p // 2
        lo, hi = max(start, 0), min(start + p, n)
        src.append(slice(lo - start, hi - start))
        dst.append(slice(lo, hi))
    target[tuple(dst)] |= patch[tuple(src)]


def place_lesions(
    rng: np.random.Generator,
    allowed: np.ndarray,
    radii_mm: np.ndarray,
    spacing,
    *,
    irregularity: float,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Union mask of lesions with the given radii (mm, isotropic), centred on allowed voxels, clipped to
    ``allowed``. ``weights`` (same shape as ``allowed``) biases where lesion centres fall."""
    out = np.zeros(allowed.shape, dtype=bool)
    candidates = np.flatnonzero(allowed)
    if candidates.size == 0 or radii_mm.size == 0:
        return out
    p = None
    if weights is not None:
        w = weights.ravel()[candidates].astype(float)
        p = w / w.sum()
    centers = rng.choice(candidates, size=radii_mm.size, p=p)
    spacing = np.asarray(spacing, dtype=float)
    for r_mm, flat in zip(radii_mm, centers):
        patch = _lesion_patch(rng, r_mm / spacing, irregularity)
        _paste(out, patch, np.unravel_index(flat, allowed.shape))
    return out & allowed


def lognormal_radii(rng, n, *, median_mm, sigma, low_mm, high_mm) -> np.ndarray:
    """``n`` log-normal radii (median ``median_mm``, log-sd ``sigma``) clipped to ``[low_mm, high_mm]``."""
    return np.clip(rng.lognormal(np.log(median_mm), sigma, size=n), low_mm, high_mm)


def overdispersed_count(rng, mean: float) -> int:
    """A count with mean ``mean`` and a heavy right tail (Poisson with a gamma-distributed rate)."""
    return int(rng.poisson(rng.gamma(2.0, mean / 2.0)))


def save_nifti(path: Path, zyx: np.ndarray, spacing, *, dtype, origin_mm=(0.0, 0.0, 0.0)) -> None:
    """Write a ``(z, y, x)`` array as NIfTI (stored ``(x, y, z)``) with a diagonal affine."""
    sz, sy, sx = spacing
    affine = np.diag([sx, sy, sz, 1.0])
    affine[:3, 3] = origin_mm
    img = nib.Nifti1Image(np.ascontiguousarray(zyx.transpose(2, 1, 0)).astype(dtype), affine)
    img.set_data_dtype(dtype)
    img.header.set_xyzt_units("mm", "sec")
    path.parent.mkdir(parents=True, exist_ok=True)
    data = img.to_bytes()
    if path.name.endswith(".gz"):
        # fast compression and a fixed gzip timestamp, so the same data give byte-identical files
        data = gzip.compress(data, compresslevel=1, mtime=0)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
