"""The three datasets' published on-disk layouts: the case types, the loader options that define the lesion
target, and one finder and one reader per layout. Nothing here knows the registry
(:mod:`helpers.data.datasets` binds each layout to its dataset) or the study above it (:mod:`helpers.data`).

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

What is the target, per dataset (the options are the frozen dataclasses below, validated when built)
-----------------------------------------------------------------------------------------------------
- **WMH** (:class:`WMHOptions`): label 1 of ``wmh.nii[.gz]``; label 2 becomes ``ignore``
  (``ignore_other_pathology=True``, the default) or plain background. Image: the ``modalities`` of ``pre/``
  (default FLAIR and T1, both on the FLAIR grid) as channels.
- **LiTS** (:class:`LiTSOptions`): label 2 (tumour) of the segmentation; ``target="liver"`` takes labels 1 and
  2 instead.
- **IDRiD** (:class:`IDRiDOptions`): the union of the chosen ``lesion_types`` (any of MA, HE, EX, SE; default
  all four). The optic disc is anatomy and never part of the target. A missing mask file means the image has no
  lesion of that type.

Empty-mask policy: a case whose target is empty is valid and kept (a LiTS volume without tumour, an IDRiD image
without any of the chosen lesion types); it has no lesions.

Errors name the file: missing or unreadable files, image/mask shape or grid mismatch, label values outside the
expected set, non-finite intensities or spacing. A finder lists the files of each case (cheap, validates the
tree); a reader reads one case, so that a large dataset is never held in memory at once. A finder that finds no
dataset at all (rather than a broken one) raises an error marked by :func:`nothing_found`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import tifffile
from scipy import ndimage

__all__ = [
    "IDRID_LESION_TYPES", "IDRID_FOLDERS", "IDRID_SUBSETS", "WMH_MODALITIES", "LITS_TARGETS", "to_nifti_array",
    "from_nifti_array", "Case", "CaseFiles", "LoaderOptions", "WMHOptions", "LiTSOptions", "IDRiDOptions",
    "check_root", "read_nifti", "nothing_found", "is_nothing_found", "find_wmh", "read_wmh", "find_lits",
    "read_lits", "find_idrid", "read_idrid",
]

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
    """The files of one case, found by a finder (:func:`helpers.data.find_cases`) and read by its reader.

    ``images`` lists the image files (WMH: one per modality, in channel order); ``labels`` maps a label name
    to its file or ``None`` when absent (IDRiD lesion types); ``options`` are the loader options in force
    (a :class:`LoaderOptions` of the dataset's layout)."""

    dataset: str
    case_id: str
    images: tuple[Path, ...]
    labels: dict
    subset: str | None
    meta: dict = field(default_factory=dict)
    options: LoaderOptions | None = None

    @property
    def first_file(self):
        """The file the case is known by in messages: its first image, else its first label file."""
        return self.images[0] if self.images else next(iter(self.labels.values()), None)


# ----------------------------------------------------------------------------------------------- loader options

@dataclass(frozen=True)
class LoaderOptions:
    """The options that define a dataset's lesion target; one frozen subclass per layout, validated when built.

    Build one from a profile's mapping with :meth:`from_mapping` (or
    :func:`helpers.data.datasets.loader_options`), which names an unknown option and the allowed ones."""

    @classmethod
    def from_mapping(cls, mapping=None, *, dataset: str = ""):
        """Options from a mapping of option name to value (``None``: the defaults)."""
        mapping = {} if mapping is None else mapping
        if not isinstance(mapping, dict):
            raise TypeError(f"loader options{f' of {dataset!r}' if dataset else ''} must be a mapping, "
                            f"got {type(mapping).__name__}")
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(mapping) - set(allowed))
        if unknown:
            raise TypeError(f"unknown option for dataset {dataset!r}: {', '.join(map(repr, unknown))}; "
                            f"allowed: {', '.join(allowed)}")
        return cls(**mapping)

    def as_dict(self) -> dict:
        """The options as JSON-ready values (for the data manifest), readable back by :meth:`from_mapping`."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}


def _names(value, allowed: tuple[str, ...], option: str, note: str = "") -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (tuple, list)) or not value \
            or any(v not in allowed for v in value):
        raise ValueError(f"{option} must be a non-empty sequence of {allowed}{note}, got {value!r}")
    if len(set(value)) != len(value):
        raise ValueError(f"{option} must not repeat, got {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class WMHOptions(LoaderOptions):
    """WMH: ``modalities``, the ``pre/`` images used as channels, in order (any of ``WMH_MODALITIES``);
    ``ignore_other_pathology``: label 2 becomes the ignore mask (True) or background (False)."""

    modalities: tuple[str, ...] = WMH_MODALITIES
    ignore_other_pathology: bool = True

    def __post_init__(self):
        object.__setattr__(self, "modalities", _names(self.modalities, WMH_MODALITIES, "modalities"))
        if not isinstance(self.ignore_other_pathology, bool):
            raise TypeError(f"ignore_other_pathology must be bool, got {self.ignore_other_pathology!r}")


@dataclass(frozen=True)
class LiTSOptions(LoaderOptions):
    """LiTS: ``target``, ``"tumour"`` (label 2) or ``"liver"`` (labels 1 and 2)."""

    target: str = "tumour"

    def __post_init__(self):
        if self.target not in LITS_TARGETS:
            raise ValueError(f"target must be one of {LITS_TARGETS}, got {self.target!r}")


@dataclass(frozen=True)
class IDRiDOptions(LoaderOptions):
    """IDRiD: ``lesion_types``, the lesion types whose union is the target (any of ``IDRID_LESION_TYPES``,
    kept in that order; never the optic disc)."""

    lesion_types: tuple[str, ...] = IDRID_LESION_TYPES

    def __post_init__(self):
        chosen = _names(self.lesion_types, IDRID_LESION_TYPES, "lesion_types", " (never the optic disc 'OD')")
        object.__setattr__(self, "lesion_types", tuple(t for t in IDRID_LESION_TYPES if t in chosen))


# ----------------------------------------------------------------------------------------------- file checks

def check_root(root) -> Path:
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


def read_nifti(path: Path, *, what: str):
    """Load a 3D NIfTI file: (data (z, y, x) float array, spacing (z, y, x), affine)."""
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


def nothing_found(err: Exception) -> Exception:
    """Mark a finder's error as "no dataset in this folder" (rather than a broken dataset), so that
    :func:`helpers.data.find_cases` looks one folder deeper; :func:`is_nothing_found` reads the mark."""
    err.nothing_found = True
    return err


def is_nothing_found(err: Exception) -> bool:
    return bool(getattr(err, "nothing_found", False))


# ----------------------------------------------------------------------------------------------- WMH

def find_wmh(root: Path, options: WMHOptions) -> list[CaseFiles]:
    """The subjects of a WMH tree (2022 release with training/ and test/, or the 2017 top-level sites)."""
    found = []
    for pre in sorted(p for p in root.rglob("pre") if p.is_dir()):
        parts = pre.parent.relative_to(root).parts
        if "additional_annotations" in parts or not parts:
            continue
        subset = parts[0] if parts[0] in ("training", "test") else None
        rest = parts[1:] if subset else parts
        if len(rest) < 2 or rest[0] not in _WMH_SITE_OF_TOP:
            raise nothing_found(ValueError(
                f"WMH subject folder {str(pre.parent)!r}: expected <site>[/<scanner>]/<id> with site in "
                f"{sorted(_WMH_SITE_OF_TOP)}, got {'/'.join(parts)!r}"))
        site = _WMH_SITE_OF_TOP[rest[0]]
        scanner = rest[0] if rest[0] == "GE3T" else (rest[1] if rest[0] == "Amsterdam" and len(rest) > 2 else rest[0])
        subject = rest[-1]
        case_id = f"Amsterdam_{scanner}_{subject}" if site == "Amsterdam" else f"{site}_{subject}"
        images = []
        for modality in options.modalities:
            path = _nifti(pre, modality)
            if path is None:
                raise FileNotFoundError(f"WMH image file {str(pre / (modality + '.nii.gz'))!r} (or .nii): not found")
            images.append(path)
        label = _nifti(pre.parent, "wmh")
        if label is None:
            raise FileNotFoundError(f"WMH label file {str(pre.parent / 'wmh.nii.gz')!r} (or .nii): not found")
        found.append(CaseFiles("wmh", case_id, tuple(images), {"wmh": label}, subset,
                               meta={"site": site, "scanner": scanner, "subject": subject,
                                     "layout": "2022" if subset else "2017", "modalities": list(options.modalities)},
                               options=options))
    if not found:
        raise nothing_found(ValueError(
            f"root {str(root)!r}: no WMH subject folders found (expected <site>/<id>/pre/FLAIR.nii.gz "
            "under training/ and test/ (2022) or at the top level (2017))"))
    return found


def read_wmh(files: CaseFiles) -> Case:
    """One WMH subject: the chosen ``pre/`` images as channels, label 1 as target, label 2 as ignore."""
    channels, ref = [], None
    for path in files.images:
        data, spacing, affine = read_nifti(path, what="WMH image")
        data = data.astype(np.float32)
        _check_finite(data, path, "WMH image")
        if ref is None:
            ref = (path, data.shape, affine, spacing)
        else:
            _check_same_grid(ref[0], ref[1], ref[2], path, data.shape, affine, "WMH image")
        channels.append(data)
    label_path = files.labels["wmh"]
    label, _, label_affine = read_nifti(label_path, what="WMH label")
    _check_same_grid(ref[0], ref[1], ref[2], label_path, label.shape, label_affine, "WMH label")
    label = _check_labels(label, label_path, (0, 1, 2))
    image = channels[0] if len(channels) == 1 else np.stack(channels, axis=-1)
    other = label == 2
    ignore = other if files.options.ignore_other_pathology else None
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


def find_lits(root: Path, options: LiTSOptions) -> list[CaseFiles]:
    """The volumes of a LiTS tree (``Training Batch */``, paired by id) or of its MSD copy (``Task03_Liver``)."""
    task = _msd_task(root)
    found = _find_msd(task, options) if task is not None else _find_lits_batches(root, options)
    if not found:
        raise nothing_found(ValueError(
            f"root {str(root)!r}: no LiTS volumes found (expected 'Training Batch */volume-<n>.nii' "
            "or 'Task03_Liver/dataset.json')"))
    return found


def _msd_labels(description_path: Path) -> tuple[dict, int, int]:
    """The MSD ``dataset.json`` read and checked: (its content, liver label, tumour label)."""
    try:
        description = json.loads(description_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"MSD file {str(description_path)!r}: unreadable ({err})") from None
    labels = {str(v).lower(): int(k) for k, v in description.get("labels", {}).items()}
    tumour = [labels[name] for name in _TUMOUR_NAMES if name in labels]
    if "liver" not in labels or not tumour:
        raise ValueError(f"MSD file {str(description_path)!r}: labels {description.get('labels')!r} do not name "
                         "'liver' and a tumour class ('cancer')")
    return description, labels["liver"], tumour[0]


def _find_msd(task: Path, options: LiTSOptions) -> list[CaseFiles]:
    """The labelled volumes of the MSD copy, as its ``dataset.json`` lists them (else ``imagesTr``)."""
    description_path = task / "dataset.json"
    description, liver, tumour = _msd_labels(description_path)
    pairs = description.get("training")
    if pairs is None:
        pairs = [{"image": f"./imagesTr/{p.name}", "label": f"./labelsTr/{p.name}"}
                 for p in sorted((task / "imagesTr").glob("*.nii*")) if not p.name.startswith("._")]
    found = []
    for entry in pairs:
        image = (task / entry["image"]).resolve()
        label = (task / entry["label"]).resolve()
        for path, what in ((image, "image"), (label, "label")):
            if not path.is_file():
                raise FileNotFoundError(f"MSD {what} file {str(path)!r} (listed in {str(description_path)!r}): "
                                        "not found")
        case_id = image.name.split(".nii")[0]
        found.append(CaseFiles("lits", case_id, (image,), {"segmentation": label}, "training",
                               meta={"layout": "msd", "liver_label": liver, "tumour_label": tumour},
                               options=options))
    unlabelled = [p for p in (task / "imagesTs").glob("*.nii*") if not p.name.startswith("._")] \
        if (task / "imagesTs").is_dir() else []
    for f in found:
        f.meta["unlabelled_test_images"] = len(unlabelled)
    return found


def _find_lits_batches(root: Path, options: LiTSOptions) -> list[CaseFiles]:
    """``volume-<n>.nii`` and ``segmentation-<n>.nii`` anywhere under ``root``, paired by id."""
    volumes, segmentations = {}, {}
    for path in sorted(root.rglob("*.nii*")):
        for pattern, table in ((_LITS_VOLUME, volumes), (_LITS_SEGMENTATION, segmentations)):
            match = pattern.match(path.name)
            if match:
                number = int(match.group(1))
                if number in table:
                    raise ValueError(f"LiTS file {str(path)!r}: id {number} also in {str(table[number])!r}")
                table[number] = path
    found = []
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
                               meta={"layout": "batches", "folder": volumes[number].parent.name,
                                     "liver_label": 1, "tumour_label": 2},
                               options=options))
    return found


def read_lits(files: CaseFiles) -> Case:
    """One LiTS volume: raw HU image; tumour (or liver and tumour) as target."""
    path = files.images[0]
    image, spacing, affine = read_nifti(path, what="LiTS image")
    image = image.astype(np.float32)
    _check_finite(image, path, "LiTS image")
    label_path = files.labels["segmentation"]
    label, _, label_affine = read_nifti(label_path, what="LiTS label")
    _check_same_grid(path, image.shape, affine, label_path, label.shape, label_affine, "LiTS label")
    liver, tumour = files.meta["liver_label"], files.meta["tumour_label"]
    label = _check_labels(label, label_path, (0, liver, tumour))
    mask = label == tumour if files.options.target == "tumour" else label > 0
    meta = dict(files.meta, label_file=str(label_path), liver_voxels=int((label > 0).sum()),
                has_tumour=bool((label == tumour).any()))
    return Case(files.case_id, image, mask, None, spacing, files.subset, str(path), affine, meta)


# ----------------------------------------------------------------------------------------------- IDRiD

def _idrid_base(root: Path) -> Path:
    for candidate in (root / "A. Segmentation", root):
        if (candidate / "1. Original Images").is_dir():
            return candidate
    raise nothing_found(FileNotFoundError(f"root {str(root)!r}: no 'A. Segmentation/1. Original Images' folder found"))


def find_idrid(root: Path, options: IDRiDOptions) -> list[CaseFiles]:
    """The photographs of an IDRiD part A tree with their lesion-type and optic-disc mask files."""
    lesion_types = options.lesion_types
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
                                   options=options))
    if not found:
        raise nothing_found(ValueError(
            f"root {str(root)!r}: no IDRiD images found under '1. Original Images/a. Training Set' or "
            "'b. Testing Set'"))
    return found


def _read_tiff_mask(path: Path, shape) -> np.ndarray:
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


def read_idrid(files: CaseFiles) -> Case:
    """One IDRiD photograph: RGB image; the union of the chosen lesion types as target."""
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
    for key in files.options.lesion_types:
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
