"""FER+ votes: paired with FER-2013 row by row or refused in one line, turned into
training targets and majority labels by the FER+ protocol, and trained on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SMALL, assert_one_line_error, run_script, write_fer_csv, write_votes_csv

import emotion_recognition as er
import fer_data

CFG = er.parse_args([])
ANGRY, DISGUST, FEAR, HAPPY, SAD, SURPRISE, NEUTRAL, CONTEMPT, UNKNOWN, NOT_A_FACE = range(10)


def votes_of(**counts: int) -> np.ndarray:
    """One face's 10 vote counts in fer_data.VOTE_COLUMNS order, from names."""
    row = np.zeros(10, np.float32)
    for name, count in counts.items():
        row[globals()[name.upper()]] = count
    return row


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ({"happy": 9, "unknown": 1}, HAPPY),
        ({"sad": 5, "neutral": 4, "fear": 1}, SAD),  # 5 of 9 counted votes: a majority
        ({"sad": 5, "neutral": 5}, -1),  # half is no majority
        # a single vote counts as none: 5 of 8 counted votes
        ({"angry": 5, "disgust": 3, "fear": 1, "surprise": 1}, ANGRY),
        ({"contempt": 6, "angry": 4}, -1),  # not one of the 7 emotions
        ({"unknown": 6, "happy": 4}, -1),
        ({"not_a_face": 10}, -1),
        ({}, -1),  # FER+ has no face for this row
    ],
)
def test_majority_label_follows_the_ferplus_protocol(counts, expected):
    assert fer_data.majority_labels(votes_of(**counts)[None])[0] == expected


def test_targets_are_the_vote_distribution_over_the_seven_emotions():
    votes = np.stack([
        votes_of(happy=6, surprise=3, fear=1),  # the single Fear vote is dropped
        votes_of(sad=4, neutral=4, contempt=2),  # contempt: no class of ours
        votes_of(unknown=6, angry=4),  # most voted "unknown": not trained on
        votes_of(),  # no votes at all
    ])  # fmt: skip
    labels = np.array([HAPPY, NEUTRAL, ANGRY, SAD])
    targets, kept = fer_data.vote_targets(votes, labels)
    assert kept.tolist() == [True, True, False, False]
    np.testing.assert_allclose(targets[0], np.eye(7)[HAPPY] * 6 / 9 + np.eye(7)[SURPRISE] * 3 / 9)
    np.testing.assert_allclose(targets[1], (np.eye(7)[SAD] + np.eye(7)[NEUTRAL]) / 2)
    mixed, _ = fer_data.vote_targets(votes, labels, original_weight=0.25)
    np.testing.assert_allclose(mixed[1], 0.75 * targets[1] + 0.25 * np.eye(7)[NEUTRAL])
    np.testing.assert_allclose(mixed[kept].sum(axis=1), 1, atol=1e-6)
    _, majority_kept = fer_data.vote_targets(votes, labels, majority_only=True)
    assert majority_kept.tolist() == [True, False, False, False]  # 4 of 8 is no majority


def test_votes_load_with_their_csv_rows(tmp_path: Path):
    fer_csv = write_fer_csv(tmp_path / "fer2013.csv")
    votes_csv = write_votes_csv(tmp_path / "fer2013new.csv", fer_csv)
    data = fer_data.load_data(fer_csv, CFG, votes_csv)
    for split, (faces, labels, votes) in data.items():
        assert len(votes) == len(labels) == len(faces)
        # the synthetic taggers agree with the label: the majority is the label
        np.testing.assert_array_equal(fer_data.majority_labels(votes), labels, err_msg=split)
    assert fer_data.find_votes("auto", fer_csv) == votes_csv  # beside the data
    assert fer_data.find_votes("none", fer_csv) is None


def test_without_a_votes_file_auto_trains_on_the_original_labels(tmp_path: Path, capsys):
    fer_csv = write_fer_csv(tmp_path / "fer2013.csv")
    assert fer_data.find_votes("auto", fer_csv) is None
    assert "FER-2013's own labels" in capsys.readouterr().out


def break_votes(path: Path, how: str) -> None:
    table = pd.read_csv(path)
    if how == "rows":
        table = table.iloc[:-1]
    elif how == "order":  # another copy's row order: Usage differs somewhere
        table = table.iloc[::-1]
    elif how == "column":
        table = table.drop(columns="fear")
    elif how == "count":
        table.loc[4, "happiness"] = 12
    table.to_csv(path, index=False)


@pytest.mark.parametrize(
    ("how", "words"),
    [
        ("rows", ["139 rows", "140"]),
        ("order", ["does not pair", "usage", "line 2"]),
        ("column", ["no fear column", "fer2013new.csv"]),
        ("count", ["not counts", "line 6"]),
    ],
)
def test_votes_that_do_not_pair_are_refused_in_one_line(tmp_path: Path, how, words):
    fer_csv = write_fer_csv(tmp_path / "fer2013.csv")
    votes_csv = write_votes_csv(tmp_path / "votes.csv", fer_csv)
    break_votes(votes_csv, how)
    result = run_script("emotion_recognition.py", "--data", str(fer_csv), "--votes",
                        str(votes_csv), "--runs", str(tmp_path / "runs"))  # fmt: skip
    assert_one_line_error(result, *words)
    assert not (tmp_path / "runs").exists()  # refused before any work


def test_a_missing_votes_file_is_one_line(tmp_path: Path):
    fer_csv = write_fer_csv(tmp_path / "fer2013.csv")
    result = run_script("emotion_recognition.py", "--data", str(fer_csv), "--votes",
                        str(tmp_path / "nowhere.csv"))  # fmt: skip
    assert_one_line_error(result, "not found", "--votes none")


def test_training_on_votes_reports_both_measures(tmp_path: Path):
    fer_csv = write_fer_csv(tmp_path / "fer2013.csv", per_class=40)
    write_votes_csv(tmp_path / "fer2013new.csv", fer_csv, unknown_every=5)  # found: beside
    models = tmp_path / "models"
    result = run_script(
        "emotion_recognition.py", "--data", str(fer_csv), "--out-dir", str(models),
        "--runs", str(tmp_path / "runs"), "--epochs", "8", "--learning-rate", "0.003", *SMALL,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((models / "metrics.json").read_text())
    assert metrics["labels"] == "FER+ majority"
    private = pd.read_csv(fer_csv).Usage == "PrivateTest"
    # every fifth face is voted "unknown": out of the majority's test faces
    assert metrics["test_faces"] == sum(private & (np.arange(len(private)) % 5 != 0))
    assert np.array(metrics["confusion_matrix"]).sum() == metrics["test_faces"]
    assert metrics["test_accuracy"] > 0.5  # chance: 1/7
    for key in ("test_accuracy_fer2013", "test_accuracy_fer2013_one_view", "val_accuracy_fer2013"):
        assert 0.3 < metrics[key] <= 1, key  # the taggers agree with the labels here
    assert "FER-2013's own labels" in result.stdout


def test_votes_with_image_folders_are_refused(tmp_path: Path):
    fer_csv = write_fer_csv(tmp_path / "fer2013.csv")
    votes_csv = write_votes_csv(tmp_path / "fer2013new.csv", fer_csv)
    (tmp_path / "folders" / "train").mkdir(parents=True)
    with pytest.raises(fer_data.UserError, match="not with image folders"):
        fer_data.load_data(tmp_path / "folders", CFG, votes_csv)
