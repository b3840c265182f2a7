"""Training on several devices (Keras' distribution API, JAX backend), tried on a
CPU that XLA splits into two virtual devices."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, SMALL, write_fer_csv

pytestmark = pytest.mark.slow  # make test-all: a training under JAX on two virtual devices

# One process (JAX starts slowly), two trainings as the command line runs them.
TRAIN_ON_1_THEN_2_DEVICES = """
import sys
import keras
import emotion_recognition as er

fit = keras.Model.fit

def fit_and_tell(model, *args, **kwargs):  # where the weights were while training
    history = fit(model, *args, **kwargs)
    print(f"weights on {len(model.trainable_variables[0].value.sharding.device_set)} devices")
    print(f"compiled by XLA: {model.jit_compile}")
    return history

keras.Model.fit = fit_and_tell

flags, out = sys.argv[1:-1], sys.argv[-1]
for devices in ("1", "2"):
    sys.argv = ["emotion_recognition.py", *flags, "--devices", devices,
                "--out-dir", f"{out}/models-{devices}", "--runs", f"{out}/runs"]
    er.main()
"""


def test_two_devices_train_as_one_does(tmp_path: Path):
    pytest.importorskip("jax")
    data = write_fer_csv(tmp_path / "fer2013.csv", per_class=20)
    # bfloat16 on XLA's CPU is emulated and slow to compile: float32 here.
    flags = ["--data", str(data), "--epochs", "3", "--precision", "float32", *SMALL]
    result = subprocess.run(
        [sys.executable, "-c", TRAIN_ON_1_THEN_2_DEVICES, *flags, str(tmp_path)],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
        env={**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3",
             "XLA_FLAGS": "--xla_force_host_platform_device_count=2 "  # on a busy CPU the two
             "--xla_cpu_collective_call_terminate_timeout_seconds=600",  # may meet >40 s apart
             "PJRT_NPROC": "4"},  # XLA's threads: see TWO_CPU_DEVICES in bench/train_speed.py
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "training on 2 devices (cpu:0, cpu:1), 16 faces of every batch each" in result.stdout
    assert result.stdout.count("weights on 1 devices") == 1  # the 1-device run
    assert result.stdout.count("weights on 2 devices") == 1  # copied to both
    # the augmentation layers say they are unfit for XLA (true of TensorFlow only):
    # op by op, a step took 0.68 s on an H200 (notebook/2026-12-04-ferplus.md)
    assert result.stdout.count("compiled by XLA: True") == 2

    logs = {}
    for devices, names in ((1, ["cpu:0"]), (2, ["cpu:0", "cpu:1"])):
        metrics = json.loads((tmp_path / f"models-{devices}" / "metrics.json").read_text())
        assert metrics["keras_backend"] == "jax" and metrics["devices"] == names
        logs[devices] = pd.read_csv(tmp_path / f"models-{devices}" / "training_log.csv")
        assert logs[devices]["loss"].iloc[-1] < logs[devices]["loss"].iloc[0]  # it learns
    # Each device takes half of every batch and the gradients are averaged over both:
    # the same steps as on one device, up to the order of float additions.
    for column in ("loss", "val_loss"):
        np.testing.assert_allclose(logs[2][column], logs[1][column], rtol=1e-3)
