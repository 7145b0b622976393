"""Calibration of the synthetic stand-ins against the paper's regime, and the ceiling their annotation noise sets.

- :func:`data_calibration`: the data-side columns per dataset (the stand-in's Q1 bound beside the paper's Table 4.5
  value, from the registry's :class:`helpers.data.datasets.PaperFacts`, and the Q1 lesions' size range in voxels of
  their largest in-plane section and in mm as the diameter of the circle of that area), from the test lesions of
  :func:`helpers.data.cases.prepare_dataset`. The trained models' Q1 values beside the paper's Table 4.2 are the
  analysis layer's (:func:`helpers.analysis.paper.regime_calibration`).
- :func:`annotation_ceiling`: in the ``paper`` regime the written reference is a second rater's outline of the
  clean lesion the image was rendered from (:func:`helpers.data.synthetic.common.annotation_noise`); Dice, HD95,
  ASSD and contour F1 at one voxel (the in-plane spacing) of the clean mask against the written reference, per
  case, are what a model that recovered the clean lesion exactly would score: the ceiling the noise sets.

Imports :mod:`helpers.metrics` (the one Dice and surface-distance code) and the stand-ins' file conventions.
"""

from __future__ import annotations

from pathlib import Path

import dataclasses

import numpy as np
import pandas as pd

from helpers.base.io import write_csv
from helpers.data import datasets
from helpers.data.cases import find_cases, load_summary, manifest_root, read_case
from helpers.data.synthetic.common import CLEAN_FOLDER, clean_path
from helpers.metrics import assd, contour_f1, dice, hd95

__all__ = ["data_calibration", "annotation_ceiling", "ceiling_summary", "write_calibration"]

def data_calibration(dataset: str, lesions: pd.DataFrame, cases: pd.DataFrame) -> pd.DataFrame:
    """One row: the stand-in's Q1 bound (percent of the image area, 25th percentile of the test lesions' area
    fractions, as :func:`helpers.data.cases.q1_upper_bound`) beside the paper's, the number of Q1 test lesions,
    and their size range: largest in-plane section in voxels (area fraction x in-plane image size) and as the
    diameter in mm of a circle of that area (in-plane pixel size from ``cases``' ``spacing_y``/``spacing_x`` or,
    for photographs, 1 px = 1 "mm": the unit is then px)."""
    cases = cases.copy()
    test = lesions[lesions["split"] == "test"].merge(cases[["case_id", *_plane_columns(cases)]], on="case_id")
    if test.empty:
        raise ValueError(f"{dataset}: no test lesions to calibrate")
    bound = float(np.quantile(test["area_fraction"].to_numpy(float), 0.25))
    q1 = test[test["area_fraction"] <= bound]
    plane = q1["plane_voxels"].to_numpy(float)
    section = q1["area_fraction"].to_numpy(float) * plane
    pixel_area = q1["pixel_area"].to_numpy(float)
    diameter = 2 * np.sqrt(section * pixel_area / np.pi)
    paper = datasets.get(dataset).paper
    return pd.DataFrame([{
        "dataset": dataset, "q1_bound_percent": 100 * bound,
        "paper_q1_bound_percent": paper.q1_upper_percent if paper is not None else np.nan,
        "q1_lesions": int(len(q1)), "q1_section_voxels_min": float(section.min()),
        "q1_section_voxels_max": float(section.max()), "q1_diameter_mm_min": float(diameter.min()),
        "q1_diameter_mm_max": float(diameter.max()),
    }])


def _plane_columns(cases: pd.DataFrame) -> list[str]:
    """Adds ``plane_voxels`` and ``pixel_area`` to ``cases`` (in place) from its shape and spacing columns."""
    shapes = cases["shape"].map(_as_tuple)
    cases["plane_voxels"] = [float(s[-2] * s[-1]) if len(s) >= 2 else np.nan for s in shapes]
    if "spacing" in cases:
        spacing = cases["spacing"].map(_as_tuple)
        cases["pixel_area"] = [float(s[-2] * s[-1]) if len(s) >= 2 else 1.0 for s in spacing]
    else:
        cases["pixel_area"] = 1.0
    return ["plane_voxels", "pixel_area"]


def _as_tuple(value) -> tuple:
    """``"32x128x128"`` (as ``cases.csv`` writes shapes and spacings) or a sequence, as a tuple of floats."""
    if isinstance(value, str):
        value = value.strip("[]() ").replace("x", " ").replace(",", " ").split()
    return tuple(float(v) for v in value)


def _clean_files(files, root: Path):
    """The case's files with every label file replaced by its clean counterpart (None: the case has none)."""
    labels = {}
    for key, path in files.labels.items():
        if path is None:
            labels[key] = None
            continue
        clean = clean_path(root, path)
        if not clean.is_file():
            return None
        labels[key] = clean
    return dataclasses.replace(files, labels=labels)


def annotation_ceiling(root, dataset: str) -> pd.DataFrame:
    """Per case that has clean masks under ``root/clean_reference/``: ``case_id``, ``dice``, ``hd95``, ``assd`` and
    ``contour_f1`` (tolerance one voxel: the larger in-plane spacing) of the clean target (as prediction) against
    the written reference, both read through the dataset's own loader (so the target is the loader's: WMH label 1,
    LiTS tumour, IDRiD's lesion-type union), and ``voxel_mm``. Empty when the stand-in has no clean masks
    (``voxel-floor`` regime, or real data). Cases where both are empty are skipped (no boundary)."""
    root = Path(root)
    rows = []
    if (root / CLEAN_FOLDER).is_dir():
        for files in find_cases(dataset, root):
            clean_files = _clean_files(files, root)
            if clean_files is None:
                continue
            case, clean = read_case(files), read_case(clean_files)
            ref, pred = case.mask, clean.mask
            if not ref.any() and not pred.any():
                continue
            spacing = tuple(case.spacing)
            tol = float(max(spacing[-2:]))
            rows.append({"case_id": case.case_id, "dice": dice(ref, pred), "hd95": hd95(ref, pred, spacing=spacing),
                         "assd": assd(ref, pred, spacing=spacing),
                         "contour_f1": contour_f1(ref, pred, tolerance=tol, spacing=spacing), "voxel_mm": tol})
    return pd.DataFrame(rows, columns=["case_id", "dice", "hd95", "assd", "contour_f1", "voxel_mm"])


def ceiling_summary(ceiling: pd.DataFrame) -> pd.DataFrame:
    """Mean, minimum and maximum over cases of each ceiling metric (one row per metric)."""
    metrics = ["dice", "hd95", "assd", "contour_f1"]
    if ceiling.empty:
        return pd.DataFrame(columns=["metric", "mean", "min", "max"])
    return pd.DataFrame([{"metric": m, "mean": ceiling[m].mean(), "min": ceiling[m].min(), "max": ceiling[m].max()}
                         for m in metrics])


def write_calibration(ws, dataset: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The data chapter's calibration: :func:`data_calibration` of the prepared dataset and
    :func:`annotation_ceiling` of its stand-in (empty for real data or the ``voxel-floor`` regime), written to
    ``results/<dataset>/calibration.csv`` and ``annotation_ceiling.csv``."""
    summary = load_summary(ws, dataset)
    calibration = data_calibration(dataset, summary.lesions, summary.cases)
    root, _ = manifest_root(ws, dataset)
    ceiling = annotation_ceiling(root, dataset)
    out = ws.results(dataset)
    write_csv(calibration, out / "calibration.csv")
    write_csv(ceiling, out / "annotation_ceiling.csv")
    return calibration, ceiling
