"""Frames per second and faces found: this project's live pipeline, with either
face detector, vs the `fer` package's.

    pip install --no-deps -r bench/requirements.txt   # the `fer` package, without torch
    python -m bench.fps [--frames 300] [--model models/] [--yunet PATH] [--clip VIDEO]
    python -m bench.fps --explain --no-fer    # also the Haar rows with --explain (Grad-CAM)

Builds video clips from real photos (../shared/photos and the bundled astronaut):
640x480 and 1280x720 with 1 face, 4 (a 2x2 tile of portraits) and 6 (3x2), and a
640x480 group photo of six faces ~36 px wide; each frame shifted a few pixels so
the detectors have to find the faces again. Each pipeline decodes the clip, finds
the faces, classifies them, draws and writes an annotated video; this one as
`video_tester.py` runs it (LiteRT model), with the Haar cascade and with YuNet (and
the Haar cascade searching the whole frame every time, `--full-search-every 1`), the
`fer` package as its users call it: `FER().detect_emotions(frame)` per frame.
Then footage with camera cuts, motion, tilted heads and small faces: in how many
frames a face is labelled, against the Haar cascade run on every frame (add
`--clip VIDEO` to count the same on your own footage). Prints Markdown tables.
Not a test: run it by hand, on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

import fer_common as fer
import fer_faces
import video_tester as vt
from bench.accuracy import print_table

ROOT = Path(__file__).resolve().parent.parent

PHOTOS = ROOT / "tests" / "photos"
SHARED_YUNET = ROOT.parent / "shared" / "yunet" / fer_faces.YUNET_PATH.name
PORTRAITS = [  # (photo, which face left to right): four different people
    (PHOTOS / "obama-720p.jpg", 0),
    (ROOT / "data" / "astronaut.jpg", 0),
    (PHOTOS / "two_people.jpg", 0),
    (PHOTOS / "two_people.jpg", 1),
]
SIZES = [(640, 480), (1280, 720)]
FACES = (1, 4, 6)
WARM_UP = 10  # frames run before the clock starts (graph tracing, caches)
FER = "fer 25.10.3"


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


def people(count: int) -> list[tuple[Path, int, bool]]:
    """(photo, face, mirrored) for `count` people: the four portraits, then mirrored."""
    return [(*PORTRAITS[i % 4], i >= 4) for i in range(count)]


def tile(size: tuple[int, int], count: int, columns: int) -> np.ndarray:
    """`count` portraits in a grid `columns` wide, filling a frame of `size`."""
    rows = -(-count // columns)
    width, height = size[0] // columns, size[1] // rows
    tiles = []
    for path, face, mirrored in people(count):
        tile = cv2.resize(portrait(path, face, width / height), (width, height))
        tiles.append(cv2.flip(tile, 1) if mirrored else tile)
    grid = np.vstack([np.hstack(tiles[r * columns : (r + 1) * columns]) for r in range(rows)])
    return cv2.resize(grid, size)


def scene(size: tuple[int, int], faces: int) -> np.ndarray:
    """One frame: a single portrait filling it, or a grid of 4 (2x2) or 6 (3x2)."""
    return tile(size, faces, {1: 1, 4: 2, 6: 3}[faces])


def small_faces_scene(face_px: int = 36) -> np.ndarray:
    """A 640x480 group photo: six faces about `face_px` wide, on grey."""
    height = int(face_px / 0.4)
    group = tile((3 * height * 4 // 3, 2 * height), 6, 3)
    frame = np.full((480, 640, 3), 128, np.uint8)
    top, left = (480 - group.shape[0]) // 2, (640 - group.shape[1]) // 2
    frame[top : top + group.shape[0], left : left + group.shape[1]] = group
    return frame


def shaken(still: np.ndarray, frames: int) -> list[np.ndarray]:
    """The still with a slight camera shake."""
    height, width = still.shape[:2]
    out = []
    for i in range(frames):
        dx, dy = 3 * np.sin(2 * np.pi * i / 20), 2 * np.cos(2 * np.pi * i / 27)
        shift = np.float32([[1, 0, dx], [0, 1, dy]])
        out.append(cv2.warpAffine(still, shift, (width, height), borderMode=cv2.BORDER_REFLECT))
    return out


def write_clip(path: Path, frames: list[np.ndarray]) -> None:
    """The frames as an MJPG video at 30 FPS."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()


def footage(frames_per_shot: int = 60) -> tuple[list[np.ndarray], list[int]]:
    """640x480 footage with what real video has, in four shots cut without warning:
    a speaker who tilts the head (up to 25 degrees) while walking across; four
    people, the camera shaking; a group of six faces ~36 px wide; two people, the
    camera zooming in. Returns the frames and how many faces each shows."""
    size, n = (640, 480), frames_per_shot
    centre = (size[0] / 2, size[1] / 2)
    speaker, four, group = scene(size, 1), scene(size, 4), small_faces_scene()
    pair = cv2.resize(cv2.imread(str(PHOTOS / "two_people.jpg")), (640, 376))
    pair = cv2.copyMakeBorder(pair, 52, 52, 0, 0, cv2.BORDER_REPLICATE)

    def moved(image, angle, scale, dx, dy):
        turn = cv2.getRotationMatrix2D(centre, angle, scale)
        turn[:, 2] += (dx, dy)
        return cv2.warpAffine(image, turn, size, borderMode=cv2.BORDER_REPLICATE)

    frames = [moved(speaker, 25 * np.sin(np.pi * i / n), 0.6, 4 * (i - n / 2), 0) for i in range(n)]
    frames += shaken(four, n) + shaken(group, n)
    frames += [moved(pair, 0, 1 + 0.3 * i / n, 0, 30 * i / n) for i in range(n)]
    return frames, [1] * n + [4] * n + [6] * n + [2] * n


# --------------------------------------------------------------------------
# The pipelines
# --------------------------------------------------------------------------


def run_ours(clip: Path, out: Path, *options: str) -> dict:
    """This pipeline as `video_tester.py --no-display --output out` runs it."""
    pipeline = vt.Pipeline(vt.parse_args([*options, "--no-display"]))
    warm = cv2.VideoCapture(str(clip))
    for _ in range(WARM_UP):
        pipeline(warm.read()[1])
    warm.release()
    pipeline.reset()

    source = vt.Source(str(clip), "")
    output = vt.Output(str(out), source.fps)
    found, written = [], 0.0
    started = time.perf_counter()
    try:
        for name, frame in source.frames():
            found.append(len(pipeline(frame)))
            before = time.perf_counter()
            output.write(name, frame)
            written += time.perf_counter() - before
    finally:
        source.release()
        output.close()
    elapsed = time.perf_counter() - started
    seconds = {**pipeline.seconds, "write": written}
    return {"fps": len(found) / elapsed, "found": np.array(found),
            **{stage: spent / len(found) for stage, spent in seconds.items()}}  # fmt: skip


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
    found = []
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
        found.append(len(results))
    capture.release()
    writer.release()
    elapsed = time.perf_counter() - started
    return {"fps": len(found) / elapsed, "found": np.array(found),
            **{stage: spent / len(found) for stage, spent in seconds.items()}}  # fmt: skip


def run_cascade_alone(clip: Path) -> dict:
    """The Haar cascade, with this project's settings, searching every frame."""
    cfg = vt.parse_args([])
    cascade = fer_faces.HaarDetector(cfg.cascade, cfg.scale_factor, cfg.min_neighbors,
                                     cfg.min_face)  # fmt: skip
    capture = cv2.VideoCapture(str(clip))
    found = []
    started = time.perf_counter()
    while (frame := capture.read()[1]) is not None:
        found.append(len(cascade(frame, cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))[0]))
    capture.release()
    return {"fps": len(found) / (time.perf_counter() - started), "found": np.array(found)}


def late_frames(model: str, background: bool, frames: int = 150) -> tuple[int, float]:
    """A camera simulated at 30 FPS on the 640x480 4-face scene (Haar cascade): how
    many frames start more than a frame late, and the slowest frame (ms)."""
    pipeline = vt.Pipeline(vt.parse_args(["--model", model, "--detector", "haar"]))
    if background:
        pipeline.finder.search_in_background()
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
            pipeline(still.copy())
            slowest = max(slowest, time.perf_counter() - before)
    finally:
        pipeline.finder.close()
    return late, 1000 * slowest


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300, help="frames per clip (footage: 4/5)")
    parser.add_argument("--model", default=str(ROOT / "models"))
    default_yunet = fer_faces.YUNET_PATH if fer_faces.YUNET_PATH.is_file() else SHARED_YUNET
    parser.add_argument("--yunet", default=str(default_yunet), help="YuNet .onnx file")
    parser.add_argument("--clip", help="also count the faces labelled in this video")
    parser.add_argument("--no-fer", action="store_true", help="skip the `fer` package")
    parser.add_argument("--explain", action="store_true", help="also time --explain (Haar)")
    args = parser.parse_args()
    if not PHOTOS.is_dir():
        sys.exit(f"no photos at {PHOTOS}: this benchmark builds its clips from them")

    tflite = str(Path(args.model) / fer.MODEL_TFLITE)
    model = tflite if Path(tflite).is_file() else args.model
    detectors = {
        "Haar": ["--detector", "haar"],
        # every search over the whole frame, as before --full-search-every
        "Haar, every search whole": ["--detector", "haar", "--full-search-every", "1"],
    }
    if Path(args.yunet).is_file():
        detectors["YuNet"] = ["--detector", "yunet", "--detector-model", args.yunet]
    else:
        print(f"no YuNet at {args.yunet} (see --yunet): its rows are left out\n")
    contenders = {f"this, {name}": (lambda c, o, opts=opts: run_ours(c, o, "--model", model, *opts))
                  for name, opts in detectors.items()}  # fmt: skip
    if args.explain:  # heat maps need the Keras model: the folder, its LiteRT twin classifies
        contenders["this, Haar, --explain"] = lambda c, o: run_ours(
            c, o, "--model", args.model, "--detector", "haar", "--explain"
        )
    if not args.no_fer:
        if importlib.util.find_spec("fer") is None:
            print("the `fer` package is not installed, so its rows are left out: "
                  "pip install --no-deps -r bench/requirements.txt\n")  # fmt: skip
        else:
            contenders[FER] = run_fer

    clips = [(f"{w}x{h}, {n} face{'s' * (n > 1)}", lambda size=(w, h), n=n: scene(size, n), n)
             for w, h in SIZES for n in FACES]  # fmt: skip
    clips.append(("640x480 group, 6 faces ~36 px", small_faces_scene, 6))
    stages = ("decode", "detect", "preprocess", "classify", "explain", "draw", "write")
    print(f"{os.cpu_count()}-core {platform.machine()} CPU, {args.frames} frames per clip, "
          f"display off, annotated video written; {Path(model).name}; ms per frame by stage; "
          "faces: found per frame; all found: share of frames with every face found")  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        clip, out = Path(scratch) / "clip.avi", Path(scratch) / "out.mp4"
        for label, still, faces in clips:
            write_clip(clip, shaken(still(), args.frames))
            results = {name: run(clip, out) for name, run in contenders.items()}
            fer_fps = results.get(FER, {}).get("fps")
            for name, result in results.items():
                rows.append([label, name, f"{result['fps']:.1f}",
                             f"{result['found'].mean():.2f}/{faces}",
                             f"{(result['found'] >= faces).mean():.0%}",
                             *(f"{1000 * result[s]:.2f}" if s in result else "-" for s in stages),
                             f"{result['fps'] / fer_fps:.1f}x" if fer_fps else ""])  # fmt: skip
        print_table(["clip", "pipeline", "fps", "faces", "all found", *stages, "vs fer"], rows)

        frames, shown = footage(max(args.frames // 5, 10))
        write_clip(clip, frames)
        print(f"\nFootage with cuts, motion, tilted heads and small faces: {len(frames)} frames "
              "of 640x480, a face in each (see footage() in bench/fps.py)")  # fmt: skip
        count_faces(clip, np.array(shown), model, detectors)
    if args.clip:
        print(f"\n{args.clip}:")
        count_faces(Path(args.clip), None, model, detectors)

    print()
    for name, background in (("in line", False), ("in a thread (live cameras)", True)):
        late, slowest = late_frames(model, background)
        print(f"a 30 FPS camera, 4 faces, Haar search {name}: {late} of 150 frames "
              f"more than a frame late, slowest frame {slowest:.0f} ms")  # fmt: skip


def count_faces(clip: Path, shown: np.ndarray | None, model: str, detectors: dict) -> None:
    """How many frames of `clip` get a face labelled (and, where `shown` says how many
    faces each frame shows, every face): the cascade alone on every frame, and
    this pipeline with each detector."""
    results = {"Haar cascade alone, every frame": run_cascade_alone(clip)}
    with tempfile.TemporaryDirectory() as scratch:
        for name, options in detectors.items():
            result = run_ours(clip, Path(scratch) / "out.mp4", "--model", model, *options)
            results[f"this pipeline, {name}"] = result
    rows = []
    for name, result in results.items():
        found = result["found"]
        row = [name, f"{(found > 0).sum()} of {len(found)}"]
        if shown is not None:
            row += [f"{(found >= shown).sum()} of {len(found)}", f"{found.sum() / shown.sum():.2f}"]
        rows.append([*row, f"{result['fps']:.1f}"])
    header = ["", "frames with a face labelled"]
    if shown is not None:
        header += ["with every face", "boxes per face shown"]
    print_table([*header, "fps"], rows)


if __name__ == "__main__":
    main()
