"""The synthetic IDRiD stand-in (fundus photographs), written in IDRiD part A's layout (:func:`write_idrid`).

The background is :func:`skimage.data.retina`, a real colour fundus photograph (vessels, optic disc, macula)
shipped with scikit-image, resized to IDRiD's 3:2 frame, randomly mirrored (left/right eye), rotated and
re-coloured per image. Microaneurysms (tiny dark red dots), haemorrhages (dark red blots), hard exudates (bright
yellow clusters) and soft exudates (pale fluffy patches) are blended in with soft edges; their masks are TIFF
(nonzero = lesion), a mask file is absent when the image has no lesion of that type, and every image has an
optic-disc mask. Shapes, sizes, regimes (``standin``) and conventions: :mod:`helpers.data.synthetic.common`. In the
``paper`` regime (:func:`_idrid_lesions_paper`) an image holds fewer, larger lesions (the smallest quartile near
1.5 % of the image area, as the paper reports for IDRiD), elongated and irregular, blended with wider soft edges
and patchy strength (+-30 % around the type's opacity, :func:`_blend`), written without chroma subsampling
(:func:`_jpeg_options`), and each type's reference is a second rater's outline.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import tifffile
from scipy import ndimage
from skimage import data as skimage_data
from skimage.transform import resize, rotate

# the real layout's mask folder names, shared with the loader so that writer and reader cannot drift apart
from helpers.data.layouts import IDRID_FOLDERS
from helpers.data.synthetic.common import (
    annotation_noise, check_positive_int, check_shape, check_standin, clean_path, drop_fragments, ellipsoid_q, lognormal_radii,
    overdispersed_count, place_lesions, smooth_noise,
)

__all__ = ["IDRID_MIN_RADIUS", "write_idrid"]

# Lesion radii (low, median, high): the sizing rule is in helpers.data.synthetic.common's docstring.
#: IDRiD: the smallest lesion radius as a share of the fundus diameter (1.6 px at 340 px high).
IDRID_MIN_RADIUS = 0.0045


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
    disc = ellipsoid_q(np.ogrid[:diameter, :diameter], (od_r * factor, od_c * factor),
                       (od_rad * factor, od_rad * factor)) < 1
    fov = ellipsoid_q(np.ogrid[:diameter, :diameter], ((diameter - 1) / 2, (diameter - 1) / 2),
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


def _blend(img: np.ndarray, mask: np.ndarray, color, alpha: float, blur: float, patches=None) -> None:
    """Blend ``color`` into ``img`` over ``mask`` with opacity ``alpha`` inside the lesion and a soft edge
    (``mask`` blurred by ``blur`` px, scaled so that its maximum is 1). ``patches`` (a unit-variance field): the
    opacity is modulated by ``1 + 0.3 * patches`` (patchy strength, +-30 % standard deviation) after that scaling,
    so that the lesion's mean opacity stays ``alpha`` (clipped to [0, 1])."""
    soft = ndimage.gaussian_filter(mask.astype(float), blur) if blur > 0 else mask.astype(float)
    scale = max(soft.max(), 1e-6)  # the blurred mask's maximum, taken before the patches
    if patches is not None:  # patchy strength inside the lesion
        soft = soft * (1 + 0.3 * patches)
    a = np.clip(alpha * soft / scale, 0, 1)[..., None]
    img *= 1 - a
    img += a * np.asarray(color, dtype=float)


def _idrid_image(rng: np.random.Generator, height: int, width: int, *, lesion_scale: float,
                 standin: str = "voxel-floor"):
    """One synthetic fundus: RGB uint8, the five masks (None where the type is absent) and (``paper`` regime) the
    clean masks the image was painted from (None otherwise)."""
    paper = standin == "paper"
    img, fov, disc = _idrid_frame(rng, height, width)
    diameter = height * 1.04
    allowed = ndimage.binary_erosion(fov, iterations=max(1, height // 40)) & ~ndimage.binary_dilation(
        disc, iterations=max(1, height // 60))
    yy, xx = np.mgrid[:height, :width]
    macula_c = (height / 2, width / 2)
    near_macula = np.exp(-(((yy - macula_c[0]) ** 2 + (xx - macula_c[1]) ** 2) / (0.25 * diameter) ** 2))
    if paper:
        masks = _idrid_lesions_paper(rng, allowed, near_macula, diameter=diameter, lesion_scale=lesion_scale)
    else:
        masks = _idrid_lesions(rng, allowed, near_macula, (yy, xx), diameter=diameter, lesion_scale=lesion_scale)
    _paint_lesions(rng, img, masks, fov, paper=paper)
    clean = None
    if paper:
        clean = dict(masks)
        masks = {key: annotation_noise(rng, m) & allowed for key, m in masks.items()}
    for out in (masks, clean):
        if out is None:
            continue
        for key in ("MA", "HE", "EX", "SE"):
            if not out[key].any():
                out[key] = None
        out["OD"] = disc
    return np.clip(np.round(img), 0, 255).astype(np.uint8), masks, clean


def _idrid_lesions(rng: np.random.Generator, allowed: np.ndarray, near_macula: np.ndarray, grids, *,
                   diameter: float, lesion_scale: float) -> dict[str, np.ndarray]:
    """The four lesion-type masks (MA, HE, EX, SE), placed within ``allowed``, weighted towards the macula."""
    yy, xx = grids
    height, width = allowed.shape
    spacing = (1.0, 1.0)
    d = diameter * lesion_scale
    masks: dict[str, np.ndarray | None] = {}
    # microaneurysms: tiny, many, in most images
    n = overdispersed_count(rng, 14) if rng.random() < 0.9 else 0
    masks["MA"] = place_lesions(rng, allowed, lognormal_radii(rng, n, median_mm=0.0065 * d, sigma=0.3,
                                low_mm=IDRID_MIN_RADIUS * d, high_mm=0.012 * d), spacing, irregularity=0.2,
                                weights=near_macula + 0.3)
    # haemorrhages: dark red blots, heavy-tailed
    n = overdispersed_count(rng, 6) if rng.random() < 0.8 else 0
    masks["HE"] = place_lesions(rng, allowed, lognormal_radii(rng, n, median_mm=0.01 * d, sigma=0.6,
                                low_mm=IDRID_MIN_RADIUS * d, high_mm=0.05 * d), spacing, irregularity=0.5,
                                weights=near_macula + 0.5)
    # hard exudates: clusters of small bright flecks around the macula
    ex = np.zeros((height, width), dtype=bool)
    if rng.random() < 0.7:
        for _ in range(int(rng.integers(1, 5))):
            c = rng.choice(np.flatnonzero(allowed), p=(near_macula.ravel()[allowed.ravel()] /
                                                       near_macula.ravel()[allowed.ravel()].sum()))
            cy, cx = np.unravel_index(c, allowed.shape)
            region = allowed & (((yy - cy) ** 2 + (xx - cx) ** 2) < (0.06 * diameter) ** 2)
            k = int(rng.integers(3, 12))
            ex |= place_lesions(rng, region, lognormal_radii(rng, k, median_mm=0.0065 * d, sigma=0.5,
                                low_mm=IDRID_MIN_RADIUS * d, high_mm=0.03 * d), spacing, irregularity=0.5)
    masks["EX"] = ex
    # soft exudates: pale fluffy patches, absent in about half of the images
    n = int(rng.integers(1, 4)) if rng.random() < 0.5 else 0
    masks["SE"] = place_lesions(rng, allowed, lognormal_radii(rng, n, median_mm=0.018 * d, sigma=0.3,
                                low_mm=1.0, high_mm=0.04 * d), spacing, irregularity=0.6)
    return masks


#: Lesion radii per type in the ``paper`` regime, as shares of the fundus diameter: (low, median, high), with the
#: mean count per image.
_IDRID_PAPER_LESIONS = {"MA": ((0.048, 0.054, 0.07), 4.0), "HE": ((0.052, 0.07, 0.11), 4.0),
                        "EX": ((0.048, 0.06, 0.09), 4.0), "SE": ((0.055, 0.07, 0.10), 1.0)}


def _idrid_lesions_paper(rng: np.random.Generator, allowed: np.ndarray, near_macula: np.ndarray, *,
                         diameter: float, lesion_scale: float) -> dict[str, np.ndarray]:
    """The four lesion-type masks of the ``paper`` regime: per type an over-dispersed count of elongated,
    irregular lesions with radii :data:`_IDRID_PAPER_LESIONS` (times the fundus diameter and ``lesion_scale``)."""
    d = diameter * lesion_scale
    masks = {}
    for key, ((low, median, high), mean) in _IDRID_PAPER_LESIONS.items():
        n = overdispersed_count(rng, mean)
        masks[key] = place_lesions(rng, allowed, lognormal_radii(rng, n, median_mm=median * d, sigma=0.4,
                                   low_mm=low * d, high_mm=high * d), (1.0, 1.0), irregularity=0.5,
                                   weights=near_macula + 0.5, elongation=(1.0, 3.0))
        masks[key] = drop_fragments(masks[key], 12)  # no slivers where a lesion was clipped to the fundus
    return masks


def _paint_lesions(rng: np.random.Generator, img: np.ndarray, masks: dict, fov: np.ndarray, *,
                   paper: bool = False) -> None:
    """Blend the lesions into ``img`` in their colours, add noise, and dark noise outside the field of view
    (``paper`` regime: soft edges twice as wide and patchy strength, ~4 px blobs)."""
    local = ndimage.gaussian_filter(img, (3, 3, 0))
    red = local * np.array([0.55, 0.3, 0.3])
    k = 2.0 if paper else 1.0
    patches = smooth_noise(rng, fov.shape, 4.0) if paper else None
    _blend(img, masks["HE"], red.mean(axis=(0, 1)) * rng.uniform(0.8, 1.0), rng.uniform(0.55, 0.75), 0.7 * k,
           patches)
    _blend(img, masks["MA"], red.mean(axis=(0, 1)) * 0.9, rng.uniform(0.45, 0.65), 0.5 * k, patches)
    _blend(img, masks["EX"], (235, 205, 95), rng.uniform(0.55, 0.8), 0.5 * k, patches)
    _blend(img, masks["SE"], (225, 185, 160), rng.uniform(0.3, 0.45), 1.2 * k, patches)
    img += rng.normal(0, 2.5, img.shape)
    img[~fov] = rng.uniform(0, 3, (int((~fov).sum()), 3))


def _jpeg_options(standin: str) -> dict:
    """Pillow's JPEG options per regime. ``paper``: no chroma subsampling (4:4:4). The real photographs are
    4288 px wide and their 4:2:0 subsampling acts on 2 px of that grid, a quarter of a pixel at the stand-in's
    512 px; at the stand-in's own size 4:2:0 would halve the colour resolution that lesion edges are seen in.
    ``voxel-floor``: Pillow's default (4:2:0), as the earlier stand-ins were written."""
    return {"subsampling": 0} if standin == "paper" else {}


def write_idrid(
    root,
    *,
    seed: int,
    n_training: int = 5,
    n_test: int = 3,
    shape=(170, 256),
    lesion_scale: float = 1.0,
    jpeg_quality: int = 92,
    standin: str = "voxel-floor",
) -> dict:
    """Write a synthetic IDRiD part A (segmentation) tree under ``root``::

        root/A. Segmentation/1. Original Images/a. Training Set/IDRiD_01.jpg ...
        root/A. Segmentation/1. Original Images/b. Testing Set/IDRiD_<n_training+1>.jpg ...
        root/A. Segmentation/2. All Segmentation Groundtruths/a. Training Set/1. Microaneurysms/IDRiD_01_MA.tif
        ... (2. Haemorrhages/_HE, 3. Hard Exudates/_EX, 4. Soft Exudates/_SE, 5. Optic Disc/_OD)

    Masks are RGB TIFF (deflate-compressed) with the lesion in the red channel (255) and 0 elsewhere; a mask file
    is not written when the image has no lesion of that type; every image has an optic-disc mask.

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
        JPEG quality of the photographs (chroma subsampling: :func:`_jpeg_options`).
    standin : {"voxel-floor", "paper"}
        The regime (:mod:`helpers.data.synthetic.common`); ``paper`` also writes each clean mask under
        ``root/clean_reference/`` at the mask's relative path.

    Returns
    -------
    dict
        The generator's parameters.
    """
    n_training = check_positive_int("n_training", n_training)
    n_test = check_positive_int("n_test", n_test, minimum=0)
    shape = check_shape("shape", shape, 2, 32)
    if not np.isfinite(lesion_scale) or lesion_scale <= 0:
        raise ValueError(f"lesion_scale must be a positive finite float, got {lesion_scale!r}")
    standin = check_standin(standin)
    base = Path(root) / "A. Segmentation"
    rng = np.random.default_rng(seed)
    ids = [("a. Training Set", i + 1) for i in range(n_training)]
    ids += [("b. Testing Set", n_training + i + 1) for i in range(n_test)]
    for subset_dir, number in ids:
        sub_rng = np.random.default_rng(rng.integers(2**63))
        image, masks, clean = _idrid_image(sub_rng, shape[0], shape[1], lesion_scale=lesion_scale, standin=standin)
        stem = f"IDRiD_{number:02d}"
        img_path = base / "1. Original Images" / subset_dir / f"{stem}.jpg"
        img_path.parent.mkdir(parents=True, exist_ok=True)
        iio.imwrite(img_path, image, extension=".jpg", quality=int(jpeg_quality), **_jpeg_options(standin))
        for key, folder in IDRID_FOLDERS.items():
            gt = base / "2. All Segmentation Groundtruths" / subset_dir / folder
            gt.mkdir(parents=True, exist_ok=True)
            for out, path in ((masks, gt / f"{stem}_{key}.tif"),
                              (clean, None if clean is None else clean_path(root, gt / f"{stem}_{key}.tif"))):
                if out is None or out[key] is None:
                    continue
                rgb = np.zeros((*shape, 3), dtype=np.uint8)
                rgb[..., 0] = out[key].astype(np.uint8) * 255
                path.parent.mkdir(parents=True, exist_ok=True)
                tifffile.imwrite(path, rgb, photometric="rgb", compression="zlib")
    return {"dataset": "idrid", "seed": int(seed), "n_training": n_training, "n_test": n_test,
            "shape": list(shape), "lesion_scale": float(lesion_scale), "jpeg_quality": int(jpeg_quality),
            **({"standin": standin} if standin != "voxel-floor" else {})}
