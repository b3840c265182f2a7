"""Train a facial-expression CNN on FER-2013, evaluate it, save it to models/.

    python emotion_recognition.py                      # the shipped model's recipe: 200 epochs
    python emotion_recognition.py --preset fast        # the same in 40 epochs
    python emotion_recognition.py --epochs 3 --limit 2000   # a quick try
    python emotion_recognition.py --resume             # go on after a crash or Ctrl-C
    python emotion_recognition.py --evaluate           # re-test the saved model
    python emotion_recognition.py --export             # models/fer.tflite for LiteRT

Every setting below is a plain constant; each one can be overridden on the command
line by its lower-case name (`--batch-size 128`). `--help` lists them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import pandas as pd

import fer_calibration
import fer_common as fer
import fer_data
import fer_runs
from fer_common import UserError, atomic_path

HERE = Path(__file__).resolve().parent

# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------

DATA = str(HERE / "data" / "fer2013.csv")  # Kaggle CSV (.csv, .csv.gz, .csv.xz) or image folders
# FER+ votes (fer2013new.csv: ten taggers a face, paired row by row with DATA): train
# on each face's vote distribution, pick and test against the taggers' majority.
# "auto": fer2013new.csv beside DATA where it is there; "none": FER-2013's own
# labels, one annotator's guess a face (the classic recipe)
VOTES = "auto"
OUT_DIR = str(HERE / "models")  # where the trained model, its metrics and plots go
RUNS = str(HERE / "runs")  # a folder per training run: each epoch's checkpoint, for --resume
DEVICES = 0  # accelerators to train on, with the JAX backend (0: all visible; 1: one)
LIMIT = 0  # train on this many random training faces only (0: all of them)
SEED = 42  # seeds the shuffling, the augmentation and the weights: a run is repeatable

EPOCHS = 200  # passes over the training faces
BATCH_SIZE = 64  # faces per training step
LEARNING_RATE = 1e-3  # peak learning rate of AdamW
# AdamW's decoupled weight decay; Keras multiplies it by the learning rate, as the
# AdamW paper and PyTorch do, so the usual values apply (1e-4 is almost none)
WEIGHT_DECAY = 0.05
LABEL_SMOOTHING = 0.1  # train towards 0.9 for the label, not 1: FER-2013's labels are noisy
ORIGINAL_WEIGHT = 0.0  # with VOTES: the share of FER-2013's own label in each face's target
MAJORITY_ONLY = False  # with VOTES: train only on faces that most of their taggers agree on
LR_SCHEDULE = "cosine"  # "cosine": decay to 0 over EPOCHS; "plateau": halve when stuck
# with the plateau schedule: stop after this many epochs without a better validation
# accuracy (a cosine schedule runs all EPOCHS: its best epochs come at its end)
PATIENCE = 20
# "mixed_bfloat16" computes in bfloat16 (keeping float32 weights), "float32" does
# not; "auto": bfloat16 where the hardware has units for it (a GPU; a CPU with AMX
# or AVX-512 BF16). The saved model is float32 either way
PRECISION = "auto"

BASE_FILTERS = 32  # filters of the first conv block; each next block doubles them
# conv blocks, each two 3x3 convolutions (BatchNorm after the second, but for the
# first block's, whose full-size maps would cost the most to normalise) and pooling
CONV_BLOCKS = 4
DENSE_UNITS = 256  # units of the hidden dense layer
CONV_DROPOUT = 0.1  # share of each conv block's outputs dropped in training
DENSE_DROPOUT = 0.3  # share of the dense layer's outputs dropped in training

# Augmentation: layers at the front of the model that change every training face
# at random, and are silent at inference.

FLIP = True  # mirror faces left-right
ROTATION = 0.03  # turn faces by up to this fraction of a full turn (0.03: 11 degrees)
ZOOM = 0.1  # zoom in or out by up to this fraction
SHIFT = 0.1  # shift by up to this fraction of the face's size
# cut every face to its central CROP x CROP pixels after the shift, so that training
# sees a randomly placed crop and inference the centre one (and, with test-time
# views, the windows around it), as published FER-2013 models do; 48: the whole face
CROP = 44
# What real footage does to a face, so that the model learns to ignore it (0: off).

CONTRAST = 0.5  # scale each face's contrast by 1 +- up to this (clipped, as a camera clips)
BRIGHTNESS = 0.3  # shift its brightness by up to this share of the grey range (clipped)
BLUR = 1.5  # blur half of the faces by a Gaussian of up to this sigma (px): focus, motion
NOISE = 0.1  # sensor noise, as a share of each face's own contrast (after standardising)
ERASING = 0.25  # share of the faces with a random patch covered (a hand, a microphone)
# a fixed Gaussian blur (sigma, px) of every face in training and at inference, so
# that faces softened by rotating and zooming meet equally soft ones in use; 0: none
INPUT_BLUR = 0.5

# Rare emotions are rarely predicted (Disgust is 1.5 % of the training faces):
# subtract this times log(class share) from the logits; "auto": the value best
# for validation macro-F1; 0: off
PRIOR_CORRECTION = "auto"
# divide the logits by a temperature fitted on the validation faces, so that a face
# labelled with 80 % confidence is right about 80 % of the time
CALIBRATE = True

VAL_FRACTION = 0.1  # for a CSV without a Usage column: the share held out for validation
TEST_FRACTION = 0.1  # for a CSV without a Usage column: the share held out for the test
MAX_BAD_FRACTION = 0.01  # refuse data with more broken rows/images than this

PRESET = "default"  # a named recipe of PRESETS: settings that differ from the ones above
PRESETS = {
    "default": {},
    "fast": {"epochs": 40},
}


def crop_size(text: str) -> int:
    """An even crop size from 16 to the face's 48 px, so that it centres exactly."""
    size = int(text)
    if not (16 <= size <= fer.IMAGE_SIZE and (fer.IMAGE_SIZE - size) % 2 == 0):
        raise ValueError(text)
    return size


crop_size.__name__ = f"even number from 16 to {fer.IMAGE_SIZE}"  # argparse's message

# What the command line accepts for a setting where its default's type says too
# little: choices, or a function that converts the text (ValueError: refused).
ACCEPTS = {
    "DEVICES": fer.number(0, kind=int),
    "LIMIT": fer.number(0, kind=int),
    "EPOCHS": fer.number(1, kind=int),
    "BATCH_SIZE": fer.number(1, kind=int),
    "LEARNING_RATE": fer.number(0),
    "WEIGHT_DECAY": fer.number(0),
    "LABEL_SMOOTHING": fer.number(0, 1),
    "ORIGINAL_WEIGHT": fer.number(0, 1),
    "LR_SCHEDULE": ("cosine", "plateau"),
    "PATIENCE": fer.number(1, kind=int),
    "PRECISION": ("auto", "float32", "mixed_bfloat16"),
    "BASE_FILTERS": fer.number(1, kind=int),
    "CONV_BLOCKS": fer.number(1, 5, kind=int),
    "DENSE_UNITS": fer.number(1, kind=int),
    "CONV_DROPOUT": fer.number(0, 0.9),
    "DENSE_DROPOUT": fer.number(0, 0.9),
    "ROTATION": fer.number(0, 1),
    "ZOOM": fer.number(0, 0.9),
    "SHIFT": fer.number(0, 0.5),
    "CROP": crop_size,
    "CONTRAST": fer.number(0, 1),
    "BRIGHTNESS": fer.number(0, 1),
    "BLUR": fer.number(0, 5),
    "NOISE": fer.number(0, 1),
    "ERASING": fer.number(0, 1),
    "INPUT_BLUR": fer.number(0, 5),
    "PRIOR_CORRECTION": fer.auto_or(fer.number(0, 2)),
    "VAL_FRACTION": fer.number(0, 0.5),
    "TEST_FRACTION": fer.number(0, 0.5),
    "MAX_BAD_FRACTION": fer.number(0, 1),
    "PRESET": tuple(PRESETS),
}
SETTINGS = {
    name: value
    for name, value in globals().items()
    if name.isupper() and name not in ("HERE", "PRESETS", "ACCEPTS")
}


def make_parser() -> argparse.ArgumentParser:
    """The command line: a flag per setting above, and what else the script does."""
    parser = fer.settings_parser(SETTINGS, __doc__, [__file__], ACCEPTS)
    parser.add_argument(
        "--evaluate", action="store_true", help="test the saved model in OUT_DIR, no training"
    )
    parser.add_argument(
        "--export",
        action="store_true",
        help=f"write OUT_DIR/{fer.MODEL_TFLITE} (LiteRT)",
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        metavar="RUN",
        help="go on with the latest run in RUNS (or with RUN) from its last finished epoch, "
        "with its settings",
    )
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = make_parser()
    known = parser.parse_known_args(argv)[0]
    parser.set_defaults(**PRESETS[known.preset])  # flags given on the command line still win
    if known.resume:
        run = fer_runs.Run.open(known.resume, known.runs)
        gone = sorted(set(run.state["settings"]) - {name.lower() for name in SETTINGS})
        if gone:  # going on without them would silently train another recipe
            flags = ", ".join("--" + name.replace("_", "-") for name in gone)
            raise UserError(
                f"{run.folder} was trained with {flags}, which this version of the script "
                "does not have: start a new run"
            )
        parser.set_defaults(**run.state["settings"])  # here too
    cfg = parser.parse_args(argv)
    if known.resume:
        cfg.resume = str(run.folder)
    return cfg


def settings(cfg: argparse.Namespace) -> dict:
    """The values of the settings at the top of this file (not --evaluate and such)."""
    return {name.lower(): getattr(cfg, name.lower()) for name in SETTINGS}


# --------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------


def build_model(train_faces: np.ndarray, cfg: argparse.Namespace):
    """A VGG-style CNN, as one `keras.Sequential` stack of built-in layers, that takes
    raw 0-255 faces: augmentation (active in training only) and normalisation are
    its first layers, so what is saved is all inference needs."""
    import keras
    from keras import layers

    pixels = {"dtype": "float32", "seed": cfg.seed}  # preprocessing stays float32
    augment = [layers.RandomFlip("horizontal", **pixels)] if cfg.flip else []
    augment += [
        layers.RandomRotation(cfg.rotation, fill_mode="nearest", **pixels),
        layers.RandomZoom(cfg.zoom, fill_mode="nearest", **pixels),
        layers.RandomTranslation(cfg.shift, cfg.shift, fill_mode="nearest", **pixels),
    ]
    margin = (fer.IMAGE_SIZE - cfg.crop) // 2
    augment += [layers.Cropping2D(margin, dtype="float32", name="crop")] if margin > 0 else []
    augment += footage_augmentation(cfg)
    # Each face to mean 0 and deviation 1, whatever the light and the camera's
    # contrast (epsilon: a face as flat as one grey level is not blown up).
    standardize = layers.LayerNormalization(
        axis=(1, 2, 3), epsilon=1.0, center=False, scale=False, dtype="float32", name="standardize"
    )
    kernel = gaussian_kernel(cfg.input_blur) if cfg.input_blur > 0 else None
    blur = [] if kernel is None else [
        # a fixed (untrained) Gaussian blur, built from a built-in layer
        layers.DepthwiseConv2D(len(kernel), padding="same", use_bias=False, trainable=False,
                               dtype="float32", name="blur"),
    ]  # fmt: skip

    # BatchNorm's running statistics must settle within the run: Keras' 0.99 for
    # long runs, less for short ones (a --limit try), or inference sees noise.
    steps = int(np.ceil(len(train_faces) / cfg.batch_size)) * cfg.epochs
    momentum = min(0.99, 1 - 10 / steps)

    stack = [keras.Input((fer.IMAGE_SIZE, fer.IMAGE_SIZE, 1), name="face"), *augment]
    stack.append(standardize)
    if cfg.noise > 0:  # sensor noise, as a share of the face's contrast
        stack.append(layers.GaussianNoise(cfg.noise, dtype="float32", seed=cfg.seed))
    stack += blur  # after standardising: its zero padding is mean grey
    for block in range(cfg.conv_blocks):
        for conv in range(2):
            normalized = conv == 1 and block > 0  # the first block's maps cost the most
            stack.append(layers.Conv2D(cfg.base_filters * 2**block, 3, padding="same",
                                       use_bias=not normalized))  # fmt: skip
            stack += [layers.BatchNormalization(momentum=momentum)] if normalized else []
            stack.append(layers.Activation("relu"))
        stack += [layers.MaxPooling2D(), layers.Dropout(cfg.conv_dropout)]
    stack += [
        layers.Flatten(),
        layers.Dense(cfg.dense_units, use_bias=False),
        layers.BatchNormalization(momentum=momentum),
        layers.Activation("relu"),
        layers.Dropout(cfg.dense_dropout),
        # float32 probabilities even when the rest computes in bfloat16
        layers.Dense(len(fer.EMOTIONS), activation="softmax", dtype="float32", name="emotion"),
    ]
    model = keras.Sequential(stack, name="fer_cnn")
    if blur:
        blur[0].set_weights([kernel[:, :, None, None]])
    return model


def footage_augmentation(cfg: argparse.Namespace) -> list:
    """Training-only layers that light, blur and cover faces as real cameras and
    scenes do, on 0-255 pixels (see CONTRAST .. ERASING); silent at inference."""
    from keras import layers

    pixels = {"dtype": "float32", "seed": cfg.seed}
    chosen = []
    if cfg.contrast > 0 or cfg.brightness > 0:  # (RandomBrightness cannot be saved as .h5)
        chosen.append(layers.RandomColorJitter((0, 255), brightness_factor=cfg.brightness,
                                               contrast_factor=cfg.contrast, **pixels))  # fmt: skip
    if cfg.blur > 0:  # factor: the share of faces blurred; sigma drawn per batch
        chosen.append(layers.RandomGaussianBlur((0.5, 0.5), kernel_size=5,
                                                sigma=(0.2, cfg.blur), **pixels))  # fmt: skip
    if cfg.erasing > 0:
        chosen.append(layers.RandomErasing((cfg.erasing, cfg.erasing), scale=(0.02, 0.2),
                                           fill_value=128.0, **pixels))  # fmt: skip
    return chosen


def gaussian_kernel(sigma: float) -> np.ndarray:
    """A square 2-D Gaussian of `sigma` pixels that sums to 1."""
    radius = max(1, int(np.ceil(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return np.outer(taps, taps).astype("float32") / np.sum(taps) ** 2


def choose_precision(setting: str) -> str:
    """The Keras dtype policy for training: bfloat16 where the hardware has fast units."""
    import keras

    if setting != "auto":
        return setting
    if any(device.startswith("gpu") for device in keras.distribution.list_devices()):
        return "mixed_bfloat16"
    # On a CPU, bfloat16 pays where it has bfloat16 units: AMX (Intel Xeon since
    # Sapphire Rapids) or AVX-512 BF16 (AMD Zen 4 and later); elsewhere it is
    # emulated, and slower than float32.
    return "mixed_bfloat16" if {"amx_bf16", "avx512_bf16"} & cpu_flags() else "float32"


def cpu_flags() -> set[str]:
    """The CPU's feature flags on Linux (empty elsewhere)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.partition(":")[2].split())
    return set()


def choose_devices(setting: int, batch_size: int):
    """A `keras.distribution.DataParallel` over the devices to train on (each takes
    an equal share of every batch), or None for one device."""
    import keras

    devices = keras.distribution.list_devices()
    count = setting or len(devices)
    if count > len(devices):
        raise UserError(f"--devices {count}: only {len(devices)} visible ({', '.join(devices)})")
    if count == 1:
        return None
    if keras.backend.backend() != "jax":
        if setting:
            raise UserError(
                f"--devices {count} needs the JAX backend: KERAS_BACKEND=jax python "
                "emotion_recognition.py ..."
            )
        print(f"training on one of {count} devices; KERAS_BACKEND=jax trains on all of them")
        return None
    if batch_size % count:
        raise UserError(f"--batch-size {batch_size} does not split evenly over {count} devices")
    print(f"training on {count} devices ({', '.join(devices[:count])}), "
          f"{batch_size // count} faces of every batch each")  # fmt: skip
    return keras.distribution.DataParallel(devices=devices[:count])


# --------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------


def train(model, data, cfg: argparse.Namespace, run: fer_runs.Run) -> int:
    """Fit from the run's last checkpoint on, checkpointing every epoch; keep the best
    validation epoch; Ctrl-C stops early. Returns the epochs run in all."""
    import keras

    import fer_fit  # (it imports Keras: seconds that --help and the data checks need not wait)

    compile_model(model, cfg, len(data["train"][1]))
    plateau, patience = None, cfg.epochs  # (cosine: no early stopping)
    if cfg.lr_schedule == "plateau":
        plateau = keras.callbacks.ReduceLROnPlateau(monitor="val_accuracy", factor=0.5, patience=3)
        patience = cfg.patience
    checkpoint = fer_fit.Checkpoint(run, patience, plateau)  # after the plateau: its state
    distribution = keras.distribution.distribution()
    split = 1 if distribution is None else distribution.device_mesh.devices.size
    batches = fer_fit.FaceBatches(
        *data["train"], cfg.batch_size, seed=cfg.seed, first_epoch=run.epoch, split=split
    )
    validation = fer_fit.FaceBatches(*data["val"], cfg.batch_size, split=split)
    callbacks = [plateau, checkpoint] if plateau else [checkpoint]
    try:
        with fer_fit.CtrlC() as ctrl_c:
            if not run.finished(cfg.epochs, patience):
                model.fit(
                    batches,
                    steps_per_epoch=len(batches),
                    shuffle=False,  # the batches come shuffled
                    validation_data=validation,
                    epochs=cfg.epochs,
                    initial_epoch=run.epoch,
                    callbacks=[*callbacks, ctrl_c],
                    verbose=1 if sys.stdout.isatty() else 2,  # one line per epoch in a log
                )
    except KeyboardInterrupt:
        print("\nstopped: keeping the best epoch so far")
    run.load_best(model)
    return run.epoch


def compile_model(model, cfg: argparse.Namespace, train_faces: int) -> None:
    """AdamW with the learning-rate schedule, label-smoothed cross-entropy, accuracy."""
    import keras

    if keras.backend.backend() == "jax":
        # Keras marks its random rotation, zoom and translation as unfit for XLA, which
        # holds for TensorFlow; under JAX they compile (map_coordinates). Unmarked, the
        # whole step runs op by op: 0.68 s a step on an H200, 0.46 s on a 2-core CPU.
        for layer in model.layers:
            layer.supports_jit = True
    steps = int(np.ceil(train_faces / cfg.batch_size)) * cfg.epochs
    learning_rate = cfg.learning_rate
    if cfg.lr_schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, steps)
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate, weight_decay=cfg.weight_decay),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
        metrics=["accuracy"],
    )


# --------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------


def learning_task(data: dict, cfg: argparse.Namespace) -> tuple[dict, dict | None]:
    """(what the model learns, is picked and tested on; FER-2013's own labels, or None).

    With FER+ votes: training faces with their vote targets (fer_data.vote_targets),
    and the validation and test faces that have a majority label, with that label
    (the usual FER+ protocol). Without: the data as loaded, and None."""
    if len(data["train"]) == 2:
        return data, None
    original = {split: (faces, labels) for split, (faces, labels, _) in data.items()}
    faces, labels, votes = data["train"]
    targets, kept = fer_data.vote_targets(votes, labels, cfg.original_weight, cfg.majority_only)
    task = {"train": (faces[kept], targets[kept])}
    for split in ("val", "test"):
        faces, _, votes = data[split]
        majority = fer_data.majority_labels(votes)
        task[split] = (faces[majority >= 0], majority[majority >= 0])
    return task, original


def evaluate(model, data, original: dict | None = None) -> tuple[dict, np.ndarray]:
    """Accuracy on every split, as the demo classifies (its test-time views) and on
    the single face; per-class figures, calibration error and confusion matrix on
    test. `data`: the learning task's faces and labels (the FER+ majority, where the
    votes are at hand); `original`: FER-2013's own labels, measured too. Returns the
    metrics and the test probabilities."""
    from sklearn.metrics import classification_report, confusion_matrix

    held_out = ("val", "test")
    probabilities = {split: fer.predict(model, data[split][0]) for split in held_out}
    accuracy = {split: hit_rate(probabilities[split], data[split][1]) for split in held_out}
    # One view of every split too; of the training faces only that (how well the
    # model fits them: views would cost a pass per view over 28,709 faces).
    one_view = {
        split: hit_rate(fer.predict(model, faces, "one"), labels)
        for split, (faces, labels) in data.items()
    }
    labels, predicted = data["test"][1], probabilities["test"].argmax(axis=1)
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
    metrics = {
        "labels": "FER+ majority" if original else "FER-2013",
        "test_faces": len(labels),
        "train_accuracy": one_view["train"],
        "val_accuracy": accuracy["val"],
        "test_accuracy": accuracy["test"],
        "views": fer.VIEWS,
        "val_accuracy_one_view": one_view["val"],
        "test_accuracy_one_view": one_view["test"],
        "test_macro_f1": report["macro avg"]["f1-score"],
        "test_calibration_error": fer_calibration.calibration_error(probabilities["test"], labels),
        "per_class": {name: report[name] for name in fer.EMOTIONS},
        "confusion_matrix": confusion_matrix(labels, predicted, labels=everyone).tolist(),
    }
    if original:  # the same model against FER-2013's own labels, on every face
        for split in held_out:
            faces, own_labels = original[split]
            for views, suffix in ((fer.VIEWS, ""), ("one", "_one_view")):
                metrics[f"{split}_accuracy_fer2013{suffix}"] = hit_rate(
                    fer.predict(model, faces, views), own_labels
                )
    return metrics, probabilities["test"]


def hit_rate(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The share of faces whose top emotion is the label (or the top of a target)."""
    truth = labels.argmax(axis=1) if labels.ndim == 2 else labels
    return float(np.mean(probabilities.argmax(axis=1) == truth))


def plot_confusion(matrix: list, path: Path) -> None:
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
        model = fer.load_model(out_dir)
        if fer.export_tflite(model, out_dir / fer.MODEL_TFLITE, out_dir / fer.MODEL_WEIGHTS):
            print(f"wrote {out_dir / fer.MODEL_TFLITE}")
        return
    if cfg.evaluate:
        model = fer.load_model(out_dir)  # check the model before the slow data load
        data_path = fer_data.find_data(cfg.data)
        data = fer_data.load_data(data_path, cfg, fer_data.find_votes(cfg.votes, data_path))
        print_summary(evaluate(model, *learning_task(data, cfg))[0])
        return

    # The data first: a missing or broken file is said before Keras is even imported.
    data_path = fer_data.find_data(cfg.data)
    votes_path = fer_data.find_votes(cfg.votes, data_path)
    data_sha256 = fer.file_sha256(data_path)
    run = fer_runs.Run.open(cfg.resume, cfg.runs) if cfg.resume else None
    if run:
        run.check_data(data_sha256, data_path)
        changed = [
            f"{name} {run.state['settings'].get(name)} -> {value}"
            for name, value in settings(cfg).items()
            if run.state["settings"].get(name) != value
        ]
        print(f"resuming {run.folder} after epoch {run.epoch}"
              + (f", with changed settings: {', '.join(changed)}" if changed else ""))  # fmt: skip
    data, original = learning_task(fer_data.load_data(data_path, cfg, votes_path), cfg)

    import keras

    keras.utils.set_random_seed(cfg.seed)
    precision = choose_precision(cfg.precision)
    try:
        keras.mixed_precision.set_global_policy(precision)
    except ValueError as error:
        raise UserError(f"--precision {precision}: {fer.first_line(error)}") from None
    distribution = choose_devices(cfg.devices, cfg.batch_size)
    if cfg.limit:
        faces, labels = data["train"]
        pick = np.random.default_rng(cfg.seed).permutation(len(labels))[: cfg.limit]
        data["train"] = faces[pick], labels[pick]
    print(", ".join(f"{name}: {len(labels)} faces" for name, (_, labels) in data.items())
          + (" (FER+ votes; validation and test: the faces with a majority label)"
             if original else " (FER-2013's own labels)"))  # fmt: skip
    print(f"computing in {precision}")

    # Variables made in the distribution's scope are copied to every device.
    with distribution.scope() if distribution else contextlib.nullcontext():
        model = build_model(data["train"][0], cfg)
        model.summary()
        if run:
            run.check_architecture(model)
        else:
            run = fer_runs.Run.start(cfg.runs, settings(cfg), data_sha256, model)
        print(f"checkpoint after every epoch: {run.folder}/ (go on after a crash: --resume)")
        epochs_run = train(model, data, cfg, run)
    metrics = finish(model, data, original, cfg, run)
    metrics.update(
        epochs_run=epochs_run,
        best_epoch=run.state["best_epoch"],
        training_seconds=round(run.state["training_seconds"], 1),
        hardware=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        devices=(
            list(distribution.device_mesh.devices.flat)
            if distribution
            else keras.distribution.list_devices()[:1]
        ),
        keras_backend=keras.backend.backend(),
        keras_version=keras.__version__,
        precision=precision,
        data_sha256=data_sha256,
        run=str(run.folder),
        config=settings(cfg),
    )
    write_metrics(metrics, out_dir)
    print_summary(metrics)
    print(f"saved the model, metrics and plots to {out_dir}/")


def finish(model, data: dict, original: dict | None, cfg: argparse.Namespace,
           run: fer_runs.Run) -> dict:  # fmt: skip
    """Calibrate the trained model, evaluate it, and save it and its plots to OUT_DIR."""
    model = fer.inference_copy(model)  # float32, without the optimizer: as saved
    uncalibrated = fer.predict(model, data["test"][0])
    calibration = fer_calibration.calibrate(model, data, cfg.prior_correction, cfg.calibrate)
    metrics, probabilities = evaluate(model, data, original)
    labels = data["test"][1]
    metrics.update(
        calibration,
        test_calibration_error_uncalibrated=fer_calibration.calibration_error(uncalibrated, labels),
        parameters=model.count_params(),
    )
    out_dir = Path(cfg.out_dir)
    fer.save_model(model, out_dir)
    if (out_dir / fer.MODEL_TFLITE).is_file():  # the demo's model: how well it does
        litert = fer.predict(fer.load_model(out_dir / fer.MODEL_TFLITE), data["test"][0])
        metrics["litert_test_accuracy"] = float(np.mean(litert.argmax(axis=1) == labels))
    with atomic_path(out_dir / "training_log.csv") as tmp:
        run.log_table().to_csv(tmp, index=False)
    plot_confusion(metrics["confusion_matrix"], out_dir / "confusion_matrix.png")
    curves = {"as trained": uncalibrated, "calibrated (shipped)": probabilities}
    save_figure(
        fer_calibration.reliability_diagram(curves, labels), out_dir / "reliability_diagram.png"
    )
    plot_curves(out_dir / "training_log.csv", out_dir / "training_curves.png")
    return metrics


def write_metrics(metrics: dict, out_dir: Path) -> None:
    with atomic_path(out_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")


def print_summary(metrics: dict) -> None:
    print(
        "accuracy against the {labels} labels  train {train_accuracy:.2%}  validation "
        "{val_accuracy:.2%}  test {test_accuracy:.2%} of {test_faces} faces  (views: {views}; "
        "one view: test {test_accuracy_one_view:.2%}; test macro-F1 {test_macro_f1:.3f}, "
        "calibration error {test_calibration_error:.1%})".format(**metrics)
    )
    if "test_accuracy_fer2013" in metrics:
        own = "against FER-2013's own labels  validation {val_accuracy_fer2013:.2%}  test "
        own += "{test_accuracy_fer2013:.2%}  (one view: test {test_accuracy_fer2013_one_view:.2%})"
        print(own.format(**metrics))


if __name__ == "__main__":
    fer.run_cli(main)
