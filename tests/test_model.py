"""The model as built for training: bfloat16 where the CPU has units for it, the
footage augmentation (on in training, silent at inference), a face's light and
contrast ignored, and the test-time views that --evaluate and the demo share."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import SAMPLE_PHOTO, SMALL, synthetic_faces

import emotion_recognition as er
import fer_common as fer
import video_tester as vt


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"avx512f", "avx512_bf16"}, "mixed_bfloat16"),  # AMD Zen 4 and later
        ({"amx_tile", "amx_bf16"}, "mixed_bfloat16"),  # Intel Xeon since Sapphire Rapids
        ({"avx2", "avx512f"}, "float32"),  # bfloat16 would be emulated: slower
    ],
)
def test_auto_precision_picks_bfloat16_where_the_cpu_computes_it(monkeypatch, flags, expected):
    monkeypatch.setattr(er, "cpu_flags", lambda: flags)
    monkeypatch.setattr(keras.distribution, "list_devices", lambda: ["cpu:0"])
    assert er.choose_precision("auto") == expected
    assert er.choose_precision("float32") == "float32"  # an explicit choice stands


@pytest.fixture(scope="module")
def model():
    faces = synthetic_faces(per_class=2)[0][..., None]
    return er.build_model(faces, er.parse_args(SMALL))


def before_standardizing(model) -> keras.Sequential:
    """The model's first layers: the augmentation, up to the per-face standardisation."""
    return keras.Sequential(model.layers[: model.layers.index(model.get_layer("standardize"))])


def test_footage_augmentation_changes_faces_in_training_only(model):
    names = {type(layer).__name__ for layer in model.layers}
    assert {"RandomColorJitter", "RandomGaussianBlur", "RandomErasing", "GaussianNoise"} <= names
    faces = np.repeat(synthetic_faces(per_class=1)[0][:1, ..., None], 32, axis=0)
    faces = faces.astype(np.float32)
    front = before_standardizing(model)
    margin = (fer.IMAGE_SIZE - er.CROP) // 2
    centre = faces[:, margin:-margin, margin:-margin]
    np.testing.assert_array_equal(np.asarray(front(faces, training=False)), centre)
    augmented = np.asarray(front(faces, training=True))
    assert augmented.shape == centre.shape
    assert len({face.tobytes() for face in augmented}) > 16  # each face its own way
    assert augmented.min() >= 0 and augmented.max() <= 255  # clipped, as a camera clips
    # Light: the faces' mean grey and contrast spread; blur and noise: their detail.
    assert np.ptp(augmented.mean(axis=(1, 2, 3))) > 30
    assert np.ptp(augmented.std(axis=(1, 2, 3))) > 10
    # The noise comes after standardising: inference stays deterministic.
    np.testing.assert_array_equal(model(faces, training=False), model(faces, training=False))
    assert not np.allclose(model(faces, training=True), model(faces, training=True))


def test_model_ignores_a_faces_brightness_and_contrast(model):
    faces = synthetic_faces(per_class=1, seed=3)[0][..., None].astype(np.float32)
    dim_and_flat = 20 + 0.3 * faces  # no clipping: the same face, darker and flatter
    np.testing.assert_allclose(
        model.predict_on_batch(dim_and_flat), model.predict_on_batch(faces), atol=1e-4
    )
    # Pixels already scaled to 0-1 are not what the model expects: it must tell.
    assert not np.allclose(model.predict_on_batch(faces / 255), model.predict_on_batch(faces))


def test_views_are_the_face_its_mirror_and_the_crops_corners():
    faces = np.arange(2 * 48 * 48, dtype=np.float32).reshape(2, 48, 48, 1)
    assert fer.test_views(faces, "one").shape == (1, 2, 48, 48, 1)
    flip = fer.test_views(faces, "flip")
    np.testing.assert_array_equal(flip[0], faces)
    np.testing.assert_array_equal(flip[1], faces[:, :, ::-1])
    ten = fer.test_views(faces, "ten")
    assert ten.shape == (10, 2, 48, 48, 1)
    shift = fer.VIEW_SHIFT
    inner = slice(2 * shift, -2 * shift)  # away from the replicated border
    np.testing.assert_array_equal(
        ten[1][:, inner, inner], faces[:, shift : -3 * shift, shift : -3 * shift]
    )
    np.testing.assert_array_equal(
        ten[4][:, inner, inner], faces[:, 3 * shift : -shift, 3 * shift : -shift]
    )
    np.testing.assert_array_equal(ten[5:], ten[:5][:, :, :, ::-1])
    with pytest.raises(fer.UserError, match="test-time views"):
        fer.test_views(faces, "twelve")


def test_predict_averages_the_views(model):
    faces = synthetic_faces(per_class=1, seed=4)[0][..., None].astype(np.float32)
    one = model.predict_on_batch(faces)
    mirrored = model.predict_on_batch(faces[:, :, ::-1])
    np.testing.assert_allclose(fer.predict(model, faces, "flip"), (one + mirrored) / 2, atol=1e-6)
    np.testing.assert_allclose(fer.predict(model, faces, "one"), one, atol=1e-6)
    assert fer.predict(model, faces[:0]).shape == (0, len(fer.EMOTIONS))


def test_evaluate_and_the_demo_classify_a_face_alike(model):
    import cv2

    frame = cv2.imread(str(SAMPLE_PHOTO))
    pipeline = vt.Pipeline(vt.parse_args(["--detector", "haar", "--smoothing", "0"]))
    pipeline.model = model  # the demo's own pipeline, around this model
    tracks = pipeline(frame.copy(), new_scene=True)
    assert len(tracks) == 1
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    face = fer.crop_faces(gray, np.array([tracks[0].box]))
    labels = np.zeros(1, int)
    _, test_probabilities = er.evaluate(
        model, {split: (face, labels) for split in ("train", "val", "test")}
    )
    np.testing.assert_allclose(tracks[0].raw, test_probabilities[0], atol=1e-5)
    np.testing.assert_allclose(tracks[0].raw, fer.predict(model, face)[0], atol=1e-5)
