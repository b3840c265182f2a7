"""The benchmark scripts are run by hand, rarely: their command lines, and the flags
they pass to the project's scripts, are checked here so that they do not rot."""

from __future__ import annotations

import importlib
import sys

import pytest
from conftest import ROOT

import emotion_recognition as er

BENCHES = sorted(p.stem for p in (ROOT / "bench").glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("name", BENCHES)
def test_every_benchmark_parses_its_command_line(name, monkeypatch, capsys):
    bench = importlib.import_module(f"bench.{name}")
    monkeypatch.setattr(sys, "argv", [f"bench/{name}.py", "--help"])
    with pytest.raises(SystemExit) as exit_:
        bench.main()
    assert exit_.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_train_speed_rows_are_settings_the_trainer_has():
    from bench import train_speed

    for _, flags in train_speed.ROWS.values():
        er.parse_args(flags)  # an unknown or refused flag exits with an error line
