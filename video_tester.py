"""Label the emotion of every face in a webcam stream, video, image or folder.

    python video_tester.py                          # webcam (or the bundled sample)
    python video_tester.py --source clip.mp4 --no-display --output out.mp4 --log faces.csv
    python video_tester.py --source photos/ --output annotated/

Press q or Esc in the window to quit. Every setting below is a constant that
the command line overrides by its lower-case name; `--help` lists them.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

import fer_common as fer
from fer_common import UserError

HERE = Path(__file__).resolve().parent

# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------

SOURCE = "auto"  # camera index, video, image or folder; "auto": camera 0, else SAMPLE
SAMPLE = str(HERE / "data" / "astronaut.jpg")  # public-domain NASA portrait
MODEL = str(HERE / "models")  # folder with fer.json + fer.h5 (or a .keras file)
CASCADE = str(HERE / "haarcascade_frontalface_default.xml")
OUTPUT = ""  # annotated video (.mp4/.avi), image (.jpg/.png) or folder; "": none
LOG = ""  # CSV with one row per face per frame; "": none
DISPLAY = True  # show a window (--no-display for headless runs)

SCALE_FACTOR = 1.1  # Haar pyramid step: smaller finds more faces, slower
MIN_NEIGHBORS = 8  # Haar votes a face needs: larger, fewer false faces
MIN_FACE = 36  # smallest face searched for, in pixels
MARGIN = fer.FACE_MARGIN  # widen each face box by this share (FER-2013 framing)

SETTINGS = {name: value for name, value in globals().items() if name.isupper() and name != "HERE"}

WINDOW = "Emotion recognition (q to quit)"
COLOURS = {  # box colour per emotion, BGR
    "Angry": (0, 0, 230), "Disgust": (0, 140, 0), "Fear": (150, 0, 150),
    "Happy": (0, 215, 255), "Sad": (200, 80, 0), "Surprise": (0, 150, 255),
    "Neutral": (200, 200, 200),
}  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = fer.settings_parser(SETTINGS, __doc__)
    return parser.parse_args(argv)


# --------------------------------------------------------------------------
# Frames in
# --------------------------------------------------------------------------


class Source:
    """Frames from a camera, video, image or folder; `total` is None for a camera."""

    def __init__(self, spec: str, sample: str):
        self.spec, self.capture, self.paths, self.total = spec, None, None, None
        self.fps = 30.0
        if spec == "auto":
            self.capture = open_camera(0)
            if self.capture.isOpened():
                self.spec = "0"
                return
            self.capture.release()
            self.capture = None
            print(f"no camera found: labelling the sample photo {sample}")
            self.spec = spec = sample
        if spec.isdigit():
            self.capture = open_camera(int(spec))
            if not self.capture.isOpened():
                raise UserError(
                    f"cannot open camera {spec}: is one connected and free? "
                    "Or pass --source FILE (a video, image or folder)"
                )
            return
        path = Path(spec)
        if not path.exists():
            raise UserError(f"no such file or folder: {spec}")
        if path.is_dir():
            self.paths = sorted(p for p in path.iterdir() if p.suffix.lower() in fer.IMAGE_SUFFIXES)
            if not self.paths:
                raise UserError(f"no images ({', '.join(sorted(fer.IMAGE_SUFFIXES))}) in {spec}")
        elif path.suffix.lower() in fer.IMAGE_SUFFIXES:
            self.paths = [path]
        else:
            self.capture = cv2.VideoCapture(spec)
            if not self.capture.isOpened():
                raise UserError(f"cannot read {spec} as a video")
            self.fps = self.capture.get(cv2.CAP_PROP_FPS) or self.fps
            self.total = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        if self.paths:
            self.total = len(self.paths)

    @property
    def is_camera(self) -> bool:
        return self.spec.isdigit()

    @property
    def is_still(self) -> bool:
        return self.paths is not None

    def frames(self) -> Iterator[tuple[str, np.ndarray]]:
        """Yield (name, BGR frame) until the source ends."""
        if self.paths is not None:
            for path in self.paths:
                frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if frame is None:
                    raise UserError(f"cannot read image {path}")
                yield path.name, frame
            return
        count = 0
        while True:
            ok, frame = self.capture.read()
            if not ok:
                break
            count += 1
            yield f"frame_{count:06d}.jpg", frame
        if count == 0 and not self.is_camera:
            raise UserError(f"cannot read any frame from {self.spec}")

    def release(self) -> None:
        if self.capture is not None:
            self.capture.release()


def open_camera(index: int) -> cv2.VideoCapture:
    """Open a camera without OpenCV's multi-line warnings when there is none."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        return cv2.VideoCapture(index)
    finally:
        cv2.utils.logging.setLogLevel(level)


# --------------------------------------------------------------------------
# Faces and emotions
# --------------------------------------------------------------------------


class EmotionDetector:
    """Haar cascade for faces, then the CNN on every face of a frame at once."""

    def __init__(self, cfg: argparse.Namespace):
        self.cascade = cv2.CascadeClassifier(cfg.cascade)
        if self.cascade.empty():
            raise UserError(f"cannot load the face detector {cfg.cascade}")
        self.model = fer.load_model(cfg.model)
        self.cfg = cfg

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Face boxes (N, 4) as x, y, w, h and their emotion probabilities (N, 7)."""
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        boxes = self.cascade.detectMultiScale(
            gray,
            scaleFactor=self.cfg.scale_factor,
            minNeighbors=self.cfg.min_neighbors,
            minSize=(self.cfg.min_face, self.cfg.min_face),
        )
        boxes = np.asarray(boxes, dtype=int).reshape(-1, 4)
        if len(boxes) == 0:
            return boxes, np.zeros((0, len(fer.EMOTIONS)), np.float32)
        faces = fer.crop_faces(gray, boxes, self.cfg.margin)
        # One compiled call for all faces of the frame: a plain model(x) call runs
        # eagerly (~40 ms here) and model.predict sets up a whole loop each time.
        probabilities = self.model.predict_on_batch(faces.astype(np.float32))
        return boxes, probabilities


def draw(frame: np.ndarray, boxes: np.ndarray, probabilities: np.ndarray, fps: float) -> None:
    """Box, label and confidence for each face; an FPS counter in the corner."""
    for (x, y, w, h), probs in zip(boxes, probabilities):
        best = int(np.argmax(probs))
        colour = COLOURS[fer.EMOTIONS[best]]
        blue, green, red = colour
        ink = (0, 0, 0) if 0.114 * blue + 0.587 * green + 0.299 * red > 140 else (255, 255, 255)
        text = f"{fer.EMOTIONS[best]} {probs[best]:.0%}"
        scale = max(0.5, w / 200)
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
        top = max(y - th - 8, 0)
        cv2.rectangle(frame, (x, y), (x + w, y + h), colour, 2)
        cv2.rectangle(frame, (x, top), (x + tw + 6, top + th + 8), colour, -1)
        cv2.putText(frame, text, (x + 3, top + th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, ink, 2,
                    cv2.LINE_AA)  # fmt: skip
    if fps > 0:
        cv2.putText(frame, f"{fps:.1f} FPS", (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 255, 0),
                    2, cv2.LINE_AA)  # fmt: skip


# --------------------------------------------------------------------------
# Frames out
# --------------------------------------------------------------------------


class Output:
    """Annotated frames to a video, an image, or a folder of images."""

    def __init__(self, path: str, fps: float):
        self.path, self.fps, self.writer = Path(path), fps, None
        self.kind = (
            "image"
            if self.path.suffix.lower() in fer.IMAGE_SUFFIXES
            else ("video" if self.path.suffix else "folder")
        )
        target = self.path if self.kind == "folder" else self.path.parent
        target.mkdir(parents=True, exist_ok=True)

    def write(self, name: str, frame: np.ndarray) -> None:
        if self.kind == "image":
            ok = cv2.imwrite(str(self.path), frame)
        elif self.kind == "folder":
            ok = cv2.imwrite(str(self.path / name), frame)
        else:
            if self.writer is None:
                codec = "MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"
                height, width = frame.shape[:2]
                self.writer = cv2.VideoWriter(
                    str(self.path), cv2.VideoWriter_fourcc(*codec), self.fps, (width, height)
                )
            ok = self.writer.isOpened()
            if ok:
                self.writer.write(frame)
        if not ok:
            raise UserError(f"cannot write {self.path}")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()


def open_log(path: str, stack: contextlib.ExitStack):
    stream = stack.enter_context(open(path, "w", newline=""))  # noqa: SIM115 (closed by stack)
    log = csv.writer(stream)
    log.writerow(
        ["frame", "time_s", "face", "x", "y", "w", "h", "emotion", "confidence"]
        + [emotion.lower() for emotion in fer.EMOTIONS]
    )
    return log


def write_log_rows(log, index: int, seconds: float, boxes, probabilities) -> None:
    for face, ((x, y, w, h), probs) in enumerate(zip(boxes, probabilities)):
        best = int(np.argmax(probs))
        log.writerow(
            [
                index,
                f"{seconds:.3f}",
                face,
                x,
                y,
                w,
                h,
                fer.EMOTIONS[best],
                f"{probs[best]:.4f}",
                *(f"{p:.4f}" for p in probs),
            ]
        )


# --------------------------------------------------------------------------
# Main loop
# --------------------------------------------------------------------------


def main() -> None:
    cfg = parse_args()
    detector = EmotionDetector(cfg)  # fails early on a missing model
    display = cfg.display and can_display()

    # Whatever ends the run (end of input, q, Ctrl-C, an error), everything opened
    # here is released: camera, video writer, log file, window.
    with contextlib.ExitStack() as stack:
        source = Source(cfg.source, cfg.sample)
        stack.callback(source.release)
        if display:
            stack.callback(cv2.destroyAllWindows)
        if cfg.source == "auto" and source.is_still and not cfg.output:
            cfg.output = str(HERE / "output" / (Path(cfg.sample).stem + "_annotated.jpg"))
        output = Output(cfg.output, source.fps) if cfg.output else None
        if output:
            stack.callback(output.close)
        log = open_log(cfg.log, stack) if cfg.log else None
        progress = None
        if not source.is_camera:
            from tqdm import tqdm

            progress = stack.enter_context(tqdm(total=source.total, unit="frame", disable=None))

        started = last = time.perf_counter()
        fps, frames_done, faces_seen = 0.0, 0, 0
        for index, (name, frame) in enumerate(source.frames()):
            boxes, probabilities = detector(frame)
            draw(frame, boxes, probabilities, 0.0 if source.is_still else fps)
            seconds = last - started if source.is_camera else index / source.fps
            if log:
                write_log_rows(log, index, seconds, boxes, probabilities)
            if output:
                output.write(name, frame)
            if progress is not None:
                progress.update()
            frames_done, faces_seen = frames_done + 1, faces_seen + len(boxes)
            now = time.perf_counter()
            instant, last = 1 / max(now - last, 1e-6), now
            fps = 0.9 * fps + 0.1 * instant if fps else instant  # smoothed, to be readable
            if display:
                cv2.imshow(WINDOW, frame)
                key = cv2.waitKey(0 if source.is_still and source.total == 1 else 1) & 0xFF
                closed = cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) < 1
                if key in (ord("q"), 27) or closed:
                    break

    print(f"{frames_done} frames, {faces_seen} faces labelled")
    if cfg.output:
        print(f"wrote the annotated output to {cfg.output}")
    if cfg.log:
        print(f"wrote one row per face to {cfg.log}")


def can_display() -> bool:
    """False where no window can open (a server, CI); the run then goes on headless."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        print("no display found: running without a window (see --output)")
        return False
    return True


if __name__ == "__main__":
    fer.run_cli(main)
