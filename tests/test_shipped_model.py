"""The model in models/ scores what models/metrics.json and the README say."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import FER2013, ROOT

import emotion_recognition as er
import fer_common as fer

METRICS = json.loads((ROOT / "models" / "metrics.json").read_text())


def test_metrics_describe_the_shipped_model():
    assert METRICS["parameters"] == fer.load_model(ROOT / "models").count_params()
    assert f"{100 * METRICS['test_accuracy']:.1f} %" in (ROOT / "README.md").read_text()


@pytest.mark.skipif(not FER2013.is_file(), reason=f"FER-2013 not found at {FER2013} "
                    "(set FER2013_PATH to run this check)")  # fmt: skip
def test_shipped_model_scores_its_recorded_privatetest_accuracy():
    data = er.load_data(FER2013, er.parse_args([]))
    faces, labels = data["test"]
    model = fer.load_model(ROOT / "models")
    predicted = model.predict(faces, batch_size=256, verbose=0).argmax(axis=1)
    accuracy = float(np.mean(predicted == labels))
    assert accuracy == pytest.approx(METRICS["test_accuracy"], abs=0.005)
    assert len(labels) == 3589  # PrivateTest
