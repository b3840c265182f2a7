"""The command line of both scripts: every option explains itself, and a setting
that cannot work is refused when the line is parsed, not after a training run."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
from conftest import ROOT, assert_one_line_error, run_script

import emotion_recognition as er
import fer_common as fer
import video_tester as vt


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [action for action in parser._actions if action.dest != "help"]


def demo_parser() -> argparse.ArgumentParser:
    return fer.settings_parser(vt.SETTINGS, vt.__doc__, [vt.__file__], vt.ACCEPTS)


@pytest.mark.parametrize("parser", [er.make_parser, demo_parser], ids=["training", "demo"])
def test_every_option_has_help_text(parser):
    for action in options(parser()):
        text = (action.help or "").split("(default:")[0].strip()
        assert len(text) > 10, f"{action.option_strings[0]} has no help text"


def test_only_the_settings_at_the_top_become_options():
    flags = {action.dest for action in options(er.make_parser())}
    assert flags == {name.lower() for name in er.SETTINGS} | {"evaluate", "export", "resume"}
    flags = {action.dest for action in options(demo_parser())}
    assert flags == {name.lower() for name in vt.SETTINGS}
    assert "uncertain" not in flags  # an imported constant, not a setting


def test_help_comes_from_the_comment_beside_or_above_the_setting():
    source = """
# The first group.

ALPHA = 1  # the alpha
# a comment above,
# on two lines
BETA = "x"
GAMMA = 3
"""
    assert fer.setting_comments(source) == {
        "ALPHA": "the alpha",
        "BETA": "a comment above, on two lines",
        "GAMMA": "",
    }


@pytest.mark.parametrize(
    ("parse_args", "flag", "value"),
    [
        (er.parse_args, "--lr-schedule", "cosin"),  # once trained at a constant rate
        (er.parse_args, "--prior-correction", "x"),  # once a traceback after the training
        (er.parse_args, "--precision", "bf16"),
        (er.parse_args, "--preset", "slow"),
        (er.parse_args, "--epochs", "0"),
        (er.parse_args, "--label-smoothing", "1.5"),
        (er.parse_args, "--crop", "45"),
        (vt.parse_args, "--detector", "yunett"),
        (vt.parse_args, "--views", "two"),
        (vt.parse_args, "--detect-every", "0"),
        (vt.parse_args, "--smoothing", "1"),
        (vt.parse_args, "--workers", "-1"),
        (vt.parse_args, "--min-confidence", "high"),
    ],
)
def test_a_setting_that_cannot_work_is_refused_at_once(parse_args, flag, value, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_args([flag, value])
    assert exit_.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert flag in error and repr(value) in error, error


def test_a_typo_on_the_command_line_is_one_error_line():
    result = run_script("video_tester.py", "--detector", "yunett", "--no-display")
    assert_one_line_error(result, "--detector", "invalid choice", "'yunett'")
    assert result.returncode == 2


def test_auto_or_a_number():
    cfg = er.parse_args(["--prior-correction", "0.5"])
    assert cfg.prior_correction == 0.5
    assert er.parse_args([]).prior_correction == "auto"


@pytest.mark.parametrize(
    ("script", "typed", "meant"),
    [("emotion_recognition.py", "--epohcs", "--epochs"),
     ("video_tester.py", "--detecter", "--detector")],
)  # fmt: skip
def test_a_misspelt_option_is_answered_with_the_closest_real_one(script, typed, meant):
    result = run_script(script, typed, "3")
    assert_one_line_error(result, f"unrecognized arguments: {typed} 3", f"did you mean {meant}?")


@pytest.mark.parametrize("script", ["emotion_recognition.py", "video_tester.py", "web_demo.py"])
def test_help_imports_neither_keras_nor_gradio(script):
    """Keras (TensorFlow) and Gradio take seconds to import: --help needs neither."""
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['{script}', '--help']\n"
        "try:\n"
        f"    runpy.run_path('{script}', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print([m for m in ('keras', 'tensorflow', 'gradio') if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout and result.stdout.splitlines()[-1] == "[]"


def test_no_suggestion_for_what_is_nothing_like_an_option():
    parser = er.make_parser()
    assert parser.did_you_mean("unrecognized arguments: --zzzzzz") == ""
    assert parser.did_you_mean("argument --epochs: invalid whole number") == ""
