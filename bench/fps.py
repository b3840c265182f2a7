"""Frames per second: this project's live pipeline vs the `fer` package's.

    pip install --no-deps -r bench/requirements.txt   # the `fer` package, without torch
    python bench/fps.py [--frames 300] [--model models/]

Builds video clips from real photos (../shared/photos and the bundled astronaut):
640x480 and 1280x720, with 1 face and with 4 (a 2x2 tile of portraits), each
frame shifted a few pixels so the detector has to find the faces again. Both
pipelines decode the clip, find faces with the Haar cascade, classify them, draw
and write an annotated video; this one as `video_tester.py` runs it, the `fer`
package as its users call it: `FER().detect_emotions(frame)` per frame.
Prints one table. Not a test: run it by hand, on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import fer_common as fer  # noqa: E402
import video_tester as vt  # noqa: E402

PHOTOS = ROOT.parent / "shared" / "photos"
PORTRAITS = [  # (photo, which face left to right): four different people
    (PHOTOS / "obama-720p.jpg", 0),
    (ROOT / "data" / "astronaut.jpg", 0),
    (PHOTOS / "two_people.jpg", 0),
    (PHOTOS / "two_people.jpg", 1),
]
SIZES = [(640, 480), (1280, 720)]
WARM_UP = 10  # frames run before the clock starts (graph tracing, caches)


# --------------------------------------------------------------------------
# Clips
# --------------------------------------------------------------------------


def portrait(path: Path, face: int, aspect: float) -> np.ndarray:
    """A crop of `path` around one face (the face about 40 % of its height)."""
    image = cv2.imread(str(path))
    cascade = cv2.CascadeClassifier(vt.CASCADE)
    boxes = sorted(cascade.detectMultiScale(image, 1.1, 8, minSize=(36, 36)), key=lambda b: b[0])
    x, y, w, h = boxes[face]
    height = int(h / 0.4)
    width = int(height * aspect)
    cx, cy = x + w // 2, y + h // 2
    pad = max(width, height)
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REFLECT)
    return padded[cy + pad - height // 2 : cy + pad + height // 2 + 1,
                  cx + pad - width // 2 : cx + pad + width // 2 + 1]  # fmt: skip


def scene(size: tuple[int, int], faces: int) -> np.ndarray:
    """One frame: a single portrait filling it, or a 2x2 tile of four."""
    width, height = size
    if faces == 1:
        return cv2.resize(portrait(*PORTRAITS[0], width / height), size)
    tiles = [cv2.resize(portrait(p, f, width / height), (width // 2, height // 2))
             for p, f in PORTRAITS]  # fmt: skip
    return np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])])


def small_faces_scene(face_px: int = 36) -> np.ndarray:
    """A 640x480 group photo: six faces about `face_px` wide, on grey."""
    height = int(face_px / 0.4)
    width = height * 4 // 3
    people = PORTRAITS + PORTRAITS[:2]
    tiles = [cv2.resize(portrait(p, f, 4 / 3), (width, height)) for p, f in people]
    tiles[4:] = [cv2.flip(tile, 1) for tile in tiles[4:]]  # two more "people"
    group = np.vstack([np.hstack(tiles[:3]), np.hstack(tiles[3:])])
    frame = np.full((480, 640, 3), 128, np.uint8)
    top, left = (480 - group.shape[0]) // 2, (640 - group.shape[1]) // 2
    frame[top : top + group.shape[0], left : left + group.shape[1]] = group
    return frame


def write_clip(path: Path, still: np.ndarray, frames: int) -> None:
    """The still with a slight camera shake, as an MJPG video at 30 FPS."""
    height, width = still.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (width, height))
    for i in range(frames):
        dx, dy = 3 * np.sin(2 * np.pi * i / 20), 2 * np.cos(2 * np.pi * i / 27)
        shift = np.float32([[1, 0, dx], [0, 1, dy]])
        writer.write(cv2.warpAffine(still, shift, (width, height), borderMode=cv2.BORDER_REFLECT))
    writer.release()


# --------------------------------------------------------------------------
# The two pipelines
# --------------------------------------------------------------------------


def run_ours(clip: Path, out: Path, *options: str) -> dict:
    cfg = vt.parse_args([*options, "--no-display"])
    pipeline = vt.Pipeline(cfg)
    warm = cv2.VideoCapture(str(clip))
    for index in range(WARM_UP):
        pipeline(warm.read()[1], index)
    warm.release()
    pipeline.seconds = dict.fromkeys(pipeline.seconds, 0.0)
    pipeline.tracker = vt.Tracker()

    source = vt.Source(str(clip), "")
    output = vt.Output(str(out), source.fps)
    faces = frames = 0
    written = 0.0
    started = time.perf_counter()
    try:
        for index, (name, frame) in enumerate(source.frames()):
            faces += len(pipeline(frame, index))
            before = time.perf_counter()
            output.write(name, frame)
            written += time.perf_counter() - before
            frames += 1
    finally:
        source.release()
        output.close()
    elapsed = time.perf_counter() - started
    seconds = {**pipeline.seconds, "write": written}
    return {"fps": frames / elapsed, "faces": faces / frames,
            **{stage: spent / frames for stage, spent in seconds.items()}}  # fmt: skip


def run_fer(clip: Path, out: Path) -> dict:
    """The `fer` package as its README shows: FER() with defaults, detect_emotions."""
    from fer.fer import FER

    detector = FER()
    capture = cv2.VideoCapture(str(clip))
    for _ in range(WARM_UP):
        detector.detect_emotions(capture.read()[1])
    capture.release()

    capture = cv2.VideoCapture(str(clip))
    writer = None
    seconds = dict.fromkeys(("decode", "detect", "classify", "draw", "write"), 0.0)
    faces = frames = 0
    started = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        ok, frame = capture.read()
        if not ok:
            break
        t1 = time.perf_counter()
        # detect_emotions(frame) does exactly these two steps; split to time them.
        boxes = detector.find_faces(frame)
        t2 = time.perf_counter()
        results = detector.detect_emotions(frame, face_rectangles=boxes)
        t3 = time.perf_counter()
        for result in results:
            x, y, w, h = result["box"]
            emotion = max(result["emotions"], key=result["emotions"].get)
            cv2.rectangle(frame, (x, y), (x + w, y + h), (0, 215, 255), 2)
            cv2.putText(frame, emotion, (x, y - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 215, 255),
                        2, cv2.LINE_AA)  # fmt: skip
        t4 = time.perf_counter()
        if writer is None:
            height, width = frame.shape[:2]
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 30, (width, height))
        writer.write(frame)
        t5 = time.perf_counter()
        for stage, spent in zip(seconds, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            seconds[stage] += spent
        faces += len(results)
        frames += 1
    capture.release()
    writer.release()
    elapsed = time.perf_counter() - started
    return {"fps": frames / elapsed, "faces": faces / frames,
            **{stage: spent / frames for stage, spent in seconds.items()}}  # fmt: skip


def late_frames(model: str, background: bool, frames: int = 150) -> tuple[int, float]:
    """A camera simulated at 30 FPS on the 640x480 4-face scene: how many frames
    start more than a frame late, and the slowest frame (ms)."""
    pipeline = vt.Pipeline(vt.parse_args(["--model", model]))
    if background:
        pipeline.search_in_background()
    still = scene((640, 480), 4)
    late, slowest = 0, 0.0
    start = time.perf_counter()
    try:
        for index in range(frames):
            wait = start + index / 30 - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            late += wait < -1 / 30
            before = time.perf_counter()
            pipeline(still.copy(), index)
            slowest = max(slowest, time.perf_counter() - before)
    finally:
        pipeline.close()
    return late, 1000 * slowest


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300, help="frames per clip")
    parser.add_argument("--model", default=str(ROOT / "models"))
    parser.add_argument("--no-fer", action="store_true", help="skip the `fer` package")
    args = parser.parse_args()
    if not PHOTOS.is_dir():
        sys.exit(f"no photos at {PHOTOS}: this benchmark builds its clips from them")

    contenders = [
        ("this (Keras)", lambda c, o: run_ours(c, o, "--model", args.model, "--no-litert"))
    ]
    tflite = Path(args.model) / fer.MODEL_TFLITE
    if tflite.is_file():
        contenders.append(("this (LiteRT)", lambda c, o: run_ours(c, o, "--model", str(tflite))))
    if not args.no_fer:
        contenders.append(("fer 25.10.3", run_fer))

    columns = ("fps", "faces", "decode", "detect", "preprocess", "classify", "draw", "write")
    print(f"{os.cpu_count()}-core {platform.machine()} CPU, {args.frames} frames per clip, "
          f"display off, annotated video written; ms per frame by stage")  # fmt: skip
    header = f"{'clip':<18}{'pipeline':<15}" + "".join(f"{c:>11}" for c in columns) + "  vs fer"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as scratch:
        for size in SIZES:
            for faces in (1, 4):
                clip = Path(scratch) / f"clip_{size[0]}x{size[1]}_{faces}.avi"
                write_clip(clip, scene(size, faces), args.frames)
                results = {name: run(clip, Path(scratch) / "out.mp4") for name, run in contenders}
                fer_fps = results.get("fer 25.10.3", {}).get("fps")
                for name, result in results.items():
                    cells = [f"{result['fps']:.1f}", f"{result['faces']:.2f}/{faces}"]
                    cells += [f"{1000 * result[c]:.2f}" if c in result else "-"
                              for c in columns[2:]]  # fmt: skip
                    ratio = f"{result['fps'] / fer_fps:.1f}x" if fer_fps else ""
                    label = f"{size[0]}x{size[1]}, {faces} face{'s' * (faces > 1)}"
                    print(f"{label:<18}{name:<15}" + "".join(f"{c:>11}" for c in cells)
                          + f"  {ratio:>6}")  # fmt: skip

    group = small_faces_scene()
    found = len(vt.Pipeline(vt.parse_args(["--model", args.model])).find_faces(
        cv2.cvtColor(group, cv2.COLOR_BGR2GRAY)))  # fmt: skip
    line = f"640x480 group photo, 6 faces ~36 px wide: this finds {found}/6"
    if not args.no_fer:
        from fer.fer import FER

        line += f", fer (defaults) {len(FER().find_faces(group))}/6"
    print(line)
    for name, background in (("in line", False), ("in a thread (live cameras)", True)):
        late, slowest = late_frames(args.model, background)
        print(f"a 30 FPS camera, 4 faces, whole-frame search {name}: {late} of 150 frames "
              f"more than a frame late, slowest frame {slowest:.0f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
