"""Predictions on disk: one file per test case in the dataset's own format, readable by every later section and
written by any tool (bring your own predictions, e.g. nnU-Net outputs).

Layout
------
``<root>/<model>/<case_id>.nii.gz``
    Volumes: NIfTI, ``uint8`` with values 0/1, the source image's affine. NIfTI stores arrays as ``(x, y, z)``;
    this package's arrays are ``(z, y, x)`` (axial slice axis first), so writing transposes ``(z, y, x) -> (x, y,
    z)`` and reading transposes back (:func:`helpers.data.layouts.to_nifti_array` / ``from_nifti_array``, the one place
    that convention lives).
``<root>/<model>/<case_id>.png`` (or ``.tif``)
    2D images (fundus): single-channel ``uint8`` with values 0/255 (0/1 is accepted on reading).
``<root>/<model>/probabilities/<case_id>.nii.gz`` / ``.tif``
    Optional foreground probabilities (``float32`` in [0, 1]) on the same grid.

``<root>`` is ``<ws>/predictions/<dataset>``. Folders whose name starts with ``_`` or ``.`` are not models
(``_seeds/seed<k>/`` holds the extra training seeds, each itself a predictions root).

Post-processing rule (shared by all models)
-------------------------------------------
:func:`postprocess`: threshold the probability at 0.5 (``prob >= 0.5`` is foreground), then remove every
connected component with fewer than ``min_component_voxels`` voxels, components taken with full connectivity
(26-neighbourhood in 3D, 8 in 2D; scikit-image's ``connectivity=ndim``, the convention of ``helpers.metrics.lesions``),
on the original grid. An empty prediction is a valid prediction and is written as an all-zero file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import pandas as pd
import tifffile
from scipy import ndimage

from helpers.base.io import atomic_write, read_errors
from helpers.data.generic import read_mask_file
from helpers.data.layouts import from_nifti_array, to_nifti_array

VOLUME_SUFFIXES = (".nii.gz", ".nii")
IMAGE_SUFFIXES = (".png", ".tif", ".tiff")
SUFFIXES = VOLUME_SUFFIXES + IMAGE_SUFFIXES
PROBABILITIES = "probabilities"




def _check_name(value, what: str) -> str:
    if not isinstance(value, str) or not value or "/" in value or "\\" in value or value.startswith((".", "_")):
        raise ValueError(
            f"{what} must be a non-empty file name without '/' not starting with '.' or '_', got {value!r}"
        )
    return value


def postprocess(prob: np.ndarray, *, threshold: float = 0.5, min_component_voxels: int = 0) -> np.ndarray:
    """The shared inference rule: threshold, then remove small connected components.

    Parameters
    ----------
    prob : ndarray of float
        Foreground probabilities, 2D ``(y, x)`` or 3D ``(z, y, x)``.
    threshold : float, default 0.5
        ``prob >= threshold`` is foreground (the same for every model).
    min_component_voxels : int, default 0
        Components with *fewer* than this many voxels are removed (0 or 1 keep everything). Full connectivity.

    Returns
    -------
    ndarray of bool, same shape as ``prob``.
    """
    prob = np.asarray(prob)
    if prob.ndim not in (2, 3) or not np.issubdtype(prob.dtype, np.floating):
        raise ValueError(f"prob must be a 2D or 3D float array, got shape {prob.shape} dtype {prob.dtype}")
    if not np.all(np.isfinite(prob)):
        raise ValueError("prob must be finite")
    if isinstance(min_component_voxels, bool) or not isinstance(min_component_voxels, (int, np.integer)):
        raise ValueError(f"min_component_voxels must be a non-negative integer, got {min_component_voxels!r}")
    if min_component_voxels < 0:
        raise ValueError(f"min_component_voxels must be a non-negative integer, got {min_component_voxels!r}")
    mask = prob >= threshold
    if min_component_voxels > 1 and mask.any():
        structure = ndimage.generate_binary_structure(mask.ndim, mask.ndim)
        labels, _ = ndimage.label(mask, structure=structure)
        sizes = np.bincount(labels.ravel())
        keep = sizes >= min_component_voxels
        keep[0] = False
        mask = keep[labels]
    return mask


def prediction_path(root, model: str, case_id: str, *, kind: str, image_format: str = "png") -> Path:
    """Where :func:`write_prediction` puts the mask of ``case_id``."""
    suffix = ".nii.gz" if kind == "volume" else "." + image_format
    return Path(root) / model / f"{case_id}{suffix}"


def write_prediction(
    root,
    model: str,
    case_id: str,
    mask: np.ndarray,
    *,
    kind: str,
    affine: np.ndarray | None = None,
    prob: np.ndarray | None = None,
    image_format: str = "png",
) -> Path:
    """Write one case's binary prediction (and optionally its probabilities) atomically.

    Parameters
    ----------
    root : path
        The predictions root of a dataset, ``<ws>/predictions/<dataset>``.
    model, case_id : str
        Folder and file names.
    mask : ndarray of bool
        ``(z, y, x)`` for ``kind="volume"``, ``(y, x)`` for ``kind="image"``, on the original image grid.
    kind : {"volume", "image"}
        Volume -> NIfTI ``uint8`` 0/1 with ``affine`` (identity when None); image -> ``image_format`` ``uint8`` 0/255.
    affine : (4, 4) ndarray, optional
        The source image's affine (volumes only).
    prob : ndarray of float, optional
        Probabilities in [0, 1] of the same shape, written as ``float32`` under ``probabilities/``.
    image_format : {"png", "tif"}
        Format of 2D predictions.

    Returns
    -------
    Path of the mask file.
    """
    _check_name(model, "model")
    _check_name(case_id, "case_id")
    if kind not in ("volume", "image"):
        raise ValueError(f"kind must be 'volume' or 'image', got {kind!r}")
    if image_format not in ("png", "tif"):
        raise ValueError(f"image_format must be 'png' or 'tif', got {image_format!r}")
    mask = np.asarray(mask)
    if mask.dtype != bool:
        raise TypeError(f"mask must be a boolean array, got dtype {mask.dtype}")
    want = 3 if kind == "volume" else 2
    if mask.ndim != want:
        raise ValueError(f"mask of kind {kind!r} must have {want} axes, got shape {mask.shape}")
    if prob is not None:
        prob = np.asarray(prob, dtype=np.float32)
        if prob.shape != mask.shape:
            raise ValueError(f"prob shape {prob.shape} differs from mask shape {mask.shape}")
        if not np.all((prob >= 0) & (prob <= 1)):
            raise ValueError("prob must lie in [0, 1]")
    path = prediction_path(root, model, case_id, kind=kind, image_format=image_format)
    if kind == "volume":
        _write_volume(path, mask, prob, affine)
    else:
        _write_image(path, mask, prob, case_id, image_format)
    return path


def _write_volume(path: Path, mask: np.ndarray, prob: np.ndarray | None, affine) -> None:
    """The mask (uint8) and optional probabilities (float32) as NIfTI on ``affine`` (identity if None)."""
    affine = np.asarray(np.eye(4) if affine is None else affine, dtype=float)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise ValueError(f"affine must be a finite (4, 4) array, got shape {affine.shape}")

    def _save(array, dtype, dest):
        img = nib.Nifti1Image(to_nifti_array(array.astype(dtype)), affine)
        img.header.set_data_dtype(dtype)
        atomic_write(dest, lambda p: nib.save(img, str(p)), suffix=".nii.gz")

    _save(mask, np.uint8, path)
    if prob is not None:
        _save(prob, np.float32, path.parent / PROBABILITIES / path.name)


def _write_image(path: Path, mask: np.ndarray, prob: np.ndarray | None, case_id: str, image_format: str) -> None:
    """The mask as 0/255 PNG or TIFF, optional probabilities as float32 TIFF."""
    if image_format == "png":
        atomic_write(path, lambda p: iio.imwrite(p, mask.astype(np.uint8) * 255, extension=".png"), suffix=".png")
    else:
        atomic_write(path, lambda p: tifffile.imwrite(p, mask.astype(np.uint8) * 255), suffix=".tif")
    if prob is not None:
        dest = path.parent / PROBABILITIES / f"{case_id}.tif"
        atomic_write(dest, lambda p: tifffile.imwrite(p, prob), suffix=".tif")


def _prediction_files(folder: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        for suffix in SUFFIXES:
            if path.name.lower().endswith(suffix):
                found.setdefault(path.name[: -len(suffix)], []).append(path)
                break
    return found


def list_models(root) -> list[str]:
    """Sorted names of the model folders under ``root`` that hold at least one prediction file.

    Folders starting with ``_`` or ``.`` are skipped (``_seeds`` holds extra training seeds)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(
        p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")) and _prediction_files(p)
    )


def list_cases(root, model: str) -> list[str]:
    """Sorted case ids with a prediction file in ``<root>/<model>``."""
    return sorted(_prediction_files(Path(root) / model))


def _find(folder: Path, case_id: str) -> Path:
    candidates = [folder / f"{case_id}{suffix}" for suffix in SUFFIXES]
    present = [p for p in candidates if p.is_file()]
    if not present:
        raise FileNotFoundError(
            f"{folder / case_id}.*: no prediction for case {case_id!r} (looked for {', '.join(SUFFIXES)})"
        )
    if len(present) > 1:
        raise ValueError(f"{folder}: several predictions for case {case_id!r}: {[p.name for p in present]}")
    return present[0]


def _load(path: Path) -> np.ndarray:
    name = path.name.lower()
    with read_errors(path, "prediction"):
        if name.endswith(VOLUME_SUFFIXES):
            array = np.asarray(nib.load(str(path)).dataobj)
            if array.ndim == 4 and array.shape[3] == 1:
                array = array[..., 0]
            if array.ndim != 3:
                raise ValueError(f"{path}: expected a 3D volume, got shape {array.shape}")
            return from_nifti_array(array)
        if name.endswith(".png"):
            array = np.asarray(iio.imread(path))
        else:
            array = np.asarray(tifffile.imread(path))
    if array.ndim != 2:
        raise ValueError(f"{path}: expected a single-channel 2D image, got shape {array.shape}")
    return array


def read_prediction(root, model: str, case, *, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Read one case's prediction as a boolean array on the case's grid.

    Parameters
    ----------
    root : path
        The predictions root (``<ws>/predictions/<dataset>``).
    model : str
        The model folder.
    case : str or Case-like
        A case id, or an object with ``case_id`` and ``mask`` (``helpers.data.layouts.Case``); then the prediction's
        shape is checked against ``case.mask.shape``.
    shape : tuple of int, optional
        The expected shape when ``case`` is a plain id.

    Returns
    -------
    ndarray of bool
        ``(z, y, x)`` for volumes, ``(y, x)`` for images.

    Raises
    ------
    FileNotFoundError
        No prediction file for the case (the message names the folder and the id).
    ValueError
        Several files for one case, an unreadable file, a shape different from the case's, or values other
        than {0, 1} (NIfTI, 2D) or {0, 255} (2D images); the message names the file.
    """
    if isinstance(case, str):
        case_id = case
    elif hasattr(case, "case_id") and hasattr(case, "mask"):
        case_id = case.case_id
        if shape is None:
            shape = np.shape(case.mask)
    else:
        raise TypeError(f"case must be a case id or a Case with case_id and mask, got {type(case).__name__}")
    path = _find(Path(root) / model, case_id)
    if not isinstance(case, str) and (getattr(case, "meta", None) or {}).get("target_labels"):
        return read_prediction_file(path, case)
    array = _load(path)
    if shape is not None and tuple(array.shape) != tuple(shape):
        raise ValueError(f"{path}: prediction shape {tuple(array.shape)} differs from the case's {tuple(shape)}")
    if array.dtype == bool:
        return array
    if not np.issubdtype(array.dtype, np.number) or not np.all(np.isfinite(array)):
        raise ValueError(f"{path}: non-binary values (dtype {array.dtype})")
    values = np.unique(array)
    is_volume = path.name.lower().endswith(VOLUME_SUFFIXES)
    allowed = ({0, 1},) if is_volume else ({0, 1}, {0, 255})
    if not any(set(values.tolist()) <= a for a in allowed):
        shown = values[:6].tolist()
        raise ValueError(f"{path}: non-binary values {shown} (expected {' or '.join(str(sorted(a)) for a in allowed)})")
    return array > 0


def prediction_file(root, model: str, case_id: str) -> Path:
    """The prediction file of ``case_id`` in ``<root>/<model>`` (errors as :func:`read_prediction`)."""
    return _find(Path(root) / model, case_id)


def read_prediction_file(path, case) -> np.ndarray:
    """A prediction file read for ``case`` (a Case): shape checked against ``case.mask``. A case of a user dataset
    (``case.meta["target_labels"]``) takes the prediction as a label map with the reference's label values
    (nnU-Net writes them): the target is those values (a 0/255 2D mask reads as label 1); otherwise as
    :func:`read_prediction` (binary values)."""
    path = Path(path)
    target = (getattr(case, "meta", None) or {}).get("target_labels")
    if not target:
        return read_prediction(path.parent.parent, path.parent.name, case) if _stem(path.name) == case.case_id \
            else _binary(path, _load(path), np.shape(case.mask))
    array, _ = read_mask_file(path)
    if tuple(array.shape) != tuple(np.shape(case.mask)):
        raise ValueError(f"{path}: prediction shape {tuple(array.shape)} differs from the case's "
                         f"{tuple(np.shape(case.mask))}")
    return np.isin(array, list(target)) if len(target) > 1 else array == target[0]


def _binary(path: Path, array: np.ndarray, shape) -> np.ndarray:
    if tuple(array.shape) != tuple(shape):
        raise ValueError(f"{path}: prediction shape {tuple(array.shape)} differs from the case's {tuple(shape)}")
    values = set(np.unique(array).tolist())
    if not (values <= {0, 1} or (not path.name.lower().endswith(VOLUME_SUFFIXES) and values <= {0, 255})):
        raise ValueError(f"{path}: non-binary values {sorted(values)[:6]}")
    return array > 0


def read_probabilities(root, model: str, case_id: str) -> np.ndarray:
    """Read the optional probability map of ``case_id`` (``float32``), or raise FileNotFoundError."""
    path = _find(Path(root) / model / PROBABILITIES, case_id)
    array = _load(path)
    return np.asarray(array, dtype=np.float32)


# ----------------------------------------------------------------------------------------- matching files to cases

#: The rules that tie a prediction file to a case, in the order they are tried.
MATCH_RULES = ("mapping", "case id", "reference name", "nnU-Net number")
_NNUNET = re.compile(r"^(?P<prefix>.+)_(?P<number>\d{3,5})$")
_TRAILING_NUMBER = re.compile(r"(\d+)\D*$")


def _stem(name: str) -> str | None:
    for suffix in SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return None


def _file_stems(files) -> list[str]:
    """The names a case's own files go by (suffix removed), e.g. LiTS ``volume-3`` and ``segmentation-3``."""
    out = []
    for path in files:
        if path is None:
            continue
        name = Path(path).name
        stem = _stem(name) or name.split(".")[0]
        out.append(stem)
    return out


@dataclass(frozen=True)
class Matching:
    """Which prediction file of a folder belongs to which case.

    ``matched``: case id -> (file, rule); ``unmatched``: files tied to no case (with the reason);
    ``missing``: case ids without a file."""

    folder: Path
    matched: dict
    unmatched: dict
    missing: tuple[str, ...]

    def table(self) -> pd.DataFrame:
        """One row per file or case: ``status`` (matched, unmatched file, no prediction), ``case_id``, ``file``,
        ``rule``."""
        rows = [{"status": "matched", "case_id": c, "file": p.name, "rule": rule}
                for c, (p, rule) in sorted(self.matched.items())]
        rows += [{"status": "unmatched file", "case_id": "", "file": p.name, "rule": why}
                 for p, why in sorted(self.unmatched.items())]
        rows += [{"status": "no prediction", "case_id": c, "file": "", "rule": ""} for c in self.missing]
        return pd.DataFrame(rows, columns=["status", "case_id", "file", "rule"])


def read_mapping(path) -> dict[str, str]:
    """A mapping CSV with columns ``case_id,file`` (one row per case; ``file`` relative to the model folder)."""
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"mapping file {str(path)!r}: not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"mapping file {str(path)!r}: not a CSV ({err})") from None
    if list(table.columns[:2]) != ["case_id", "file"]:
        raise ValueError(f"mapping file {str(path)!r}: expected the columns 'case_id,file', got {list(table.columns)}")
    duplicated = sorted(set(table["case_id"][table["case_id"].duplicated()]))
    if duplicated:
        raise ValueError(f"mapping file {str(path)!r}: case ids listed twice: {duplicated[:5]}")
    return dict(zip(table["case_id"], table["file"]))


def match_predictions(cases, folder, *, mapping: dict[str, str] | None = None) -> Matching:
    """Tie the prediction files of ``folder`` to ``cases``.

    ``cases``: objects with ``case_id`` and, optionally, ``images`` and ``labels``
    (:class:`helpers.data.layouts.CaseFiles`) or ``source`` (:class:`helpers.data.layouts.Case`). A file is tied to a
    case by,
    in this order (:data:`MATCH_RULES`): the ``mapping`` (case id -> file name); its name being the case id; its
    name being the name of one of the case's own files (image or reference, e.g. LiTS ``segmentation-3``) when no
    other case has a file of that name; nnU-Net's ``<prefix>_<NNNN>`` when ``NNNN`` equals the trailing number of
    exactly one case id (``WMH_0012`` -> ``Utrecht_12``, ``LiTS_0003`` -> ``volume-3``) and all such files share
    one prefix. Every file is tied to at most one case and every case to at most one file: a second candidate is
    listed as unmatched, with the reason (the mapping naming a file twice is an error).
    """
    folder = Path(folder)
    cases = list(cases)
    ids = [str(c.case_id) for c in cases]
    ties = _Ties(folder, _prediction_names(folder))
    if mapping:
        _tie_by_mapping(ties, mapping, ids)
    by_stem = {_stem(n): n for n in ties.files if n not in ties.taken}
    for case_id in ids:
        if case_id not in ties.matched and case_id in by_stem:
            ties.tie(case_id, by_stem.pop(case_id), "case id")
    own = _own_stems(cases)
    for stem, owners in own.items():
        if len(owners) == 1 and owners[0] not in ties.matched and stem in by_stem:
            ties.tie(owners[0], by_stem.pop(stem), "reference name")
    by_number = _ids_by_trailing_number(ids)
    _tie_by_nnunet_number(ties, by_stem, by_number)
    unmatched = {ties.files[name]: _unmatched_reason(name, ties.matched, own, by_number) for name in by_stem.values()}
    missing = tuple(c for c in ids if c not in ties.matched)
    return Matching(folder, ties.matched, unmatched, missing)


def _prediction_names(folder: Path) -> dict[str, Path]:
    """The prediction files directly in ``folder`` by name (hidden files and unknown suffixes left out)."""
    files = {}
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.is_file() and not path.name.startswith(".") and _stem(path.name) is not None:
                files[path.name] = path
    return files


class _Ties:
    """The ties made so far: case id -> (file, rule), and the file names taken."""

    def __init__(self, folder: Path, files: dict[str, Path]):
        self.folder, self.files = folder, files
        self.matched: dict[str, tuple[Path, str]] = {}
        self.taken: set[str] = set()

    def tie(self, case_id: str, name: str, rule: str) -> None:
        if case_id in self.matched:
            raise ValueError(f"{self.folder}: several predictions for case {case_id!r}: "
                             f"{self.matched[case_id][0].name} ({self.matched[case_id][1]}) and {name} ({rule})")
        self.matched[case_id] = (self.files[name], rule)
        self.taken.add(name)


def _tie_by_mapping(ties: _Ties, mapping: dict[str, str], ids: list[str]) -> None:
    unknown = sorted(set(mapping) - set(ids))
    if unknown:
        raise ValueError(f"mapping: case ids not in the dataset: {unknown[:5]}")
    for case_id, name in mapping.items():
        if name not in ties.files:
            raise FileNotFoundError(f"mapping: file {name!r} for case {case_id!r} not found in {ties.folder}")
        ties.tie(case_id, name, "mapping")


def _own_stems(cases) -> dict[str, list[str]]:
    """Stem of each of the cases' own files (images, references, source) -> the case ids having it."""
    own: dict[str, list[str]] = {}
    for case in cases:
        names = [*getattr(case, "images", ()), *(getattr(case, "labels", {}) or {}).values()]
        if getattr(case, "source", None):
            names.append(case.source)
        for stem in set(_file_stems(names)):
            own.setdefault(stem, []).append(str(case.case_id))
    return own


def _ids_by_trailing_number(ids: list[str]) -> dict[int, list[str]]:
    by_number: dict[int, list[str]] = {}
    for case_id in ids:
        trailing = _TRAILING_NUMBER.search(case_id)
        if trailing:
            by_number.setdefault(int(trailing.group(1)), []).append(case_id)
    return by_number


def _tie_by_nnunet_number(ties: _Ties, by_stem: dict[str, str], by_number: dict[int, list[str]]) -> None:
    """nnU-Net's ``<prefix>_<NNNN>``, used only when all such files share one prefix."""
    numbered = {stem: _NNUNET.match(stem) for stem in by_stem}
    numbered = {stem: m for stem, m in numbered.items() if m}
    if numbered and len({m["prefix"] for m in numbered.values()}) == 1:
        for stem, m in sorted(numbered.items()):
            owners = by_number.get(int(m["number"]), [])
            if len(owners) == 1 and owners[0] not in ties.matched:
                ties.tie(owners[0], by_stem.pop(stem), "nnU-Net number")


def _unmatched_reason(name: str, matched: dict, own: dict, by_number: dict) -> str:
    """Why the file ``name`` is tied to no case."""
    stem = _stem(name)
    m = _NNUNET.match(stem)
    owners = by_number.get(int(m["number"]), []) if m else []
    claimed = [c for c in ([stem] + own.get(stem, [])[:1] + owners[:1]) if c in matched]
    if claimed:
        return f"case {claimed[0]!r} has {matched[claimed[0]][0].name} already"
    if len(owners) > 1:
        return f"number {int(m['number'])} ends several case ids: {owners[:3]}"
    if owners and owners[0] in matched:
        return f"case {owners[0]!r} has {matched[owners[0]][0].name} already"
    if owners:
        return "nnU-Net-style names with different prefixes in one folder: numbers not used"
    return "no case of this name or number"

__all__ = [
    "Matching", "MATCH_RULES", "match_predictions", "read_mapping", "postprocess", "prediction_path",
    "write_prediction", "list_models", "list_cases", "read_prediction", "prediction_file", "read_prediction_file",
    "read_probabilities",
]
