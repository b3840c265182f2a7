"""Shared fixtures: small synthetic FER-style data sets, the real photos, and a
runner for the two scripts as a user calls them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SAMPLE_PHOTO = ROOT / "data" / "astronaut.jpg"
SAMPLE_FACE = (177, 66, 95, 95)  # where the Haar cascade finds the astronaut's face
FER2013 = Path(
    os.environ.get("FER2013_PATH", ROOT.parent / "shared" / "fer2013" / "fer2013.csv.xz")
)
# FER+ votes row-aligned with that copy (Microsoft's own follows the Kaggle CSV's order)
FERPLUS = Path(
    os.environ.get("FERPLUS_PATH", ROOT.parent / "shared" / "ferplus" / "fer2013new.csv")
)
PHOTOS = ROOT / "tests" / "photos"  # real faces, public domain (its README)

# A small network that learns the synthetic stripes in seconds on a CPU.
SMALL = ["--base-filters", "8", "--conv-blocks", "3", "--dense-units", "32", "--batch-size", "32"]


def stripes(label: int, rng: np.random.Generator, size: int = 48) -> np.ndarray:
    """A learnable synthetic face: horizontal stripes whose count encodes the label.

    Stripes survive the model's flips, small shifts and rotations, so a tiny
    network can learn the 7 classes well above chance in a few epochs.
    """
    rows = np.arange(size)[:, None]
    phase = rng.uniform(0, 2 * np.pi)
    image = 128 + 90 * np.sin(2 * np.pi * (label + 1) * rows / size + phase)
    image = image + rng.normal(0, 12, (size, size))
    return np.clip(image, 0, 255).astype(np.uint8)


def synthetic_faces(per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(7), per_class)
    rng.shuffle(labels)
    return np.stack([stripes(int(label), rng) for label in labels]), labels


def write_fer_csv(path: Path, per_class: int = 20, usage: bool = True, seed: int = 0) -> Path:
    """A FER-2013-style CSV (emotion,pixels[,Usage]) of synthetic faces."""
    faces, labels = synthetic_faces(per_class, seed)
    table = pd.DataFrame(
        {"emotion": labels, "pixels": [" ".join(map(str, face.ravel())) for face in faces]}
    )
    if usage:
        shares = np.array(["Training"] * 6 + ["PublicTest", "PrivateTest"] * 2)
        table["Usage"] = shares[np.arange(len(table)) % len(shares)]
    table.to_csv(path, index=False)
    return path


# FER+'s vote columns as its file orders them (not FER-2013's label order)
FERPLUS_COLUMNS = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                   "contempt", "unknown", "NF"]  # fmt: skip
FERPLUS_OF_LABEL = ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"]


def write_votes_csv(path: Path, fer_csv: Path, unknown_every: int = 0) -> Path:
    """A FER+-style votes file paired with `fer_csv` row by row: 8 taggers vote for
    the face's label and 2 for the next emotion; every `unknown_every`-th face is
    voted "unknown" by most taggers instead."""
    table = pd.read_csv(fer_csv)
    votes = pd.DataFrame(0, index=table.index, columns=FERPLUS_COLUMNS)
    for row, label in enumerate(table.emotion):
        votes.loc[row, FERPLUS_OF_LABEL[label]] += 8
        votes.loc[row, FERPLUS_OF_LABEL[(label + 1) % 7]] += 2
        if unknown_every and row % unknown_every == 0:
            votes.loc[row] = 0
            votes.loc[row, ["unknown", FERPLUS_OF_LABEL[label]]] = [7, 3]
    votes.insert(0, "Image name", [f"fer{row:07d}.png" for row in table.index])
    votes.insert(0, "Usage", table.Usage)
    votes.to_csv(path, index=False)
    return path


@pytest.fixture
def fer_csv(tmp_path: Path) -> Path:
    return write_fer_csv(tmp_path / "fer2013.csv")


@pytest.fixture
def photo_clip(tmp_path: Path) -> Path:
    """A 12-frame video of the sample photo with a slight camera shake."""
    photo = cv2.imread(str(SAMPLE_PHOTO))
    path = tmp_path / "clip.avi"
    height, width = photo.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (width, height))
    for dx in [0, 2, 4, 2, 0, -2, -4, -2, 0, 2, 4, 2]:
        shift = np.float32([[1, 0, dx], [0, 1, -dx // 2]])
        writer.write(cv2.warpAffine(photo, shift, (width, height), borderMode=cv2.BORDER_REPLICATE))
    writer.release()
    return path


def run_script(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run one of the project's scripts as a user would, headless."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("DISPLAY", None)
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    """A failed run that says what is wrong in one line, without a traceback."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for word in words:
        assert word.lower() in errors[0].lower(), errors[0]


PLAIN_KERAS_LOAD = """
import sys, keras, numpy as np
faces = np.load(sys.argv[2])
pair = keras.models.model_from_json(open(sys.argv[1] + "/fer.json").read())
pair.load_weights(sys.argv[1] + "/fer.h5")
one_file = keras.models.load_model(sys.argv[1] + "/fer.keras")
np.save(sys.argv[3], np.stack([pair.predict(faces, verbose=0), one_file.predict(faces, verbose=0)]))
"""


def assert_plain_keras_loads(models: Path, tmp_path: Path) -> None:
    """A user's own script, in a fresh process and another folder, importing nothing
    from this project, loads both model formats and gets the demo's probabilities."""
    faces = synthetic_faces(per_class=2, seed=11)[0][..., None].astype("float32")
    np.save(tmp_path / "faces.npy", faces)
    (tmp_path / "load.py").write_text(PLAIN_KERAS_LOAD)
    result = subprocess.run(
        [sys.executable, "load.py", str(models.resolve()), "faces.npy", "out.npy"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    import video_tester

    demo = video_tester.load_fastest_model(str(models), litert=False).predict_on_batch(faces)
    pair, one_file = np.load(tmp_path / "out.npy")
    np.testing.assert_allclose(pair, demo, atol=1e-5)
    np.testing.assert_allclose(one_file, demo, atol=1e-5)
