"""Label stability: how often the shown label flips on faces that do not change
expression, and how many frames a real change takes to show, with and without
the demo's smoothing.

    python -m bench.stability [--model models/] [--frames 300]

Clips are built from real photos (see bench/fps.py): a still with a slight
camera shake, sensor noise and flickering light (1 face and 4 faces, 640x480),
and a cut from one person's portrait to another's at the same place (the face's
expression "changes"). Prints one table. Not a test: run it by hand.
"""

from __future__ import annotations

import argparse
import itertools
from collections import Counter

import cv2
import numpy as np

import video_tester as vt
from bench.fps import PORTRAITS, ROOT, portrait, scene

SIZE = (640, 480)


def shaken(still: np.ndarray, frames: int, seed: int = 0) -> list[np.ndarray]:
    """The still as a webcam would film it: shifted and zoomed slightly at random
    each frame (a hand-held camera), with sensor noise and flickering light."""
    rng = np.random.default_rng(seed)
    height, width = still.shape[:2]
    out = []
    for _ in range(frames):
        dx, dy = rng.normal(0, 1.5, 2)
        move = cv2.getRotationMatrix2D((width / 2, height / 2), 0, 1 + rng.normal(0, 0.01))
        move[:, 2] += (dx, dy)
        frame = cv2.warpAffine(still, move, (width, height), borderMode=cv2.BORDER_REFLECT)
        frame = frame * rng.normal(1, 0.02) + rng.normal(0, 4, frame.shape)
        out.append(np.clip(frame, 0, 255).astype(np.uint8))
    return out


def shown_labels(frames: list[np.ndarray], model: str, smoothing: float) -> dict[int, list[str]]:
    """The label shown for each track, frame by frame."""
    pipeline = vt.Pipeline(vt.parse_args(["--model", model, "--smoothing", str(smoothing)]))
    labels: dict[int, list[str]] = {}
    for frame in frames:
        for track in pipeline(frame.copy()):
            labels.setdefault(track.id, []).append(track.emotion)
    return labels


def changes_per_second(labels: dict[int, list[str]], fps: float = 30.0) -> float:
    """Label changes per second per face, over the faces seen at least half the clip."""
    longest = max(len(seq) for seq in labels.values())
    rates = [sum(a != b for a, b in itertools.pairwise(seq)) / (len(seq) / fps)
             for seq in labels.values() if len(seq) >= longest / 2]  # fmt: skip
    return float(np.mean(rates))


def frames_to_show_change(model: str, smoothing: float, frames: int) -> int | None:
    """Frames after a cut (face A -> face B, same place) until the shown label is
    the one B gets on its own; None if it never shows within the clip."""
    a = cv2.resize(portrait(*PORTRAITS[0], SIZE[0] / SIZE[1]), SIZE)
    b = cv2.resize(portrait(*PORTRAITS[3], SIZE[0] / SIZE[1]), SIZE)
    alone = shown_labels(shaken(b, 30, seed=2), model, 0.0)
    target_label = Counter(label for seq in alone.values() for label in seq).most_common(1)[0][0]
    clip = shaken(a, frames, seed=1) + shaken(b, frames, seed=2)
    labels = shown_labels(clip, model, smoothing)
    sequence = max(labels.values(), key=len)  # the face that lived through the cut
    if len(sequence) < 2 * frames:
        return None
    after = sequence[frames:]
    for lag in range(len(after)):
        if all(label == target_label for label in after[lag : lag + 5]):
            return lag
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "models"))
    parser.add_argument("--frames", type=int, default=300, help="frames per still clip")
    args = parser.parse_args()

    settings = [("off", 0.0), (f"SMOOTHING={vt.SMOOTHING}", vt.SMOOTHING)]
    print(f"{'smoothing':<16}{'flips/s, 1 face':>17}{'flips/s, 4 faces':>18}"
          f"{'frames to show a change':>26}")  # fmt: skip
    stills = {faces: shaken(scene(SIZE, faces), args.frames) for faces in (1, 4)}
    for name, smoothing in settings:
        flips = [changes_per_second(shown_labels(stills[n], args.model, smoothing)) for n in (1, 4)]
        lag = frames_to_show_change(args.model, smoothing, 60)
        print(f"{name:<16}{flips[0]:>17.2f}{flips[1]:>18.2f}{lag if lag is not None else '-':>26}")
    print(
        "(30 FPS clips, 640x480; flips/s: label changes per second per face on a still "
        "with camera shake)"
    )


if __name__ == "__main__":
    main()
