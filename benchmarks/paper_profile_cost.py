"""What the ``paper`` profile's training grid costs: counted FLOPs, memory, and GPU hours at a stated throughput.

No GPU is lent to this project's machines, so the paper profile's GPU time cannot be measured here. What can be
measured exactly, on any CPU, is the *work*: this script counts the floating-point operations of one training step
and one validation forward pass of every model family at the ``paper`` size (``torch.utils.flop_counter``, which
counts the matrix multiplications and convolutions of the real MONAI networks; element-wise operations are not
counted, so the counts are a lower bound), and the memory a step needs (parameters, gradients and AdamW's two
moments in float32, plus every tensor autograd saves for the backward pass, measured with
``torch.autograd.graph.saved_tensors_hooks`` in float32: bfloat16 autocast on a GPU roughly halves that part).

From the counts and the paper profile's budget (``profiles/paper.yaml``: 200 epochs, batch 16 x ``gpu_batch_scale``
4 = 64 patches of 128 px, ``steps_per_epoch: null`` = one pass over the training slices, validation on every
slice of the validation cases after each epoch, 3 seeds, 4 families) it prints the total per dataset and the time
at an **assumed** sustained throughput (``--tflops``, default 50 and 200 TFLOP/s, i.e. about 5 % and 20 % of an
H200's dense bfloat16 peak; small 2D U-Nets rarely sustain more, and data loading is not counted). Early stopping
(patience 20) makes the real budget smaller: the totals are upper bounds of the training work.

    python benchmarks/paper_profile_cost.py [--tflops 50 200] [--out build/bench/paper_profile_cost.csv]
"""

from __future__ import annotations

import argparse
import math

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from helpers.learning import models
from helpers.base.io import write_csv

#: The paper profile's data (profiles/paper.yaml) and the split rule of helpers.data.splits (validation: round(0.2 *
#: non-test cases)): training and validation slices, the validation slice size (prepared grid, in-plane), channels.
DATASETS = {
    # 40 training subjects (20 test): 8 validation, 32 training, 48 slices each, 256 x 256
    "wmh": {"train_slices": 32 * 48, "val_slices": 8 * 48, "val_pixels": 256 * 256, "channels": 2},
    # 60 volumes, half for test: 6 validation, 24 training, 64 slices each, 256 x 256
    "lits": {"train_slices": 24 * 64, "val_slices": 6 * 64, "val_pixels": 256 * 256, "channels": 1},
    # 54 training images (27 test): 11 validation, 43 training, 680 x 1024
    "idrid": {"train_slices": 43, "val_slices": 11, "val_pixels": 680 * 1024, "channels": 3},
}
EPOCHS, GPU_BATCH, PATCH, SEEDS = 200, 16 * 4, 128, 3


def _flops(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def _saved_bytes(fn) -> int:
    total = 0

    def pack(tensor):
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fn()
    return total


def measure(name: str, channels: int, *, batch: int = 2) -> dict:
    """Counted FLOPs of one training step and one validation forward pass per 128 x 128 patch, and memory."""
    torch.manual_seed(0)
    model = models.build_model(name, in_channels=channels, size="paper")
    x = torch.randn(batch, channels, PATCH, PATCH)

    def train_step():
        model.zero_grad()
        model(x).float().mean().backward()

    def forward():
        with torch.no_grad():
            model(x)

    n_params = sum(p.numel() for p in model.parameters())
    return {
        "model": name,
        "parameters": n_params,
        "train_gflop_per_patch": _flops(train_step) / batch / 1e9,
        "forward_gflop_per_patch": _flops(forward) / batch / 1e9,
        "activation_mib_per_patch": _saved_bytes(lambda: model(x).float().mean()) / batch / 2**20,
        "state_mib": 4 * n_params * 4 / 2**20,  # weights, gradients, AdamW's two moments (float32)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tflops", type=float, nargs="+", default=[50.0, 200.0])
    parser.add_argument("--out", default="build/bench/paper_profile_cost.csv")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    per_model = {(name, c): measure(name, c) for c in sorted({d["channels"] for d in DATASETS.values()})
                 for name in models.MODEL_NAMES}
    rows = []
    for dataset, d in DATASETS.items():
        steps_per_epoch = math.ceil(d["train_slices"] / GPU_BATCH)
        for name in models.MODEL_NAMES:
            m = per_model[(name, d["channels"])]
            train = EPOCHS * steps_per_epoch * GPU_BATCH * m["train_gflop_per_patch"]
            validation = EPOCHS * d["val_slices"] * d["val_pixels"] / PATCH**2 * m["forward_gflop_per_patch"]
            row = {"dataset": dataset, "model": name, "parameters": m["parameters"],
                   "steps": EPOCHS * steps_per_epoch, "train_gflop_per_patch": round(m["train_gflop_per_patch"], 3),
                   "pflop_per_seed": round((train + validation) / 1e6, 2),
                   "step_memory_gib_fp32": round((m["state_mib"] + GPU_BATCH * m["activation_mib_per_patch"])
                                                 / 1024, 2)}
            for tflops in args.tflops:
                row[f"gpu_hours_3_seeds_at_{tflops:g}_tflops"] = round(
                    SEEDS * (train + validation) / (tflops * 1e3) / 3600, 3)
            rows.append(row)
    table = pd.DataFrame(rows)
    write_csv(table, args.out)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False))
        hours = [c for c in table.columns if c.startswith("gpu_hours")]
        print("\nper dataset (4 models x 3 seeds, upper bound without early stopping):")
        print(table.groupby("dataset", sort=False)[hours + ["pflop_per_seed"]].sum().round(2).to_string())
        print(f"largest step memory: {table['step_memory_gib_fp32'].max():.2f} GiB (float32; bfloat16 autocast "
              "stores about half of the activations)")


if __name__ == "__main__":
    main()
