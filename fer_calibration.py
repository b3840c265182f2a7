"""Calibration: two fixes of a trained model's output layer, chosen on the validation
faces as the demo sees them (its test-time views, averaged), and the measure of how
well its confidences match its accuracy.

- the prior correction: rare emotions are rarely predicted (Disgust is 1.5 % of the
  training faces); subtracting tau * log(class share) from the logits undoes that
  (logit adjustment, Menon et al., 2021), tau chosen for validation macro-F1;
- temperature scaling (Guo et al., 2017): one divisor of the logits, fitted by
  validation log-loss, so that a face labelled with 80 % confidence is right about
  80 % of the time; it never changes the predicted emotion;
- the minimum confidence: the top probability under which the calibrated model's
  labels are wrong more often than right on the validation faces; the demo shows
  such a face as "uncertain" (metrics.json carries it with the model).
"""

from __future__ import annotations

import numpy as np

import fer_common as fer

PRIOR_CORRECTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)  # the values "auto" chooses from


def calibrate(
    model, data: dict, prior_correction: float | str = "auto", scale_temperature: bool = True
) -> dict:
    """Pick the prior correction ("auto": the best for validation macro-F1) and the
    temperature on data["val"], fold both into the output layer (so every model file
    carries them), and return them. data["train"][1]: the training labels (or targets)."""
    from sklearn.metrics import f1_score

    faces, labels = data["val"]
    log_prob = np.log(fer.predict_views(model, faces) + 1e-12)  # (views, faces, emotions)
    targets = data["train"][1]  # labels, or target distributions (FER+ votes)
    if targets.ndim == 2:
        counts = targets.sum(axis=0)
    else:
        counts = np.bincount(targets, minlength=len(fer.EMOTIONS))
    log_share = np.log(np.maximum(counts, 1) / counts.sum())

    macro_f1 = {
        tau: f1_score(labels, averaged(log_prob - tau * log_share).argmax(axis=1), average="macro")
        for tau in PRIOR_CORRECTIONS
    }
    tau = max(macro_f1, key=macro_f1.get) if prior_correction == "auto" else float(prior_correction)
    print(
        "prior correction -> validation macro-F1: "
        + ", ".join(f"{t:g}: {score:.3f}" for t, score in macro_f1.items())
        + f"; keeping {tau:g}"
    )
    log_prob = log_prob - tau * log_share
    temperature = fit_temperature(log_prob, labels) if scale_temperature else 1.0
    probabilities = averaged(log_prob, temperature)
    min_confidence = wrong_more_often_below(
        probabilities.max(axis=1), probabilities.argmax(axis=1) == labels
    )
    print(f"temperature: {temperature:.3f}; minimum confidence: {min_confidence:.2f}")

    layer = model.get_layer("emotion")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel / temperature, (bias - tau * log_share) / temperature])
    return {
        "prior_correction": tau,
        "temperature": temperature,
        "min_confidence": round(min_confidence, 2),
        "val_macro_f1_by_prior_correction": macro_f1,
    }


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int) -> list[dict]:
    """Per bin of equal count, in rising confidence: its range, size and accuracy."""
    groups = np.array_split(np.argsort(confidence, kind="stable"), bins)
    return [
        {"low": float(confidence[g].min()), "high": float(confidence[g].max()),
         "faces": len(g), "accuracy": float(correct[g].mean())}
        for g in groups if len(g)
    ]  # fmt: skip


def wrong_more_often_below(confidence: np.ndarray, correct: np.ndarray, bins: int = 20) -> float:
    """The confidence below which labels are wrong more often than right: the
    boundary under the run of top bins (of equal count) that are each right at
    least half the time (0 when every bin is, 1 when even the surest is not)."""
    table = reliability(confidence, correct, bins)
    sure = len(table)
    while sure > 0 and table[sure - 1]["accuracy"] >= 0.5:
        sure -= 1
    if sure == len(table):
        return 1.0
    if sure == 0:
        return 0.0
    return (table[sure - 1]["high"] + table[sure]["low"]) / 2


def averaged(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """The probabilities (N, 7) of logits (views, N, 7), averaged over the views."""
    from scipy.special import softmax

    return softmax(logits / temperature, axis=-1).mean(axis=0)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T that minimises the log-loss of the views' softmax(logits / T), averaged."""
    from scipy.optimize import minimize_scalar

    def log_loss(log_t: float) -> float:
        probabilities = averaged(logits, np.exp(log_t))[np.arange(len(labels)), labels]
        return -np.log(probabilities + 1e-12).mean()

    return float(np.exp(minimize_scalar(log_loss, bounds=(-3, 3), method="bounded").x))


def calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error: the gap between confidence and accuracy, averaged
    over equal-width confidence bins weighted by their share of faces."""
    gaps = reliability_bins(probabilities, labels, bins)
    return float(sum(abs(confidence - accuracy) * share for confidence, accuracy, share in gaps))


def reliability_bins(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = 15
) -> list[tuple[float, float, float]]:
    """(mean confidence, accuracy, share of faces) of each equal-width confidence bin
    that holds faces."""
    confidence, correct = probabilities.max(axis=1), probabilities.argmax(axis=1) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    return [
        (confidence[which == b].mean(), correct[which == b].mean(), np.mean(which == b))
        for b in range(bins)
        if np.any(which == b)
    ]


def reliability_diagram(curves: dict[str, np.ndarray], labels: np.ndarray):
    """A figure of accuracy against confidence in 15 equal-width bins, a line per
    model (name: its probabilities of the faces whose true emotions are labels)."""
    import matplotlib.pyplot as plt

    bins = 15
    fig, ax = plt.subplots(figsize=(6, 5.5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfectly calibrated")
    for name, probabilities in curves.items():
        points = [(confidence, accuracy)
                  for confidence, accuracy, share in reliability_bins(probabilities, labels, bins)
                  if round(share * len(labels)) >= 10]  # skip near-empty bins  # fmt: skip
        ece = calibration_error(probabilities, labels, bins)
        ax.plot(*zip(*points), marker="o", label=f"{name} (ECE {ece:.1%})")
    ax.set(xlabel="confidence (top probability)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
    ax.set_title("Test reliability diagram")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    return fig
