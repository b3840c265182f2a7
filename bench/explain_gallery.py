"""The README's picture of what the model looks at: every face of the bundled
sample photo and the shared photos, each as the model saw it, with its Grad-CAM
heat map and its top-3 probabilities (the cards of `video_tester.py --explain-dir`).

    python -m bench.explain_gallery [--model models/] [--out docs/explain.png] [PHOTO ...]

Also prints, per face, the shown label and how the heat splits between the eye
band (upper half of the crop) and the mouth band (lower third): the figures for
the README's "what the model looks at" paragraph.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

import fer_common as fer
import fer_explain
import video_tester as vt

ROOT = Path(__file__).resolve().parent.parent

PHOTOS = [ROOT / "data" / "astronaut.jpg"] + [
    ROOT / "tests" / "photos" / name for name in ("two_people.jpg", "obama-720p.jpg", "biden.jpg")
]


def explain_photo(pipeline: vt.Pipeline, path: Path) -> list[np.ndarray]:
    """The explanation card of each face in the photo, left to right."""
    frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if frame is None:
        raise fer.UserError(f"cannot read image {path}")
    tracks = pipeline(frame, new_scene=True)
    cards = []
    for track, face, heat in sorted(zip(tracks, pipeline.faces, pipeline.heat),
                                    key=lambda item: item[0].box[0]):  # fmt: skip
        top = heat.sum() or 1.0
        eyes, mouth = heat[: fer.IMAGE_SIZE // 2].sum(), heat[-fer.IMAGE_SIZE // 3 :].sum()
        print(f"{path.name}, face at x={track.box[0]}: {track.label} "
              f"({track.probabilities.max():.0%}); heat: eye band {eyes / top:.0%}, "
              f"mouth band {mouth / top:.0%}")  # fmt: skip
        cards.append(fer_explain.card(face, heat, track.probabilities, track.label))
    return cards


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="*", type=Path, help="default: sample + shared photos")
    parser.add_argument("--model", default=str(ROOT / "models"), help="model folder or file")
    parser.add_argument("--out", default=str(ROOT / "docs" / "explain.png"), help="PNG to write")
    args = parser.parse_args()

    photos = args.photos or [path for path in PHOTOS if path.is_file()]
    pipeline = vt.Pipeline(vt.parse_args(["--model", args.model, "--explain", "--no-display"]))
    cards = [card for path in photos for card in explain_photo(pipeline, path)]
    if not cards:
        raise fer.UserError(f"no face found in {', '.join(map(str, photos))}")
    gap = np.full((8, cards[0].shape[1], 3), 255, np.uint8)
    gallery = np.vstack([part for card in cards for part in (card, gap)][:-1])
    with fer.atomic_path(args.out) as tmp:
        cv2.imwrite(str(tmp), gallery)
    print(f"wrote {len(cards)} faces to {args.out}")


if __name__ == "__main__":
    fer.run_cli(main)
