"""Why a mild blur of the test faces helps a model trained with augmentation:
sharpness of FER-2013's splits, of the training faces after each augmentation
layer, and of test faces blurred by a few sigmas, side by side.

    python -m bench.sharpness [--data PATH] [--faces 2000]

Sharpness is the median variance of the Laplacian (higher is sharper); JPEG
blockiness is the mean step across 8-pixel block borders over the mean step inside
blocks (1: no JPEG grid). Not a test: run it by hand (about a minute).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

import emotion_recognition as er
import fer_common as fer
import fer_data

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_DATA = ROOT.parent / "shared" / "fer2013" / "fer2013.csv.xz"


def sharpness(faces: np.ndarray) -> float:
    return float(np.median([cv2.Laplacian(np.float32(f), cv2.CV_32F).var() for f in faces]))


def blockiness(faces: np.ndarray) -> float:
    steps = np.abs(np.diff(faces.astype(np.float32), axis=2))
    across = steps[:, :, 7::8].mean()
    inside = np.delete(steps, np.s_[7::8], axis=2).mean()
    return float(across / inside)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="FER-2013 CSV")
    parser.add_argument("--faces", type=int, default=2000, help="faces per row")
    args = parser.parse_args()

    cfg = er.parse_args([])
    data = fer_data.load_data(fer_data.find_data(args.data), cfg)
    faces = {split: data[split][0][: args.faces, ..., 0] for split in data}
    rows = [(f"{split} faces", sharpness(f), f"{blockiness(f):.3f}") for split, f in faces.items()]

    # The training faces after each augmentation layer of the shipped recipe, alone
    # and all together (the layers run in training mode, as in fit()).
    model = er.build_model(data["train"][0], cfg)
    augmenters = [layer for layer in model.layers if layer.name.startswith("random_")]
    train = faces["train"][..., None].astype("float32")
    for layer in augmenters:
        alone = np.asarray(layer(train, training=True))
        rows.append((f"train, {layer.name}", sharpness(alone), ""))
    augmented = train
    for layer in augmenters:
        augmented = layer(augmented, training=True)
    rows.append(("train, all augmentation", sharpness(np.asarray(augmented)[..., 0]), ""))

    for sigma in (0.3, 0.5, 0.7, 1.0):
        blurred = [cv2.GaussianBlur(np.float32(f), (0, 0), sigma) for f in faces["test"]]
        rows.append((f"test, Gaussian blur sigma {sigma}", sharpness(np.stack(blurred)), ""))

    print(f"FER-2013 ({args.data}), {args.faces} faces per row, Keras {fer.keras.__version__}\n")
    print("| faces | sharpness | JPEG blockiness |\n|---|---|---|")
    for name, value, blocks in rows:
        print(f"| {name} | {value:.0f} | {blocks} |")


if __name__ == "__main__":
    fer.run_cli(main)
