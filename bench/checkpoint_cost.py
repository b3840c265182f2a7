"""What the resume checkpoint costs each epoch: the time to write it (weights and
optimizer state, synced to the disk, then state.json by an atomic rename) and its
size, for the recipe's model and for the fast preset's.

    python -m bench.checkpoint_cost [--writes 10] [--epoch-seconds 159]

Writes into a temporary folder on the disk of the current directory (where runs/
lives); no data set is needed (the weights' values do not change the cost). The
share of an epoch uses --epoch-seconds (the README's epoch time of the defaults on
the development machine, or yours from bench/train_speed.py). Not a test: run it
by hand, with nothing else running.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

import emotion_recognition as er
import fer_runs
from bench.accuracy import print_table

ROOT = Path(__file__).resolve().parent.parent

# row name -> emotion_recognition.py flags
ROWS = {"defaults": [], "--preset fast": ["--preset", "fast"]}


def measure(flags: list[str], writes: int) -> dict:
    """Median time of `writes` epoch checkpoints of the model `flags` build."""
    cfg = er.parse_args(flags)
    faces = np.random.default_rng(0).integers(0, 256, (256, 48, 48, 1), dtype=np.uint8)
    model = er.build_model(faces, cfg)
    er.compile_model(model, cfg, 28709)
    model.optimizer.build(model.trainable_variables)  # as after the first step
    with tempfile.TemporaryDirectory(dir=ROOT) as runs:
        run = fer_runs.Run.start(runs, er.settings(cfg), "no data", model)
        seconds = []
        for epoch in range(writes):
            logs = {"val_accuracy": epoch / writes, "loss": 1.0}  # a new best each time
            started = time.perf_counter()
            run.save_epoch(model, epoch, logs, seconds=0.0)
            seconds.append(time.perf_counter() - started)
        size = sum(p.stat().st_size for p in run.folder.iterdir())
    return {"parameters": model.count_params(), "seconds": float(np.median(seconds)), "size": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=10, help="checkpoints timed per row")
    parser.add_argument("--epoch-seconds", type=float, default=159, help="for the share")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Keras {er.fer.keras.__version__} ({er.fer.keras.backend.backend()}); median of "
          f"{args.writes} checkpoint writes\n")  # fmt: skip
    rows = []
    for name, flags in ROWS.items():
        row = measure(flags, args.writes)
        rows.append([
            name, f"{row['parameters']:,}", f"{row['size'] / 1e6:.1f} MB",
            f"{row['seconds'] * 1000:.0f} ms", f"{row['seconds'] / args.epoch_seconds:.2%}",
        ])  # fmt: skip
    header = ["model", "parameters", "run folder", "checkpoint write", "of an epoch"]
    header[-1] += f" of {args.epoch_seconds:g} s"
    print_table(header, rows)


if __name__ == "__main__":
    main()
