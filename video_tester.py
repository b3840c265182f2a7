"""Label the emotion of every face in a webcam stream, video, image or folder, or
in a study: a folder of recordings (see fer_study.py).

    python video_tester.py                          # webcam (or the bundled sample)
    python video_tester.py --source clip.mp4 --no-display --output out.mp4 --log faces.csv
    python video_tester.py --source photos/ --output annotated/
    python video_tester.py --detector yunet         # YuNet finds more faces (downloaded once)
    python video_tester.py --source photos/ --explain --explain-dir why/   # what it looked at
    python video_tester.py --source recordings/ --output results/  # a study, on every core

Press q or Esc in the window to quit. Every setting below is a constant that
the command line overrides by its lower-case name; `--help` lists them.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import itertools
import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

import fer_common as fer
import fer_explain
import fer_faces
from fer_common import UserError
from fer_faces import UNCERTAIN, Track

HERE = Path(__file__).resolve().parent

# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------

SOURCE = "auto"  # camera index, video, image or folder; "auto": camera 0, else SAMPLE
SAMPLE = str(HERE / "data" / "astronaut.jpg")  # the photo without a camera: a NASA portrait
MODEL = str(HERE / "models")  # folder with fer.json + fer.h5 (or a .keras or .tflite file)
LITERT = True  # classify with the folder's fer.tflite, if it is the same model: faster
# each face is classified as these views, their probabilities averaged: "one"; "flip":
# it and its mirror image; "ten": also four windows around the centre, each mirrored
VIEWS = fer.VIEWS
CASCADE = str(HERE / "haarcascade_frontalface_default.xml")  # the Haar cascade's file
OUTPUT = ""  # annotated video (.mp4/.avi/.webm), image (.jpg/.png) or folder; "": none
LOG = ""  # CSV with one row per face per frame; "": none
SUMMARY = ""  # PNG of each face's emotion over time and its share per emotion; "": none
EXPLAIN = False  # lay a heat map over each face: where the model saw its emotion (Grad-CAM)
EXPLAIN_DIR = ""  # folder for one PNG per face: the face, its heat map, top-3 probabilities
DISPLAY = True  # show a window (--no-display for headless runs)

# A study: --source a folder holding videos, --output a folder for the results.

# recordings labelled side by side, each worker with its own model; 0: one per two
# cores, since one recording's pipeline (detection, classification) keeps two busy
WORKERS = 0
RAY = ""  # label them on the Ray cluster at this address ("auto", "HOST:6379"); "": here
ANNOTATE = False  # also write each recording annotated

# Finding the faces.

# "haar": the Haar cascade (shipped); "yunet": YuNet (downloaded once into models/);
# "auto": YuNet when models/ has it, else the Haar cascade
DETECTOR = "auto"
DETECTOR_MODEL = ""  # a YuNet .onnx file at hand; "": models/face_detection_yunet_2023mar.onnx
MIN_SCORE = 0.75  # YuNet: the confidence a face needs
ALIGN = True  # YuNet: turn each face upright by its eyes before the 48x48 crop
SCALE_FACTOR = 1.1  # Haar pyramid step: smaller finds more faces, slower
MIN_NEIGHBORS = 8  # Haar votes a face needs: larger, fewer false faces
MIN_FACE = 30  # Haar: smallest face searched for, in pixels: finds faces of ~36 px and up
MARGIN = fer.FACE_MARGIN  # widen each face box by this share (FER-2013 framing)
# search for new faces every k-th frame (the whole frame at once after a camera cut
# or when a face is lost); in between, follow the faces already found
DETECT_EVERY = 15
# every k-th of those searches looks at the whole frame, the others only where the
# picture changed (a new face changes it); 1: always the whole frame
FULL_SEARCH_EVERY = 4

# Following the faces and their emotions.

SMOOTHING = 0.7  # share of a face's past probabilities kept each frame (0: raw labels)
MIN_IOU = 0.3  # a face box overlapping a track's last box this much continues the track
MAX_MISSED = 5  # forget a face that this many searches in a row looked for and did not find
# below this smoothed top probability a face is labelled "uncertain" (grey box); "auto":
# the model's own, found when it was trained (metrics.json): the point under which its
# labels are wrong more often than right on FER-2013's PublicTest faces
MIN_CONFIDENCE = "auto"

# What the command line accepts for a setting where its default's type says too
# little: choices, or a function that converts the text (ValueError: refused).
ACCEPTS = {
    "VIEWS": fer.VIEW_CHOICES,
    "WORKERS": fer.number(0, kind=int),
    "DETECTOR": ("auto", "haar", "yunet"),
    "MIN_SCORE": fer.number(0, 1),
    "SCALE_FACTOR": fer.number(1.01, 2),
    "MIN_NEIGHBORS": fer.number(0, kind=int),
    "MIN_FACE": fer.number(1, kind=int),
    "MARGIN": fer.number(0, 1),
    "DETECT_EVERY": fer.number(1, kind=int),
    "FULL_SEARCH_EVERY": fer.number(1, kind=int),
    "SMOOTHING": fer.number(0, 0.99),
    "MIN_IOU": fer.number(0, 1),
    "MAX_MISSED": fer.number(1, kind=int),
    "MIN_CONFIDENCE": fer.auto_or(fer.number(0, 1)),
}
SETTINGS = {name: value for name, value in globals().items()
            if name.isupper() and name not in ("HERE", "UNCERTAIN", "ACCEPTS")}  # fmt: skip

WINDOW = "Emotion recognition (q to quit)"
COLOURS = {  # box colour per label, BGR
    "Angry": (0, 0, 230), "Disgust": (0, 140, 0), "Fear": (150, 0, 150),
    "Happy": (0, 215, 255), "Sad": (200, 80, 0), "Surprise": (0, 150, 255),
    "Neutral": (170, 160, 0), UNCERTAIN: (140, 140, 140),
}  # fmt: skip
LABELS = (*fer.EMOTIONS, UNCERTAIN)  # what a face can be shown as


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return fer.settings_parser(SETTINGS, __doc__, [__file__], ACCEPTS).parse_args(argv)


# --------------------------------------------------------------------------
# Frames in
# --------------------------------------------------------------------------


class Source:
    """Frames from a camera, video, image or folder; `total` is None for a camera."""

    def __init__(self, spec: str, sample: str):
        self.spec, self.capture, self.paths, self.total = spec, None, None, None
        self.reader: FrameReader | None = None
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
        self.reader = FrameReader(self.capture, drop_stale=self.is_camera)
        count = 0
        for frame in self.reader:
            count += 1
            yield f"frame_{count:06d}.jpg", frame
        if count == 0 and not self.is_camera:
            raise UserError(f"cannot read any frame from {self.spec}")

    def release(self) -> None:
        if self.reader is not None:
            self.reader.close()  # before the capture: the thread may be reading from it
        if self.capture is not None:
            self.capture.release()


class FrameReader:
    """Decodes frames in a thread, overlapping the work on the previous frame.

    A camera keeps only its newest frame: one that waited is dropped, never queued,
    so what is shown is at most a frame old. A video is read ahead without loss.
    """

    def __init__(self, capture: cv2.VideoCapture, drop_stale: bool):
        self.capture, self.drop_stale = capture, drop_stale
        self.frames: queue.Queue = queue.Queue(maxsize=1 if drop_stale else 4)
        self.stopped = threading.Event()
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self._read, name="frame-reader", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while not self.stopped.is_set():
                ok, frame = self.capture.read()
                if not ok:
                    break
                self._put(frame)
        except Exception as error:  # reported by the consumer, as a one-line error
            self.error = error
        finally:
            self._put(None)  # the end, or a failed read: wake the consumer

    def _put(self, frame: np.ndarray | None) -> None:
        if self.drop_stale:
            with contextlib.suppress(queue.Empty):
                self.frames.get_nowait()  # nobody took it in time: drop it
        while not self.stopped.is_set():
            with contextlib.suppress(queue.Full):
                self.frames.put(frame, timeout=0.1)
                return

    def __iter__(self) -> Iterator[np.ndarray]:
        while (frame := self.frames.get()) is not None:
            yield frame
        if self.error is not None:
            raise UserError(f"reading frames failed: {fer.first_line(self.error)}")

    def close(self) -> None:
        self.stopped.set()
        self.thread.join()


def open_camera(index: int) -> cv2.VideoCapture:
    """Open a camera without OpenCV's multi-line warnings when there is none."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        capture = cv2.VideoCapture(index)
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # no driver queue of old frames, where supported
        return capture
    finally:
        cv2.utils.logging.setLogLevel(level)


# --------------------------------------------------------------------------
# Faces and emotions
# --------------------------------------------------------------------------


class Pipeline:
    """One frame in, the faces' tracks out and the frame annotated: find the faces
    (see fer_faces.FaceFinder), crop them, classify them all in one model call,
    track, draw.

    `seconds` adds up the time spent in each stage, for the benchmark."""

    def __init__(self, cfg: argparse.Namespace):
        self.model = load_fastest_model(cfg.model, cfg.litert)
        self.explainer = None  # heat maps on the Keras model, also when LiteRT classifies
        if cfg.explain or cfg.explain_dir:
            litert = isinstance(self.model, fer.LiteRTModel)
            keras_model = fer.load_model(cfg.model) if litert else self.model
            self.explainer = fer_explain.GradCam(keras_model)
        self.detector = fer_faces.make_detector(cfg)
        self.min_confidence = (
            fer.model_min_confidence(cfg.model)
            if cfg.min_confidence == "auto"
            else cfg.min_confidence
        )
        self.cfg = cfg
        self.faces = self.heat = np.zeros((0, fer.IMAGE_SIZE, fer.IMAGE_SIZE))  # the last frame's
        self.reset()

    def reset(self) -> None:
        """Forget the faces, ids and timings: from here on, another video."""
        cfg = self.cfg
        self.finder = fer_faces.FaceFinder(self.detector, cfg.detect_every, cfg.min_iou,
                                           cfg.full_search_every)  # fmt: skip
        self.tracker = fer_faces.Tracker(cfg.smoothing, cfg.min_iou, cfg.max_missed,
                                         self.min_confidence)  # fmt: skip
        self.seconds = dict.fromkeys(("detect", "preprocess", "classify", "explain", "draw"), 0.0)

    def __call__(self, frame: np.ndarray, new_scene: bool = False, fps: float = 0.0) -> list[Track]:
        if new_scene:
            self.tracker.reset()
        with self.stage("detect"):
            gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            faces = self.finder(frame, gray, self.tracker.shown, new_scene)
        with self.stage("preprocess"):
            angles = faces.angles if self.cfg.align else np.zeros(len(faces.boxes))
            crops = fer_faces.crop_upright(gray, faces.boxes, angles, self.cfg.margin)
        with self.stage("classify"):
            probabilities = fer.predict(self.model, crops, self.cfg.views)
            tracks = self.tracker.update(faces.boxes, probabilities, faces.searched, faces.found,
                                         faces.looked)  # fmt: skip
            self.finder.remember(gray, tracks, faces)
        if self.explainer is not None:
            with self.stage("explain"):
                self.explain(frame, crops, tracks, angles)
        with self.stage("draw"):
            draw(frame, tracks, fps)
        return tracks

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.seconds[name] += time.perf_counter() - started

    def explain(
        self, frame: np.ndarray, crops: np.ndarray, tracks: list[Track], angles: np.ndarray
    ) -> None:
        """Each face's heat map for its shown emotion, kept with the face (`faces`,
        `heat`) and, with --explain, laid over the frame."""
        self.faces, self.heat = crops, self.explainer(crops, [track.emotion for track in tracks])
        if self.cfg.explain:
            for track, heat, angle in zip(tracks, self.heat, angles):
                to_crop = fer_faces.crop_transform(track.box, angle, self.cfg.margin, frame.shape)
                fer_explain.overlay(frame, heat, to_crop)


def load_fastest_model(path: str, litert: bool = True):
    """The model at `path`; from a folder, its LiteRT twin instead when it was made
    from the folder's fer.h5 (its record says so: Keras is not even imported), or
    when it gives the same probabilities, give or take its 8-bit rounding (a
    fer.tflite left over from an older model does not)."""
    twin = Path(path) / fer.MODEL_TFLITE
    has_twin = litert and Path(path).is_dir() and twin.is_file()
    if has_twin and fer.twin_is_current(Path(path)):
        return fer.load_model(twin)
    model = fer.load_model(path)
    if not has_twin:
        return model
    fast = fer.load_model(twin)
    probe = np.random.default_rng(0).integers(0, 256, (4, fer.IMAGE_SIZE, fer.IMAGE_SIZE, 1))
    probe = probe.astype(np.float32)
    if np.allclose(fast.predict_on_batch(probe), model.predict_on_batch(probe),
                   atol=fer.LITERT_TOLERANCE):  # fmt: skip
        return fast
    print(f"{twin} is another model than {fer.MODEL_JSON}/{fer.MODEL_WEIGHTS}: using those "
          "(refresh it with `python emotion_recognition.py --export`)")  # fmt: skip
    return model


def draw(frame: np.ndarray, tracks: list[Track], fps: float) -> None:
    """Box, label and confidence for each face; an FPS counter in the corner. Text
    is one pixel thick on a filled label: anti-aliased text two pixels thick takes
    OpenCV ten times as long (0.3 ms a label here, 2 ms a frame for six faces)."""
    for track in tracks:
        x, y, w, h = track.box
        colour = COLOURS[track.label]
        blue, green, red = colour
        ink = (0, 0, 0) if 0.114 * blue + 0.587 * green + 0.299 * red > 140 else (255, 255, 255)
        cv2.rectangle(frame, (x, y), (x + w, y + h), colour, 2)
        draw_label(frame, label_text(track), (x, y), max(0.5, w / 200), colour, ink)
    if fps > 0:
        draw_label(frame, f"{fps:.1f} FPS", (0, 0), 0.7, (0, 0, 0), (0, 255, 0))


def label_text(track: Track) -> str:
    """What a face's label says: "Happy 87%", or "uncertain"."""
    if track.label == UNCERTAIN:
        return UNCERTAIN
    return f"{track.label} {track.probabilities.max():.0%}"


def draw_label(
    frame: np.ndarray,
    text: str,
    corner: tuple[int, int],
    scale: float,
    background: tuple[int, int, int],
    ink: tuple[int, int, int],
) -> None:
    """`text` on a filled rectangle whose bottom-left corner is `corner` (moved down
    to stay inside the frame)."""
    (width, height), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x, top = corner[0], max(corner[1] - height - 8, 0)
    cv2.rectangle(frame, (x, top), (x + width + 6, top + height + 8), background, -1)
    cv2.putText(frame, text, (x + 3, top + height + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, ink, 1,
                cv2.LINE_AA)  # fmt: skip


# --------------------------------------------------------------------------
# Frames out
# --------------------------------------------------------------------------


VIDEO_CODECS = {".avi": "MJPG", ".webm": "VP80"}  # else MPEG-4; a browser plays only .webm


class Output:
    """Annotated frames to a video, an image, or a folder of images, encoded and
    written by a thread while the next frame is processed."""

    def __init__(self, path: str, fps: float, folder: bool = False):
        self.path, self.fps, self.writer = Path(path), fps, None
        self.kind = (
            "folder"
            if folder or not self.path.suffix
            else ("image" if self.path.suffix.lower() in fer.IMAGE_SUFFIXES else "video")
        )
        target = self.path if self.kind == "folder" else self.path.parent
        target.mkdir(parents=True, exist_ok=True)
        self.frames: queue.Queue = queue.Queue(maxsize=8)
        self.error: UserError | None = None
        self.thread = threading.Thread(target=self._write_queued, name="frame-writer", daemon=True)
        self.thread.start()

    def write(self, name: str, frame: np.ndarray) -> None:
        if self.error is not None:
            raise self.error
        self.frames.put((name, frame))

    def close(self) -> None:
        """Write what is queued, then close the file."""
        self.frames.put(None)
        self.thread.join()
        if self.writer is not None:
            self.writer.release()
        if self.error is not None:
            raise self.error

    def _write_queued(self) -> None:
        while (item := self.frames.get()) is not None:
            if self.error is None:
                try:
                    self._write(*item)
                except UserError as error:  # raised in the main thread, by write or close
                    self.error = error

    def _write(self, name: str, frame: np.ndarray) -> None:
        if self.kind == "image":
            ok = cv2.imwrite(str(self.path), frame)
        elif self.kind == "folder":
            ok = cv2.imwrite(str(self.path / name), frame)
        else:
            if self.writer is None:
                codec = VIDEO_CODECS.get(self.path.suffix.lower(), "mp4v")
                height, width = frame.shape[:2]
                self.writer = cv2.VideoWriter(
                    str(self.path), cv2.VideoWriter_fourcc(*codec), self.fps, (width, height)
                )
            ok = self.writer.isOpened()
            if ok:
                self.writer.write(frame)
        if not ok:
            raise UserError(f"cannot write {self.path}")


def open_log(path: str, stack: contextlib.ExitStack):
    stream = stack.enter_context(open(path, "w", newline=""))  # noqa: SIM115 (closed by stack)
    log = csv.writer(stream)
    emotions = [emotion.lower() for emotion in fer.EMOTIONS]
    log.writerow(
        ["frame", "time_s", "face", "track", "x", "y", "w", "h", "emotion", "confidence"]
        + emotions
        + [f"raw_{emotion}" for emotion in emotions]
    )
    return log


def write_log_rows(log, index: int, seconds: float, tracks: list[Track]) -> None:
    """One row per face: what is shown (the label, which may be "uncertain", and the
    smoothed probabilities), then the frame's own, raw probabilities."""
    for face, track in enumerate(tracks):
        probs = track.probabilities
        log.writerow(
            [index, f"{seconds:.3f}", face, track.id, *track.box, track.label,
             f"{probs.max():.4f}", *(f"{p:.4f}" for p in probs), *(f"{p:.4f}" for p in track.raw)]
        )  # fmt: skip


def write_explanations(output: Output, name: str, pipeline: Pipeline, tracks: list[Track]) -> None:
    """One picture per face of the frame: NAME_trackID.png (the log's track id)."""
    for track, face, heat in zip(tracks, pipeline.faces, pipeline.heat):
        picture = fer_explain.card(face, heat, track.probabilities, track.label)
        output.write(f"{Path(name).stem}_track{track.id}.png", picture)


# --------------------------------------------------------------------------
# Summary of a session
# --------------------------------------------------------------------------


def summarize(history: list[tuple[float, int, str]]) -> pd.DataFrame:
    """Per tracked face: seconds in view, share of frames per label (each emotion,
    and uncertain), the main one."""
    seen = pd.DataFrame(history, columns=["time_s", "track", "emotion"])
    seen["emotion"] = pd.Categorical(seen["emotion"], categories=LABELS)
    table = pd.crosstab(seen["track"], seen["emotion"], normalize="index", dropna=False)
    table.columns.name = None
    table.insert(0, "mostly", table.idxmax(axis=1))
    times = seen.groupby("track")["time_s"]
    table.insert(0, "seconds", (times.max() - times.min()).round(1))
    table.insert(0, "frames", times.size())
    return table


def plot_summary(history: list[tuple[float, int, str]], table: pd.DataFrame, path: str) -> None:
    """Each face's emotion over time (top) and its share of frames per emotion (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rgb = {emotion: tuple(c / 255 for c in reversed(bgr)) for emotion, bgr in COLOURS.items()}
    tracks = table.index.tolist()
    row = {track: i for i, track in enumerate(tracks)}
    fig, (timeline, shares) = plt.subplots(
        2, 1, figsize=(10, 3 + 0.6 * len(tracks)), height_ratios=[1, 1]
    )
    times, rows, colours = zip(*((t, row[k], rgb[e]) for t, k, e in history))
    timeline.scatter(times, rows, c=colours, marker="|", s=250, linewidths=2)
    timeline.set(xlabel="time (s)", ylabel="face", title="Emotion of each face over time")
    left = np.zeros(len(tracks))
    for emotion in LABELS:
        share = table[emotion].to_numpy()
        shares.barh(range(len(tracks)), share, left=left, color=rgb[emotion], edgecolor="grey")
        left += share
    shares.set(xlabel="share of frames", ylabel="face", xlim=(0, 1), title="Time per emotion")
    for ax in (timeline, shares):
        ax.set_yticks(range(len(tracks)), [f"#{track}" for track in tracks])
        ax.invert_yaxis()
    fig.legend(handles=[Patch(color=rgb[e], label=e) for e in LABELS],
               loc="upper center", ncol=len(LABELS), frameon=False)  # fmt: skip
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    with fer.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def format_summary(table: pd.DataFrame) -> pd.DataFrame:
    """The summary as shown: shares in %, faces as #id."""
    shown = table.copy()
    for emotion in LABELS:
        shown[emotion] = (100 * shown[emotion]).map("{:.0f}%".format)
    shown.index = [f"#{track}" for track in shown.index]
    return shown


def print_summary(table: pd.DataFrame) -> None:
    print(format_summary(table).to_string())


# --------------------------------------------------------------------------
# Main loop
# --------------------------------------------------------------------------


def label_frames(
    source: Source, pipeline: Pipeline, show_fps: bool = True
) -> Iterator[tuple[int, str, float, np.ndarray, list[Track]]]:
    """Each frame of `source` labelled: (index, name, seconds into the source, the
    annotated frame, its faces' tracks). With `show_fps`, a video's frames show the
    rate the run achieves (not in a study: its outputs are the same at any speed)."""
    started, rate, fps = time.perf_counter(), FrameRate(), 0.0
    for index, (name, frame) in enumerate(source.frames()):
        seconds = time.perf_counter() - started if source.is_camera else index / source.fps
        tracks = pipeline(frame, source.is_still, fps if show_fps and not source.is_still else 0.0)
        yield index, name, seconds, frame, tracks
        fps = rate.tick()


def main() -> None:
    cfg = parse_args()
    import fer_study  # here, not at the top: it imports this module

    if fer_study.is_study(cfg.source):
        fer_study.run(cfg)
        return
    pipeline = Pipeline(cfg)  # fails early on a missing model
    source = Source(cfg.source, cfg.sample)
    try:
        if cfg.source == "auto" and source.is_still and not cfg.output:
            cfg.output = str(HERE / "output" / (Path(cfg.sample).stem + "_annotated.jpg"))
        history, _ = label(source, pipeline, cfg, display=cfg.display and can_display())
    finally:
        source.release()

    if history:
        table = summarize(history)
        print_summary(table)
        if cfg.summary:
            plot_summary(history, table, cfg.summary)
            print(f"wrote the session summary to {cfg.summary}")
    if cfg.output:
        print(f"wrote the annotated output to {cfg.output}")
    if cfg.log:
        print(f"wrote one row per face to {cfg.log}")
    if cfg.explain_dir:
        print(f"wrote one explanation per face to {cfg.explain_dir}/")


def label(
    source: Source,
    pipeline: Pipeline,
    cfg: argparse.Namespace,
    display: bool = False,
    max_frames: int | None = None,
) -> tuple[list[tuple[float, int, str]], int]:
    """Label the frames of `source` (the first `max_frames`; None: all), written to
    cfg.output, cfg.log and cfg.explain_dir where set, shown in a window with
    `display`. Returns the (time, track, label) history and the frames done."""
    # Whatever ends the run (end of input, q, Ctrl-C, an error), everything opened
    # here is released: the search thread, video writer, log file, window.
    with contextlib.ExitStack() as stack:
        if source.is_camera:
            pipeline.finder.search_in_background()
            stack.callback(pipeline.finder.close)
        if display:
            stack.callback(cv2.destroyAllWindows)
        output = Output(cfg.output, source.fps) if cfg.output else None
        if output:
            stack.callback(output.close)
        log = open_log(cfg.log, stack) if cfg.log else None
        explanations = Output(cfg.explain_dir, source.fps, folder=True) if cfg.explain_dir else None
        if explanations:
            stack.callback(explanations.close)
        progress = None
        if not source.is_camera:
            from tqdm import tqdm

            progress = stack.enter_context(tqdm(total=source.total, unit="frame", disable=None))

        history: list[tuple[float, int, str]] = []  # (time, track, emotion) for the summary
        started = time.perf_counter()
        frames_done = 0
        labelled = itertools.islice(label_frames(source, pipeline), max_frames)
        for index, name, seconds, frame, tracks in labelled:
            history += [(seconds, track.id, track.label) for track in tracks]
            if log:
                write_log_rows(log, index, seconds, tracks)
            if explanations:
                write_explanations(explanations, name, pipeline, tracks)
            if output:
                output.write(name, frame)
            if progress is not None:
                progress.update()
            frames_done += 1
            if display:
                cv2.imshow(WINDOW, frame)
                key = cv2.waitKey(0 if source.is_still and source.total == 1 else 1) & 0xFF
                closed = cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) < 1
                if key in (ord("q"), 27) or closed:
                    break
        elapsed = time.perf_counter() - started

    print(
        f"{frames_done} frames, {len(history)} faces labelled, "
        f"{pipeline.tracker.next_id - 1} tracked ({frames_done / elapsed:.1f} frames per second)"
    )
    return history, frames_done


class FrameRate:
    """Frames per second over the last `window` seconds: what the run achieves,
    not one frame's instant rate (thousands, on a frame without faces)."""

    def __init__(self, window: float = 1.0, clock: Callable[[], float] = time.perf_counter):
        self.window, self.clock = window, clock
        self.times = deque([clock()])  # when the frames ended, the run's start first

    def tick(self) -> float:
        """Count a frame as done; the rate over the last `window` seconds."""
        now = self.clock()
        self.times.append(now)
        while len(self.times) > 2 and now - self.times[1] >= self.window:
            self.times.popleft()  # keep a window's worth, whole frames only
        return (len(self.times) - 1) / max(now - self.times[0], 1e-9)


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
