"""Lesions: connected components, their sizes, lesion kinds and size quartiles.

Conventions
-----------
- Axis order: 3D masks are ``(z, y, x)`` with ``z`` the axial (slice) axis; 2D masks are ``(y, x)``.
- ``spacing`` is one positive float per numpy axis, in millimetres; ``None`` means 1 per axis.
- Masks are boolean numpy arrays of equal shape; reference before prediction; options keyword-only.
- Connectivity follows scikit-image: an integer 1..ndim, the largest number of orthogonal steps between two
  neighbours. The default (``None``) is ``ndim``: 8-connectivity in 2D, 26-connectivity in 3D, so that
  diagonally touching voxels belong to the same lesion.
- Lesion ids are the labels of :func:`label_lesions`, 1..n in raster order of each lesion's first voxel
  (the order of :func:`scipy.ndimage.label` and :func:`skimage.measure.label`); 0 is background.

Size columns (one definition for every dataset)
-----------------------------------------------
``n_voxels``
    Number of voxels (pixels in 2D).
``volume_mm3``
    Physical size: ``n_voxels * prod(spacing)``, i.e. mm^3 in 3D and mm^2 (an area) in 2D.
``area_fraction``
    The lesion's share of an image plane. 2D: lesion pixels / image pixels. 3D: the lesion's largest axial
    cross-section (voxels in its most populated ``z`` slice) / axial slice area (``shape[1] * shape[2]``),
    the slice-level equivalent of the 2D definition, so 2D and 3D lesions can share size bins.

Lesion kinds and size quartiles
-------------------------------
Rows of a lesion table are of kind :data:`REFERENCE` (``"lesion"``) or :data:`FALSE_POSITIVE`
(``"false_positive"``). Size quartiles (:data:`QUARTILES`, Q1 the smallest) are cut at :func:`quartile_edges`,
the 25th, 50th and 75th percentiles (numpy linear) of the reference lesions' area fractions, upper edges
inclusive (:func:`assign_quartiles`); :func:`with_quartile_bounds` states each stratum's bounds.

The lesion-wise protocol built on these components (matching, attribution, per-lesion metrics) is in
:mod:`helpers.metrics.lesions.matching`.

Empty-mask policy
-----------------
An empty mask has no lesions: :func:`label_lesions` returns zero labels and :func:`lesion_table` an empty
DataFrame with all its columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import cc3d
import numpy as np
import pandas as pd

from helpers.base.checks import as_connectivity, as_mask, as_spacing
from helpers.metrics import Crop, mask_box, on_boundary

__all__ = [
    "label_lesions", "Components", "crop_components", "component_stats", "lesion_table", "REFERENCE",
    "FALSE_POSITIVE", "QUARTILES", "quartile_edges", "assign_quartiles", "with_quartile_bounds",
]


# connected-components-3d names its neighbourhoods by neighbour count; scikit-image by orthogonal steps.
# A 2D crop is labelled as one slice of a 3D volume (6 = 4-, 26 = 8-connectivity in the plane): version 4.1.1's
# own 2D 8-connected path is wrong on about 5 % of random masks (it writes labels onto background pixels and
# splits components), which tests/test_lesions.py::test_label_matches_skimage_on_random_2d guards against.
_CC3D_CONNECTIVITY = {1: 6, 2: 18, 3: 26}
_CC3D_CONNECTIVITY_2D = {1: 6, 2: 26}


def _label_crop(crop: np.ndarray, connectivity: int, foreground: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Label a C-contiguous boolean crop whose foreground flat indices (ascending) are ``foreground``.

    Returns (labels image, old-to-raster-order lookup, n). ``connected-components-3d`` finds the same
    components as ``scipy.ndimage.label`` but may number them in another order; the lookup renumbers them
    1..n by the raster order of each component's first voxel.
    """
    if crop.ndim == 2:
        labels, n = cc3d.connected_components(crop[None], connectivity=_CC3D_CONNECTIVITY_2D[connectivity],
                                              return_N=True)
        labels = labels[0]
    else:
        labels, n = cc3d.connected_components(crop, connectivity=_CC3D_CONNECTIVITY[connectivity], return_N=True)
    n = int(n)
    lookup = np.zeros(n + 1, dtype=np.int64)
    if n:
        at = labels.ravel()[foreground].astype(np.int64)
        first = np.full(n + 1, foreground.size, dtype=np.int64)
        np.minimum.at(first, at, np.arange(foreground.size, dtype=np.int64))
        lookup[1 + np.argsort(first[1:], kind="stable")] = np.arange(1, n + 1)
    return labels, lookup, n


def label_lesions(mask: np.ndarray, *, connectivity: int | None = None) -> tuple[np.ndarray, int]:
    """Label the connected components (lesions) of a binary mask.

    Parameters
    ----------
    mask : numpy.ndarray of bool, 2D ``(y, x)`` or 3D ``(z, y, x)``
        The binary mask.
    connectivity : int, optional
        Neighbourhood as in scikit-image: 1..ndim orthogonal steps. ``None`` (default) means ``ndim``:
        8-connectivity in 2D, 26-connectivity in 3D. ``1`` gives 4- (2D) or 6-connectivity (3D).

    Returns
    -------
    labels : numpy.ndarray of int32
        Same shape as ``mask``; 0 for background, 1..n for lesions in raster order of their first voxel
        (the labels of ``scipy.ndimage.label``; computed with ``connected-components-3d`` on the mask's
        bounding box).
    n : int
        The number of lesions.

    Raises
    ------
    TypeError, ValueError
        If ``mask`` is not a 2D/3D boolean array or ``connectivity`` is not in 1..ndim.
    """
    mask = as_mask(mask, "mask")
    connectivity = as_connectivity(connectivity, mask.ndim)
    out = np.zeros(mask.shape, dtype=np.int32)
    box = mask_box(mask)
    if box is None:
        return out, 0
    window = tuple(slice(start, stop) for start, stop in box)
    crop = np.ascontiguousarray(mask[window])
    labels, lookup, n = _label_crop(crop, connectivity, np.flatnonzero(crop))
    out[window] = lookup.astype(np.int32)[labels]
    return out, n


def _table_columns(ndim: int) -> list[str]:
    return (
        ["lesion_id", "n_voxels", "volume_mm3", "area_fraction"]
        + [f"bbox_min_{axis}" for axis in range(ndim)]
        + [f"bbox_max_{axis}" for axis in range(ndim)]
        + [f"centroid_{axis}" for axis in range(ndim)]
    )


@dataclass(frozen=True)
class Components:
    """The connected components of one mask in a padded crop, as foreground voxels (no label image).

    ``flat`` are the crop's foreground flat indices (ascending, i.e. raster order), ``labels`` their component
    (1..n, raster order of first voxel), ``on_boundary`` whether each is a boundary voxel of the mask.
    """

    flat: np.ndarray
    labels: np.ndarray
    n: int
    on_boundary: np.ndarray


def crop_components(flat_mask: np.ndarray, crop: "Crop", connectivity: int) -> Components:
    """The :class:`Components` of a raveled padded crop (:meth:`helpers.metrics.Crop.take`) of one mask."""
    flat = np.flatnonzero(flat_mask)
    image, lookup, n = _label_crop(flat_mask.reshape(crop.shape), connectivity, flat)
    labels = lookup[image.ravel()[flat]]
    del image
    return Components(flat, labels, n, on_boundary(flat_mask, flat, crop.strides))


def component_stats(
    components: Components, crop: "Crop", image_shape: tuple[int, ...], spacing: tuple[float, ...]
) -> dict[str, np.ndarray]:
    """The :func:`lesion_table` columns of every component, from one pass over its voxels."""
    ndim = len(image_shape)
    n, ids = components.n, components.labels
    coordinates = [index + origin for index, origin in zip(crop.coordinates(components.flat), crop.origin)]
    n_voxels = np.bincount(ids, minlength=n + 1)[1:]
    if ndim == 2:
        area_fraction = n_voxels / float(np.prod(image_shape))
    else:
        # Voxels per (lesion, z slice); the largest slice count is the lesion's axial cross-section.
        z_local = coordinates[0] - (crop.origin[0] + 1)
        nz = crop.shape[0] - 2
        per_slice = np.bincount(ids * nz + z_local, minlength=(n + 1) * nz).reshape(n + 1, nz)[1:]
        area_fraction = per_slice.max(axis=1) / float(image_shape[1] * image_shape[2])
    data = {
        "lesion_id": np.arange(1, n + 1, dtype=np.int64),
        "n_voxels": n_voxels.astype(np.int64),
        "volume_mm3": n_voxels * float(np.prod(spacing)),
        "area_fraction": area_fraction.astype(np.float64),
    }
    for axis in range(ndim):
        low = np.full(n + 1, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(low, ids, coordinates[axis])
        data[f"bbox_min_{axis}"] = low[1:]
    for axis in range(ndim):
        high = np.full(n + 1, -1, dtype=np.int64)
        np.maximum.at(high, ids, coordinates[axis])
        data[f"bbox_max_{axis}"] = high[1:] + 1
    for axis in range(ndim):
        data[f"centroid_{axis}"] = np.bincount(ids, weights=coordinates[axis], minlength=n + 1)[1:] / n_voxels
    return data


def _empty_table(ndim: int) -> pd.DataFrame:
    columns = _table_columns(ndim)
    frame = pd.DataFrame({name: pd.Series(dtype="int64") for name in columns})
    for name in ["volume_mm3", "area_fraction"] + [f"centroid_{axis}" for axis in range(ndim)]:
        frame[name] = frame[name].astype("float64")
    return frame


def lesion_table(
    mask: np.ndarray, *, spacing=None, connectivity: int | None = None
) -> pd.DataFrame:
    """One row per lesion (connected component) of ``mask``, in label order.

    Parameters
    ----------
    mask : numpy.ndarray of bool, 2D ``(y, x)`` or 3D ``(z, y, x)``
        The binary mask.
    spacing : sequence of float, optional
        Voxel size per numpy axis in millimetres; ``None`` means 1 per axis.
    connectivity : int, optional
        As in :func:`label_lesions` (default ``ndim``: 8-connectivity in 2D, 26 in 3D).

    Returns
    -------
    pandas.DataFrame
        Columns ``lesion_id`` (1..n, the labels of :func:`label_lesions`), ``n_voxels``, ``volume_mm3``
        (``n_voxels * prod(spacing)``: mm^3 in 3D, mm^2 in 2D), ``area_fraction`` (2D: pixels / image pixels;
        3D: largest axial cross-section / ``shape[1] * shape[2]``), ``bbox_min_<axis>`` (inclusive) and
        ``bbox_max_<axis>`` (exclusive) for axis 0..ndim-1, and ``centroid_<axis>`` in voxel coordinates
        (the mean index along that axis). An empty mask gives an empty frame with these columns.

    Raises
    ------
    TypeError, ValueError
        If ``mask`` is not a 2D/3D boolean array, ``spacing`` is not ndim positive numbers, or
        ``connectivity`` is not in 1..ndim.
    """
    mask = as_mask(mask, "mask")
    spacing = as_spacing(spacing, mask.ndim)
    connectivity = as_connectivity(connectivity, mask.ndim)
    box = mask_box(mask)
    if box is None:
        return _empty_table(mask.ndim)
    crop = Crop.around(box)
    components = crop_components(crop.take(mask).ravel(), crop, connectivity)
    return pd.DataFrame(component_stats(components, crop, mask.shape, spacing), columns=_table_columns(mask.ndim))


# ------------------------------------------------------------------------------------------- lesion kinds, sizes
REFERENCE = "lesion"
"""``kind`` of a reference-lesion row (:func:`helpers.metrics.lesions.evaluate_lesions` and the study's per-lesion
table)."""
FALSE_POSITIVE = "false_positive"
"""``kind`` of a false-positive component's row (and the ``metric`` of its one row in the per-lesion table)."""
QUARTILES: tuple[str, ...] = ("Q1", "Q2", "Q3", "Q4")
"""Lesion-size quartile labels, smallest first."""


def quartile_edges(area_fractions) -> np.ndarray:
    """The 25th, 50th and 75th percentiles of the reference lesions' area fractions (linear interpolation).

    Raises
    ------
    ValueError
        If there is no finite area fraction, or one outside [0, 1].
    """
    a = np.asarray(area_fractions, dtype=float).ravel()
    a = a[np.isfinite(a)]
    if a.size == 0:
        raise ValueError("area_fractions holds no finite value: no reference lesion to define quartiles")
    if a.min() < 0 or a.max() > 1:
        raise ValueError(f"area_fractions must lie in [0, 1], got values from {a.min()} to {a.max()}")
    return np.quantile(a, [0.25, 0.5, 0.75])


def assign_quartiles(area_fractions, edges) -> np.ndarray:
    """Quartile labels ``"Q1"`` ... ``"Q4"`` (upper edges inclusive); ``""`` where the area fraction is NaN.

    Examples
    --------
    >>> assign_quartiles([0.1, 0.2, 0.25, 0.3, 0.9], [0.2, 0.3, 0.5]).tolist()
    ['Q1', 'Q1', 'Q2', 'Q2', 'Q4']
    """
    edges = np.asarray(edges, dtype=float)
    if edges.shape != (3,) or not np.all(np.isfinite(edges)) or np.any(np.diff(edges) < 0):
        raise ValueError(f"edges must be 3 finite non-decreasing values, got {edges.tolist()}")
    a = np.asarray(area_fractions, dtype=float).ravel()
    index = np.searchsorted(edges, a, side="left")
    labels = np.array(QUARTILES, dtype=object)[np.minimum(index, 3)]
    labels[~np.isfinite(a)] = ""
    return labels.astype(str)


def with_quartile_bounds(table: pd.DataFrame, edges) -> pd.DataFrame:
    """Add the area-fraction bounds of each row's stratum: ``area_fraction_above`` (exclusive lower bound) and
    ``area_fraction_upto`` (inclusive upper bound); Q1 starts above 0, Q4 ends at 1, other strata get NaN."""
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be a pandas DataFrame, got {type(table).__name__}")
    if "stratum" not in table.columns:
        raise ValueError(f"table lacks columns ['stratum']; has {list(table.columns)}")
    e = np.asarray(edges, dtype=float)
    if e.shape != (3,):
        raise ValueError(f"edges must be 3 values, got {e.tolist()}")
    bounds = {"Q1": (0.0, e[0]), "Q2": (e[0], e[1]), "Q3": (e[1], e[2]), "Q4": (e[2], 1.0)}
    lower = table["stratum"].map(lambda s: bounds.get(s, (np.nan, np.nan))[0]).astype(float)
    upper = table["stratum"].map(lambda s: bounds.get(s, (np.nan, np.nan))[1]).astype(float)
    return table.assign(area_fraction_above=lower, area_fraction_upto=upper)
