"""Benchmark: our image-level metrics + lesion table against a floor and against MONAI 1.6.1, on three cases.

Cases (synthetic, fixed seed; a prediction with shifted, eroded, dilated, merged and missed lesions and false
positives):

- ``wmh``: WMH-sized, 48 x 256 x 256 voxels of 3 x 1 x 1 mm, about 60 lesions;
- ``idrid``: IDRiD full size, 2848 x 4288 pixels, about 300 lesions (pixel units);
- ``lits``: LiTS-sized, 200 x 512 x 512 voxels of 2.5 x 0.8 x 0.8 mm, about 10 tumours.

Printed per case:

- **ours**: ``evaluate_case_and_lesions`` (every image-level metric and the full lesion table in one call), best
  of ``--repeats``; also the same numbers from the two separate calls ``evaluate_case`` + ``evaluate_lesions``;
  peak memory above the two input masks, measured as the process's peak resident set size
  (``VmHWM``, reset through ``/proc/self/clear_refs`` after the masks exist) in a fresh child process, so
  it counts every allocation (numpy, cc3d, scipy), and also numpy's share as ``tracemalloc`` sees it;
- **floor**: the work no engine can avoid, on the same arrays: finding the masks' bounding box and labelling
  both masks (``connected-components-3d``), boundary extraction of both by face-neighbour lookup, and one
  k-d tree per direction over the boundary voxels with its queries (the image-level surface distances);
- **MONAI**, done the way a user would: per-lesion masks built once and timed (each lesion, and the
  predicted components overlapping it restricted to its region of influence from one
  ``scipy.ndimage.distance_transform_edt`` with indices), the three image-level calls
  (``compute_hausdorff_distance`` at percentile 95, ``compute_average_surface_distance(symmetric=True)``,
  ``compute_surface_dice``) and one ``compute_hausdorff_distance`` call per detected lesion (HD95; fewer
  numbers than our table holds), torch on one thread, best of ``--monai-repeats``;
- ours / floor, MONAI / ours, and agreement: the largest relative difference where definitions coincide
  (HD95, ASSD, NSD image-level; HD95 per lesion). MONAI returns float32, so about 1e-7.

Run: ``python benchmarks/bench_metrics.py [--cases wmh idrid lits] [--repeats 3] [--monai-repeats 3]``.
Timings are wall-clock on whatever else the machine is doing; report the load with the numbers.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
import warnings

import cc3d
import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from helpers.metrics.lesions import evaluate_case_and_lesions, evaluate_lesions, label_lesions
from helpers.metrics import evaluate_case

TOLERANCE = 1.45  # mm (pixels for IDRiD); not a grid distance, so float32 rounding cannot flip a count
CASES = {
    "wmh": dict(shape=(48, 256, 256), spacing=(3.0, 1.0, 1.0), n_lesions=60, radius=(1.0, 12.0), n_fp=15),
    "idrid": dict(shape=(2848, 4288), spacing=(1.0, 1.0), n_lesions=300, radius=(2.0, 25.0), n_fp=40),
    "lits": dict(shape=(200, 512, 512), spacing=(2.5, 0.8, 0.8), n_lesions=10, radius=(6.0, 45.0), n_fp=4),
}


def synthetic_case(name: str, seed: int = 0):
    """Reference and prediction masks: ellipsoids (ellipses in 2D) drawn in local windows."""
    spec = CASES[name]
    shape, spacing = spec["shape"], np.asarray(spec["spacing"])
    ndim = len(shape)
    rng = np.random.default_rng(seed)
    ref = np.zeros(shape, bool)
    pred = np.zeros(shape, bool)

    def blob(centre, radii):
        """Window slices and the ellipsoid inside them (radii in voxels)."""
        lo = [max(int(c - r) - 1, 0) for c, r in zip(centre, radii)]
        hi = [min(int(c + r) + 2, n) for c, r, n in zip(centre, radii, shape)]
        grids = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi))]
        inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii)) <= 1.0
        return tuple(slice(a, b) for a, b in zip(lo, hi)), inside

    for _ in range(spec["n_lesions"]):
        radius_mm = rng.uniform(*spec["radius"], size=ndim)
        radii = np.maximum(radius_mm / spacing, 0.6)
        if ndim == 3:
            radii[0] = max(min(radii[0], rng.uniform(0.6, 0.3 * shape[0])), 0.6)
        centre = [rng.uniform(r + 2, n - r - 2) for r, n in zip(radii, shape)]
        window, inside = blob(centre, radii)
        ref[window] |= inside
        if rng.random() < 0.15:  # missed
            continue
        shift = rng.integers(-2, 3, size=ndim)
        if ndim == 3:
            shift[0] = 0
        change = rng.random()
        grown = radii * (1.25 if change < 0.3 else 0.8 if change < 0.5 else 1.0)
        window, inside = blob([c + s for c, s in zip(centre, shift)], np.maximum(grown, 0.6))
        pred[window] |= inside
    for _ in range(spec["n_fp"]):  # false positives
        centre = [rng.integers(3, n - 3) for n in shape]
        pred[tuple(slice(c - 1, c + 2) for c in centre)] = True
    return ref, pred, tuple(spec["spacing"])


# ------------------------------------------------------------------------------------------- three contenders
def ours(ref, pred, spacing):
    """One call: every image-level metric and the full lesion table."""
    return evaluate_case_and_lesions(ref, pred, spacing=spacing, tolerance=TOLERANCE)


def ours_two_calls(ref, pred, spacing):
    """The same numbers from the two separate public calls (crops, labels and boundaries found twice)."""
    case = evaluate_case(ref, pred, spacing=spacing, tolerance=TOLERANCE)
    table = evaluate_lesions(ref, pred, spacing=spacing, tolerance=TOLERANCE)
    return case, table


def floor(ref, pred, spacing):
    """Bounding box, cc3d labelling of both masks, face-neighbour boundaries, one k-d tree per direction."""
    ndim = ref.ndim
    boxes = []
    for mask in (ref, pred):
        index = [np.flatnonzero(mask.any(axis=tuple(a for a in range(ndim) if a != axis))) for axis in range(ndim)]
        boxes.append([(int(i[0]), int(i[-1]) + 1) for i in index])
    box = tuple(slice(min(a[k][0] for a in boxes) - 1, max(a[k][1] for a in boxes) + 1) for k in range(ndim))
    points = []
    for mask in (ref, pred):
        crop = np.zeros(tuple(s.stop - s.start for s in box), bool)
        inner = tuple(slice(max(s.start, 0), min(s.stop, n)) for s, n in zip(box, mask.shape))
        crop[tuple(slice(i.start - s.start, i.stop - s.start) for i, s in zip(inner, box))] = mask[inner]
        if ndim == 2:
            cc3d.connected_components(crop[None], connectivity=26)
        else:
            cc3d.connected_components(crop, connectivity=26)
        flat = crop.ravel()
        fg = np.flatnonzero(flat)
        strides = [int(np.prod(crop.shape[a + 1:])) for a in range(ndim)]
        inner_voxel = np.ones(fg.size, bool)
        for s in strides:
            inner_voxel &= flat[fg + s]
            inner_voxel &= flat[fg - s]
        edge = fg[~inner_voxel]
        points.append(np.column_stack([c * sp for c, sp in zip(np.unravel_index(edge, crop.shape), spacing)]))
    cKDTree(points[1]).query(points[0])
    cKDTree(points[0]).query(points[1])


def monai_user(ref, pred, spacing):
    """What a MONAI user writes: per-lesion masks once, then the fewest calls for the numbers (timed together)."""
    import torch
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance, compute_surface_dice

    def tensor(mask):
        return torch.from_numpy(mask[None, None].astype(np.float32))

    labels, n = label_lesions(ref)
    pred_labels, _ = label_lesions(pred)
    index = ndimage.distance_transform_edt(labels == 0, sampling=spacing, return_distances=False, return_indices=True)
    owner = labels[tuple(index)]
    del index
    y, y_pred = tensor(ref), tensor(pred)
    kw = dict(include_background=True, spacing=spacing)
    image = {
        "hd95": float(compute_hausdorff_distance(y_pred, y, percentile=95, **kw)[0, 0]),
        "assd": float(compute_average_surface_distance(y_pred, y, symmetric=True, **kw)[0, 0]),
        "nsd": float(compute_surface_dice(y_pred, y, class_thresholds=[TOLERANCE], **kw)[0, 0]),
    }
    lesions = {}
    for i in range(1, n + 1):
        lesion = labels == i
        components = np.unique(pred_labels[lesion])
        components = components[components > 0]
        if components.size == 0:
            continue
        own = np.isin(pred_labels, components) & (owner == i)
        lesions[i] = float(compute_hausdorff_distance(tensor(own), tensor(lesion), percentile=95, **kw)[0, 0])
    return image, lesions


# ------------------------------------------------------------------------------------------- measurement
def best_of(function, repeats, *args):
    times, result = [], None
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        result = function(*args)
        times.append(time.perf_counter() - start)
    return min(times), result


def memory_child(name: str, seed: int) -> dict:
    """Peak memory of ``ours`` above the two input masks, in this (fresh) process."""
    ref, pred, spacing = synthetic_case(name, seed)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as handle:  # resets VmHWM to the current RSS
        handle.write("5")
    status = lambda key: int(next(l.split()[1] for l in open("/proc/self/status") if l.startswith(key)))  # noqa
    baseline = status("VmRSS:")
    ours(ref, pred, spacing)
    rss_peak = status("VmHWM:") - baseline
    tracemalloc.start()
    ours(ref, pred, spacing)
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"rss_mib": rss_peak / 1024, "traced_mib": traced / 2**20, "masks_mib": (ref.nbytes + pred.nbytes) / 2**20}


def relative(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


def run_case(name: str, args) -> None:
    import torch

    torch.set_num_threads(1)
    ref, pred, spacing = synthetic_case(name, args.seed)
    n_ref, n_pred = label_lesions(ref)[1], label_lesions(pred)[1]
    print(f"\n[{name}] shape {ref.shape}, spacing {spacing}, {n_ref} reference lesions, {n_pred} predicted components, "
          f"{int(ref.sum())} / {int(pred.sum())} voxels")
    t_ours, (case, table) = best_of(ours, args.repeats, ref, pred, spacing)
    t_two, _ = best_of(ours_two_calls, args.repeats, ref, pred, spacing)
    t_floor, _ = best_of(floor, args.repeats, ref, pred, spacing)
    memory = json.loads(subprocess.run(
        [sys.executable, __file__, "--memory-child", name, "--seed", str(args.seed)],
        check=True, capture_output=True, text=True).stdout)
    print(f"  ours  (evaluate_case_and_lesions, one call): {t_ours * 1e3:9.1f} ms (best of {args.repeats}); "
          f"peak memory above the two input masks ({memory['masks_mib']:.0f} MiB): {memory['rss_mib']:.0f} MiB RSS "
          f"(numpy under tracemalloc: {memory['traced_mib']:.0f} MiB)")
    print(f"  ours as two calls (evaluate_case, then evaluate_lesions): {t_two * 1e3:9.1f} ms (best of {args.repeats})")
    print(f"  floor (box + cc3d labels + boundaries + k-d queries): {t_floor * 1e3:9.1f} ms (best of {args.repeats})")
    print(f"  ours / floor: {t_ours / t_floor:.2f}x")
    if args.monai_repeats == 0:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_monai, (image, lesions) = best_of(monai_user, args.monai_repeats, ref, pred, spacing)
    rows = table[table["kind"] == "lesion"].set_index("lesion_id")
    worst_image = max(relative(getattr(case, key), value) for key, value in image.items())
    worst_lesion = max((relative(float(rows.loc[i, "hd95"]), value) for i, value in lesions.items()), default=0.0)
    print(f"  MONAI (masks + 3 image-level calls + {len(lesions)} per-lesion HD95 calls, 1 thread): "
          f"{t_monai * 1e3:9.1f} ms (best of {args.monai_repeats})")
    print(f"  MONAI / ours: {t_monai / t_ours:.1f}x")
    print(f"  agreement (max relative difference): image level {worst_image:.1e}, per-lesion HD95 {worst_lesion:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--monai-repeats", type=int, default=3, help="0 skips MONAI")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, args.seed)))
        return
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for name in args.cases:
        run_case(name, args)


if __name__ == "__main__":
    main()
