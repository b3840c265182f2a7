"""A study's speed: one worker against several, on the same folder of clips.

    python -m bench.study_speed [--clips 6] [--workers 2] [--rounds 1] [--keep DIR]

Makes a folder of 640x480 clips from real photos (bench/fps.py's footage: four
shots cut without warning, a tilting speaker, four people, six small faces, a pair
zooming in; each clip starts at another shot), then runs the study as a user does,
`video_tester.py --source CLIPS --output RESULTS --workers W`, with 1 worker and with
--workers, in turn (--rounds times, fresh results each time: nothing is resumed).
Prints a Markdown table: the whole command's seconds (start-up, model loads,
labelling, table and report), the labelling's own (as the study prints it), frames
per second and the speed-up over one worker; and whether every output file of the
runs is identical. --keep DIR keeps the clips and the results there.
Not a test: run it by hand, on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fer_common as fer
from bench.accuracy import print_table
from bench.fps import footage, write_clip

ROOT = Path(__file__).resolve().parent.parent


def make_clips(folder: Path, count: int) -> int:
    """`count` clips of the footage, each starting at another shot; their frames."""
    frames, _ = footage()
    shot = len(frames) // 4
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        start = (i % 4) * shot
        write_clip(folder / f"session_{i + 1:02d}.avi", frames[start:] + frames[:start])
    return count * len(frames)


def study(clips: Path, results: Path, workers: int, detector: str) -> tuple[float, float]:
    """Seconds of the whole command, and of the labelling as the study reports it."""
    command = [sys.executable, str(ROOT / "video_tester.py"), "--source", str(clips), "--output",
               str(results), "--workers", str(workers), "--detector", detector]  # fmt: skip
    started = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})  # fmt: skip
    elapsed = time.perf_counter() - started
    if run.returncode != 0:
        raise fer.UserError(f"the study failed: {run.stderr.strip().splitlines()[-1]}")
    labelling = re.search(r"frames in ([\d.]+) s", run.stdout)
    return elapsed, float(labelling.group(1))


def files(results: Path) -> dict[str, bytes]:
    return {p.relative_to(results).as_posix(): p.read_bytes()
            for p in results.rglob("*") if p.is_file()}  # fmt: skip


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--detector", default="haar")
    parser.add_argument("--keep", default="", help="keep the clips and results in this folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.keep or scratch)
        frames = make_clips(folder / "clips", args.clips)
        seconds: dict[int, list[tuple[float, float]]] = {1: [], args.workers: []}
        outputs = {}
        for round_ in range(args.rounds):
            for workers in seconds:  # in turn: the machine's speed drifts
                results = folder / f"results_{workers}_workers_{round_ + 1}"
                seconds[workers].append(study(folder / "clips", results, workers, args.detector))
                outputs[results.name] = files(results)
        base = statistics.median(total for total, _ in seconds[1])
        rows = []
        for workers, runs in seconds.items():
            total = statistics.median(t for t, _ in runs)
            labelling = statistics.median(s for _, s in runs)
            rows.append([str(workers), f"{total:.1f}", f"{labelling:.1f}",
                         f"{frames / labelling:.1f}", f"{base / total:.2f}x"])  # fmt: skip
    print(f"{args.clips} clips, {frames} frames of 640x480, --detector {args.detector}; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"median of {args.rounds} round(s)\n")  # fmt: skip
    print_table(["workers", "command s", "labelling s", "frames/s", "speed-up"], rows)
    first, *others = outputs.values()
    print(f"\nevery output file identical across the runs: {all(o == first for o in others)}")


if __name__ == "__main__":
    fer.run_cli(main)
