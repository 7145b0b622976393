"""Cross-validation of the small-data study: every model on every fold of the same splits, scored per image
and class.

Conventions
-----------
- Splits: :func:`helpers.data.splits.cv_splits` (LOOCV and seeded 3-fold, repeated over seeds), the same for every
  model. One model on one fold is one grid task (:func:`cv_task`), run in-process or on a Dask scheduler; each is
  deterministic from its fold's seed (training seed ``seed * 1000 + fold``), so the outcome does not depend on
  where it ran.
- Scores: one row per ``protocol, seed, fold, model, image, class`` (the foreground classes and ``"macro"``) with
  ``dice, iou, status`` (:func:`helpers.studies.small_data.data.multiclass_scores`,
  :func:`helpers.studies.small_data.data.macro_scores`);
  models that cannot run keep their rows with NaN scores and the reason in ``status``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from helpers.studies.small_data import data as sd
from helpers.studies.small_data import models as sm
from helpers.base.io import write_csv, write_json
from helpers.compute.runtime import check_device, torch_settings
from helpers.studies.small_data.train import (
    DATASET, check_params, mc_dropout_predict, predict_proba, stack_cases, to_reference_size, train_model,
)
from helpers.data.splits import CV_PROTOCOLS, cv_splits
from helpers.compute.cluster import GridTask, run_grid
from helpers.studies.small_data import lite_models as lmm

__all__ = ["CVResult", "cross_validate", "cv_task", "run_cv"]

# The grid (``helpers.compute.cluster``) is imported where it is used: it belongs to the runner, above this module.

@dataclass
class CVResult:
    """Outcome of :func:`cross_validate`.

    ``scores``: tidy, one row per ``protocol, seed, fold, model, image, class`` with ``dice, iou, status``
    (class ``"macro"`` is the mean over foreground classes; models that did not run have NaN scores and their
    reason in ``status``). ``predictions``: ``{(protocol, seed, model, image): label map}`` at reference
    size. ``uncertainty``: the same keys -> predictive entropy map (when ``mc_passes`` > 0). ``history``:
    training losses per fold."""

    scores: pd.DataFrame
    predictions: dict = field(default_factory=dict)
    uncertainty: dict = field(default_factory=dict)
    history: pd.DataFrame | None = None
    models: dict = field(default_factory=dict)


def _score_rows(case, pred, base):
    per_class = sd.multiclass_scores(case.mask, pred)
    rows = [{**base, "class": r["class"], "dice": r["dice"], "iou": r["iou"]}
            for r in per_class[per_class["foreground"]].to_dict("records")]
    macro = sd.macro_scores(per_class)
    rows.append({**base, "class": "macro", "dice": macro["dice"], "iou": macro["iou"]})
    return rows


def cross_validate(
    cases: Sequence[sd.VesselCase],
    *,
    models: Sequence[str],
    splits: Sequence[dict],
    params: dict | None = None,
    cnn_size: int = 256,
    sam_size: int = 1024,
    epochs: int = 10,
    width: int = 16,
    checkpoints: dict | None = None,
    mc_passes: int = 0,
    batch_size: int = 2,
    keep_models: Sequence[tuple] = (),
    threads: int | None = 1,
    device: str = "cpu",
    scheduler: str | None = None,
    progress: bool = True,
    feature_folder=None,
) -> CVResult:
    """Train and test every model on every fold of ``splits`` (the same folds for every model).

    One model on one fold is one grid task (:func:`cv_task`), run in-process or on the Dask scheduler at
    ``scheduler``; each is deterministic from its fold's seed, so the outcome does not depend on where it ran.

    Parameters
    ----------
    models : sequence of str
        Names from :data:`helpers.studies.small_data.models.MODELS`; those that cannot run (no checkpoint) get rows with
        NaN scores and the reason in ``status``.
    splits : sequence of dict
        From :func:`helpers.data.splits.cv_splits`.
    params : dict
        ``{model: hyper-parameters}`` (e.g. the best trial of :func:`optimize`); missing -> defaults.
    cnn_size, sam_size : int
        Input resolution of the CNNs and SegFormer, and of the SAM family.
    checkpoints : dict
        ``{"sam": path, "medsam": path, "medsam_unet": path}``.
    mc_passes : int
        Monte Carlo dropout passes for the uncertainty maps (0: none).
    device : str
        Torch device for training and inference (``"cuda"`` for the paper profile); results come back to numpy.
    keep_models : sequence of tuple
        ``(protocol, seed, fold, model)`` whose trained model is kept in ``CVResult.models`` (for saliency and
        attention views).
    feature_folder : path or None
        Where the LiteMedSAM models' frozen parts are shared between the cluster's processes
        (:mod:`helpers.studies.small_data.lite_models`): filled first, one grid task per image, before their folds.
    """

    params = params or {}
    checkpoints = checkpoints or {}
    by_id = {c.case_id: c for c in cases}
    for s in splits:
        missing = [i for i in s["train"] + s["test"] if i not in by_id]
        if missing:
            raise ValueError(f"splits name cases not in cases: {missing}")
    keep = set(map(tuple, keep_models))
    fill = lmm.feature_tasks(cases, models=[m for m in models if sm.model_status(m, checkpoints.get(m)) == "ok"],
                             folder=feature_folder)
    tasks = [
        GridTask(f"cv {split['protocol']} · seed {split['seed']} · fold {split['fold']} · {name}", cv_task,
                 (name, split, [by_id[i] for i in split["train"] + split["test"]]),
                 {"params": params.get(name, {}), "checkpoint": checkpoints.get(name), "cnn_size": cnn_size,
                  "sam_size": sam_size, "epochs": epochs, "width": width, "mc_passes": mc_passes,
                  "batch_size": batch_size, "keep": (split["protocol"], split["seed"], split["fold"], name) in keep,
                  "threads": threads, "device": device, "feature_folder": feature_folder},
                 gpu=str(device).startswith("cuda"),
                 after=tuple(t.label for t in fill) if name in sm.LITEMEDSAM_MODELS else ())
        for name in models for split in splits
    ]  # fmt: skip
    outcomes = run_grid(fill + tasks, scheduler=scheduler, name="cross-validation", progress=progress)[len(fill):]
    result = CVResult(scores=pd.DataFrame([row for o in outcomes for row in o["rows"]]))
    history = [o["history"] for o in outcomes if o["history"] is not None]
    result.history = pd.concat(history, ignore_index=True) if history else pd.DataFrame()
    for o in outcomes:
        result.predictions.update(o["predictions"])
        result.uncertainty.update(o["uncertainty"])
        result.models.update({key: _rebuild(*saved, device) for key, saved in o["model"].items()})
    return result


def cv_task(name: str, split: dict, cases: Sequence[sd.VesselCase], *, params: dict, checkpoint=None,
            cnn_size: int = 256, sam_size: int = 1024, epochs: int = 10, width: int = 16, mc_passes: int = 0,
            batch_size: int = 2, keep: bool = False, threads: int | None = 1, device: str = "cpu",
            feature_folder=None) -> dict:
    """One unit of the cross-validation grid: one model on one fold (train, predict the test images, score
    them). ``cases`` holds the fold's training and test cases. Returns ``rows`` (score rows), ``history``,
    ``predictions`` and ``uncertainty`` (keyed ``(protocol, seed, model, image)``) and ``model``
    (``{(protocol, seed, fold, model): (build arguments, state dict)}`` when ``keep``). ``feature_folder``: the
    shared frozen-part outputs of the LiteMedSAM models
    (:func:`helpers.studies.small_data.lite_models.feature_folder_used`)."""
    with lmm.feature_folder_used(feature_folder):
        return _cv_task(name, split, cases, params=params, checkpoint=checkpoint, cnn_size=cnn_size,
                        sam_size=sam_size, epochs=epochs, width=width, mc_passes=mc_passes, batch_size=batch_size,
                        keep=keep, threads=threads, device=device)


def _cv_task(name, split, cases, *, params, checkpoint, cnn_size, sam_size, epochs, width, mc_passes, batch_size,
             keep, threads, device) -> dict:
    by_id = {c.case_id: c for c in cases}
    status = sm.model_status(name, checkpoint)
    base = {"protocol": split["protocol"], "seed": split["seed"], "fold": split["fold"], "model": name}
    test_cases = [by_id[i] for i in split["test"]]
    out = {"rows": [], "history": None, "predictions": {}, "uncertainty": {}, "model": {}}
    if status != "ok":
        for case in test_cases:
            for cls in [*sd.CLASSES[1:], "macro"]:
                out["rows"].append({**base, "image": case.case_id, "class": cls, "dice": np.nan, "iou": np.nan,
                                    "status": status})
        return out
    size = sm.input_size(name, cnn_size=cnn_size, sam_size=sam_size)
    with torch_settings(num_threads=threads, deterministic=None):
        xt, yt = stack_cases([by_id[i] for i in split["train"]], size)
        model, hist = train_model(name, xt, yt, params=params, epochs=epochs, width=width,
                                  seed=split["seed"] * 1000 + split["fold"], checkpoint=checkpoint,
                                  batch_size=batch_size, threads=threads, device=device)
        out["history"] = hist.assign(**base)
        xs, _ = stack_cases(test_cases, size)
        if mc_passes:
            mc = mc_dropout_predict(model, xs, passes=mc_passes, seed=split["seed"])
            proba = mc["mean"]
        else:
            proba = predict_proba(model, xs)
    for k, case in enumerate(test_cases):
        pred = to_reference_size(proba[k], case.mask.shape).argmax(0).astype(np.uint8)
        key = (split["protocol"], split["seed"], name, case.case_id)
        out["predictions"][key] = pred
        if mc_passes:
            out["uncertainty"][key] = to_reference_size(mc["entropy"][k], case.mask.shape)
        for row in _score_rows(case, pred, {**base, "image": case.case_id}):
            out["rows"].append({**row, "status": "ok"})
    if keep:  # weights and how to rebuild the model (a model object may not survive serialisation)
        build = {"name": name, "n_classes": 4 if int(yt.max()) < 4 else int(yt.max()) + 1, "width": width,
                 "dropout": check_params(params)["dropout"], "checkpoint": checkpoint}
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        out["model"][(split["protocol"], split["seed"], split["fold"], name)] = (build, state)
    return out


def _rebuild(build: dict, state: dict, device) -> torch.nn.Module:
    model = sm.build_model(build["name"], n_classes=build["n_classes"], width=build["width"],
                           dropout=build["dropout"], checkpoint=build["checkpoint"])
    model.load_state_dict(state)
    return model.to(check_device(device)).eval()


def run_cv(ws, cases, *, models: Sequence[str], protocols: Sequence[str] = CV_PROTOCOLS, seeds: Sequence[int] = (0,),
           best: dict | None = None, cnn_size: int = 256, sam_size: int = 1024, epochs: int = 10, width: int = 16,
           batch_size: int = 2, checkpoints: dict | None = None, mc_passes: int = 0, device: str = "cpu",
           scheduler: str | None = None, progress: bool = True) -> CVResult:
    """Cross-validate every model under every protocol and seed on the same splits.

    Uses the best parameters of :func:`run_hpo` (``best``); keeps the trained models of the first seed's
    folds (for saliency and attention views). Writes ``splits.json``, ``scores.csv`` (per protocol, seed,
    fold, model, image, class: ``dice, iou, status``), ``model_status.csv`` and ``training_history.csv``.
    """
    ids = [c.case_id for c in cases]
    splits = cv_splits(ids, protocols=protocols, seeds=seeds)
    params = {m: b.get("params", {}) for m, b in (best or {}).items() if b.get("status") == "ok"}
    keep = [(s["protocol"], s["seed"], s["fold"], m) for s in splits if s["seed"] == list(seeds)[0] for m in models]
    result = cross_validate(cases, models=models, splits=splits, params=params, cnn_size=cnn_size,
                            sam_size=sam_size, epochs=epochs, width=width, checkpoints=checkpoints,
                            mc_passes=mc_passes, batch_size=batch_size, keep_models=keep, device=device,
                            scheduler=scheduler, progress=progress,
                            feature_folder=lmm.shared_folder(ws, scheduler))
    lmm.remove_feature_folder(ws)  # the search's and the folds' shared frozen parts: no longer needed
    out = ws.results(DATASET)
    write_json({"splits": splits, "rule": "loocv: one case per fold; 3fold: seeded permutation, array_split",
                "seeds": list(seeds)}, out / "splits.json")
    write_csv(result.scores, out / "scores.csv")
    status = pd.DataFrame([{"model": m, "status": sm.model_status(m, (checkpoints or {}).get(m))} for m in models])
    write_csv(status, out / "model_status.csv")
    write_csv(result.history, out / "training_history.csv")
    return result
