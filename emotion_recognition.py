"""Train a facial-expression CNN on FER-2013, evaluate it, save it to models/.

    python emotion_recognition.py                      # full training run
    python emotion_recognition.py --epochs 3 --limit 2000   # a quick try
    python emotion_recognition.py --evaluate           # re-test the saved model
    python emotion_recognition.py --export             # models/fer.tflite for LiteRT

Every setting below is a plain constant; each one can be overridden on the command
line by its lower-case name (`--batch-size 128`). `--help` lists them.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

import fer_common as fer
from fer_common import UserError, atomic_path

HERE = Path(__file__).resolve().parent

# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------

DATA = str(HERE / "data" / "fer2013.csv")  # Kaggle CSV (.csv, .csv.gz, .csv.xz) or image folders
OUT_DIR = str(HERE / "models")
LIMIT = 0  # train on this many random training faces only (0: all of them)
SEED = 42

EPOCHS = 30
BATCH_SIZE = 64
LEARNING_RATE = 1e-3  # peak learning rate of AdamW
WEIGHT_DECAY = 1e-4
LABEL_SMOOTHING = 0.1
LR_SCHEDULE = "cosine"  # "cosine": decay to 0 over EPOCHS; "plateau": halve when stuck
PATIENCE = 10  # stop after this many epochs without a better validation accuracy

BASE_FILTERS = 32  # filters of the first conv block; each next block doubles them
CONV_BLOCKS = 4
DENSE_UNITS = 256
CONV_DROPOUT = 0.2
DENSE_DROPOUT = 0.5

# Augmentation, applied by layers inside the model during training only.
FLIP = True  # mirror faces left-right
ROTATION = 0.03  # fraction of a full turn (0.03: about 11 degrees)
ZOOM = 0.1
SHIFT = 0.1  # fraction of the image size

# Gaussian blur (sigma, pixels) that brings sharp faces to the training faces'
# sharpness at inference; "auto": measured from the data, then tuned on validation.
INFERENCE_BLUR = "auto"

# Rare emotions are rarely predicted (Disgust is 1.5 % of the training faces):
# subtract this times log(class share) from the logits; "auto": the value best
# for validation macro-F1; 0: off.
PRIOR_CORRECTION = "auto"

# For a CSV without a Usage column: seeded, stratified shares of the rows.
VAL_FRACTION = 0.1
TEST_FRACTION = 0.1
MAX_BAD_FRACTION = 0.01  # refuse data with more broken rows/images than this

SETTINGS = {name: value for name, value in globals().items() if name.isupper() and name != "HERE"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = fer.settings_parser(SETTINGS, __doc__)
    parser.add_argument(
        "--evaluate", action="store_true", help="test the saved model in OUT_DIR, no training"
    )
    parser.add_argument(
        "--export",
        action="store_true",
        help=f"write OUT_DIR/{fer.MODEL_TFLITE} (LiteRT)",
    )
    return parser.parse_args(argv)


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------

CSV_SPLITS = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}


def find_data(path: str | Path) -> Path:
    """The data file or folder, or a compressed copy of it (fer2013.csv.gz / .xz)."""
    path = Path(path)
    if not path.exists():
        path = next((p for p in path.parent.glob(path.name + ".*") if p.is_file()), path)
    if not path.exists():
        raise UserError(
            f"FER-2013 not found at {path}: download fer2013.csv from {fer.FER2013_URL} "
            "and put it in data/ (or pass --data PATH); see data/README.md"
        )
    return path


def load_data(path: Path, cfg: argparse.Namespace) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """FER-2013 as {"train"|"val"|"test": (uint8 faces (N, 48, 48, 1), labels (N,))}."""
    splits = load_image_folders(path, cfg) if path.is_dir() else load_csv(path, cfg)
    for name, (_, labels) in splits.items():
        if len(labels) == 0:
            raise UserError(f"the {name} split of {path} is empty")
    return splits


def load_csv(path: Path, cfg: argparse.Namespace) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as error:
        raise UserError(f"cannot read {path} as a CSV file: {error}") from None
    missing = {"emotion", "pixels"} - set(table.columns)
    if missing:
        raise UserError(
            f"{path} has no {' or '.join(sorted(missing))} column; "
            "expected FER-2013's columns emotion,pixels[,Usage]"
        )
    faces = np.zeros((len(table), fer.IMAGE_SIZE * fer.IMAGE_SIZE), np.uint8)
    good = np.zeros(len(table), bool)
    for row, text in enumerate(table["pixels"]):
        values = np.array(text.split(), dtype=object)
        if values.size != fer.IMAGE_SIZE * fer.IMAGE_SIZE:
            continue
        try:
            numbers = values.astype(np.int64)
        except ValueError:
            continue
        if numbers.min() >= 0 and numbers.max() <= 255:
            faces[row], good[row] = numbers, True
    labels = pd.to_numeric(table["emotion"], errors="coerce")
    good &= labels.isin(range(len(fer.EMOTIONS))).to_numpy()
    usage = table["Usage"].map(CSV_SPLITS) if "Usage" in table else None
    if usage is not None:
        good &= usage.notna().to_numpy()
    # Row numbers as a spreadsheet shows them: the header is line 1.
    drop_bad(np.flatnonzero(~good) + 2, len(table), f"rows of {path}", cfg.max_bad_fraction)

    faces = faces[good].reshape(-1, fer.IMAGE_SIZE, fer.IMAGE_SIZE, 1)
    labels = labels[good].to_numpy(np.int64)
    if usage is not None:
        usage = usage[good].to_numpy()
        return {
            split: (faces[usage == split], labels[usage == split])
            for split in ("train", "val", "test")
        }
    held_out = cfg.val_fraction + cfg.test_fraction
    x_train, x_rest, y_train, y_rest = split_off(faces, labels, held_out, cfg.seed)
    x_val, x_test, y_val, y_test = split_off(x_rest, y_rest, cfg.test_fraction / held_out, cfg.seed)
    return {"train": (x_train, y_train), "val": (x_val, y_val), "test": (x_test, y_test)}


def split_off(faces: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> list:
    """Seeded split stratified by emotion: [kept faces, held out, kept labels, held out]."""
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(
            faces, labels, test_size=fraction, stratify=labels, random_state=seed
        )
    except ValueError as error:
        raise UserError(f"cannot split {len(labels)} faces by emotion: {error}") from None


def load_image_folders(root: Path, cfg: argparse.Namespace):
    """train/<emotion>/*.jpg with test/ (and/or validation/) beside it.

    With only test/, the image-folder copy of FER-2013 names its files
    PublicTest_* and PrivateTest_*: those select and test, as the CSV's Usage does;
    other test folders are the test split and validation is a share of train/.
    """
    from sklearn.preprocessing import LabelEncoder

    table = list_images(root)
    encoder = LabelEncoder()
    encoder.classes_ = np.array(fer.EMOTIONS, dtype=object)  # the fixed FER-2013 order
    table["label"] = encoder.transform(table["emotion"])

    faces = np.zeros((len(table), fer.IMAGE_SIZE, fer.IMAGE_SIZE, 1), np.uint8)
    good = np.zeros(len(table), bool)
    for row, image_path in enumerate(table["path"]):
        image = cv2.imread(image_path, cv2.IMREAD_UNCHANGED)
        if image is not None:
            faces[row, :, :, 0], good[row] = fer.to_model_face(fer.to_gray(image)), True
    drop_bad(
        table["path"][~good].tolist(), len(table), f"images under {root}", cfg.max_bad_fraction
    )

    table, faces = table[good].reset_index(drop=True), faces[good]
    labels = table["label"].to_numpy(np.int64)
    split = table["split"].to_numpy()
    if "val" not in split:  # FER-2013's own folders name test faces PublicTest_*/PrivateTest_*
        public = table["path"].map(lambda p: Path(p).name.startswith("PublicTest")).to_numpy()
        split = np.where(public & (split == "test"), "val", split)
    splits = {
        name: (faces[split == name], labels[split == name]) for name in ("train", "val", "test")
    }
    if len(splits["val"][1]) == 0:  # no validation faces at all: a share of train/
        x_train, x_val, y_train, y_val = split_off(*splits["train"], cfg.val_fraction, cfg.seed)
        splits["train"], splits["val"] = (x_train, y_train), (x_val, y_val)
    return splits


def list_images(root: Path) -> pd.DataFrame:
    """One row per image: path, emotion (folder name), split (train/val/test)."""
    folders = {"train": "train", "validation": "val", "val": "val", "test": "test"}
    names = {emotion.lower(): emotion for emotion in fer.EMOTIONS}
    rows = []
    for folder, split in folders.items():
        for class_dir in sorted((root / folder).glob("*")):
            if not class_dir.is_dir():
                continue
            emotion = names.get(class_dir.name.lower())
            if emotion is None:
                raise UserError(
                    f"unknown emotion folder {class_dir}; expected one of {', '.join(fer.EMOTIONS)}"
                )
            rows += [
                (str(p), emotion, split)
                for p in sorted(class_dir.iterdir())
                if p.suffix.lower() in fer.IMAGE_SUFFIXES
            ]
    if not (root / "train").is_dir() or not rows:
        raise UserError(
            f"{root} has no train/<emotion>/ image folders; expected train/ and test/ "
            "(or validation/) with one folder per emotion"
        )
    return pd.DataFrame(rows, columns=["path", "emotion", "split"])


def drop_bad(bad: list | np.ndarray, total: int, what: str, max_fraction: float) -> None:
    """Refuse data with many broken entries; warn about a few, which are skipped."""
    if len(bad) == 0:
        return
    first = ", ".join(str(b) for b in list(bad)[:5])
    message = f"{len(bad)} of {total} {what} are unreadable or invalid (first: {first})"
    if len(bad) > max_fraction * total:
        raise UserError(message)
    print(f"warning: {message}; skipping {'it' if len(bad) == 1 else 'them'}")


def file_sha256(path: Path) -> str:
    """SHA-256 of the data file, or of every file under a data folder."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------


def build_model(train_faces: np.ndarray, cfg: argparse.Namespace, blur: float = 0.0):
    """A VGG-style CNN that takes raw 0-255 faces; blur matching, augmentation and
    normalisation are layers of the model, so what is saved is all inference needs."""
    import keras
    from keras import layers

    augment = keras.Sequential(
        ([layers.RandomFlip("horizontal", seed=cfg.seed)] if cfg.flip else [])
        + [
            layers.RandomRotation(cfg.rotation, fill_mode="nearest", seed=cfg.seed),
            layers.RandomZoom(cfg.zoom, fill_mode="nearest", seed=cfg.seed),
            layers.RandomTranslation(cfg.shift, cfg.shift, fill_mode="nearest", seed=cfg.seed),
        ],
        name="augment",
    )
    normalize = layers.Normalization(name="normalize")  # (x - mean) / std of train faces
    normalize.adapt(train_faces.astype("float32"))

    # BatchNorm's running statistics must settle within the run: Keras' 0.99 for
    # long runs, less for short ones (a --limit try), or inference sees noise.
    steps = int(np.ceil(len(train_faces) / cfg.batch_size)) * cfg.epochs
    momentum = min(0.99, 1 - 10 / steps)

    inputs = keras.Input((fer.IMAGE_SIZE, fer.IMAGE_SIZE, 1), name="face")
    x = fer.InferenceBlur(blur, name="inference_blur")(inputs)
    x = normalize(augment(x))
    for block in range(cfg.conv_blocks):
        for _ in range(2):
            x = layers.Conv2D(cfg.base_filters * 2**block, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization(momentum=momentum)(x)
            x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D()(x)
        x = layers.Dropout(cfg.conv_dropout)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(cfg.dense_units, use_bias=False)(x)
    x = layers.BatchNormalization(momentum=momentum)(x)
    x = layers.Activation("relu")(x)
    x = layers.Dropout(cfg.dense_dropout)(x)
    outputs = layers.Dense(len(fer.EMOTIONS), activation="softmax", name="emotion")(x)
    return keras.Model(inputs, outputs, name="fer_cnn")


def estimate_blur(data: dict, cfg: argparse.Namespace, sample: int = 2000) -> float:
    """The blur that makes validation faces as sharp as training faces (0: as sharp)."""
    if cfg.inference_blur != "auto":
        return float(cfg.inference_blur)
    target = fer.sharpness(data["train"][0][:sample])
    val_faces = data["val"][0][:sample]
    for sigma in np.arange(0, 6.01, 0.25):
        if fer.sharpness(fer.gaussian_blur(val_faces, sigma)) <= target * 1.05:
            return float(sigma)
    return 6.0


def tune_blur(model, data: dict, cfg: argparse.Namespace) -> None:
    """Pick the inference blur with the best validation accuracy, near the estimate."""
    if cfg.inference_blur != "auto":
        return
    estimate = model.get_layer("inference_blur").sigma
    faces, labels = data["val"]
    scores = {}
    for sigma in sorted({max(estimate + step, 0.0) for step in np.arange(-1.5, 1.01, 0.5)}):
        with inference_blur(model, sigma):
            scores[sigma] = np.mean(predict(model, faces) == labels)
    best = max(scores, key=scores.get)
    set_inference_blur(model, best)
    table = ", ".join(f"{sigma:g}: {score:.2%}" for sigma, score in scores.items())
    print(f"inference blur -> validation accuracy: {table}; keeping {best:g}")


def correct_prior(model, data: dict, cfg: argparse.Namespace) -> float:
    """Shift the output bias by -tau * log(class share) (logit adjustment); returns tau."""
    from sklearn.metrics import f1_score

    counts = np.bincount(data["train"][1], minlength=len(fer.EMOTIONS))
    log_share = np.log(np.maximum(counts, 1) / counts.sum())
    tau = cfg.prior_correction
    if tau == "auto":
        faces, labels = data["val"]
        log_prob = np.log(model.predict(faces, batch_size=256, verbose=0) + 1e-12)
        scores = {}
        for candidate in (0.0, 0.25, 0.5, 0.75, 1.0):
            predicted = (log_prob - candidate * log_share).argmax(axis=1)
            scores[candidate] = f1_score(labels, predicted, average="macro")
        tau = max(scores, key=scores.get)
        table = ", ".join(f"{candidate:g}: {score:.3f}" for candidate, score in scores.items())
        print(f"prior correction -> validation macro-F1: {table}; keeping {tau:g}")
    layer = model.get_layer("emotion")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel, bias - float(tau) * log_share])
    return float(tau)


def set_inference_blur(model, sigma: float) -> None:
    model.get_layer("inference_blur").sigma = float(sigma)
    model.predict_function = None  # the blur is baked into the compiled predict step


@contextlib.contextmanager
def inference_blur(model, sigma: float) -> Iterator[None]:
    """Run the model with another inference blur for a while (if it has one)."""
    names = {layer.name for layer in model.layers}
    if "inference_blur" not in names:
        yield
        return
    kept = model.get_layer("inference_blur").sigma
    set_inference_blur(model, sigma)
    try:
        yield
    finally:
        set_inference_blur(model, kept)


def predict(model, faces: np.ndarray) -> np.ndarray:
    """The most likely emotion of each face."""
    return model.predict(faces, batch_size=256, verbose=0).argmax(axis=1)


# --------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------


def train(model, data, cfg: argparse.Namespace, scratch: Path) -> int:
    """Fit with the best validation epoch kept; Ctrl-C stops early. Returns epochs run.

    The checkpoint and the epoch log go to `scratch`, never over a saved model."""
    import keras

    (x_train, y_train), (x_val, y_val) = data["train"], data["val"]
    steps = int(np.ceil(len(x_train) / cfg.batch_size)) * cfg.epochs
    learning_rate = cfg.learning_rate
    if cfg.lr_schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, steps)
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate, weight_decay=cfg.weight_decay),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
        metrics=["accuracy"],
    )
    best, log_path = scratch / "best.weights.h5", scratch / "training_log.csv"
    callbacks = [
        keras.callbacks.ModelCheckpoint(
            best, monitor="val_accuracy", save_best_only=True, save_weights_only=True
        ),
        keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=cfg.patience),
        keras.callbacks.CSVLogger(str(log_path)),
    ]
    if cfg.lr_schedule == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(monitor="val_accuracy", factor=0.5, patience=3)
        )
    try:
        model.fit(
            x_train,
            one_hot(y_train),
            validation_data=(x_val, one_hot(y_val)),
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            callbacks=callbacks,
            verbose=1 if sys.stdout.isatty() else 2,  # one line per epoch in a log
        )
    except KeyboardInterrupt:
        print("\nstopped: keeping the best epoch so far")
    if not best.exists():
        raise UserError("stopped before the first epoch finished; nothing was saved")
    model.load_weights(best)
    return len(pd.read_csv(log_path))


def one_hot(labels: np.ndarray) -> np.ndarray:
    return np.eye(len(fer.EMOTIONS), dtype="float32")[labels]


# --------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------


def evaluate(model, data) -> dict:
    """Accuracy on every split; per-class figures and confusion matrix on test.

    Training faces are scored as the model saw them in training: without the
    inference blur, which would blur them a second time."""
    from sklearn.metrics import classification_report, confusion_matrix

    with inference_blur(model, 0.0):
        predicted = {"train": predict(model, data["train"][0])}
    for split in ("val", "test"):
        predicted[split] = predict(model, data[split][0])
    accuracy = {split: float(np.mean(predicted[split] == data[split][1])) for split in data}
    labels, predicted = data["test"][1], predicted["test"]
    everyone = list(range(len(fer.EMOTIONS)))
    report = classification_report(
        labels,
        predicted,
        labels=everyone,
        target_names=fer.EMOTIONS,
        output_dict=True,
        zero_division=0,
    )
    print(
        classification_report(
            labels, predicted, labels=everyone, target_names=fer.EMOTIONS, digits=3, zero_division=0
        )
    )
    return {
        "train_accuracy": accuracy["train"],
        "val_accuracy": accuracy["val"],
        "test_accuracy": accuracy["test"],
        "test_macro_f1": report["macro avg"]["f1-score"],
        "per_class": {name: report[name] for name in fer.EMOTIONS},
        "confusion_matrix": confusion_matrix(labels, predicted, labels=everyone).tolist(),
    }


def plot_confusion(matrix: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    matrix = np.array(matrix, float)
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7, 6))
    ConfusionMatrixDisplay(share, display_labels=fer.EMOTIONS).plot(
        ax=ax, cmap="Blues", values_format=".2f", colorbar=False
    )
    ax.set_title("Test confusion matrix (share of each true class)")
    save_figure(fig, path)


def plot_curves(log_path: Path, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    log = pd.read_csv(log_path)
    epochs = log["epoch"] + 1
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric in ((left, "accuracy"), (right, "loss")):
        ax.plot(epochs, log[metric], label="train (augmented)")
        ax.plot(epochs, log[f"val_{metric}"], label="validation")
        ax.set(xlabel="epoch", ylabel=metric, title=metric.capitalize())
        ax.grid(alpha=0.3)
        ax.legend()
    save_figure(fig, path)


def save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def main() -> None:
    cfg = parse_args()
    out_dir = Path(cfg.out_dir)
    if cfg.export:
        if fer.export_tflite(fer.load_model(out_dir), out_dir / fer.MODEL_TFLITE):
            print(f"wrote {out_dir / fer.MODEL_TFLITE}")
        return
    if cfg.evaluate:
        model = fer.load_model(out_dir)  # check the model before the slow data load
        data = load_data(find_data(cfg.data), cfg)
        print_summary(evaluate(model, data))
        return

    import keras

    keras.utils.set_random_seed(cfg.seed)
    data_path = find_data(cfg.data)
    data = load_data(data_path, cfg)
    if cfg.limit:
        faces, labels = data["train"]
        pick = np.random.default_rng(cfg.seed).permutation(len(labels))[: cfg.limit]
        data["train"] = faces[pick], labels[pick]
    print(", ".join(f"{name}: {len(labels)} faces" for name, (_, labels) in data.items()))

    blur = estimate_blur(data, cfg)
    print(
        f"inference blur: {blur:g} px (training faces are blurrier than the others)"
        if blur
        else "inference blur: none (training and validation faces equally sharp)"
    )
    model = build_model(data["train"][0], cfg, blur)
    model.summary()
    with tempfile.TemporaryDirectory() as scratch:
        started = time.time()
        epochs_run = train(model, data, cfg, Path(scratch))
        seconds = time.time() - started
        finish(model, data, cfg, Path(scratch), data_path, epochs_run, seconds)


def finish(
    model, data: dict, cfg: argparse.Namespace, scratch: Path, data_path: Path,
    epochs_run: int, seconds: float,
) -> None:  # fmt: skip
    """Tune the inference blur, evaluate, and save model, metrics and plots to OUT_DIR."""
    import keras

    tune_blur(model, data, cfg)
    prior_correction = correct_prior(model, data, cfg)
    metrics = evaluate(model, data)
    metrics.update(
        epochs_run=epochs_run,
        training_seconds=round(seconds, 1),
        hardware=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        keras_backend=keras.backend.backend(),
        keras_version=keras.__version__,
        parameters=model.count_params(),
        inference_blur=model.get_layer("inference_blur").sigma,
        prior_correction=prior_correction,
        data_sha256=file_sha256(data_path),
        config=vars(cfg),
    )
    out_dir = Path(cfg.out_dir)
    fer.save_model(model, out_dir)
    with atomic_path(out_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    with atomic_path(out_dir / "training_log.csv") as tmp:
        shutil.copyfile(scratch / "training_log.csv", tmp)
    plot_confusion(metrics["confusion_matrix"], out_dir / "confusion_matrix.png")
    plot_curves(out_dir / "training_log.csv", out_dir / "training_curves.png")
    print_summary(metrics)
    print(f"saved the model, metrics and plots to {out_dir}/")


def print_summary(metrics: dict) -> None:
    print(
        "accuracy  train {train_accuracy:.2%}  validation {val_accuracy:.2%}  "
        "test {test_accuracy:.2%}  (test macro-F1 {test_macro_f1:.3f})".format(**metrics)
    )


if __name__ == "__main__":
    fer.run_cli(main)
