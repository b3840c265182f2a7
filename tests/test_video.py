"""The live pipeline run headless on real photos, and its clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import (
    PHOTOS,
    ROOT,
    SAMPLE_FACE,
    SAMPLE_PHOTO,
    assert_one_line_error,
    run_script,
)

import fer_common as fer
import fer_faces
import video_tester as vt

SHIPPED = ROOT / "models"


def test_headless_run_on_a_clip_writes_video_face_log_and_summary(photo_clip: Path, tmp_path: Path):
    output, log, summary = tmp_path / "annotated.mp4", tmp_path / "faces.csv", tmp_path / "s.png"
    result = run_script(
        "video_tester.py", "--source", str(photo_clip), "--no-display", "--detector", "haar",
        "--output", str(output), "--log", str(log), "--summary", str(summary),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "12 frames, 12 faces labelled" in result.stdout

    video = cv2.VideoCapture(str(output))
    frames = int(video.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, first = video.read()
    video.release()
    assert ok and frames == 12 and first.shape == cv2.imread(str(SAMPLE_PHOTO)).shape

    rows = pd.read_csv(log)
    assert rows.columns.tolist() == [
        "frame", "time_s", "face", "track", "x", "y", "w", "h", "emotion", "confidence",
        "angry", "disgust", "fear", "happy", "sad", "surprise", "neutral",
        "raw_angry", "raw_disgust", "raw_fear", "raw_happy", "raw_sad", "raw_surprise",
        "raw_neutral",
    ]  # fmt: skip
    assert rows["frame"].tolist() == list(range(12))
    assert (rows["track"] == 1).all()  # one face, followed through the shake
    x, y, w, _ = SAMPLE_FACE
    assert (rows["x"] - x).abs().max() <= 10 and (rows["y"] - y).abs().max() <= 10
    assert (rows["w"] - w).abs().max() <= 15
    probabilities = rows[[e.lower() for e in fer.EMOTIONS]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-3)
    top = np.array(fer.EMOTIONS)[probabilities.argmax(axis=1)]
    sure = rows["confidence"] >= fer.model_min_confidence(ROOT / "models")
    assert (rows["emotion"] == np.where(sure, top, fer_faces.UNCERTAIN)).all()
    assert rows["time_s"].iloc[-1] == pytest.approx(11 / 10, abs=1e-3)  # 10 FPS clip

    image = cv2.imread(str(summary))
    assert image is not None and image.shape[0] > 200 and image.shape[1] > 500
    main_emotion = rows["emotion"].mode()[0]  # the printed table says the same
    assert any(
        line.startswith("#1") and main_emotion in line for line in result.stdout.splitlines()
    )


def test_annotation_is_drawn_on_the_face(tmp_path: Path):
    output = tmp_path / "annotated.png"
    result = run_script("video_tester.py", "--source", str(SAMPLE_PHOTO), "--no-display",
                        "--detector", "haar", "--output", str(output))  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    before, after = cv2.imread(str(SAMPLE_PHOTO)), cv2.imread(str(output))
    changed = np.any(np.abs(before.astype(int) - after.astype(int)) > 40, axis=2)
    x, y, w, h = SAMPLE_FACE
    assert changed[y : y + h, x].mean() > 0.9  # the box's left edge
    assert changed[:y, x : x + w].any()  # the label above the box
    assert changed.mean() < 0.1  # and not much else


def test_shipped_model_labels_the_sample_photo_sensibly():
    """The astronaut smiles broadly: the shipped model must say Happy."""
    pipeline = vt.Pipeline(vt.parse_args(["--model", str(SHIPPED), "--detector", "haar"]))
    tracks = pipeline(cv2.imread(str(SAMPLE_PHOTO)), new_scene=True)
    assert len(tracks) == 1
    assert tracks[0].emotion == "Happy"
    assert tracks[0].probabilities.max() > 0.5


def test_folder_of_real_photos_finds_every_face(tmp_path: Path):
    result = run_script(
        "video_tester.py", "--source", str(PHOTOS), "--no-display",
        "--output", str(tmp_path / "out"), "--log", str(tmp_path / "f.csv"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == sorted(p.name for p in PHOTOS.glob("*.jpg"))
    faces_per_frame = pd.read_csv(tmp_path / "f.csv").groupby("frame").size().tolist()
    assert sum(faces_per_frame) == 4  # two_people.jpg: 2, biden.jpg: 1, obama-720p.jpg: 1


def test_demo_uses_the_litert_twin_only_when_it_is_the_same_model(tmp_path: Path, capsys):
    assert isinstance(vt.load_fastest_model(str(SHIPPED)), fer.LiteRTModel)
    assert not isinstance(vt.load_fastest_model(str(SHIPPED), litert=False), fer.LiteRTModel)

    for name in (fer.MODEL_JSON, fer.MODEL_WEIGHTS):
        (tmp_path / name).write_bytes((SHIPPED / name).read_bytes())
    other = fer.keras.Sequential(
        [fer.keras.Input((48, 48, 1)), fer.keras.layers.Flatten(),
         fer.keras.layers.Dense(7, activation="softmax")]
    )  # fmt: skip
    fer.export_tflite(other, tmp_path / fer.MODEL_TFLITE)  # a stale twin
    assert not fer.twin_is_current(tmp_path)  # no record vouches for it
    model = vt.load_fastest_model(str(tmp_path))
    assert not isinstance(model, fer.LiteRTModel)
    assert "another model" in capsys.readouterr().out

    # --export records which fer.h5 its twin came from: then the demo trusts it as it is
    fer.export_tflite(model, tmp_path / fer.MODEL_TFLITE, tmp_path / fer.MODEL_WEIGHTS)
    assert fer.twin_is_current(tmp_path)
    assert isinstance(vt.load_fastest_model(str(tmp_path)), fer.LiteRTModel)
    fer.save_model(other, tmp_path / "other")  # the record names fer.h5 as it was then:
    (tmp_path / fer.MODEL_WEIGHTS).write_bytes(
        (tmp_path / "other" / fer.MODEL_WEIGHTS).read_bytes()
    )
    assert not fer.twin_is_current(tmp_path)  # another fer.h5 since


def test_the_demo_starts_without_keras_when_its_litert_twin_is_current():
    """TensorFlow takes seconds to import: the shipped twin is taken on its record."""
    code = (
        "import sys, video_tester as vt\n"
        "pipeline = vt.Pipeline(vt.parse_args(['--detector', 'haar', '--no-display']))\n"
        "loaded = [m for m in ('keras', 'tensorflow') if m in sys.modules]\n"
        "print(type(pipeline.model).__name__, loaded)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-2:] == ["LiteRTModel", "[]"]


def test_frames_from_a_still_source_come_from_disk():
    source = vt.Source(str(SAMPLE_PHOTO), str(SAMPLE_PHOTO))
    frames = list(source.frames())
    assert source.is_still and source.total == 1 and len(frames) == 1
    assert frames[0][1].shape == (512, 512, 3)


def test_crop_faces_widens_the_box_and_clips_at_the_border():
    gray = np.arange(100 * 100, dtype=np.uint32).reshape(100, 100).astype(np.uint8)
    faces = fer.crop_faces(gray, np.array([[0, 0, 50, 50], [40, 40, 20, 20]]), margin=0.1)
    assert faces.shape == (2, 48, 48, 1) and faces.dtype == np.uint8
    # The second box, widened by 2 px each side, is the 24x24 square at (38, 38).
    np.testing.assert_array_equal(
        faces[1, :, :, 0], cv2.resize(gray[38:62, 38:62], (48, 48), interpolation=fer.UPSCALING)
    )


# --------------------------------------------------------------------------
# Bad input: one clear line
# --------------------------------------------------------------------------


def test_camera_that_cannot_be_opened_suggests_a_file():
    result = run_script("video_tester.py", "--source", "7", "--no-display")
    assert_one_line_error(result, "cannot open camera 7", "--source FILE")


def test_unreadable_video(tmp_path: Path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 1000)
    result = run_script("video_tester.py", "--source", str(bad), "--no-display")
    assert_one_line_error(result, "broken.mp4")


def test_unreadable_image(tmp_path: Path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    result = run_script("video_tester.py", "--source", str(bad), "--no-display")
    assert_one_line_error(result, "cannot read image", "broken.jpg")


def test_missing_source(tmp_path: Path):
    result = run_script("video_tester.py", "--source", str(tmp_path / "nope.mp4"))
    assert_one_line_error(result, "no such file", "nope.mp4")


def test_missing_model_says_to_train_first(tmp_path: Path):
    result = run_script("video_tester.py", "--model", str(tmp_path), "--no-display")
    assert_one_line_error(result, "missing", "python emotion_recognition.py")
