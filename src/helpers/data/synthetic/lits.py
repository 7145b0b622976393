"""The synthetic LiTS stand-in (abdominal CT), written in the LiTS or the Decathlon layout (:func:`write_lits`).

A body with subcutaneous fat, muscle wall, viscera with bowel gas, spine, aorta, kidneys and a liver with vessels,
in raw Hounsfield units stored as int16, with ``-2048`` outside the scanner's circular field of view (real LiTS
volumes carry such out-of-range padding). Tumours are hypodense (55-85 HU below the liver under 10 HU noise:
visible, as most LiTS tumours are), 5-15 per volume inside the liver; some volumes have none. Labels 0 background,
1 liver, 2 tumour. Shapes, sizes, regimes (``standin``) and conventions: :mod:`helpers.data.synthetic.common`. In
the ``paper`` regime tumours are larger (:data:`LITS_PAPER_RADIUS_MM`), elongated and irregular, with a wider
partial-volume margin, a patchy (partly necrotic-looking) inside and a textured liver around them, and the
reference is a second rater's outline.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import ndimage

from helpers.data.synthetic.common import (
    annotation_noise, check_positive_int, check_shape, check_spacing, check_standin, clean_path, drop_fragments,
    ellipsoid_q, grid_mm, lognormal_radii, place_lesions, save_nifti, smooth_noise,
)

__all__ = ["LITS_RADIUS_MM", "LITS_PAPER_RADIUS_MM", "LITS_CONTRAST_HU", "LITS_NOISE_HU", "write_lits"]

# Lesion radii (low, median, high): the sizing rule is in helpers.data.synthetic.common's docstring.
#: LiTS tumour radii in mm (log-normal, sigma 0.5, clipped).
LITS_RADIUS_MM = (6.0, 8.0, 30.0)
#: LiTS tumour radii in mm in the ``paper`` regime (the smallest quartile near 1.5 % of the slice area at 3 mm
#: pixels).
LITS_PAPER_RADIUS_MM = (16.0, 17.0, 32.0)
#: LiTS tumour contrast (hypodense, HU drawn uniformly per volume) and the image noise (HU, sd).
LITS_CONTRAST_HU = (55.0, 85.0)
LITS_NOISE_HU = 10.0


# ----------------------------------------------------------------------------------------------- LiTS

def _lits_volume(rng: np.random.Generator, shape, spacing, *, tumours_per_volume, has_tumour: bool,
                 standin: str = "voxel-floor"):
    """One synthetic abdominal CT: HU volume int16 ``(z, y, x)``, labels uint8 (0/1/2) and (``paper`` regime)
    the clean labels the volume was rendered from (None otherwise)."""
    paper = standin == "paper"
    grids = grid_mm(shape, spacing)
    hu, inside, size = _abdomen(rng, grids, shape, spacing)
    liver = _liver(rng, hu, grids, inside, size, spacing)
    tumour = np.zeros(shape, dtype=bool)
    if has_tumour:
        tumour = _tumours(rng, hu, liver, spacing, tumours_per_volume, paper=paper)
    if paper:  # liver texture (+-8 HU, ~6 mm)
        hu[liver] += 8.0 * smooth_noise(rng, shape, [max(0.5, 6.0 / s) for s in spacing])[liver]
    gy, gx = grids[1], grids[2]
    hu = ndimage.gaussian_filter(hu, [0.4, 0.6, 0.6]) + rng.normal(0, LITS_NOISE_HU, shape)
    fov = (gy**2 + gx**2) < (0.5 * min(shape[1] * spacing[1], shape[2] * spacing[2])) ** 2
    hu = np.where(np.broadcast_to(fov, shape), hu, -2048.0)

    def labels(lesions):
        label = np.zeros(shape, dtype=np.uint8)
        label[liver | lesions] = 1
        label[lesions] = 2
        return label

    if not paper:
        return np.round(hu).astype(np.int16), labels(tumour), None
    return np.round(hu).astype(np.int16), labels(annotation_noise(rng, tumour) & liver), labels(tumour)


def _abdomen(rng: np.random.Generator, grids, shape, spacing) -> tuple[np.ndarray, np.ndarray, float]:
    """Body with fat, muscle wall, viscera, bowel gas, spine, aorta and kidneys in HU; the body inside its fat and
    muscle wall (where the liver may lie), and the body size factor."""
    gz, gy, gx = grids
    smooth = [max(0.5, 15.0 / s) for s in spacing]
    wobble = smooth_noise(rng, shape, smooth)
    size = rng.uniform(0.9, 1.1)
    body_q = ellipsoid_q((gz * 0, gy, gx), (0, 8, 0), (1, 118 * size, 160 * size)) * (1 + 0.03 * wobble)
    body = body_q < 1
    depth = 1 - np.sqrt(np.clip(body_q, 0, None))
    fat = body & (depth < 0.10 + 0.03 * wobble)
    muscle = body & ~fat & (depth < 0.16)
    hu = np.full(shape, -1000.0)
    hu[body] = 35.0  # viscera
    visceral_fat = body & (smooth_noise(rng, shape, [max(0.5, 6.0 / s) for s in spacing]) > 1.0)
    hu[visceral_fat] = -90.0
    gas = body & ~fat & ~muscle & (smooth_noise(rng, shape, [max(0.5, 4.0 / s) for s in spacing]) > 2.0)
    hu[gas] = -850.0
    hu[fat] = -100.0
    hu[muscle] = 45.0
    # spine (vertebral body with cortex), aorta, kidneys
    spine_q = ellipsoid_q((gy, gx), (78 * size, 0), (17, 20))
    hu[(spine_q < 1) & body] = 250.0
    hu[(spine_q < 0.7) & body] = 180.0
    hu[(ellipsoid_q((gy, gx), (50 * size, 12), (11, 11)) < 1) & body] = 170.0
    for side in (-1, 1):
        kq = ellipsoid_q((gz, gy, gx), (rng.uniform(-20, 20), 60 * size, side * 70 * size), (45, 28, 22))
        hu[(kq < 1) & body] = 150.0
    return hu, body & ~fat & ~muscle, size


def _liver(rng: np.random.Generator, hu: np.ndarray, grids, inside: np.ndarray, size: float, spacing) -> np.ndarray:
    """The liver (written into ``hu``, with brighter vessels): patient's right (image left), anterior-lateral,
    irregular outline."""
    gz, gy, gx = grids
    shape = hu.shape
    lz = rng.uniform(-15, 15)
    liver_q = ellipsoid_q((gz, gy, gx), (lz, -8 * size, -58 * size), (90, 78 * size, 66 * size))
    liver_q = liver_q * (1 + 0.12 * smooth_noise(rng, shape, [max(0.5, 20.0 / s) for s in spacing]))
    liver = (liver_q < 1) & inside
    liver_hu = rng.uniform(95, 115)
    hu[liver] = liver_hu
    vessels = liver & (np.abs(smooth_noise(rng, shape, [max(0.5, 5.0 / s) for s in spacing])) < 0.06)
    hu[vessels] = liver_hu + 45
    return liver


def _tumours(rng: np.random.Generator, hu: np.ndarray, liver: np.ndarray, spacing, tumours_per_volume, *,
             paper: bool = False) -> np.ndarray:
    """Hypodense tumours inside the liver (subtracted from ``hu`` with a partial-volume margin)."""
    n = int(rng.integers(tumours_per_volume[0], tumours_per_volume[1] + 1))
    low, median, high = LITS_PAPER_RADIUS_MM if paper else LITS_RADIUS_MM
    radii = lognormal_radii(rng, n, median_mm=median, sigma=0.5, low_mm=low, high_mm=high)
    # centres at least 5 mm inside the liver, so that a small tumour is not cut away by the liver outline
    core = ndimage.binary_erosion(liver, iterations=max(1, int(round(5.0 / min(spacing[1:])))))
    shape_options = {"elongation": (1.0, 2.5), "flatten": 2.0, "irregularity": 0.45} if paper else {
        "irregularity": 0.35}
    tumour = place_lesions(rng, liver, radii, spacing, weights=core.astype(float) if core.any() else None,
                           **shape_options)
    if paper:
        tumour = drop_fragments(tumour, 12)  # no slivers where a tumour was clipped to the liver
    # partial-volume margin
    lesion_blur = ndimage.gaussian_filter(tumour.astype(float), [0.6, 1.3, 1.3] if paper else [0.4, 0.7, 0.7])
    if paper:  # patchy inside (+-30 % of the contrast, ~6 mm)
        lesion_blur = lesion_blur * (1 + 0.3 * smooth_noise(rng, hu.shape, [max(0.5, 6.0 / s) for s in spacing]))
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
    standin: str = "voxel-floor",
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
    standin : {"voxel-floor", "paper"}
        The regime (:mod:`helpers.data.synthetic.common`); ``paper`` also writes each clean segmentation under
        ``root/clean_reference/`` at the segmentation's relative path.

    Returns
    -------
    dict
        The generator's parameters.
    """
    n_volumes = check_positive_int("n_volumes", n_volumes)
    shape = check_shape("shape", shape, 3, 4)
    if spacing is None:
        spacing = (2.5, field_of_view_mm / shape[1], field_of_view_mm / shape[2])
    spacing = check_spacing("spacing", spacing, 3)
    if layout not in ("batches", "msd"):
        raise ValueError(f"layout must be 'batches' or 'msd', got {layout!r}")
    standin = check_standin(standin)
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
        hu, label, clean = _lits_volume(sub_rng, shape, spacing, tumours_per_volume=counts, has_tumour=has_tumour,
                                        standin=standin)
        origin = (shape[2] * spacing[2] / 2, shape[1] * spacing[1] / 2, -shape[0] * spacing[0] * i)
        entry = _save_lits_volume(root, layout, i, hu, label, spacing, origin, clean=clean)
        if entry is not None:
            training.append(entry)
    if layout == "msd":
        _write_msd_description(root / "Task03_Liver", training)
    return {"dataset": "lits", "seed": int(seed), "n_volumes": n_volumes, "shape": list(shape),
            "spacing": list(spacing), "layout": layout, "tumours_per_volume": list(counts),
            "p_no_tumour": float(p_no_tumour), **({"standin": standin} if standin != "voxel-floor" else {})}


def _check_tumour_counts(tumours_per_volume) -> tuple[int, int]:
    counts = tuple(tumours_per_volume) if isinstance(tumours_per_volume, (tuple, list)) else ()
    if len(counts) != 2 or not all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in counts) \
            or not 1 <= counts[0] <= counts[1]:
        raise ValueError(f"tumours_per_volume must be two integers 1 <= low <= high, got {tumours_per_volume!r}")
    return int(counts[0]), int(counts[1])


def _save_lits_volume(root: Path, layout: str, i: int, hu, label, spacing, origin, *, clean=None) -> dict | None:
    """Volume ``i`` and its segmentation in the chosen layout (and its clean segmentation, when given, under
    ``clean_reference/``); for MSD the ``dataset.json`` training entry."""
    if layout == "batches":
        folder = root / ("Training Batch 1" if i < 28 else "Training Batch 2")
        save_nifti(folder / f"volume-{i}.nii", hu, spacing, dtype=np.int16, origin_mm=origin)
        seg = folder / f"segmentation-{i}.nii"
    else:
        task = root / "Task03_Liver"
        save_nifti(task / "imagesTr" / f"liver_{i}.nii.gz", hu, spacing, dtype=np.int16, origin_mm=origin)
        seg = task / "labelsTr" / f"liver_{i}.nii.gz"
    save_nifti(seg, label, spacing, dtype=np.uint8, origin_mm=origin)
    if clean is not None:
        save_nifti(clean_path(root, seg), clean, spacing, dtype=np.uint8, origin_mm=origin)
    if layout == "batches":
        return None
    return {"image": f"./imagesTr/liver_{i}.nii.gz", "label": f"./labelsTr/liver_{i}.nii.gz"}


def _write_msd_description(task: Path, training: list[dict]) -> None:
    description = {
        "name": "Liver", "description": "Liver and tumour segmentation (synthetic stand-in)",
        "modality": {"0": "CT"}, "labels": {"0": "background", "1": "liver", "2": "cancer"},
        "numTraining": len(training), "numTest": 0, "training": training, "test": [],
    }
    task.mkdir(parents=True, exist_ok=True)
    (task / "dataset.json").write_text(json.dumps(description, indent=4), encoding="utf-8")
