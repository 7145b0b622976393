"""The ``evaluate`` command's user datasets: a plain folder of masks (``--labels``) or an nnU-Net raw dataset
(``--nnunet``) turned into registry entries, one per chosen label (:func:`user_scopes`), the spacing range printed,
and each prediction's grid checked against its reference's (:func:`check_grids`): a prediction whose shape,
spacing, origin or direction differs stops the command with both files named and both grids printed, or, with
``--resample-predictions``, is resampled by nearest neighbour onto the reference's grid (:func:`write_resampled`)
and listed as such."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import nibabel as nib
import numpy as np

from helpers.base.io import atomic_write
from helpers.data import datasets as _datasets
from helpers.data import find_cases
from helpers.data import generic as _generic
from helpers.data.layouts import to_nifti_array
from helpers.runner.errors import StudyError

__all__ = ["UserScope", "user_scopes", "spacing_range", "check_grids", "write_resampled", "find_scope_cases"]


@dataclass(frozen=True)
class UserScope:
    """One evaluated label of a user dataset: its dataset (registry) name, label name and loader options."""

    name: str
    label_name: str
    options: _generic.UserOptions
    spatial_dims: int

    def entry(self) -> dict:
        """The :func:`helpers.data.datasets.register_user` arguments recorded in the workspace."""
        return {"spatial_dims": self.spatial_dims, "display": self.name,
                "caption": f"{self.name}: label {self.label_name!r} of a user's dataset (evaluated only)",
                "ignore_region": self.options.ignore_label is not None}


def _dataset_name(root: Path, given: str | None) -> str:
    if given:
        return _generic.slug(given)
    return _generic.slug(re.sub(r"^Dataset\d+_", "", root.name))


def _chosen_labels(requested: list[str] | None, names: dict[str, tuple[int, ...]], where: str
                   ) -> list[tuple[str, tuple[int, ...]]]:
    """``--label`` values (numbers, names of ``names``, or ``all``) as (label name, values)."""
    requested = requested or ["all"]
    out = []
    for item in requested:
        if item == "all":
            out += [(n, v) for n, v in names.items()]
        elif item in names:
            out.append((item, names[item]))
        elif item.isdigit():
            value = int(item)
            named = [n for n, v in names.items() if v == (value,)]
            out.append((named[0] if named else f"label{value}", (value,)))
        else:
            raise StudyError(f"--label {item!r}: not a label of {where}; its labels: "
                             f"{', '.join(f'{n}={list(v)}' for n, v in names.items()) or 'none'}")
    seen, unique = set(), []
    for name, values in out:
        if name not in seen:
            seen.add(name)
            unique.append((name, values))
    if not unique:
        raise StudyError(f"{where}: no foreground label to evaluate")
    return unique


def user_scopes(args, out) -> tuple[Path, list[UserScope]]:
    """The user dataset's folder and one :class:`UserScope` per chosen label (named ``<name>`` for one label,
    ``<name>-<label>`` for several), registered in the dataset registry."""
    layout = "nnunet" if args.nnunet else "labels"
    root = Path(args.nnunet or args.labels).expanduser().resolve()
    if not root.is_dir():
        raise StudyError(f"--{layout} {root}: folder not found")
    name = _dataset_name(root, args.name)
    spacing = tuple(args.spacing) if args.spacing else None
    try:
        if layout == "nnunet":
            names, ignore, _ = _generic.nnunet_labels(root)
            where = f"{root / 'dataset.json'}"
        else:
            base = _generic.UserOptions(layout="labels", spacing=spacing)
            probe = _generic.find_user(root, base)
            want_all = not args.label or "all" in args.label
            present = _generic.labels_present(probe, spacing=spacing) if want_all else ()
            names = {f"label{v}": (v,) for v in present}
            ignore, where = None, f"the masks of {root}"
    except (FileNotFoundError, ValueError) as err:
        raise StudyError(f"--{layout}: {err}") from None
    if args.ignore_label is not None:
        ignore = _ignore_value(args.ignore_label, names if layout == "nnunet" else {}, where)
    if ignore is not None:
        names = {n: v for n, v in names.items() if v != (ignore,)}
    chosen = _chosen_labels(args.label, names, where)
    scopes = []
    for label_name, values in chosen:
        scope = name if len(chosen) == 1 else f"{name}-{_generic.slug(label_name)}"
        try:
            options = _generic.UserOptions(layout=layout, label=values, label_name=label_name, ignore_label=ignore,
                                           split=args.nnunet_split, spacing=spacing)
        except ValueError as err:
            raise StudyError(f"--label {label_name}: {err}") from None
        scopes.append(UserScope(scope, label_name, options, 0))
    first = _generic.find_user(root, scopes[0].options)[0]
    dims = len(_generic.read_geometry(first.labels["reference"], spacing=spacing).shape)
    scopes = [UserScope(s.name, s.label_name, s.options, dims) for s in scopes]
    for s in scopes:
        _datasets.register_user(s.name, **s.entry())
    ignored = f"; ignore label {ignore} (neither truth nor false positive)" if ignore is not None else ""
    print(f"user dataset {name!r} ({layout} layout, {root}): labels evaluated "
          f"{', '.join(f'{s.label_name}={list(s.options.label)} as {s.name!r}' for s in scopes)}{ignored}",
          file=out, flush=True)
    return root, scopes


def _ignore_value(text: str, names: dict, where: str) -> int:
    if str(text).isdigit():
        return int(text)
    if text in names and len(names[text]) == 1:
        return names[text][0]
    raise StudyError(f"--ignore-label {text!r}: not a label number or name of {where}")


def spacing_range(found: list, spacing=None) -> tuple[list, str]:
    """The grid of each case's reference (file headers only) and the line stating the dataset's spacing range."""
    grids = [_generic.read_geometry(f.labels["reference"], spacing=spacing) for f in found]
    arr = np.array([g.spacing for g in grids], dtype=float)
    unit = "mm" if (spacing is not None or arr.shape[1] == 3) else "pixel units (no --spacing given)"
    parts = [f"{lo:.4g}-{hi:.4g}" if hi > lo else f"{lo:.4g}" for lo, hi in zip(arr.min(0), arr.max(0))]
    return grids, f"spacing range over {len(grids)} cases (per axis, {'z, y, x' if arr.shape[1] == 3 else 'y, x'}): " \
                  f"{' x '.join(parts)} {unit}"


def check_grids(staged: dict, found: list, grids: list, *, resample: bool, spacing=None, out=None) -> dict:
    """Compare each staged prediction's grid with its reference's. Returns ``{model: {case_id: (ref grid, pred
    grid)}}`` of the predictions to resample (``resample`` True); any mismatch without it is a StudyError naming
    both files and printing both grids (all mismatches, up to 10)."""
    by_id = {f.case_id: (f, g) for f, g in zip(found, grids)}
    problems, to_resample = [], {}
    for model, files in staged.items():
        for case_id, path in files.items():
            if path is None:
                continue
            ref_files, ref_grid = by_id[case_id]
            try:
                pred_grid = _generic.read_geometry(path, spacing=spacing)
            except (FileNotFoundError, ValueError) as err:
                raise StudyError(str(err)) from None
            diffs = _generic.grid_differences(ref_grid, pred_grid)
            if not diffs:
                continue
            if resample:
                to_resample.setdefault(model, {})[case_id] = (ref_grid, pred_grid)
                continue
            problems.append(f"prediction {path} and reference {ref_files.labels['reference']}: "
                            f"{', '.join(diffs)} differ\n    prediction: {pred_grid.describe()}\n"
                            f"    reference:  {ref_grid.describe()}")
    if problems:
        raise StudyError(f"{len(problems)} prediction(s) not on their reference's grid (resample them by nearest "
                         "neighbour with --resample-predictions):\n  " + "\n  ".join(problems[:10]))
    for model, cases in to_resample.items():
        for case_id, (_, pred_grid) in cases.items():
            print(f"  resampled      {model}/{case_id}: nearest neighbour onto the reference's grid (prediction "
                  f"was {pred_grid.describe()})", file=out, flush=True)
    return to_resample


def write_resampled(source: Path, target: Path, ref_grid, pred_grid, spacing=None) -> Path:
    """Resample the label map of ``source`` by nearest neighbour onto ``ref_grid`` and write it to ``target``
    (NIfTI with the reference's affine for 3D, PNG for 2D)."""
    data, _ = _generic.read_mask_file(source, spacing=spacing)
    out = _generic.resample_nearest(data, pred_grid, ref_grid).astype(np.uint8)
    if out.ndim == 3:
        img = nib.Nifti1Image(to_nifti_array(out), ref_grid.affine)
        img.header.set_data_dtype(np.uint8)
        return atomic_write(target, lambda p: nib.save(img, str(p)), suffix=".nii.gz")
    return atomic_write(target, lambda p: iio.imwrite(p, out, extension=".png"), suffix=".png")


def find_scope_cases(scope: UserScope, root: Path) -> list:
    """The cases of one scope, found through the registry."""
    try:
        return find_cases(scope.name, root, scope.options)
    except (FileNotFoundError, ValueError) as err:
        raise StudyError(f"{root}: {err}") from None

