"""Benchmark: ``python -m helpers.study evaluate`` end to end on a LiTS-sized synthetic nnU-Net dataset, with 1 and
2 workers of the local Dask cluster.

Dataset (written once into ``--root``, seeded): ``--volumes`` volumes (default 20) of 512 x 512 x (200-400)
voxels, in-plane spacing 0.7-0.8 mm, slices 1-5 mm, an nnU-Net v2 raw dataset (``dataset.json`` with labels
background 0, liver 1, tumour 2; ``labelsTs/liver_NNN.nii.gz``). Each volume holds a liver (an ellipsoid, slice by
slice) and 4-14 tumours inside it of all sizes (spheres of 1.5-40 mm radius). Predictions of 3 models in nnU-Net's
output layout (``<case>.nii.gz`` beside a ``.pkl``): ``shifted`` (every tumour moved by one or two voxels),
``grown`` (tumours 1.3x the radius, the smallest missed), ``noisy`` (tumours 0.8x the radius plus 3 false positive
spheres); the liver copied.

Timed: the evaluate command (``--nnunet ROOT --predictions PREDS --label tumour --cases-only``: matching, grid
checks, staging, cluster start and one task per case x model) into a fresh workspace each time, so nothing comes
from the cache; the sections and the book are not part of it (they read the cache). Printed: wall time, volumes and
case x model evaluations per second, speed-up from 1 to 2 workers, the peak resident memory of a worker process
(``ru_maxrss``, which includes the libraries a worker imports), and the engine's share of the worker time (engine
seconds over read + engine seconds, summed over the tasks; the rest is reading and hashing the files).

Targets (issue 23): speed-up >= 1.7, peak memory per worker < 1 GiB, engine >= 70 % of the worker time.

Run: ``python benchmarks/bench_evaluate.py [--volumes 20] [--root build/bench_evaluate] [--workers 1 2]``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

import nibabel as nib
import numpy as np

MODELS = ("shifted", "grown", "noisy")


def _sphere(lab, centre, radius_mm, spacing, value):
    """Set a sphere (x, y, z order, mm radius) to ``value`` inside ``lab`` (in place, on its bounding box only)."""
    r = [max(1, int(np.ceil(radius_mm / s))) for s in spacing]
    lo = [max(0, int(c) - k) for c, k in zip(centre, r)]
    hi = [min(n, int(c) + k + 1) for c, n, k in zip(centre, lab.shape, r)]
    if any(h <= lo_ for lo_, h in zip(lo, hi)):
        return
    grids = np.ogrid[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    dist = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, spacing))
    box = lab[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    box[dist <= radius_mm ** 2] = value


def write_dataset(root: Path, volumes: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    ds = root / "Dataset900_LiTSsized"
    if (ds / "done.json").is_file() and json.loads((ds / "done.json").read_text())["volumes"] == volumes:
        return ds
    shutil.rmtree(root, ignore_errors=True)
    (ds / "labelsTs").mkdir(parents=True)
    (ds / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "liver": 1, "tumour": 2},
                                                 "file_ending": ".nii.gz", "channel_names": {"0": "CT"},
                                                 "numTraining": 0}))
    for i in range(volumes):
        nz = int(rng.integers(200, 401))
        inplane, dz = float(rng.uniform(0.7, 0.8)), float(rng.uniform(1.0, 5.0))
        spacing = (inplane, inplane, dz)
        lab = np.zeros((512, 512, nz), np.uint8, order="F")  # NIfTI order (x, y, z), as NIfTI stores it
        cx, cy, cz = 200 + rng.integers(-20, 20), 260 + rng.integers(-20, 20), nz / 2
        ax_, ay_, az_ = 110 / inplane * 0.8, 80 / inplane * 0.8, min(nz / 2 - 2, 90 / dz)
        x = np.arange(512)[:, None]
        y = np.arange(512)[None, :]
        for z in range(nz):
            t = 1 - ((z - cz) / az_) ** 2
            if t > 0:
                lab[:, :, z][((x - cx) / ax_) ** 2 + ((y - cy) / ay_) ** 2 <= t] = 1
        tumours = []
        for _ in range(int(rng.integers(4, 15))):
            radius = float(np.exp(rng.uniform(np.log(1.5), np.log(40))))  # all sizes, log-uniform
            centre = (cx + rng.uniform(-0.5, 0.5) * ax_, cy + rng.uniform(-0.5, 0.5) * ay_,
                      cz + rng.uniform(-0.5, 0.5) * az_)
            tumours.append((centre, radius))
            _sphere(lab, centre, radius, spacing, 2)
        affine = np.diag([inplane, inplane, dz, 1.0])
        name = f"liver_{i:03d}.nii.gz"
        nib.save(nib.Nifti1Image(lab, affine), str(ds / "labelsTs" / name))
        liver = lab > 0
        smallest = min(r for _, r in tumours)
        for m, model in enumerate(MODELS):
            pred = liver.astype(np.uint8, order="F")
            for centre, radius in tumours:
                if model == "shifted":
                    _sphere(pred, (centre[0] + 1 + m, centre[1] - 1, centre[2]), radius, spacing, 2)
                elif model == "grown" and radius > smallest:
                    _sphere(pred, centre, 1.3 * radius, spacing, 2)
                elif model == "noisy":
                    _sphere(pred, centre, 0.8 * radius, spacing, 2)
            if model == "noisy":
                for _ in range(3):
                    _sphere(pred, (cx + rng.uniform(-0.6, 0.6) * ax_, cy + rng.uniform(-0.6, 0.6) * ay_,
                                   cz + rng.uniform(-0.6, 0.6) * az_), float(rng.uniform(2, 6)), spacing, 2)
            folder = root / "predictions" / model
            folder.mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(pred, affine), str(folder / name))
            (folder / name.replace(".nii.gz", ".pkl")).write_bytes(b"nnU-Net writes these")
        print(f"  wrote {name}: 512 x 512 x {nz}, {inplane:.3f} x {inplane:.3f} x {dz:.2f} mm, "
              f"{len(tumours)} tumours ({min(r for _, r in tumours):.1f}-{max(r for _, r in tumours):.1f} mm)",
              flush=True)
    (ds / "done.json").write_text(json.dumps({"volumes": volumes}))
    return ds


def time_evaluate(ds: Path, preds: Path, ws: Path, workers: int) -> dict:
    from helpers.evaluation import tasks
    from helpers.runner import cli

    reports = []
    real = tasks.evaluate_on_cluster

    def keep(*args, **kwargs):
        out = real(*args, **kwargs)
        reports.extend(out)
        return out

    tasks.evaluate_on_cluster = keep
    from helpers.runner import evaluate as ev
    ev.evaluate_on_cluster = keep
    shutil.rmtree(ws, ignore_errors=True)
    log = io.StringIO()
    start = time.perf_counter()
    try:
        with redirect_stdout(log):
            code = cli.main(["evaluate", "--nnunet", str(ds), "--predictions", str(preds), "--label", "tumour",
                             "--workspace", str(ws), "--cases-only", "--workers", str(workers)])
    finally:
        tasks.evaluate_on_cluster = real
        ev.evaluate_on_cluster = real
    wall = time.perf_counter() - start
    if code != 0:
        print(log.getvalue())
        raise SystemExit(f"evaluate failed with exit code {code}")
    read = sum(r["read_s"] for r in reports)
    engine = sum(r["engine_s"] for r in reports)
    return {"workers": workers, "wall_s": wall, "tasks": len(reports), "read_s": read, "engine_s": engine,
            "engine_share": engine / (read + engine), "peak_rss_gib": max(r["peak_rss_bytes"] for r in reports) / 2**30,
            "cached": sum(r["cached"] for r in reports)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--volumes", type=int, default=20)
    parser.add_argument("--root", default="build/bench_evaluate")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    print(f"writing {args.volumes} LiTS-sized volumes and 3 models' predictions under {root} ...", flush=True)
    t0 = time.perf_counter()
    ds = write_dataset(root, args.volumes)
    print(f"dataset ready in {time.perf_counter() - t0:.0f} s; cores: {os.cpu_count()}, load average "
          f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}", flush=True)
    results = [time_evaluate(ds, root / "predictions", root / f"ws_{w}", w) for w in args.workers]
    n_vol = args.volumes
    print(f"\n{'workers':>7} {'wall s':>8} {'volumes/s':>10} {'evals/s':>8} {'s/eval':>7} {'peak GiB/worker':>16} "
          f"{'engine %':>9} {'read s':>8} {'engine s':>9}")
    for r in results:
        print(f"{r['workers']:>7} {r['wall_s']:>8.1f} {n_vol / r['wall_s']:>10.3f} {r['tasks'] / r['wall_s']:>8.3f} "
              f"{r['wall_s'] / r['tasks']:>7.2f} {r['peak_rss_gib']:>16.3f} {100 * r['engine_share']:>9.1f} "
              f"{r['read_s']:>8.1f} {r['engine_s']:>9.1f}")
    if len(results) >= 2:
        speedup = results[0]["wall_s"] / results[1]["wall_s"]
        print(f"\nspeed-up {results[0]['workers']} -> {results[1]['workers']} workers: {speedup:.2f} (target >= 1.7)")
    peak = max(r["peak_rss_gib"] for r in results)
    share = min(r["engine_share"] for r in results)
    print(f"peak memory per worker: {peak:.3f} GiB (target < 1 GiB); engine share: {100 * share:.1f} % "
          "(target >= 70 %)")
    per_eval = results[0]["wall_s"] / results[0]["tasks"]  # seconds per case x model on one worker
    n = 131 * 4
    two = n * per_eval / (speedup if len(results) >= 2 else 1)
    print(f"extrapolation from {per_eval:.2f} s per case x model on one worker: 131 LiTS volumes x 4 models = {n} "
          f"evaluations: {two / 60:.1f} min on 2 cores (measured speed-up), {n * per_eval / 64 / 60:.1f} min on a "
          "64-core Dask cluster (ideal scaling, plus start-up)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
