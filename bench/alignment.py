"""Does turning faces upright (YuNet's eye landmarks) help the classifier?

    python -m bench.alignment [--model models/]

Each face of the real photos (../shared/photos and the bundled astronaut) is
turned by ±10, ±20 and ±30 degrees about its centre, found with YuNet, cropped
as `video_tester.py` crops it, with and without alignment, and classified. Prints
how far the probabilities move from the upright face's (total variation distance
and KL divergence, means over the faces) and how often the label changes, and
how much of the turn YuNet's eye landmarks show. Not a test: run it by hand.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

import fer_common as fer
import fer_faces
import video_tester as vt
from bench.accuracy import print_table
from bench.fps import PHOTOS, ROOT

YUNET = ROOT.parent / "shared" / "yunet" / "face_detection_yunet_2023mar.onnx"
IMAGES = [PHOTOS / "obama-720p.jpg", PHOTOS / "two_people.jpg", PHOTOS / "biden.jpg",
          ROOT / "data" / "astronaut.jpg"]  # fmt: skip
TURNS = (-30, -20, -10, 10, 20, 30)  # degrees, counter-clockwise


def turned(image: np.ndarray, centre: tuple[float, float], degrees: float) -> np.ndarray:
    turn = cv2.getRotationMatrix2D(centre, degrees, 1.0)
    size = (image.shape[1], image.shape[0])
    return cv2.warpAffine(image, turn, size, borderMode=cv2.BORDER_REPLICATE)


def crops(detector, image: np.ndarray, centre: tuple[float, float], margin: float):
    """The face nearest `centre`: (plain crop, aligned crop, the angle read)."""
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    boxes, angles = detector(image, gray)
    nearest = np.argmin(np.hypot(*(boxes[:, :2] + boxes[:, 2:] / 2 - centre).T))
    box, angle = boxes[nearest : nearest + 1], angles[nearest : nearest + 1]
    plain = fer_faces.crop_upright(gray, box, np.zeros(1), margin)[0]
    aligned = fer_faces.crop_upright(gray, box, angle, margin)[0]
    return plain, aligned, float(angle[0])


def distances(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Total variation distance and KL(p || q), row by row."""
    p, q = np.clip(p, 1e-7, 1), np.clip(q, 1e-7, 1)
    return 0.5 * np.abs(p - q).sum(axis=1), (p * np.log(p / q)).sum(axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "models"))
    parser.add_argument("--yunet", default=str(YUNET), help="the YuNet .onnx file")
    args = parser.parse_args()
    for needed in (PHOTOS, Path(args.yunet)):
        if not needed.exists():
            sys.exit(f"no {needed}: this benchmark needs the shared photos and YuNet")

    detector = fer_faces.YuNetDetector(args.yunet, vt.MIN_SCORE)
    model = vt.load_fastest_model(args.model)
    plain, aligned, read = {}, {}, {}  # turn -> one crop (or angle) per face
    for path in IMAGES:
        image = cv2.imread(str(path))
        boxes, _ = detector(image, cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
        for x, y, w, h in boxes:
            centre = (x + w / 2, y + h / 2)
            for degrees in (0, *TURNS):
                faces = crops(detector, turned(image, centre, degrees), centre, vt.MARGIN)
                for table, value in zip((plain, aligned, read), faces):
                    table.setdefault(degrees, []).append(value)

    def probabilities(faces: list[np.ndarray]) -> np.ndarray:
        return fer.predict(model, np.stack(faces))

    n = len(read[0])
    print(f"{n} faces from {len(IMAGES)} photos, found by YuNet, classified by {args.model}; "
          "distances from the upright face's probabilities, means over the faces:")  # fmt: skip
    rows, totals = [], np.zeros(6)
    for degrees in TURNS:
        figures = []
        for crops_of in (plain, aligned):
            upright, moved = probabilities(crops_of[0]), probabilities(crops_of[degrees])
            tv, kl = distances(upright, moved)
            changed = (upright.argmax(axis=1) != moved.argmax(axis=1)).sum()
            figures += [tv.mean(), kl.mean(), changed]
        totals += figures
        seen = np.mean(np.subtract(read[0], read[degrees]))  # the turn, as the eyes show it
        rows.append(cells(f"{degrees:+d}°", f"{seen:+.1f}°", figures, n))
    means = totals / np.tile([len(TURNS), len(TURNS), 1], 2)  # label changes: a count
    rows.append(cells("all", "", means, n * len(TURNS)))
    print_table(["turn", "eyes show", "TV plain", "TV aligned", "KL plain", "KL aligned",
                 "label changes plain", "aligned"], rows)  # fmt: skip


def cells(turn: str, seen: str, figures, faces: int) -> list[str]:
    tv0, kl0, changed0, tv1, kl1, changed1 = figures
    return [turn, seen, f"{tv0:.3f}", f"{tv1:.3f}", f"{kl0:.3f}", f"{kl1:.3f}",
            f"{int(changed0)}/{faces}", f"{int(changed1)}/{faces}"]  # fmt: skip


if __name__ == "__main__":
    main()
