"""The workspace level of training: the grid of train and predict tasks of a dataset, the folders they write,
and reading the training histories back with their plots.

Grid: :func:`train_all` and :func:`predict_all` run one task per (model, seed) (:func:`train_task`,
:func:`predict_task`), in-process or on a Dask scheduler (``helpers.compute.cluster``); each model is trained by
:func:`helpers.learning.training.train_model` under one :class:`helpers.learning.protocol.TrainingProtocol`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from helpers.compute.runtime import default_device, torch_settings
from helpers.learning import models as _models
from helpers.data import predictions as _predictions
from helpers.base.io import read_json, write_csv, write_json
from helpers.base.paths import Workspace
from helpers.data.preprocessing import load_prepared, restore
from helpers.data.splits import load_splits
from helpers.compute.cluster import GridTask, grid_priority, run_grid
from helpers.base.plots import get_axes, model_color
from helpers.learning.protocol import TrainingProtocol
from helpers.learning.training import CHECKPOINT_LAST, CONFIG, HISTORY, load_best_model, predict_stack, train_model

__all__ = [
    "SEEDS_FOLDER", "model_folder", "predictions_root", "dataset_channels", "train_task", "train_all", "predict_task",
    "predict_all", "load_histories", "plot_training_curves", "plot_summary",
]

SEEDS_FOLDER = "_seeds"


# --------------------------------------------------------------------------------------------- workspace level


def model_folder(ws: Workspace, dataset: str, model: str, *, seed_index: int = 0, seed: int | None = None) -> Path:
    """``models/<dataset>/<model>`` for the first seed, ``models/<dataset>/_seeds/seed<seed>/<model>`` else."""
    return ws.models(dataset, model) if seed_index == 0 else ws.models(dataset) / SEEDS_FOLDER / f"seed{seed}" / model


def predictions_root(ws: Workspace, dataset: str, *, seed_index: int = 0, seed: int | None = None) -> Path:
    """The predictions root of one seed (the first seed: ``predictions/<dataset>``; see
    ``helpers.data.predictions``)."""
    base = ws.predictions(dataset)
    return base if seed_index == 0 else base / SEEDS_FOLDER / f"seed{seed}"


def dataset_channels(ws, dataset: str) -> int:
    """Image channels of the dataset's prepared arrays (read from its first training case)."""
    ws = Workspace.at(ws)
    return int(load_prepared(ws, dataset, load_splits(ws, dataset).train[0]).image.shape[1])


def _check_models(models) -> list[str]:
    models = [models] if isinstance(models, str) else list(models)
    if not models:
        raise ValueError("models must name at least one model")
    for name in models:
        _models.check_model_name(name)
    return models


def _seeds(seed: int, seeds: int) -> list[int]:
    if isinstance(seeds, bool) or not isinstance(seeds, (int, np.integer)) or seeds < 1:
        raise ValueError(f"seeds must be a positive integer, got {seeds!r}")
    return [int(seed) + i for i in range(int(seeds))]


def _wants_gpu(device: str | None) -> bool:
    """Whether grid tasks with this ``device`` must run on a GPU worker (explicit CUDA, or None where the
    submitting process sees a GPU)."""
    return default_device().startswith("cuda") if device is None else str(device).startswith("cuda")


def _load_split_cases(ws: Workspace, dataset: str, parts: Sequence[str]) -> dict[str, list]:
    splits = load_splits(ws, dataset)  # a Splits record: no split is empty
    return {part: [load_prepared(ws, dataset, c) for c in splits.ids(part)] for part in parts}


def train_task(workspace, dataset: str, model: str, *, seed: int, seed_index: int = 0,
               protocol: TrainingProtocol = TrainingProtocol(), num_threads: int | None = None,
               device: str | None = None) -> dict:
    """One unit of the training grid: train ``model`` with ``seed`` on the dataset's split (reading the prepared
    arrays from the workspace) and return its row of ``training_summary.csv`` plus ``up_to_date`` (True when a
    finished training with this configuration was found and nothing was trained).

    ``num_threads`` None: the task's thread count (:func:`helpers.compute.runtime.task_threads`)."""
    ws = Workspace.at(workspace)
    cases = _load_split_cases(ws, dataset, ("train", "val"))
    folder = model_folder(ws, dataset, model, seed_index=seed_index, seed=seed)
    before = _mtime(folder / CHECKPOINT_LAST)
    result = train_model(
        model, cases["train"], cases["val"], folder, protocol=protocol, seed=seed,
        num_threads=num_threads, device=device, progress=False,
        extra_config={"dataset": dataset},
    )  # fmt: skip
    row = {"dataset": dataset, **result.as_row()}
    row["folder"] = Path(row["folder"]).relative_to(ws.root).as_posix()
    return {**row, "up_to_date": before is not None and before == _mtime(folder / CHECKPOINT_LAST)}


def _mtime(path: Path) -> int | None:
    return path.stat().st_mtime_ns if path.exists() else None


def train_all(
    ws,
    dataset: str,
    protocol: TrainingProtocol = TrainingProtocol(),
    *,
    models: Sequence[str] = _models.MODEL_NAMES,
    seed: int = 0,
    seeds: int = 1,
    num_threads: int | None = None,
    device: str | None = None,
    scheduler: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Train every model in ``models`` (and ``seeds`` seeds each) on the dataset's train split under one protocol.

    Each (model, seed) is one task of a grid (:func:`train_task`), run in-process one after another
    (``scheduler`` None) or on the Dask scheduler at ``scheduler`` (see ``helpers.compute.cluster``); CUDA tasks ask for
    the resource ``GPU=1``. Reads the split (``results/<dataset>/splits.json``) and the prepared arrays; writes
    each model's folder (:func:`model_folder`) and ``results/<dataset>/training_summary.csv``; returns that table
    (one row per model and seed: ``dataset, model, seed, params, best_val_dice, best_epoch, epochs, steps,
    seconds, images_per_second, stopped_early, device, folder``). Seeds are ``seed, seed + 1, ...,
    seed + seeds - 1``. Finished trainings with an unchanged configuration are skipped; interrupted ones resume.
    """

    ws = Workspace.at(ws)
    models = _check_models(models)
    seed_list = _seeds(seed, seeds)
    load_splits(ws, dataset)  # fails here, naming the file, when the data section has not run
    tasks = [
        GridTask(f"{dataset} · {name} · seed {s}", train_task, (ws, dataset, name),
                 {"seed": s, "seed_index": index, "protocol": protocol, "num_threads": num_threads,
                  "device": device}, gpu=_wants_gpu(device))
        for index, s in enumerate(seed_list) for name in models
    ]  # fmt: skip
    rows = run_grid(tasks, scheduler=scheduler, name=f"train {dataset}", progress=progress)
    summary = pd.DataFrame([{k: v for k, v in row.items() if k != "up_to_date"} for row in rows])
    write_csv(summary, ws.results(dataset) / "training_summary.csv")
    return summary


def predict_task(workspace, dataset: str, model: str, *, seed: int, seed_index: int = 0,
                 min_component_voxels: int = 0, save_probabilities: bool = False, image_format: str = "png",
                 num_threads: int | None = None, device: str | None = None) -> list[dict]:
    """One unit of the prediction grid: predict every test case with one model and seed (see
    :func:`predict_all`) and return one row per case."""
    ws = Workspace.at(workspace)
    device = default_device() if device is None else device
    cases = _load_split_cases(ws, dataset, ("test",))["test"]
    root = predictions_root(ws, dataset, seed_index=seed_index, seed=seed)
    folder = model_folder(ws, dataset, model, seed_index=seed_index, seed=seed)
    rows = []
    with torch_settings(num_threads=num_threads, deterministic=True):
        net = load_best_model(folder).to(device)
        size = read_json(folder / CONFIG)["protocol"]["size"]
        multiple, min_size = _models.input_multiple(model, size), _models.min_input_size(model, size)
        for case in cases:
            stack = predict_stack(net, case.image, multiple=multiple, min_size=min_size, device=device,
                                  amp=device != "cpu")  # fmt: skip
            prob = np.asarray(restore(stack, case), dtype=np.float32)
            kind = getattr(case, "kind", "volume")
            if kind == "image" and prob.ndim == 3 and prob.shape[0] == 1:
                prob = prob[0]
            prob = np.clip(prob, 0.0, 1.0)
            mask = _predictions.postprocess(prob, threshold=0.5, min_component_voxels=min_component_voxels)
            path = _predictions.write_prediction(
                root, model, case.case_id, mask, kind=kind, affine=getattr(case, "affine", None),
                prob=prob if save_probabilities else None, image_format=image_format,
            )  # fmt: skip
            rows.append({"dataset": dataset, "model": model, "seed": seed, "case_id": case.case_id,
                         "path": path.relative_to(ws.root).as_posix(),
                         "predicted_voxels": int(mask.sum())})  # fmt: skip
    return rows


def predict_all(
    ws,
    dataset: str,
    *,
    models: Sequence[str] = _models.MODEL_NAMES,
    seed: int = 0,
    seeds: int = 1,
    min_component_voxels: int = 0,
    save_probabilities: bool = False,
    image_format: str = "png",
    num_threads: int | None = None,
    device: str | None = None,
    scheduler: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Predict every test case with each model's best checkpoint and write it in the dataset's own format.

    Each prepared test stack is predicted slice by slice (:func:`helpers.learning.training.predict_stack`), mapped
    back to the original grid with ``helpers.data.preprocessing.restore``, then
    :func:`helpers.data.predictions.postprocess` applies the shared rule (threshold 0.5, remove components smaller
    than ``min_component_voxels`` original voxels) and :func:`helpers.data.predictions.write_prediction` writes it
    (NIfTI with the source affine for volumes; ``image_format`` for 2D images). The rule is recorded in
    ``results/<dataset>/inference.json``. Each (model, seed) is one grid task (:func:`predict_task`), in-process or
    on the Dask scheduler at ``scheduler``.

    Returns a table with one row per model, seed and case: ``dataset, model, seed, case_id, path,
    predicted_voxels``.
    """

    ws = Workspace.at(ws)
    models = _check_models(models)
    seed_list = _seeds(seed, seeds)
    load_splits(ws, dataset)  # fails here, naming the file, when the data section has not run
    tasks = [
        GridTask(f"{dataset} · predict {name} · seed {s}", predict_task, (ws, dataset, name),
                 {"seed": s, "seed_index": index, "min_component_voxels": min_component_voxels,
                  "save_probabilities": save_probabilities, "image_format": image_format,
                  "num_threads": num_threads, "device": device}, gpu=_wants_gpu(device))
        for index, s in enumerate(seed_list) for name in models
    ]  # fmt: skip
    # the predictions finish the training section: they overtake other datasets' queued training
    rows = [row for rows in run_grid(tasks, scheduler=scheduler, name=f"predict {dataset}", progress=progress,
                                     priority=grid_priority(finishing=True))
            for row in rows]
    write_json(
        {"threshold": 0.5, "threshold_rule": "prob >= 0.5", "min_component_voxels": int(min_component_voxels),
         "connectivity": "full (ndim)", "grid": "original", "models": models, "seeds": seed_list,
         "image_format": image_format, "probabilities": bool(save_probabilities)},
        ws.results(dataset) / "inference.json",
    )  # fmt: skip
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------- reading and plots


def load_histories(ws, dataset: str, *, models: Sequence[str] = _models.MODEL_NAMES, seed: int = 0, seeds: int = 1):
    """All ``history.csv`` of a dataset as one long table with ``model`` and ``seed`` columns (missing skipped)."""
    ws = Workspace.at(ws)
    frames = []
    for index, s in enumerate(_seeds(seed, seeds)):
        for name in _check_models(models):
            path = model_folder(ws, dataset, name, seed_index=index, seed=s) / HISTORY
            if path.exists():
                frame = pd.read_csv(path)
                frame.insert(0, "seed", s)
                frame.insert(0, "model", name)
                frames.append(frame)
    columns = ["model", "seed", "epoch", "step", "train_loss", "val_dice", "learning_rate", "seconds"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def plot_training_curves(history: pd.DataFrame, *, metric: str = "train_loss", ax=None):
    """One line per model (and seed) of ``metric`` (``train_loss`` or ``val_dice``) against the optimiser step."""

    if metric not in ("train_loss", "val_dice", "learning_rate"):
        raise ValueError(f"metric must be 'train_loss', 'val_dice' or 'learning_rate', got {metric!r}")
    missing = {"model", "seed", "step", metric} - set(history.columns)
    if missing:
        raise ValueError(f"history lacks columns {sorted(missing)}")
    fig, ax = get_axes(ax)
    for index, (model, frame) in enumerate(history.groupby("model", sort=False)):
        for j, (s, run) in enumerate(frame.groupby("seed")):
            ax.plot(run["step"], run[metric], marker="o", ms=3, color=model_color(model, index),
                    alpha=1.0 if j == 0 else 0.5, label=model if j == 0 else None)  # fmt: skip
    ax.set_xlabel("optimiser step")
    ax.set_ylabel({"train_loss": "training loss (Dice + CE)", "val_dice": "validation Dice",
                   "learning_rate": "learning rate"}[metric])  # fmt: skip
    if metric == "val_dice":
        ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    return ax


def plot_summary(summary: pd.DataFrame, *, column: str = "best_val_dice", ax=None):
    """Bar chart of one summary column (e.g. ``best_val_dice``, ``images_per_second``) per model, mean over seeds."""

    if column not in summary.columns:
        raise ValueError(f"summary has no column {column!r}")
    fig, ax = get_axes(ax)
    means = summary.groupby("model", sort=False)[column].mean()
    ax.bar(range(len(means)), means.to_numpy(), color=[model_color(m, i) for i, m in enumerate(means.index)])
    ax.set_xticks(range(len(means)), means.index, rotation=20)
    ax.set_ylabel(column.replace("_", " "))
    return ax
