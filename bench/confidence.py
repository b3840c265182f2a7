"""The model's minimum confidence: the top probability below which its label is
wrong more often than right, found on FER-2013's PublicTest faces (where every
post-hoc choice is made) and checked on PrivateTest; right and wrong against the
FER+ taggers' majority (`--labels fer2013`: FER-2013's own labels).

    python -m bench.confidence [--data PATH] [--votes PATH] [--model models/] [--bins 20]

Sorts the faces by the model's top probability (calibrated, as the model ships,
averaged over the demo's test-time views),
cuts them into bins of equal count and prints each bin's confidence range and
accuracy: the reliability table. The threshold is where that accuracy falls
under one half: the boundary under the run of top bins that are each right at
least half the time (fer_calibration.wrong_more_often_below). Training finds the
same value and writes it to metrics.json's `min_confidence`, which the demo uses
(`--min-confidence auto`): this shows the table behind it, and checks it for a
model trained before that. Not a test: run it by hand (a minute on a CPU).
"""

from __future__ import annotations

import argparse

import fer_common as fer
from bench.accuracy import MAJORITY, ORIGINAL, ROOT, add_data_arguments, held_out_faces
from fer_calibration import reliability, wrong_more_often_below


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    parser.add_argument("--model", default=str(ROOT / "models"), help="model folder or file")
    parser.add_argument("--bins", type=int, default=20, help="bins of equal count (~160 faces)")
    parser.add_argument("--labels", choices=("ferplus", "fer2013"), default="ferplus",
                        help="right or wrong: against the FER+ majority or FER-2013's")  # fmt: skip
    args = parser.parse_args()

    data = held_out_faces(args.data, args.votes)
    reference = MAJORITY if args.labels == "ferplus" else ORIGINAL
    model = fer.load_model(args.model)
    found = {}
    for split, name in (("val", "PublicTest"), ("test", "PrivateTest")):
        counted, labels = data[split].truth(reference)
        probabilities = fer.predict(model, data[split].faces[counted])  # as the demo classifies
        found[name] = probabilities.max(axis=1), probabilities.argmax(axis=1) == labels
    confidence, correct = found["PublicTest"]
    print(f"PublicTest, {reference}: {len(correct)} faces, accuracy {correct.mean():.1%}\n")
    print("| confidence | faces | accuracy |\n| --- | --- | --- |")
    for row in reliability(confidence, correct, args.bins):
        print(f"| {row['low']:.2f}-{row['high']:.2f} | {row['faces']} | {row['accuracy']:.0%} |")
    threshold = wrong_more_often_below(confidence, correct, args.bins)
    print(f"\nminimum confidence {threshold:.2f}: below it a label is wrong more often than right.")
    for name, (confidence, correct) in found.items():
        kept = confidence >= threshold
        if kept.any():
            shown, everyone = correct[kept].mean(), correct.mean()
            print(f"{name}: {1 - kept.mean():.0%} of the faces are 'uncertain'; the others are "
                  f"right {shown:.1%} of the time (all: {everyone:.1%}).")  # fmt: skip


if __name__ == "__main__":
    fer.run_cli(main)
