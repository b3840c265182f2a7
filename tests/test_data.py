"""Both data layouts, and every kind of bad data, give faces or one clear error."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import assert_one_line_error, run_script, synthetic_faces, write_fer_csv

import emotion_recognition as er
import fer_data
import fer_fit
from fer_common import EMOTIONS, UserError

CFG = er.parse_args([])


def load(path: Path) -> dict:
    return fer_data.load_data(fer_data.find_data(path), CFG)


def test_csv_splits_follow_usage(fer_csv: Path):
    table = pd.read_csv(fer_csv)
    data = load(fer_csv)
    for usage, split in fer_data.CSV_SPLITS.items():
        faces, labels = data[split]
        expected = table[table.Usage == usage]
        assert faces.shape == (len(expected), 48, 48, 1) and faces.dtype == np.uint8
        assert labels.tolist() == expected.emotion.tolist()
        first = np.array(expected.pixels.iloc[0].split(), dtype=np.uint8).reshape(48, 48)
        np.testing.assert_array_equal(faces[0, :, :, 0], first)


def test_csv_without_usage_gets_a_seeded_stratified_split(tmp_path: Path):
    path = write_fer_csv(tmp_path / "plain.csv", per_class=30, usage=False)
    data = load(path)
    sizes = {split: len(labels) for split, (_, labels) in data.items()}
    assert sizes == {"train": 168, "val": 21, "test": 21}
    for _, labels in data.values():
        assert set(labels.tolist()) == set(range(7))  # every class in every split
    again = load(path)
    np.testing.assert_array_equal(again["test"][1], data["test"][1])


@pytest.mark.parametrize("suffix", [".gz", ".xz"])
def test_compressed_csv_is_found_beside_the_default_name(tmp_path: Path, fer_csv: Path, suffix):
    compressed = tmp_path / "data" / f"fer2013.csv{suffix}"
    compressed.parent.mkdir()
    pd.read_csv(fer_csv).to_csv(compressed, index=False)
    data = load(tmp_path / "data" / "fer2013.csv")  # the .csv itself is absent
    assert len(data["train"][1]) == len(load(fer_csv)["train"][1])


def write_image_folders(root: Path, layout: dict[str, str], per_class: int = 4) -> dict[str, int]:
    """Image folders of synthetic faces in assorted sizes and colours; returns counts."""
    faces, labels = synthetic_faces(per_class)
    counts = {}
    for i, (face, label) in enumerate(zip(faces, labels)):
        folder, prefix = list(layout.items())[i % len(layout)]
        counts[folder + prefix] = counts.get(folder + prefix, 0) + 1
        image = cv2.resize(face, (96, 96)) if i % 2 else cv2.cvtColor(face, cv2.COLOR_GRAY2BGR)
        class_dir = root / folder / EMOTIONS[label].lower()
        class_dir.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(class_dir / f"{prefix}{i:05d}.{'png' if i % 3 else 'jpg'}"), image)
    return counts


def test_image_folders_in_fer2013_layout(tmp_path: Path):
    counts = write_image_folders(
        tmp_path,
        {"train": "Training_", "test": "PublicTest_", "test/": "PrivateTest_"},
    )
    data = load(tmp_path)
    assert len(data["train"][1]) == counts["trainTraining_"]
    assert len(data["val"][1]) == counts["testPublicTest_"]
    assert len(data["test"][1]) == counts["test/PrivateTest_"]
    faces, labels = data["train"]
    assert faces.shape[1:] == (48, 48, 1) and faces.dtype == np.uint8
    assert set(labels.tolist()) <= set(range(7))


def test_image_folders_with_validation_folder_and_fixed_label_order(tmp_path: Path):
    write_image_folders(tmp_path, {"train": "a", "test": "c"})
    # Only "sad" faces in validation/: they must get FER-2013's label 4, not the
    # alphabetical index (5) a default LabelEncoder would give.
    sad = tmp_path / "validation" / "sad"
    sad.mkdir(parents=True)
    for i, face in enumerate(synthetic_faces(per_class=1)[0][:3]):
        cv2.imwrite(str(sad / f"{i}.png"), face)
    labels = load(tmp_path)["val"][1]
    assert labels.tolist() == [EMOTIONS.index("Sad")] * 3 == [4] * 3


def test_image_folders_without_validation_split_the_training_set(tmp_path: Path):
    counts = write_image_folders(tmp_path, {"train": "x", "test": "y"}, per_class=20)
    data = load(tmp_path)
    assert len(data["test"][1]) == counts["testy"]
    assert len(data["train"][1]) + len(data["val"][1]) == counts["trainx"]


# --------------------------------------------------------------------------
# Bad data: refused with one line (CLI), or a few bad rows skipped with a warning
# --------------------------------------------------------------------------


def test_missing_data_file_says_where_to_get_fer2013(tmp_path: Path):
    result = run_script("emotion_recognition.py", "--data", str(tmp_path / "fer2013.csv"))
    assert_one_line_error(result, "not found", "kaggle", "data/")


def test_csv_without_required_columns(tmp_path: Path):
    path = tmp_path / "wrong.csv"
    pd.DataFrame({"label": [1, 2], "image": ["1 2", "3 4"]}).to_csv(path, index=False)
    result = run_script("emotion_recognition.py", "--data", str(path))
    assert_one_line_error(result, "emotion", "pixels", "column")


def corrupt_rows(path: Path, rows: list[int], how: str) -> None:
    table = pd.read_csv(path, dtype=str)
    for row in rows:
        if how == "short":
            table.loc[row, "pixels"] = " ".join(table.loc[row, "pixels"].split()[:100])
        elif how == "text":
            table.loc[row, "pixels"] = table.loc[row, "pixels"].replace("1", "x", 1)
        elif how == "label":
            table.loc[row, "emotion"] = "9"
    table.to_csv(path, index=False)


@pytest.mark.parametrize("how", ["short", "text", "label"])
def test_many_bad_rows_are_refused_with_their_row_numbers(fer_csv: Path, how: str):
    corrupt_rows(fer_csv, [3, 10, 20], how)
    result = run_script("emotion_recognition.py", "--data", str(fer_csv))
    # CSV line numbers: the header is line 1, so data row 3 is line 5.
    assert_one_line_error(result, "3 of 140 rows", "5, 12, 22")


def test_a_few_bad_rows_are_skipped_with_a_warning(tmp_path: Path, capsys):
    path = write_fer_csv(tmp_path / "big.csv", per_class=30)
    corrupt_rows(path, [7], "short")
    data = load(path)
    assert sum(len(labels) for _, labels in data.values()) == 209
    assert "warning: 1 of 210 rows" in capsys.readouterr().out


def test_empty_split_is_refused(fer_csv: Path):
    table = pd.read_csv(fer_csv)
    table[table.Usage != "PrivateTest"].to_csv(fer_csv, index=False)
    result = run_script("emotion_recognition.py", "--data", str(fer_csv))
    assert_one_line_error(result, "test split", "empty")


def test_unreadable_image_in_a_folder(tmp_path: Path):
    write_image_folders(tmp_path, {"train": "a", "test": "b"})
    broken = tmp_path / "train" / "happy" / "broken.jpg"
    broken.parent.mkdir(exist_ok=True)
    broken.write_bytes(b"not a jpeg at all")
    with pytest.raises(UserError, match=r"broken\.jpg"):
        load(tmp_path)


def test_unknown_emotion_folder(tmp_path: Path):
    write_image_folders(tmp_path, {"train": "a", "test": "b"})
    (tmp_path / "train" / "bored").mkdir()
    with pytest.raises(UserError, match="unknown emotion folder"):
        load(tmp_path)


# --------------------------------------------------------------------------
# Processed copies of FER-2013: a warning at load time
# --------------------------------------------------------------------------


def transform_training_faces(path: Path, transform) -> None:
    table = pd.read_csv(path)
    for row in np.flatnonzero(table.Usage == "Training"):
        face = np.array(table.pixels[row].split(), np.float32).reshape(48, 48)
        face = np.clip(np.round(transform(face)), 0, 255).astype(np.uint8)
        table.loc[row, "pixels"] = " ".join(map(str, face.ravel()))
    table.to_csv(path, index=False)


def warnings_of(capsys) -> list[str]:
    return [line for line in capsys.readouterr().out.splitlines() if "processed copy" in line]


def test_untouched_data_gives_no_warning(fer_csv: Path, capsys):
    load(fer_csv)
    assert warnings_of(capsys) == []


@pytest.mark.parametrize(
    ("transform", "words"),
    [
        # what public copies of FER-2013 do to train/: a Gaussian blur of sigma ~3.5 px
        (lambda face: cv2.GaussianBlur(face, (0, 0), 3.5), "much blurrier"),
        (lambda face: face * 0.4 + 140, "brighter"),
    ],
)
def test_processed_training_faces_are_warned_about(fer_csv: Path, capsys, transform, words):
    transform_training_faces(fer_csv, transform)
    load(fer_csv)
    warnings = warnings_of(capsys)
    assert len(warnings) == 1 and warnings[0].startswith("warning: ")
    assert words in warnings[0] and "data/README.md" in warnings[0]


# --------------------------------------------------------------------------
# Batches for training: from uint8 arrays, reproducible by epoch
# --------------------------------------------------------------------------


def test_training_batches_cover_every_face_each_epoch_in_an_order_set_by_the_epoch():
    faces, labels = synthetic_faces(per_class=10, seed=2)  # 70 faces: batches of 32
    faces = faces[..., None]
    batches = fer_fit.FaceBatches(faces, labels, 32, seed=5)
    assert len(batches) == 3 and batches.num_batches is None  # endless: fit cuts epochs

    def epoch(stream: fer_fit.FaceBatches, number: int) -> tuple[np.ndarray, np.ndarray]:
        parts = [stream[number * len(stream) + step] for step in range(len(stream))]
        return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])

    first, second = epoch(batches, 0), epoch(batches, 1)
    for x, y in (first, second):
        assert x.dtype == np.uint8 and x.shape == (96, 48, 48, 1)  # full batches only
        assert y.dtype == np.float32 and y.shape == (96, 7)
        # every face once, then the last batch topped up with the epoch's first faces
        seen = {x[i].tobytes(): y[i].argmax() for i in range(70)}
        assert seen == {faces[i].tobytes(): labels[i] for i in range(70)}
        np.testing.assert_array_equal(x[70:], x[:26])
    assert not np.array_equal(first[0], second[0])  # reshuffled
    resumed = fer_fit.FaceBatches(faces, labels, 32, seed=5, first_epoch=1)
    np.testing.assert_array_equal(epoch(resumed, 0)[0], second[0])  # as if never stopped


@pytest.mark.parametrize("split", [1, 2, 3])
def test_validation_batches_give_every_face_once_in_even_shares(split: int):
    faces, labels = synthetic_faces(per_class=5, seed=3)  # 35 faces
    batches = fer_fit.FaceBatches(faces[..., None], labels, 16, split=split)
    parts = [batches[i] for i in range(batches.num_batches)]
    assert all(len(part[0]) % split == 0 for part in parts)
    if split == 1:  # as they are: no weights
        assert all(len(part) == 2 for part in parts)
        weights = np.ones(35)
    else:  # padded with faces of weight 0
        weights = np.concatenate([part[2] for part in parts])
    x = np.concatenate([part[0] for part in parts])[weights == 1]
    y = np.concatenate([part[1] for part in parts])[weights == 1]
    np.testing.assert_array_equal(x[..., 0], faces)
    np.testing.assert_array_equal(y.argmax(axis=1), labels)
