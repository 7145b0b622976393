"""Small-data study: a synthetic stand-in for 9 vessel cross-sections, a loader for a user's own folder, the
multi-class overlap scores (its cross-validation folds: ``helpers.data.splits``).

Conventions
-----------
- Images are 2D: RGB arrays ``(y, x, 3)``; label masks ``(y, x)`` of small integers. There is no physical spacing
  in this study (histology pixels are scored as counts), so areas are in pixels and thicknesses in pixels.
- Classes (the study's four): ``0 background``, ``1 lumen``, ``2 neointima``, ``3 media`` (:data:`CLASSES`).
  "Foreground classes" are all classes except 0.
- Images returned by the loader are ``float32`` in ``[0, 1]``: 8-bit images are divided by 255, 16-bit by 65535;
  float files must already lie in ``[0, 1]``. Grayscale images are repeated to 3 channels.
- Dice and IoU per class are :func:`helpers.metrics.dice` and :func:`helpers.metrics.iou` of the class's two
  binary masks, with their one empty-mask policy (both empty: 1; exactly one empty: 0, a false detection or a
  miss). The macro average over the foreground classes *excludes* a class absent from both the reference and the
  prediction (its 1 says only that the image lacks the class, not that the model segmented it) and counts it
  (``n_absent``, :func:`macro_scores`).
- Randomness only through an explicit ``seed``.

On-disk layout (the synthetic stand-in and the user's folder alike)::

    <root>/images/<case_id>.png|.tif|.tiff     RGB (or grayscale) image
    <root>/masks/<case_id>.png|.tif|.tiff      label mask, one integer per pixel (0..n_classes-1)

Images and masks are paired by file stem (``case_id``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from scipy import ndimage

from helpers import metrics
from helpers.base.io import write_csv, write_json
from helpers.base.paths import resolve
from helpers.report.evidence_figures import add_class_key
from helpers.base.plots import pyplot

__all__ = [
    "CLASSES", "make_vessel", "write_small_data", "VesselCase", "load_small_data", "data_summary", "resize_case",
    "multiclass_scores", "macro_scores", "DATASET", "prepare_small_data", "plot_cases", "DIHEDRAL", "dihedral",
    "stack_cases",
]

CLASSES: tuple[str, ...] = ("background", "lumen", "neointima", "media")
_EXTENSIONS = (".png", ".tif", ".tiff")


# --------------------------------------------------------------------------------------------------------------
# Synthetic stand-in
# --------------------------------------------------------------------------------------------------------------


def _smooth_noise(shape, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise rescaled to zero mean and unit standard deviation."""
    field_ = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=sigma, mode="wrap")
    std = field_.std()
    return (field_ - field_.mean()) / (std if std > 0 else 1.0)


def _radial_profile(theta: np.ndarray, rng: np.random.Generator, *, amplitude: float, orders=(2, 3, 4, 5)):
    """``1 + sum_k a_k cos(k theta + phi_k)``: a smooth, irregular closed contour in polar form."""
    out = np.ones_like(theta)
    for k in orders:
        out += rng.uniform(0, amplitude) / k * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return out


def make_vessel(size: int = 256, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic vessel cross-section: an RGB image and its 4-class label mask.

    The classes are concentric, irregular rings around a jittered centre: lumen (inner), neointima (an
    eccentric, crescent-shaped thickening of varying thickness, thin in some images), media (a band of nearly
    constant thickness) and background (adventitia and slide). Colours imitate an elastic van Gieson stain:
    pale lumen, pink-violet neointima, dark violet media with dark elastic laminae at its borders, pink
    adventitia on a near-white slide; each image gets its own stain tint, smooth texture and pixel noise.

    Parameters
    ----------
    size : int
        Side of the square image in pixels (>= 32).
    seed : int
        Seed of the image; the same seed gives the same image and mask.

    Returns
    -------
    image : numpy.ndarray
        ``uint8 (size, size, 3)``.
    mask : numpy.ndarray
        ``uint8 (size, size)`` with values in ``{0, 1, 2, 3}`` (:data:`CLASSES`).
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 32:
        raise ValueError(f"size must be an integer >= 32, got {size!r}")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    cy, cx = size / 2 + rng.uniform(-0.05, 0.05, size=2) * size
    r = np.hypot(yy - cy, xx - cx) / size  # radius in units of the image side
    theta = np.arctan2(yy - cy, xx - cx)

    lumen_r = rng.uniform(0.12, 0.19) * _radial_profile(theta, rng, amplitude=0.5)
    # Eccentric neointima: thickest at angle phi0, from nearly absent to thick, different per image.
    phi0 = rng.uniform(0, 2 * np.pi)
    max_thick = rng.uniform(0.02, 0.12)
    crescent = 0.5 * (1 + np.cos(theta - phi0)) ** 1.5 / 2 ** 0.5
    intima_r = lumen_r + 0.015 + max_thick * crescent * _radial_profile(theta, rng, amplitude=0.3)
    media_r = intima_r + rng.uniform(0.04, 0.07) * _radial_profile(theta, rng, amplitude=0.2)
    advent_r = media_r + rng.uniform(0.04, 0.08) * _radial_profile(theta, rng, amplitude=0.6)

    mask = np.zeros((size, size), dtype=np.uint8)
    mask[r < media_r] = 3
    mask[r < intima_r] = 2
    mask[r < lumen_r] = 1

    tint = rng.normal(0, 0.04, size=3)
    palette = {  # RGB in [0, 1]
        "slide": np.array([0.95, 0.93, 0.94]),
        "adventitia": np.array([0.88, 0.62, 0.70]),
        1: np.array([0.97, 0.95, 0.96]),
        2: np.array([0.80, 0.60, 0.78]),
        3: np.array([0.45, 0.22, 0.45]),
    }
    image = np.empty((size, size, 3))
    image[:] = palette["slide"]
    image[(mask == 0) & (r < advent_r)] = palette["adventitia"]
    for label in (1, 2, 3):
        image[mask == label] = palette[label]
    image += tint

    texture = _smooth_noise((size, size), rng, sigma=size / 64)
    fibres = np.sin(2 * np.pi * (r * size / 3.0 + 0.6 * texture))  # concentric wavy fibres in the media
    image[mask == 3] -= 0.08 * (fibres[mask == 3] > 0.6)[:, None]
    image += 0.05 * texture[..., None] * np.array([1.0, 0.8, 1.0])
    # Dark elastic laminae at the lumen-side and outer border of the media.
    lamina = (np.abs(r - intima_r) < 0.004) | (np.abs(r - media_r) < 0.003)
    image[lamina] = image[lamina] * 0.55
    image = ndimage.gaussian_filter(image, sigma=(size / 256, size / 256, 0))
    image += rng.normal(0, 0.03, size=image.shape)
    image = np.clip(np.round(image * 255), 0, 255).astype(np.uint8)
    return image, mask


def write_small_data(root, *, seed: int, n_images: int = 9, size: int = 256) -> pd.DataFrame:
    """Write the synthetic stand-in: ``n_images`` vessels as PNG files in the loader's layout.

    Image ``i`` (1-based, ``vessel_01`` ...) is drawn with seed ``seed * 1000 + i``, so the set is
    deterministic from ``seed`` and each image is independent of ``n_images``.

    Returns
    -------
    pandas.DataFrame
        One row per image: ``case_id``, ``image``, ``mask`` (paths) and the pixel count per class
        (``area_<class>``).
    """
    import imageio.v3 as iio

    if isinstance(n_images, bool) or not isinstance(n_images, (int, np.integer)) or n_images < 1:
        raise ValueError(f"n_images must be a positive integer, got {n_images!r}")
    root = Path(root)
    rows = []
    for i in range(1, n_images + 1):
        image, mask = make_vessel(size, seed=int(seed) * 1000 + i)
        case_id = f"vessel_{i:02d}"
        paths = {}
        for kind, arr in (("images", image), ("masks", mask)):
            path = root / kind / f"{case_id}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp.png")
            iio.imwrite(tmp, arr)
            tmp.replace(path)
            paths[kind] = path
        row = {"case_id": case_id, "image": str(paths["images"]), "mask": str(paths["masks"])}
        row.update({f"area_{name}": int((mask == k).sum()) for k, name in enumerate(CLASSES)})
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------------------
# Loader
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VesselCase:
    """One image of the small-data study.

    ``image`` is ``float32 (y, x, 3)`` in ``[0, 1]``; ``mask`` is ``uint8 (y, x)`` with labels
    ``0..n_classes-1``; ``source`` is the image file."""

    case_id: str
    image: np.ndarray
    mask: np.ndarray
    source: str
    meta: dict = field(default_factory=dict)


def _read(path: Path) -> np.ndarray:
    import io

    import imageio.v3 as iio
    import tifffile

    try:
        # Decode from bytes so that a failing decoder cannot leave the file open.
        data = path.read_bytes()
        if path.suffix.lower() in (".tif", ".tiff"):
            return np.asarray(tifffile.imread(io.BytesIO(data)))
        return np.asarray(iio.imread(data, extension=path.suffix.lower()))
    except Exception as err:  # noqa: BLE001 - any reader failure is reported with the file name
        raise ValueError(f"{path}: cannot read image file ({type(err).__name__}: {err})") from None


def _as_float_rgb(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"{path}: image must be (y, x) grayscale or (y, x, 3) RGB, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return (arr / 255.0).astype(np.float32)
    if arr.dtype == np.uint16:
        return (arr / 65535.0).astype(np.float32)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{path}: image has non-finite values")
        if arr.min() < 0 or arr.max() > 1:
            raise ValueError(f"{path}: float image must lie in [0, 1], got range [{arr.min():.3g}, {arr.max():.3g}]")
        return arr.astype(np.float32)
    raise ValueError(f"{path}: unsupported image dtype {arr.dtype} (expected uint8, uint16 or float)")


def _index(folder: Path, kind: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in _EXTENSIONS:
            continue
        if path.stem in found:
            raise ValueError(f"{path}: two {kind} files for case {path.stem!r} ({found[path.stem].name}, {path.name})")
        found[path.stem] = path
    if not found:
        raise ValueError(f"{folder}: no {kind} files (.png, .tif, .tiff)")
    return found


def load_small_data(
    root, *, n_classes: int = len(CLASSES), image_dir: str = "images", mask_dir: str = "masks"
) -> list[VesselCase]:
    """Read a folder of images and multi-class masks (PNG or TIFF), validating everything.

    Parameters
    ----------
    root : path
        Folder holding ``image_dir`` and ``mask_dir``; files are paired by stem.
    n_classes : int
        Number of classes; mask values must lie in ``0..n_classes-1``.
    image_dir, mask_dir : str
        Sub-folder names.

    Returns
    -------
    list of VesselCase
        Sorted by ``case_id``.

    Raises
    ------
    ValueError
        Naming the file: missing folder, no files, an image without a mask or a mask without an image,
        unreadable file, wrong dimensionality, non-integer or out-of-range mask values, image/mask shape
        mismatch, non-finite or out-of-range float image.
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 2:
        raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: data folder not found")
    for folder, kind in ((root / image_dir, "image"), (root / mask_dir, "mask")):
        if not folder.is_dir():
            raise ValueError(f"{folder}: {kind} folder not found")
    images, masks = _index(root / image_dir, "image"), _index(root / mask_dir, "mask")
    for stem in sorted(set(images) - set(masks)):
        raise ValueError(f"{images[stem]}: no mask for this image in {root / mask_dir}")
    for stem in sorted(set(masks) - set(images)):
        raise ValueError(f"{masks[stem]}: no image for this mask in {root / image_dir}")
    cases = []
    for stem in sorted(images):
        image = _as_float_rgb(_read(images[stem]), images[stem])
        mask_path = masks[stem]
        mask = _read(mask_path)
        if mask.ndim != 2:
            raise ValueError(f"{mask_path}: mask must be a 2D label image (y, x), got shape {mask.shape}")
        if not np.issubdtype(mask.dtype, np.integer) and mask.dtype != bool:
            raise ValueError(f"{mask_path}: mask must hold integer labels, got dtype {mask.dtype}")
        values = np.unique(mask)
        bad = values[(values < 0) | (values >= n_classes)]
        if bad.size:
            raise ValueError(f"{mask_path}: mask values {bad.tolist()} outside 0..{n_classes - 1}")
        if mask.shape != image.shape[:2]:
            raise ValueError(f"{mask_path}: mask shape {mask.shape} differs from image shape {image.shape[:2]}")
        cases.append(VesselCase(stem, image, mask.astype(np.uint8), str(images[stem]), {"mask": str(mask_path)}))
    return cases


def data_summary(cases: Sequence[VesselCase], *, class_names: Sequence[str] = CLASSES) -> pd.DataFrame:
    """One row per case: ``case_id``, ``height``, ``width`` and the fraction of pixels per class
    (``fraction_<class>``), so a user sees at once whether the folder was read as intended."""
    rows = []
    for case in cases:
        row = {"case_id": case.case_id, "height": case.mask.shape[0], "width": case.mask.shape[1]}
        for k, name in enumerate(class_names):
            row[f"fraction_{name}"] = float((case.mask == k).mean())
        rows.append(row)
    return pd.DataFrame(rows)


def stack_cases(cases: Sequence[VesselCase], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize cases to ``size x size`` (:func:`resize_case`) and stack them:
    ``x`` float32 ``(n, 3, size, size)``, ``y`` int64 ``(n, size, size)``."""
    if not cases:
        raise ValueError("cases must not be empty")
    pairs = [resize_case(c.image, c.mask, size) for c in cases]
    x = torch.from_numpy(np.stack([p[0] for p in pairs]).transpose(0, 3, 1, 2).copy())
    y = torch.from_numpy(np.stack([p[1] for p in pairs]).astype(np.int64))
    return x, y


#: Every draw of the training augmentation: ``(horizontal flip, vertical flip), quarter turns`` (16 draws giving the
#: 8 flips/rotations of the square).
DIHEDRAL: tuple[tuple[tuple[bool, bool], int], ...] = tuple(
    ((h, v), k) for h in (False, True) for v in (False, True) for k in range(4))


def dihedral(x: torch.Tensor, *, flips: tuple[bool, bool], k: int) -> torch.Tensor:
    """``x`` (``(..., y, x)``) flipped horizontally and/or vertically, then turned ``k`` quarter turns in the
    ``(y, x)`` plane: the one transform of the training augmentation (:mod:`helpers.studies.small_data.train`),
    also used to enumerate the images whose frozen features are cached (:mod:`.lite_models`). Bit-exact (a
    permutation of the elements)."""
    dims = [d for d, f in zip((-1, -2), flips) if f]
    if dims:
        x = x.flip(dims)
    return torch.rot90(x, k, (-2, -1))


def resize_case(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize an image (bilinear, anti-aliased) and its label mask (nearest neighbour) to ``size x size``.

    Nearest neighbour keeps the mask's labels exact (no invented classes at borders)."""
    from skimage.transform import resize

    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
        raise ValueError(f"size must be an integer >= 8, got {size!r}")
    if image.shape[:2] != mask.shape:
        raise ValueError(f"image shape {image.shape[:2]} and mask shape {mask.shape} differ")
    img = resize(image, (size, size), order=1, anti_aliasing=True, preserve_range=True).astype(np.float32)
    msk = resize(mask, (size, size), order=0, anti_aliasing=False, preserve_range=True).astype(np.uint8)
    return img, msk


# --------------------------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------------------------


def _check_labels(ref, pred, n_classes):
    ref, pred = np.asarray(ref), np.asarray(pred)
    if ref.shape != pred.shape:
        raise ValueError(f"ref shape {ref.shape} and pred shape {pred.shape} differ")
    for name, arr in (("ref", ref), ("pred", pred)):
        if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
            raise TypeError(f"{name} must hold integer labels, got dtype {arr.dtype}")
        if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
            raise ValueError(f"{name} has labels outside 0..{n_classes - 1}: range [{arr.min()}, {arr.max()}]")
    return ref, pred


def multiclass_scores(
    ref: np.ndarray,
    pred: np.ndarray,
    *,
    n_classes: int = len(CLASSES),
    class_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Per-class Dice and IoU of two label maps.

    For class ``c``: :func:`helpers.metrics.dice` and :func:`helpers.metrics.iou` of ``ref == c`` and
    ``pred == c`` (``2|A∩B| / (|A| + |B|)``, ``|A∩B| / |A∪B|``; both empty gives 1, see the module docstring).

    Returns
    -------
    pandas.DataFrame
        One row per class (background included, ``foreground`` False for it): ``class_id``, ``class``,
        ``foreground``, ``dice``, ``iou``, ``n_ref``, ``n_pred`` (pixel counts).
    """
    ref, pred = _check_labels(ref, pred, n_classes)
    names = list(class_names) if class_names is not None else (list(CLASSES) if n_classes == len(CLASSES) else None)
    if names is None:
        names = [f"class_{k}" for k in range(n_classes)]
    if len(names) != n_classes:
        raise ValueError(f"class_names has {len(names)} names for n_classes={n_classes}")
    rows = []
    for k in range(n_classes):
        a, b = ref == k, pred == k
        rows.append(
            {"class_id": k, "class": names[k], "foreground": k > 0, "dice": metrics.dice(a, b),
             "iou": metrics.iou(a, b), "n_ref": int(np.count_nonzero(a)), "n_pred": int(np.count_nonzero(b))}
        )  # fmt: skip
    return pd.DataFrame(rows)


def macro_scores(per_class: pd.DataFrame) -> dict:
    """Macro average over the foreground classes of a :func:`multiclass_scores` table.

    Absent-class policy: a class absent from both reference and prediction (``n_ref == n_pred == 0``) is left out
    of the mean and counted. Returns ``dice``, ``iou`` (NaN when every foreground class is absent), ``n_classes``
    (how many foreground classes entered the mean) and ``n_absent``."""
    fg = per_class[per_class["foreground"]]
    present = (fg["n_ref"] + fg["n_pred"]) > 0
    mean = lambda s: float(s.mean()) if len(s) else float("nan")  # noqa: E731
    return {"dice": mean(fg["dice"][present]), "iou": mean(fg["iou"][present]),
            "n_classes": int(present.sum()), "n_absent": int((~present).sum())}  # fmt: skip


# --------------------------------------------------------------------------------------------------------------
# Study step
# --------------------------------------------------------------------------------------------------------------

DATASET = "small_data"


def prepare_small_data(ws, *, data_root=None, seed: int = 0, n_images: int = 9, size: int = 256):
    """The data step of the chapter: write the synthetic stand-in (``data_root=None``) into
    ``ws.data("small_data")``, or read the user's folder ``data_root``; then record what was read.

    Writes ``results/small_data/data_manifest.json`` (``source``: ``"synthetic"`` or the folder, counts,
    classes, seed, size) and ``data_summary.csv`` (:func:`data_summary`).

    Returns
    -------
    cases : list of VesselCase
    summary : pandas.DataFrame
    """
    if data_root is None or data_root == "":
        root = ws.data(DATASET)
        write_small_data(root, seed=seed, n_images=n_images, size=size)
        source = "synthetic"
    else:
        root = resolve(data_root)
        source = str(root)
    cases = load_small_data(root)
    summary = data_summary(cases)
    write_csv(summary, ws.results(DATASET) / "data_summary.csv")
    write_json({"source": source, "root": str(root), "n_cases": len(cases), "classes": list(CLASSES),
                "seed": int(seed), "size": int(size) if source == "synthetic" else None},
               ws.results(DATASET) / "data_manifest.json")
    return cases, summary


_LABEL_COLORS = np.array([[1.0, 1.0, 1.0], [0.55, 0.8, 0.95], [0.95, 0.6, 0.8], [0.45, 0.2, 0.55]])


def plot_cases(cases: Sequence[VesselCase]):
    """The images (top row) and their label masks (bottom row: white background, blue lumen, pink neointima,
    violet media), with the class colour key beside them. Returns the figure."""
    plt = pyplot()  # matplotlib with the package style (helpers.base.plots)

    n = len(cases)
    if n == 0:
        raise ValueError("cases must not be empty")
    fig, axes = plt.subplots(2, n, figsize=(1.3 * n, 2.8), squeeze=False)
    for k, case in enumerate(cases):
        colors = _LABEL_COLORS[np.clip(case.mask, 0, len(_LABEL_COLORS) - 1)]
        for ax, img in zip(axes[:, k], (case.image, colors)):
            ax.imshow(img, interpolation="nearest")
            ax.set_axis_off()
        axes[0, k].set_title(case.case_id, fontsize=7)
    fig.tight_layout()
    add_class_key(fig, dict(zip(CLASSES, map(tuple, _LABEL_COLORS))))
    return fig
