"""The voxel grid's own error: boundary metrics of voxelised analytic shapes against their exact continuous values.

A reference disc (2D) or ball (3D) of radius ``r`` mm is compared with the same shape *shifted* by ``shift_mm``
along the last axis, or *grown* concentrically by ``grow_mm``. Their exact surface distances are known in closed
form, so the error of every voxel-based metric of :mod:`helpers.metrics` is measurable as a function of the
lesion's size in voxels, at any spacing.

Exact values (continuous boundaries, distances to the nearest boundary point)
-----------------------------------------------------------------------------
Grown by ``g``
    Two concentric circles (spheres) of radii ``r`` and ``r + g``: every point of either boundary is exactly
    ``g`` from the other, so HD95 (both variants) = ASSD = MASD = ``g`` and contour F1 at tolerance ``tau`` is 1
    when ``g <= tau`` else 0.
Shifted by ``delta``
    Two circles (spheres) of radius ``r`` with centres ``delta`` apart. A boundary point at angle ``theta`` from the
    shift direction is ``d(theta) = |sqrt(r^2 + delta^2 - 2 r delta cos theta) - r|`` from the other boundary (the
    distance from a point to a circle is its distance to the centre minus the radius); the two directions have the
    same distribution by symmetry, so the directed-max and pooled HD95 agree, ASSD = MASD = the mean of ``d`` over
    the boundary measure (uniform in ``theta`` on a circle, uniform in ``cos theta`` on a sphere), HD = ``delta``,
    and contour F1 at ``tau`` = precision = recall = the boundary share with ``d <= tau``. The percentile and means
    are computed by midpoint quadrature with :data:`QUADRATURE_POINTS` nodes (error far below 1e-6 mm).

Voxel values
    The masks are the voxel centres inside the shapes (``sum(((i - c) * spacing)^2) <= r^2``); centres are placed at
    ``n_offsets`` seeded sub-voxel positions (the grid phase), and the error ``voxel - exact`` is summarised per
    radius by its mean, mean absolute and maximum absolute value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from helpers.base.checks import as_rng, as_spacing
from helpers.metrics.distances import (
    assd_from, contour_f1_from, hausdorff_from, masd_from, surface_distances,
)

__all__ = ["QUADRATURE_POINTS", "GRID_METRICS", "ball_mask", "exact_metrics", "voxel_metrics", "grid_error_table",
           "grid_error_bound", "exceeds_grid_error", "grid_error_at_spacing"]

QUADRATURE_POINTS = 200_000
#: The metrics whose grid error is measured (HD95 in both variants, the two average distances, contour F1).
GRID_METRICS = ("hd95", "hd95_pooled", "assd", "masd", "contour_f1")


def ball_mask(shape: tuple[int, ...], centre_index, radius_mm: float, spacing) -> np.ndarray:
    """The voxels whose centres lie in the disc / ball of ``radius_mm`` around ``centre_index`` (voxel units,
    may be fractional)."""
    spacing = as_spacing(spacing, len(shape))
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    squared = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre_index, spacing))
    return squared <= radius_mm**2 * (1.0 + 1e-12)


def _shift_distances(radius: float, delta: float, ndim: int) -> np.ndarray:
    nodes = (np.arange(QUADRATURE_POINTS) + 0.5) / QUADRATURE_POINTS
    cos = np.cos(np.pi * nodes) if ndim == 2 else 1.0 - 2.0 * nodes
    return np.abs(np.sqrt(np.maximum(radius**2 + delta**2 - 2.0 * radius * delta * cos, 0.0)) - radius)


def exact_metrics(radius_mm: float, *, ndim: int, shift_mm: float = 0.0, grow_mm: float = 0.0,
                  tolerance_mm: float = 1.0) -> dict:
    """The exact continuous values (module docstring) of a disc (``ndim=2``) or ball (``ndim=3``) of ``radius_mm``
    against itself shifted by ``shift_mm`` or grown by ``grow_mm`` (exactly one of the two non-zero)."""
    if ndim not in (2, 3):
        raise ValueError(f"ndim must be 2 or 3, got {ndim!r}")
    if (shift_mm != 0.0) == (grow_mm != 0.0):
        raise ValueError(f"give exactly one of shift_mm and grow_mm (non-zero), got {shift_mm!r}, {grow_mm!r}")
    if grow_mm:
        g = float(grow_mm)
        return {"hd": g, "hd95": g, "hd95_pooled": g, "assd": g, "masd": g,
                "contour_f1": 1.0 if g <= tolerance_mm else 0.0}
    d = _shift_distances(float(radius_mm), float(shift_mm), ndim)
    p95 = float(np.percentile(d, 95))
    share = float(np.mean(d <= tolerance_mm))
    return {"hd": float(abs(shift_mm)), "hd95": p95, "hd95_pooled": p95, "assd": float(d.mean()),
            "masd": float(d.mean()), "contour_f1": share}


def voxel_metrics(ref: np.ndarray, pred: np.ndarray, *, spacing, tolerance_mm: float = 1.0) -> dict:
    """The voxel-based values of :data:`GRID_METRICS` (and HD) of two non-empty masks, from one distance pass."""
    sd = surface_distances(ref, pred, spacing=spacing)
    return {"hd": hausdorff_from(sd, 100.0, False, 0.0), "hd95": hausdorff_from(sd, 95.0, False, 0.0),
            "hd95_pooled": hausdorff_from(sd, 95.0, True, 0.0), "assd": assd_from(sd, 0.0),
            "masd": masd_from(sd, 0.0), "contour_f1": contour_f1_from(sd, tolerance_mm)}


def grid_error_table(radii_mm: Sequence[float], *, spacing, shift_mm: float = 0.0, grow_mm: float = 0.0,
                     tolerance_mm: float = 1.0, n_offsets: int = 8, seed: int = 0) -> pd.DataFrame:
    """The grid error per radius and metric at ``spacing`` (2 values: discs; 3: balls).

    Returns
    -------
    pandas.DataFrame
        ``ndim, spacing, perturbation, amount_mm, radius_mm, n_voxels`` (mean reference voxels), ``metric, exact,
        voxel_mean, error_mean, abs_error_mean, abs_error_max, n_offsets``.
    """
    spacing = tuple(float(s) for s in spacing)
    ndim = len(spacing)
    rng = as_rng(seed)
    perturbation, amount = ("shift", shift_mm) if shift_mm else ("grow", grow_mm)
    rows = []
    for radius in radii_mm:
        exact = exact_metrics(radius, ndim=ndim, shift_mm=shift_mm, grow_mm=grow_mm, tolerance_mm=tolerance_mm)
        half = [int(np.ceil((radius + abs(shift_mm) + abs(grow_mm)) / s)) + 3 for s in spacing]
        shape = tuple(2 * h + 1 for h in half)
        values, sizes = {m: [] for m in GRID_METRICS}, []
        for _ in range(n_offsets):
            centre = np.array(half, dtype=float) + rng.uniform(-0.5, 0.5, ndim)
            ref = ball_mask(shape, centre, radius, spacing)
            moved = centre.copy()
            moved[-1] += shift_mm / spacing[-1]
            pred = ball_mask(shape, moved, radius + grow_mm, spacing)
            if not ref.any() or not pred.any():
                continue
            sizes.append(int(ref.sum()))
            for name, value in voxel_metrics(ref, pred, spacing=spacing, tolerance_mm=tolerance_mm).items():
                if name in values:
                    values[name].append(value)
        for name in GRID_METRICS:
            v = np.asarray(values[name], dtype=float)
            err = v - exact[name]
            rows.append({"ndim": ndim, "spacing": "x".join(f"{s:g}" for s in spacing), "perturbation": perturbation,
                         "amount_mm": float(amount), "radius_mm": float(radius),
                         "n_voxels": float(np.mean(sizes)) if sizes else 0.0, "metric": name, "exact": exact[name],
                         "voxel_mean": float(v.mean()) if v.size else np.nan,
                         "error_mean": float(err.mean()) if v.size else np.nan,
                         "abs_error_mean": float(np.abs(err).mean()) if v.size else np.nan,
                         "abs_error_max": float(np.abs(err).max()) if v.size else np.nan, "n_offsets": int(v.size)})
    return pd.DataFrame(rows)


def grid_error_at_spacing(spacing, *, radii_voxels: Sequence[float] = (0.75, 1, 1.5, 2, 3, 4, 6),
                          amounts_voxels: Sequence[float] = (0.3, 0.6, 0.9), n_offsets: int = 6,
                          seed: int = 0) -> pd.DataFrame:
    """:func:`grid_error_table` at one spacing, the way the study reads it: radii in in-plane voxels (the larger of
    the last two spacings), shapes shifted and grown by each of ``amounts_voxels`` in-plane voxels (sub-voxel, so
    that a one-voxel tolerance separates them from a miss: the exact contour F1 is 1 and any shortfall is the
    grid's), contour F1 at one in-plane voxel (the study's primary tolerance)."""
    spacing = tuple(float(s) for s in spacing)
    voxel = max(spacing[-2:])
    radii = [float(r) * voxel for r in radii_voxels]
    return pd.concat([grid_error_table(radii, spacing=spacing, tolerance_mm=voxel, n_offsets=n_offsets, seed=seed,
                                       **{key: float(a) * voxel})
                      for key in ("shift_mm", "grow_mm") for a in amounts_voxels], ignore_index=True)


def grid_error_bound(errors: pd.DataFrame, *, metric: str, n_voxels: float) -> float:
    """The largest absolute grid error of ``metric`` among the analytic shapes of ``errors``
    (:func:`grid_error_table` rows, any perturbations) whose size lies within a factor 2 of ``n_voxels``; the
    nearest size's when none does; NaN without a row of the metric."""
    sub = errors[(errors["metric"] == metric) & (errors["n_voxels"] > 0)]
    if not len(sub) or not np.isfinite(n_voxels) or n_voxels <= 0:
        return float("nan")
    ratio = np.abs(np.log2(sub["n_voxels"].to_numpy(dtype=float) / float(n_voxels)))
    near = sub[ratio <= 1.0]
    if not len(near):
        near = sub[ratio == ratio.min()]
    return float(near["abs_error_max"].max())


def exceeds_grid_error(difference: float, *, metric: str, n_voxels: float, errors: pd.DataFrame) -> dict:
    """Whether a between-model ``difference`` of ``metric`` (same unit) is larger than the grid's own error for
    lesions of ``n_voxels`` voxels (:func:`grid_error_bound`): ``{"bound", "verdict"}`` with the verdict
    ``"supported"`` (``|difference| > bound``), ``"not supported"`` or ``"cannot be assessed"`` (no bound or no
    finite difference)."""
    bound = grid_error_bound(errors, metric=metric, n_voxels=n_voxels)
    if not (np.isfinite(bound) and np.isfinite(difference)):
        return {"bound": bound, "verdict": "cannot be assessed"}
    return {"bound": bound, "verdict": "supported" if abs(difference) > bound else "not supported"}
