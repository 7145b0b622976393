"""Pictures of the definitions: a 2D reference and prediction with their boundary pixels, and the distance to
the reference boundary with the predicted boundary on top (:mod:`helpers.metrics.distances` defines both).

Figures are drawn on demand through :mod:`helpers.base.plots`; importing this module imports no matplotlib.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from helpers.base.checks import as_mask_pair, as_spacing, as_tolerance
from helpers.base.plots import get_axes
from helpers.metrics.distances import TOLERANCE_SLACK, boundary_unchecked

__all__ = ["plot_boundaries", "plot_distance_map"]


def _as_2d_pair(ref, pred) -> tuple[np.ndarray, np.ndarray]:
    ref, pred = as_mask_pair(ref, pred)
    if ref.ndim != 2:
        raise ValueError(f"ref and pred must be 2D to plot, got shape {ref.shape}; pass a slice")
    return ref, pred


def _frame(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_color("#bbbbbb")


def plot_boundaries(
    ref: np.ndarray, pred: np.ndarray, *, ax=None, title: str | None = None, annotate: bool = False
):
    """Show a 2D reference and prediction with their boundary pixels (as :func:`helpers.metrics.boundary` defines them).

    Reference-only pixels light grey, overlap mid grey, prediction-only light orange; reference boundary
    pixels marked with blue squares, predicted boundary pixels with orange dots. ``annotate=True`` writes each
    reference lesion's id (8-connected components, numbered as :func:`helpers.metrics.lesions.label_lesions`) next to
    it. Returns the axes.
    """
    ref, pred = _as_2d_pair(ref, pred)
    fig, ax = get_axes(ax, figsize=(3.5, 3.5))
    canvas = np.ones(ref.shape + (3,))
    canvas[ref & ~pred] = (0.85, 0.85, 0.85)
    canvas[ref & pred] = (0.65, 0.65, 0.65)
    canvas[~ref & pred] = (1.0, 0.87, 0.7)
    ax.imshow(canvas, interpolation="nearest")
    ry, rx = np.nonzero(boundary_unchecked(ref))
    py, px = np.nonzero(boundary_unchecked(pred))
    ax.scatter(rx, ry, marker="s", s=30, facecolors="none", edgecolors="#4c72b0", label="reference boundary")
    ax.scatter(px, py, marker="o", s=8, color="#dd8452", label="predicted boundary")
    if annotate:
        labels, n = ndimage.label(ref, structure=ndimage.generate_binary_structure(2, 2))
        for lesion_id, box in enumerate(ndimage.find_objects(labels), start=1):
            ax.text(box[1].start - 0.6, box[0].start - 0.6, str(lesion_id), ha="right", va="bottom", fontsize=8,
                    color="#4c72b0")
    _frame(ax)
    if title:
        ax.set_title(title)
    return ax


def plot_distance_map(
    ref: np.ndarray, pred: np.ndarray, *, spacing=None, tolerance: float | None = None, ax=None, title=None
):
    """Distance (mm) to the reference boundary over a 2D image, with predicted boundary pixels on top.

    The map is the Euclidean distance transform of the complement of the reference boundary (so each
    predicted boundary pixel's colour is its ``pred_to_ref`` distance); pixels beyond ``tolerance`` are
    marked with a cross. Returns the axes.
    """
    ref, pred = _as_2d_pair(ref, pred)
    spacing = as_spacing(spacing, 2)
    fig, ax = get_axes(ax, figsize=(4.0, 3.5))
    ref_boundary = boundary_unchecked(ref)
    if not ref_boundary.any():
        raise ValueError("ref must not be empty to plot distances to its boundary")
    distance = ndimage.distance_transform_edt(~ref_boundary, sampling=spacing)
    image = ax.imshow(distance, cmap="viridis", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="distance to reference boundary (mm)", shrink=0.8)
    py, px = np.nonzero(boundary_unchecked(pred))
    ax.scatter(px, py, marker="o", s=10, color="white", edgecolors="black", linewidths=0.4)
    if tolerance is not None:
        tolerance = as_tolerance(tolerance)
        far = distance[py, px] > tolerance * (1.0 + TOLERANCE_SLACK)
        ax.scatter(px[far], py[far], marker="x", s=14, color="red", linewidths=0.8, label=f"> {tolerance:g} mm")
    _frame(ax)
    if title:
        ax.set_title(title)
    return ax
