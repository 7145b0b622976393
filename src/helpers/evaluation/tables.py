"""Evaluate a predictions folder: tidy per-case and per-lesion metric tables (the bring-your-own entry point).

Conventions
-----------
- Arrays are ``(z, y, x)`` for volumes and ``(y, x)`` for 2D images; spacing in mm per axis (the case's own),
  so distances (HD95, ASSD) and tolerances are in mm on the *original* grid of the case.
- Reference: ``Case.mask`` from :func:`helpers.data.load_split_cases`; prediction:
  :func:`helpers.data.predictions.read_prediction` (validated against the case's shape). ``Case.ignore`` (e.g. WMH
  label 2) is passed to every metric, which removes its voxels from both masks.
- Image-level metrics: :func:`helpers.metrics.evaluate_case`; lesion-level:
  :func:`helpers.metrics.lesions.evaluate_lesions`. Their definitions and the empty-mask policy (no NaN: penalties,
  flagged) are those modules'. Metric names, directions and the tables that carry each metric are the registry's
  (:data:`helpers.metrics.METRICS`): ``contour_f1`` at ``tolerance``, ``contour_f1_tol<t>`` / ``nsd_tol<t>`` at
  the extra tolerances (:func:`helpers.metrics.tolerance_name`); ``hd95`` is the directed-max HD95 (primary) and
  ``hd95_pooled`` the pooled variant (sensitivity analysis).
- Tolerances (contour F1, NSD) are given in voxels of *each case's own* in-plane grid (:func:`case_voxel_mm`:
  the larger of the case's two in-plane spacings) and stated in mm per case: by default one voxel
  (``tolerance=None``), with 1, 2 and 3 voxels as the sensitivity analysis (``tolerances=None``: metrics
  ``contour_f1_tol<k>vox`` / ``nsd_tol<k>vox``, :func:`helpers.metrics.voxel_tolerance_name`). On a dataset of
  mixed grids (real WMH: 0.958, 1.0 and 0.98 mm at three sites) one tolerance in mm would be below one voxel for
  part of the cases, where only exact voxel matches count, so a one-voxel shift would score differently by site.
  Numbers given for ``tolerance`` / ``tolerances`` are mm, the same for every case (named ``_tol<mm>``).
- Lesion size quartiles: edges from the test set's reference lesions (model-independent), see
  :func:`helpers.metrics.lesions.quartile_edges`; false-positive components get a quartile by their own area fraction.

Tables (long format)
--------------------
``per_case_metrics.csv``
    ``dataset, model, case_id, metric, value, penalty, n_ref_lesions, ref_empty, pred_empty, reason``: one row
    per case, model and metric. Metrics: ``dice, iou, hd95, hd95_pooled, assd, masd, nsd, contour_f1``,
    ``contour_f1_tol<t>`` / ``nsd_tol<t>``, ``fp_lesions`` (false-positive components), ``lesion_recall``
    (detected / reference lesions of the case; NaN with reason ``"no reference lesion"`` when there is none).
``per_lesion_metrics.csv``
    ``dataset, model, case_id, lesion_id, kind, detected, n_voxels, area_fraction, overlap_voxels`` (lesion
    voxels predicted: detection at any matching threshold can be re-derived from it), ``quartile, metric,
    value, penalty`` plus the lesion's ``bbox_min_<axis>``/``bbox_max_<axis>``. ``kind == "lesion"``: a reference
    lesion, metrics ``detected`` (1/0), ``dice, iou, hd95, hd95_pooled, assd, masd, nsd, contour_f1``;
    ``penalty`` is True only on the distance rows of a missed lesion (:func:`lesion_rows`); ``kind ==
    "false_positive"``: a predicted component overlapping no lesion, one row with metric ``false_positive``
    and value 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from helpers import data as _data
from helpers.metrics import lesions as _lesions
from helpers import metrics as _metrics
from helpers.data import generic as _generic
from helpers.data import predictions as _predictions
from helpers.data import splits as _splits
from helpers.base.io import read_json, write_csv, write_json
from helpers.metrics.challenge import challenge_metric_names, challenge_values
from helpers.metrics.lesions import FALSE_POSITIVE, REFERENCE, assign_quartiles, quartile_edges
from helpers.metrics import metric, metric_names, split_tolerance_name, tolerance_name, voxel_tolerance_name
from helpers.base.paths import Workspace
from helpers.base.progress import progress_bar
from helpers.evaluation.cache import CaseCache, case_key, file_digest, reference_digest

__all__ = [
    "PER_CASE_FILE", "PER_LESION_FILE", "EDGES_FILE", "TOLERANCE_VOXELS", "in_plane_voxel_mm", "resolve_tolerances",
    "case_voxel_mm", "case_tolerances",
    "tolerance_metrics", "evaluate_case_tables", "lesion_rows", "evaluate_one", "evaluate_cases",
    "reference_quartile_edges", "inference_record", "UserCases", "evaluate_predictions", "SEEDS_FOLDER",
    "extra_seed_roots", "read_tables", "example_crops",
]

PER_CASE_FILE = "per_case_metrics.csv"
PER_LESION_FILE = "per_lesion_metrics.csv"
EDGES_FILE = "quartile_edges.json"


#: Sensitivity tolerances, in in-plane voxels of the dataset's grid.
TOLERANCE_VOXELS = (1, 2, 3)


def case_voxel_mm(case) -> float:
    """One in-plane voxel of ``case``'s own grid, in mm: the larger of its two in-plane spacings (the last two
    axes; ``spacing`` None counts as 1)."""
    spacing = getattr(case, "spacing", None)
    return 1.0 if spacing is None else float(max(spacing[-2:]))


def case_tolerances(case, tolerance: float | None, tolerances: Sequence[float] | None
                    ) -> tuple[float, tuple[float, ...], tuple[str, ...] | None]:
    """The tolerances of one case in mm and how their variants are named: ``None`` means one voxel of the case's
    grid (``tolerance``) and :data:`TOLERANCE_VOXELS` voxels (``tolerances``, named in voxels: the third item
    holds the voxel counts as name labels); numbers are mm (third item None: named in mm)."""
    voxel = case_voxel_mm(case)
    primary = voxel if tolerance is None else float(tolerance)
    if tolerances is None:
        return primary, tuple(k * voxel for k in TOLERANCE_VOXELS), tuple(f"{k:g}" for k in TOLERANCE_VOXELS)
    return primary, tuple(float(t) for t in tolerances), None


def in_plane_voxel_mm(cases: Sequence) -> float:
    """One in-plane voxel of the dataset's grid, in mm: the median over ``cases`` of the larger of the two
    in-plane spacings (the last two axes; ``spacing`` None counts as 1).

    Raises
    ------
    ValueError
        If ``cases`` is empty.
    """
    sizes = []
    # a lazy sequence of cases (UserCases) knows its spacings from the file headers without reading the masks
    for case in getattr(cases, "grids", cases):
        spacing = getattr(case, "spacing", None)
        sizes.append(1.0 if spacing is None else float(max(spacing[-2:])))
    if not sizes:
        raise ValueError("cases is empty: no grid to take the in-plane voxel size from")
    return float(np.median(sizes))


def resolve_tolerances(cases: Sequence, tolerance: float | None, tolerances: Sequence[float] | None
                       ) -> tuple[float, tuple[float, ...]]:
    """The primary tolerance and the sensitivity tolerances in mm: ``None`` means one in-plane voxel
    (:func:`in_plane_voxel_mm`) for ``tolerance`` and :data:`TOLERANCE_VOXELS` voxels for ``tolerances``;
    numbers are taken as mm."""
    voxel = in_plane_voxel_mm(cases) if tolerance is None or tolerances is None else None
    primary = voxel if tolerance is None else float(tolerance)
    extra = tuple(k * voxel for k in TOLERANCE_VOXELS) if tolerances is None else tuple(float(t) for t in tolerances)
    return primary, extra


def tolerance_metrics(per_case: pd.DataFrame, prefix: str = "contour_f1") -> list[str]:
    """The tolerance variants of metric ``prefix`` in a per-case table (:func:`helpers.metrics.tolerance_name`),
    by increasing tolerance (for :func:`helpers.analysis.metric_variants`)."""
    found = {}
    for name in per_case["metric"].unique():
        base, tolerance = split_tolerance_name(str(name))
        if base == prefix and tolerance is not None:
            found[str(name)] = tolerance
    return sorted(found, key=found.get)


def evaluate_case_tables(
    case,
    pred: np.ndarray,
    *,
    dataset: str,
    model: str,
    tolerance: float = _metrics.DEFAULT_TOLERANCE,
    tolerances: Sequence[float] = (),
    min_overlap: int = 1,
    connectivity: int | None = None,
    penalty: float | None = None,
    tolerance_labels: Sequence[str] | None = None,
    challenge: Sequence[str] = (),
) -> tuple[list[dict], pd.DataFrame]:
    """Per-case rows and the lesion table of one case and one model (quartiles not yet assigned).

    ``case`` has ``case_id``, ``mask``, ``ignore`` and ``spacing`` (a :class:`helpers.data.layouts.Case`).
    ``tolerance`` and ``tolerances`` are in mm; ``tolerance_labels`` (one per extra tolerance) names the variants
    in voxels of the case's grid (``contour_f1_tol<label>vox``, :func:`case_tolerances`) instead of in mm.
    ``challenge``: challenge metric sets (:data:`helpers.metrics.challenge.CHALLENGE_SETS`) whose extra metrics
    become rows too.
    """
    spacing = tuple(float(s) for s in case.spacing) if case.spacing is not None else None
    ignore = getattr(case, "ignore", None)
    # One crop, labelling and boundary pass for the image-level metrics and the lesion table (same values as
    # evaluate_case + evaluate_lesions, about 1.4x faster).
    result, table = _lesions.evaluate_case_and_lesions(
        case.mask, pred, spacing=spacing, connectivity=connectivity, ignore=ignore, min_overlap=min_overlap,
        tolerance=tolerance, tolerances=tuple(tolerances), penalty=penalty)
    summary = _lesions.lesion_summary(table)
    base = {"dataset": dataset, "model": model, "case_id": str(case.case_id), "n_ref_lesions": summary["n_ref_lesions"],
            "ref_empty": result.ref_empty, "pred_empty": result.pred_empty}
    rows = []
    for name in metric_names(table="case", computed=True):
        rows.append({**base, "metric": name, "value": float(result.values[name]),
                     "penalty": name in result.penalty_used, "reason": ""})
    # tolerance variants grouped by tolerance, metrics by name within one (contour_f1_tol<t>, then nsd_tol<t>)
    variants = sorted(n for n in metric_names(table="case", computed=True) if metric(n).per_tolerance)
    labels = list(tolerance_labels) if tolerance_labels is not None else [None] * len(tolerances)
    if len(labels) != len(tolerances):
        raise ValueError(f"tolerance_labels has {len(labels)} labels for {len(tolerances)} tolerances")
    for t, label in zip(tolerances, labels):
        for name in variants:
            variant = tolerance_name(name, t)
            shown = variant if label is None else voxel_tolerance_name(name, float(label))
            rows.append({**base, "metric": shown, "value": float(result.values[variant]), "penalty": False,
                         "reason": ""})
    rows.append({**base, "metric": "fp_lesions", "value": float(summary["n_false_positive"]), "penalty": False,
                 "reason": ""})
    recall = summary["lesion_recall"]
    rows.append({**base, "metric": "lesion_recall", "value": float(recall), "penalty": False,
                 "reason": "" if np.isfinite(recall) else "no reference lesion"})
    names = challenge_metric_names(challenge)
    if names:
        values = challenge_values(case.mask, pred, names=names, ignore=ignore, connectivity=connectivity)
        rows += [{**base, "metric": n, "value": float(values[n][0]), "penalty": False, "reason": values[n][1]}
                 for n in names]
    return rows, table


def lesion_rows(table: pd.DataFrame, *, dataset: str, model: str, case_id: str) -> pd.DataFrame:
    """Long per-lesion rows from an :func:`helpers.metrics.lesions.evaluate_lesions` table: the one row builder of the
    study (the failure-mode laboratory uses it too).

    Reference lesions get a ``detected`` row (1/0) and one row per metric the registry puts in the per-lesion
    table (:func:`helpers.metrics.metric_names` ``(table="lesion", per_lesion=True)``); false positives one
    ``false_positive`` row (value 1). ``penalty`` is True only on the distance rows (registry kind "distance")
    of a missed lesion, whose value is the penalty distance; every other row, the missed lesion's Dice 0
    included, has ``penalty`` False (the ``detected`` column and the ``detected`` rows say it was missed).
    """
    bbox = [c for c in table.columns if c.startswith("bbox_")]
    keep = [c for c in ["lesion_id", "kind", "detected", "n_voxels", "area_fraction", "overlap_voxels", *bbox]
            if c in table.columns]
    ref = table[table["kind"] == REFERENCE]
    frames = []
    if len(ref):
        detected = ref["detected"].astype(bool)
        missed_penalty = ref["penalty"].astype(bool).to_numpy()
        frames.append(ref[keep].assign(metric="detected", value=detected.astype(float).to_numpy(), penalty=False))
        for name in metric_names(table="lesion", per_lesion=True):
            frames.append(ref[keep].assign(metric=name, value=ref[name].astype(float).to_numpy(),
                                           penalty=missed_penalty & metric(name).penalised))
    fp = table[table["kind"] == FALSE_POSITIVE]
    if len(fp):
        frames.append(fp[keep].assign(metric=FALSE_POSITIVE, value=1.0, penalty=False))
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    out["penalty"] = out["penalty"].astype(bool)
    out["detected"] = out["detected"].astype(object).where(out["kind"] == REFERENCE, np.nan)
    out.insert(0, "case_id", case_id)
    out.insert(0, "model", model)
    out.insert(0, "dataset", dataset)
    return out


def _checked_models(root: Path, models: Sequence[str] | None) -> list[str]:
    """The model folders to evaluate: ``models`` (each must exist under ``root``), or every one found."""
    found = _predictions.list_models(root)
    models = [str(m) for m in (found if models is None else models)]
    if not models:
        raise ValueError(f"{root}: no model folder with predictions")
    missing = [m for m in models if m not in found]
    if missing:
        raise ValueError(f"{root}: models {missing} not found (found: {found})")
    return models


def evaluate_one(case, pred_path, *, dataset: str, model: str, params: dict, cache: CaseCache | None = None,
                 ref_digest: str | None = None) -> tuple[list[dict], pd.DataFrame, bool]:
    """The per-case rows and long lesion rows of one case and one model's prediction file, from ``cache`` when it
    holds them (key: :func:`helpers.evaluation.cache.case_key`), else computed (and put there); the third value
    says whether they came from the cache. ``params``: the keyword arguments of :func:`evaluate_case_tables`, with
    ``tolerance`` / ``tolerances`` as :func:`evaluate_cases` takes them (None: voxels of the case's own grid,
    :func:`case_tolerances`)."""
    key = None
    if cache is not None:
        key = case_key(ref_digest or reference_digest(case), file_digest(pred_path),
                       {"dataset": dataset, "model": model, **params})
        hit = cache.get(model, str(case.case_id), key)
        if hit is not None:
            return hit[0], hit[1], True
    pred = _predictions.read_prediction_file(pred_path, case)
    primary, extra, labels = case_tolerances(case, params.get("tolerance"), params.get("tolerances"))
    rest = {k: v for k, v in params.items() if k not in ("tolerance", "tolerances")}
    rows, table = evaluate_case_tables(case, pred, dataset=dataset, model=model, tolerance=primary, tolerances=extra,
                                       tolerance_labels=labels, **rest)
    lesions = lesion_rows(table, dataset=dataset, model=model, case_id=str(case.case_id))
    if cache is not None:
        cache.put(model, str(case.case_id), key, (rows, lesions))
    return rows, lesions, False


def evaluate_cases(
    cases: Sequence,
    predictions_root,
    *,
    dataset: str,
    models: Sequence[str] | None = None,
    tolerance: float | None = None,
    tolerances: Sequence[float] | None = None,
    min_overlap: int = 1,
    connectivity: int | None = None,
    penalty: float | None = None,
    progress: bool = True,
    cache: CaseCache | None = None,
    challenge: Sequence[str] = (),
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Evaluate every model's predictions of ``cases``: ``(per_case, per_lesion, quartile_edges)``.

    Parameters
    ----------
    cases : sequence of Case
        The evaluated cases (the test split), each with ``case_id``, ``mask``, ``ignore``, ``spacing``.
    predictions_root : path
        ``<root>/<model>/<case_id>.<nii.gz|png|tif>`` (see :mod:`helpers.data.predictions`).
    dataset : str
        Written into the ``dataset`` column.
    models : sequence of str, optional
        Model folders to evaluate; default all models found (:func:`helpers.data.predictions.list_models`).
    tolerance : float or None
        Contour-F1 / NSD tolerance in mm for every case (primary); None (default): one in-plane voxel of each
        case's own grid (:func:`case_tolerances`).
    tolerances : sequence of float or None
        Extra contour-F1 / NSD tolerances in mm for the sensitivity analysis (image level); None (default): 1, 2
        and 3 in-plane voxels of each case's grid (``contour_f1_tol<k>vox``); ``()``: none.
    min_overlap : int
        Matching threshold: a reference lesion is detected when at least this many of its voxels are predicted.
    connectivity : int, optional
        Lesion connectivity (scikit-image convention; default full connectivity).
    penalty : float, optional
        Distance given to undefined distances (missed lesion, empty prediction); default the image diagonal.
    progress : bool
        Show a tqdm progress bar.
    cache : helpers.evaluation.cache.CaseCache, optional
        Take each case's rows from there when present, put them there otherwise (:func:`evaluate_one`).
    challenge : sequence of str
        Challenge metric sets whose extra metrics the per-case table carries too (:func:`evaluate_case_tables`).

    Cases are read one at a time when ``cases`` is a lazy sequence (as :func:`evaluate_predictions` passes), and
    every model is evaluated on a case before the next case is read.

    Raises
    ------
    FileNotFoundError
        ``predictions_root`` does not exist, or a model lacks a case's prediction (the message names the file).
    ValueError
        No case, no model, or a model name not found under ``predictions_root``.
    """
    root = Path(predictions_root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: predictions folder not found")
    cases = list(cases)
    if not cases:
        raise ValueError("cases is empty: nothing to evaluate")
    models = _checked_models(root, models)
    params = {"tolerance": tolerance, "tolerances": None if tolerances is None else tuple(tolerances),
              "min_overlap": min_overlap,
              "connectivity": connectivity, "penalty": penalty}
    if challenge:  # absent from the key when not asked for, so that earlier cache entries stay valid
        params["challenge"] = tuple(challenge)
    by_model: dict[str, tuple[list, list]] = {m: ([], []) for m in models}
    for case in progress_bar(cases, progress=progress, desc=f"evaluate {dataset}"):
        digest = reference_digest(case) if cache is not None else None
        for model in models:
            path = _predictions.prediction_file(root, model, str(case.case_id))
            rows, lesions, _ = evaluate_one(case, path, dataset=dataset, model=model, params=params, cache=cache,
                                            ref_digest=digest)
            by_model[model][0].extend(rows)
            by_model[model][1].append(lesions)
    case_rows = [row for m in models for row in by_model[m][0]]
    lesion_frames = [frame for m in models for frame in by_model[m][1]]
    per_case = pd.DataFrame(case_rows)[["dataset", "model", "case_id", "metric", "value", "penalty", "n_ref_lesions",
                                        "ref_empty", "pred_empty", "reason"]]
    lesion_frames = [f for f in lesion_frames if len(f)]
    columns = ["dataset", "model", "case_id", "lesion_id", "kind", "detected", "n_voxels", "area_fraction",
               "overlap_voxels", "quartile", "metric", "value", "penalty"]
    if lesion_frames:
        per_lesion = pd.concat(lesion_frames, ignore_index=True)
    else:
        per_lesion = pd.DataFrame(columns=[c for c in columns if c != "quartile"])
    edges = reference_quartile_edges(per_lesion)
    if len(per_lesion) and np.all(np.isfinite(edges)):
        per_lesion["quartile"] = assign_quartiles(per_lesion["area_fraction"], edges)
    else:
        per_lesion["quartile"] = ""
    bbox = sorted(c for c in per_lesion.columns if c.startswith("bbox_"))
    per_lesion = per_lesion[columns + bbox]
    return per_case, per_lesion, edges


def reference_quartile_edges(per_lesion: pd.DataFrame) -> np.ndarray:
    """Quartile edges (:func:`helpers.metrics.lesions.quartile_edges`) of a per-lesion table's reference lesions, each
    counted once (the ``detected`` rows of one model: they are the same for every model); three NaN when the
    table has no reference lesion."""
    if not len(per_lesion):
        return np.full(3, np.nan)
    ref = per_lesion[(per_lesion["kind"] == REFERENCE) & (per_lesion["metric"] == "detected")]
    ref_once = ref.drop_duplicates(["case_id", "lesion_id"])
    return quartile_edges(ref_once["area_fraction"]) if len(ref_once) else np.full(3, np.nan)


def inference_record(ws, dataset: str) -> dict:
    """What the training section recorded about the predictions it wrote (``results/<dataset>/inference.json``:
    clean-up threshold, seeds, ...), or ``{}`` for predictions made elsewhere (the ``evaluate`` command), whose
    clean-up is unknown and counted as none."""
    path = ws.results(dataset) / "inference.json"
    return read_json(path) if path.exists() else {}


class UserCases:
    """The cases of one split of a user dataset, read one at a time when iterated (only the reference: no image);
    ``grids`` holds each case's grid from its file header (for the tolerance in voxels) without reading masks."""

    def __init__(self, ws, dataset: str, split: str = "test"):
        root, options = _data.manifest_root(ws, dataset)
        ids = set(_splits.load_splits(ws, dataset).ids(split))
        self.files = [f for f in _data.find_cases(dataset, root, options) if f.case_id in ids]
        self.grids = [_generic.read_geometry(f.labels["reference"], spacing=options.spacing) for f in self.files]

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self):
        for files in self.files:
            yield _data.read_case_files(files, image=False)


def evaluate_predictions(
    ws: Workspace,
    dataset: str,
    *,
    predictions_root=None,
    models: Sequence[str] | None = None,
    split: str = "test",
    cases: Sequence | None = None,
    tolerance: float | None = None,
    tolerances: Sequence[float] | None = None,
    min_overlap: int = 1,
    connectivity: int | None = None,
    penalty: float | None = None,
    progress: bool = True,
    cache: bool = True,
    challenge: Sequence[str] = (),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Evaluate a predictions folder and write ``results/<dataset>/per_case_metrics.csv``,
    ``per_lesion_metrics.csv`` and ``quartile_edges.json`` atomically.

    ``predictions_root`` defaults to ``ws.predictions(dataset)``; point it at any folder in the layout of
    :mod:`helpers.data.predictions` to evaluate your own predictions. ``cases`` defaults to the ``split`` cases of
    :func:`helpers.data.load_split_cases` (only those cases are read). Other parameters as :func:`evaluate_cases`
    (defaults ``tolerance=None`` / ``tolerances=None``: one in-plane voxel / 1, 2, 3 voxels of each case's own grid;
    the JSON states them in voxels and their range in mm over the cases). ``cache``: each case's rows are kept in,
    and taken from, the workspace's evaluation cache (:mod:`helpers.evaluation.cache`; the ``evaluate`` command
    fills it on the cluster beforehand). A user dataset's cases are read one at a time (:class:`UserCases`).
    """
    ws = Workspace.at(ws)
    root = ws.predictions(dataset) if predictions_root is None else Path(predictions_root)
    if cases is None and _data.is_user_dataset(dataset):
        cases = UserCases(ws, dataset, split)
    elif cases is None:
        cases = _data.load_split_cases(ws, dataset, split=split)
    if not isinstance(cases, UserCases):
        cases = list(cases)
    voxels = [case_voxel_mm(c) for c in getattr(cases, "grids", cases)]  # UserCases: from the headers
    per_case, per_lesion, edges = evaluate_cases(
        cases, root, dataset=dataset, models=models, tolerance=tolerance, tolerances=tolerances,
        min_overlap=min_overlap, connectivity=connectivity, penalty=penalty, progress=progress,
        cache=CaseCache(ws.root, dataset) if cache else None, challenge=tuple(challenge or ()))
    out = ws.results(dataset)
    write_csv(per_case, out / PER_CASE_FILE)
    write_csv(per_lesion, out / PER_LESION_FILE)
    n_ref = int(((per_lesion["kind"] == REFERENCE) & (per_lesion["metric"] == "detected")).sum()
                / max(per_lesion["model"].nunique(), 1)) if len(per_lesion) else 0
    write_json({"edges": {"q1_upper": edges[0], "q2_upper": edges[1], "q3_upper": edges[2]},
                "definition": "25th/50th/75th percentiles (numpy linear) of the area fractions of the test set's "
                              "reference lesions; upper edges inclusive",
                "n_reference_lesions": n_ref, "n_cases": len(cases), "split": split,
                "predictions_root": str(root), "models": sorted(per_case["model"].unique()),
                "tolerance_mm": tolerance, "tolerances_mm": None if tolerances is None else list(tolerances),
                "tolerance_voxels": 1 if tolerance is None else None,
                "tolerances_voxels": list(TOLERANCE_VOXELS) if tolerances is None else None,
                "tolerance_rule": ("one in-plane voxel of each case's own grid" if tolerance is None else
                                   f"{tolerance:g} mm for every case"),
                "in_plane_voxel_mm_range": [min(voxels), max(voxels)] if voxels else None,
                "in_plane_voxel_mm": float(np.median(voxels)) if voxels else None,
                "min_overlap_voxels": min_overlap,
                "connectivity": connectivity}, out / EDGES_FILE)
    return per_case, per_lesion


SEEDS_FOLDER = "_seeds"  # extra training seeds: <predictions root>/_seeds/seed<k>/ (helpers.data.predictions)


def extra_seed_roots(predictions_root) -> dict[int, Path]:
    """The predictions roots of the extra training seeds, ``{k: <root>/_seeds/seed<k>}`` sorted by ``k``
    (empty when only one seed was trained)."""
    folder = Path(predictions_root) / SEEDS_FOLDER
    if not folder.is_dir():
        return {}
    roots = {}
    for path in folder.iterdir():
        if path.is_dir() and path.name.startswith("seed") and path.name[4:].isdigit():
            roots[int(path.name[4:])] = path
    return dict(sorted(roots.items()))


def read_tables(ws: Workspace, dataset: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read ``per_case_metrics.csv`` and ``per_lesion_metrics.csv`` of a dataset (written by
    :func:`evaluate_predictions`)."""
    folder = ws.results(dataset)
    tables = []
    for name in (PER_CASE_FILE, PER_LESION_FILE):
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found (run the evaluation section first)")
        tables.append(pd.read_csv(path, dtype={"case_id": str, "quartile": str, "reason": str},
                                  keep_default_na=True))
    per_case, per_lesion = tables
    per_case["reason"] = per_case["reason"].fillna("")
    per_lesion["quartile"] = per_lesion["quartile"].fillna("")
    return per_case, per_lesion


def example_crops(cases: Sequence, predictions_root, examples: pd.DataFrame, per_lesion: pd.DataFrame, *,
                  models: Sequence[str], margin: int = 6, connectivity: int | None = None) -> list[dict]:
    """Image crops around chosen lesions for the qualitative figure.

    For each row of ``examples`` (``dataset, case_id, lesion_id``): the reference lesion's bounding box plus
    ``margin`` voxels; for volumes the axial slice (``z``) where the lesion is largest, and of a multi-channel
    volume its first channel. Returns dicts for
    :func:`helpers.report.figures.plot_lesion_example`: ``image``, ``reference``, ``predictions``, ``metrics``
    (per model: the lesion's Dice and HD95) and ``title``. ``connectivity`` must be the evaluation's, so that
    lesion ids match.
    """
    by_id = {str(c.case_id): c for c in cases}
    crops = []
    for _, ex in examples.iterrows():
        case = by_id[str(ex["case_id"])]
        rows = per_lesion[(per_lesion["case_id"].astype(str) == str(ex["case_id"]))
                          & (per_lesion["lesion_id"] == ex["lesion_id"]) & (per_lesion["kind"] == REFERENCE)]
        first = rows.iloc[0]
        ndim = case.mask.ndim
        lo = [int(first[f"bbox_min_{a}"]) for a in range(ndim)]
        hi = [int(first[f"bbox_max_{a}"]) for a in range(ndim)]
        ref = case.mask & ~case.ignore if case.ignore is not None else case.mask
        labels, _ = _lesions.label_lesions(ref, connectivity=connectivity)
        lesion = labels == int(ex["lesion_id"])
        image = np.asarray(case.image)
        if ndim == 3 and image.ndim == 4:  # (z, y, x, c) volumes: show the first channel (WMH FLAIR)
            image = image[..., 0]
        preds = {m: _predictions.read_prediction(predictions_root, m, case) for m in models}
        if ndim == 3:
            z = int(np.argmax(lesion.sum(axis=(1, 2))))
            lesion, image = lesion[z], image[z]
            preds = {m: p[z] for m, p in preds.items()}
            lo, hi = lo[1:], hi[1:]
        # bbox_max is exclusive (a slice stop, as helpers.metrics.lesions.lesion_table)
        box = tuple(slice(max(lo[a] - margin, 0), hi[a] + margin) for a in range(2))
        metrics = {}
        for m in models:
            r = rows[rows["model"] == m].set_index("metric")["value"]
            metrics[m] = {"dice": float(r.get("dice", np.nan)), "hd95": float(r.get("hd95", np.nan))}
        crops.append({"image": image[box], "reference": lesion[box],
                      "predictions": {m: p[box] for m, p in preds.items()},
                      "metrics": metrics, "title": f"{ex['dataset']} {ex['case_id']} lesion {ex['lesion_id']}"})
    return crops
