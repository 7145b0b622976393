"""Synthetic stand-ins for the three datasets, written in exactly the real on-disk layouts.

The stand-ins exist so that the whole study runs (and is tested) without the real data, and so that the real
loaders in :mod:`helpers.data.layouts` are what reads them: every file is written at the path, with the name, format
and label values of the published dataset (see ``DATASETS.md``). They are *not* the real data and nothing
measured on them is a result of the paper.

What they imitate
-----------------
- **WMH** (brain MRI): a head with scalp, skull, cortex (grey matter with sulcal CSF), lateral ventricles and
  white matter; FLAIR (CSF dark, lesions bright) and T1 (lesions dark) on the same grid; a smooth bias field
  and Rician noise; per-site intensity scale and noise level (Utrecht, Singapore, Amsterdam/GE3T).
  White-matter hyperintensities are periventricular caps and deep punctate foci, a few of them large;
  ``wmh.nii.gz`` holds 0 background, 1 WMH, 2 "other pathology" (a lacune-like region in some subjects).
- **LiTS** (abdominal CT): a body with subcutaneous fat, muscle wall, viscera with bowel gas, spine, aorta,
  kidneys and a liver with vessels, in raw Hounsfield units stored as int16, with ``-2048`` outside the
  scanner's circular field of view (real LiTS volumes carry such out-of-range padding). Tumours are
  hypodense (55-85 HU below the liver under 10 HU noise: visible, as most LiTS tumours are), 5-15 per volume
  inside the liver; some volumes have none. Labels 0 background, 1 liver, 2 tumour.
- **IDRiD** (fundus photographs): the background is :func:`skimage.data.retina`, a real colour fundus
  photograph (vessels, optic disc, macula) shipped with scikit-image, resized to IDRiD's 3:2 frame, randomly
  mirrored (left/right eye), rotated and re-coloured per image. Microaneurysms (tiny dark red dots),
  haemorrhages (dark red blots), hard exudates (bright yellow clusters) and soft exudates (pale fluffy
  patches) are blended in with soft edges; their masks are TIFF (nonzero = lesion), a mask file is absent when
  the image has no lesion of that type, and every image has an optic-disc mask.

Lesion sizes are heavy-tailed (log-normal radii: many small lesions, a few large ones; the smallest a few voxels of
radius, see ``WMH_RADIUS_MM``, ``LITS_RADIUS_MM``, ``IDRID_MIN_RADIUS``), margins blurred (partial volume) and shapes irregular
(a union of offset ellipsoids whose boundary is perturbed by smoothed noise), so that the smallest size
quartile is genuinely small (well under 1.5 % of the image area). Everything is a deterministic function of
``seed`` and the size parameters: the same call writes byte-identical NIfTI/TIFF files (JPEG encoding is
deterministic for a given Pillow version).

Conventions: arrays ``(z, y, x)``, spacing in mm per numpy axis; NIfTI files store ``(x, y, z)`` (see
:func:`helpers.data.layouts.to_nifti_array`). Generators return a dict of their parameters (for the data manifest).
Each dataset's generator is named in its registry entry (:mod:`helpers.data.datasets`).
"""

from __future__ import annotations

import gzip
import json
import os
from functools import lru_cache
from pathlib import Path

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import tifffile
from scipy import ndimage
from skimage import data as skimage_data
from skimage.transform import resize, rotate

# the real layout's mask folder names, shared with the loader so that writer and reader cannot drift apart
from helpers.data.layouts import IDRID_FOLDERS

__all__ = [
    "WMH_SITES", "WMH_RADIUS_MM", "LITS_RADIUS_MM", "LITS_CONTRAST_HU", "LITS_NOISE_HU", "IDRID_MIN_RADIUS",
    "write_wmh", "write_lits", "write_idrid",
]

WMH_SITES = ("Utrecht", "Singapore", "Amsterdam")
#: First subject id per site in the challenge's numbering (training ids; test ids continue after them).
_WMH_FIRST_ID = {"Utrecht": 0, "Singapore": 50, "Amsterdam": 100}
#: Relative intensity scale and noise level per site (sites differ in scanner and protocol).
_WMH_SITE_SCALE = {"Utrecht": (1.0, 0.025), "Singapore": (1.3, 0.035), "Amsterdam": (0.8, 0.03)}

# Lesion radii (low, median, high). The smallest lesions are a few voxels of radius on the study's grids
# (default profile: 1.8 mm WMH pixels, 3.0 mm LiTS pixels, IDRiD frames 340 px high), i.e. about 8 to 60 voxels of
# in-plane area, so that their boundary is something a model can place; the smallest quartile still stays far below
# 1.5 % of the image area.
#: WMH lesion radii in mm (log-normal, sigma 0.5, clipped).
WMH_RADIUS_MM = (4.0, 5.5, 14.0)
#: LiTS tumour radii in mm (log-normal, sigma 0.5, clipped).
LITS_RADIUS_MM = (6.0, 8.0, 30.0)
#: LiTS tumour contrast (hypodense, HU drawn uniformly per volume) and the image noise (HU, sd).
LITS_CONTRAST_HU = (55.0, 85.0)
LITS_NOISE_HU = 10.0
#: IDRiD: the smallest lesion radius as a share of the fundus diameter (1.6 px at 340 px high).
IDRID_MIN_RADIUS = 0.0045


# ----------------------------------------------------------------------------------------------- shared

def _check_positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_shape(name: str, shape, ndim: int, minimum: int) -> tuple[int, ...]:
    shape = tuple(shape) if isinstance(shape, (tuple, list)) else None
    if (
        shape is None
        or len(shape) != ndim
        or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= minimum for s in shape)
    ):
        raise ValueError(f"{name} must be {ndim} integers >= {minimum}, got {shape!r}")
    return tuple(int(s) for s in shape)


def _check_spacing(name: str, spacing, ndim: int) -> tuple[float, ...]:
    try:
        values = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {ndim} positive finite floats, got {spacing!r}") from None
    if len(values) != ndim or not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"{name} must be {ndim} positive finite floats, got {spacing!r}")
    return values


def _smooth_noise(rng: np.random.Generator, shape, sigma) -> np.ndarray:
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


def _grid_mm(shape, spacing) -> list[np.ndarray]:
    """Open (broadcastable) coordinate grids in mm, centred on the array's centre."""
    grids = []
    for axis, (n, s) in enumerate(zip(shape, spacing)):
        g = (np.arange(n) - (n - 1) / 2.0) * s
        view = [1] * len(shape)
        view[axis] = n
        grids.append(g.reshape(view))
    return grids


def _ellipsoid_q(grids, center, semi_axes) -> np.ndarray:
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
    q = _ellipsoid_q(grids, np.zeros(len(radii)), radii)
    n_extra = int(rng.integers(0, 4)) if radii.max() >= 1.5 else 0
    for _ in range(n_extra):
        offset = rng.normal(0.0, 0.55, radii.size) * radii
        q = np.minimum(q, _ellipsoid_q(grids, offset, radii * rng.uniform(0.45, 0.85)))
    if radii.max() >= 1.5:
        noise = _smooth_noise(rng, q.shape, sigma=max(0.8, float(radii.min()) / 2.5))
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


def _place_lesions(
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


def _lognormal_radii(rng, n, *, median_mm, sigma, low_mm, high_mm) -> np.ndarray:
    return np.clip(rng.lognormal(np.log(median_mm), sigma, size=n), low_mm, high_mm)


def _overdispersed_count(rng, mean: float) -> int:
    """A count with mean ``mean`` and a heavy right tail (Poisson with a gamma-distributed rate)."""
    return int(rng.poisson(rng.gamma(2.0, mean / 2.0)))


def _save_nifti(path: Path, zyx: np.ndarray, spacing, *, dtype, origin_mm=(0.0, 0.0, 0.0)) -> None:
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


# ----------------------------------------------------------------------------------------------- WMH

def _wmh_subject(rng: np.random.Generator, shape, spacing, site: str, *, lesions_per_case: float,
                 p_other_pathology: float):
    """One synthetic WMH subject: FLAIR, T1 ``(z, y, x)`` float32 and the label map (uint8 0/1/2)."""
    tissues, atrophy = _wmh_tissues(rng, shape, spacing)
    wmh, other = _wmh_lesions(rng, tissues, spacing, lesions_per_case=lesions_per_case * atrophy,
                              p_other_pathology=p_other_pathology)
    flair, t1 = _wmh_images(rng, tissues, wmh, other, spacing, site)
    label = np.zeros(shape, dtype=np.uint8)
    label[wmh] = 1
    label[other & ~wmh] = 2
    return flair, t1, label


def _wmh_tissues(rng: np.random.Generator, shape, spacing) -> tuple[dict, float]:
    """The head's tissue masks (scalp, skull, grey matter, white matter, sulci, ventricles) and the atrophy
    factor (ventricle size, which goes with lesion load)."""
    gz, gy, gx = _grid_mm(shape, spacing)
    smooth = [max(0.5, 12.0 / s) for s in spacing]  # ~12 mm correlation length
    size = rng.uniform(0.9, 1.08)
    z0 = rng.uniform(-8, 8)
    gz = gz + z0
    wobble = _smooth_noise(rng, shape, smooth)
    head_q = _ellipsoid_q((gz, gy, gx), (0, 0, 0), (95 * size, 92 * size, 74 * size))
    head_q = head_q * (1 + 0.03 * wobble)
    brain_q = _ellipsoid_q((gz, gy, gx), (0, 3, 0), (82 * size, 81 * size, 63 * size)) * (1 + 0.04 * wobble)
    head = head_q < 1
    brain = brain_q < 1
    skull = head & (head_q >= (1 - 0.10) ** 2) & ~brain
    scalp = head & ~skull & ~brain
    # cortex: an outer band of varying thickness with sulcal CSF cutting into it
    gyri = _smooth_noise(rng, shape, [max(0.5, 3.0 / s) for s in spacing])
    depth = 1 - np.sqrt(np.clip(brain_q, 0, None))  # 0 at the brain surface, 1 at its centre
    gm = brain & (depth < 0.10 + 0.04 * gyri)
    sulci = brain & (depth < 0.11) & (gyri > 1.1)
    # lateral ventricles, larger with atrophy (and atrophy goes with lesion load)
    atrophy = rng.uniform(0.7, 1.5)
    vent = np.zeros(shape, dtype=bool)
    for side in (-1, 1):
        vq = _ellipsoid_q((gz, gy, gx), (0, -2, side * 10 * atrophy), (24, 32 * atrophy, 7 * atrophy))
        vent |= vq < 1
    vent &= brain
    wm = brain & ~gm & ~sulci & ~vent
    return {"scalp": scalp, "skull": skull, "gm": gm, "wm": wm, "sulci": sulci, "vent": vent}, atrophy


def _wmh_lesions(rng: np.random.Generator, tissues: dict, spacing, *, lesions_per_case: float,
                 p_other_pathology: float) -> tuple[np.ndarray, np.ndarray]:
    """WMH (periventricular, weighted towards the ventricle surface, and deep) and the "other pathology"."""
    wm, vent = tissues["wm"], tissues["vent"]
    dist_vent = ndimage.distance_transform_edt(~vent, sampling=spacing)
    weight = np.exp(-dist_vent / 8.0) * 3.0 + 0.3
    n = max(1, _overdispersed_count(rng, lesions_per_case))
    radii = _lognormal_radii(rng, n, median_mm=WMH_RADIUS_MM[1], sigma=0.5, low_mm=WMH_RADIUS_MM[0],
                             high_mm=WMH_RADIUS_MM[2])
    n_large = int(rng.integers(0, 3))
    radii = np.concatenate([radii, rng.uniform(5.0, 11.0, n_large)])
    # centres at least 3 mm inside the white matter, so that a small lesion is not cut to a sliver by its edge
    core = ndimage.binary_erosion(wm, np.ones((1, 3, 3), bool), iterations=max(1, int(round(3.0 / min(spacing[1:])))))
    wmh = _place_lesions(rng, wm, radii, spacing, irregularity=0.5, weights=weight * core if core.any() else weight)
    other = np.zeros(wm.shape, dtype=bool)
    if rng.random() < p_other_pathology:
        other = _place_lesions(rng, wm & ~wmh, rng.uniform(2.5, 6.0, 1), spacing, irregularity=0.3)
    return wmh, other


def _wmh_images(rng: np.random.Generator, tissues: dict, wmh, other, spacing, site: str):
    """FLAIR and T1 from the tissues and lesions, with blur, bias field, site scale and Rician noise."""
    shape = wmh.shape
    flair = np.full(shape, 0.02)
    t1 = np.full(shape, 0.02)
    for name, f, t in (("scalp", 0.85, 1.15), ("skull", 0.08, 0.1), ("gm", 1.25, 0.68), ("wm", 1.0, 1.0),
                       ("sulci", 0.22, 0.3), ("vent", 0.18, 0.25)):
        flair[tissues[name]] = f
        t1[tissues[name]] = t
    contrast = rng.uniform(0.35, 0.6)  # lesions brighter than cortex (1.25), yet well under 2x white matter
    lesion_blur = ndimage.gaussian_filter(wmh.astype(float), [0.4, 0.7, 0.7])
    flair += contrast * lesion_blur
    t1 -= 0.25 * lesion_blur
    flair[other] = 0.3
    t1[other] = 0.35
    bias = np.exp(0.08 * _smooth_noise(rng, shape, [max(0.5, 60.0 / s) for s in spacing]))
    scale, noise = _WMH_SITE_SCALE[site]
    images = []
    for img in (flair, t1):
        img = ndimage.gaussian_filter(img, [0.5, 0.6, 0.6]) * bias
        n1, n2 = rng.normal(0, noise, (2, *shape))
        img = np.sqrt((img + n1) ** 2 + n2**2)  # Rician magnitude noise
        images.append((img * 400.0 * scale).astype(np.float32))
    return images[0], images[1]


def write_wmh(
    root,
    *,
    seed: int,
    n_training: int = 4,
    n_test: int = 2,
    shape=(16, 96, 96),
    spacing=None,
    field_of_view_mm: float = 230.0,
    vintage: str = "2022",
    compressed: bool = True,
    lesions_per_case: float = 30.0,
    p_other_pathology: float = 0.4,
) -> dict:
    """Write a synthetic WMH Segmentation Challenge tree under ``root``.

    Layout 2022 (DataverseNL release)::

        root/training/{Utrecht,Singapore}/<id>/{pre/FLAIR.nii.gz, pre/T1.nii.gz, wmh.nii.gz}
        root/training/Amsterdam/GE3T/<id>/...      (the extra scanner level of Amsterdam)
        root/test/...                              (same, for the official test subjects)

    Layout 2017: ``root/{Utrecht,Singapore,GE3T}/<id>/...`` (no training/test level; all subjects there).
    Only the files the loader reads are written (``orig/`` and ``pre/3DT1`` are omitted).

    Parameters
    ----------
    root : path
        Folder to write into (created).
    seed : int
        Seed of the generator; the output is a deterministic function of it and the other parameters.
    n_training, n_test : int
        Subjects in the official training and test subsets; sites are assigned round-robin
        (Utrecht, Singapore, Amsterdam). ``n_test`` may be 0.
    shape : (int, int, int)
        Volume shape ``(z, y, x)``.
    spacing : (float, float, float), optional
        Voxel size in mm ``(z, y, x)``. Default: 3 mm slices and an in-plane size that makes the in-plane
        field of view ``field_of_view_mm`` (so a head has a realistic physical size at any matrix size).
    vintage : {"2022", "2017"}
        Which release's tree to write.
    compressed : bool
        ``.nii.gz`` (default) or uncompressed ``.nii`` (as some mirrors store them).
    lesions_per_case : float
        Mean number of lesion placements per subject (over-dispersed; nearby placements may merge).
    p_other_pathology : float
        Probability that a subject has a label-2 region ("other pathology", ignored by the evaluation).

    Returns
    -------
    dict
        The generator's parameters, for the data manifest.
    """
    n_training = _check_positive_int("n_training", n_training)
    n_test = _check_positive_int("n_test", n_test, minimum=0)
    shape = _check_shape("shape", shape, 3, 4)
    if spacing is None:
        spacing = (3.0, field_of_view_mm / shape[1], field_of_view_mm / shape[2])
    spacing = _check_spacing("spacing", spacing, 3)
    if vintage not in ("2022", "2017"):
        raise ValueError(f"vintage must be '2022' or '2017', got {vintage!r}")
    root = Path(root)
    ext = ".nii.gz" if compressed else ".nii"
    rng = np.random.default_rng(seed)
    counters = dict(_WMH_FIRST_ID)
    subjects = [("training", i) for i in range(n_training)] + [("test", i) for i in range(n_test)]
    for subset, index in subjects:
        site = WMH_SITES[index % len(WMH_SITES)]
        subject_id = counters[site]
        counters[site] += 1
        site_path = Path(site, "GE3T") if site == "Amsterdam" else Path(site)
        if vintage == "2017":
            folder = root / ("GE3T" if site == "Amsterdam" else site) / str(subject_id)
        else:
            folder = root / subset / site_path / str(subject_id)
        sub_rng = np.random.default_rng(rng.integers(2**63))
        flair, t1, label = _wmh_subject(sub_rng, shape, spacing, site, lesions_per_case=lesions_per_case,
                                        p_other_pathology=p_other_pathology)
        origin = (-shape[2] * spacing[2] / 2, -shape[1] * spacing[1] / 2, -shape[0] * spacing[0] / 2)
        _save_nifti(folder / "pre" / f"FLAIR{ext}", flair, spacing, dtype=np.float32, origin_mm=origin)
        _save_nifti(folder / "pre" / f"T1{ext}", t1, spacing, dtype=np.float32, origin_mm=origin)
        _save_nifti(folder / f"wmh{ext}", label, spacing, dtype=np.uint8, origin_mm=origin)
    return {"dataset": "wmh", "seed": int(seed), "n_training": n_training, "n_test": n_test, "shape": list(shape),
            "spacing": list(spacing), "vintage": vintage, "compressed": bool(compressed),
            "lesions_per_case": float(lesions_per_case), "p_other_pathology": float(p_other_pathology)}


# ----------------------------------------------------------------------------------------------- LiTS

def _lits_volume(rng: np.random.Generator, shape, spacing, *, tumours_per_volume, has_tumour: bool):
    """One synthetic abdominal CT: HU volume int16 ``(z, y, x)`` and labels uint8 (0/1/2)."""
    grids = _grid_mm(shape, spacing)
    hu, inside, size = _abdomen(rng, grids, shape, spacing)
    liver = _liver(rng, hu, grids, inside, size, spacing)
    tumour = np.zeros(shape, dtype=bool)
    if has_tumour:
        tumour = _tumours(rng, hu, liver, spacing, tumours_per_volume)
    gy, gx = grids[1], grids[2]
    hu = ndimage.gaussian_filter(hu, [0.4, 0.6, 0.6]) + rng.normal(0, LITS_NOISE_HU, shape)
    fov = (gy**2 + gx**2) < (0.5 * min(shape[1] * spacing[1], shape[2] * spacing[2])) ** 2
    hu = np.where(np.broadcast_to(fov, shape), hu, -2048.0)
    label = np.zeros(shape, dtype=np.uint8)
    label[liver | tumour] = 1
    label[tumour] = 2
    return np.round(hu).astype(np.int16), label


def _abdomen(rng: np.random.Generator, grids, shape, spacing) -> tuple[np.ndarray, np.ndarray, float]:
    """Body with fat, muscle wall, viscera, bowel gas, spine, aorta and kidneys in HU; the body inside its fat and
    muscle wall (where the liver may lie), and the body size factor."""
    gz, gy, gx = grids
    smooth = [max(0.5, 15.0 / s) for s in spacing]
    wobble = _smooth_noise(rng, shape, smooth)
    size = rng.uniform(0.9, 1.1)
    body_q = _ellipsoid_q((gz * 0, gy, gx), (0, 8, 0), (1, 118 * size, 160 * size)) * (1 + 0.03 * wobble)
    body = body_q < 1
    depth = 1 - np.sqrt(np.clip(body_q, 0, None))
    fat = body & (depth < 0.10 + 0.03 * wobble)
    muscle = body & ~fat & (depth < 0.16)
    hu = np.full(shape, -1000.0)
    hu[body] = 35.0  # viscera
    visceral_fat = body & (_smooth_noise(rng, shape, [max(0.5, 6.0 / s) for s in spacing]) > 1.0)
    hu[visceral_fat] = -90.0
    gas = body & ~fat & ~muscle & (_smooth_noise(rng, shape, [max(0.5, 4.0 / s) for s in spacing]) > 2.0)
    hu[gas] = -850.0
    hu[fat] = -100.0
    hu[muscle] = 45.0
    # spine (vertebral body with cortex), aorta, kidneys
    spine_q = _ellipsoid_q((gy, gx), (78 * size, 0), (17, 20))
    hu[(spine_q < 1) & body] = 250.0
    hu[(spine_q < 0.7) & body] = 180.0
    hu[(_ellipsoid_q((gy, gx), (50 * size, 12), (11, 11)) < 1) & body] = 170.0
    for side in (-1, 1):
        kq = _ellipsoid_q((gz, gy, gx), (rng.uniform(-20, 20), 60 * size, side * 70 * size), (45, 28, 22))
        hu[(kq < 1) & body] = 150.0
    return hu, body & ~fat & ~muscle, size


def _liver(rng: np.random.Generator, hu: np.ndarray, grids, inside: np.ndarray, size: float, spacing) -> np.ndarray:
    """The liver (written into ``hu``, with brighter vessels): patient's right (image left), anterior-lateral,
    irregular outline."""
    gz, gy, gx = grids
    shape = hu.shape
    lz = rng.uniform(-15, 15)
    liver_q = _ellipsoid_q((gz, gy, gx), (lz, -8 * size, -58 * size), (90, 78 * size, 66 * size))
    liver_q = liver_q * (1 + 0.12 * _smooth_noise(rng, shape, [max(0.5, 20.0 / s) for s in spacing]))
    liver = (liver_q < 1) & inside
    liver_hu = rng.uniform(95, 115)
    hu[liver] = liver_hu
    vessels = liver & (np.abs(_smooth_noise(rng, shape, [max(0.5, 5.0 / s) for s in spacing])) < 0.06)
    hu[vessels] = liver_hu + 45
    return liver


def _tumours(rng: np.random.Generator, hu: np.ndarray, liver: np.ndarray, spacing, tumours_per_volume) -> np.ndarray:
    """Hypodense tumours inside the liver (subtracted from ``hu`` with a partial-volume margin)."""
    n = int(rng.integers(tumours_per_volume[0], tumours_per_volume[1] + 1))
    radii = _lognormal_radii(rng, n, median_mm=LITS_RADIUS_MM[1], sigma=0.5, low_mm=LITS_RADIUS_MM[0],
                             high_mm=LITS_RADIUS_MM[2])
    # centres at least 5 mm inside the liver, so that a small tumour is not cut away by the liver outline
    core = ndimage.binary_erosion(liver, iterations=max(1, int(round(5.0 / min(spacing[1:])))))
    tumour = _place_lesions(rng, liver, radii, spacing, irregularity=0.35,
                            weights=core.astype(float) if core.any() else None)
    lesion_blur = ndimage.gaussian_filter(tumour.astype(float), [0.4, 0.7, 0.7])  # partial-volume margin
    hu -= rng.uniform(*LITS_CONTRAST_HU) * lesion_blur  # hypodense, several times the noise
    return tumour


def write_lits(
    root,
    *,
    seed: int,
    n_volumes: int = 6,
    shape=(16, 96, 96),
    spacing=None,
    field_of_view_mm: float = 380.0,
    layout: str = "batches",
    tumours_per_volume=(5, 15),
    p_no_tumour: float = 0.15,
) -> dict:
    """Write a synthetic LiTS training set under ``root``.

    Layout ``"batches"`` (the LiTS archives): ``root/Training Batch 1/volume-<n>.nii`` and
    ``segmentation-<n>.nii`` for ids 0-27, ``Training Batch 2/`` for 28 on; uncompressed NIfTI, ids not
    zero-padded. Layout ``"msd"`` (Medical Segmentation Decathlon): ``root/Task03_Liver/dataset.json``,
    ``imagesTr/liver_<n>.nii.gz``, ``labelsTr/liver_<n>.nii.gz``.

    Parameters
    ----------
    root : path
    seed : int
    n_volumes : int
        Number of labelled volumes.
    shape : (int, int, int)
        ``(z, y, x)``.
    spacing : (float, float, float), optional
        mm ``(z, y, x)``; default 2.5 mm slices and an in-plane size giving ``field_of_view_mm``.
    layout : {"batches", "msd"}
    tumours_per_volume : (int, int)
        Inclusive range of the number of tumour placements in a volume that has tumours (uniform; nearby
        placements may merge). LiTS volumes with tumours hold a handful to a dozen or so.
    p_no_tumour : float in [0, 1)
        Share of volumes without any tumour (as some LiTS volumes): exactly ``round(p_no_tumour * n_volumes)``
        of them, chosen at random but never the first volume, so a dataset is never tumour-free.

    Returns
    -------
    dict
        The generator's parameters.
    """
    n_volumes = _check_positive_int("n_volumes", n_volumes)
    shape = _check_shape("shape", shape, 3, 4)
    if spacing is None:
        spacing = (2.5, field_of_view_mm / shape[1], field_of_view_mm / shape[2])
    spacing = _check_spacing("spacing", spacing, 3)
    if layout not in ("batches", "msd"):
        raise ValueError(f"layout must be 'batches' or 'msd', got {layout!r}")
    root = Path(root)
    counts = _check_tumour_counts(tumours_per_volume)
    if not (0 <= p_no_tumour < 1):
        raise ValueError(f"p_no_tumour must be in [0, 1), got {p_no_tumour!r}")
    rng = np.random.default_rng(seed)
    # exactly round(p_no_tumour * n_volumes) tumour-free volumes (never volume 0), at random positions
    n_empty = min(int(round(p_no_tumour * n_volumes)), n_volumes - 1)
    # (drawn from a generator of its own, so volume i is the same whatever n_volumes is)
    empty = set((1 + np.random.default_rng([seed, 1]).permutation(n_volumes - 1)[:n_empty]).tolist())
    training = []
    for i in range(n_volumes):
        sub_rng = np.random.default_rng(rng.integers(2**63))
        has_tumour = i not in empty
        hu, label = _lits_volume(sub_rng, shape, spacing, tumours_per_volume=counts, has_tumour=has_tumour)
        origin = (shape[2] * spacing[2] / 2, shape[1] * spacing[1] / 2, -shape[0] * spacing[0] * i)
        entry = _save_lits_volume(root, layout, i, hu, label, spacing, origin)
        if entry is not None:
            training.append(entry)
    if layout == "msd":
        _write_msd_description(root / "Task03_Liver", training)
    return {"dataset": "lits", "seed": int(seed), "n_volumes": n_volumes, "shape": list(shape),
            "spacing": list(spacing), "layout": layout, "tumours_per_volume": list(counts),
            "p_no_tumour": float(p_no_tumour)}


def _check_tumour_counts(tumours_per_volume) -> tuple[int, int]:
    counts = tuple(tumours_per_volume) if isinstance(tumours_per_volume, (tuple, list)) else ()
    if len(counts) != 2 or not all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in counts) \
            or not 1 <= counts[0] <= counts[1]:
        raise ValueError(f"tumours_per_volume must be two integers 1 <= low <= high, got {tumours_per_volume!r}")
    return int(counts[0]), int(counts[1])


def _save_lits_volume(root: Path, layout: str, i: int, hu, label, spacing, origin) -> dict | None:
    """Volume ``i`` and its segmentation in the chosen layout; for MSD the ``dataset.json`` training entry."""
    if layout == "batches":
        folder = root / ("Training Batch 1" if i < 28 else "Training Batch 2")
        _save_nifti(folder / f"volume-{i}.nii", hu, spacing, dtype=np.int16, origin_mm=origin)
        _save_nifti(folder / f"segmentation-{i}.nii", label, spacing, dtype=np.uint8, origin_mm=origin)
        return None
    task = root / "Task03_Liver"
    _save_nifti(task / "imagesTr" / f"liver_{i}.nii.gz", hu, spacing, dtype=np.int16, origin_mm=origin)
    _save_nifti(task / "labelsTr" / f"liver_{i}.nii.gz", label, spacing, dtype=np.uint8, origin_mm=origin)
    return {"image": f"./imagesTr/liver_{i}.nii.gz", "label": f"./labelsTr/liver_{i}.nii.gz"}


def _write_msd_description(task: Path, training: list[dict]) -> None:
    description = {
        "name": "Liver", "description": "Liver and tumour segmentation (synthetic stand-in)",
        "modality": {"0": "CT"}, "labels": {"0": "background", "1": "liver", "2": "cancer"},
        "numTraining": len(training), "numTest": 0, "training": training, "test": [],
    }
    task.mkdir(parents=True, exist_ok=True)
    (task / "dataset.json").write_text(json.dumps(description, indent=4), encoding="utf-8")


# ----------------------------------------------------------------------------------------------- IDRiD

@lru_cache(maxsize=1)
def _retina_background() -> tuple[np.ndarray, tuple[float, float], float]:
    """The scikit-image fundus photograph as float RGB in [0, 255], its optic-disc centre (row, col) and
    radius in its own pixels. The disc is located as the brightest spot after heavy smoothing; its radius
    (90 px of 1411) was measured on the photograph."""
    img = skimage_data.retina().astype(np.float32)
    smooth = ndimage.gaussian_filter(img.mean(axis=-1), 20)
    center = np.unravel_index(int(np.argmax(smooth)), smooth.shape)
    return img, (float(center[0]), float(center[1])), 90.0


@lru_cache(maxsize=4)
def _retina_for_height(height: int) -> tuple[np.ndarray, tuple[float, float], float]:
    """The fundus photograph shrunk once (anti-aliased) to about the size a frame of ``height`` needs, with its
    optic-disc centre and radius rescaled; per-image resizing then starts from this smaller copy."""
    base, (od_r, od_c), od_rad = _retina_background()
    side = min(base.shape[0], int(round(1.25 * height)))
    f = side / base.shape[0]
    small = resize(base, (side, side), order=1, anti_aliasing=True, preserve_range=True).astype(np.float32)
    return small, (od_r * f, od_c * f), od_rad * f


def _idrid_frame(rng: np.random.Generator, height: int, width: int):
    """A randomly mirrored, rotated and re-coloured fundus in an IDRiD-like 3:2 frame: RGB float, the
    field-of-view mask and the optic-disc mask."""
    base, (od_r, od_c), od_rad = _retina_for_height(height)
    diameter = int(round(height * 1.04 * rng.uniform(0.97, 1.03)))
    factor = diameter / base.shape[0]
    fundus = resize(base, (diameter, diameter), order=1, anti_aliasing=True, preserve_range=True)
    disc = _ellipsoid_q(np.ogrid[:diameter, :diameter], (od_r * factor, od_c * factor),
                        (od_rad * factor, od_rad * factor)) < 1
    fov = _ellipsoid_q(np.ogrid[:diameter, :diameter], ((diameter - 1) / 2, (diameter - 1) / 2),
                       (diameter / 2 - 1, diameter / 2 - 1)) < 1
    if rng.random() < 0.5:  # the other eye
        fundus, disc, fov = fundus[:, ::-1], disc[:, ::-1], fov[:, ::-1]
    angle = rng.uniform(-10, 10)
    fundus = rotate(fundus, angle, order=1, preserve_range=True)
    disc = rotate(disc.astype(float), angle, order=1) > 0.5
    fov = rotate(fov.astype(float), angle, order=1) > 0.5
    canvas = np.zeros((height, width, 3), dtype=np.float64)
    fov_c = np.zeros((height, width), dtype=bool)
    disc_c = np.zeros((height, width), dtype=bool)
    top = (diameter - height) // 2
    left = (width - diameter) // 2
    rows = slice(max(top, 0), max(top, 0) + min(height, diameter))
    dst_rows = slice(max(-top, 0), max(-top, 0) + min(height, diameter))
    cols = slice(max(-left, 0), max(-left, 0) + min(width, diameter))
    dst_cols = slice(max(left, 0), max(left, 0) + min(width, diameter))
    canvas[dst_rows, dst_cols] = fundus[rows, cols]
    fov_c[dst_rows, dst_cols] = fov[rows, cols]
    disc_c[dst_rows, dst_cols] = disc[rows, cols]
    gain = np.exp(rng.normal(0, 0.08, 3))
    gamma = rng.uniform(0.85, 1.15)
    canvas = 255.0 * (np.clip(canvas * gain, 0, 255) / 255.0) ** gamma
    yy, xx = np.mgrid[:height, :width]
    illumination = 1 + 0.12 * ((xx - width / 2) * np.cos(angle) + (yy - height / 2) * np.sin(angle)) / width
    canvas *= illumination[..., None]
    return canvas, fov_c, disc_c


def _blend(img: np.ndarray, mask: np.ndarray, color, alpha: float, blur: float) -> None:
    soft = ndimage.gaussian_filter(mask.astype(float), blur) if blur > 0 else mask.astype(float)
    a = np.clip(alpha * soft / max(soft.max(), 1e-6), 0, 1)[..., None]
    img *= 1 - a
    img += a * np.asarray(color, dtype=float)


def _idrid_image(rng: np.random.Generator, height: int, width: int, *, lesion_scale: float):
    """One synthetic fundus: RGB uint8 and the five masks (None where the type is absent)."""
    img, fov, disc = _idrid_frame(rng, height, width)
    diameter = height * 1.04
    allowed = ndimage.binary_erosion(fov, iterations=max(1, height // 40)) & ~ndimage.binary_dilation(
        disc, iterations=max(1, height // 60))
    yy, xx = np.mgrid[:height, :width]
    macula_c = (height / 2, width / 2)
    near_macula = np.exp(-(((yy - macula_c[0]) ** 2 + (xx - macula_c[1]) ** 2) / (0.25 * diameter) ** 2))
    masks = _idrid_lesions(rng, allowed, near_macula, (yy, xx), diameter=diameter, lesion_scale=lesion_scale)
    _paint_lesions(rng, img, masks, fov)
    for key in ("MA", "HE", "EX", "SE"):
        if not masks[key].any():
            masks[key] = None
    masks["OD"] = disc
    return np.clip(np.round(img), 0, 255).astype(np.uint8), masks


def _idrid_lesions(rng: np.random.Generator, allowed: np.ndarray, near_macula: np.ndarray, grids, *,
                   diameter: float, lesion_scale: float) -> dict[str, np.ndarray]:
    """The four lesion-type masks (MA, HE, EX, SE), placed within ``allowed``, weighted towards the macula."""
    yy, xx = grids
    height, width = allowed.shape
    spacing = (1.0, 1.0)
    d = diameter * lesion_scale
    masks: dict[str, np.ndarray | None] = {}
    # microaneurysms: tiny, many, in most images
    n = _overdispersed_count(rng, 14) if rng.random() < 0.9 else 0
    masks["MA"] = _place_lesions(rng, allowed, _lognormal_radii(rng, n, median_mm=0.0065 * d, sigma=0.3,
                                 low_mm=IDRID_MIN_RADIUS * d, high_mm=0.012 * d), spacing, irregularity=0.2, weights=near_macula + 0.3)
    # haemorrhages: dark red blots, heavy-tailed
    n = _overdispersed_count(rng, 6) if rng.random() < 0.8 else 0
    masks["HE"] = _place_lesions(rng, allowed, _lognormal_radii(rng, n, median_mm=0.01 * d, sigma=0.6,
                                 low_mm=IDRID_MIN_RADIUS * d, high_mm=0.05 * d), spacing, irregularity=0.5, weights=near_macula + 0.5)
    # hard exudates: clusters of small bright flecks around the macula
    ex = np.zeros((height, width), dtype=bool)
    if rng.random() < 0.7:
        for _ in range(int(rng.integers(1, 5))):
            c = rng.choice(np.flatnonzero(allowed), p=(near_macula.ravel()[allowed.ravel()] /
                                                       near_macula.ravel()[allowed.ravel()].sum()))
            cy, cx = np.unravel_index(c, allowed.shape)
            region = allowed & (((yy - cy) ** 2 + (xx - cx) ** 2) < (0.06 * diameter) ** 2)
            k = int(rng.integers(3, 12))
            ex |= _place_lesions(rng, region, _lognormal_radii(rng, k, median_mm=0.0065 * d, sigma=0.5,
                                 low_mm=IDRID_MIN_RADIUS * d, high_mm=0.03 * d), spacing, irregularity=0.5)
    masks["EX"] = ex
    # soft exudates: pale fluffy patches, absent in about half of the images
    n = int(rng.integers(1, 4)) if rng.random() < 0.5 else 0
    masks["SE"] = _place_lesions(rng, allowed, _lognormal_radii(rng, n, median_mm=0.018 * d, sigma=0.3,
                                 low_mm=1.0, high_mm=0.04 * d), spacing, irregularity=0.6)
    return masks


def _paint_lesions(rng: np.random.Generator, img: np.ndarray, masks: dict, fov: np.ndarray) -> None:
    """Blend the lesions into ``img`` in their colours, add noise, and dark noise outside the field of view."""
    local = ndimage.gaussian_filter(img, (3, 3, 0))
    red = local * np.array([0.55, 0.3, 0.3])
    _blend(img, masks["HE"], red.mean(axis=(0, 1)) * rng.uniform(0.8, 1.0), rng.uniform(0.55, 0.75), 0.7)
    _blend(img, masks["MA"], red.mean(axis=(0, 1)) * 0.9, rng.uniform(0.45, 0.65), 0.5)
    _blend(img, masks["EX"], (235, 205, 95), rng.uniform(0.55, 0.8), 0.5)
    _blend(img, masks["SE"], (225, 185, 160), rng.uniform(0.3, 0.45), 1.2)
    img += rng.normal(0, 2.5, img.shape)
    img[~fov] = rng.uniform(0, 3, (int((~fov).sum()), 3))


def write_idrid(
    root,
    *,
    seed: int,
    n_training: int = 5,
    n_test: int = 3,
    shape=(170, 256),
    lesion_scale: float = 1.0,
    jpeg_quality: int = 92,
) -> dict:
    """Write a synthetic IDRiD part A (segmentation) tree under ``root``::

        root/A. Segmentation/1. Original Images/a. Training Set/IDRiD_01.jpg ...
        root/A. Segmentation/1. Original Images/b. Testing Set/IDRiD_<n_training+1>.jpg ...
        root/A. Segmentation/2. All Segmentation Groundtruths/a. Training Set/1. Microaneurysms/IDRiD_01_MA.tif
        ... (2. Haemorrhages/_HE, 3. Hard Exudates/_EX, 4. Soft Exudates/_SE, 5. Optic Disc/_OD)

    Masks are RGB TIFF (deflate-compressed) with the lesion in the red channel (255) and 0 elsewhere; a mask file is not written
    when the image has no lesion of that type; every image has an optic-disc mask.

    Parameters
    ----------
    root : path
    seed : int
    n_training, n_test : int
        Images in the official training and testing sets (ids numbered on from 01, two digits).
    shape : (int, int)
        Image size ``(height, width)``; the real photographs are 2848 x 4288.
    lesion_scale : float
        Multiplies all lesion radii (relative to the fundus diameter).
    jpeg_quality : int
        JPEG quality of the photographs.

    Returns
    -------
    dict
        The generator's parameters.
    """
    n_training = _check_positive_int("n_training", n_training)
    n_test = _check_positive_int("n_test", n_test, minimum=0)
    shape = _check_shape("shape", shape, 2, 32)
    if not np.isfinite(lesion_scale) or lesion_scale <= 0:
        raise ValueError(f"lesion_scale must be a positive finite float, got {lesion_scale!r}")
    base = Path(root) / "A. Segmentation"
    rng = np.random.default_rng(seed)
    ids = [("a. Training Set", i + 1) for i in range(n_training)]
    ids += [("b. Testing Set", n_training + i + 1) for i in range(n_test)]
    for subset_dir, number in ids:
        sub_rng = np.random.default_rng(rng.integers(2**63))
        image, masks = _idrid_image(sub_rng, shape[0], shape[1], lesion_scale=lesion_scale)
        stem = f"IDRiD_{number:02d}"
        img_path = base / "1. Original Images" / subset_dir / f"{stem}.jpg"
        img_path.parent.mkdir(parents=True, exist_ok=True)
        iio.imwrite(img_path, image, extension=".jpg", quality=int(jpeg_quality))
        for key, folder in IDRID_FOLDERS.items():
            gt = base / "2. All Segmentation Groundtruths" / subset_dir / folder
            gt.mkdir(parents=True, exist_ok=True)
            if masks[key] is None:
                continue
            rgb = np.zeros((*shape, 3), dtype=np.uint8)
            rgb[..., 0] = masks[key].astype(np.uint8) * 255
            tifffile.imwrite(gt / f"{stem}_{key}.tif", rgb, photometric="rgb", compression="zlib")
    return {"dataset": "idrid", "seed": int(seed), "n_training": n_training, "n_test": n_test,
            "shape": list(shape), "lesion_scale": float(lesion_scale), "jpeg_quality": int(jpeg_quality)}

