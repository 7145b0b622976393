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

Two regimes (``standin``, :data:`STANDINS`), chosen in a profile's ``synthetic_options``:

- ``"voxel-floor"`` (the generators' default; the smoke profile): the stand-ins described above, with crisp
  annotations that equal the rendered lesions; real WMH has many lesions at the voxel floor, and there boundary
  metrics are nearly a yes/no quantity.
- ``"paper"`` (the default profile): the regime the papers report (Table 4.5: the smallest quartile reaches about
  1.5 % of the image area; Table 4.2: Q1 Dice 0.72-0.74, HD95 6.8-9.5, ASD 1.5-2.1, contour F1 0.65-0.75). Larger
  lesions, elongated (:func:`place_lesions`' ``elongation``) and irregular; wider partial-volume margins and
  intensity heterogeneity inside lesions and background (each generator); and a second rater
  (:func:`annotation_noise`): the written reference is the rendered (clean) lesion with part of its contour moved
  by one voxel, drawn once per lesion. The clean masks are kept under :data:`CLEAN_FOLDER` (same relative paths;
  no loader reads that folder), and :func:`annotation_ceiling` measures the ceiling that the noise sets.

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
    "lognormal_radii", "overdispersed_count", "save_nifti", "STANDINS", "CLEAN_FOLDER", "check_standin",
    "annotation_noise", "clean_path", "drop_fragments",
]

#: The stand-ins' regimes (see the module docstring).
STANDINS = ("paper", "voxel-floor")
#: Folder (under a stand-in's root) holding the clean masks of the ``paper`` regime, at the masks' relative paths.
CLEAN_FOLDER = "clean_reference"


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


def check_standin(standin) -> str:
    """``standin`` checked to be one of :data:`STANDINS`."""
    if standin not in STANDINS:
        raise ValueError(f"standin must be one of {STANDINS}, got {standin!r}")
    return str(standin)


def clean_path(root, mask_path) -> Path:
    """Where the clean mask of ``mask_path`` (a path under ``root``) is kept: ``root/CLEAN_FOLDER/<relative
    folder>/clean_<name>`` (the prefix keeps it out of loaders that search the whole tree by file name)."""
    rel = Path(mask_path).relative_to(Path(root))
    return Path(root) / CLEAN_FOLDER / rel.parent / f"clean_{rel.name}"


def _rotate_in_plane(grids, angle: float):
    """The grids with their last two axes rotated by ``angle`` (radians)."""
    *rest, gy, gx = grids
    c, s = np.cos(angle), np.sin(angle)
    return [*rest, c * gy + s * gx, -s * gy + c * gx]


def _lesion_patch(rng: np.random.Generator, radii_vox, irregularity: float, elongation: float = 1.0) -> np.ndarray:
    """One irregular lesion as a small boolean patch centred on its array's centre.

    The shape is a union of one to four ellipsoids (the first centred, the others offset by about half a
    radius and smaller), whose boundary is perturbed by smoothed noise of relative amplitude
    ``irregularity``. Only the connected part holding the centre voxel is kept, so one placement is one
    lesion (before it possibly merges with a neighbour). Radii below half a voxel give a single voxel.
    ``elongation`` > 1 stretches the lesion in-plane (long axis ``sqrt(elongation)`` times the radius, short axis
    divided by it: the same area) along a random direction (drawn only then).
    """
    radii = np.maximum(np.asarray(radii_vox, dtype=float), 0.5)
    if elongation > 1.0:
        radii = radii.copy()
        radii[-2] *= np.sqrt(elongation)
        radii[-1] /= np.sqrt(elongation)
        reach = np.full(radii.size, radii[-2])
        reach[:-2] = radii[:-2]
        half = np.ceil(1.8 * reach).astype(int) + 1
        grids = np.meshgrid(*[np.arange(-h, h + 1, dtype=float) for h in half], indexing="ij", sparse=False)
        grids = _rotate_in_plane(grids, rng.uniform(0, np.pi))
    else:
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
    elongation: tuple[float, float] | None = None,
    flatten: float = 1.0,
) -> np.ndarray:
    """Union mask of lesions with the given radii (mm, isotropic), centred on allowed voxels, clipped to
    ``allowed``. ``weights`` (same shape as ``allowed``) biases where lesion centres fall. ``elongation``
    ``(low, high)``: each lesion's in-plane aspect ratio, drawn log-uniformly (None: round lesions, nothing drawn);
    ``flatten`` divides the radius along the first axis of a volume (lesions thinner across slices)."""
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
        radii_vox = r_mm / spacing
        if flatten != 1.0 and radii_vox.size == 3:
            radii_vox = radii_vox / np.array([flatten, 1.0, 1.0])
        e = 1.0 if elongation is None else float(np.exp(rng.uniform(np.log(elongation[0]), np.log(elongation[1]))))
        patch = _lesion_patch(rng, radii_vox, irregularity, e)
        _paste(out, patch, np.unravel_index(flat, allowed.shape))
    return out & allowed


def annotation_noise(rng: np.random.Generator, mask: np.ndarray, *, share=(0.25, 0.5),
                     connectivity: int | None = None) -> np.ndarray:
    """A second rater's version of ``mask``: for each lesion (connected component), part of its contour moved by
    one voxel, in-plane (the last two axes), drawn once per lesion.

    Per lesion: an angular sector around its centroid (in-plane), covering ``share`` (drawn uniformly in
    ``(low, high)``) of the full turn from a random start, is moved outwards (one voxel of dilation into the
    background, never touching another lesion) or inwards (one voxel of erosion; the lesion's centre voxel kept),
    each with probability 1/2. Lesions stay separate and non-empty; the outside of the image is never reached.
    ``connectivity``: of the components (default: full, as :func:`helpers.metrics.lesions` labels)."""
    mask = np.asarray(mask, dtype=bool)
    structure = ndimage.generate_binary_structure(mask.ndim, mask.ndim if connectivity is None else connectivity)
    labels, n = ndimage.label(mask, structure=structure)
    out = mask.copy()
    plane = np.zeros((3,) * mask.ndim, dtype=bool)
    centre = (1,) * (mask.ndim - 2)
    plane[centre] = ndimage.generate_binary_structure(2, 1)  # in-plane 4-neighbourhood
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        lo = [max(sl.start - 2, 0) for sl in box]
        hi = [min(sl.stop + 2, size) for sl, size in zip(box, mask.shape)]
        window = tuple(slice(a, b) for a, b in zip(lo, hi))
        comp = labels[window] == k
        others = ndimage.binary_dilation((labels[window] > 0) & ~comp, structure=structure)
        idx = np.nonzero(comp)
        cy, cx = idx[-2].mean(), idx[-1].mean()
        grids = np.meshgrid(*[np.arange(n_) for n_ in comp.shape], indexing="ij", sparse=True)
        angle = np.mod(np.arctan2(grids[-2] - cy, grids[-1] - cx) - rng.uniform(0, 2 * np.pi), 2 * np.pi)
        sector = angle < 2 * np.pi * rng.uniform(*share)
        if rng.random() < 0.5:  # outwards
            grown = ndimage.binary_dilation(comp, structure=plane) & ~comp & sector & ~others
            out[window] |= grown
        else:  # inwards, keeping the voxel nearest the centroid
            edge = comp & ~ndimage.binary_erosion(comp, structure=plane) & sector
            keep = tuple(int(np.round(np.mean(i))) for i in idx)
            if comp[keep]:
                edge[keep] = False
            if (comp & ~edge).any() and ndimage.label(comp & ~edge, structure=structure)[1] == 1:
                out[window] &= ~edge  # (never emptying or splitting the lesion)
    return out


def drop_fragments(mask: np.ndarray, min_section: int) -> np.ndarray:
    """``mask`` without the components whose largest in-plane section (2D: area) is under ``min_section``
    voxels: the slivers left where a lesion was clipped to its allowed region (``paper`` regime)."""
    labels, n = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, dtype=bool))
    if n == 0:
        return mask
    if mask.ndim == 3:
        z = np.broadcast_to(np.arange(mask.shape[0])[:, None, None], mask.shape)[labels > 0]
        per_slice = np.bincount(labels[labels > 0] * mask.shape[0] + z, minlength=(n + 1) * mask.shape[0])
        section = per_slice.reshape(n + 1, mask.shape[0]).max(axis=1)
    else:
        section = np.bincount(labels.ravel(), minlength=n + 1)
    keep = section >= int(min_section)
    keep[0] = False
    return keep[labels]


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
