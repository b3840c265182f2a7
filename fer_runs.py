"""Training runs that survive a crash: after every epoch the whole training state
goes to a run folder (runs/<date-time>/), and `--resume` goes on from there.

A run folder holds
    state.json             the settings, data checksum and architecture the run began
                           with; the epoch log, the best epoch and its score, the
                           layers' random-number states, the plateau schedule's
                           counters; and the names of the weights files:
    epoch-NNNN.weights.h5  model and optimizer (its moments and step count, so the
                           learning-rate schedule's position) after the last finished
                           epoch, and after the best epoch so far when that is another.

Keras' `BackupAndRestore` restores only the weights, the optimizer and the epoch
number: not the best score and its weights, the early-stopping count, the epoch log
or the augmentation's random state; and it overwrites its files in place. Here each
epoch writes a new weights file and then names it in state.json by an atomic rename,
so a kill at any moment leaves the previous checkpoint whole.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import time
from pathlib import Path

import numpy as np

import fer_common as fer
from fer_common import UserError, atomic_path

STATE = "state.json"


class Run:
    """A run folder and its training state after the last finished epoch."""

    def __init__(self, folder: Path, state: dict):
        self.folder, self.state = folder, state

    @classmethod
    def start(cls, runs: str | Path, settings: dict, data_sha256: str, model) -> Run:
        """A new run folder in `runs`, named by the date and time, at epoch 0."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for number in itertools.count(1):
            folder = Path(runs) / (stamp if number == 1 else f"{stamp}-{number}")
            with contextlib.suppress(FileExistsError):
                folder.mkdir(parents=True)
                break
        state = {
            "settings": settings,
            "data_sha256": data_sha256,
            "architecture": architecture(model),
            "epoch": 0,  # epochs finished
            "weights": None,
            "best_epoch": 0,
            "best_score": None,
            "best_weights": None,
            "log": [],
            "training_seconds": 0.0,
        }
        run = cls(folder, state)
        run.save_state()
        return run

    @classmethod
    def open(cls, which: str, runs: str | Path) -> Run:
        """`which`: "latest" (the run in `runs` that wrote last), a run folder, or
        the name of one in `runs`."""
        if which == "latest":
            states = sorted(Path(runs).glob(f"*/{STATE}"), key=lambda path: path.stat().st_mtime)
            if not states:
                raise UserError(
                    f"no run to resume in {runs}/; start one with `python emotion_recognition.py`"
                )
            folder = states[-1].parent
        else:
            folder = Path(which) if Path(which).is_dir() else Path(runs) / which
        try:
            return cls(folder, json.loads((folder / STATE).read_text()))
        except FileNotFoundError:
            raise UserError(f"no training run at {folder} (it has no {STATE})") from None
        except (OSError, ValueError) as error:
            raise UserError(f"cannot read {folder / STATE}: {fer.first_line(error)}") from None

    @property
    def epoch(self) -> int:
        return self.state["epoch"]

    def check_data(self, data_sha256: str, data_path: Path) -> None:
        if data_sha256 != self.state["data_sha256"]:
            raise UserError(
                f"{self.folder} was trained on other data than {data_path} (SHA-256 "
                f"{self.state['data_sha256'][:12]}..., not {data_sha256[:12]}...): resume "
                "with the same data, or start a new run"
            )

    def check_architecture(self, model) -> None:
        if architecture(model) != self.state["architecture"]:
            raise UserError(
                f"{self.folder} trained another architecture than these settings build: "
                "resume without changing the model's settings, or start a new run"
            )

    def finished(self, epochs: int, patience: int) -> bool:
        """All epochs are done, or early stopping has ended the run."""
        return self.epoch >= epochs or self.epoch - self.state["best_epoch"] >= patience

    def restore(self, model, plateau=None) -> None:
        """Put the last checkpoint into the compiled `model` (and the `plateau`
        callback's counters); nothing before the first epoch has finished."""
        if self.state["weights"] is None:
            return
        self.load_weights(model, self.state["weights"])
        for variable, value in zip(random_states(model), self.state["random_states"]):
            variable.assign(np.asarray(value, dtype=variable.dtype))
        if plateau is not None:  # (a run may go on under another schedule)
            for name, value in self.state.get("plateau", {}).items():
                setattr(plateau, name, value)

    def load_best(self, model) -> None:
        if self.state["best_weights"] is None:
            raise UserError("stopped before the first epoch finished; nothing was saved")
        self.load_weights(model, self.state["best_weights"])

    def load_weights(self, model, name: str) -> None:
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)  # its state is in the file too
        try:
            model.load_weights(self.folder / name)
        except Exception as error:
            raise UserError(f"{self.folder / name} is damaged: {fer.first_line(error)}") from None

    def save_epoch(self, model, epoch: int, logs: dict, seconds: float, plateau=None) -> None:
        """Checkpoint the finished `epoch` (0-based): its weights file first, then
        state.json naming it, by an atomic rename; then drop the files no longer named."""
        name = f"epoch-{epoch + 1:04d}.weights.h5"
        model.save_weights(self.folder / name)
        sync(self.folder / name)
        state = self.state
        state["log"] = [*state["log"], {"epoch": epoch, **logs}]
        state.update(
            epoch=epoch + 1,
            weights=name,
            random_states=[np.asarray(v).tolist() for v in random_states(model)],
            training_seconds=state["training_seconds"] + seconds,
        )
        if state["best_score"] is None or logs["val_accuracy"] > state["best_score"]:
            state.update(best_epoch=epoch + 1, best_score=logs["val_accuracy"], best_weights=name)
        if plateau is not None:
            state["plateau"] = {
                "wait": int(plateau.wait),
                "cooldown_counter": int(plateau.cooldown_counter),
                "best": None if plateau.best is None else float(plateau.best),
            }
        self.save_state()
        keep = {state["weights"], state["best_weights"]}
        for path in self.folder.glob("*.weights.h5"):
            if path.name not in keep:  # older checkpoints, or what a kill left half-written
                path.unlink(missing_ok=True)
        for path in self.folder.glob(f".{Path(STATE).stem}.*"):  # atomic_path's, after a kill
            path.unlink(missing_ok=True)

    def save_state(self) -> None:
        with atomic_path(self.folder / STATE) as tmp:
            tmp.write_text(json.dumps(self.state, indent=1))
            sync(tmp)
        sync(self.folder)  # the rename itself

    def log_table(self):
        """The epoch log as a table, as Keras' CSVLogger writes it."""
        import pandas as pd

        return pd.DataFrame(self.state["log"])


def architecture(model) -> list:
    """The model's layers and their settings, as JSON, without the names Keras
    generates and the compute dtype (the precision may differ between machines)."""
    layers = [
        {"class": type(layer).__name__}
        | {key: value for key, value in layer.get_config().items() if key not in ("name", "dtype")}
        for layer in model.layers
    ]
    return json.loads(json.dumps(layers))


def random_states(model) -> list:
    """The layers' random-number states (augmentation, dropout): not in Keras'
    weights files, yet what makes a resumed run augment as an uninterrupted one."""
    states = []
    for layer in model.layers:
        weights = {id(weight) for weight in layer.weights}
        states += [variable for variable in layer.variables if id(variable) not in weights]
    return states


def sync(path: Path) -> None:
    """Flush a file (or a folder's entries) to the disk: a power cut then cannot
    leave a renamed but empty file."""
    with contextlib.suppress(OSError):  # folders cannot be opened on Windows
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
