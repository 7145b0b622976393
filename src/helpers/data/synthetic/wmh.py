"""The synthetic WMH stand-in (brain MRI), written in the WMH Segmentation Challenge's layout (:func:`write_wmh`).

A head with scalp, skull, cortex (grey matter with sulcal CSF), lateral ventricles and white matter; FLAIR (CSF
dark, lesions bright) and T1 (lesions dark) on the same grid; a smooth bias field and Rician noise; per-site
intensity scale and noise level (Utrecht, Singapore, Amsterdam/GE3T). White-matter hyperintensities are
periventricular caps and deep punctate foci, a few of them large; ``wmh.nii.gz`` holds 0 background, 1 WMH,
2 "other pathology" (a lacune-like region in some subjects). Shapes, sizes, regimes (``standin``) and conventions:
:mod:`helpers.data.synthetic.common`. In the ``paper`` regime the lesions are larger (:data:`WMH_PAPER_RADIUS_MM`),
flatter across slices, elongated along the ventricles' direction or any other, with a wider partial-volume margin,
patchy intensity inside (and patchy white matter around), and the reference is a second rater's outline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from helpers.data.synthetic.common import (
    annotation_noise, check_positive_int, drop_fragments, check_shape, check_spacing, check_standin, clean_path, ellipsoid_q, grid_mm,
    lognormal_radii, overdispersed_count, place_lesions, save_nifti, smooth_noise,
)

__all__ = ["WMH_SITES", "WMH_RADIUS_MM", "WMH_PAPER_RADIUS_MM", "write_wmh"]

WMH_SITES = ("Utrecht", "Singapore", "Amsterdam")
#: First subject id per site in the challenge's numbering (training ids; test ids continue after them).
_WMH_FIRST_ID = {"Utrecht": 0, "Singapore": 50, "Amsterdam": 100}
#: Relative intensity scale and noise level per site (sites differ in scanner and protocol).
_WMH_SITE_SCALE = {"Utrecht": (1.0, 0.025), "Singapore": (1.3, 0.035), "Amsterdam": (0.8, 0.03)}

# Lesion radii (low, median, high): the sizing rule is in helpers.data.synthetic.common's docstring.
#: WMH lesion radii in mm (log-normal, sigma 0.5, clipped).
WMH_RADIUS_MM = (4.0, 5.5, 14.0)
#: WMH lesion radii in mm in the ``paper`` regime (the smallest quartile near 1.5 % of the slice area at 1.8 mm
#: pixels), with the mean lesion count per subject :data:`_WMH_PAPER_LESIONS`.
WMH_PAPER_RADIUS_MM = (10.0, 13.5, 22.0)
_WMH_PAPER_LESIONS = 22.0
#: Smallest largest-section of a lesion in the ``paper`` regime (voxels); clipped slivers below it are removed.
_MIN_SECTION = 12


# ----------------------------------------------------------------------------------------------- WMH

def _wmh_subject(rng: np.random.Generator, shape, spacing, site: str, *, lesions_per_case: float,
                 p_other_pathology: float, standin: str = "voxel-floor"):
    """One synthetic WMH subject: FLAIR, T1 ``(z, y, x)`` float32, the label map (uint8 0/1/2) and (``paper``
    regime) the clean label map the images were rendered from (None otherwise)."""
    paper = standin == "paper"
    tissues, atrophy = _wmh_tissues(rng, shape, spacing)
    wmh, other = _wmh_lesions(rng, tissues, spacing, lesions_per_case=lesions_per_case * atrophy,
                              p_other_pathology=p_other_pathology, paper=paper)
    flair, t1 = _wmh_images(rng, tissues, wmh, other, spacing, site, paper=paper)

    def labels(lesions):
        label = np.zeros(shape, dtype=np.uint8)
        label[lesions] = 1
        label[other & ~lesions] = 2
        return label

    if not paper:
        return flair, t1, labels(wmh), None
    return flair, t1, labels(annotation_noise(rng, wmh)), labels(wmh)


def _wmh_tissues(rng: np.random.Generator, shape, spacing) -> tuple[dict, float]:
    """The head's tissue masks (scalp, skull, grey matter, white matter, sulci, ventricles) and the atrophy
    factor (ventricle size, which goes with lesion load)."""
    gz, gy, gx = grid_mm(shape, spacing)
    smooth = [max(0.5, 12.0 / s) for s in spacing]  # ~12 mm correlation length
    size = rng.uniform(0.9, 1.08)
    z0 = rng.uniform(-8, 8)
    gz = gz + z0
    wobble = smooth_noise(rng, shape, smooth)
    head_q = ellipsoid_q((gz, gy, gx), (0, 0, 0), (95 * size, 92 * size, 74 * size))
    head_q = head_q * (1 + 0.03 * wobble)
    brain_q = ellipsoid_q((gz, gy, gx), (0, 3, 0), (82 * size, 81 * size, 63 * size)) * (1 + 0.04 * wobble)
    head = head_q < 1
    brain = brain_q < 1
    skull = head & (head_q >= (1 - 0.10) ** 2) & ~brain
    scalp = head & ~skull & ~brain
    # cortex: an outer band of varying thickness with sulcal CSF cutting into it
    gyri = smooth_noise(rng, shape, [max(0.5, 3.0 / s) for s in spacing])
    depth = 1 - np.sqrt(np.clip(brain_q, 0, None))  # 0 at the brain surface, 1 at its centre
    gm = brain & (depth < 0.10 + 0.04 * gyri)
    sulci = brain & (depth < 0.11) & (gyri > 1.1)
    # lateral ventricles, larger with atrophy (and atrophy goes with lesion load)
    atrophy = rng.uniform(0.7, 1.5)
    vent = np.zeros(shape, dtype=bool)
    for side in (-1, 1):
        vq = ellipsoid_q((gz, gy, gx), (0, -2, side * 10 * atrophy), (24, 32 * atrophy, 7 * atrophy))
        vent |= vq < 1
    vent &= brain
    wm = brain & ~gm & ~sulci & ~vent
    return {"scalp": scalp, "skull": skull, "gm": gm, "wm": wm, "sulci": sulci, "vent": vent}, atrophy


def _wmh_lesions(rng: np.random.Generator, tissues: dict, spacing, *, lesions_per_case: float,
                 p_other_pathology: float, paper: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """WMH (periventricular, weighted towards the ventricle surface, and deep) and the "other pathology"."""
    wm, vent = tissues["wm"], tissues["vent"]
    dist_vent = ndimage.distance_transform_edt(~vent, sampling=spacing)
    weight = np.exp(-dist_vent / 8.0) * 3.0 + 0.3
    if paper:  # large lesions spread through the white matter (crowded at the ventricles, they merge)
        weight = np.exp(-dist_vent / 8.0) + 1.0
    low, median, high = WMH_PAPER_RADIUS_MM if paper else WMH_RADIUS_MM
    n = max(1, overdispersed_count(rng, _WMH_PAPER_LESIONS * lesions_per_case / 30.0 if paper else lesions_per_case))
    radii = lognormal_radii(rng, n, median_mm=median, sigma=0.5, low_mm=low, high_mm=high)
    n_large = int(rng.integers(0, 3))
    radii = np.concatenate([radii, rng.uniform(5.0, 11.0, n_large) * (1.6 if paper else 1.0)])
    # centres at least 3 mm inside the white matter, so that a small lesion is not cut to a sliver by its edge
    core = ndimage.binary_erosion(wm, np.ones((1, 3, 3), bool), iterations=max(1, int(round(3.0 / min(spacing[1:])))))
    shape_options = {"elongation": (1.0, 3.0), "flatten": 2.5} if paper else {}
    wmh = place_lesions(rng, wm, radii, spacing, irregularity=0.5, weights=weight * core if core.any() else weight,
                        **shape_options)
    if paper:  # no slivers where a lesion was clipped to the white matter
        wmh = drop_fragments(wmh, _MIN_SECTION)
    other = np.zeros(wm.shape, dtype=bool)
    if rng.random() < p_other_pathology:
        other = place_lesions(rng, wm & ~wmh, rng.uniform(2.5, 6.0, 1), spacing, irregularity=0.3)
    return wmh, other


def _wmh_images(rng: np.random.Generator, tissues: dict, wmh, other, spacing, site: str, *, paper: bool = False):
    """FLAIR and T1 from the tissues and lesions, with blur, bias field, site scale and Rician noise; in the
    ``paper`` regime a wider partial-volume margin and patchy intensity inside the lesions and the white matter."""
    shape = wmh.shape
    flair = np.full(shape, 0.02)
    t1 = np.full(shape, 0.02)
    for name, f, t in (("scalp", 0.85, 1.15), ("skull", 0.08, 0.1), ("gm", 1.25, 0.68), ("wm", 1.0, 1.0),
                       ("sulci", 0.22, 0.3), ("vent", 0.18, 0.25)):
        flair[tissues[name]] = f
        t1[tissues[name]] = t
    contrast = rng.uniform(0.35, 0.6)  # lesions brighter than cortex (1.25), yet well under 2x white matter
    lesion_blur = ndimage.gaussian_filter(wmh.astype(float), [0.6, 1.3, 1.3] if paper else [0.4, 0.7, 0.7])
    if paper:  # patchy lesions (+-30 %) in patchy white matter (+-5 %), ~4 mm blobs
        patches = smooth_noise(rng, shape, [max(0.5, 4.0 / s) for s in spacing])
        lesion_blur = lesion_blur * (1 + 0.3 * patches)
        flair[tissues["wm"]] += 0.05 * smooth_noise(rng, shape, [max(0.5, 4.0 / s) for s in spacing])[tissues["wm"]]
    flair += contrast * lesion_blur
    t1 -= 0.25 * lesion_blur
    flair[other] = 0.3
    t1[other] = 0.35
    bias = np.exp(0.08 * smooth_noise(rng, shape, [max(0.5, 60.0 / s) for s in spacing]))
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
    standin: str = "voxel-floor",
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
    standin : {"voxel-floor", "paper"}
        The regime (:mod:`helpers.data.synthetic.common`); ``paper`` also writes each clean label map under
        ``root/clean_reference/`` at the reference's relative path. In the ``paper`` regime the lesion count is
        ``lesions_per_case / 30 * 22`` (fewer, larger lesions).

    Returns
    -------
    dict
        The generator's parameters, for the data manifest.
    """
    n_training = check_positive_int("n_training", n_training)
    n_test = check_positive_int("n_test", n_test, minimum=0)
    shape = check_shape("shape", shape, 3, 4)
    if spacing is None:
        spacing = (3.0, field_of_view_mm / shape[1], field_of_view_mm / shape[2])
    spacing = check_spacing("spacing", spacing, 3)
    if vintage not in ("2022", "2017"):
        raise ValueError(f"vintage must be '2022' or '2017', got {vintage!r}")
    standin = check_standin(standin)
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
        flair, t1, label, clean = _wmh_subject(sub_rng, shape, spacing, site, lesions_per_case=lesions_per_case,
                                               p_other_pathology=p_other_pathology, standin=standin)
        origin = (-shape[2] * spacing[2] / 2, -shape[1] * spacing[1] / 2, -shape[0] * spacing[0] / 2)
        save_nifti(folder / "pre" / f"FLAIR{ext}", flair, spacing, dtype=np.float32, origin_mm=origin)
        save_nifti(folder / "pre" / f"T1{ext}", t1, spacing, dtype=np.float32, origin_mm=origin)
        save_nifti(folder / f"wmh{ext}", label, spacing, dtype=np.uint8, origin_mm=origin)
        if clean is not None:
            save_nifti(clean_path(root, folder / f"wmh{ext}"), clean, spacing, dtype=np.uint8, origin_mm=origin)
    return {"dataset": "wmh", "seed": int(seed), "n_training": n_training, "n_test": n_test, "shape": list(shape),
            "spacing": list(spacing), "vintage": vintage, "compressed": bool(compressed),
            "lesions_per_case": float(lesions_per_case), "p_other_pathology": float(p_other_pathology),
            **({"standin": standin} if standin != "voxel-floor" else {})}
