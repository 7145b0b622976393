"""Preprocessing: one recorded recipe per dataset, identical for every model, turning a case into a stack of
2D training samples and mapping predictions back to the case's original grid.

Conventions
-----------
- Input: a :class:`helpers.data.layouts.Case` (volumes ``(z, y, x)`` or ``(z, y, x, c)``; fundus ``(y, x, 3)`` uint8).
- Output: :class:`PreparedCase` with ``image`` float32 ``(n_slices, channels, H, W)`` (volumes: every axial
  slice, in order; 2D images: ``n_slices = 1``), ``mask`` bool ``(n_slices, H, W)``, ``ignore`` likewise or
  ``None``.
- ``scale`` is the per-spatial-axis factor prepared size / original size (volumes: ``(1.0, H/Y, W/X)``, the
  slice axis is never resampled; images: ``(H/Y, W/X)``). A scale below 1 shrinks every lesion: record it and
  evaluate on the original grid (:func:`restore`).

Intensity normalisation, per modality (a :class:`Recipe`; :mod:`helpers.data.datasets` names each dataset's)
----------------------------------------------------------------------------------------------------
- **CT (LiTS)**: clip Hounsfield units to a window (default ``(-200, 250)`` HU, an abdominal soft-tissue
  window covering liver and tumour) and map it linearly to ``[0, 1]``. Out-of-field padding (-2048) and bone
  outliers end at 0 and 1.
- **MRI (WMH)**: z-score of each channel within the head foreground (Otsu threshold of the first channel,
  FLAIR, clipped at its 99th percentile so that outliers cannot take the threshold; holes filled, largest
  connected component); values clipped to ``[-z_clip, z_clip]``
  (default 5). The WMH layout has no brain mask on the FLAIR grid (``3DT1_mask`` lies on the 3DT1 grid),
  so the head foreground stands in for the brain.
- **Fundus (IDRiD)**: colour normalisation by a per-channel z-score within the circular field of view (pixels
  whose mean RGB exceeds 10, holes filled, largest component); pixels outside the field of view are 0.

Region of interest (LiTS, optional, ``liver_roi_mm``): the normalised CT is set to 0 (the window's floor) outside the
liver of the reference segmentation (labels > 0, read from the case's ``label_file``), dilated in-plane by
``liver_roi_mm`` millimetres, in training, validation and test alike. It stands in for the first stage of a cascaded
LiTS pipeline (liver, then tumours inside it): the models compare on tumour segmentation within the liver, not on
telling tumour from bowel of the same density. The reference liver is an oracle: a real pipeline's liver stage adds
its own errors. Masks are not changed and evaluation covers the whole volume.

Empty masks pass through unchanged (an all-false stack); slices without lesions are kept, so a trainer that
wants to oversample lesion slices does so itself.

Resampling: in-plane resize (order-1 interpolation, Gaussian anti-aliasing when shrinking) of the image; masks
are resized the same way as floats and thresholded at 0.5 (a lesion smaller than about one output pixel
vanishes, which is why the scale is recorded). :func:`restore` resizes a prediction stack back with order-1
interpolation (the caller thresholds probabilities).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.transform import resize

from helpers.base.io import save_npz
from helpers.data.layouts import Case, read_nifti
from helpers.base.paths import Workspace

__all__ = [
    "CT_WINDOW", "Z_CLIP", "FUNDUS_FOV_THRESHOLD", "KINDS", "PreparedCase", "Recipe", "describe_ct", "describe_mri",
    "describe_fundus", "preprocessing_record", "normalize_ct", "normalize_mri", "normalize_fundus", "liver_region",
    "prepare_case", "restore", "save_prepared", "load_prepared",
]

CT_WINDOW = (-200.0, 250.0)
Z_CLIP = 5.0
FUNDUS_FOV_THRESHOLD = 10.0
KINDS = ("volume", "image")


@dataclass(frozen=True)
class PreparedCase:
    """A case ready for 2D training (see the module docstring for shapes and conventions)."""

    case_id: str
    image: np.ndarray
    mask: np.ndarray
    ignore: np.ndarray | None
    spacing: tuple[float, ...]
    original_shape: tuple[int, ...]
    scale: tuple[float, ...]
    affine: np.ndarray | None
    kind: str
    record: dict = field(default_factory=dict)

    @property
    def n_slices(self) -> int:
        return int(self.image.shape[0])


@dataclass(frozen=True)
class Recipe:
    """How the cases of one dataset become 2D training samples (each registry entry of :mod:`helpers.data.datasets`
    holds one).

    Attributes
    ----------
    dataset : str
        The dataset's registry name (recorded with every prepared case).
    kind : {"volume", "image"}
        ``"volume"``: every axial slice is a sample; ``"image"``: the case is one sample.
    normalize : callable
        ``normalize(case, **options) -> float32`` channels-last image, e.g. :func:`normalize_ct`.
    describe : callable
        ``describe(**options) -> dict``, the machine-readable description of ``normalize``.
    options : tuple of str
        Which of :func:`prepare_case`'s normalisation options (``ct_window``, ``z_clip``) ``normalize`` and
        ``describe`` take.
    region_of_interest : callable, optional
        ``region_of_interest(case, margin_mm) -> bool (z, y, x)``, enabling ``liver_roi_mm`` (LiTS:
        :func:`liver_region`); ``None``: the dataset has none.
    """

    dataset: str
    kind: str
    normalize: Callable[..., np.ndarray]
    describe: Callable[..., dict]
    options: tuple[str, ...] = ()
    region_of_interest: Callable[..., np.ndarray] | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")

    def chosen(self, **options) -> dict:
        """The subset of ``options`` that this recipe's normaliser takes."""
        return {name: options[name] for name in self.options}


def describe_ct(*, ct_window=CT_WINDOW) -> dict:
    return {"method": "ct_window", "window_hu": list(ct_window), "output_range": [0.0, 1.0]}


def describe_mri(*, z_clip: float = Z_CLIP) -> dict:
    return {"method": "zscore_in_head_foreground",
            "foreground": "otsu(first channel clipped at its 99th percentile), "
            "holes filled, largest component", "clip": [-z_clip, z_clip], "channels": "FLAIR, T1 (pre/)"}


def describe_fundus() -> dict:
    return {"method": "zscore_per_channel_in_field_of_view",
            "field_of_view": f"mean RGB > {FUNDUS_FOV_THRESHOLD}, holes filled, largest component",
            "outside_field_of_view": 0.0}


def preprocessing_record(recipe: Recipe, *, size=None, factor=None, ct_window=CT_WINDOW, z_clip=Z_CLIP,
                         liver_roi_mm=None) -> dict:
    """The machine-readable description of the recipe (written to ``results/<dataset>/preprocessing.json``)."""
    if not isinstance(recipe, Recipe):
        raise TypeError(f"recipe must be a helpers.data.preprocessing.Recipe, got {type(recipe).__name__}")
    volume = recipe.kind == "volume"
    return {
        "dataset": recipe.dataset,
        "kind": recipe.kind,
        "normalization": recipe.describe(**recipe.chosen(ct_window=ct_window, z_clip=z_clip)),
        "resize": {"size": list(size) if size is not None else None, "factor": factor,
                   "image": "order-1 interpolation, anti-aliasing when shrinking",
                   "mask": "order-1 interpolation of the float mask, then >= 0.5",
                   "slice_axis": "never resampled" if volume else None},
        "samples": "every axial slice (z) of each volume" if volume else "one image per case",
        "restore": "order-1 interpolation of the prediction stack back to the original grid; caller thresholds",
        "region_of_interest": None if liver_roi_mm is None else {
            "region": "reference liver (labels > 0), dilated in-plane", "margin_mm": float(liver_roi_mm),
            "outside": 0.0, "applies_to": "train, validation and test images (an oracle first stage)"},
    }

def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def _zscore(values: np.ndarray, region: np.ndarray) -> np.ndarray:
    inside = values[region]
    mean = float(inside.mean()) if inside.size else 0.0
    std = float(inside.std()) if inside.size else 1.0
    return (values - mean) / (std if std > 0 else 1.0)


def normalize_ct(case, *, ct_window=CT_WINDOW) -> np.ndarray:
    """CT: Hounsfield units clipped to ``ct_window`` and mapped linearly to ``[0, 1]``; ``(z, y, x, 1)``."""
    image = np.asarray(case.image)
    lo, hi = (float(v) for v in ct_window)
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise ValueError(f"ct_window must be two finite HU values (low < high), got {ct_window!r}")
    if image.ndim != 3:
        raise ValueError(f"case {case.case_id!r}: CT image must be (z, y, x), got shape {image.shape}")
    out = (np.clip(image.astype(np.float32), lo, hi) - lo) / (hi - lo)
    return out[..., None]


def _head_foreground(first: np.ndarray) -> np.ndarray:
    # Otsu on intensities clipped at the 99th percentile, so a few bright outliers cannot take the threshold
    clipped = np.minimum(first, np.percentile(first, 99.0))
    threshold = threshold_otsu(clipped) if clipped.max() > clipped.min() else clipped.max()
    foreground = _largest_component(ndimage.binary_fill_holes(first > threshold))
    return foreground if foreground.any() else np.ones(first.shape, dtype=bool)


def normalize_mri(case, *, z_clip: float = Z_CLIP) -> np.ndarray:
    """MRI: each channel z-scored within the head foreground of the first channel and clipped to
    ``[-z_clip, z_clip]``; ``(z, y, x, c)``."""
    image = np.asarray(case.image)
    if not (np.isfinite(z_clip) and z_clip > 0):
        raise ValueError(f"z_clip must be a positive finite float, got {z_clip!r}")
    vol = image[..., None] if image.ndim == 3 else image
    if vol.ndim != 4:
        raise ValueError(f"case {case.case_id!r}: MRI image must be (z, y, x) or (z, y, x, c), got {image.shape}")
    foreground = _head_foreground(vol[..., 0].astype(np.float32))
    channels = [np.clip(_zscore(vol[..., c].astype(np.float32), foreground), -z_clip, z_clip)
                for c in range(vol.shape[-1])]
    return np.stack(channels, axis=-1).astype(np.float32)


def normalize_fundus(case) -> np.ndarray:
    """Fundus: per-channel z-score within the circular field of view, 0 outside it; ``(y, x, 3)``."""
    image = np.asarray(case.image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"case {case.case_id!r}: fundus image must be (y, x, 3), got shape {image.shape}")
    rgb = image.astype(np.float32)
    fov = _largest_component(ndimage.binary_fill_holes(rgb.mean(axis=-1) > FUNDUS_FOV_THRESHOLD))
    if not fov.any():
        fov = np.ones(fov.shape, dtype=bool)
    out = np.stack([_zscore(rgb[..., c], fov) for c in range(3)], axis=-1)
    out[~fov] = 0.0
    return out.astype(np.float32)

def _target_size(shape_yx, size, factor) -> tuple[int, int]:
    if size is not None and factor is not None:
        raise ValueError("give size or factor, not both")
    if size is not None:
        if (not isinstance(size, (tuple, list)) or len(size) != 2
                or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in size)):
            raise ValueError(f"size must be two positive integers (H, W), got {size!r}")
        return int(size[0]), int(size[1])
    if factor is not None:
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not (0 < factor <= 1):
            raise ValueError(f"factor must be a float in (0, 1], got {factor!r}")
        return max(1, int(round(shape_yx[0] * factor))), max(1, int(round(shape_yx[1] * factor)))
    return int(shape_yx[0]), int(shape_yx[1])


def _resize_stack(stack: np.ndarray, hw, *, channels_last: bool) -> np.ndarray:
    """Resize the two in-plane axes of ``(n, y, x[, c])`` to ``hw`` (order 1, anti-aliasing when shrinking)."""
    if tuple(stack.shape[1:3]) == tuple(hw):
        return stack
    out_shape = (stack.shape[0], *hw, *stack.shape[3:]) if channels_last else (stack.shape[0], *hw)
    shrink = hw[0] < stack.shape[1] or hw[1] < stack.shape[2]
    sigma = None
    if shrink:
        sigma = [0.0] + [max(0.0, (stack.shape[i + 1] / hw[i] - 1) / 2) for i in range(2)]
        sigma += [0.0] * (stack.ndim - 3)
    return resize(stack.astype(np.float32), out_shape, order=1, mode="edge", anti_aliasing=shrink,
                  anti_aliasing_sigma=sigma, preserve_range=True).astype(np.float32)


def liver_region(case, margin_mm: float) -> np.ndarray:
    """The reference liver of a LiTS case (labels > 0 of its ``meta["label_file"]``), dilated in-plane by
    ``margin_mm`` (a disc of that radius in mm, slice by slice): bool ``(z, y, x)``."""
    if isinstance(margin_mm, bool) or not isinstance(margin_mm, (int, float)) or not np.isfinite(margin_mm) \
            or margin_mm < 0:
        raise ValueError(f"liver_roi_mm must be a non-negative finite number, got {margin_mm!r}")
    label_file = (getattr(case, "meta", None) or {}).get("label_file")
    if not label_file:
        raise ValueError(f"case {case.case_id!r}: liver_roi_mm needs a LiTS case with meta['label_file'] (the "
                         "segmentation holding the liver), read by helpers.data.layouts.read_lits")
    label, _, _ = read_nifti(Path(label_file), what="LiTS label")
    if label.shape != np.asarray(case.mask).shape:
        raise ValueError(f"case {case.case_id!r}: label file {label_file!r} has shape {label.shape}, "
                         f"the case {np.asarray(case.mask).shape}")
    liver = label > 0
    sy, sx = case.spacing[1], case.spacing[2]
    ry, rx = int(np.floor(margin_mm / sy)), int(np.floor(margin_mm / sx))
    if ry == 0 and rx == 0:
        return liver
    yy, xx = np.ogrid[-ry:ry + 1, -rx:rx + 1]
    disc = ((yy * sy) ** 2 + (xx * sx) ** 2) <= margin_mm**2 + 1e-9
    return ndimage.binary_dilation(liver, structure=disc[None])


def prepare_case(case, recipe: Recipe, *, size=None, factor=None, ct_window=CT_WINDOW,
                 z_clip: float = Z_CLIP, liver_roi_mm: float | None = None) -> PreparedCase:
    """Normalise, resize and slice a case into 2D training samples.

    Parameters
    ----------
    case : helpers.data.layouts.Case
    recipe : Recipe
        The dataset's recipe (``helpers.data.datasets.get(name).recipe``): normalisation rule and sample kind.
    size : (int, int), optional
        In-plane output size ``(H, W)`` of every sample; ``None`` keeps the original size.
    factor : float, optional
        Alternatively, the in-plane scale factor in ``(0, 1]`` (output = round(original * factor)).
    ct_window : (float, float)
        HU window for CT.
    z_clip : float
        Clip of the MRI z-scores.
    liver_roi_mm : float, optional
        LiTS only: set the image to 0 outside the reference liver dilated by this many mm (see the module
        docstring); None (default) keeps the whole image.

    Returns
    -------
    PreparedCase
    """
    if not isinstance(case, Case):
        raise TypeError(f"case must be a helpers.data.layouts.Case, got {type(case).__name__}")
    if not isinstance(recipe, Recipe):
        raise TypeError(f"recipe must be a helpers.data.preprocessing.Recipe, got {type(recipe).__name__}")
    normalized = _normalized_in_region(case, recipe, recipe.chosen(ct_window=ct_window, z_clip=z_clip), liver_roi_mm)
    image, mask, ignore = _as_stacks(normalized, case, recipe.kind)
    hw = _target_size(mask.shape[1:3], size, factor)
    image_out = _resize_stack(image, hw, channels_last=True).transpose(0, 3, 1, 2)
    mask_out = _resize_stack(mask.astype(np.float32), hw, channels_last=False) >= 0.5
    ignore_out = None if ignore is None else _resize_stack(ignore.astype(np.float32), hw, channels_last=False) >= 0.5
    in_plane = (hw[0] / mask.shape[1], hw[1] / mask.shape[2])
    scale = (1.0, *in_plane) if recipe.kind == "volume" else in_plane
    record = preprocessing_record(recipe, size=size, factor=factor, ct_window=ct_window, z_clip=z_clip,
                                  liver_roi_mm=liver_roi_mm)
    return PreparedCase(case.case_id, np.ascontiguousarray(image_out, dtype=np.float32), mask_out, ignore_out,
                        tuple(float(s) for s in case.spacing), tuple(int(s) for s in case.mask.shape),
                        tuple(float(s) for s in scale), case.affine, recipe.kind, record)


def _normalized_in_region(case, recipe: Recipe, options: dict, liver_roi_mm) -> np.ndarray:
    """The normalised image, set to 0 outside the recipe's region of interest when ``liver_roi_mm`` is given."""
    normalized = recipe.normalize(case, **options)
    if liver_roi_mm is None:
        return normalized
    if recipe.region_of_interest is None:
        raise ValueError(f"liver_roi_mm applies to LiTS only, got dataset {recipe.dataset!r}")
    return np.where(recipe.region_of_interest(case, liver_roi_mm)[..., None], normalized, 0.0).astype(np.float32)


def _as_stacks(normalized: np.ndarray, case, kind: str):
    """Image, mask and ignore as stacks of samples: a volume's slices, or one image as a stack of one."""
    mask = np.asarray(case.mask, dtype=bool)
    ignore = None if case.ignore is None else np.asarray(case.ignore, dtype=bool)
    if kind == "image":
        normalized, mask = normalized[None], mask[None]
        ignore = None if ignore is None else ignore[None]
    return normalized, mask, ignore

def restore(stack, prepared: PreparedCase) -> np.ndarray:
    """Map a ``(n_slices, H, W)`` prediction (probabilities or a mask) back to the case's original grid.

    Order-1 interpolation in-plane; the result is float32 of shape ``prepared.original_shape`` (volumes
    ``(z, y, x)``, images ``(y, x)``). Threshold it (e.g. ``>= 0.5``) to get a mask.
    """
    if not isinstance(prepared, PreparedCase):
        raise TypeError(f"prepared must be a PreparedCase, got {type(prepared).__name__}")
    stack = np.asarray(stack)
    expected = (prepared.n_slices, *prepared.mask.shape[1:])
    if stack.shape != expected:
        raise ValueError(f"stack must have shape {expected} (n_slices, H, W) of case {prepared.case_id!r}, "
                         f"got {stack.shape}")
    stack = stack.astype(np.float32)
    target_yx = prepared.original_shape[-2:]
    if tuple(stack.shape[1:]) != tuple(target_yx):
        stack = resize(stack, (stack.shape[0], *target_yx), order=1, mode="edge", anti_aliasing=False,
                       preserve_range=True).astype(np.float32)
    return stack if prepared.kind == "volume" else stack[0]


def save_prepared(ws, dataset: str, prepared: PreparedCase):
    """Write ``<ws>/prepared/<dataset>/<case_id>.npz`` atomically; returns the path."""
    ws = Workspace.at(ws)
    arrays = {
        "image": prepared.image, "mask": prepared.mask, "spacing": np.asarray(prepared.spacing, dtype=float),
        "original_shape": np.asarray(prepared.original_shape, dtype=np.int64),
        "scale": np.asarray(prepared.scale, dtype=float), "kind": np.asarray(prepared.kind),
        "case_id": np.asarray(prepared.case_id), "record": np.asarray(json.dumps(prepared.record, sort_keys=True)),
    }
    if prepared.ignore is not None:
        arrays["ignore"] = prepared.ignore
    if prepared.affine is not None:
        arrays["affine"] = np.asarray(prepared.affine, dtype=float)
    return save_npz(ws.prepared(dataset) / f"{prepared.case_id}.npz", **arrays)


def load_prepared(ws, dataset: str, case_id: str) -> PreparedCase:
    """Read a prepared case written by :func:`save_prepared` (error naming the file if it is missing)."""
    ws = Workspace.at(ws)
    path = ws.prepared(dataset) / f"{case_id}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"prepared file {str(path)!r}: not found; run the data section first")
    with np.load(path, allow_pickle=False) as data:
        return PreparedCase(
            case_id=str(data["case_id"]), image=data["image"], mask=data["mask"].astype(bool),
            ignore=data["ignore"].astype(bool) if "ignore" in data else None,
            spacing=tuple(float(s) for s in data["spacing"]),
            original_shape=tuple(int(s) for s in data["original_shape"]),
            scale=tuple(float(s) for s in data["scale"]), affine=data["affine"] if "affine" in data else None,
            kind=str(data["kind"]), record=json.loads(str(data["record"])),
        )
