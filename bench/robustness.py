"""How much accuracy the footage of real cameras costs: FER-2013 PrivateTest faces
put through the conditions webcams and recordings produce, side by side with the
`fer` package.

    pip install --no-deps -r bench/requirements.txt   # the `fer` package, without torch
    python -m bench.robustness [--data PATH] [--votes PATH] [--model models/] [--no-fer]

Each condition turns every 48x48 test face into what a camera would have given
(see CONDITIONS); each model classifies them as it classifies faces in a video
(ours: fer.predict with the demo's test-time views). Prints one table: accuracy
per condition (against the FER+ taggers' majority; `--labels fer2013`: FER-2013's
own labels) and its drop from the clean faces, their average and the worst.
Not a test: run it by hand (a few minutes on a CPU).
"""

from __future__ import annotations

import argparse
import os
import platform
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

import fer_common as fer
from bench.accuracy import (
    MAJORITY,
    ORIGINAL,
    ROOT,
    Contender,
    add_data_arguments,
    fer_package,
    held_out_faces,
    ours,
    print_table,
)


def scale_light(gain: float, offset: float = 0.0) -> Callable[[np.ndarray], np.ndarray]:
    return lambda face: np.clip(face * gain + offset, 0, 255)


def low_contrast(face: np.ndarray) -> np.ndarray:
    """A flat, hazy picture: 40 % of the face's contrast around its mean."""
    return face.mean() + 0.4 * (face - face.mean())


def side_shadow(face: np.ndarray) -> np.ndarray:
    """Light from one side: the far side of the face at a fifth of the light."""
    return face * np.linspace(0.2, 1.0, face.shape[1])[None, :]


def blur(face: np.ndarray) -> np.ndarray:
    """Out of focus or moving: a Gaussian blur of 1 px at 48 px (2-3 px on a webcam face)."""
    return cv2.GaussianBlur(face, (0, 0), 1.0)


def noise(sigma: float) -> Callable[[np.ndarray], np.ndarray]:
    """Sensor noise of `sigma` grey levels, the same for every run (seeded by the face)."""

    def noisy(face: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(int(face.sum()))
        return np.clip(face + rng.normal(0, sigma, face.shape), 0, 255)

    return noisy


def jpeg(quality: int) -> Callable[[np.ndarray], np.ndarray]:
    def compressed(face: np.ndarray) -> np.ndarray:
        _, data = cv2.imencode(".jpg", face.astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality])
        return cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)

    return compressed


def small(size: int) -> Callable[[np.ndarray], np.ndarray]:
    """A face `size` px wide in the frame, scaled up to 48 px as the demo does."""

    def scaled(face: np.ndarray) -> np.ndarray:
        tiny = cv2.resize(face.astype(np.uint8), (size, size), interpolation=cv2.INTER_AREA)
        return fer.to_model_face(tiny)

    return scaled


# What each condition does to a grey 0-255 face (48x48, float), at strengths real
# webcams and recordings produce: a dim room (the mean grey of a well-lit face,
# about 130, falls to about 40), a bright window behind the camera, and so on.
CONDITIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "dim light (x0.3)": scale_light(0.3),
    "dim and noisy (x0.3, noise 4)": lambda face: noise(4)(scale_light(0.3)(face)),
    "low contrast (x0.4)": low_contrast,
    "over-exposed (x1.6 + 40, clipped)": scale_light(1.6, 40),
    "side shadow (light 1 to 0.2)": side_shadow,
    "blur (sigma 1 px)": blur,
    "sensor noise (sigma 10)": noise(10),
    "JPEG quality 25": jpeg(25),
    "small face (20 px)": small(20),
}


def degrade(faces: np.ndarray, condition: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Every face through `condition`, rounded to 8 bits as a camera delivers it."""
    out = [np.round(condition(face[..., 0].astype(np.float32))) for face in faces]
    return np.clip(np.stack(out), 0, 255).astype(np.uint8)[..., None]


def accuracy(contender: Contender, faces: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(contender.predict(faces).argmax(axis=1) == labels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    parser.add_argument("--model", default=str(ROOT / "models"), help="our model folder")
    parser.add_argument("--no-fer", action="store_true", help="leave out the fer package")
    parser.add_argument("--labels", choices=("ferplus", "fer2013"), default="ferplus",
                        help="accuracy against the FER+ majority or FER-2013's labels")  # fmt: skip
    args = parser.parse_args()

    test = held_out_faces(args.data, args.votes)["test"]
    reference = MAJORITY if args.labels == "ferplus" else ORIGINAL
    counted, labels = test.truth(reference)
    faces = test.faces[counted]
    contenders = [ours(Path(args.model))] + ([] if args.no_fer else [fer_package()])
    clean = {c.name: accuracy(c, faces, labels) for c in contenders}
    drops: dict[str, list[float]] = {c.name: [] for c in contenders}
    rows = [["clean faces", *(f"{clean[c.name]:.2%}" for c in contenders)]]
    worst = {c.name: 1.0 for c in contenders}
    for title, condition in CONDITIONS.items():
        degraded = degrade(faces, condition)
        cells = []
        for contender in contenders:
            score = accuracy(contender, degraded, labels)
            drops[contender.name].append(clean[contender.name] - score)
            worst[contender.name] = min(worst[contender.name], score)
            cells.append(f"{score:.2%} ({100 * (score - clean[contender.name]):+.1f})")
        rows.append([title, *cells])
    rows.append(["average drop", *(f"{100 * np.mean(drops[c.name]):.2f} points"
                                   for c in contenders)])  # fmt: skip
    rows.append(["worst condition", *(f"{worst[c.name]:.2%}" for c in contenders)])

    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    print(f"FER-2013 PrivateTest ({len(labels)} faces, {reference}), {machine}; accuracy "
          "(change from clean, in points)\n")  # fmt: skip
    print_table(["condition", *(c.name for c in contenders)], rows)


if __name__ == "__main__":
    fer.run_cli(main)
