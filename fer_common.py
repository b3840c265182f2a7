"""What training and the live demo share: the labels, the input size, face
preprocessing, model loading and saving, and one-line errors."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import re
import sys
import tempfile
import tokenize
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn

import cv2
import numpy as np


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Mute file descriptor 2, where TensorFlow's C++ code logs around Python."""
    try:
        stderr = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # stderr is not a file (pytest capture)
        yield
        return
    saved, devnull = os.dup(stderr), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, stderr)
    try:
        yield
    finally:
        os.dup2(saved, stderr)
        os.close(saved)
        os.close(devnull)


def _keras():
    """Keras, imported on first use with stderr muted: TensorFlow takes seconds to
    import (the demo's LiteRT path needs none of it), and TensorFlow 2.21 prints C++
    start-up lines (oneDNN, CUDA) that no setting hides, which would bury our
    one-line errors."""
    if "keras" not in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        with _quiet_stderr():
            import keras

            keras.ops.zeros(1)  # TensorFlow probes for a GPU on first use: also noisy
    return sys.modules["keras"]


def __getattr__(name: str):
    """`fer_common.keras`: Keras, imported when first asked for (see _keras)."""
    if name == "keras":
        return _keras()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# FER-2013's label order: the CSV's `emotion` column indexes this tuple.
EMOTIONS = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
IMAGE_SIZE = 48  # the model takes raw 0-255 grayscale faces of (N, 48, 48, 1)
# How a face smaller than that is enlarged: Lanczos keeps a small face sharper than
# bilinear does, closer to the faces the model learnt from (shrinking: INTER_AREA).
UPSCALING = cv2.INTER_LANCZOS4

# FER-2013 faces are framed a little wider than a Haar box (forehead and chin
# show), so the demo widens each detected box by this fraction on every side.
FACE_MARGIN = 0.1

# Test-time views: each face is classified as several views, whose probabilities
# are averaged. "one": the face itself; "flip": it and its mirror image; "ten": the
# centre and four windows shifted by VIEW_SHIFT px diagonally, each also mirrored
# (the cropping model's corners). More views, better accuracy, slower.
VIEWS = "flip"
VIEW_CHOICES = ("one", "flip", "ten")
VIEW_SHIFT = 2

# Below its top probability a face is shown as "uncertain": each model's own value is
# in its metrics.json (training finds it); this one is for a model without one.
MIN_CONFIDENCE = 0.5

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}
MODEL_JSON = "fer.json"
MODEL_WEIGHTS = "fer.h5"
MODEL_TFLITE = "fer.tflite"  # the same model for LiteRT (phones, boards, a fast CPU path)
# beside it: the SHA-256 of the fer.h5 it was made from, so that the demo can take the
# LiteRT twin without loading Keras to compare the two (seconds of start-up)
TWIN_RECORD = "fer.tflite.sha256"
# How far the LiteRT twin's probabilities may stray from the Keras model's: its
# weights are 8-bit (a twin of another model strays further).
LITERT_TOLERANCE = 0.05
FER2013_URL = (
    "https://www.kaggle.com/c/"
    "challenges-in-representation-learning-facial-expression-recognition-challenge/data"
)


class UserError(Exception):
    """A problem the user can fix; reported as one line, without a traceback."""


def run_cli(main: Callable[[], None]) -> None:
    """Run a script's main(), turning user errors and Ctrl-C into a clean exit."""
    try:
        main()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def settings_parser(
    settings: dict,
    description: str,
    sources: Sequence[str | Path],
    accepts: dict | None = None,
) -> argparse.ArgumentParser:
    """A parser with one `--lower-case-name` flag per top-of-file setting. Its help is
    the setting's comment in the `sources` (the Python files that define the
    settings); it accepts what `accepts` names for it (a tuple of choices, or a
    function that converts the text or raises ValueError), else what the type of
    its default reads."""
    parser = OneLineErrorParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    comments = {}
    for source in sources:
        comments.update(setting_comments(Path(source).read_text()))
    accepts = accepts or {}
    for name, default in settings.items():
        flag = "--" + name.lower().replace("_", "-")
        text = comments.get(name, "").replace("%", "%%")  # argparse formats help with %
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default,
                                help=f"{text} (default: %(default)s)")  # fmt: skip
            continue
        accepted = accepts.get(name, type(default))
        choices = accepted if isinstance(accepted, tuple) else None
        parser.add_argument(
            flag,
            type=type(default) if choices else accepted,
            choices=choices,
            default=default,
            metavar="|".join(map(str, choices)) if choices else name,
            help=f"{text} (default: %(default)s)",
        )
    return parser


class OneLineErrorParser(argparse.ArgumentParser):
    """Says what is wrong with the command line in one `error: ...` line, as every
    other error of the scripts (--help shows the usage)."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message}{self.did_you_mean(message)} (see --help)", file=sys.stderr)
        sys.exit(2)

    def did_you_mean(self, message: str) -> str:
        """ "; did you mean --epochs?" for a misspelt option, else nothing."""
        import difflib

        unknown = re.match(r"unrecognized arguments: (.*)", message)
        if not unknown:
            return ""
        flags = [flag for action in self._actions for flag in action.option_strings]
        for word in unknown.group(1).split():
            close = difflib.get_close_matches(word.split("=")[0], flags, n=1, cutoff=0.7)
            if word.startswith("--") and close:
                return f"; did you mean {close[0]}?"
        return ""


def setting_comments(source: str) -> dict[str, str]:
    """Each top-level UPPER_CASE constant of a Python file's text, with its comment:
    the comment lines right above it, then the comment at the end of its line."""
    inline = {
        token.start[0]: token.string.lstrip("#").strip()
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT and token.line.strip()[:1] != "#"
    }
    comments, above = {}, []
    for number, line in enumerate(source.splitlines(), start=1):
        if line.startswith("#"):
            above.append(line.lstrip("#").strip())
            continue
        setting = re.match(r"([A-Z][A-Z0-9_]*) = ", line)
        if setting:
            tail = inline.get(number, "")
            tail = "" if tail.startswith(("fmt:", "noqa")) else tail
            comments[setting[1]] = " ".join([*above, tail]).strip()
        above = []
    return comments


def auto_or(convert: Callable[[str], object]) -> Callable[[str], object]:
    """An argparse type: "auto", or what `convert` makes of the text."""

    def auto_or_value(text: str) -> object:
        return text if text == "auto" else convert(text)

    auto_or_value.__name__ = f"'auto' or {convert.__name__}"  # for argparse's message
    return auto_or_value


def number(low: float, high: float = float("inf"), kind: type = float) -> Callable[[str], object]:
    """An argparse type: a number of `kind` from `low` to `high` (both included)."""

    def in_range(text: str) -> object:
        value = kind(text)
        if not low <= value <= high:
            raise ValueError(text)
        return value

    bounds = f"from {low:g}" + ("" if high == float("inf") else f" to {high:g}")
    in_range.__name__ = f"{'whole ' if kind is int else ''}number {bounds}"
    return in_range


# --------------------------------------------------------------------------
# Faces
# --------------------------------------------------------------------------


def to_gray(image: np.ndarray) -> np.ndarray:
    """Any OpenCV image (gray, BGR or BGRA) as one 8-bit grayscale channel."""
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    if image.ndim == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return image


def to_model_face(gray: np.ndarray) -> np.ndarray:
    """A grayscale face of any size as the model's 48x48 uint8 input."""
    scale = IMAGE_SIZE / min(gray.shape[:2])
    return cv2.resize(gray, (IMAGE_SIZE, IMAGE_SIZE), interpolation=interpolation(scale))


def interpolation(scale: float) -> int:
    """OpenCV's interpolation for resizing a face by `scale`: INTER_AREA to shrink
    (no aliasing), UPSCALING to enlarge."""
    return cv2.INTER_AREA if scale < 1 else UPSCALING


def crop_faces(gray: np.ndarray, boxes: np.ndarray, margin: float = FACE_MARGIN) -> np.ndarray:
    """Cut each (x, y, w, h) box, widened by `margin`, into a (N, 48, 48, 1) batch."""
    faces = np.empty((len(boxes), IMAGE_SIZE, IMAGE_SIZE, 1), np.uint8)
    for i, box in enumerate(boxes):
        x0, y0, x1, y1 = face_region(box, margin, gray.shape)
        faces[i, :, :, 0] = to_model_face(gray[y0:y1, x0:x1])
    return faces


def face_region(box: np.ndarray, margin: float, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The (x0, y0, x1, y1) corners of a box widened by `margin`, inside an image of `shape`."""
    x, y, w, h = box
    dx, dy = int(w * margin), int(h * margin)
    height, width = shape[:2]
    return max(x - dx, 0), max(y - dy, 0), min(x + w + dx, width), min(y + h + dy, height)


# --------------------------------------------------------------------------
# Predictions
# --------------------------------------------------------------------------


def test_views(faces: np.ndarray, views: str = VIEWS) -> np.ndarray:
    """The views of faces (N, 48, 48, 1) as one array (V, N, 48, 48, 1)."""
    if views not in VIEW_CHOICES:
        raise UserError(f"unknown test-time views {views!r}; choose {', '.join(VIEW_CHOICES)}")
    chosen = [faces]
    if views == "ten":
        shift = VIEW_SHIFT
        padded = np.pad(faces, ((0, 0), (shift, shift), (shift, shift), (0, 0)), mode="edge")
        corners = [(0, 0), (0, 2 * shift), (2 * shift, 0), (2 * shift, 2 * shift)]
        chosen += [padded[:, y : y + IMAGE_SIZE, x : x + IMAGE_SIZE] for y, x in corners]
    if views != "one":
        chosen += [view[:, :, ::-1] for view in chosen]
    return np.stack(chosen)


def predict_views(model, faces: np.ndarray, views: str = VIEWS) -> np.ndarray:
    """Emotion probabilities (V, N, 7) of each test-time view of raw 0-255 faces."""
    stacked = test_views(np.asarray(faces, np.float32), views)
    flat = stacked.reshape(-1, *stacked.shape[2:])
    if len(flat) <= 256:  # a frame's faces: one compiled call, no predict loop to set up
        probabilities = np.asarray(model.predict_on_batch(flat))
    else:
        probabilities = model.predict(flat, batch_size=256, verbose=0)
    return probabilities.reshape(*stacked.shape[:2], -1)


def predict(model, faces: np.ndarray, views: str = VIEWS) -> np.ndarray:
    """Emotion probabilities (N, 7) of raw 0-255 faces (N, 48, 48, 1), averaged over
    the test-time views: what the demo, --evaluate and the benchmarks all report."""
    if len(faces) == 0:
        return np.zeros((0, len(EMOTIONS)), np.float32)
    return predict_views(model, faces, views).mean(axis=0)


# --------------------------------------------------------------------------
# Model files
# --------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only on success.

    A crash or Ctrl-C halfway through a write then leaves the old file intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keep the suffix: Keras picks the file format from it.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    umask = os.umask(0)  # mkstemp makes the file private (0600); give it the usual mode
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def inference_copy(model):
    """The model as it is saved: float32 (also when trained in bfloat16), uncompiled
    (no optimizer state, which would triple the file), with the same weights."""
    config = model.get_config()
    for layer in config["layers"]:
        # Lists as tuples: a loaded model's augmentation layers hold their value
        # ranges as Keras' tracked lists, which the legacy .h5 writer cannot copy.
        layer["config"] = {
            key: tuple(value) if isinstance(value, list) else value
            for key, value in layer["config"].items()
        }
        layer["config"]["dtype"] = "float32"
    keras = _keras()
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")  # the Sequential's own dtype
    try:
        copy = keras.Sequential.from_config(config)
    finally:
        keras.mixed_precision.set_global_policy(policy)
    copy.set_weights(model.get_weights())
    return copy


def save_model(model, model_dir: str | Path) -> None:
    """Write fer.json (architecture), fer.h5 (weights), fer.keras and, with the
    TensorFlow backend, fer.tflite (LiteRT), of the model's `inference_copy`.

    All are written to temporary files first and renamed over the old ones only
    when every write succeeded: a crash or Ctrl-C leaves the old set intact.
    """
    model_dir = Path(model_dir)
    model = inference_copy(model)
    names = [MODEL_JSON, MODEL_WEIGHTS, "fer.keras"]
    if _can_export_litert(model_dir / MODEL_TFLITE):
        names.append(MODEL_TFLITE)
    with contextlib.ExitStack() as stack:
        json_tmp, h5_tmp, keras_tmp, *tflite_tmp = (
            stack.enter_context(atomic_path(model_dir / name)) for name in names
        )
        json_tmp.write_text(model.to_json(indent=1))
        # A legacy-format HDF5 file: what `model.load_weights("fer.h5")` reads. Keras
        # warns that the format is legacy; it is the one this file pair promises.
        absl_logger = logging.getLogger("absl")
        level = absl_logger.level
        absl_logger.setLevel(logging.ERROR)
        try:
            model.save(h5_tmp)
        finally:
            absl_logger.setLevel(level)
        model.save(keras_tmp)
        for tmp in tflite_tmp:
            _export_litert(model, tmp)
            # Entered last, renamed first: until the new fer.h5 is in place, the record
            # matches no fer.h5 there, and the demo checks the twin the slow way.
            record = stack.enter_context(atomic_path(model_dir / TWIN_RECORD))
            record.write_text(file_sha256(h5_tmp) + "\n")


def export_tflite(model, path: str | Path, weights: str | Path | None = None) -> bool:
    """Write the model as a LiteRT (TensorFlow Lite) flatbuffer, atomically. `weights`:
    the fer.h5 the model was loaded from, recorded beside it as the twin's source;
    without, any old record goes (it would vouch for another model)."""
    if not _can_export_litert(path):
        return False
    path = Path(path)
    record = path.parent / TWIN_RECORD
    if weights is None:
        record.unlink(missing_ok=True)
        with atomic_path(path) as tmp:
            _export_litert(model, tmp)
        return True
    # The record is renamed after the twin: a kill between the two leaves the old
    # record, which names no fer.h5 there, or this same one.
    with atomic_path(record) as record_tmp, atomic_path(path) as tmp:
        _export_litert(model, tmp)
        record_tmp.write_text(file_sha256(weights) + "\n")
    return True


def twin_is_current(folder: Path) -> bool:
    """Whether the folder's fer.tflite was made from its fer.h5 as it is now."""
    with contextlib.suppress(OSError):
        recorded = (folder / TWIN_RECORD).read_text().strip()
        return recorded == file_sha256(folder / MODEL_WEIGHTS)
    return False


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, or of every file under a folder (names and contents)."""
    import hashlib

    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _can_export_litert(path: Path) -> bool:
    """LiteRT export needs the TensorFlow backend; says so where it is another."""
    if _keras().backend.backend() == "tensorflow":
        return True
    print(f"not writing {path}: LiteRT export needs the TensorFlow backend")
    return False


def _export_litert(model, path: Path) -> None:
    """8-bit weights, and layers that compute in 8-bit integers on the fly: several
    times faster on a CPU than float32, for a few hundredths of a point of accuracy."""
    import tensorflow as tf  # the converter's option only: the model stays Keras

    with _quiet_stderr():  # the converter logs pages of MLIR
        model.export(str(path), format="litert", verbose=False,
                     optimizations=[tf.lite.Optimize.DEFAULT])  # fmt: skip


class LiteRTModel:
    """A .tflite model behind the two Keras calls the scripts use."""

    def __init__(self, path: Path):
        from ai_edge_litert.interpreter import Interpreter

        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=cpu_threads())
        except Exception as error:
            raise UserError(f"cannot load LiteRT model {path}: {first_line(error)}") from None
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]
        self.batch = -1

    def predict_on_batch(self, faces: np.ndarray) -> np.ndarray:
        if len(faces) != self.batch:  # resizing re-plans the graph: only when N changes
            self.interpreter.resize_tensor_input(self.input, faces.shape)
            with _quiet_stderr():  # an INFO line about XNNPACK, each time
                self.interpreter.allocate_tensors()
            self.batch = len(faces)
        self.interpreter.set_tensor(self.input, np.asarray(faces, np.float32))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output).copy()

    def predict(self, faces: np.ndarray, batch_size: int = 256, verbose: int = 0) -> np.ndarray:
        chunks = [faces[i : i + batch_size] for i in range(0, len(faces), batch_size)]
        return np.concatenate([self.predict_on_batch(chunk) for chunk in chunks])


def cpu_threads() -> int:
    """Threads a model may use: every core, unless the process was given a share of
    them (TF_NUM_INTRAOP_THREADS, which TensorFlow reads too: a study's workers)."""
    return int(os.environ.get("TF_NUM_INTRAOP_THREADS", 0)) or os.cpu_count() or 1


def load_model(path: str | Path = "models"):
    """Load the fer.json + fer.h5 pair from a folder (or a .json/.keras/.tflite file).

    Loading is safe: Keras refuses to run code (lambdas) stored in the files.
    """
    path = Path(path)
    keras = None if path.suffix == ".tflite" else _keras()
    if path.suffix == ".tflite":
        if not path.is_file():
            raise UserError(
                f"no model at {path}; export one with `python emotion_recognition.py --export`"
            )
        return LiteRTModel(path)
    if path.suffix == ".keras":
        if not path.is_file():
            raise UserError(f"no model at {path}; train one with `python emotion_recognition.py`")
        try:
            return keras.saving.load_model(path, safe_mode=True, compile=False)
        except Exception as error:
            raise UserError(f"cannot load model {path}: {first_line(error)}") from None
    json_path = path if path.suffix == ".json" else path / MODEL_JSON
    weights_path = json_path.with_suffix(".h5")
    for needed in (json_path, weights_path):
        if not needed.is_file():
            raise UserError(
                f"model file {needed} is missing; train one with `python emotion_recognition.py`"
            )
    try:
        model = keras.models.model_from_json(json_path.read_text())
    except Exception as error:
        raise UserError(f"{json_path} is not a valid Keras model: {first_line(error)}") from None
    try:
        model.load_weights(weights_path)
    except Exception as error:
        raise UserError(
            f"{weights_path} does not fit {json_path} (corrupt, or from another model): "
            f"{first_line(error)}"
        ) from None
    return model


def model_min_confidence(path: str | Path) -> float:
    """The minimum confidence found for the model at `path` when it was trained (its
    folder's metrics.json: under it, its labels are wrong more often than right),
    else MIN_CONFIDENCE."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        return float(json.loads((folder / "metrics.json").read_text())["min_confidence"])
    return MIN_CONFIDENCE


def first_line(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:200]
