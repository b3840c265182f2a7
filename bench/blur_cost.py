"""What the blurred Training split costs: the same recipe on sharp and blurred faces.

    python bench/blur_cost.py [--data PATH] [--epochs 30]

The copy of FER-2013 this project is tested with has a Training split blurred
(Gaussian, sigma about 3 px) while PublicTest and PrivateTest are sharp. Only the
test splits have sharp faces, so this diagnostic trains on PublicTest: the same
training recipe (emotion_recognition.py's defaults) on four of its five faces,
selecting the epoch on the fifth, testing on PrivateTest, three times:

  sharp            the PublicTest faces as they are
  blurred          the same faces blurred to the Training split's sharpness,
                   with the matching inference blur (as the shipped model does)
  Training faces   as many faces drawn from the Training split (the control:
                   it should score like "blurred" if the blur is all that differs)

The gap between the first two rows is what the blur alone costs at this data size.
None of these models is kept. Not a test: run it by hand (about 35 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from accuracy import print_table  # noqa: E402  (bench/accuracy.py, beside this file)

import emotion_recognition as er  # noqa: E402
import fer_common as fer  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "fer2013" / "fer2013.csv.xz"


def run(name: str, train: tuple, data: dict, blur: float, cfg: argparse.Namespace) -> list:
    """Train the default recipe on `train`, select on data["val"]; test figures."""
    import keras
    from sklearn.metrics import f1_score

    keras.utils.set_random_seed(cfg.seed)
    model = er.build_model(train[0], cfg, blur)
    started = time.time()
    with tempfile.TemporaryDirectory() as scratch:
        epochs = er.train(model, {"train": train, "val": data["val"]}, cfg, Path(scratch))
    faces, labels = data["test"]
    predicted = er.predict(model, faces)
    val_accuracy = np.mean(er.predict(model, data["val"][0]) == data["val"][1])
    return [
        name,
        f"{fer.sharpness(train[0][:2000]):.1f}",
        f"{blur:g}",
        f"{val_accuracy:.2%}",
        f"{np.mean(predicted == labels):.2%}",
        f"{f1_score(labels, predicted, average='macro'):.3f}",
        f"{epochs}",
        f"{time.time() - started:.0f}",
    ]


def main() -> None:
    from sklearn.model_selection import train_test_split

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    cfg = er.parse_args(["--epochs", str(args.epochs), "--data", args.data])

    data = er.load_data(er.find_data(cfg.data), cfg)
    public_faces, public_labels = data["val"]
    fit_faces, val_faces, fit_labels, val_labels = train_test_split(
        public_faces, public_labels, test_size=0.2, stratify=public_labels, random_state=cfg.seed
    )
    split = {"val": (val_faces, val_labels), "test": data["test"]}

    sigma = er.estimate_blur(data, cfg)  # the Training split's blur, measured
    blurred = np.clip(np.rint(fer.gaussian_blur(fit_faces, sigma)), 0, 255).astype("uint8")
    train_faces, train_labels = data["train"]
    pick = np.random.default_rng(cfg.seed).permutation(len(train_labels))[: len(fit_labels)]

    rows = [
        run("sharp", (fit_faces, fit_labels), split, 0.0, cfg),
        run("blurred", (blurred, fit_labels), split, sigma, cfg),
        run("Training faces", (train_faces[pick], train_labels[pick]), split, sigma, cfg),
    ]
    header = ["trained on", "sharpness", "inf. blur", "val acc", "PrivateTest", "macro-F1",
              "epochs", "seconds"]  # fmt: skip
    print(f"\n{len(fit_labels)} training faces each, {args.epochs} epochs at most, "
          f"selected on {len(val_labels)} held-out PublicTest faces")  # fmt: skip
    print_table(header, rows)


if __name__ == "__main__":
    fer.run_cli(main)
