"""Training end to end on a small learnable task, and the saved model's contract:
raw 0-255 input, identical predictions after a save/load round trip, and saves
that never break the model already there."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    ROOT,
    SMALL,
    assert_one_line_error,
    assert_plain_keras_loads,
    run_script,
    synthetic_faces,
    write_fer_csv,
)

import emotion_recognition as er
import fer_calibration
import fer_common as fer


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(data file, model folder) of one short training run through the CLI."""
    root = tmp_path_factory.mktemp("trained")
    data = write_fer_csv(root / "fer2013.csv", per_class=60)
    result = run_script(
        "emotion_recognition.py", "--data", str(data), "--out-dir", str(root / "models"),
        "--runs", str(root / "runs"), "--epochs", "12", "--learning-rate", "0.003",
        "--precision", "mixed_bfloat16", *SMALL,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return data, root / "models"


def test_training_learns_a_learnable_task_well_above_chance(trained):
    data, models = trained
    metrics = json.loads((models / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.6  # chance: 1/7
    assert metrics["val_accuracy"] > 0.6
    assert metrics["data_sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert metrics["config"]["epochs"] == 12 and 1 <= metrics["epochs_run"] <= 12
    assert set(metrics["per_class"]) == set(fer.EMOTIONS)
    assert np.array(metrics["confusion_matrix"]).sum() == 84  # the PrivateTest rows
    assert metrics["precision"] == "mixed_bfloat16"
    ece, ece_uncalibrated = (
        metrics[k] for k in ("test_calibration_error", "test_calibration_error_uncalibrated")
    )
    assert ece <= ece_uncalibrated + 0.02
    assert 0 <= metrics["min_confidence"] <= 1  # the demo's "uncertain" line, found on val
    plots = ["confusion_matrix.png", "reliability_diagram.png", "training_curves.png"]
    for name in ["fer.json", "fer.h5", "fer.keras", *plots]:
        assert (models / name).stat().st_size > 0, name
    assert "bfloat16" not in (models / "fer.json").read_text()  # saved in float32
    assert fer.twin_is_current(models)  # the demo may take fer.tflite without Keras
    assert not list(models.glob(".*")), "temporary files left behind"


def test_evaluate_reproduces_the_saved_test_accuracy(trained):
    data, models = trained
    result = run_script("emotion_recognition.py", "--evaluate", "--data", str(data),
                        "--out-dir", str(models))  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((models / "metrics.json").read_text())
    assert f"test {metrics['test_accuracy']:.2%}" in result.stdout


def test_model_takes_raw_pixels_and_normalises_inside(trained):
    _, models = trained
    model = fer.load_model(models)
    faces = synthetic_faces(per_class=2, seed=5)[0][..., None].astype("float32")
    raw = np.asarray(model(faces, training=False))
    np.testing.assert_allclose(raw.sum(axis=1), 1, atol=1e-5)
    # Each face is standardised inside: the same face in dimmer, flatter light
    # gets the same probabilities; pixels already scaled to 0-1 do not.
    np.testing.assert_allclose(model(10 + 0.5 * faces, training=False), raw, atol=1e-4)
    assert not np.allclose(raw, np.asarray(model(faces / 255, training=False)), atol=1e-3)


def test_save_then_load_gives_identical_predictions(trained, tmp_path: Path):
    _, models = trained
    model = fer.load_model(models)
    fer.save_model(model, tmp_path)
    faces = synthetic_faces(per_class=3, seed=7)[0][..., None].astype("float32")
    expected = np.asarray(model(faces, training=False))
    # Two independent load paths of what training saved agree with each other.
    one_file = fer.load_model(models / "fer.keras")
    np.testing.assert_array_equal(np.asarray(one_file(faces, training=False)), expected)
    for path in (tmp_path, tmp_path / "fer.json", tmp_path / "fer.keras"):
        again = fer.load_model(path)
        np.testing.assert_array_equal(np.asarray(again(faces, training=False)), expected)


@pytest.mark.parametrize("dies_in", ["keras save", "litert export"])
def test_interrupted_save_leaves_the_old_model_intact(
    trained, tmp_path: Path, monkeypatch, dies_in: str
):
    _, models = trained
    old = fer.load_model(models)
    fer.save_model(old, tmp_path)
    faces = synthetic_faces(per_class=2, seed=3)[0][..., None].astype("float32")
    expected = np.asarray(old(faces, training=False))

    new = er.build_model(faces, er.parse_args(SMALL))

    def write_half_then_die(path):
        Path(path).write_bytes(b"half a file")
        raise KeyboardInterrupt

    if dies_in == "keras save":
        monkeypatch.setattr(type(new), "save", lambda self, path, **kw: write_half_then_die(path))
    else:
        monkeypatch.setattr(fer, "_export_litert", lambda model, path: write_half_then_die(path))
    with pytest.raises(KeyboardInterrupt):
        fer.save_model(new, tmp_path)
    monkeypatch.undo()
    for path in (tmp_path, tmp_path / "fer.keras"):
        again = fer.load_model(path)
        np.testing.assert_array_equal(np.asarray(again(faces, training=False)), expected)
    litert = fer.load_model(tmp_path / fer.MODEL_TFLITE).predict_on_batch(faces)
    np.testing.assert_allclose(litert, expected, atol=fer.LITERT_TOLERANCE)
    names = ["fer.h5", "fer.json", "fer.keras", "fer.tflite", fer.TWIN_RECORD]
    assert sorted(p.name for p in tmp_path.iterdir()) == names


@pytest.mark.slow
def test_ctrl_c_during_training_keeps_the_best_epoch_so_far(tmp_path: Path):
    data = write_fer_csv(tmp_path / "fer2013.csv", per_class=20)
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "emotion_recognition.py"), "--data", str(data),
         "--out-dir", str(tmp_path / "models"), "--runs", str(tmp_path / "runs"),
         "--epochs", "500", *SMALL],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        for line in process.stdout:
            if "val_accuracy" in line:  # an epoch has finished
                process.send_signal(signal.SIGINT)
                break
        output = process.communicate(timeout=120)[0]
    finally:
        process.kill()
    assert process.returncode == 0, output[-2000:]
    assert "stopped: keeping the best epoch so far" in output
    metrics = json.loads((tmp_path / "models" / "metrics.json").read_text())
    assert 1 <= metrics["epochs_run"] < 500
    fer.load_model(tmp_path / "models")


@pytest.mark.slow
@pytest.mark.parametrize("schedule, stops_early", [("cosine", False), ("plateau", True)])
def test_only_the_plateau_schedule_stops_early(schedule, stops_early, tmp_path: Path):
    """A learning rate of 0 never improves on the first epoch: --patience 1 ends a
    plateau run at once, while a cosine run (best at its end) runs every epoch."""
    data = write_fer_csv(tmp_path / "fer2013.csv", per_class=20)
    result = run_script(
        "emotion_recognition.py", "--data", str(data), "--out-dir", str(tmp_path / "models"),
        "--runs", str(tmp_path / "runs"), "--epochs", "5", "--patience", "1",
        "--learning-rate", "0", "--lr-schedule", schedule, *SMALL,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    epochs_run = json.loads((tmp_path / "models" / "metrics.json").read_text())["epochs_run"]
    assert (epochs_run < 5) == stops_early, epochs_run


def test_saved_model_loads_in_plain_keras(trained, tmp_path: Path):
    assert_plain_keras_loads(trained[1], tmp_path)


def output_model(bias: np.ndarray):
    """A model whose logits are a face's first 7 pixels plus bias (see `as_faces`)."""
    import keras

    model = keras.Sequential([
        keras.Input((fer.IMAGE_SIZE, fer.IMAGE_SIZE, 1)),
        keras.layers.Flatten(),
        keras.layers.Dense(7, "softmax", name="emotion"),
    ])  # fmt: skip
    kernel = np.zeros((fer.IMAGE_SIZE**2, 7), "float32")
    kernel[np.arange(7), np.arange(7)] = 1
    model.get_layer("emotion").set_weights([kernel, bias.astype("float32")])
    return model


def as_faces(logits: np.ndarray) -> np.ndarray:
    """Faces whose top row starts with the logits and ends with them mirrored, so that
    every test-time view (a face and its mirror image) gives `output_model` the same."""
    faces = np.zeros((len(logits), fer.IMAGE_SIZE, fer.IMAGE_SIZE, 1), "float32")
    faces[:, 0, :7, 0] = logits
    faces[:, 0, -7:, 0] = logits[:, ::-1]
    return faces


def test_prior_correction_undoes_a_bias_toward_frequent_classes():
    counts = np.array([3000, 50, 500, 500, 500, 500, 500])
    log_share = np.log(counts / counts.sum())
    model = output_model(log_share)  # its bias learned the class shares: the rare class loses
    labels = np.repeat(np.arange(7), 30)
    inputs = as_faces(2 * np.eye(7)[labels] + np.random.default_rng(0).normal(0, 0.7, (210, 7)))
    data = {"train": (None, np.repeat(np.arange(7), counts)), "val": (inputs, labels)}
    before = model.predict(inputs, verbose=0)

    off = fer_calibration.calibrate(model, data, 0, scale_temperature=False)
    np.testing.assert_allclose(model.predict(inputs, verbose=0), before, atol=1e-6)
    chosen = fer_calibration.calibrate(model, data, scale_temperature=False)
    after = model.predict(inputs, verbose=0).argmax(axis=1)

    tau = chosen["prior_correction"]
    assert off["prior_correction"] == 0 and tau >= 0.75
    macro_f1 = chosen["val_macro_f1_by_prior_correction"]
    assert macro_f1[tau] > macro_f1[0.0]
    np.testing.assert_array_equal(after, (np.log(before) - tau * log_share).argmax(axis=1))
    rare = labels == 1
    assert np.mean(after[rare] == 1) > np.mean(before.argmax(axis=1)[rare] == 1) + 0.3


def test_temperature_scaling_fixes_an_overconfident_model_and_keeps_its_labels():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 7, 2000)
    # Logits that rank the true class first only about 60 % of the time, scaled up 6x:
    # the model says ~99 % where it is right ~60 % of the time.
    logits = 6 * (1.2 * np.eye(7)[labels] + rng.normal(0, 1, (2000, 7)))
    inputs = as_faces(logits)
    model = output_model(np.zeros(7))
    before = model.predict(inputs, verbose=0)
    data = {"train": (None, np.arange(7)), "val": (inputs[:1000], labels[:1000])}

    result = fer_calibration.calibrate(model, data, 0)
    after = model.predict(inputs, verbose=0)

    assert result["temperature"] > 3
    np.testing.assert_array_equal(after.argmax(axis=1), before.argmax(axis=1))
    held_out = slice(1000, None)  # faces the temperature was not fitted on
    ece_before = fer_calibration.calibration_error(before[held_out], labels[held_out])
    ece_after = fer_calibration.calibration_error(after[held_out], labels[held_out])
    assert ece_before > 0.2 and ece_after < 0.05


def test_calibration_error_of_known_cases():
    labels = np.array([0, 0, 0, 0])
    sure_and_right = np.tile(np.eye(7)[0], (4, 1))
    assert fer_calibration.calibration_error(sure_and_right, labels) == pytest.approx(0)
    # 70 % confident on every face, right on half of them: a gap of 0.2
    probabilities = np.tile([0.7, 0.3, 0, 0, 0, 0, 0], (4, 1))
    assert fer_calibration.calibration_error(
        probabilities, np.array([0, 0, 1, 1])
    ) == pytest.approx(0.2)


# --------------------------------------------------------------------------
# Model files that are missing, corrupt or mismatched: one clear line
# --------------------------------------------------------------------------


def test_evaluate_without_a_model_says_to_train_first(tmp_path: Path):
    result = run_script("emotion_recognition.py", "--evaluate", "--out-dir", str(tmp_path))
    assert_one_line_error(result, "missing", "python emotion_recognition.py")


def test_corrupt_model_files(trained, tmp_path: Path):
    _, models = trained
    fer.save_model(fer.load_model(models), tmp_path)
    (tmp_path / "fer.h5").write_bytes(b"\x89HDF garbage")
    with pytest.raises(fer.UserError, match=r"fer\.h5"):
        fer.load_model(tmp_path)
    (tmp_path / "fer.json").write_text("{not json")
    with pytest.raises(fer.UserError, match="not a valid Keras model"):
        fer.load_model(tmp_path)
    (tmp_path / "fer.keras").write_bytes(b"PK garbage")
    with pytest.raises(fer.UserError, match="cannot load"):
        fer.load_model(tmp_path / "fer.keras")


def test_json_and_weights_of_different_models(trained, tmp_path: Path):
    _, models = trained
    other = er.build_model(np.zeros((2, 48, 48, 1)), er.parse_args(["--base-filters", "4"]))
    fer.save_model(other, tmp_path)
    (tmp_path / "fer.h5").write_bytes((models / "fer.h5").read_bytes())
    with pytest.raises(fer.UserError, match="does not fit"):
        fer.load_model(tmp_path)


def test_model_files_cannot_run_code(tmp_path: Path):
    import keras

    inputs = keras.Input((48, 48, 1))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)
    (tmp_path / "fer.json").write_text(keras.Model(inputs, outputs).to_json())
    (tmp_path / "fer.h5").write_bytes(b"")
    with pytest.raises(fer.UserError, match="not a valid Keras model"):
        fer.load_model(tmp_path)


def test_a_preset_sets_its_settings_and_flags_still_win():
    fast = er.PRESETS["fast"]
    assert fast, "the fast preset changes nothing"
    cfg = er.parse_args(["--preset", "fast"])
    for name, value in fast.items():
        assert getattr(cfg, name) == value, name
    assert er.parse_args(["--preset", "fast", "--epochs", "3"]).epochs == 3
    assert er.parse_args([]).epochs == er.EPOCHS


@pytest.mark.parametrize("size", ["41", "50", "8"])
def test_a_crop_that_cannot_be_centred_in_the_face_is_refused(size, capsys):
    with pytest.raises(SystemExit):
        er.parse_args(["--crop", size])
    assert f"--crop: invalid even number from 16 to 48 value: '{size}'" in capsys.readouterr().err
    assert er.parse_args(["--crop", "40"]).crop == 40
