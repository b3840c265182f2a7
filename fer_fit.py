"""What `model.fit` runs with: the batches (uint8 faces in memory, floats only a
batch at a time), the checkpoint after every epoch (into a fer_runs.Run) and Ctrl-C.

A module of its own because it imports Keras (seconds): the scripts' `--help`, their
one-line errors and the demo start without it."""

from __future__ import annotations

import math
import signal
import time

import numpy as np

import fer_common as fer
from fer_runs import Run


class FaceBatches(fer.keras.utils.PyDataset):
    """(uint8 faces, one-hot labels or target distributions) batches cut from the
    arrays as `model.fit` asks for them: a big data set is held as uint8 (2.3 KB a
    face), never as floats.

    With a `seed` (training): an endless stream of full batches, reshuffled every
    epoch in an order that depends on the seed and the epoch only, so a resumed run
    gets the batches an uninterrupted one would; an epoch's last batch is topped up
    with faces from the epoch's start. `model.fit(steps_per_epoch=len(batches))`
    cuts the stream into epochs. Without a seed (validation): every face once, in
    order. `split`: every batch must split evenly over that many devices, so the
    last validation batch is padded with faces of weight 0.
    """

    def __init__(
        self,
        faces: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        seed: int | None = None,
        first_epoch: int = 0,
        split: int = 1,
    ):
        super().__init__()
        self.faces, self.labels, self.batch_size = faces, labels, batch_size
        self.seed, self.first_epoch, self.split = seed, first_epoch, split
        self.epoch_order = (None, None)

    def __len__(self) -> int:
        """Batches per epoch."""
        return math.ceil(len(self.labels) / self.batch_size)

    @property
    def num_batches(self) -> int | None:
        return None if self.seed is not None else len(self)  # None: endless

    def __getitem__(self, index: int) -> tuple[np.ndarray, ...]:
        if self.seed is None:
            pick = np.arange(index * self.batch_size, (index + 1) * self.batch_size)
            pick = pick[pick < len(self.labels)]
            if self.split == 1:
                return self.faces[pick], self.one_hot(pick)
            weights = np.ones(len(pick) + -len(pick) % self.split, "float32")
            weights[len(pick) :] = 0
            pick = np.resize(pick, len(weights))  # the padding repeats the first faces
            return self.faces[pick], self.one_hot(pick), weights
        epoch, step = divmod(index, len(self))
        steps = np.arange(step * self.batch_size, (step + 1) * self.batch_size)
        pick = self.order(self.first_epoch + epoch).take(steps, mode="wrap")
        return self.faces[pick], self.one_hot(pick)

    def order(self, epoch: int) -> np.ndarray:
        """The faces' order in `epoch`: the same for the same seed and epoch."""
        if self.epoch_order[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self.epoch_order = (epoch, rng.permutation(len(self.labels)))
        return self.epoch_order[1]

    def one_hot(self, pick: np.ndarray) -> np.ndarray:
        """The targets of the picked faces: one-hot labels, or the given distributions."""
        if self.labels.ndim == 2:
            return self.labels[pick]
        return np.eye(len(fer.EMOTIONS), dtype="float32")[self.labels[pick]]


class Checkpoint(fer.keras.callbacks.Callback):
    """Restores the run's last checkpoint when `fit` begins; after every epoch logs
    it, keeps it if its validation accuracy is the best yet, checkpoints the run, and
    stops the training after `patience` epochs without a better one."""

    def __init__(self, run: Run, patience: int, plateau=None):
        super().__init__()
        self.run, self.patience, self.plateau = run, patience, plateau

    def on_train_begin(self, logs=None):
        self.run.restore(self.model, self.plateau)  # after the plateau callback resets

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = {name: float(value) for name, value in sorted((logs or {}).items())}
        logs.setdefault("learning_rate", float(np.asarray(self.model.optimizer.learning_rate)))
        seconds = time.perf_counter() - self.started
        self.run.save_epoch(self.model, epoch, logs, seconds, self.plateau)
        if self.run.epoch - self.run.state["best_epoch"] >= self.patience:
            self.model.stop_training = True


class CtrlC(fer.keras.callbacks.Callback):
    """Ctrl-C during `fit` raises KeyboardInterrupt at the next batch's end. Raised
    where the signal lands, it can land inside the input pipeline (tf.data runs the
    batches' Python code), which swallows it and goes on training. A second Ctrl-C
    interrupts at once. Use as a context manager around `fit`."""

    def __enter__(self) -> CtrlC:
        self.pressed = False
        self.previous = signal.signal(signal.SIGINT, self.press)
        return self

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGINT, self.previous)

    def press(self, signum, frame) -> None:
        self.pressed = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def on_train_batch_end(self, batch, logs=None):
        if self.pressed:
            raise KeyboardInterrupt

    on_test_batch_end = on_train_batch_end
