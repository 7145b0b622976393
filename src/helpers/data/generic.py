"""Any user's dataset in one of two common layouts: a plain folder of reference masks, or an nnU-Net v2 raw dataset;
the mask-file readers, label maps, grids (geometry) and the nearest-neighbour resampling of a prediction onto its
reference's grid. The registry (:mod:`helpers.data.datasets`) binds a user dataset to :func:`find_user` and
:func:`read_user`; the ``evaluate`` command (``--labels`` / ``--nnunet``) builds one.

Layouts
-------
- **labels** (``--labels DIR``): every mask file directly in ``DIR`` is a case, named by its file name without
  suffix. No images: the reference mask stands in for the image wherever a picture is drawn (stated on the page).
- **nnunet** (``--nnunet DIR``): ``DIR/dataset.json`` (``labels``: name -> integer, or a list of integers for a
  region label; an optional ``ignore`` label; ``file_ending``), references in ``labelsTs/`` (default) or
  ``labelsTr/`` (``split="Tr"``, e.g. for cross-validation predictions), images ``images<split>/<case>_0000<ending>``
  when present.

Formats: NIfTI (``.nii``, ``.nii.gz``), 2D PNG and TIFF (single channel; a mask holding only 0 and 255 is read as
binary, 255 -> label 1; other values must be integer labels below 255, anything else is an error naming the file),
NRRD and MHA/MHD through SimpleITK when it is installed (an error naming the package otherwise).

Geometry: the grid of a file (:class:`Geometry`): shape (numpy order, ``(z, y, x)`` / ``(y, x)``), spacing (mm per
numpy axis; 2D images are in pixel units ``1.0`` unless a spacing is given), origin and direction (NIfTI: the
affine's translation and its columns divided by the voxel sizes). Two files share a grid when shape is equal and
spacing, origin and direction agree within :data:`GRID_ATOL` (mm, resp. unit-vector components).

Target: the voxels whose label is one of ``label`` (one value, or several for a region label); the ``ignore_label``
voxels are the ignore region (neither truth nor false positive, as WMH's label 2). A case without any target voxel
is valid (no lesions).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import tifffile
from scipy import ndimage

from helpers.base.io import read_errors
from helpers.data.layouts import Case, CaseFiles, LoaderOptions, from_nifti_array, nothing_found

__all__ = [
    "LAYOUTS", "MASK_SUFFIXES", "GRID_ATOL", "Geometry", "UserOptions", "mask_stem", "read_mask_file",
    "read_geometry", "grid_differences", "resample_nearest", "nnunet_labels", "find_user", "read_user",
    "labels_present", "slug",
]

LAYOUTS = ("labels", "nnunet")
MASK_SUFFIXES = (".nii.gz", ".nii", ".png", ".tif", ".tiff", ".nrrd", ".mha", ".mhd")
_SITK_SUFFIXES = (".nrrd", ".mha", ".mhd")
#: Tolerance within which spacing, origin (mm) and direction (unit-vector components) of two files agree.
GRID_ATOL = 1e-3


def mask_stem(name: str) -> str | None:
    """The file name without its mask suffix, or None when it is not a mask file."""
    for suffix in MASK_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return None


def slug(text: str) -> str:
    """A name usable as a folder and dataset name: lower case, ``[a-z0-9_]`` runs kept, others to ``_``."""
    out = re.sub(r"[^a-z0-9]+", "_", str(text).lower()).strip("_")
    return out or "dataset"


@dataclass(frozen=True)
class Geometry:
    """The grid of a mask file: ``shape`` and ``spacing`` in numpy order, ``origin`` and ``direction`` (3D NIfTI:
    world position of voxel 0 and the unit axis vectors; 2D: zeros and identity), and the NIfTI ``affine``."""

    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]
    affine: np.ndarray | None = field(default=None, compare=False)

    def describe(self) -> str:
        return (f"shape {self.shape}, spacing {tuple(round(s, 4) for s in self.spacing)}, "
                f"origin {tuple(round(o, 3) for o in self.origin)}, "
                f"direction {tuple(round(d, 3) for d in self.direction)}")


def grid_differences(ref: Geometry, pred: Geometry, *, atol: float = GRID_ATOL) -> list[str]:
    """Which of shape, spacing, origin and direction differ between two grids (empty: the same grid)."""
    out = []
    if tuple(ref.shape) != tuple(pred.shape):
        return ["shape"] + [k for k in ("spacing", "origin", "direction")
                            if len(getattr(ref, k)) != len(getattr(pred, k))
                            or not np.allclose(getattr(ref, k), getattr(pred, k), atol=atol, rtol=0)]
    for key in ("spacing", "origin", "direction"):
        a, b = np.asarray(getattr(ref, key)), np.asarray(getattr(pred, key))
        if a.shape != b.shape or not np.allclose(a, b, atol=atol, rtol=0):
            out.append(key)
    return out


def _nifti_geometry(img) -> Geometry:
    shape = tuple(int(s) for s in img.shape[:3])[::-1]
    zooms = np.asarray(img.header.get_zooms()[:3], dtype=float)
    affine = np.asarray(img.affine, dtype=float)
    direction = affine[:3, :3] / np.where(zooms > 0, zooms, 1.0)
    return Geometry(shape, tuple(float(z) for z in zooms[::-1]), tuple(float(v) for v in affine[:3, 3]),
                    tuple(float(v) for v in direction.ravel()), affine)


def _plain_geometry(shape, spacing=None) -> Geometry:
    n = len(shape)
    spacing = tuple(float(s) for s in spacing) if spacing is not None else (1.0,) * n
    if len(spacing) != n:
        raise ValueError(f"spacing {spacing} has {len(spacing)} values for a {n}D image")
    return Geometry(tuple(int(s) for s in shape), spacing, (0.0,) * n, tuple(np.eye(n).ravel().tolist()))


def _sitk(path: Path):
    try:
        import SimpleITK as sitk  # optional: only for NRRD / MHA
    except ImportError:
        raise ValueError(f"{path}: reading {path.suffix} files needs SimpleITK (pip install SimpleITK); convert it "
                         "to NIfTI otherwise") from None
    return sitk


def read_geometry(path, *, spacing=None) -> Geometry:
    """The grid of a mask file, from its header where it has one (NIfTI: nothing else is read)."""
    path = Path(path)
    name = path.name.lower()
    try:
        if name.endswith((".nii", ".nii.gz")):
            return _nifti_geometry(nib.load(str(path)))
    except Exception as err:  # damaged headers raise many types
        raise ValueError(f"{path}: unreadable as NIfTI ({type(err).__name__}: {err})") from None
    return read_mask_file(path, spacing=spacing)[1]


def read_mask_file(path, *, spacing=None) -> tuple[np.ndarray, Geometry]:
    """A mask file as an integer label map (numpy order, ``uint8``/``int``) and its :class:`Geometry`.

    ``spacing`` (mm per numpy axis) replaces the pixel units of a 2D image. Errors name the file: unreadable, not
    2D/3D, non-integer values, a 2D mask with values other than 0/255 or integer labels below 255."""
    path = Path(path)
    name = path.name.lower()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: mask file not found")
    with read_errors(path, "mask"):
        if name.endswith((".nii", ".nii.gz")):
            img = nib.load(str(path))
            data = np.asarray(img.dataobj)
            if data.ndim == 4 and data.shape[3] == 1:
                data = data[..., 0]
            if data.ndim != 3:
                raise ValueError(f"{path}: expected a 3D volume, got shape {data.shape}")
            return _labels(from_nifti_array(data), path, binary_255=False), _nifti_geometry(img)
        if name.endswith(_SITK_SUFFIXES):
            sitk = _sitk(path)
            img = sitk.ReadImage(str(path))
            data = sitk.GetArrayFromImage(img)  # numpy order (z, y, x)
            n = data.ndim
            geom = Geometry(tuple(data.shape), tuple(float(s) for s in img.GetSpacing()[::-1]),
                            tuple(float(o) for o in img.GetOrigin()), tuple(float(d) for d in img.GetDirection()))
            return _labels(data, path, binary_255=n == 2), geom
        data = np.asarray(iio.imread(path) if name.endswith(".png") else tifffile.imread(path))
    if data.ndim != 2:
        raise ValueError(f"{path}: expected a single-channel 2D mask, got shape {data.shape}")
    return _labels(data, path, binary_255=True), _plain_geometry(data.shape, spacing)


def _labels(data: np.ndarray, path: Path, *, binary_255: bool) -> np.ndarray:
    """Integer labels from ``data`` (errors name ``path``); a 2D mask of only 0 and 255 becomes 0/1."""
    if data.dtype == bool:
        return data.view(np.uint8)
    if data.dtype == np.uint8 and not binary_255:
        return data  # integer labels 0-255 as stored (nnU-Net's dtype): nothing to check, no copy
    if not np.issubdtype(data.dtype, np.number):
        raise ValueError(f"{path}: mask values must be numbers, got dtype {data.dtype}")
    if np.issubdtype(data.dtype, np.floating):
        if not np.all(np.isfinite(data)) or not np.array_equal(np.rint(data), data):
            raise ValueError(f"{path}: mask values must be integer labels (found non-integer values)")
        data = data.astype(np.int64)
    if data.size and data.min() < 0:
        raise ValueError(f"{path}: negative label values ({int(data.min())})")
    if binary_255:
        values = np.unique(data)
        if values.size and values.max() == 255:
            if not set(values.tolist()) <= {0, 255}:
                raise ValueError(f"{path}: a mask with 255 must hold only 0 and 255 (binary), got values "
                                 f"{values[:8].tolist()}")
            return (data == 255).astype(np.uint8)
        if values.size and values.max() > 255:
            raise ValueError(f"{path}: values {values[-3:].tolist()} are neither 0/255 nor labels below 255")
    return data.astype(np.uint8, copy=False) if data.size and data.max() < 256 else data


def resample_nearest(data: np.ndarray, source: Geometry, target: Geometry) -> np.ndarray:
    """A label map on grid ``source`` resampled by nearest neighbour onto grid ``target`` (numpy order). 3D
    NIfTI grids map through their affines (world coordinates); grids without one (2D) by their spacing and origin
    alone. Voxels of ``target`` outside ``source`` become 0."""
    n = data.ndim
    if source.affine is not None and target.affine is not None and n == 3:
        # numpy (z, y, x) index -> NIfTI (x, y, z) index: reversal permutation P
        perm = np.eye(4)[[2, 1, 0, 3]]
        to_world_t = target.affine @ perm
        from_world_s = perm @ np.linalg.inv(source.affine)
        m = from_world_s @ to_world_t
        matrix, offset = m[:3, :3], m[:3, 3]
    else:
        ratio = np.asarray(target.spacing, float) / np.asarray(source.spacing, float)
        matrix = np.diag(ratio)
        offset = (np.asarray(target.origin[:n], float) - np.asarray(source.origin[:n], float)) \
            / np.asarray(source.spacing, float)
    return ndimage.affine_transform(data, matrix, offset=offset, output_shape=tuple(target.shape), order=0,
                                    mode="constant", cval=0, prefilter=False)


# ----------------------------------------------------------------------------------------------- options, layouts

@dataclass(frozen=True)
class UserOptions(LoaderOptions):
    """A user dataset's layout and target: ``layout`` (:data:`LAYOUTS`), ``label`` (the label value(s) of the
    target; several for a region label), ``label_name`` (as ``dataset.json`` names it), ``ignore_label`` (or
    None), ``split`` (nnU-Net ``"Ts"`` or ``"Tr"``), ``spacing`` (mm per numpy axis of 2D images; None: pixels)."""

    layout: str = "labels"
    label: tuple[int, ...] = (1,)
    label_name: str = ""
    ignore_label: int | None = None
    split: str = "Ts"
    spacing: tuple[float, ...] | None = None

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        label = (self.label,) if isinstance(self.label, int) else tuple(self.label)
        if not label or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in label):
            raise ValueError(f"label must be positive integer label value(s), got {self.label!r}")
        object.__setattr__(self, "label", label)
        if self.ignore_label is not None and (not isinstance(self.ignore_label, int) or self.ignore_label in label):
            raise ValueError(f"ignore_label must be an integer other than the target label, got {self.ignore_label!r}")
        if self.split not in ("Ts", "Tr"):
            raise ValueError(f"split must be 'Ts' or 'Tr', got {self.split!r}")
        if self.spacing is not None:
            spacing = tuple(float(s) for s in self.spacing)
            if not all(np.isfinite(s) and s > 0 for s in spacing):
                raise ValueError(f"spacing must be positive numbers, got {self.spacing!r}")
            object.__setattr__(self, "spacing", spacing)


def nnunet_labels(root) -> tuple[dict[str, tuple[int, ...]], int | None, str]:
    """From ``root/dataset.json``: the foreground labels (name -> value(s); a region label lists several), the
    ignore label's value (or None) and the ``file_ending``. Errors name the file."""
    path = Path(root) / "dataset.json"
    if not path.is_file():
        raise nothing_found(FileNotFoundError(f"{path}: not found (an nnU-Net raw dataset has a dataset.json)"))
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    labels = meta.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise ValueError(f"{path}: 'labels' must map label names to integers")
    out, ignore = {}, None
    for name, value in labels.items():
        values = tuple(value) if isinstance(value, list) else (value,)
        if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in values):
            raise ValueError(f"{path}: label {name!r} must be a non-negative integer or a list of them, got {value!r}")
        if name == "ignore":
            ignore = values[0]
        elif values != (0,):
            out[str(name)] = tuple(v for v in values if v != 0)
    ending = meta.get("file_ending", ".nii.gz")
    if not isinstance(ending, str) or mask_stem("x" + ending) != "x":
        raise ValueError(f"{path}: file_ending {ending!r} is not a supported mask format {MASK_SUFFIXES}")
    return out, ignore, ending


def _mask_files(folder: Path, ending: str | None = None) -> dict[str, Path]:
    files = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        stem = mask_stem(path.name)
        if stem is not None and (ending is None or path.name.endswith(ending)):
            files[stem] = path
    return files


def find_user(root: Path, options: UserOptions) -> list[CaseFiles]:
    """The cases of a user dataset (every case is a test case: the dataset is evaluated, not trained on)."""
    root = Path(root)
    if options.layout == "nnunet":
        _, _, ending = nnunet_labels(root)
        folder = root / f"labels{options.split}"
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: not found (nnU-Net references of split {options.split!r})")
        refs = _mask_files(folder, ending)
        images = root / f"images{options.split}"
    else:
        refs, images, ending = _mask_files(root), None, ""
    if not refs:
        raise nothing_found(FileNotFoundError(f"{root}: no mask files ({', '.join(MASK_SUFFIXES)})"))
    found = []
    for case_id, ref in refs.items():
        image = images / f"{case_id}_0000{ending}" if images is not None else None
        found.append(CaseFiles(dataset="", case_id=case_id, images=(image,) if image and image.is_file() else (),
                               labels={"reference": ref}, subset="test",
                               meta={"layout": options.layout, "evaluation_only": True},
                               options=options))
    return found


def labels_present(files: list[CaseFiles], *, spacing=None) -> tuple[int, ...]:
    """The non-zero label values found in the reference files (read once each), for ``--label all`` on a
    plain folder."""
    values: set[int] = set()
    for f in files:
        data, _ = read_mask_file(f.labels["reference"], spacing=spacing)
        values.update(int(v) for v in np.unique(data) if v)
    return tuple(sorted(values))


def read_user(files: CaseFiles, *, image: bool = True) -> Case:
    """One case of a user dataset: target ``isin(labels, label)``, ignore region ``labels == ignore_label``,
    spacing from the header (2D: the options' spacing or pixels). The image is read when the layout has one and
    ``image`` is True; otherwise the target mask itself (as ``uint8``, no copy) stands in for it."""
    options = files.options if isinstance(files.options, UserOptions) else UserOptions()
    ref = Path(files.labels["reference"])
    labels, geom = read_mask_file(ref, spacing=options.spacing)
    mask = np.isin(labels, options.label) if len(options.label) > 1 else labels == options.label[0]
    ignore = labels == options.ignore_label if options.ignore_label is not None else None
    del labels
    picture = mask.view(np.uint8)
    if image and files.images:
        try:
            if files.images[0].name.lower().endswith((".nii", ".nii.gz")):
                raw = from_nifti_array(np.asarray(nib.load(str(files.images[0])).dataobj))
                picture = raw.astype(np.float32) if raw.shape[:mask.ndim] == mask.shape else picture
        except Exception as err:  # a broken image file
            raise ValueError(f"{files.images[0]}: unreadable image ({type(err).__name__}: {err})") from None
    meta = {"layout": options.layout, "label": list(options.label), "label_name": options.label_name,
            "target_labels": list(options.label), "geometry": geom.describe()}
    return Case(case_id=files.case_id, image=picture, mask=mask, ignore=ignore, spacing=tuple(geom.spacing),
                subset="test", source=str(ref), affine=geom.affine if mask.ndim == 3 else None, meta=meta)
