"""Finding and reading the datasets through the registry, and the data section of the study.

The layouts themselves (case types, loader options, one finder and reader per dataset) are in
:mod:`helpers.data.layouts`, each dataset's facts in its registry entry (:mod:`helpers.data.datasets`); this module is
the generic front: :func:`find_cases` lists the files of each case (cheap, validates the tree; looks one folder deeper
when the dataset was unpacked into a folder of its own), :func:`read_case` reads one case, :func:`load_cases`
does both for every case and :func:`load_split_cases` for the cases of one split only, so that a large dataset is
never held in memory at once. Loader options are a :class:`helpers.data.layouts.LoaderOptions` of the dataset
(:func:`helpers.data.datasets.loader_options` builds one from a profile's mapping).

Empty-mask policy: a case whose target is empty is valid and kept; :func:`describe_cases` lists it so that a user
can tell a legitimate empty case from a misread folder.

The data section (:func:`prepare_dataset`) generates a stand-in (if synthetic), finds, splits, reads, enumerates
lesions, prepares and records; :func:`check_dataset` re-derives its checkpoints from the files on disk.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from skimage.segmentation import find_boundaries

from helpers.data import datasets
from helpers.base import io
from helpers.data import preprocessing as prep
from helpers.data import splits as splits_mod
from helpers.data.layouts import Case, CaseFiles, LoaderOptions, check_root, is_nothing_found
from helpers.metrics.lesions import label_lesions, lesion_table
from helpers.metrics.lesions import quartile_edges as lesion_quartile_edges
from helpers.base.paths import Workspace, resolve
from helpers.base.plots import get_axes, pyplot
from helpers.base.progress import progress_bar

__all__ = [
    "find_cases", "dataset_folder", "read_case", "load_cases", "manifest_root", "load_split_cases",
    "describe_cases", "DatasetSummary", "q1_upper_bound", "summary_table", "quartile_edges", "prepare_dataset",
    "load_summary", "check_dataset", "plot_lesion_sizes", "plot_examples", "plot_small_lesions",
]

# ----------------------------------------------------------------------------------------------- finding, reading


def find_cases(dataset: str, root, options: LoaderOptions | None = None) -> list[CaseFiles]:
    """List the cases of ``dataset`` under ``root`` without reading images (validates the tree).

    Parameters
    ----------
    dataset : {"wmh", "lits", "idrid"}
        A name of the registry (:data:`helpers.data.datasets.DATASETS`).
    root : path
        The user's copy of the dataset (its top folder, as unpacked) or a synthetic stand-in.
    options : helpers.data.layouts.LoaderOptions, optional
        The dataset's loader options (:func:`helpers.data.datasets.loader_options`); ``None``: the defaults.

    Returns
    -------
    list of CaseFiles
        Sorted by subset then case id as found; case ids are unique.
    """
    spec = datasets.get(dataset)
    options = spec.loader_options(options)
    root = check_root(root)
    found = _find_here_or_one_deeper(spec, root, options)
    seen = {}
    for f in found:
        if f.case_id in seen:
            raise ValueError(f"case id {f.case_id!r} appears twice: {str(seen[f.case_id])!r} and {f.first_file}")
        seen[f.case_id] = f.first_file
    return found


def _find(spec: datasets.Dataset, root: Path, options: LoaderOptions) -> list[CaseFiles]:
    found = spec.find(root, options)
    for files in found:
        files.meta["dataset_folder"] = str(root.resolve())
    return found


def _find_here_or_one_deeper(spec: datasets.Dataset, root: Path, options: LoaderOptions) -> list[CaseFiles]:
    """The cases under ``root``, or, when none are found there, under the one sub-folder of ``root`` that holds
    the dataset (an archive unpacked into a folder of its own name, IDRiD's doubled ``A. Segmentation``); the
    folder used is recorded in each case's ``meta["dataset_folder"]`` (:func:`dataset_folder`). When nothing is
    found either way, the error adds the first levels of what ``root`` holds."""
    try:
        return _find(spec, root, options)
    except (FileNotFoundError, ValueError) as err:
        if not is_nothing_found(err):
            raise
        first = err
    hits = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            hits.append(_find(spec, sub, options))
        except (FileNotFoundError, ValueError) as err:
            if not is_nothing_found(err):
                raise  # the dataset is there, but broken: say what is wrong with it
            continue
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        folders = [h[0].meta["dataset_folder"] for h in hits]
        raise ValueError(f"root {str(root)!r}: no {spec.name} dataset at its top, but one in each of {folders}; "
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
    return datasets.get(files.dataset).read(files)


def load_cases(dataset: str, root, options: LoaderOptions | None = None, *, case_ids=None,
               progress: bool = False) -> list[Case]:
    """Load the cases of ``dataset`` under ``root`` (see :func:`find_cases` for ``options``): every case, or
    only those of ``case_ids``, in that order (error naming the ids not found).

    The cases returned are held in memory; for the full LiTS or IDRiD at native resolution prefer
    :func:`find_cases` and :func:`read_case` one case at a time (as :func:`prepare_dataset` does).
    """
    found = find_cases(dataset, root, options)
    if case_ids is not None:
        by_id = {f.case_id: f for f in found}
        wanted = [str(c) for c in case_ids]
        absent = [c for c in wanted if c not in by_id]
        if absent:
            raise ValueError(f"{root}: cases not found in the {dataset} data: {absent[:5]}")
        found = [by_id[c] for c in wanted]
    return [read_case(f) for f in progress_bar(found, progress=progress, desc=f"load {dataset}")]


def manifest_root(ws, dataset: str) -> tuple[Path, LoaderOptions]:
    """Where the data section read ``dataset`` from and with which loader options, from
    ``results/<dataset>/data_manifest.json`` (``"source"``: ``"synthetic"`` means ``ws.data(dataset)``, else the
    real data root)."""
    ws, spec = Workspace.at(ws), datasets.get(dataset)
    manifest_path = ws.results(spec.name) / "data_manifest.json"
    manifest = io.read_json(manifest_path)
    source = manifest.get("source")
    if not source:
        raise ValueError(f"{manifest_path}: no 'source' entry")
    root = ws.data(spec.name) if source == "synthetic" else Path(manifest.get("root") or source)
    return root, spec.loader_options((manifest.get("options") or {}).get("loader"))


def load_split_cases(ws, dataset: str, *, split: str = "test") -> list[Case]:
    """The cases of one ``split`` of a dataset, read from where the data section put them (only those cases
    are read): the data root and loader options from ``results/<dataset>/data_manifest.json``
    (:func:`manifest_root`), the case ids from ``results/<dataset>/splits.json``, in that order."""
    ws = Workspace.at(ws)
    root, options = manifest_root(ws, dataset)
    return load_cases(dataset, root, options, case_ids=list(splits_mod.load_splits(ws, dataset).ids(split)))


def _case_facts(case: Case, n_lesions: int) -> dict:
    """The few facts about one case that the dataset report needs (no arrays, so a report over a large dataset
    does not hold its masks)."""
    return {"case_id": case.case_id, "subset": case.subset, "n_lesions": int(n_lesions),
            "has_ignore": case.ignore is not None and bool(case.ignore.any()),
            "lesions_per_type": dict(case.meta.get("lesions_per_type", {})),
            "absent": list(case.meta.get("lesion_types_absent", []))}


def _report(spec: datasets.Dataset, facts: list[dict]) -> dict:
    subsets: dict[str, int] = {}
    for f in facts:
        key = f["subset"] or "none"
        subsets[key] = subsets.get(key, 0) + 1
    report: dict = {"dataset": spec.name, "n_cases": len(facts), "cases_per_subset": subsets,
                    "n_lesions": sum(f["n_lesions"] for f in facts),
                    "cases_without_target": [f["case_id"] for f in facts if f["n_lesions"] == 0]}
    if spec.ignore_region:
        report["cases_with_ignore_region"] = [f["case_id"] for f in facts if f["has_ignore"]]
    if spec.lesion_types:
        report["lesions_per_type"], report["absent_masks_per_type"] = _per_type(facts)
    report.update(spec.target_notes)
    return report


def _per_type(facts: list[dict]) -> tuple[dict, dict]:
    """Lesions per lesion type and cases without a mask of that type, summed over ``facts``."""
    per_type: dict[str, int] = {}
    absent: dict[str, int] = {}
    for f in facts:
        for t, c in f["lesions_per_type"].items():
            per_type[t] = per_type.get(t, 0) + c
        for t in f["absent"]:
            absent[t] = absent.get(t, 0) + 1
    return per_type, absent


def describe_cases(dataset: str, cases, *, connectivity: int | None = None) -> dict:
    """What a loaded dataset was found to contain, for the user to check at once that the folder was read as
    intended: number of cases per official subset, lesions (connected components of the target, full
    connectivity by default), cases without any target voxel (e.g. LiTS volumes without tumour), cases with an
    ignore region (WMH label 2), and for IDRiD the lesions per type (full connectivity, counted per type mask,
    so touching lesions of two types count twice here but once in the target) and the absent mask files with
    what they were taken to mean."""
    facts = [_case_facts(c, label_lesions(c.mask, connectivity=connectivity)[1]) for c in cases]
    return _report(datasets.get(dataset), facts)


# ----------------------------------------------------------------------------------------------- the section

@dataclass(frozen=True)
class DatasetSummary:
    """What :func:`prepare_dataset` produced: the tables it wrote and the report of what it found."""

    dataset: str
    manifest: dict
    cases: pd.DataFrame
    lesions: pd.DataFrame
    splits: splits_mod.Splits
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
    spec = datasets.get(dataset)
    test = lesions[lesions["split"] == "test"]
    return pd.DataFrame([{
        "dataset": spec.title, "modality": spec.modality,
        "test_cases": int((cases["split"] == "test").sum()), "test_lesions": int(len(test)),
        "q1_upper_bound": q1_upper_bound(test["area_fraction"]),
        "q1_upper_bound_percent": 100 * q1_upper_bound(test["area_fraction"]),
        "all_cases": int(len(cases)), "all_lesions": int(len(lesions)),
    }])


def quartile_edges(lesions: pd.DataFrame) -> pd.DataFrame:
    """Lesion-size quartile edges per split and over all lesions: ``split, n_lesions`` and the minimum, the
    quartile edges of :func:`helpers.metrics.lesions.quartile_edges` (25th, 50th, 75th percentile) and the maximum of
    the area fraction, in percent of the image (axial slice) area."""
    rows = []
    groups = [(name, lesions[lesions["split"] == name]) for name in ("train", "val", "test")] + [("all", lesions)]
    for name, group in groups:
        values = np.asarray(group["area_fraction"], dtype=float)
        edges = (100 * np.array([values.min(), *lesion_quartile_edges(values), values.max()]) if values.size
                 else [np.nan] * 5)  # the inner edges are helpers.metrics.lesions.quartile_edges, in percent
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
    loader: LoaderOptions | None = None,
    preprocessing: dict | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.3,
    connectivity: int | None = None,
    progress: bool = True,
) -> DatasetSummary:
    """The data section: generate (if synthetic), find, split, read, enumerate lesions, prepare and record.

    Writes, atomically (:mod:`helpers.base.io`), below the workspace ``ws``:
    ``data/<dataset>/`` (the synthetic stand-in, regenerated from scratch),
    ``prepared/<dataset>/<case_id>.npz``, and in ``results/<dataset>/``: ``data_manifest.json``,
    ``splits.json``, ``cases.csv``, ``lesions.csv``, ``preprocessing.json``, ``data_report.json``.

    Parameters
    ----------
    ws : helpers.base.paths.Workspace or path
    dataset : {"wmh", "lits", "idrid"}
    data_root : path or "synthetic"
        The user's copy of the dataset (a relative path is relative to the project root), or ``"synthetic"``
        to write and use a stand-in in ``ws.data(dataset)`` (regenerated from scratch on every call).
    seed : int
        Seeds the generator (if synthetic) and the split.
    synthetic : dict, optional
        Keyword arguments of the dataset's generator (:mod:`helpers.data.synthetic`), e.g. sizes set by the profile.
    loader : helpers.data.layouts.LoaderOptions, optional
        The dataset's loader options (:func:`helpers.data.datasets.loader_options`); ``None``: the defaults.
    preprocessing : dict, optional
        Keyword arguments of :func:`helpers.data.preprocessing.prepare_case` (e.g. ``size``).
    val_fraction, test_fraction : float
        See :func:`helpers.data.splits.make_splits`.
    connectivity : int, optional
        Lesion connectivity (``None``: full, 8 in 2D and 26 in 3D).
    progress : bool
        Show a progress bar.
    """
    spec = datasets.get(dataset)
    ws = Workspace.at(ws)
    loader = spec.loader_options(loader)
    prep_options = dict(preprocessing or {})
    root, generator = _dataset_root(ws, spec, data_root, seed=seed, synthetic=synthetic)
    found = find_cases(dataset, root, loader)
    splits = splits_mod.make_splits(found, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
    _clear_prepared(ws, dataset)
    prepared = _prepare_cases(ws, spec, found, splits.split_of(), root=root, prep_options=prep_options,
                              connectivity=connectivity, progress=progress)
    manifest = {
        "dataset": dataset, "source": "synthetic" if generator is not None else str(Path(root).resolve()),
        "synthetic": generator is not None, "generator": generator, "n_cases": len(found),
        "options": {"loader": loader.as_dict(), "preprocessing": prep_options, "val_fraction": val_fraction,
                    "test_fraction": test_fraction, "connectivity": connectivity, "seed": int(seed)},
        "root": str(Path(root).resolve()),
        "dataset_folder": str(dataset_folder(found, root)),  # root itself or the sub-folder the dataset is in
    }
    summary = DatasetSummary(dataset, manifest, prepared.cases, prepared.lesions, splits,
                             _report(spec, prepared.facts))
    _write_section(ws, summary, prepared.record)
    return summary


def _dataset_root(ws: Workspace, spec: datasets.Dataset, data_root, *, seed: int, synthetic: dict | None):
    """The folder to read and the generator's parameters: a fresh stand-in in ``ws.data(dataset)`` for
    ``"synthetic"`` (generator parameters recorded), else the user's folder (generator ``None``)."""
    if isinstance(data_root, str) and data_root == "synthetic":
        root = ws.data(spec.name)
        if root.exists():
            shutil.rmtree(root)
        return root, spec.generate(root, seed=seed, **(synthetic or {}))
    # a relative path is taken relative to the project root, as every path of the study
    return check_root(resolve(data_root) if isinstance(data_root, (str, Path)) else data_root), None


def _clear_prepared(ws: Workspace, dataset: str) -> None:
    prepared_dir = ws.prepared(dataset)
    if prepared_dir.exists():
        for stale in prepared_dir.glob("*.npz"):
            stale.unlink()


@dataclass(frozen=True)
class _Prepared:
    cases: pd.DataFrame
    lesions: pd.DataFrame
    facts: list
    record: dict | None


def _prepare_cases(ws: Workspace, spec: datasets.Dataset, found: list[CaseFiles], split_of: dict, *, root,
                   prep_options: dict, connectivity, progress: bool) -> _Prepared:
    """Read, enumerate the lesions of, prepare and save every case, one at a time."""
    rows, tables, facts = [], [], []
    record, user = None, spec.data_source == "user"
    for files in progress_bar(found, progress=progress, desc=f"prepare {spec.name}"):
        case = datasets.read_case_files(files, image=False)
        split = split_of[case.case_id]
        table = lesion_table(case.mask, spacing=case.spacing, connectivity=connectivity)
        table.insert(0, "case_id", case.case_id)
        table.insert(0, "split", split)
        table.insert(0, "dataset", spec.name)
        tables.append(table)
        record, prepared_shape = {"dataset": spec.name, "prepared": "none: evaluated only"}, ()
        if not user:  # nothing is trained on a user dataset (evaluated only), so nothing is prepared for it
            prepared = prep.prepare_case(case, spec.recipe, **prep_options)
            prep.save_prepared(ws, spec.name, prepared)
            record, prepared_shape = prepared.record, prepared.image.shape
        rows.append(_case_row(spec.name, case, split, root=root, n_lesions=len(table), prepared_shape=prepared_shape))
        facts.append(_case_facts(case, len(table)))
    lesions = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    return _Prepared(pd.DataFrame(rows), lesions, facts, record)


def _case_row(dataset: str, case: Case, split: str, *, root, n_lesions: int, prepared_shape) -> dict:
    """The case's row of ``cases.csv``."""
    return {
        "dataset": dataset, "case_id": case.case_id, "split": split, "subset": case.subset,
        "site": case.meta.get("site"), "source": _relative_to(case.source, root),
        "shape": "x".join(str(s) for s in case.spatial_shape),
        "spacing": "x".join(f"{s:.4g}" for s in case.spacing),
        "n_lesions": int(n_lesions), "target_voxels": int(case.mask.sum()),
        "ignore_voxels": int(case.ignore.sum()) if case.ignore is not None else 0,
        "prepared_shape": "x".join(str(s) for s in prepared_shape),
    }


def _write_section(ws: Workspace, summary: DatasetSummary, record: dict | None) -> None:
    results = ws.results(summary.dataset)
    splits_mod.save_splits(ws, summary.dataset, summary.splits)
    io.write_csv(summary.cases, results / "cases.csv")
    io.write_csv(summary.lesions, results / "lesions.csv")
    io.write_json(record, results / "preprocessing.json")
    io.write_json(summary.report, results / "data_report.json")
    io.write_json(summary.manifest, results / "data_manifest.json")


def _relative_to(path, root) -> str:
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return str(path)


def load_summary(ws, dataset: str) -> DatasetSummary:
    """Read back what :func:`prepare_dataset` wrote (error naming the missing file if it has not run)."""
    dataset = datasets.get(dataset).name
    ws = Workspace.at(ws)
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
    summary = load_summary(ws, dataset)
    options = summary.manifest["options"]
    if connectivity is None:
        connectivity = options.get("connectivity")
    loader = datasets.get(summary.dataset).loader_options(options["loader"])
    found = {f.case_id: f for f in find_cases(summary.dataset, summary.manifest["root"], loader)}
    missing, mismatched, checked = _recount(summary, found, connectivity)
    test_ids = set(summary.splits.test)
    test_missing = sorted(test_ids & set(missing))
    return pd.DataFrame([
        {"check": "every test case has a valid mask", "passed": not test_missing and bool(test_ids),
         "detail": f"{len(test_ids)} test cases re-read" if not test_missing else f"missing: {test_missing}"},
        {"check": "lesion counts reproduce from the saved masks", "passed": not mismatched and not missing,
         "detail": f"{checked} cases re-counted" if not mismatched else "; ".join(mismatched[:5])},
        {"check": "summary table has case and lesion counts",
         "passed": bool(len(summary.cases)) and "n_lesions" in summary.cases,
         "detail": f"{len(summary.cases)} cases, {int(summary.cases['n_lesions'].sum())} lesions"},
    ])


def _recount(summary: DatasetSummary, found: dict, connectivity) -> tuple[list, list, int]:
    """Re-read every case of ``cases.csv`` and re-count its lesions: (missing ids, mismatch notes, n checked)."""
    counts_per_case = summary.lesions.groupby("case_id").size() if len(summary.lesions) else pd.Series(dtype=int)
    missing, mismatched, checked = [], [], 0
    for _, row in summary.cases.iterrows():
        case_id = row["case_id"]
        if case_id not in found:
            missing.append(case_id)
            continue
        n = label_lesions(datasets.read_case_files(found[case_id], image=False).mask, connectivity=connectivity)[1]
        checked += 1
        if n != int(row["n_lesions"]) or n != int(counts_per_case.get(case_id, 0)):
            mismatched.append(f"{case_id}: {n} re-counted, {int(row['n_lesions'])} in cases.csv, "
                              f"{int(counts_per_case.get(case_id, 0))} in lesions.csv")
    return missing, mismatched, checked


# ----------------------------------------------------------------------------------------------- figures

def plot_lesion_sizes(lesions: pd.DataFrame, *, ax=None, split: str | None = "test"):
    """Histogram of lesion area fractions on a log axis, with the quartile edges (25th, 50th, 75th
    percentiles) as vertical lines and the paper's 1.5 % reference. Returns the axes."""
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


def _prepared_for_picture(ws, dataset: str, case_id: str):  # a user dataset's are prepared for the picture only
    if not datasets.is_user_dataset(dataset):
        return prep.load_prepared(ws, dataset, case_id)
    files = next(f for f in find_cases(dataset, *manifest_root(ws, dataset)) if f.case_id == str(case_id))
    return prep.prepare_case(read_case(files), datasets.get(dataset).recipe)


def plot_examples(ws, dataset: str, case_ids, *, axes=None):
    """Example images (prepared, first channel) with the lesion outlines in red; for volumes the axial slice
    with the most lesion pixels. One axes per case; returns the axes."""
    plt = pyplot()  # matplotlib with the package style (helpers.base.plots)
    from matplotlib.colors import ListedColormap

    case_ids = list(case_ids)
    if axes is None:
        _, axes = plt.subplots(1, len(case_ids), figsize=(3.0 * len(case_ids), 3.0), squeeze=False)
        axes = axes[0]
    for ax, case_id in zip(axes, case_ids):
        prepared = _prepared_for_picture(ws, dataset, case_id)
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
    plt = pyplot()  # matplotlib with the package style (helpers.base.plots)
    from matplotlib.colors import ListedColormap

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    test = summary.lesions[summary.lesions["split"] == "test"]
    if test.empty:
        raise ValueError(f"{summary.dataset}: no test lesion to show")
    q1 = test[test["area_fraction"] <= q1_upper_bound(test["area_fraction"])].sort_values(
        ["area_fraction", "case_id", "lesion_id"], kind="mergesort")
    picks = q1.iloc[np.unique(np.linspace(0, len(q1) - 1, min(n, len(q1))).round().astype(int))]
    options = datasets.get(summary.dataset).loader_options((summary.manifest.get("options") or {}).get("loader"))
    files = {f.case_id: f for f in find_cases(summary.dataset, summary.manifest["root"], options)}
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
