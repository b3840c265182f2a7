"""Studies (fer_study.py): a folder of recordings in, a log, summary and plot per
recording and one table and report out; on several workers, on Ray, after a kill
and after Ctrl-C, the same outputs as one worker's uninterrupted run."""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import PHOTOS, ROOT, SAMPLE_PHOTO

import fer_common as fer
import fer_faces
import fer_study
import video_tester as vt
from fer_common import UserError

FRAMES = 24  # per clip, at 10 FPS
# Each recording of the study folder and the faces it shows.
FACES = {"biden.avi": 1, "obama.avi": 1, "still.jpg": 1, "talk/two_people.avi": 2}
BROKEN = "broken.mp4"
SETTINGS = ["--detector", "haar", "--annotate", "--no-display"]


def write_clip(photo: Path, path: Path, width: int) -> None:
    """FRAMES frames of `photo`, `width` px wide, with a slight camera shake."""
    image = cv2.imread(str(photo))
    height = round(image.shape[0] * width / image.shape[1]) // 2 * 2
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (width, height))
    for i in range(FRAMES):
        dx = [0, 2, 4, 2, 0, -2, -4, -2][i % 8]
        shift = np.float32([[1, 0, dx], [0, 1, -dx // 2]])
        writer.write(cv2.warpAffine(image, shift, (width, height), borderMode=cv2.BORDER_REPLICATE))
    writer.release()


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> Path:
    """Three short clips (one in a subfolder, with two people), a photo, a broken
    video and a file that is neither."""
    folder = tmp_path_factory.mktemp("study") / "recordings"
    (folder / "talk").mkdir(parents=True)
    write_clip(PHOTOS / "biden.jpg", folder / "biden.avi", 200)
    write_clip(PHOTOS / "obama-720p.jpg", folder / "obama.avi", 320)
    write_clip(PHOTOS / "two_people.jpg", folder / "talk" / "two_people.avi", 400)
    shutil.copy(SAMPLE_PHOTO, folder / "still.jpg")
    (folder / BROKEN).write_bytes(b"\x00" * 1000)
    (folder / "notes.txt").write_text("not a recording")
    return folder


def study(recordings: Path, results: Path, *args: str) -> None:
    """A study run in this process, as `video_tester.py` would run it; the broken
    video makes it end in a UserError."""
    cfg = vt.parse_args(["--source", str(recordings), "--output", str(results), *SETTINGS, *args])
    with pytest.raises(UserError, match=f"1 of {len(FACES) + 1} recordings failed"):
        fer_study.run(cfg)


@pytest.fixture(scope="module")
def one_worker(recordings: Path, tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("one_worker") / "results"
    study(recordings, results, "--workers", "1")
    return results


def outputs(results: Path) -> dict[str, bytes]:
    """Every file under `results`, by its path there."""
    return {p.relative_to(results).as_posix(): p.read_bytes()
            for p in sorted(results.rglob("*")) if p.is_file()}  # fmt: skip


def assert_same_outputs(results: Path, expected: Path, but: tuple[str, ...] = ()) -> None:
    got, want = outputs(results), outputs(expected)
    for name in but:
        got.pop(name), want.pop(name)
    assert sorted(got) == sorted(want)
    assert [name for name in want if got[name] != want[name]] == []


def done(results: Path) -> list[str]:
    return sorted(p.parent.relative_to(results).as_posix() for p in results.rglob(fer_study.DONE))


# --------------------------------------------------------------------------
# What a study writes
# --------------------------------------------------------------------------


def test_each_recording_gets_its_log_summary_plot_and_annotated_video(one_worker: Path):
    assert done(one_worker) == ["biden", "obama", "still", "talk/two_people"]
    for name, faces in FACES.items():
        folder = one_worker / Path(name).with_suffix("")
        log = pd.read_csv(folder / "faces.csv")
        frames = 1 if name.endswith(".jpg") else FRAMES
        assert log["frame"].tolist() == sorted(list(range(frames)) * faces)  # in order, all
        assert log["track"].nunique() == faces
        assert cv2.imread(str(folder / "summary.png")) is not None
        if frames == 1:
            assert cv2.imread(str(folder / "annotated.jpg")) is not None
            continue
        video = cv2.VideoCapture(str(folder / "annotated.mp4"))
        assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == frames and video.read()[0]
        video.release()
    assert not (one_worker / "broken").exists()


def test_the_study_table_sums_up_each_face_from_its_log(one_worker: Path):
    table = pd.read_csv(one_worker / "study.csv")
    assert list(zip(table["recording"], table["face"])) == [
        (name, face) for name, faces in FACES.items() for face in range(1, faces + 1)
    ]
    shares = table[[f"share_{label.lower()}" for label in vt.LABELS]]
    np.testing.assert_allclose(shares.sum(axis=1), 1, atol=1e-3)
    for (name, face), row in table.set_index(["recording", "face"]).iterrows():
        log = pd.read_csv(one_worker / Path(name).with_suffix("") / "faces.csv")
        own = log[log["track"] == face]
        assert row["frames"] == len(own)
        assert row["seconds"] == pytest.approx(own["time_s"].max() - own["time_s"].min(), abs=0.06)
        seen = own["emotion"].value_counts(normalize=True)
        for label in vt.LABELS:
            assert row[f"share_{label.lower()}"] == pytest.approx(seen.get(label, 0), abs=1e-4)
        assert row["mostly"] == seen.idxmax()
        for emotion in fer.EMOTIONS:
            mean = own[f"raw_{emotion.lower()}"].mean()
            assert row[f"mean_{emotion.lower()}"] == pytest.approx(mean, abs=1e-4)


def test_the_report_is_one_page_with_every_plot_the_table_and_the_failure(one_worker: Path):
    page = (one_worker / "report.html").read_text()
    pictures = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert [base64.b64decode(p) for p in pictures] == [
        (one_worker / Path(name).with_suffix("") / "summary.png").read_bytes() for name in FACES
    ]
    assert not re.search(r"(src|href)=['\"](?!data:)", page)  # nothing loaded from elsewhere
    failure = re.search(r"<div class='failed'>.*?</div>", page, re.S)
    assert failure and BROKEN in failure.group() and "cannot read" in failure.group()
    table = pd.read_csv(one_worker / "study.csv")
    assert page.count("<td>#") == len(table)  # a row per face
    assert all(name in page for name in FACES)
    stamp = json.loads((one_worker / "biden" / fer_study.DONE).read_text())["fingerprint"]
    assert stamp[:16] in page and "min_confidence" in page and "fer.tflite" in page


# --------------------------------------------------------------------------
# Workers, Ray: the same outputs
# --------------------------------------------------------------------------


def test_two_workers_write_what_one_writes_and_name_the_broken_video(
    recordings: Path, one_worker: Path, tmp_path: Path, monkeypatch, capsys
):
    results = tmp_path / "results"
    command = ["video_tester.py", "--source", str(recordings), "--output", str(results),
               *SETTINGS, "--workers", "2"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", command)
    with pytest.raises(SystemExit) as exit:  # the script's main, as run from a shell
        fer.run_cli(vt.main)
    out, err = capsys.readouterr()
    assert exit.value.code == 1 and "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        f"error: 1 of 5 recordings failed (named above and in {results / 'report.html'})"
    ]
    assert [line for line in out.splitlines() if BROKEN in line] == [
        f"failed: {BROKEN}: cannot read {recordings / BROKEN} as a video"
    ]
    assert_same_outputs(results, one_worker)


def test_haar_faces_come_left_to_right_in_every_run():
    """New faces get their ids in the detector's order, which OpenCV's threads vary."""
    gray = cv2.imread(str(PHOTOS / "two_people.jpg"), cv2.IMREAD_GRAYSCALE)
    detector = fer_faces.HaarDetector(vt.CASCADE, 1.1, 8, 30)
    runs = [detector(None, gray)[0].tolist() for _ in range(10)]
    assert len(runs[0]) == 2 and runs[0][0][0] < runs[0][1][0]
    assert all(boxes == runs[0] for boxes in runs)


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory) -> Iterator[str]:
    """A one-machine Ray cluster with 2 CPUs, started as `ray start` starts a head
    node; stopped after the module's tests."""
    pytest.importorskip("ray")
    port, client, dashboard, agent = free_ports(4)  # not Ray's fixed defaults: may be taken
    unpacked = set(Path(tempfile.gettempdir()).glob("fer-study-*"))  # by the nodes (below)
    log = tmp_path_factory.mktemp("ray") / "head.log"
    with open(log, "w") as stream:
        head = subprocess.Popen(
            [Path(sys.executable).parent / "ray", "start", "--head", "--block", f"--port={port}",
             f"--ray-client-server-port={client}", f"--dashboard-port={dashboard}",
             f"--dashboard-agent-listen-port={agent}", "--num-cpus=2",
             "--include-dashboard=false", "--disable-usage-stats"],
            stdout=stream, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log.read_text():
            assert head.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # the head and every Ray process it started
        try:
            head.wait(timeout=5)
        except subprocess.TimeoutExpired:  # a graceful stop takes Ray half a minute
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        for folder in set(Path(tempfile.gettempdir()).glob("fer-study-*")) - unpacked:
            shutil.rmtree(folder)  # the model files the tests' tasks unpacked


def free_ports(count: int) -> list[int]:
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]


@pytest.mark.slow
def test_a_ray_cluster_writes_what_one_worker_writes(
    recordings: Path, one_worker: Path, ray_cluster: str, tmp_path: Path
):
    study(recordings, tmp_path / "results", "--ray", ray_cluster)
    assert_same_outputs(tmp_path / "results", one_worker)


def test_a_task_that_fails_on_its_node_is_a_failed_recording(
    ray_cluster: str, tmp_path: Path, monkeypatch, capsys
):
    def nothing_shipped(self):  # the node then lacks the model files
        settings, _ = original(self)
        return settings, {}

    original = fer_study.Study.shipment
    monkeypatch.setattr(fer_study.Study, "shipment", nothing_shipped)
    (tmp_path / "recordings").mkdir()
    write_clip(SAMPLE_PHOTO, tmp_path / "recordings" / "one.avi", 160)  # one task, one worker
    # Other settings than the other Ray test's: no node has unpacked files for them.
    cfg = vt.parse_args(["--source", str(tmp_path / "recordings"), "--output",
                         str(tmp_path / "results"), *SETTINGS, "--ray", ray_cluster,
                         "--min-confidence", "0.3"])  # fmt: skip
    with pytest.raises(UserError, match="1 of 1 recordings failed"):
        fer_study.run(cfg)
    failures = [line for line in capsys.readouterr().out.splitlines() if "failed:" in line]
    assert len(failures) == 1 and failures[0].startswith("failed: one.avi: Ray: model file")
    assert "is missing" in failures[0]


# --------------------------------------------------------------------------
# Resuming, stopping
# --------------------------------------------------------------------------


def test_a_rerun_labels_only_what_changed(
    recordings: Path, one_worker: Path, tmp_path: Path, capsys
):
    recordings = shutil.copytree(recordings, tmp_path / "recordings")  # times kept
    results = shutil.copytree(one_worker, tmp_path / "results")

    def times() -> dict[Path, int]:  # of each recording's outputs
        return {p: p.stat().st_mtime_ns for p in results.glob("*/**/*") if p.is_file()}

    before = times()
    study(recordings, results, "--workers", "1")
    assert "4 done before with this model and these settings, 1 to label" in capsys.readouterr().out
    assert times() == before
    assert_same_outputs(results, one_worker, but=("report.html",))  # names the copy's path

    os.utime(recordings / "obama.avi")  # a recording replaced: labelled again
    study(recordings, results, "--workers", "1")
    assert "3 done before with this model and these settings, 2 to label" in capsys.readouterr().out

    study(recordings, results, "--workers", "1", "--min-confidence", "0.99")  # other settings
    assert "0 done before with this model and these settings, 5 to label" in capsys.readouterr().out
    table = pd.read_csv(results / "study.csv")
    assert (table["share_uncertain"] == 1).all()  # the shipped model is never that sure


def start_study(recordings: Path, results: Path, *args: str) -> subprocess.Popen:
    """video_tester.py on a study in its own process group, as a terminal starts it."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "video_tester.py"), "--source", str(recordings),
         "--output", str(results), *SETTINGS, *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
        start_new_session=True,
    )  # fmt: skip


def wait_for_first_recording(run: subprocess.Popen, results: Path) -> None:
    deadline = time.monotonic() + 300
    while not (results.exists() and done(results)):
        assert run.poll() is None, run.communicate()
        assert time.monotonic() < deadline, "no recording done in 300 s"
        time.sleep(0.02)


def assert_nothing_half_written(results: Path) -> None:
    """Every recording folder complete with its done record, no temporary file left."""
    assert not [p for p in results.rglob(".*")]
    for record in results.rglob(fer_study.DONE):
        names = {p.name for p in record.parent.iterdir() if p.is_file()}
        assert {"faces.csv", "summary.csv", "summary.png", fer_study.DONE} <= names


def test_a_killed_study_resumes_where_it_stopped(
    recordings: Path, one_worker: Path, tmp_path: Path, capsys
):
    results = tmp_path / "results"
    run = start_study(recordings, results, "--workers", "1")
    wait_for_first_recording(run, results)
    os.killpg(run.pid, signal.SIGKILL)
    run.communicate()
    finished = done(results)
    assert 1 <= len(finished) < len(FACES), finished
    study(recordings, results, "--workers", "1")
    out = capsys.readouterr().out
    assert f"{len(finished)} done before with this model and these settings" in out
    assert_same_outputs(results, one_worker)
    assert_nothing_half_written(results)


def test_ctrl_c_stops_the_workers_and_keeps_what_is_finished(
    recordings: Path, one_worker: Path, tmp_path: Path
):
    results = tmp_path / "results"
    run = start_study(recordings, results, "--workers", "2")
    wait_for_first_recording(run, results)
    os.killpg(run.pid, signal.SIGINT)  # what Ctrl-C sends: to the parent and its workers
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 130 and "interrupted" in stderr and "Traceback" not in stderr, stderr
    assert "recordings finished in this run are kept" in stdout
    deadline = time.monotonic() + 10
    with pytest.raises(ProcessLookupError):  # no worker left behind, once reaped
        while time.monotonic() < deadline:
            os.killpg(run.pid, 0)
            time.sleep(0.1)
    finished = done(results)
    assert 1 <= len(finished) < len(FACES), finished
    assert_nothing_half_written(results)
    kept = outputs(results)
    want = outputs(one_worker)
    assert all(kept[name] == want[name] for name in kept)


# --------------------------------------------------------------------------
# The progress bar, bad commands
# --------------------------------------------------------------------------


def test_one_progress_bar_counts_recordings_and_frames():
    shown = io.StringIO()
    progress = fer_study.Progress(2, 30, file=shown, disable=False, mininterval=0)
    for _ in range(10):
        progress.frames("a.mp4")
    progress.frames("b.mp4", 4)
    progress.finished(fer_study.Outcome("a.mp4", 12))  # more frames than were reported
    progress.frames("a.mp4")  # a worker's late report: counted already
    progress.finished(fer_study.Outcome("b.mp4", 6))
    progress.close()
    assert progress.bar.n == 18
    last = shown.getvalue().split("\r")[-1]
    assert last.startswith("2/2 recordings") and "18/30" in last and "frame/s" in last


def test_bad_study_commands_are_one_line_errors(recordings: Path, tmp_path: Path, monkeypatch):
    def error(*args: str) -> str:
        cfg = vt.parse_args(["--source", str(recordings), *args])
        with pytest.raises(UserError) as raised:
            fer_study.Study(cfg)
        return str(raised.value)

    assert "--output FOLDER" in error()
    assert "--output FOLDER" in error("--output", str(tmp_path / "study.mp4"))
    assert "leave out --log" in error("--output", str(tmp_path), "--log", "faces.csv")
    if importlib.util.find_spec("ray"):
        nowhere = f"127.0.0.1:{free_ports(1)[0]}"
        assert "nothing answers at" in error("--output", str(tmp_path), "--ray", nowhere)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert "pip install ray" in error("--output", str(tmp_path), "--ray", "auto")
    monkeypatch.undo()

    twins = tmp_path / "twins"
    twins.mkdir()
    for name in ("a.avi", "a.mp4"):
        shutil.copy(recordings / "biden.avi", twins / name)
    cfg = vt.parse_args(["--source", str(twins), "--output", str(tmp_path / "out")])
    with pytest.raises(UserError, match="share the results folder a"):
        fer_study.Study(cfg)


def test_a_folder_of_images_alone_is_no_study(tmp_path: Path):
    shutil.copy(SAMPLE_PHOTO, tmp_path / "a.jpg")
    assert not fer_study.is_study(str(tmp_path))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "clip.MP4").write_bytes(b"")
    assert fer_study.is_study(str(tmp_path))
