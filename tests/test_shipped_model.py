"""The model in models/ scores what models/metrics.json and the README say, and
its LiteRT export scores the same."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import (
    FER2013,
    FERPLUS,
    PHOTOS,
    ROOT,
    SAMPLE_FACE,
    SAMPLE_PHOTO,
    assert_plain_keras_loads,
    run_script,
)

import emotion_recognition as er
import fer_common as fer
import fer_data

MODELS = ROOT / "models"
METRICS = json.loads((MODELS / "metrics.json").read_text())
ON_VOTES = METRICS.get("labels") == "FER+ majority"  # else: FER-2013's own labels


def test_metrics_describe_the_shipped_model():
    assert METRICS["parameters"] == fer.load_model(MODELS).count_params()
    assert METRICS["views"] == fer.VIEWS  # measured as the demo classifies


def test_the_readmes_results_are_the_shipped_models():
    """The README's row for this model shows models/metrics.json's figures: the one
    place they are written by hand, checked here so that they cannot drift."""
    readme = (ROOT / "README.md").read_text().splitlines()
    row = next(line for line in readme if line.startswith("| this project"))
    keys = ["test_accuracy", "test_accuracy_one_view"]
    keys += ["test_accuracy_fer2013"] if ON_VOTES else []
    for key in keys:
        assert f"{100 * METRICS[key]:.1f} %" in row, key
    assert f"{METRICS['test_macro_f1']:.3f}" in row
    recall = next(line for line in readme if line.startswith("Recall per emotion"))
    for name in fer.EMOTIONS:
        assert f"{name} {100 * METRICS['per_class'][name]['recall']:.0f} %" in recall, name


def test_litert_model_agrees_with_keras_on_faces():
    import cv2

    gray = cv2.imread(str(SAMPLE_PHOTO), cv2.IMREAD_GRAYSCALE)
    x, y, w, h = SAMPLE_FACE
    rng = np.random.default_rng(0)
    boxes = [(x + dx, y + dy, w + dw, h + dw) for dx, dy, dw in rng.integers(-8, 9, (6, 3))]
    faces = fer.crop_faces(gray, np.array(boxes)).astype(np.float32)
    keras_probs = fer.load_model(MODELS).predict_on_batch(faces)
    litert_probs = fer.load_model(MODELS / fer.MODEL_TFLITE).predict_on_batch(faces)
    # The shipped twin computes in 8-bit integers: the same labels, nearly the same odds.
    np.testing.assert_array_equal(litert_probs.argmax(axis=1), keras_probs.argmax(axis=1))
    np.testing.assert_allclose(litert_probs, keras_probs, atol=fer.LITERT_TOLERANCE)


def test_export_writes_a_litert_model_that_loads(tmp_path):
    model = fer.load_model(MODELS)
    fer.export_tflite(model, tmp_path / "m.tflite")
    faces = np.random.default_rng(1).integers(0, 256, (3, 48, 48, 1)).astype(np.float32)
    exported = fer.load_model(tmp_path / "m.tflite")
    np.testing.assert_allclose(
        exported.predict_on_batch(faces), model.predict_on_batch(faces), atol=fer.LITERT_TOLERANCE
    )
    assert [p.name for p in tmp_path.iterdir()] == ["m.tflite"]  # no temp file left


def test_litert_twin_keeps_its_weights_in_8_bits():
    from ai_edge_litert.interpreter import Interpreter

    tensors = Interpreter(str(MODELS / fer.MODEL_TFLITE)).get_tensor_details()
    assert np.int8 in {tensor["dtype"] for tensor in tensors}
    float32_bytes = 4 * fer.load_model(MODELS).count_params()
    assert (MODELS / fer.MODEL_TFLITE).stat().st_size < float32_bytes / 3


def test_corrupt_litert_model_is_a_user_error(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer")
    with pytest.raises(fer.UserError, match="cannot load LiteRT model"):
        fer.load_model(bad)


def test_shipped_model_loads_in_plain_keras(tmp_path):
    assert_plain_keras_loads(MODELS, tmp_path)


@pytest.fixture(scope="module")
def fer2013():
    if not FER2013.is_file():
        pytest.skip(f"FER-2013 not found at {FER2013} (set FER2013_PATH to run this check)")
    if not FERPLUS.is_file():
        pytest.skip(f"FER+ votes not found at {FERPLUS} (set FERPLUS_PATH to run this check)")
    data = fer_data.load_data(FER2013, er.parse_args([]), FERPLUS)
    assert len(data["test"][1]) == 3589  # PrivateTest
    return data


@pytest.fixture(scope="module")
def private_test(fer2013):
    """PrivateTest's faces and labels as metrics.json's test_accuracy counts them:
    the faces with a FER+ majority and that label, or every face and its own."""
    faces, labels, votes = fer2013["test"]
    if not ON_VOTES:
        return faces, labels
    majority = fer_data.majority_labels(votes)
    assert np.sum(majority >= 0) == METRICS["test_faces"] == 3136  # the FER+ protocol's
    return faces[majority >= 0], majority[majority >= 0]


@pytest.mark.slow
def test_the_shared_fer2013_is_not_taken_for_a_processed_copy(fer2013, capsys):
    fer_data.check_splits_alike(fer2013)
    assert "processed copy" not in capsys.readouterr().out


def accuracy(model, faces, labels) -> float:
    """As --evaluate, the benchmarks and the demo classify: with the demo's test-time views."""
    return float(np.mean(fer.predict(model, faces).argmax(axis=1) == labels))


@pytest.mark.slow
def test_shipped_model_scores_its_recorded_privatetest_accuracy(fer2013, private_test):
    model = fer.load_model(MODELS)
    assert accuracy(model, *private_test) == pytest.approx(METRICS["test_accuracy"], abs=0.005)
    if ON_VOTES:  # and against FER-2013's own labels, on every face
        faces, labels, _ = fer2013["test"]
        assert accuracy(model, faces, labels) == pytest.approx(
            METRICS["test_accuracy_fer2013"], abs=0.005
        )


@pytest.mark.slow
def test_litert_model_scores_within_0_3_points_of_keras(private_test):
    keras_accuracy = accuracy(fer.load_model(MODELS), *private_test)
    litert_accuracy = accuracy(fer.load_model(MODELS / fer.MODEL_TFLITE), *private_test)
    assert abs(litert_accuracy - keras_accuracy) <= 0.003


def test_the_demo_still_sees_a_smile_in_a_dark_noisy_picture(tmp_path):
    """Dim, flat light, as in the audience footage whose smiles came out Sad: the
    face's mean grey 40 (146 in the photo), a quarter of its contrast, and the
    noise of a camera's sensor. (Darker, flatter or noisier, the Haar cascade no
    longer finds the face at all.)"""
    photo = PHOTOS / "obama-720p.jpg"
    gray = cv2.imread(str(photo), cv2.IMREAD_GRAYSCALE).astype(np.float32)
    noise = np.random.default_rng(0).normal(0, 2, gray.shape)
    dark = np.clip(np.round(40 + 0.25 * (gray - 146) + noise), 0, 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "dark.png"), dark)
    log = tmp_path / "faces.csv"
    result = run_script("video_tester.py", "--source", str(tmp_path / "dark.png"), "--no-display",
                        "--detector", "haar", "--log", str(log))  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    rows = pd.read_csv(log)
    assert len(rows) == 1, rows.to_string()
    x, y, w, h = rows[["x", "y", "w", "h"]].iloc[0]
    face = dark[y : y + h, x : x + w]
    assert 35 <= face.mean() <= 45 and face.std() < 15  # dark and flat
    assert rows["emotion"].tolist() == ["Happy"], rows.to_string()
