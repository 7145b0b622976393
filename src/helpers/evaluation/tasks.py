"""Evaluation as per-case tasks on the run's Dask cluster: one task per case and model, each reading one case's
reference and one prediction (memory bounded by one case per worker), evaluating them with the engine of
:mod:`helpers.evaluation.tables` and keeping the rows in the workspace's cache (:mod:`helpers.evaluation.cache`).
The evaluation section then assembles its tables from the cache; adding a model evaluates only its cases, and an
interrupted evaluation resumes where it stopped (every finished task's rows are on disk).

Each task reports how long it read files and how long the engine ran, and the peak resident memory of its worker
process (``ru_maxrss``), which the benchmark (``benchmarks/bench_evaluate.py``) sums up.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from helpers import data as _data
from helpers.compute.cluster import GridTask, open_cluster, run_grid
from helpers.data import predictions as _predictions
from helpers.data.datasets import is_dataset, register_workspace
from helpers.evaluation.cache import CaseCache, case_key, file_digest, reference_digest
from helpers.evaluation.tables import case_tolerances, evaluate_case_tables, lesion_rows

__all__ = ["case_task", "evaluation_params", "evaluate_on_cluster"]


def evaluation_params(tolerance: float | None = None, tolerances: Sequence[float] | None = None, *,
                      min_overlap: int = 1, connectivity: int | None = None, penalty: float | None = None,
                      challenge=()) -> dict:
    """The evaluation parameters as :func:`helpers.evaluation.tables.evaluate_cases` keys its cache with them
    (tolerances in mm, or None for voxels of each case's own grid, the default; ``challenge`` only when asked
    for)."""
    params = {"tolerance": None if tolerance is None else float(tolerance),
              "tolerances": None if tolerances is None else tuple(float(t) for t in tolerances),
              "min_overlap": int(min_overlap), "connectivity": connectivity, "penalty": penalty}
    if challenge:
        params["challenge"] = tuple(challenge)
    return params


def case_task(files, pred_path, *, dataset: str, model: str, params: dict, cache_root) -> dict:
    """One case and one model: from the cache when present, else read, evaluated and cached (``cache_root``: the
    workspace root, whose recorded user datasets a fresh worker registers first). Returns
    ``case_id, model, cached, read_s, engine_s, peak_rss_bytes``."""
    t0 = time.perf_counter()
    if not is_dataset(files.dataset):  # a worker process: the workspace's user datasets are registered here
        register_workspace(cache_root)
    case = _data.read_case_files(files, image=False)
    cache = CaseCache(cache_root, dataset)
    key = case_key(reference_digest(case), file_digest(pred_path), {"dataset": dataset, "model": model, **params})
    cached = cache.get(model, str(case.case_id), key) is not None
    read_s = engine_s = 0.0
    if not cached:
        pred = _predictions.read_prediction_file(pred_path, case)
        t1 = time.perf_counter()
        read_s = t1 - t0
        primary, extra, labels = case_tolerances(case, params.get("tolerance"), params.get("tolerances"))
        rest = {k: v for k, v in params.items() if k not in ("tolerance", "tolerances")}
        rows, table = evaluate_case_tables(case, pred, dataset=dataset, model=model, tolerance=primary,
                                           tolerances=extra, tolerance_labels=labels, **rest)
        lesions = lesion_rows(table, dataset=dataset, model=model, case_id=str(case.case_id))
        engine_s = time.perf_counter() - t1
        cache.put(model, str(case.case_id), key, (rows, lesions))
    else:
        read_s = time.perf_counter() - t0
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return {"case_id": str(case.case_id), "model": model, "cached": cached, "read_s": read_s, "engine_s": engine_s,
            "peak_rss_bytes": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale}


def evaluate_on_cluster(jobs: Sequence[tuple], *, dataset: str, params: dict, cache_root, scheduler="local",
                        workers: int | None = None, security=None, out=sys.stdout) -> list[dict]:
    """Run :func:`case_task` for every ``(CaseFiles, prediction path, model)`` of ``jobs`` on the cluster
    (``scheduler`` as :func:`helpers.compute.cluster.open_cluster`; progress printed per task as for training) and
    return the tasks' reports, in order. The count of cases evaluated and found in the cache is printed."""
    tasks = [GridTask(f"{dataset} · {model} · {files.case_id}", case_task, (files, str(Path(path))),
                      {"dataset": dataset, "model": model, "params": params, "cache_root": str(cache_root)})
             for files, path, model in jobs]
    if not tasks:
        return []
    with open_cluster(scheduler, workers=workers, security=security, out=out) as info:
        results = run_grid(tasks, scheduler=info.address, name=f"evaluate {dataset}", security=security, out=out)
    cached = sum(r["cached"] for r in results)
    print(f"evaluate {dataset}: {len(results) - cached} case x model evaluated, {cached} found in the cache",
          file=out, flush=True)
    return results
