"""Loading the three datasets from their published on-disk layouts, and the data section of the study.

Conventions
-----------
- Axis order: volumes are ``(z, y, x)`` with ``z`` the axial (slice) axis, multi-channel volumes
  ``(z, y, x, c)`` (channels last), fundus photographs ``(y, x, 3)`` RGB ``uint8``.
- NIfTI files store ``(x, y, z)``: a loaded array is transposed to ``(z, y, x)`` and the NIfTI zooms
  reversed into ``spacing``. To write an array of ours back on the source grid, transpose it back and keep
  the source affine: ``nib.Nifti1Image(to_nifti_array(arr), case.affine)`` (:func:`to_nifti_array` /
  :func:`from_nifti_array` are the one place this convention lives).
- ``spacing``: mm per numpy spatial axis; fundus images have no physical calibration and use
  ``(1.0, 1.0)`` (pixels).
- ``mask`` is the binary lesion target (bool); ``ignore`` (bool or ``None``) marks voxels that count
  neither as truth nor as false positives (WMH label 2, "other pathology", as in the official evaluation).

What is the target, per dataset
-------------------------------
- **WMH**: label 1 of ``wmh.nii[.gz]``; label 2 becomes ``ignore`` (``ignore_other_pathology=True``, the
  default) or plain background. Image: FLAIR and T1 of ``pre/`` (both on the FLAIR grid) as channels.
- **LiTS**: label 2 (tumour) of the segmentation; ``target="liver"`` takes labels 1 and 2 instead.
- **IDRiD**: the union of the chosen lesion types (any of MA, HE, EX, SE; default all four). The optic disc
  is anatomy and never part of the target. A missing mask file means the image has no lesion of that type.

Empty-mask policy: a case whose target is empty is valid and kept (a LiTS volume without tumour, an IDRiD image
without any of the chosen lesion types); it has no lesions, and :func:`describe_cases` lists it so that a user
can tell a legitimate empty case from a misread folder.

Errors name the file: missing or unreadable files, image/mask shape or grid mismatch, label values outside the
expected set, non-finite intensities or spacing. Reading is split in two steps so that a large dataset is
never held in memory at once: :func:`find_cases` lists the files of each case (cheap, validates the tree) and
:func:`read_case` reads one case; :func:`load_cases` does both for every case.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .lesions import quartile_edges as lesion_quartile_edges
from .plots import pyplot

DATASETS = ("wmh", "lits", "idrid")
MODALITY = {"wmh": "MRI", "lits": "CT", "idrid": "Fundus"}
TITLE = {"wmh": "WMH Challenge", "lits": "LiTS", "idrid": "IDRiD"}
IDRID_LESION_TYPES = ("MA", "HE", "EX", "SE")
IDRID_FOLDERS = {
    "MA": "1. Microaneurysms",
    "HE": "2. Haemorrhages",
    "EX": "3. Hard Exudates",
    "SE": "4. Soft Exudates",
    "OD": "5. Optic Disc",
}
IDRID_SUBSETS = {"a. Training Set": "training", "b. Testing Set": "test"}
WMH_MODALITIES = ("FLAIR", "T1")
LITS_TARGETS = ("tumour", "liver")
_WMH_SITE_OF_TOP = {"Utrecht": "Utrecht", "Singapore": "Singapore", "GE3T": "Amsterdam", "Amsterdam": "Amsterdam"}
# affine entries (mm) within which two NIfTI files are taken to share a grid
_GRID_ATOL_MM = 1e-3


def _swap_first_and_third_axes(arr, axes: str) -> np.ndarray:
    # (z, y, x[, c]) <-> (x, y, z[, c]): the permutation is its own inverse, so one function serves both ways
    arr = np.asarray(arr)
    if arr.ndim not in (3, 4):
        raise ValueError(f"arr must be 3D {axes} or 4D {axes[:-1]}, c), got shape {arr.shape}")
    return arr.transpose(2, 1, 0, *range(3, arr.ndim))


def to_nifti_array(arr: np.ndarray) -> np.ndarray:
    """A ``(z, y, x)`` (or ``(z, y, x, c)``) array in NIfTI's ``(x, y, z[, c])`` order (a transposed view)."""
    return _swap_first_and_third_axes(arr, "(z, y, x)")


def from_nifti_array(arr: np.ndarray) -> np.ndarray:
    """NIfTI's ``(x, y, z[, c])`` data in our ``(z, y, x[, c])`` order; the inverse of :func:`to_nifti_array`."""
    return _swap_first_and_third_axes(arr, "(x, y, z)")


@dataclass(frozen=True)
class Case:
    """One case (subject, volume or photograph) as loaded from disk.

    Attributes
    ----------
    case_id : str
        Unique within the dataset (WMH ``"<site>_<id>"`` or ``"Amsterdam_<scanner>_<id>"``; LiTS
        ``"volume-<n>"`` or ``"liver_<n>"``; IDRiD ``"IDRiD_<nn>"``).
    image : numpy.ndarray
        float32 ``(z, y, x)`` or ``(z, y, x, c)`` for volumes (raw intensities: HU for CT, scanner units for
        MRI), uint8 ``(y, x, 3)`` for fundus photographs.
    mask : numpy.ndarray of bool
        The binary lesion target on the image's spatial grid.
    ignore : numpy.ndarray of bool or None
        Voxels excluded from evaluation (WMH label 2), or ``None``.
    spacing : tuple of float
        mm per spatial numpy axis (``(1.0, 1.0)`` pixels for fundus images).
    subset : str or None
        The official subset, ``"training"`` or ``"test"``, where the layout has one.
    source : str
        Path of the (first) image file.
    affine : numpy.ndarray or None
        The NIfTI affine of the image, for writing predictions on its grid; ``None`` for 2D images.
    meta : dict
        Site and scanner (WMH), layout, label files, lesion types present and absent (IDRiD), ...
    """

    case_id: str
    image: np.ndarray
    mask: np.ndarray
    ignore: np.ndarray | None
    spacing: tuple[float, ...]
    subset: str | None
    source: str
    affine: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(self.mask.shape)


@dataclass(frozen=True)
class CaseFiles:
    """The files of one case, found by :func:`find_cases` and read by :func:`read_case`.

    ``images`` lists the image files (WMH: one per modality, in channel order); ``labels`` maps a label name
    to its file or ``None`` when absent (IDRiD lesion types); ``options`` are the loader options in force."""

    dataset: str
    case_id: str
    images: tuple[Path, ...]
    labels: dict
    subset: str | None
    meta: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------- helpers

def _check_dataset(dataset) -> str:
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    return dataset


def _check_root(root) -> Path:
    if not isinstance(root, (str, Path)):
        raise TypeError(f"root must be a path, got {type(root).__name__}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"root {str(root)!r}: folder not found")
    return root


def _nifti(folder: Path, stem: str) -> Path | None:
    """``folder/stem.nii.gz`` or ``folder/stem.nii`` (whichever exists, compressed first), else ``None``."""
    for ext in (".nii.gz", ".nii"):
        path = folder / f"{stem}{ext}"
        if path.is_file():
            return path
    return None


def _read_nifti(path: Path, *, what: str):
    """Load a 3D NIfTI file: (data (z, y, x) float array, spacing (z, y, x), affine)."""
    import nibabel as nib

    if not path.is_file():
        raise FileNotFoundError(f"{what} file {str(path)!r}: not found")
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj)
    except Exception as err:  # nibabel raises several types for damaged files
        raise ValueError(f"{what} file {str(path)!r}: unreadable as NIfTI ({type(err).__name__}: {err})") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"{what} file {str(path)!r}: expected a 3D volume, got shape {data.shape}")
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    spacing = zooms[::-1]
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"{what} file {str(path)!r}: spacing must be positive and finite, got {zooms} (x, y, z)")
    affine = np.asarray(img.affine, dtype=float)
    if not np.all(np.isfinite(affine)):
        raise ValueError(f"{what} file {str(path)!r}: affine is not finite")
    return from_nifti_array(data), spacing, affine


def _check_finite(arr: np.ndarray, path: Path, what: str) -> None:
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{what} file {str(path)!r}: {bad} non-finite intensities (NaN or inf)")


def _check_labels(arr: np.ndarray, path: Path, allowed: tuple[int, ...]) -> np.ndarray:
    """Integer label map from ``arr``; raise naming ``path`` if a value is outside ``allowed``."""
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"label file {str(path)!r}: non-finite label values")
        rounded = np.rint(arr)
        if not np.array_equal(rounded, arr):
            raise ValueError(f"label file {str(path)!r}: non-integer label values (e.g. {arr[rounded != arr][0]!r})")
        arr = rounded
    values = np.unique(arr)
    bad = [v for v in values.tolist() if v not in allowed]
    if bad:
        raise ValueError(f"label file {str(path)!r}: label values {bad} outside the expected set {list(allowed)}")
    return arr.astype(np.uint8)


def _check_same_grid(ref_path: Path, ref_shape, ref_affine, path: Path, shape, affine, what: str) -> None:
    if tuple(shape) != tuple(ref_shape):
        raise ValueError(f"{what} file {str(path)!r}: shape {tuple(shape)} (z, y, x) does not match "
                         f"{str(ref_path)!r} {tuple(ref_shape)}")
    if not np.allclose(affine, ref_affine, atol=_GRID_ATOL_MM, rtol=0):
        raise ValueError(f"{what} file {str(path)!r}: grid (affine) does not match {str(ref_path)!r}; "
                         f"max difference {np.abs(affine - ref_affine).max():.4g} mm")


# ----------------------------------------------------------------------------------------------- WMH

def _find_wmh(root: Path, *, modalities=WMH_MODALITIES, ignore_other_pathology: bool = True) -> list[CaseFiles]:
    if isinstance(modalities, str) or not modalities or any(m not in WMH_MODALITIES for m in modalities):
        raise ValueError(f"modalities must be a non-empty sequence of {WMH_MODALITIES}, got {modalities!r}")
    if len(set(modalities)) != len(modalities):
        raise ValueError(f"modalities must not repeat, got {modalities!r}")
    if not isinstance(ignore_other_pathology, bool):
        raise TypeError(f"ignore_other_pathology must be bool, got {ignore_other_pathology!r}")
    found = []
    for pre in sorted(p for p in root.rglob("pre") if p.is_dir()):
        parts = pre.parent.relative_to(root).parts
        if "additional_annotations" in parts or not parts:
            continue
        subset = parts[0] if parts[0] in ("training", "test") else None
        rest = parts[1:] if subset else parts
        if len(rest) < 2 or rest[0] not in _WMH_SITE_OF_TOP:
            raise _nothing_found(ValueError(
                f"WMH subject folder {str(pre.parent)!r}: expected <site>[/<scanner>]/<id> with site in "
                f"{sorted(_WMH_SITE_OF_TOP)}, got {'/'.join(parts)!r}"))
        site = _WMH_SITE_OF_TOP[rest[0]]
        scanner = rest[0] if rest[0] == "GE3T" else (rest[1] if rest[0] == "Amsterdam" and len(rest) > 2 else rest[0])
        subject = rest[-1]
        case_id = f"Amsterdam_{scanner}_{subject}" if site == "Amsterdam" else f"{site}_{subject}"
        images = []
        for modality in modalities:
            path = _nifti(pre, modality)
            if path is None:
                raise FileNotFoundError(f"WMH image file {str(pre / (modality + '.nii.gz'))!r} (or .nii): not found")
            images.append(path)
        label = _nifti(pre.parent, "wmh")
        if label is None:
            raise FileNotFoundError(f"WMH label file {str(pre.parent / 'wmh.nii.gz')!r} (or .nii): not found")
        found.append(CaseFiles("wmh", case_id, tuple(images), {"wmh": label}, subset,
                               meta={"site": site, "scanner": scanner, "subject": subject,
                                     "layout": "2022" if subset else "2017", "modalities": list(modalities)},
                               options={"ignore_other_pathology": ignore_other_pathology}))
    if not found:
        raise _nothing_found(ValueError(
            f"root {str(root)!r}: no WMH subject folders found (expected <site>/<id>/pre/FLAIR.nii.gz "
            "under training/ and test/ (2022) or at the top level (2017))"))
    return found


def _read_wmh(files: CaseFiles) -> Case:
    channels, ref = [], None
    for path in files.images:
        data, spacing, affine = _read_nifti(path, what="WMH image")
        data = data.astype(np.float32)
        _check_finite(data, path, "WMH image")
        if ref is None:
            ref = (path, data.shape, affine, spacing)
        else:
            _check_same_grid(ref[0], ref[1], ref[2], path, data.shape, affine, "WMH image")
        channels.append(data)
    label_path = files.labels["wmh"]
    label, _, label_affine = _read_nifti(label_path, what="WMH label")
    _check_same_grid(ref[0], ref[1], ref[2], label_path, label.shape, label_affine, "WMH label")
    label = _check_labels(label, label_path, (0, 1, 2))
    image = channels[0] if len(channels) == 1 else np.stack(channels, axis=-1)
    other = label == 2
    ignore = other if files.options.get("ignore_other_pathology", True) else None
    meta = dict(files.meta, label_file=str(label_path), other_pathology_voxels=int(other.sum()))
    return Case(files.case_id, image, label == 1, ignore, ref[3], files.subset, str(files.images[0]), ref[2], meta)


# ----------------------------------------------------------------------------------------------- LiTS

_LITS_VOLUME = re.compile(r"^volume-(\d+)\.nii(\.gz)?$")
_LITS_SEGMENTATION = re.compile(r"^segmentation-(\d+)\.nii(\.gz)?$")
_TUMOUR_NAMES = ("cancer", "tumour", "tumor")


def _msd_task(root: Path) -> Path | None:
    for candidate in (root / "Task03_Liver", root):
        if (candidate / "dataset.json").is_file():
            return candidate
    return None


def _find_lits(root: Path, *, target: str = "tumour") -> list[CaseFiles]:
    if target not in LITS_TARGETS:
        raise ValueError(f"target must be one of {LITS_TARGETS}, got {target!r}")
    task = _msd_task(root)
    found = []
    if task is not None:
        description_path = task / "dataset.json"
        try:
            description = json.loads(description_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"MSD file {str(description_path)!r}: unreadable ({err})") from None
        labels = {str(v).lower(): int(k) for k, v in description.get("labels", {}).items()}
        tumour = [labels[name] for name in _TUMOUR_NAMES if name in labels]
        if "liver" not in labels or not tumour:
            raise ValueError(f"MSD file {str(description_path)!r}: labels {description.get('labels')!r} do not name "
                             "'liver' and a tumour class ('cancer')")
        pairs = description.get("training")
        if pairs is None:
            pairs = [{"image": f"./imagesTr/{p.name}", "label": f"./labelsTr/{p.name}"}
                     for p in sorted((task / "imagesTr").glob("*.nii*")) if not p.name.startswith("._")]
        for entry in pairs:
            image = (task / entry["image"]).resolve()
            label = (task / entry["label"]).resolve()
            for path, what in ((image, "image"), (label, "label")):
                if not path.is_file():
                    raise FileNotFoundError(f"MSD {what} file {str(path)!r} (listed in {str(description_path)!r}): "
                                            "not found")
            case_id = image.name.split(".nii")[0]
            found.append(CaseFiles("lits", case_id, (image,), {"segmentation": label}, "training",
                                   meta={"layout": "msd"},
                                   options={"target": target, "liver_label": labels["liver"],
                                            "tumour_label": tumour[0]}))
        unlabelled = [p for p in (task / "imagesTs").glob("*.nii*") if not p.name.startswith("._")] \
            if (task / "imagesTs").is_dir() else []
        for f in found:
            f.meta["unlabelled_test_images"] = len(unlabelled)
    else:
        volumes, segmentations = {}, {}
        for path in sorted(root.rglob("*.nii*")):
            for pattern, table in ((_LITS_VOLUME, volumes), (_LITS_SEGMENTATION, segmentations)):
                match = pattern.match(path.name)
                if match:
                    number = int(match.group(1))
                    if number in table:
                        raise ValueError(f"LiTS file {str(path)!r}: id {number} also in {str(table[number])!r}")
                    table[number] = path
        for number in sorted(set(volumes) | set(segmentations)):
            if number not in segmentations:
                raise FileNotFoundError(f"LiTS volume file {str(volumes[number])!r}: no segmentation-{number}.nii "
                                        f"found under {str(root)!r}")
            if number not in volumes:
                raise FileNotFoundError(f"LiTS segmentation file {str(segmentations[number])!r}: "
                                        f"no volume-{number}.nii "
                                        f"found under {str(root)!r}")
            found.append(CaseFiles("lits", f"volume-{number}", (volumes[number],),
                                   {"segmentation": segmentations[number]}, "training",
                                   meta={"layout": "batches", "folder": volumes[number].parent.name},
                                   options={"target": target, "liver_label": 1, "tumour_label": 2}))
    if not found:
        raise _nothing_found(ValueError(
            f"root {str(root)!r}: no LiTS volumes found (expected 'Training Batch */volume-<n>.nii' "
            "or 'Task03_Liver/dataset.json')"))
    return found


def _read_lits(files: CaseFiles) -> Case:
    path = files.images[0]
    image, spacing, affine = _read_nifti(path, what="LiTS image")
    image = image.astype(np.float32)
    _check_finite(image, path, "LiTS image")
    label_path = files.labels["segmentation"]
    label, _, label_affine = _read_nifti(label_path, what="LiTS label")
    _check_same_grid(path, image.shape, affine, label_path, label.shape, label_affine, "LiTS label")
    liver, tumour = files.options["liver_label"], files.options["tumour_label"]
    label = _check_labels(label, label_path, (0, liver, tumour))
    mask = label == tumour if files.options["target"] == "tumour" else label > 0
    meta = dict(files.meta, label_file=str(label_path), liver_voxels=int((label > 0).sum()),
                has_tumour=bool((label == tumour).any()))
    return Case(files.case_id, image, mask, None, spacing, files.subset, str(path), affine, meta)


# ----------------------------------------------------------------------------------------------- IDRiD

def _idrid_base(root: Path) -> Path:
    for candidate in (root / "A. Segmentation", root):
        if (candidate / "1. Original Images").is_dir():
            return candidate
    raise _nothing_found(FileNotFoundError(f"root {str(root)!r}: no 'A. Segmentation/1. Original Images' folder found"))


def _find_idrid(root: Path, *, lesion_types=IDRID_LESION_TYPES) -> list[CaseFiles]:
    if isinstance(lesion_types, str) or not lesion_types or any(t not in IDRID_LESION_TYPES for t in lesion_types):
        raise ValueError(f"lesion_types must be a non-empty sequence of {IDRID_LESION_TYPES} (never the optic disc "
                         f"'OD'), got {lesion_types!r}")
    lesion_types = tuple(t for t in IDRID_LESION_TYPES if t in lesion_types)
    base = _idrid_base(root)
    found = []
    for subset_dir, subset in IDRID_SUBSETS.items():
        image_dir = base / "1. Original Images" / subset_dir
        if not image_dir.is_dir():
            continue
        images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg")
                        and not p.name.startswith("._"))
        stems = {p.stem for p in images}
        gt_dir = base / "2. All Segmentation Groundtruths" / subset_dir
        for key in (*lesion_types, "OD"):
            folder = gt_dir / IDRID_FOLDERS[key]
            if not folder.is_dir():
                raise FileNotFoundError(f"IDRiD mask folder {str(folder)!r}: not found")
            for mask in folder.glob("*.tif"):
                if mask.name.startswith("._"):
                    continue
                stem = mask.stem.rsplit("_", 1)[0]
                if stem not in stems:
                    raise FileNotFoundError(f"IDRiD mask file {str(mask)!r}: no image {stem}.jpg in {str(image_dir)!r}")
        for image in images:
            labels = {}
            for key in (*lesion_types, "OD"):
                path = gt_dir / IDRID_FOLDERS[key] / f"{image.stem}_{key}.tif"
                labels[key] = path if path.is_file() else None
            found.append(CaseFiles("idrid", image.stem, (image,), labels, subset, meta={"layout": "idrid"},
                                   options={"lesion_types": list(lesion_types)}))
    if not found:
        raise _nothing_found(ValueError(
            f"root {str(root)!r}: no IDRiD images found under '1. Original Images/a. Training Set' or "
            "'b. Testing Set'"))
    return found


def _read_tiff_mask(path: Path, shape) -> np.ndarray:
    import tifffile

    try:
        arr = np.asarray(tifffile.imread(path))
    except Exception as err:
        raise ValueError(f"IDRiD mask file {str(path)!r}: unreadable as TIFF ({type(err).__name__}: {err})") from None
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = arr[..., :3]
    elif arr.ndim != 2:
        raise ValueError(f"IDRiD mask file {str(path)!r}: expected a 2D or RGB mask, got shape {arr.shape}")
    if arr.shape[:2] != tuple(shape):
        raise ValueError(f"IDRiD mask file {str(path)!r}: shape {arr.shape[:2]} does not match the image "
                         f"{tuple(shape)}")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise ValueError(f"IDRiD mask file {str(path)!r}: non-finite values")
    if arr.min() < 0:
        raise ValueError(f"IDRiD mask file {str(path)!r}: negative values (min {arr.min()!r}); "
                         "expected 0 = background, "
                         "nonzero = lesion")
    return arr.any(axis=-1) if arr.ndim == 3 else arr != 0


def _read_idrid(files: CaseFiles) -> Case:
    import imageio.v3 as iio
    from scipy import ndimage

    path = files.images[0]
    try:
        # decode from bytes: a failing imageio plugin then leaves no file handle open
        image = np.asarray(iio.imread(path.read_bytes(), extension=path.suffix.lower()))
    except Exception as err:
        raise ValueError(f"IDRiD image file {str(path)!r}: unreadable ({type(err).__name__}: {err})") from None
    if image.ndim != 3 or image.shape[-1] not in (3, 4) or image.dtype != np.uint8:
        raise ValueError(f"IDRiD image file {str(path)!r}: expected an 8-bit RGB image, "
                         f"got {image.dtype} {image.shape}")
    image = np.ascontiguousarray(image[..., :3])
    shape = image.shape[:2]
    mask = np.zeros(shape, dtype=bool)
    present, absent, counts = [], [], {}
    full = np.ones((3, 3), dtype=bool)
    for key in files.options["lesion_types"]:
        mask_path = files.labels[key]
        if mask_path is None:
            absent.append(key)
            counts[key] = 0
            continue
        layer = _read_tiff_mask(mask_path, shape)
        counts[key] = int(ndimage.label(layer, structure=full)[1])
        (present if counts[key] else absent).append(key)
        mask |= layer
    od_path = files.labels.get("OD")
    od = _read_tiff_mask(od_path, shape) if od_path is not None else None
    meta = dict(files.meta, lesion_types_present=present, lesion_types_absent=absent, lesions_per_type=counts,
                mask_files={k: (str(v) if v is not None else None) for k, v in files.labels.items()},
                optic_disc_pixels=int(od.sum()) if od is not None else None)
    return Case(files.case_id, image, mask, None, (1.0, 1.0), files.subset, str(path), None, meta)


# ----------------------------------------------------------------------------------------------- public

_FINDERS = {"wmh": _find_wmh, "lits": _find_lits, "idrid": _find_idrid}
_READERS = {"wmh": _read_wmh, "lits": _read_lits, "idrid": _read_idrid}


def find_cases(dataset: str, root, **options) -> list[CaseFiles]:
    """List the cases of ``dataset`` under ``root`` without reading images (validates the tree).

    Parameters
    ----------
    dataset : {"wmh", "lits", "idrid"}
    root : path
        The user's copy of the dataset (its top folder, as unpacked) or a synthetic stand-in.
    **options
        WMH: ``modalities`` (default ``("FLAIR", "T1")``, the image channels in order),
        ``ignore_other_pathology`` (default ``True``: label 2 becomes the ignore mask).
        LiTS: ``target`` (``"tumour"``, default, or ``"liver"``: labels 1 and 2).
        IDRiD: ``lesion_types`` (any of ``"MA", "HE", "EX", "SE"``; default all four).

    Returns
    -------
    list of CaseFiles
        Sorted by subset then case id as found; case ids are unique.
    """
    dataset = _check_dataset(dataset)
    root = _check_root(root)
    found = _find_here_or_one_deeper(dataset, root, options)
    seen = {}
    for f in found:
        if f.case_id in seen:
            raise ValueError(f"case id {f.case_id!r} appears twice: {str(seen[f.case_id])!r} and {str(f.images[0])!r}")
        seen[f.case_id] = f.images[0]
    return found


def _nothing_found(err: Exception) -> Exception:
    """Mark a finder's error as "no dataset in this folder" (rather than a broken dataset), so that
    :func:`find_cases` looks one folder deeper."""
    err.nothing_found = True
    return err


def _find(dataset: str, root: Path, options: dict) -> list[CaseFiles]:
    try:
        found = _FINDERS[dataset](root, **options)
    except TypeError as err:
        if "unexpected keyword" in str(err):
            raise TypeError(f"unknown option for dataset {dataset!r}: {err}") from None
        raise
    for files in found:
        files.meta["dataset_folder"] = str(root.resolve())
    return found


def _find_here_or_one_deeper(dataset: str, root: Path, options: dict) -> list[CaseFiles]:
    """The cases under ``root``, or, when none are found there, under the one sub-folder of ``root`` that holds
    the dataset (an archive unpacked into a folder of its own name, IDRiD's doubled ``A. Segmentation``); the
    folder used is recorded in each case's ``meta["dataset_folder"]`` (:func:`dataset_folder`). When nothing is
    found either way, the error adds the first levels of what ``root`` holds."""
    try:
        return _find(dataset, root, options)
    except (FileNotFoundError, ValueError) as err:
        if not getattr(err, "nothing_found", False):
            raise
        first = err
    hits = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            hits.append(_find(dataset, sub, options))
        except (FileNotFoundError, ValueError) as err:
            if not getattr(err, "nothing_found", False):
                raise  # the dataset is there, but broken: say what is wrong with it
            continue
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        folders = [h[0].meta["dataset_folder"] for h in hits]
        raise ValueError(f"root {str(root)!r}: no {dataset} dataset at its top, but one in each of {folders}; "
                         "point data_root at the one you mean") from None
    raise type(first)(f"{first}\n{_listing(root)}") from None


def _listing(root: Path, *, depth: int = 2, limit: int = 8) -> str:
    """The first ``depth`` levels below ``root`` (at most ``limit`` entries per folder), for error messages."""
    lines = [f"root {str(root)!r} holds:"]

    def walk(folder: Path, level: int) -> None:
        try:
            entries = sorted(folder.iterdir(), key=lambda p: p.name)
        except OSError:
            return
        for entry in entries[:limit]:
            lines.append("  " * level + entry.name + ("/" if entry.is_dir() else ""))
            if entry.is_dir() and level < depth:
                walk(entry, level + 1)
        if len(entries) > limit:
            lines.append("  " * level + f"... ({len(entries) - limit} more)")

    walk(root, 1)
    if len(lines) == 1:
        lines[0] += " nothing"
    return "\n".join(lines)


def dataset_folder(found: list[CaseFiles], root=None) -> Path:
    """The folder the cases of :func:`find_cases` were found in (``root`` or one level below it)."""
    if found:
        return Path(found[0].meta["dataset_folder"])
    return Path(root).resolve()


def read_case(files: CaseFiles) -> Case:
    """Read and validate one case listed by :func:`find_cases`."""
    if not isinstance(files, CaseFiles):
        raise TypeError(f"files must be a CaseFiles, got {type(files).__name__}")
    return _READERS[files.dataset](files)


def load_cases(dataset: str, root, *, progress: bool = False, **options) -> list[Case]:
    """Load every case of ``dataset`` under ``root`` (see :func:`find_cases` for ``options``).

    All cases are held in memory; for the full LiTS or IDRiD at native resolution prefer
    :func:`find_cases` and :func:`read_case` one case at a time (as :func:`prepare_dataset` does).
    """
    from .progress import progress_bar

    found = find_cases(dataset, root, **options)
    return [read_case(f) for f in progress_bar(found, progress=progress, desc=f"load {dataset}")]


def _case_facts(case: Case, n_lesions: int) -> dict:
    """The few facts about one case that the dataset report needs (no arrays, so a report over a large dataset
    does not hold its masks)."""
    return {"case_id": case.case_id, "subset": case.subset, "n_lesions": int(n_lesions),
            "has_ignore": case.ignore is not None and bool(case.ignore.any()),
            "lesions_per_type": dict(case.meta.get("lesions_per_type", {})),
            "absent": list(case.meta.get("lesion_types_absent", []))}


def _report(dataset: str, facts: list[dict]) -> dict:
    subsets: dict[str, int] = {}
    per_type: dict[str, int] = {}
    absent: dict[str, int] = {}
    for f in facts:
        key = f["subset"] or "none"
        subsets[key] = subsets.get(key, 0) + 1
        for t, c in f["lesions_per_type"].items():
            per_type[t] = per_type.get(t, 0) + c
        for t in f["absent"]:
            absent[t] = absent.get(t, 0) + 1
    report: dict = {"dataset": dataset, "n_cases": len(facts), "cases_per_subset": subsets,
                    "n_lesions": sum(f["n_lesions"] for f in facts),
                    "cases_without_target": [f["case_id"] for f in facts if f["n_lesions"] == 0]}
    if dataset == "wmh":
        report["cases_with_ignore_region"] = [f["case_id"] for f in facts if f["has_ignore"]]
        report["ignore_meaning"] = "label 2 ('other pathology'): neither truth nor false positive"
    if dataset == "lits":
        report["target_meaning"] = "label 2 (tumour); volumes without tumour have an empty target"
    if dataset == "idrid":
        report["lesions_per_type"] = per_type
        report["absent_masks_per_type"] = absent
        report["absent_meaning"] = "a missing mask file means no lesion of that type in the image (empty mask)"
    return report


def describe_cases(dataset: str, cases, *, connectivity: int | None = None) -> dict:
    """What a loaded dataset was found to contain, for the user to check at once that the folder was read as
    intended: number of cases per official subset, lesions (connected components of the target, full
    connectivity by default), cases without any target voxel (e.g. LiTS volumes without tumour), cases with an
    ignore region (WMH label 2), and for IDRiD the lesions per type (full connectivity, counted per type mask,
    so touching lesions of two types count twice here but once in the target) and the absent mask files with
    what they were taken to mean."""
    from .lesions import label_lesions

    dataset = _check_dataset(dataset)
    return _report(dataset, [_case_facts(c, label_lesions(c.mask, connectivity=connectivity)[1]) for c in cases])


# ----------------------------------------------------------------------------------------------- the section

@dataclass(frozen=True)
class DatasetSummary:
    """What :func:`prepare_dataset` produced: the tables it wrote and the report of what it found."""

    dataset: str
    manifest: dict
    cases: pd.DataFrame
    lesions: pd.DataFrame
    splits: dict
    report: dict

    def table(self) -> pd.DataFrame:
        """The paper's dataset summary row (Table 4.5): modality, test cases, annotated test lesions and the
        empirical upper bound of the smallest size quartile (Q1), see :func:`q1_upper_bound`."""
        return summary_table(self.dataset, self.cases, self.lesions)


def q1_upper_bound(area_fraction) -> float:
    """The empirical upper bound of the smallest lesion-size quartile: the 25th percentile of the lesions'
    area fractions (numpy's default linear interpolation between order statistics). NaN without lesions."""
    values = np.asarray(area_fraction, dtype=float)
    return float(np.quantile(values, 0.25)) if values.size else float("nan")


def summary_table(dataset: str, cases: pd.DataFrame, lesions: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset: ``dataset, modality, test_cases, test_lesions, q1_upper_bound`` (area fraction of
    the test lesions, see :func:`q1_upper_bound`), plus the totals over all splits."""
    test = lesions[lesions["split"] == "test"]
    return pd.DataFrame([{
        "dataset": TITLE[dataset], "modality": MODALITY[dataset],
        "test_cases": int((cases["split"] == "test").sum()), "test_lesions": int(len(test)),
        "q1_upper_bound": q1_upper_bound(test["area_fraction"]),
        "q1_upper_bound_percent": 100 * q1_upper_bound(test["area_fraction"]),
        "all_cases": int(len(cases)), "all_lesions": int(len(lesions)),
    }])


def quartile_edges(lesions: pd.DataFrame) -> pd.DataFrame:
    """Lesion-size quartile edges per split and over all lesions: ``split, n_lesions`` and the minimum, the
    quartile edges of :func:`helpers.lesions.quartile_edges` (25th, 50th, 75th percentile) and the maximum of the
    area fraction, in percent of the image (axial slice) area."""
    rows = []
    groups = [(name, lesions[lesions["split"] == name]) for name in ("train", "val", "test")] + [("all", lesions)]
    for name, group in groups:
        values = np.asarray(group["area_fraction"], dtype=float)
        edges = (100 * np.array([values.min(), *lesion_quartile_edges(values), values.max()]) if values.size
                 else [np.nan] * 5)  # the inner edges are helpers.lesions.quartile_edges, in percent
        rows.append({"split": name, "n_lesions": int(values.size),
                     **{f"{k}_percent": float(v) for k, v in zip(("min", "q25", "q50", "q75", "max"), edges)}})
    return pd.DataFrame(rows)


def prepare_dataset(
    ws,
    dataset: str,
    *,
    data_root="synthetic",
    seed: int = 0,
    synthetic: dict | None = None,
    loader: dict | None = None,
    preprocessing: dict | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.3,
    connectivity: int | None = None,
    progress: bool = True,
) -> DatasetSummary:
    """The data section: generate (if synthetic), find, split, read, enumerate lesions, prepare and record.

    Writes, atomically (:mod:`helpers.io`), below the workspace ``ws``:
    ``data/<dataset>/`` (the synthetic stand-in, regenerated from scratch),
    ``prepared/<dataset>/<case_id>.npz``, and in ``results/<dataset>/``: ``data_manifest.json``,
    ``splits.json``, ``cases.csv``, ``lesions.csv``, ``preprocessing.json``, ``data_report.json``.

    Parameters
    ----------
    ws : helpers.paths.Workspace or path
    dataset : {"wmh", "lits", "idrid"}
    data_root : path or "synthetic"
        The user's copy of the dataset (a relative path is relative to the project root), or ``"synthetic"``
        to write and use a stand-in in ``ws.data(dataset)`` (regenerated from scratch on every call).
    seed : int
        Seeds the generator (if synthetic) and the split.
    synthetic : dict, optional
        Keyword arguments of the generator (:mod:`helpers.synthetic`), e.g. sizes set by the profile.
    loader : dict, optional
        Loader options (:func:`find_cases`).
    preprocessing : dict, optional
        Keyword arguments of :func:`helpers.preprocessing.prepare_case` (e.g. ``size``).
    val_fraction, test_fraction : float
        See :func:`helpers.splits.make_splits`.
    connectivity : int, optional
        Lesion connectivity (``None``: full, 8 in 2D and 26 in 3D).
    progress : bool
        Show a progress bar.
    """
    from . import io, preprocessing as prep, splits as splits_mod, synthetic as synth
    from .lesions import lesion_table
    from .paths import Workspace, resolve
    from .progress import progress_bar

    dataset = _check_dataset(dataset)
    ws = ws if isinstance(ws, Workspace) else Workspace.at(ws)
    loader = dict(loader or {})
    prep_options = dict(preprocessing or {})
    is_synthetic = isinstance(data_root, str) and data_root == "synthetic"
    generator = None
    if is_synthetic:
        root = ws.data(dataset)
        if root.exists():
            shutil.rmtree(root)
        generator = synth.write_synthetic(dataset, root, seed=seed, **(synthetic or {}))
    else:
        # a relative path is taken relative to the project root, as every path of the study
        root = _check_root(resolve(data_root) if isinstance(data_root, (str, Path)) else data_root)
    found = find_cases(dataset, root, **loader)
    splits = splits_mod.make_splits(found, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
    split_of = splits_mod.split_of(splits)
    prepared_dir = ws.prepared(dataset)
    if prepared_dir.exists():
        for stale in prepared_dir.glob("*.npz"):
            stale.unlink()
    rows, tables, facts = [], [], []
    record = None
    for files in progress_bar(found, progress=progress, desc=f"prepare {dataset}"):
        case = read_case(files)
        table = lesion_table(case.mask, spacing=case.spacing, connectivity=connectivity)
        table.insert(0, "case_id", case.case_id)
        table.insert(0, "split", split_of[case.case_id])
        table.insert(0, "dataset", dataset)
        tables.append(table)
        prepared = prep.prepare_case(case, dataset=dataset, **prep_options)
        prep.save_prepared(ws, dataset, prepared)
        record = prepared.record
        rows.append({
            "dataset": dataset, "case_id": case.case_id, "split": split_of[case.case_id], "subset": case.subset,
            "site": case.meta.get("site"), "source": _relative_to(case.source, root),
            "shape": "x".join(str(s) for s in case.spatial_shape),
            "spacing": "x".join(f"{s:.4g}" for s in case.spacing),
            "n_lesions": int(len(table)), "target_voxels": int(case.mask.sum()),
            "ignore_voxels": int(case.ignore.sum()) if case.ignore is not None else 0,
            "prepared_shape": "x".join(str(s) for s in prepared.image.shape),
        })
        facts.append(_case_facts(case, len(table)))
    cases_df = pd.DataFrame(rows)
    lesions_df = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    report = _report(dataset, facts)
    manifest = {
        "dataset": dataset, "source": "synthetic" if is_synthetic else str(Path(root).resolve()),
        "synthetic": is_synthetic, "generator": generator, "n_cases": len(found),
        "options": {"loader": loader, "preprocessing": prep_options, "val_fraction": val_fraction,
                    "test_fraction": test_fraction, "connectivity": connectivity, "seed": int(seed)},
        "root": str(Path(root).resolve()),
        "dataset_folder": str(dataset_folder(found, root)),  # root itself or the sub-folder the dataset is in
    }
    results = ws.results(dataset)
    splits_mod.save_splits(ws, dataset, splits)
    io.write_csv(cases_df, results / "cases.csv")
    io.write_csv(lesions_df, results / "lesions.csv")
    io.write_json(record, results / "preprocessing.json")
    io.write_json(report, results / "data_report.json")
    io.write_json(manifest, results / "data_manifest.json")
    return DatasetSummary(dataset, manifest, cases_df, lesions_df, splits, report)


def _relative_to(path, root) -> str:
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return str(path)


def load_summary(ws, dataset: str) -> DatasetSummary:
    """Read back what :func:`prepare_dataset` wrote (error naming the missing file if it has not run)."""
    from . import io, splits as splits_mod
    from .paths import Workspace

    dataset = _check_dataset(dataset)
    ws = ws if isinstance(ws, Workspace) else Workspace.at(ws)
    results = ws.results(dataset)
    for name in ("cases.csv", "lesions.csv"):
        if not (results / name).is_file():
            raise FileNotFoundError(f"{str(results / name)!r}: not found; run the data section first")
    cases = pd.read_csv(results / "cases.csv", dtype={"case_id": str})
    lesions = pd.read_csv(results / "lesions.csv", dtype={"case_id": str})
    return DatasetSummary(dataset, io.read_json(results / "data_manifest.json"), cases, lesions,
                          splits_mod.load_splits(ws, dataset), io.read_json(results / "data_report.json"))


def check_dataset(ws, dataset: str, *, connectivity: int | None = None) -> pd.DataFrame:
    """The paper's data checkpoints, re-derived from the files on disk (not from memory):

    1. every test case has a valid mask: the case is re-read from the dataset folder with the recorded loader
       options (which validates the files, shapes and label values);
    2. lesion counts reproduce from the saved masks: for every case, the number of lesions enumerated from the
       re-read mask equals ``n_lesions`` in ``cases.csv`` and its number of rows in ``lesions.csv``.

    Returns one row per check: ``check, passed, detail``.
    """
    from .lesions import label_lesions

    summary = load_summary(ws, dataset)
    options = summary.manifest["options"]
    found = {f.case_id: f for f in find_cases(dataset, summary.manifest["root"], **options["loader"])}
    rows = []
    counts_per_case = summary.lesions.groupby("case_id").size() if len(summary.lesions) else pd.Series(dtype=int)
    missing, mismatched, checked = [], [], 0
    for _, row in summary.cases.iterrows():
        case_id = row["case_id"]
        if case_id not in found:
            missing.append(case_id)
            continue
        case = read_case(found[case_id])
        n = label_lesions(case.mask, connectivity=connectivity if connectivity is not None
                          else options.get("connectivity"))[1]
        checked += 1
        if n != int(row["n_lesions"]) or n != int(counts_per_case.get(case_id, 0)):
            mismatched.append(f"{case_id}: {n} re-counted, {int(row['n_lesions'])} in cases.csv, "
                              f"{int(counts_per_case.get(case_id, 0))} in lesions.csv")
    test_ids = set(summary.splits["test"])
    test_missing = sorted(test_ids & set(missing))
    rows.append({"check": "every test case has a valid mask", "passed": not test_missing and bool(test_ids),
                 "detail": f"{len(test_ids)} test cases re-read" if not test_missing
                 else f"missing: {test_missing}"})
    rows.append({"check": "lesion counts reproduce from the saved masks", "passed": not mismatched and not missing,
                 "detail": f"{checked} cases re-counted" if not mismatched else "; ".join(mismatched[:5])})
    rows.append({"check": "summary table has case and lesion counts",
                 "passed": bool(len(summary.cases)) and "n_lesions" in summary.cases,
                 "detail": f"{len(summary.cases)} cases, {int(summary.cases['n_lesions'].sum())} lesions"})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------- figures

def plot_lesion_sizes(lesions: pd.DataFrame, *, ax=None, split: str | None = "test"):
    """Histogram of lesion area fractions on a log axis, with the quartile edges (25th, 50th, 75th
    percentiles) as vertical lines and the paper's 1.5 % reference. Returns the axes."""
    from .plots import get_axes

    fig, ax = get_axes(ax, figsize=(5.5, 3.2))
    data = lesions if split is None else lesions[lesions["split"] == split]
    values = np.asarray(data["area_fraction"], dtype=float) * 100
    if values.size:
        bins = np.logspace(np.log10(values.min() * 0.9), np.log10(values.max() * 1.1), 30)
        ax.hist(values, bins=bins, color="#8c8c8c")
        for q, style in zip(np.quantile(values, [0.25, 0.5, 0.75]), ("-", "--", ":")):
            ax.axvline(q, color="#c44e52", linestyle=style, linewidth=1)
    ax.axvline(1.5, color="#4c72b0", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("lesion area fraction (% of image / axial slice)")
    ax.set_ylabel("lesions")
    ax.set_title(f"{len(values)} {split or 'all'} lesions; red: quartile edges, blue: 1.5 %")
    return ax


def plot_examples(ws, dataset: str, case_ids, *, axes=None):
    """Example images (prepared, first channel) with the lesion outlines in red; for volumes the axial slice
    with the most lesion pixels. One axes per case; returns the axes."""
    plt = pyplot()  # matplotlib with the package style (helpers.plots)
    from matplotlib.colors import ListedColormap
    from skimage.segmentation import find_boundaries

    from .preprocessing import load_prepared

    case_ids = list(case_ids)
    if axes is None:
        _, axes = plt.subplots(1, len(case_ids), figsize=(3.0 * len(case_ids), 3.0), squeeze=False)
        axes = axes[0]
    for ax, case_id in zip(axes, case_ids):
        prepared = load_prepared(ws, dataset, case_id)
        k = int(np.argmax(prepared.mask.reshape(len(prepared.mask), -1).sum(axis=1)))
        if prepared.kind == "image":
            img = prepared.image[k].transpose(1, 2, 0)
            img = (img - img.min()) / max(float(img.max() - img.min()), 1e-6)
        else:
            img = prepared.image[k, 0]
        ax.imshow(img, cmap="gray", interpolation="nearest")
        edge = np.ma.masked_where(~find_boundaries(prepared.mask[k], mode="outer"), np.ones(prepared.mask[k].shape))
        ax.imshow(edge, cmap=ListedColormap(["red"]), interpolation="nearest", vmin=0, vmax=1)
        title = case_id if prepared.kind == "image" else f"{case_id}, slice {k}"
        ax.set_title(title)
        ax.set_axis_off()
    return axes


def plot_small_lesions(summary: DatasetSummary, *, n: int = 8, margin: int = 6, axes=None):
    """Q1 (smallest-quartile) test lesions at their real pixel size: each panel is a crop of the original grid
    (first channel; for volumes the axial slice where the lesion's cross-section is largest) drawn with
    nearest-neighbour pixels, so that one square is one voxel, the reference outline in red. Lesions are picked
    evenly across the Q1 size range (smallest to the Q1 edge). Returns the axes."""
    plt = pyplot()  # matplotlib with the package style (helpers.plots)
    from matplotlib.colors import ListedColormap
    from skimage.segmentation import find_boundaries

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    test = summary.lesions[summary.lesions["split"] == "test"]
    if test.empty:
        raise ValueError(f"{summary.dataset}: no test lesion to show")
    q1 = test[test["area_fraction"] <= q1_upper_bound(test["area_fraction"])].sort_values(
        ["area_fraction", "case_id", "lesion_id"], kind="mergesort")
    picks = q1.iloc[np.unique(np.linspace(0, len(q1) - 1, min(n, len(q1))).round().astype(int))]
    options = (summary.manifest.get("options") or {}).get("loader") or {}
    files = {f.case_id: f for f in find_cases(summary.dataset, summary.manifest["root"], **options)}
    if axes is None:
        _, axes = plt.subplots(1, len(picks), figsize=(1.9 * len(picks), 2.2), squeeze=False)
        axes = axes[0]
    cache: dict[str, Case] = {}
    for ax, row in zip(axes, picks.itertuples(index=False)):
        case = cache.setdefault(row.case_id, read_case(files[row.case_id]))
        ndim = case.mask.ndim
        lo = [int(getattr(row, f"bbox_min_{a}")) for a in range(ndim)]
        hi = [int(getattr(row, f"bbox_max_{a}")) for a in range(ndim)]
        window = tuple(slice(max(a - margin, 0), b + margin) for a, b in zip(lo[-2:], hi[-2:]))
        if ndim == 3:  # the slice of the lesion's bounding box holding the most lesion voxels
            inside = case.mask[tuple(slice(a, b) for a, b in zip(lo, hi))]
            k = lo[0] + int(np.argmax(inside.reshape(inside.shape[0], -1).sum(axis=1)))
            image = case.image[k] if case.image.ndim == 3 else case.image[k, ..., 0]
            mask = case.mask[k]
        else:
            image = case.image if case.image.ndim == 2 else case.image[..., 1]  # fundus: green channel
            mask = case.mask
        crop, crop_mask = np.asarray(image, dtype=float)[window], mask[window]
        ax.imshow(crop, cmap="gray", interpolation="nearest")
        edge = np.ma.masked_where(~find_boundaries(crop_mask, mode="outer"), np.ones(crop_mask.shape))
        ax.imshow(edge, cmap=ListedColormap(["red"]), interpolation="nearest", vmin=0, vmax=1, alpha=0.5)
        area = int(round(row.area_fraction * np.prod(case.mask.shape[-2:])))
        ax.set_title(f"{area} px\n{crop.shape[0]}x{crop.shape[1]} crop", fontsize=8)
        ax.set_axis_off()
    return axes
