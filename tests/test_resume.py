"""Training that survives a crash: a run killed (kill -9) between two checkpoints,
or in the middle of writing one, goes on with --resume and ends as the uninterrupted
run does; resuming with other data or another architecture is refused in one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, SMALL, assert_one_line_error, run_script, synthetic_faces, write_fer_csv

import emotion_recognition as er
import fer_common as fer
import fer_fit
import fer_runs

EPOCHS = 4


def training(data: Path, root: Path, *extra: str) -> list[str]:
    """The command line of a short training run writing under `root`."""
    return [
        "emotion_recognition.py", "--data", str(data), "--out-dir", str(root / "models"),
        "--runs", str(root / "runs"), "--epochs", str(EPOCHS), *SMALL, *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[Path, Path]:
    """(data file, output root) of a run that was never interrupted."""
    root = tmp_path_factory.mktemp("uninterrupted")
    data = write_fer_csv(root / "fer2013.csv", per_class=20)
    result = run_script(*training(data, root))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return data, root


def kill_in_epoch(command: list[str], epoch: int, wrapper: str | None = None) -> int:
    """Start a training run and kill -9 it as soon as `epoch` (1-based) begins, so
    after the checkpoint of the epoch before; returns the epochs it had finished."""
    python = [sys.executable, "-c", wrapper] if wrapper else [sys.executable]
    process = subprocess.Popen(
        [*python, str(ROOT / command[0]), *command[1:]],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        for line in process.stdout:
            if line.startswith(f"Epoch {epoch}/"):
                process.send_signal(signal.SIGKILL)  # nothing of the script runs after
                break
        output = process.communicate(timeout=300)[0]
    finally:
        process.kill()
    assert process.returncode == -signal.SIGKILL, output[-3000:]
    (state,) = Path(command[command.index("--runs") + 1]).glob(f"*/{fer_runs.STATE}")
    return json.loads(state.read_text())["epoch"]


def assert_ends_as_uninterrupted(root: Path, uninterrupted_root: Path, resumed_output: str):
    """The same epoch log (each epoch once), best epoch, test figures and model."""
    models, expected = root / "models", uninterrupted_root / "models"
    log = pd.read_csv(models / "training_log.csv")
    assert log["epoch"].tolist() == list(range(EPOCHS)), resumed_output[-3000:]
    # The same batches, augmentation, dropout, optimizer state and learning rate
    # after the resume give the same numbers (up to float rounding).
    pd.testing.assert_frame_equal(log, pd.read_csv(expected / "training_log.csv"), rtol=1e-3)
    metrics, reference = (json.loads((m / "metrics.json").read_text()) for m in (models, expected))
    for key in ("epochs_run", "best_epoch", "test_accuracy", "val_accuracy", "prior_correction"):
        assert metrics[key] == pytest.approx(reference[key], rel=1e-3), key
    assert sorted(p.name for p in models.iterdir()) == sorted(p.name for p in expected.iterdir())
    faces = synthetic_faces(per_class=2, seed=9)[0][..., None].astype("float32")
    np.testing.assert_allclose(
        fer.load_model(models).predict(faces, verbose=0),
        fer.load_model(expected).predict(faces, verbose=0),
        atol=1e-3,
    )
    (run,) = (root / "runs").iterdir()  # the resumed run, not a new one
    assert {p.name for p in run.iterdir()} <= {
        fer_runs.STATE,
        f"epoch-{EPOCHS:04d}.weights.h5",
        f"epoch-{metrics['best_epoch']:04d}.weights.h5",
    }


@pytest.mark.slow
def test_a_killed_run_resumes_and_ends_as_the_uninterrupted_run(uninterrupted, tmp_path: Path):
    data, _ = uninterrupted
    finished = kill_in_epoch(training(data, tmp_path), epoch=3)
    assert 2 <= finished < EPOCHS
    result = run_script("emotion_recognition.py", "--runs", str(tmp_path / "runs"), "--resume")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"after epoch {finished}" in result.stdout
    assert_ends_as_uninterrupted(tmp_path, uninterrupted[1], result.stdout)


# Runs emotion_recognition.py with Keras' weights writer dying (kill -9, as a power
# cut or the out-of-memory killer would) halfway through the third epoch's checkpoint.
DIE_IN_CHECKPOINT_WRITE = """
import os, runpy, signal, sys
from pathlib import Path
import keras

save_weights = keras.Model.save_weights

def save_half_then_die(self, filepath, *args, **kwargs):
    if Path(filepath).name == "epoch-0003.weights.h5":
        Path(filepath).write_bytes(b"half a checkpoint")
        os.kill(os.getpid(), signal.SIGKILL)
    return save_weights(self, filepath, *args, **kwargs)

keras.Model.save_weights = save_half_then_die
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.slow
def test_a_kill_during_a_checkpoint_write_leaves_the_previous_one(uninterrupted, tmp_path: Path):
    data, _ = uninterrupted
    command = training(data, tmp_path)
    finished = kill_in_epoch(command, epoch=EPOCHS + 1, wrapper=DIE_IN_CHECKPOINT_WRITE)
    assert finished == 2  # the half-written third checkpoint does not count
    (run,) = (tmp_path / "runs").iterdir()
    assert (run / "epoch-0003.weights.h5").read_bytes() == b"half a checkpoint"
    result = run_script("emotion_recognition.py", "--resume", str(run))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert_ends_as_uninterrupted(tmp_path, uninterrupted[1], result.stdout)


def test_resuming_with_other_data_is_refused(uninterrupted, tmp_path: Path):
    _, root = uninterrupted
    other = write_fer_csv(tmp_path / "other.csv", per_class=20, seed=1)
    result = run_script(
        "emotion_recognition.py", "--runs", str(root / "runs"), "--resume", "--data", str(other)
    )
    assert_one_line_error(result, "other data", "other.csv")


def test_resuming_another_architecture_is_refused(uninterrupted):
    _, root = uninterrupted
    result = run_script(
        "emotion_recognition.py", "--runs", str(root / "runs"), "--resume", "--base-filters", "16"
    )
    assert_one_line_error(result, "another architecture")


def test_nothing_to_resume(tmp_path: Path):
    with pytest.raises(fer.UserError, match="no run to resume"):
        er.parse_args(["--runs", str(tmp_path), "--resume"])
    with pytest.raises(fer.UserError, match="no training run at"):
        er.parse_args(["--resume", str(tmp_path / "nothing")])
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / fer_runs.STATE).write_text("{half a fi")
    with pytest.raises(fer.UserError, match="cannot read"):
        er.parse_args(["--runs", str(tmp_path), "--resume"])


def test_a_run_with_a_setting_this_version_lacks_is_refused(tmp_path: Path):
    (tmp_path / "old").mkdir()
    settings = {"epochs": 26, "optimizer": "sgd"}  # --optimizer has since left the script
    (tmp_path / "old" / fer_runs.STATE).write_text(json.dumps({"settings": settings}))
    with pytest.raises(fer.UserError, match="trained with --optimizer, which this version"):
        er.parse_args(["--runs", str(tmp_path), "--resume"])


# --------------------------------------------------------------------------
# The checkpoint's bookkeeping, epoch by epoch, across a resume
# --------------------------------------------------------------------------


def tiny_model():
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(7, activation="softmax")])
    model.compile(keras.optimizers.AdamW(1e-3), "categorical_crossentropy")
    model.optimizer.build(model.trainable_variables)
    return model


def epochs(run: fer_runs.Run, model, plateau, scores: dict[int, float]) -> None:
    """What `fit` does around the checkpoint: begin, then each epoch's end."""
    checkpoint = fer_fit.Checkpoint(run, patience=3, plateau=plateau)
    for callback in (plateau, checkpoint):
        callback.set_model(model)
        callback.on_train_begin()
    for epoch, score in scores.items():
        checkpoint.on_epoch_begin(epoch)
        logs = {"val_accuracy": score, "loss": 1.0}
        plateau.on_epoch_end(epoch, logs)
        checkpoint.on_epoch_end(epoch, logs)


def test_best_epoch_early_stopping_and_plateau_count_on_across_a_resume(
    tmp_path: Path, monkeypatch
):
    import keras

    model = tiny_model()
    plateau = keras.callbacks.ReduceLROnPlateau("val_accuracy", patience=2, mode="max")
    run = fer_runs.Run.start(tmp_path, {}, "data checksum", model)
    epochs(run, model, plateau, {0: 0.5, 1: 0.7, 2: 0.6})

    sync = fer_runs.sync

    def die_writing_the_state(path: Path) -> None:
        if path.name.startswith(".state."):  # the fourth epoch's state.json, half written
            path.write_bytes(b'{"epoch": ')
            raise KeyboardInterrupt
        sync(path)

    monkeypatch.setattr(fer_runs, "sync", die_writing_the_state)
    with pytest.raises(KeyboardInterrupt):
        epochs(run, model, plateau, {3: 0.9})
    monkeypatch.undo()

    # A new process: everything from the run folder, fresh model and callbacks.
    model = tiny_model()
    plateau = keras.callbacks.ReduceLROnPlateau("val_accuracy", patience=2, mode="max")
    run = fer_runs.Run.open(str(run.folder), tmp_path)
    assert run.epoch == 3 and run.state["best_epoch"] == 2
    epochs(run, model, plateau, {3: 0.65})
    # The best is still the second epoch (0.7): a fresh ModelCheckpoint would take
    # 0.65; and the plateau counted the third epoch too, so it lowers the rate now.
    assert run.state["best_epoch"] == 2 and not model.stop_training
    assert float(np.asarray(model.optimizer.learning_rate)) == pytest.approx(1e-4)
    epochs(run, model, plateau, {4: 0.6})
    assert model.stop_training  # three epochs without a better one, across the resume
    assert run.finished(epochs=30, patience=3)
    assert [row["epoch"] for row in run.state["log"]] == [0, 1, 2, 3, 4]
    assert sorted(p.name for p in run.folder.iterdir()) == [
        "epoch-0002.weights.h5",
        "epoch-0005.weights.h5",
        fer_runs.STATE,
    ]


def test_a_plateau_run_goes_on_under_the_cosine_schedule(tmp_path: Path):
    """Resuming with --lr-schedule cosine a run that began with "plateau": the
    plateau's counters in the state have no callback to go to, and are left."""
    import keras

    model = tiny_model()
    plateau = keras.callbacks.ReduceLROnPlateau("val_accuracy", patience=2, mode="max")
    run = fer_runs.Run.start(tmp_path, {}, "data checksum", model)
    epochs(run, model, plateau, {0: 0.5})
    assert "plateau" in run.state

    resumed = fer_runs.Run.open(str(run.folder), tmp_path)
    model = tiny_model()
    checkpoint = fer_fit.Checkpoint(resumed, patience=3)  # cosine: no plateau callback
    checkpoint.set_model(model)
    checkpoint.on_train_begin()
    checkpoint.on_epoch_begin(1)
    checkpoint.on_epoch_end(1, {"val_accuracy": 0.6, "loss": 1.0})
    assert resumed.epoch == 2 and resumed.state["best_epoch"] == 2
