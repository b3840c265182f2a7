"""A study: a folder of recordings in; for each recording, each face's log and its
emotions over time; across them all, one table and one report. Recordings are
labelled side by side, each worker with its own model, on this machine's cores or
on a Ray cluster; a run that stops (Ctrl-C, a crash, a kill) resumes where it stopped.

    python video_tester.py --source recordings/ --output results/       # every core
    python video_tester.py --source recordings/ --output results/ --workers 2 --annotate
    python video_tester.py --source /nfs/recordings/ --output results/ --ray auto

Each recording (a video anywhere in the folder, or an image: a one-frame recording)
gets a folder of results named after it, NAME for NAME.mp4:

    results/NAME/faces.csv      one row per face per frame, as --log writes it
    results/NAME/summary.csv    one row per tracked face: its rows of the study table
    results/NAME/summary.png    each face's emotion over time, and its share of each
    results/NAME/annotated.mp4  with --annotate
    results/NAME/done.json      written last: which recording, model and settings

and the study gets results/study.csv (every recording's summary rows) and
results/report.html (one page: the plots, the table, the settings, the failures).
A recording whose done.json matches its file, the model and the settings is not
labelled again.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import hashlib
import html
import json
import multiprocessing
import os
import queue
import shutil
import signal
import socket
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import cv2
import pandas as pd
from tqdm import tqdm

import fer_common as fer
import fer_faces
import video_tester as vt
from fer_common import UserError

DONE = "done.json"
PARTIAL = ".partial"  # results/.partial/NAME: a recording's outputs until all are written
# Settings that change no recording's results: a run with other values resumes. The
# model and the face detector count by their files' content, not by where they are.
NOT_RESULTS = {"source", "sample", "output", "log", "summary", "explain_dir", "display",
               "workers", "ray", "model", "cascade", "detector_model"}  # fmt: skip
RECORDINGS = fer.VIDEO_SUFFIXES | fer.IMAGE_SUFFIXES  # what a study labels
EMOTIONS = [emotion.lower() for emotion in fer.EMOTIONS]
SHARES = {label: f"share_{label.lower()}" for label in vt.LABELS}  # summary column per label
COLUMNS = ["frames", "seconds", "mostly", *SHARES.values(), *(f"mean_{e}" for e in EMOTIONS)]
# A study names an unreadable video itself, in one line; FFmpeg's own lines are noise.
QUIET_FFMPEG = {"OPENCV_FFMPEG_LOGLEVEL": "-8"}
HEX = {label: "#{2:02x}{1:02x}{0:02x}".format(*bgr) for label, bgr in vt.COLOURS.items()}


@dataclass(frozen=True)
class Recording:
    path: Path  # the video or image
    name: str  # its path inside the study folder: "day1/lecture.mp4"

    @property
    def key(self) -> str:
        """Its results folder inside --output: "day1/lecture"."""
        return Path(self.name).with_suffix("").as_posix()


@dataclass
class Outcome:
    name: str  # the recording's
    frames: int = 0
    error: str = ""  # one line: why the recording could not be labelled


def is_study(source: str) -> bool:
    """Whether `source` is a folder holding videos (a folder of images alone is not)."""
    path = Path(source)
    return path.is_dir() and any(p.suffix.lower() in fer.VIDEO_SUFFIXES for p in path.rglob("*"))


def run(cfg: argparse.Namespace) -> None:
    """Label every recording under cfg.source that is not done yet, then write the
    study's table and report; a recording that failed makes it a UserError."""
    with environment(QUIET_FFMPEG):  # also for the workers, which inherit it
        Study(cfg).run()


# --------------------------------------------------------------------------
# The study, where the command runs
# --------------------------------------------------------------------------


class Study:
    def __init__(self, cfg: argparse.Namespace):
        if not cfg.output or Path(cfg.output).suffix.lower() in RECORDINGS:
            raise UserError(f"{cfg.source} holds videos, a study: name a folder for its "
                            "results with --output FOLDER")  # fmt: skip
        if cfg.log or cfg.summary or cfg.explain_dir:
            raise UserError("a study writes each recording's log and summary into --output: "
                            "leave out --log, --summary and --explain-dir")  # fmt: skip
        if cfg.ray:  # before the model loads: no waiting to be told
            import_ray()
            check_answers(cfg.ray)
        self.folder, self.results = Path(cfg.source), Path(cfg.output)
        self.recordings = {r.name: r for r in find_recordings(self.folder, self.results)}
        self.pipeline = pipeline_for(cfg)  # fails early on a missing model or detector
        self.cfg = with_detector_resolved(cfg, self.pipeline)
        self.stamp = fingerprint(self.cfg)
        self.failed: dict[str, str] = {}
        self.frames = 0  # labelled in this run

    def run(self) -> None:
        records = {name: self.record(r) for name, r in self.recordings.items()}
        todo = [r for r in self.recordings.values() if self.saved_record(r) != records[r.name]]
        print(f"{len(self.recordings)} recordings in {self.folder}: "
              f"{len(self.recordings) - len(todo)} done before with this model and these "
              f"settings, {len(todo)} to label")  # fmt: skip
        partial = self.results / PARTIAL
        shutil.rmtree(partial, ignore_errors=True)  # what a killed run left half-written
        self.records = records
        started = time.perf_counter()
        workers = min(self.cfg.workers or max(1, (os.cpu_count() or 1) // 2), len(todo))
        self.progress = Progress(len(todo), sum(frame_count(r.path) for r in todo))
        try:
            if todo and self.cfg.ray:
                self.label_on_ray(todo)
            elif workers > 1:
                self.label_in_pool(todo, workers)
            else:
                self.label_here(todo)
        except KeyboardInterrupt:
            kept = len(self.progress.done) - len(self.failed)
            tqdm.write(f"stopped: {kept} recordings finished in this run are kept; the same "
                       "command goes on from there")  # fmt: skip
            raise
        finally:
            self.progress.close()
            shutil.rmtree(partial, ignore_errors=True)
        seconds = time.perf_counter() - started
        rate = self.frames / max(seconds, 1e-9)
        print(f"labelled {len(todo) - len(self.failed)} recordings, {self.frames} frames in "
              f"{seconds:.1f} s ({rate:.1f} frames per second)")  # fmt: skip
        self.write_study()
        if self.failed:
            raise UserError(f"{len(self.failed)} of {len(self.recordings)} recordings failed "
                            f"(named above and in {self.results / 'report.html'})")  # fmt: skip

    # ----- one recording's outputs -----

    def record(self, recording: Recording) -> dict:
        """What a recording's done.json says: the file and the model and settings."""
        stat = recording.path.stat()
        return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "fingerprint": self.stamp}

    def saved_record(self, recording: Recording) -> dict | None:
        with contextlib.suppress(OSError, ValueError):
            return json.loads((self.results / recording.key / DONE).read_text())
        return None

    def staging(self, recording: Recording) -> Path:
        return self.results / PARTIAL / recording.key

    def finish(self, outcome: Outcome) -> None:
        """Keep a recording's outputs, or name it as failed; count it as done."""
        recording = self.recordings[outcome.name]
        self.frames += outcome.frames
        if outcome.error:
            self.failed[outcome.name] = outcome.error
            tqdm.write(f"failed: {outcome.name}: {outcome.error}")
            shutil.rmtree(self.staging(recording), ignore_errors=True)
        else:
            publish(self.staging(recording), self.results / recording.key,
                    self.records[outcome.name])  # fmt: skip
        self.progress.finished(outcome)

    # ----- three ways to label them -----

    def label_here(self, todo: list[Recording]) -> None:
        """One after the other in this process (a Ctrl-C stops it where it is)."""
        for recording in todo:
            count = functools.partial(self.progress.frames, recording.name)
            self.finish(label_recording(recording, self.pipeline, self.staging(recording), count))

    def label_in_pool(self, todo: list[Recording], workers: int) -> None:
        """Side by side in `workers` processes, each with its own model and its share of
        the cores; a recording's frames stay in order, in one worker."""
        context = multiprocessing.get_context("spawn")  # TensorFlow is not safe to fork
        ticks, stop = context.Queue(), context.Event()
        threads = max(1, (os.cpu_count() or 1) // workers)
        with (
            environment(thread_settings(threads)),  # what the workers start with
            ProcessPoolExecutor(
                workers, context, initializer=start_worker, initargs=(self.cfg, ticks, stop)
            ) as pool,
        ):
            with ctrl_c_ignored():  # by the workers, which start now: `stop` stops them
                running = {pool.submit(work, r, self.staging(r)) for r in todo}
            try:
                while running:
                    finished, running = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
                    with contextlib.suppress(queue.Empty):
                        while True:
                            self.progress.frames(ticks.get_nowait())
                    for future in finished:
                        self.finish(future.result())
            except BrokenProcessPool:
                raise UserError("a worker process died (out of memory?): run the same "
                                "command again to go on where it stopped") from None  # fmt: skip
            finally:
                stop.set()  # on Ctrl-C or an error: workers end their recordings at once
                pool.shutdown(cancel_futures=True)

    def label_on_ray(self, todo: list[Recording]) -> None:
        """One Ray task per recording on the cluster at --ray; the model and detector
        files go with the tasks, the outputs come back here (the progress bar moves a
        recording at a time)."""
        ray = import_ray()
        settings, files = self.shipment()
        try:
            ray.init(address=self.cfg.ray, logging_level="ERROR", log_to_driver=False,
                     runtime_env={"working_dir": str(vt.HERE), "excludes": ["/*/", "*.xml"],
                                  "env_vars": thread_settings(1) | QUIET_FFMPEG})  # fmt: skip
        except (ConnectionError, ValueError, RuntimeError) as error:
            raise UserError(f"cannot join the Ray cluster at {self.cfg.ray}: "
                            f"{fer.first_line(error)}") from None  # fmt: skip
        running = {}
        try:
            task = ray.remote(num_cpus=1)(label_on_node)
            shipped = ray.put(files)
            running = {task.remote(r, settings, shipped, self.stamp): r for r in todo}
            while running:
                finished, _ = ray.wait(list(running), num_returns=1)
                recording = running.pop(finished[0])
                try:
                    outcome, outputs = ray.get(finished[0])
                except ray.exceptions.RayError as error:  # the task failed, on its node
                    cause = getattr(error, "cause", None) or error  # a task's own exception
                    outcome = Outcome(recording.name, error=f"Ray: {fer.first_line(cause)}")
                    outputs = {}
                self.staging(recording).mkdir(parents=True, exist_ok=True)
                for name, data in outputs.items():
                    (self.staging(recording) / name).write_bytes(data)
                self.finish(outcome)
        finally:
            for ref in running:
                ray.cancel(ref)
            ray.shutdown()

    def shipment(self) -> tuple[argparse.Namespace, dict[str, bytes]]:
        """The settings and files a Ray node labels with: the model's and the face
        detector's files, and settings that name them inside the folder a node
        unpacks them into ("." for a model folder)."""
        files, names = {}, {}
        for setting, paths in result_files(self.cfg).items():
            files.update({path.name: path.read_bytes() for path in paths})
            folder = setting == "model" and Path(self.cfg.model).is_dir()
            names[setting] = "." if folder else paths[0].name
        return argparse.Namespace(**vars(self.cfg) | names), files

    # ----- the study's table and report -----

    def write_study(self) -> None:
        done = [r for r in self.recordings.values() if self.saved_record(r) == self.records[r.name]]
        tables = {r.name: pd.read_csv(self.results / r.key / "summary.csv", index_col="face")
                  for r in done}  # fmt: skip
        with_faces = {name: table for name, table in tables.items() if len(table)}
        study = pd.concat(with_faces, names=["recording", "face"]) if with_faces else None
        with fer.atomic_path(self.results / "study.csv") as tmp:
            if study is None:
                pd.DataFrame(columns=["recording", "face", *COLUMNS]).to_csv(tmp, index=False)
            else:
                study.to_csv(tmp)
        plots = {r.name: self.results / r.key / "summary.png" for r in done}
        page = report(self.folder, study, plots, self.failed, self.settings())
        with fer.atomic_path(self.results / "report.html") as tmp:
            tmp.write_text(page, encoding="utf-8")
        faces = 0 if study is None else len(study)
        print(f"wrote {self.results / 'study.csv'} ({faces} faces in {len(done)} recordings) "
              f"and {self.results / 'report.html'}")  # fmt: skip

    def settings(self) -> dict[str, str]:
        """The model and settings the results come from, for the report."""
        models, (detector,) = result_files(self.cfg).values()
        shown = {"model": f"{self.cfg.model} ({', '.join(path.name for path in models)})",
                 "face detector": f"{self.cfg.detector} ({detector})"}  # fmt: skip
        shown |= {k: str(v) for k, v in sorted(vars(self.cfg).items()) if k not in NOT_RESULTS}
        shown["fingerprint"] = self.stamp[:16]
        return shown


def find_recordings(folder: Path, results: Path) -> list[Recording]:
    """Every video and image under `folder`, by name; hidden files and the results
    folder (if it is inside) are left out."""
    found = []
    for path in sorted(folder.rglob("*")):
        inside = path.relative_to(folder)
        if (
            path.suffix.lower() in RECORDINGS
            and path.is_file()
            and not any(part.startswith(".") for part in inside.parts)
            and not path.resolve().is_relative_to(results.resolve())
        ):
            found.append(Recording(path.resolve(), inside.as_posix()))
    keys = Counter(r.key for r in found)
    if shared := [key for key, count in keys.items() if count > 1]:
        raise UserError(f"two recordings would share the results folder {shared[0]} "
                        "(the same name but for the suffix): rename one")  # fmt: skip
    return found


def frame_count(path: Path) -> int:
    """The frames a video's header promises (0 if unreadable), 1 for an image."""
    if path.suffix.lower() in fer.IMAGE_SUFFIXES:
        return 1
    capture = cv2.VideoCapture(str(path))
    try:
        return max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
    finally:
        capture.release()


def publish(staging: Path, folder: Path, record: dict) -> None:
    """Move a recording's finished outputs into its folder, each by an atomic rename,
    the done record last: a run killed between two renames leaves no record, and the
    next run labels the recording again."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / DONE).unlink(missing_ok=True)
    for pattern in ("summary.png", "annotated.*"):  # outputs an older run may have left
        for old in folder.glob(pattern):
            if not (staging / old.name).exists():
                old.unlink()
    for new in staging.iterdir():
        os.replace(new, folder / new.name)
    with fer.atomic_path(folder / DONE) as tmp:
        tmp.write_text(json.dumps(record))
    staging.rmdir()


class Progress:
    """The study's one progress bar: frames done, their rate and the time left; and
    the recordings done, in front."""

    def __init__(self, recordings: int, frames: int, **options):
        self.bar = tqdm(**{"total": frames, "unit": "frame", "disable": None, **options})
        self.recordings = recordings
        self.counted: Counter[str] = Counter()  # frames counted so far, per recording
        self.done: set[str] = set()
        self.describe()

    def frames(self, name: str, count: int = 1) -> None:
        if name not in self.done:  # a worker's last ticks may come after its result
            self.counted[name] += count
            self.bar.update(count)

    def finished(self, outcome: Outcome) -> None:
        """Count a recording as done, with all its frames (the header's count may be off)."""
        self.bar.update(outcome.frames - self.counted.pop(outcome.name, 0))
        self.done.add(outcome.name)
        self.describe()

    def describe(self) -> None:
        self.bar.set_description(f"{len(self.done)}/{self.recordings} recordings", refresh=False)

    def close(self) -> None:
        self.bar.close()


@contextlib.contextmanager
def environment(variables: dict[str, str]) -> Iterator[None]:
    """These environment variables while the block runs (processes started in it keep them)."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def ctrl_c_ignored() -> Iterator[None]:
    """Processes started in the block ignore Ctrl-C from their first instant (Python
    keeps an inherited SIG_IGN); so does this one, for that moment."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def thread_settings(threads: int) -> dict[str, str]:
    """Environment for a worker process: `threads` threads each for TensorFlow, LiteRT
    (fer.cpu_threads) and OpenCV, so that workers share the cores instead of each
    claiming all of them."""
    count = str(threads)
    return {"TF_NUM_INTRAOP_THREADS": count, "TF_NUM_INTEROP_THREADS": count,
            "OMP_NUM_THREADS": count, "OPENCV_FOR_THREADS_NUM": count}  # fmt: skip


def check_answers(address: str) -> None:
    """Ray retries a wrong HOST:PORT for minutes: knock first ("auto" Ray finds itself)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as error:
        raise UserError(f"nothing answers at {address} (is a Ray head node running "
                        f"there?): {fer.first_line(error)}") from None  # fmt: skip


def import_ray():
    try:
        import ray
    except ImportError:
        raise UserError("--ray needs Ray: pip install ray (without --ray, a study uses "
                        "this machine's cores)") from None  # fmt: skip
    return ray


# --------------------------------------------------------------------------
# What the results come from
# --------------------------------------------------------------------------


def with_detector_resolved(cfg: argparse.Namespace, pipeline: vt.Pipeline) -> argparse.Namespace:
    """cfg with the face detector that "auto" chose named: every worker uses the same."""
    yunet = isinstance(pipeline.detector, fer_faces.YuNetDetector)
    detector_model = str(cfg.detector_model or fer_faces.YUNET_PATH) if yunet else ""
    resolved = {"detector": "yunet" if yunet else "haar", "detector_model": detector_model}
    return argparse.Namespace(**vars(cfg) | resolved)


def result_files(cfg: argparse.Namespace) -> dict[str, list[Path]]:
    """The files the results depend on, by the setting that names them: the model's
    and the face detector's (cfg's detector resolved)."""
    model = Path(cfg.model)
    if model.is_dir():
        names = [fer.MODEL_JSON, fer.MODEL_WEIGHTS]
        names += [fer.MODEL_TFLITE, fer.TWIN_RECORD] * cfg.litert
        models = [model / name for name in names if (model / name).is_file()]
    else:
        models = [model, model.with_suffix(".h5")] if model.suffix == ".json" else [model]
    metrics = (model if model.is_dir() else model.parent) / "metrics.json"
    models += [metrics] * metrics.is_file()  # the model's own minimum confidence
    detector = "detector_model" if cfg.detector == "yunet" else "cascade"
    return {"model": models, detector: [Path(getattr(cfg, detector))]}


def fingerprint(cfg: argparse.Namespace) -> str:
    """SHA-256 of the settings that change results and of the model and detector files."""
    settings = {k: v for k, v in vars(cfg).items() if k not in NOT_RESULTS}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for paths in result_files(cfg).values():
        for path in paths:
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------
# One recording, in whichever process labels it
# --------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _pipeline(settings: tuple) -> vt.Pipeline:
    return vt.Pipeline(argparse.Namespace(**dict(settings)))


def pipeline_for(cfg: argparse.Namespace) -> vt.Pipeline:
    """This process's pipeline for `cfg`: a worker loads its model once, not per recording."""
    return _pipeline(tuple(sorted(vars(cfg).items())))


def label_recording(
    recording: Recording, pipeline: vt.Pipeline, staging: Path, frame_done: Callable[[], None]
) -> Outcome:
    """Label one recording into `staging`: its log, summary and plot (and with
    --annotate the annotated video). `frame_done` is called after each frame. A
    recording that cannot be read is an Outcome with its error: the study goes on."""
    staging.mkdir(parents=True, exist_ok=True)
    frames = 0
    try:
        source = vt.Source(str(recording.path), "")
        with contextlib.ExitStack() as stack:
            stack.callback(source.release)
            log = vt.open_log(str(staging / "faces.csv"), stack)
            output = None
            if pipeline.cfg.annotate:
                suffix = recording.path.suffix if source.is_still else ".mp4"
                output = vt.Output(str(staging / f"annotated{suffix}"), source.fps)
                stack.callback(output.close)
            pipeline.reset()
            labelled = vt.label_frames(source, pipeline, show_fps=False)
            for index, name, seconds, frame, tracks in labelled:
                vt.write_log_rows(log, index, seconds, tracks)
                if output:
                    output.write(name, frame)
                frames += 1
                frame_done()
        write_summary(staging)
    except Exception as error:  # this recording only: the others go on
        return Outcome(recording.name, frames, fer.first_line(error))
    return Outcome(recording.name, frames)


def write_summary(folder: Path) -> None:
    """summary.csv and, where a face was seen, summary.png from the folder's faces.csv."""
    log = pd.read_csv(folder / "faces.csv")
    history = list(zip(log["time_s"], log["track"], log["emotion"]))
    if not history:
        pd.DataFrame(columns=COLUMNS).rename_axis("face").to_csv(folder / "summary.csv")
        return
    table = vt.summarize(history)
    vt.plot_summary(history, table, str(folder / "summary.png"))
    means = log.groupby("track")[[f"raw_{e}" for e in EMOTIONS]].mean()
    means.columns = [f"mean_{e}" for e in EMOTIONS]
    table = table.rename(columns=SHARES).join(means).rename_axis("face")
    table[COLUMNS].round(4).to_csv(folder / "summary.csv")


# A pool worker's settings, progress queue and stop flag (see start_worker).
_worker: dict = {}


def start_worker(cfg: argparse.Namespace, ticks, stop) -> None:
    _worker.update(cfg=cfg, ticks=ticks, stop=stop)
    pipeline_for(cfg)  # load the model now, not with the first recording


def work(recording: Recording, staging: Path) -> Outcome:
    """A pool worker labels one recording, reporting each frame to the parent."""

    def frame_done() -> None:
        if _worker["stop"].is_set():
            raise KeyboardInterrupt  # the study is stopping: end this recording now
        _worker["ticks"].put(recording.name)

    return label_recording(recording, pipeline_for(_worker["cfg"]), staging, frame_done)


def label_on_node(
    recording: Recording, cfg: argparse.Namespace, files: dict[str, bytes], stamp: str
) -> tuple[Outcome, dict[str, bytes]]:
    """A Ray task: label one recording with the model and detector files the study
    sent (unpacked once per node); the outputs go back as bytes, to be written where
    the study runs."""
    folder = Path(tempfile.gettempdir()) / f"fer-study-{stamp[:16]}"
    for name, data in files.items():
        if not (folder / name).is_file():
            with fer.atomic_path(folder / name) as tmp:
                tmp.write_bytes(data)
    here = {k: str(folder / v) for k, v in vars(cfg).items()
            if k in ("model", "cascade", "detector_model") and v}  # fmt: skip
    pipeline = pipeline_for(argparse.Namespace(**vars(cfg) | here))
    with tempfile.TemporaryDirectory() as staging:
        outcome = label_recording(recording, pipeline, Path(staging), lambda: None)
        return outcome, {p.name: p.read_bytes() for p in Path(staging).iterdir()}


# --------------------------------------------------------------------------
# The report: one page that opens from disk
# --------------------------------------------------------------------------

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; color: #222; max-width: 1150px; margin: 2em auto;
       padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
.note { color: #666; }
table { border-collapse: collapse; font-size: 13px; }
th, td { padding: 3px 6px; text-align: right; border-bottom: 1px solid #eee; }
th { background: #f6f6f6; position: sticky; top: 0; }
td:first-child, th:first-child { text-align: left; }
.wide { overflow-x: auto; }
.mix { display: flex; width: 150px; height: 14px; border-radius: 3px; overflow: hidden;
       background: #eee; }
.mix span { height: 100%; }
.legend span { display: inline-block; margin-right: 1em; }
.legend i { display: inline-block; width: 12px; height: 12px; margin-right: 4px;
            border-radius: 2px; vertical-align: -1px; }
.failed { background: #fff1f0; border: 1px solid #f3b5ae; padding: .5em 1em; border-radius: 4px; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr));
         gap: 1em; }
figure { margin: 0; } figure img { width: 100%; border: 1px solid #eee; }
figcaption { font-weight: 600; }
"""


def report(
    folder: Path,
    study: pd.DataFrame | None,
    plots: dict[str, Path],
    failed: dict[str, str],
    settings: dict[str, str],
) -> str:
    """The study as one HTML page, its plots inside (no file beside it is needed)."""
    faces = 0 if study is None else len(study)
    parts = [f"<h1>Emotions in {esc(folder.resolve().name)}</h1>",
             f"<p class='note'>{len(plots)} recordings labelled, {faces} faces tracked"
             + (f", <b>{len(failed)} failed</b>" if failed else "")
             + ". Colours: the share of each face's time per emotion; the full table with "
             "each face's mean probabilities is study.csv.</p>", legend()]  # fmt: skip
    if failed:
        items = "".join(f"<li><b>{esc(n)}</b>: {esc(e)}</li>" for n, e in failed.items())
        parts.append(f"<div class='failed'>Failed:<ul>{items}</ul></div>")
    if study is not None:
        parts += ["<h2>Recordings</h2>", recordings_table(study)]
    parts.append("<h2>Each recording over time</h2><div class='plots'>")
    for name, plot in plots.items():
        picture = (f"<img alt='{esc(name)}' src='data:image/png;base64,"
                   f"{base64.b64encode(plot.read_bytes()).decode()}'>" if plot.is_file()
                   else "<p class='note'>No face found.</p>")  # fmt: skip
        parts.append(f"<figure><figcaption>{esc(name)}</figcaption>{picture}</figure>")
    parts.append("</div>")
    if study is not None:
        parts += ["<h2>Faces</h2>", faces_table(study)]
    rows = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in settings.items())
    parts += ["<h2>Model and settings</h2>", f"<table>{rows}</table>"]
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Study: "
            f"{esc(folder.resolve().name)}</title><style>{STYLE}</style></head><body>\n"
            + "\n".join(parts) + "\n</body></html>\n")  # fmt: skip


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def legend() -> str:
    keys = "".join(f"<span><i style='background:{HEX[label]}'></i>{label}</span>"
                   for label in vt.LABELS)  # fmt: skip
    return f"<p class='legend'>{keys}</p>"


def mix(shares: pd.Series) -> str:
    """A bar split by the share of time per label, in the demo's box colours."""
    spans = "".join(
        f"<span style='width:{100 * share:.2f}%;background:{HEX[label]}' "
        f"title='{label} {share:.0%}'></span>"
        for label, share in zip(vt.LABELS, shares[list(SHARES.values())]) if share > 0
    )  # fmt: skip
    return f"<div class='mix'>{spans}</div>"


def recordings_table(study: pd.DataFrame) -> str:
    """Per recording: its faces, their time on screen and their time per emotion, together."""
    rows = []
    for name, faces in study.groupby(level="recording", sort=False):
        weights = faces["frames"] / faces["frames"].sum()
        shares = faces[list(SHARES.values())].mul(weights, axis=0).sum()
        seconds = faces["seconds"].sum()
        rows.append(f"<tr><td>{esc(name)}</td><td>{len(faces)}</td><td>{seconds:.1f}</td>"
                    f"<td>{mix(shares)}</td></tr>")  # fmt: skip
    columns = ["recording", "faces", "face-seconds on screen", "emotions"]
    head = "".join(f"<th>{column}</th>" for column in columns)
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def faces_table(study: pd.DataFrame) -> str:
    """The study table: a row per recording and tracked face."""
    columns = ["recording", "face", "frames", "seconds", "mostly", "emotions", *vt.LABELS]
    head = "".join(f"<th>{esc(column)}</th>" for column in columns)
    rows = []
    for (name, face), row in study.iterrows():
        shares = "".join(f"<td>{row[column]:.0%}</td>" for column in SHARES.values())
        rows.append(f"<tr><td>{esc(name)}</td><td>#{face}</td><td>{row['frames']}</td>"
                    f"<td>{row['seconds']:.1f}</td><td>{esc(row['mostly'])}</td>"
                    f"<td>{mix(row)}</td>{shares}</tr>")  # fmt: skip
    return f"<div class='wide'><table><tr>{head}</tr>{''.join(rows)}</table></div>"
