"""What test-time flipping would buy: each model's accuracy on FER-2013's PublicTest
and PrivateTest faces as it ships, and with its probabilities averaged over each
face and its mirror image.

    python bench/flip_tta.py [--data PATH] [MODEL ...]   # default: models/

Neither the demo nor `--evaluate` flips faces: the saved model is one
`keras.Sequential` stack, and averaging two views of a face needs a second branch
(a functional model). This measures whether that would pay.
Not a test: run it by hand (a minute on a CPU per model).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import emotion_recognition as er  # noqa: E402
import fer_common as fer  # noqa: E402
import fer_data  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "fer2013" / "fer2013.csv.xz"
SPLITS = {"val": "PublicTest", "test": "PrivateTest"}


def flip_averaged_accuracy(model, faces: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Accuracy of the model alone, and of its probabilities averaged with the mirror image's."""
    faces = faces.astype(np.float32)
    plain = model.predict(faces, batch_size=256, verbose=0)
    mirrored = model.predict(faces[:, :, ::-1], batch_size=256, verbose=0)
    averaged = plain + mirrored  # the argmax of the sum is the argmax of the mean
    return float(np.mean(plain.argmax(1) == labels)), float(np.mean(averaged.argmax(1) == labels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="FER-2013 CSV")
    parser.add_argument(
        "models", nargs="*", default=[str(ROOT / "models")], help="model folders or files"
    )
    args = parser.parse_args()

    data = fer_data.load_data(fer_data.find_data(args.data), er.parse_args([]))
    print("| model | split | as it ships | flip-averaged | gain |\n| --- | --- | --- | --- | --- |")
    for path in args.models:
        model = fer.load_model(path)
        for split, name in SPLITS.items():
            plain, flipped = flip_averaged_accuracy(model, *data[split])
            print(f"| {path} | {name} | {plain:.2%} | {flipped:.2%} | {flipped - plain:+.2%} |")


if __name__ == "__main__":
    fer.run_cli(main)
