"""FER-2013 as arrays: the Kaggle CSV (emotion, pixels, Usage) or an image-folder
copy, split into train/val/test, with bad rows, bad images and processed copies
reported in one line each; and the FER+ votes that pair with the CSV."""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

import fer_common as fer
from fer_common import UserError

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


def load_data(
    path: Path, cfg: argparse.Namespace, votes: Path | None = None
) -> dict[str, tuple[np.ndarray, ...]]:
    """FER-2013 as {"train"|"val"|"test": (uint8 faces (N, 48, 48, 1), labels (N,))};
    with a FER+ `votes` file (for a CSV), each split's (N, 10) vote counts as a third
    element (columns: VOTE_COLUMNS)."""
    if votes is not None and path.is_dir():
        raise UserError(
            f"FER+ votes pair with FER-2013's CSV, row by row, not with image folders ({path}); "
            "train with --votes none, or on the CSV"
        )
    splits = load_image_folders(path, cfg) if path.is_dir() else load_csv(path, cfg, votes)
    for name, (_, labels, *_) in splits.items():
        if len(labels) == 0:
            raise UserError(f"the {name} split of {path} is empty")
    check_splits_alike(splits)
    return splits


def check_splits_alike(data: dict[str, tuple[np.ndarray, ...]], sample: int = 500) -> None:
    """Warn, in one line, when the training faces were processed unlike the test faces.

    Public copies of FER-2013 circulate whose train/ images are Gaussian-blurred
    (sigma ~3.5 px): a model trained on them learns blurred faces and does about
    10 points worse on sharp test faces and webcams. Blur and gross brightness or
    contrast changes show in a few hundred faces, so this costs well under a second.
    """
    stats = {}
    for split, (faces, *_) in data.items():
        pick = faces[np.linspace(0, len(faces) - 1, min(sample, len(faces))).astype(int), ..., 0]
        stats[split] = {
            "sharpness": float(np.median([cv2.Laplacian(face, cv2.CV_64F).var() for face in pick])),
            "brightness": float(pick.mean()),
            "contrast": float(np.median(pick.std(axis=(1, 2)))),
        }
    train, others = stats["train"], [stats["val"], stats["test"]]
    reference = {key: float(np.mean([s[key] for s in others])) for key in train}
    problems = []
    if train["sharpness"] < reference["sharpness"] / 4:
        problems.append("much blurrier")
    elif train["sharpness"] > reference["sharpness"] * 4:
        problems.append("much sharper")
    if abs(train["brightness"] - reference["brightness"]) > 25:
        problems.append("brighter" if train["brightness"] > reference["brightness"] else "darker")
    if not 2 / 3 < train["contrast"] / max(reference["contrast"], 1e-6) < 3 / 2:
        problems.append("of other contrast")
    if problems:
        print(
            f"warning: the training faces are {' and '.join(problems)} than the validation "
            f"and test faces (sharpness {train['sharpness']:.0f} vs {reference['sharpness']:.0f}, "
            f"brightness {train['brightness']:.0f} vs {reference['brightness']:.0f}, contrast "
            f"{train['contrast']:.0f} vs {reference['contrast']:.0f}): this looks like a processed "
            "copy of FER-2013 (some public copies blur train/), and a model trained on it does "
            "worse on real faces; get an untouched copy (see data/README.md)"
        )


def load_csv(
    path: Path, cfg: argparse.Namespace, votes_path: Path | None = None
) -> dict[str, tuple[np.ndarray, ...]]:
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
    votes = None if votes_path is None else read_votes(votes_path, path, table)
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
        columns = (faces, labels) if votes is None else (faces, labels, votes[good])
        return {
            split: tuple(column[usage == split] for column in columns)
            for split in ("train", "val", "test")
        }
    held_out = cfg.val_fraction + cfg.test_fraction
    x_train, x_rest, y_train, y_rest = split_off(faces, labels, held_out, cfg.seed)
    x_val, x_test, y_val, y_test = split_off(x_rest, y_rest, cfg.test_fraction / held_out, cfg.seed)
    return {"train": (x_train, y_train), "val": (x_val, y_val), "test": (x_test, y_test)}


# --------------------------------------------------------------------------
# FER+ votes: ten taggers a face (Barsoum et al. 2016, microsoft/FERPlus, MIT)
# --------------------------------------------------------------------------

# The votes file's emotion columns in FER-2013's label order (EMOTIONS), then the
# three that are no emotion of ours.
VOTE_COLUMNS = (
    "anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral",
    "contempt", "unknown", "NF",
)  # fmt: skip
VOTES_URL = "https://github.com/microsoft/FERPlus (fer2013new.csv)"


def find_votes(setting: str, data_path: Path) -> Path | None:
    """The FER+ votes file that VOTES names ("auto": fer2013new.csv beside the data,
    where it is there), or None: train on FER-2013's own labels."""
    if setting == "none":
        return None
    if setting == "auto":
        path = data_path.parent / "fer2013new.csv"
        if path.is_file() and not data_path.is_dir():
            return path
        print(
            f"no FER+ votes at {path}: training on FER-2013's own labels (the classic recipe); "
            "data/README.md says where to get them"
        )
        return None
    path = Path(setting)
    if not path.is_file():
        raise UserError(
            f"FER+ votes file {path} not found: get fer2013new.csv from {VOTES_URL}, "
            "or train on FER-2013's own labels with --votes none"
        )
    return path


def read_votes(path: Path, data_path: Path, table: pd.DataFrame) -> np.ndarray:
    """The (N, 10) vote counts of a FER+ file that pairs row by row with the FER-2013
    CSV `table`: checked on the row count and on every row's Usage before any work."""
    try:
        votes = pd.read_csv(path, keep_default_na=False)
    except Exception as error:
        raise UserError(f"cannot read FER+ votes {path} as a CSV file: {error}") from None
    missing = [name for name in ("Usage", *VOTE_COLUMNS) if name not in votes.columns]
    if missing:
        raise UserError(
            f"{path} has no {', '.join(missing)} column: not a FER+ votes file "
            f"(fer2013new.csv, {VOTES_URL})"
        )
    if len(votes) != len(table):
        raise UserError(
            f"{path} has {len(votes)} rows and {data_path} {len(table)}: the votes do not "
            "belong to this copy of FER-2013"
        )
    if "Usage" not in table:
        raise UserError(f"{data_path} has no Usage column to pair with the FER+ votes")
    differ = np.flatnonzero(votes["Usage"].to_numpy() != table["Usage"].to_numpy())
    if len(differ):
        raise UserError(
            f"{path} does not pair with {data_path} row by row: their Usage differs on "
            f"{len(differ)} rows (first: line {differ[0] + 2}); Microsoft's file follows "
            "the Kaggle CSV's row order"
        )
    columns = votes[list(VOTE_COLUMNS)]
    counts = columns.apply(pd.to_numeric, errors="coerce").to_numpy(np.float32, copy=True)
    # FER+ has no face for a few rows (175 of ours): no votes at all, trained on by no one
    unlabelled = (columns.astype(str) == "").all(axis=1).to_numpy()
    counts[unlabelled] = 0
    bad = np.flatnonzero(~np.all((counts >= 0) & (counts <= 10), axis=1))
    if len(bad):
        raise UserError(
            f"{path} has {len(bad)} rows whose votes are not counts from 0 to 10 "
            f"(first: line {bad[0] + 2})"
        )
    return counts


def counted_votes(votes: np.ndarray) -> np.ndarray:
    """The votes with every single vote dropped: one tagger alone is taken for an
    outlier (the FER+ paper's rule, and microsoft/FERPlus's code)."""
    return np.where(votes > 1, votes, 0).astype(np.float32)


def majority_labels(votes: np.ndarray) -> np.ndarray:
    """Each face's FER+ majority label, the usual test protocol: after dropping single
    votes, the class with more than half of the votes; -1 where there is none, or
    where it is contempt, unknown or not a face (no emotion of our 7)."""
    counted = counted_votes(votes)
    top = counted.argmax(axis=1)
    has_majority = counted.max(axis=1) > counted.sum(axis=1) / 2
    return np.where(has_majority & (top < len(fer.EMOTIONS)), top, -1)


def vote_targets(
    votes: np.ndarray, labels: np.ndarray, original_weight: float = 0.0, majority_only: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Training targets from the votes: (targets (N, 7) that sum to 1, kept (N,) bool).

    A target is the face's vote distribution over our 7 emotions (single votes
    dropped), mixed with `original_weight` of its FER-2013 one-hot label. A face is
    kept where its most voted class is one of the 7 (microsoft/FERPlus drops faces
    voted unknown or not a face; contempt is no class here), or with
    `majority_only` where it has a majority label.
    """
    counted = counted_votes(votes)
    emotions = counted[:, : len(fer.EMOTIONS)]
    total = emotions.sum(axis=1, keepdims=True)
    kept = (counted.argmax(axis=1) < len(fer.EMOTIONS)) & (total[:, 0] > 0)
    if majority_only:
        kept &= majority_labels(votes) >= 0
    distribution = emotions / np.maximum(total, 1)
    one_hot = np.eye(len(fer.EMOTIONS), dtype=np.float32)[labels]
    targets = (1 - original_weight) * distribution + original_weight * one_hot
    return targets.astype(np.float32), kept


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
