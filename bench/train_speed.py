"""Training speed of the recipe's options on this machine: faces per second and
the epoch time they imply, each option in a fresh process.

    python -m bench.train_speed [--data PATH] [--steps 120]
    python -m bench.train_speed --only "batch 128" "jax"   # some rows only
    python -m bench.train_speed --only "per block" crops --rounds 3   # A/B on a shared machine

Each row trains the project's own model (`build_model` + `compile_model` of
emotion_recognition.py, the shipped recipe's defaults unless the row says
otherwise) on the FER-2013 training faces for --steps batches and reports the
median step after a warm-up, so compilation and start-up do not count. Not a
test: run it by hand, with nothing else running. The JAX rows need `pip install
jax` (they are skipped, with the reason, without it). The "virtual devices" rows
split the CPU into two XLA devices and train data-parallel (`--devices`), as on a
machine with two GPUs: `--only virtual` runs just those. On a virtual machine whose
speed drifts (another tenant takes a core now and then), compare options with
`--rounds N`: the rows run in turn, N times, and the table gives each row's median
and range, so that a slow phase does not fall on one row only.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_DATA = ROOT.parent / "shared" / "fer2013" / "fer2013.csv.xz"

# Two devices on a busy 2-core CPU can reach a collective more than XLA's default 40 s
# apart (it then aborts the process): allow 10 minutes. XLA's CPU client runs every
# device's computations on one pool of as many threads as cores; with two devices on
# two cores a launch waiting for its turn can hold the thread the other device needs
# to reach the all-reduce, and both wait for ever: PJRT_NPROC enlarges the pool.
TWO_CPU_DEVICES = {
    "KERAS_BACKEND": "jax",
    "PJRT_NPROC": "4",
    "XLA_FLAGS": "--xla_force_host_platform_device_count=2 "
    "--xla_cpu_collective_call_terminate_timeout_seconds=600 "
    "--xla_cpu_collective_timeout_seconds=600",
}
# row name -> (environment, emotion_recognition.py flags)
ROWS = {
    "defaults (tensorflow, auto precision)": ({}, []),
    "float32": ({}, ["--precision", "float32"]),
    "mixed_bfloat16": ({}, ["--precision", "mixed_bfloat16"]),
    "jax backend, float32": ({"KERAS_BACKEND": "jax"}, ["--precision", "float32"]),
    "jax backend, mixed_bfloat16": ({"KERAS_BACKEND": "jax"}, ["--precision", "mixed_bfloat16"]),
    "jax, 1 of 2 virtual devices": (TWO_CPU_DEVICES, ["--precision", "float32", "--devices", "1"]),
    "jax, 2 virtual devices": (TWO_CPU_DEVICES, ["--precision", "float32", "--devices", "2"]),
    "1 thread per op": ({"TF_NUM_INTRAOP_THREADS": "1"}, []),
    "ops 1 at a time": ({"TF_NUM_INTEROP_THREADS": "1"}, []),
    "batch 32": ({}, ["--batch-size", "32"]),
    "batch 128": ({}, ["--batch-size", "128"]),
    "batch 256": ({}, ["--batch-size", "256"]),
    "base filters 16": ({}, ["--base-filters", "16"]),
    "base filters 24": ({}, ["--base-filters", "24"]),
    "base filters 48": ({}, ["--base-filters", "48"]),
    "base filters 64": ({}, ["--base-filters", "64"]),
    "3 conv blocks": ({}, ["--conv-blocks", "3"]),
    "44 px crops": ({}, ["--crop", "44"]),
    "40 px crops": ({}, ["--crop", "40"]),
    "fast preset": ({}, ["--preset", "fast"]),
}


def measure(flags: list[str], data_path: str, steps: int) -> dict:
    """Train `steps` batches in this process; the median step time and what it implies."""
    import contextlib

    import numpy as np

    import emotion_recognition as er
    import fer_data
    import fer_fit

    cfg = er.parse_args(flags)
    keras = er.fer.keras
    keras.mixed_precision.set_global_policy(er.choose_precision(cfg.precision))
    distribution = er.choose_devices(cfg.devices, cfg.batch_size)
    data = fer_data.load_data(fer_data.find_data(data_path), cfg)
    faces, labels = data["train"]
    times = []
    timer = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: times.append(time.perf_counter())
    )
    with distribution.scope() if distribution else contextlib.nullcontext():
        model = er.build_model(faces, cfg)
        er.compile_model(model, cfg, len(faces))
        split = distribution.device_mesh.devices.size if distribution else 1
        batches = fer_fit.FaceBatches(faces, labels, cfg.batch_size, seed=cfg.seed, split=split)
        model.fit(batches, epochs=1, steps_per_epoch=steps, callbacks=[timer], verbose=0)
    step = float(np.median(np.diff(times[steps // 4 :])))  # after the warm-up
    return {
        "precision": keras.mixed_precision.global_policy().name,
        "backend": keras.backend.backend(),
        "faces_per_second": cfg.batch_size / step,
        "epoch_seconds": len(faces) / cfg.batch_size * step,
        "parameters": model.count_params(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="FER-2013 CSV")
    parser.add_argument("--steps", type=int, default=120, help="batches timed per row")
    parser.add_argument("--only", nargs="*", help="rows whose name contains one of these")
    parser.add_argument("--rounds", type=int, default=1, help="run the rows in turn, N times")
    parser.add_argument("--row", help=argparse.SUPPRESS)  # internal: measure one row
    args = parser.parse_args()
    if args.row:
        print(json.dumps(measure(ROWS[args.row][1], args.data, args.steps)))
        return

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"{args.steps} batches per row, median step after a warm-up"
          + (f"; rows in turn, {args.rounds} rounds: median (range)" if args.rounds > 1 else "")
          + "\n")  # fmt: skip
    header = ("option", "backend", "precision", "faces/s", "epoch (s)", "parameters")
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header), flush=True)
    rows = [name for name in ROWS if not args.only or any(word in name for word in args.only)]
    results = {name: [] for name in rows}
    for _ in range(args.rounds):
        for name in rows:
            results[name].append(measure_in_a_fresh_process(name, args))
            if args.rounds == 1:
                print_row(name, results[name])
    if args.rounds > 1:
        for name in rows:
            print_row(name, results[name])


def measure_in_a_fresh_process(name: str, args: argparse.Namespace) -> dict | str:
    """The row's figures, or why there are none."""
    env = ROWS[name][0]
    if env.get("KERAS_BACKEND") == "jax" and importlib.util.find_spec("jax") is None:
        return "skipped: JAX is not installed (pip install jax)"
    result = subprocess.run(
        [sys.executable, "-m", "bench.train_speed", "--row", name, "--data", args.data,
         "--steps", str(args.steps)],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env},
        cwd=ROOT,
    )  # fmt: skip
    if result.returncode != 0:
        return f"failed: {result.stderr.strip().splitlines()[-1][:150]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def print_row(name: str, results: list[dict | str]) -> None:
    figures = [result for result in results if isinstance(result, dict)]
    if not figures:
        print(f"| {name} | {results[0]} |", flush=True)
        return

    def spread(key: str, form: str) -> str:
        values = [figure[key] for figure in figures]
        if len(values) == 1:
            return format(values[0], form)
        return f"{statistics.median(values):{form}} ({min(values):{form}}-{max(values):{form}})"

    row = figures[0]
    print(f"| {name} | {row['backend']} | {row['precision']} | "
          f"{spread('faces_per_second', '.0f')} | {spread('epoch_seconds', '.0f')} | "
          f"{row['parameters']:,} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
