"""Training and inference throughput of the four model families (images per second), on this machine.

Times one optimiser step (forward, Dice+CE loss, backward, AdamW) on a batch of random square patches, and
inference (no gradients) on whole slices, for each family and named size, after warm-up steps. Uses the CPU
threads available (``helpers.compute.runtime.task_threads``) or ``--threads``; on a GPU (``--device cuda``) with
bfloat16 autocast as in training. Prints a table and writes it as CSV.

    python benchmarks/bench_training.py --sizes smoke default --out build/bench/training_throughput.csv

Not a test: numbers depend on the machine and its load (report the load average with them).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd
import torch

from helpers.learning import models, protocol, training
from helpers.compute import runtime
from helpers.base.io import write_csv


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    fn()
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - started) / repeats


def bench(name: str, size: str, *, patch: int, batch: int, channels: int, repeats: int, device: str) -> dict:
    torch.manual_seed(0)
    net = models.build_model(name, in_channels=channels, size=size).to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    loss_fn = training._loss_fn(protocol.TrainingProtocol())
    x = torch.randn(batch, channels, patch, patch, device=device)
    y = torch.rand(batch, 1, patch, patch, device=device) > 0.9
    ignore = torch.zeros_like(y)
    amp = device.startswith("cuda")

    def step():
        with training._autocast(device, amp):
            logits = net(x)
        loss = loss_fn(logits.float(), y, ignore)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if amp:
            torch.cuda.synchronize()

    train_s = _time(step, repeats)
    image = np.random.default_rng(0).normal(size=(batch, channels, patch, patch)).astype(np.float32)
    multiple, min_size = models.input_multiple(name, size), models.min_input_size(name, size)

    def infer():
        training.predict_stack(net, image, multiple=multiple, min_size=min_size, batch_size=batch, device=device,
                               amp=amp)

    infer_s = _time(infer, repeats)
    return {
        "model": name, "size": size, "device": device, "threads": torch.get_num_threads(), "patch": patch,
        "batch": batch, "params": models.count_parameters(net), "train_images_per_second": batch / train_s,
        "inference_images_per_second": batch / infer_s, "seconds_per_step": train_s,
    }  # fmt: skip


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["smoke", "default"])
    parser.add_argument("--models", nargs="+", default=list(models.MODEL_NAMES))
    parser.add_argument("--patch", type=int, nargs="+", default=[64, 96], help="one per size, or one for all")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default=runtime.default_device())
    parser.add_argument("--out", default=None, help="CSV path (default: print only)")
    args = parser.parse_args(argv)
    patches = args.patch if len(args.patch) == len(args.sizes) else args.patch[:1] * len(args.sizes)
    rows = []
    with runtime.torch_settings(num_threads=args.threads, deterministic=False):
        for size, patch in zip(args.sizes, patches):
            for name in args.models:
                rows.append(bench(name, size, patch=patch, batch=args.batch, channels=args.channels,
                                  repeats=args.repeats, device=args.device))  # fmt: skip
    table = pd.DataFrame(rows)
    table["load_average_1min"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(table.round(3).to_string(index=False))
    if args.out:
        write_csv(table, args.out)
    return table


if __name__ == "__main__":
    main()
