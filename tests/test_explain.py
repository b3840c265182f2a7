"""What the model looked at and when it is not sure: Grad-CAM heat maps (TensorFlow
and JAX), drawn where the face was cut from, the "uncertain" label, the raw and
smoothed probabilities in the log, and the uncertain time in the summary."""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import (
    ROOT,
    SAMPLE_FACE,
    SAMPLE_PHOTO,
    assert_one_line_error,
    run_script,
    synthetic_faces,
)

import emotion_recognition as er
import fer_calibration
import fer_common as fer
import fer_explain
import fer_faces
import video_tester as vt
from fer_faces import UNCERTAIN

keras = fer.keras

# --------------------------------------------------------------------------
# Grad-CAM on a model whose decision depends on known regions
# --------------------------------------------------------------------------

GRID = 12  # the synthetic model sees the face as 12x12 cells of 4x4 pixels
BOTTOM_LEFT = (slice(8, 12), slice(0, 4))  # cells where a bright patch says Happy
TOP_RIGHT = (slice(0, 4), slice(8, 12))  # cells where a dark patch says Angry
HAPPY, ANGRY = fer.EMOTIONS.index("Happy"), fer.EMOTIONS.index("Angry")


def region_model():
    """A CNN whose Happy score grows with bright pixels in the bottom-left corner
    only, and its Angry score with dark pixels in the top-right corner only."""
    from keras import layers

    model = keras.Sequential([
        keras.Input((fer.IMAGE_SIZE, fer.IMAGE_SIZE, 1)),
        layers.Rescaling(1 / 127.5, offset=-1),  # grey 0, white 1, black -1
        layers.AveragePooling2D(fer.IMAGE_SIZE // GRID),
        layers.Conv2D(1, 1, use_bias=False),  # an earlier convolution: not the one explained
        layers.Conv2D(2, 1, use_bias=False),  # channel 0: bright, channel 1: dark
        layers.Activation("relu"),
        layers.Flatten(),
        layers.Dense(len(fer.EMOTIONS), activation="softmax"),
    ])  # fmt: skip
    model.layers[2].set_weights([np.ones((1, 1, 1, 1))])
    model.layers[3].set_weights([np.array([1.0, -1.0]).reshape(1, 1, 1, 2)])
    kernel = np.zeros((GRID, GRID, 2, len(fer.EMOTIONS)))
    kernel[(*BOTTOM_LEFT, 0, HAPPY)] = 0.5
    kernel[(*TOP_RIGHT, 1, ANGRY)] = 0.5
    model.layers[-1].set_weights([kernel.reshape(-1, len(fer.EMOTIONS)), np.zeros(7)])
    return model


def two_patch_face() -> np.ndarray:
    """Grey, with a bright patch in the bottom-left corner and a dark one top right."""
    face = np.full((fer.IMAGE_SIZE, fer.IMAGE_SIZE, 1), 128.0, np.float32)
    face[32:, :16] = 255
    face[:16, 32:] = 0
    return face


def region_heat() -> np.ndarray:
    """Heat maps of the two-patch face, for Happy and for Angry."""
    model = region_model()
    return fer_explain.GradCam(model)(np.stack([two_patch_face()] * 2), ["Happy", "Angry"])


def share(heat: np.ndarray, rows: slice, cols: slice) -> float:
    """The share of a heat map's mass inside the cells (rows, cols) of the 12x12 grid."""
    cell = fer.IMAGE_SIZE // GRID
    inside = heat[rows.start * cell : rows.stop * cell, cols.start * cell : cols.stop * cell]
    return float(inside.sum() / heat.sum())


def assert_heat_where_the_decision_is(heat: np.ndarray) -> None:
    happy, angry = heat
    assert happy.shape == (fer.IMAGE_SIZE, fer.IMAGE_SIZE) and happy.max() == pytest.approx(1)
    assert share(happy, *BOTTOM_LEFT) > 0.8 and share(happy, *TOP_RIGHT) < 0.05
    assert share(angry, *TOP_RIGHT) > 0.8 and share(angry, *BOTTOM_LEFT) < 0.05


def test_grad_cam_heat_concentrates_where_the_decision_is_made():
    probabilities = region_model().predict_on_batch(two_patch_face()[None])[0]
    assert probabilities.argsort()[-2:].tolist() == sorted([HAPPY, ANGRY])  # both patches count
    assert_heat_where_the_decision_is(region_heat())


PROJECT_PATHS = [str(ROOT), str(ROOT / "tests")]  # where the script finds the modules
JAX_SCRIPT = """
import sys
import numpy as np
import fer_common as fer
assert fer.keras.backend.backend() == "jax"
import test_explain
np.save(sys.argv[1], test_explain.region_heat())
"""


def test_grad_cam_with_jax_gives_tensorflows_heat_maps(tmp_path: Path):
    """The backend is fixed per process: JAX runs in its own."""
    out = tmp_path / "heat.npy"
    result = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT, str(out)], capture_output=True, text=True, timeout=300,
        env={**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": os.pathsep.join(PROJECT_PATHS)},
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    jax_heat = np.load(out)
    assert_heat_where_the_decision_is(jax_heat)
    np.testing.assert_allclose(jax_heat, region_heat(), atol=1e-4)


def small_cfg(*options: str) -> argparse.Namespace:
    """The training recipe's architecture, made small."""
    small = ["--conv-blocks", "2", "--base-filters", "8", "--dense-units", "16"]
    return er.parse_args([*small, "--input-blur", "1", *options])


def test_grad_cam_takes_the_last_conv_block_of_the_training_architecture():
    faces = synthetic_faces(per_class=2)[0][..., None]
    model = er.build_model(faces, small_cfg())
    assert model.get_layer("blur")  # a convolution of its own kind, not a Conv2D
    cut = fer_explain.end_of_last_conv_block(model)
    last_conv = max(i for i, layer in enumerate(model.layers)
                    if isinstance(layer, keras.layers.Conv2D))  # fmt: skip
    assert cut > last_conv + 1  # after its normalisation and activation
    assert isinstance(model.layers[cut - 1], keras.layers.Activation)
    assert model.layers[cut].output.shape != model.layers[cut - 1].output.shape  # pooling
    heat = fer_explain.GradCam(model)(faces[:3].astype(np.float32), ["Happy", "Sad", "Fear"])
    assert heat.shape == (3, fer.IMAGE_SIZE, fer.IMAGE_SIZE)
    assert heat.min() >= 0 and heat.max() <= 1


def test_grad_cam_leaves_the_margins_a_cropping_model_never_sees_cold():
    faces = synthetic_faces(per_class=2)[0][..., None]
    model = er.build_model(faces, small_cfg("--crop", "40"))
    assert fer_explain.cropped_margins(model) == ((4, 4), (4, 4))
    heat = fer_explain.GradCam(model)(faces[:3].astype(np.float32), ["Happy", "Sad", "Fear"])
    assert heat.shape == (3, fer.IMAGE_SIZE, fer.IMAGE_SIZE)
    inside = heat[:, 4:-4, 4:-4]
    assert np.all(inside.reshape(3, -1).max(axis=1) == 1)  # each map's hottest point is seen
    assert not heat[:, :4].any() and not heat[:, -4:].any()
    assert not heat[:, :, :4].any() and not heat[:, :, -4:].any()


def test_explaining_a_litert_file_is_a_one_line_error(tiny_model: Path):
    result = run_script("video_tester.py", "--model", str(tiny_model / fer.MODEL_TFLITE),
                        "--source", str(SAMPLE_PHOTO), "--no-display", "--explain")  # fmt: skip
    assert_one_line_error(result, "--explain needs the Keras model")


# --------------------------------------------------------------------------
# The heat map goes where the face was cut from
# --------------------------------------------------------------------------


def likeness(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


@pytest.mark.parametrize("angle", [0.0, 20.0])
@pytest.mark.parametrize("box", [SAMPLE_FACE, (-20, 300, 120, 120)], ids=["inside", "at-edge"])
def test_crop_transform_maps_the_frame_onto_the_models_crop(box, angle):
    gray = cv2.imread(str(SAMPLE_PHOTO), cv2.IMREAD_GRAYSCALE)
    box = np.array(box)
    crop = fer_faces.crop_upright(gray, box[None], np.array([angle]), fer.FACE_MARGIN)[0, :, :, 0]
    to_crop = fer_faces.crop_transform(box, angle, fer.FACE_MARGIN, gray.shape)
    size = (fer.IMAGE_SIZE, fer.IMAGE_SIZE)
    mapped = cv2.warpAffine(gray, to_crop, size, borderMode=cv2.BORDER_REPLICATE)
    assert likeness(mapped, crop) > 0.95
    other = fer_faces.crop_transform(box, angle + 15, fer.FACE_MARGIN, gray.shape)
    assert likeness(cv2.warpAffine(gray, other, size, borderMode=cv2.BORDER_REPLICATE), crop) < (
        likeness(mapped, crop) - 0.02
    )


@pytest.mark.parametrize(
    ("box", "angle"), [((-10, 150, 160, 160), 0.0), ((200, 100, 160, 160), 25.0)],
    ids=["at-edge", "leaning"],
)  # fmt: skip
def test_overlay_paints_the_heat_where_the_crop_came_from(box, angle):
    frame = np.zeros((400, 600, 3), np.uint8)
    heat = np.zeros((fer.IMAGE_SIZE, fer.IMAGE_SIZE), np.float32)
    heat[30:44, 4:20] = 1  # a hot patch low on the left of the face
    to_crop = fer_faces.crop_transform(np.array(box), angle, fer.FACE_MARGIN, frame.shape)
    fer_explain.overlay(frame, heat, to_crop)
    painted = (frame.max(axis=2) > 0).astype(np.float32)
    seen_by_model = cv2.warpAffine(painted, to_crop, heat.shape[::-1]) > 0.5
    assert (seen_by_model == (heat > 0)).mean() > 0.97
    x, y, w, h = box
    reach = fer_faces.upright_side(np.array(box), fer.FACE_MARGIN)  # more than the crop's half
    painted[max(y + h // 2 - int(reach), 0) : y + h // 2 + int(reach),
            max(x + w // 2 - int(reach), 0) : x + w // 2 + int(reach)] = 0  # fmt: skip
    assert painted.sum() == 0  # nothing away from the face


def test_explain_draws_heat_on_the_face_only(tiny_model: Path, monkeypatch):
    photo = cv2.imread(str(SAMPLE_PHOTO))
    frames = {}
    for explain in ("--no-explain", "--explain"):
        pipeline = vt.Pipeline(vt.parse_args(["--model", str(tiny_model), "--detector", "haar",
                                              explain]))  # fmt: skip
        if pipeline.explainer is not None:  # a heat map that covers the whole crop
            monkeypatch.setattr(pipeline, "explainer", lambda faces, emotions: np.ones(
                (len(faces), fer.IMAGE_SIZE, fer.IMAGE_SIZE), np.float32))  # fmt: skip
        frame = photo.copy()
        (track,) = pipeline(frame, new_scene=True)
        frames[explain] = frame
    changed = np.abs(frames["--explain"].astype(int) - frames["--no-explain"]).max(axis=2) > 30
    x0, y0, x1, y1 = fer.face_region(track.box, fer.FACE_MARGIN, photo.shape)
    assert changed[y0 + 8 : y1 - 8, x0 + 8 : x1 - 8].mean() > 0.5  # inside, under the box lines
    changed[y0:y1, x0:x1] = False
    assert not changed.any()


# --------------------------------------------------------------------------
# Uncertain: thresholds on the smoothed probabilities
# --------------------------------------------------------------------------


def one_hot(emotion: int, strength: float) -> np.ndarray:
    rest = (1 - strength) / (len(fer.EMOTIONS) - 1)
    probabilities = np.full(len(fer.EMOTIONS), rest)
    probabilities[emotion] = strength
    return probabilities


def shown(sequence: list[np.ndarray], min_confidence: float) -> list[fer_faces.Track]:
    tracker = fer_faces.Tracker(vt.SMOOTHING, vt.MIN_IOU, vt.MAX_MISSED, min_confidence)
    box = np.array([[10, 10, 50, 50]])
    return [copy.copy(tracker.update(box, p[None])[0]) for p in sequence]  # as each frame showed


def test_uncertain_is_decided_on_the_smoothed_probabilities():
    sad = fer.EMOTIONS.index("Sad")
    sequence = [one_hot(HAPPY, 0.9)] * 10 + [one_hot(sad, 0.9)] * 10  # a sure change
    sequence += [one_hot(sad, 0.9)] * 10 + [np.full(7, 1 / 7)]  # one unsure frame
    tracks = shown(sequence, min_confidence=0.5)
    for track, raw in zip(tracks, sequence):
        np.testing.assert_array_equal(track.raw, raw)
        sure = track.probabilities.max() >= 0.5
        assert track.label == (track.emotion if sure else UNCERTAIN)
    labels = [track.label for track in tracks]
    assert labels[:10] == ["Happy"] * 10 and labels[-2] == "Sad"
    assert UNCERTAIN in labels[10:13]  # raw says Sad at 90 %, the smoothed figures are torn
    assert labels[-1] == "Sad"  # raw is flat, the smoothed figures are still sure
    assert [t.label for t in shown(sequence, min_confidence=0.0)] == [t.emotion for t in tracks]


@pytest.mark.parametrize("min_confidence", [0.5, 0.9])
def test_an_uncertain_face_gets_a_grey_box_without_an_emotion(min_confidence):
    tracker = fer_faces.Tracker(vt.SMOOTHING, vt.MIN_IOU, vt.MAX_MISSED, min_confidence)
    (track,) = tracker.update(np.array([[100, 100, 80, 80]]), one_hot(HAPPY, 0.7)[None])
    frame = np.zeros((300, 300, 3), np.uint8)
    vt.draw(frame, [track], fps=0.0)
    edge = tuple(frame[140, 100])  # the middle of the box's left side
    if min_confidence < 0.7:
        assert track.label == "Happy" and edge == vt.COLOURS["Happy"]
    else:
        assert track.label == UNCERTAIN and edge == vt.COLOURS[UNCERTAIN]
        assert len(set(edge)) == 1  # grey


def test_log_keeps_the_raw_probabilities_beside_the_smoothed_ones(tiny_model: Path, photo_clip):
    log, why = photo_clip.parent / "faces.csv", photo_clip.parent / "why"
    result = run_script(
        "video_tester.py", "--model", str(tiny_model), "--source", str(photo_clip),
        "--no-display", "--detector", "haar", "--log", str(log), "--explain-dir", str(why),
        "--min-confidence", "0.3",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    rows = pd.read_csv(log)
    emotions = [emotion.lower() for emotion in fer.EMOTIONS]
    assert rows.columns.tolist()[-14:] == emotions + [f"raw_{e}" for e in emotions]
    assert len(rows) == 12 and (rows["track"] == 1).all()
    smoothed, raw = rows[emotions].to_numpy(), rows[[f"raw_{e}" for e in emotions]].to_numpy()
    np.testing.assert_allclose(raw.sum(axis=1), 1, atol=1e-3)
    np.testing.assert_allclose(smoothed[0], raw[0], atol=1e-4)  # a new face: nothing to smooth
    ema = vt.SMOOTHING * smoothed[:-1] + (1 - vt.SMOOTHING) * raw[1:]
    np.testing.assert_allclose(smoothed[1:], ema, atol=2e-4)  # rounded to 4 decimals
    # The clip's faces differ, so the raw probabilities move from frame to frame; the
    # smoothed ones move less. (An untrained model's move little: compare, not a bound.)
    raw_moves, smoothed_moves = (np.abs(np.diff(p, axis=0)).sum() for p in (raw, smoothed))
    assert raw_moves > 0 and smoothed_moves < 0.6 * raw_moves
    sure = rows["confidence"] >= 0.3
    top = np.array(fer.EMOTIONS)[smoothed.argmax(axis=1)]
    assert (rows["emotion"] == np.where(sure, top, UNCERTAIN)).all()

    names = sorted(p.name for p in why.iterdir())
    assert names == [f"frame_{i:06d}_track1.png" for i in range(1, 13)]
    card = cv2.imread(str(why / names[0]))
    assert card.shape[0] == fer_explain.CARD_SIZE and card.shape[1] > 2 * fer_explain.CARD_SIZE


@pytest.mark.parametrize("crossing", [0.35, 0.6])
def test_min_confidence_is_where_labels_turn_more_wrong_than_right(crossing):
    """Faces whose chance of a right label rises with confidence and is one half
    at `crossing`: the rule finds that point."""
    rng = np.random.default_rng(0)
    confidence = rng.uniform(1 / 7, 1, 20_000)
    chance = np.clip(0.5 + 2 * (confidence - crossing), 0, 1)
    correct = rng.random(confidence.size) < chance
    assert fer_calibration.wrong_more_often_below(confidence, correct, bins=40) == pytest.approx(
        crossing, abs=0.03
    )
    assert fer_calibration.wrong_more_often_below(confidence, np.ones(confidence.size, bool)) == 0
    assert fer_calibration.wrong_more_often_below(confidence, np.zeros(confidence.size, bool)) == 1


def test_a_models_own_minimum_confidence_travels_in_its_metrics(tmp_path: Path):
    assert fer.model_min_confidence(tmp_path) == fer.MIN_CONFIDENCE  # none recorded
    (tmp_path / "metrics.json").write_text('{"min_confidence": 0.62}')
    assert fer.model_min_confidence(tmp_path) == 0.62
    assert fer.model_min_confidence(tmp_path / "fer.keras") == 0.62  # a file of that folder
    (tmp_path / "metrics.json").write_text("{not json")
    assert fer.model_min_confidence(tmp_path) == fer.MIN_CONFIDENCE


@pytest.mark.parametrize(
    ("flag", "expected"), [([], "recorded"), (["--min-confidence", "0.3"], 0.3)]
)
def test_the_demo_shows_uncertain_under_the_models_own_threshold(flag, expected):
    pipeline = vt.Pipeline(vt.parse_args(["--detector", "haar", *flag]))
    if expected == "recorded":
        expected = json.loads((ROOT / "models" / "metrics.json").read_text())["min_confidence"]
    assert pipeline.min_confidence == pipeline.tracker.min_confidence == expected


# --------------------------------------------------------------------------
# Uncertain time in the summary
# --------------------------------------------------------------------------


def test_summary_counts_uncertain_time_apart(tmp_path: Path):
    history = [(0.0, 1, "Happy"), (0.1, 1, UNCERTAIN), (0.2, 1, UNCERTAIN), (0.3, 1, "Happy"),
               (0.4, 1, "Sad"), (0.0, 2, UNCERTAIN), (0.5, 2, UNCERTAIN)]  # fmt: skip
    table = vt.summarize(history)
    assert table.loc[1, UNCERTAIN] == 0.4 and table.loc[1, "Happy"] == 0.4
    assert table.loc[1, "mostly"] in ("Happy", UNCERTAIN)
    assert table.loc[2, UNCERTAIN] == 1.0 and table.loc[2, "mostly"] == UNCERTAIN
    np.testing.assert_allclose(table[list(vt.LABELS)].sum(axis=1), 1.0)
    vt.plot_summary(history, table, str(tmp_path / "summary.png"))
    assert cv2.imread(str(tmp_path / "summary.png")) is not None


# --------------------------------------------------------------------------
# A tiny model (untrained: the pipeline, not its answers, is under test)
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_model")
    faces = synthetic_faces(per_class=2)[0][..., None]
    fer.save_model(er.build_model(faces, small_cfg()), folder)
    return folder
