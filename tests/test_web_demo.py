"""The web demo as a user meets it: `python web_demo.py`, in Debian's headless
Chromium with a fake camera that films a shared photo. One server for the module;
its last test stops it."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from browser import (
    camera_frame,
    frames_back,
    launch,
    live_frame,
    missing,
    open_page,
    start_webcam,
    write_camera_clip,
)
from conftest import PHOTOS, ROOT

pytestmark = pytest.mark.slow  # make test-all: a real browser

PORTRAIT = PHOTOS / "obama-720p.jpg"  # one face, smiling, 0.9 megapixels
PAIR = PHOTOS / "two_people.jpg"  # two faces, 0.7 megapixels
BIG = PHOTOS / "biden.jpg"  # 2.1 megapixels: over the limit set below
LIMITS = ["--max-megapixels", "1", "--max-frames", "5", "--max-upload-mb", "2"]
ONE_LABEL = r"(Angry|Disgust|Fear|Happy|Sad|Surprise|Neutral) \d+%|uncertain"


@dataclass
class Server:
    url: str
    port: int
    process: subprocess.Popen
    cwd: Path  # where it was started: it must leave this empty
    tmp: Path  # its TMPDIR: it may write only in a folder of its own there
    log: Path


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if reason := missing():
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    clip = tmp_path_factory.mktemp("camera") / "still.y4m"
    write_camera_clip([camera_frame(PORTRAIT)], clip)
    with sync_playwright() as playwright:
        chromium = launch(playwright, clip)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    cwd, tmp, log = root / "cwd", root / "tmp", root / "server.log"
    cwd.mkdir()
    tmp.mkdir()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, str(ROOT / "web_demo.py"), "--port", str(port),
               "--detector", "haar", *LIMITS]  # fmt: skip
    with open(log, "w") as output:
        process = subprocess.Popen(command, cwd=cwd, stdout=output, stderr=subprocess.STDOUT,
                                   env={**os.environ, "TMPDIR": str(tmp)})  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    started = time.monotonic()
    while not serving(url):
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() - started < 240, "no page after 240 s: " + log.read_text()[-3000:]
        time.sleep(0.5)
    yield Server(url, port, process, cwd, tmp, log)
    if process.poll() is None:
        process.kill()
        process.wait()


def serving(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


SAID = """([errorBefore, statusBefore]) => {
    const error = [...document.querySelectorAll("[data-testid=toast-text]")].at(-1)?.innerText;
    if (error && error !== errorBefore) return error;
    const status = document.querySelector("#status").innerText;
    const done = status !== statusBefore && !status.includes("processing");
    return done && status.includes("face") && status;
}"""


def upload(page, path: Path, timeout_s: float = 120) -> str:
    """Upload a file on the page's photo-or-video tab; what the page said back: its
    error message or its status line."""
    clear = page.locator("#upload").get_by_label("Clear")
    if clear.count():
        clear.dispatch_event("click")  # the last upload (a click would wait for toasts to go)
    said_before = page.evaluate(SAID, [None, None]) or None, page.locator("#status").inner_text()
    page.locator("#upload input[type=file]").set_input_files(str(path))
    return page.wait_for_function(SAID, arg=said_before, timeout=timeout_s * 1000).json_value()


def fetch(page, selector: str) -> bytes:
    """The file that an element on the page links to (src or href)."""
    element = page.locator(selector)
    url = element.get_attribute("src") or element.get_attribute("href")
    return page.request.get(url).body()


def assert_labelled_at_the_face(before: np.ndarray, after: np.ndarray) -> None:
    """`after` is `before` with a box around its one face and a label above it."""
    cascade = cv2.CascadeClassifier(str(ROOT / "haarcascade_frontalface_default.xml"))
    faces = cascade.detectMultiScale(cv2.cvtColor(before, cv2.COLOR_BGR2GRAY), 1.1, 8)
    assert len(faces) == 1
    x, y, w, h = faces[0]
    changed = np.abs(before.astype(int) - after.astype(int)).max(axis=2) > 40
    assert changed[y : y + h, x - 4 : x + 5].any(axis=1).mean() > 0.9  # the box's left edge
    assert changed[:y, x : x + w].mean() > 0.2  # the label above it
    assert changed[y + 6 : y + h - 6, x + 6 : x + w - 6].mean() < 0.02  # the face left clear
    assert changed.mean() < 0.05  # and not much else


# --------------------------------------------------------------------------
# The webcam, a photo, a video
# --------------------------------------------------------------------------


def test_the_webcam_comes_back_labelled_frame_after_frame(browser, server: Server):
    page = open_page(browser, server.url)
    start_webcam(page)
    page.wait_for_timeout(3000)
    frame, labels = live_frame(page)
    came_back = len(frames_back(page))
    page.close()
    assert came_back >= 5, f"{came_back} labelled frames in 3 s"
    assert re.fullmatch(ONE_LABEL, labels), labels  # one face, one label
    camera = cv2.flip(camera_frame(PORTRAIT), 1)  # the page mirrors the camera, as a mirror
    assert frame.shape == camera.shape
    assert_labelled_at_the_face(camera, frame)


def test_a_photo_gets_the_labels_video_tester_gives_it(browser, server: Server, tmp_path: Path):
    """The same detector, model, settings and drawing: the same labelled photo and log."""
    cli_photo, cli_log = tmp_path / "labelled.jpg", tmp_path / "faces.csv"
    cli = subprocess.Popen(
        [sys.executable, str(ROOT / "video_tester.py"), "--source", str(PAIR), "--no-display",
         "--detector", "haar", "--output", str(cli_photo), "--log", str(cli_log)],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    page = open_page(browser, server.url, tab="Photo or video")
    status = upload(page, PAIR)
    assert status == "two_people.jpg: 2 faces"
    grid = page.locator("#faces")  # read as a screen reader would
    rows = [row.get_by_role("gridcell").all_inner_texts() for row in grid.get_by_role("row").all()]
    table = pd.DataFrame(
        [row for row in rows if row], columns=grid.get_by_role("columnheader").all_inner_texts()
    )
    (tmp_path / "web.csv").write_bytes(fetch(page, "#log a[download]"))
    web_photo = cv2.imdecode(np.frombuffer(fetch(page, "#photo img"), np.uint8), cv2.IMREAD_COLOR)
    page.close()
    assert cli.wait(timeout=300) == 0, cli.stderr.read()[-2000:]

    web_log = pd.read_csv(tmp_path / "web.csv")

    # The Haar cascade's threads may list the faces in another order, run to run.
    def faces(log: pd.DataFrame) -> pd.DataFrame:
        return log.drop(columns=["face", "track"]).sort_values("x", ignore_index=True)

    pd.testing.assert_frame_equal(faces(web_log), faces(pd.read_csv(cli_log)))
    np.testing.assert_array_equal(web_photo, cv2.imread(str(cli_photo)))
    # The page's table reads each face's label as the log has it.
    shown = dict(zip(table["face"], table["mostly"]))
    logged = zip(web_log["track"], web_log["emotion"])
    assert shown == {f"#{track}": label for track, label in logged}


def test_a_video_comes_back_labelled_up_to_the_frame_limit(browser, server, tmp_path: Path):
    clip = tmp_path / "clip.mp4"
    frame = camera_frame(PORTRAIT)
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, frame.shape[1::-1])
    for dx in [0, 2, 4, 2, 0, -2, -4, -2, 0, 2, 4, 2]:  # 12 frames, the limit 5
        writer.write(np.roll(frame, dx, axis=1))
    writer.release()
    page = open_page(browser, server.url, tab="Photo or video")
    status = upload(page, clip)
    video = tmp_path / "labelled.webm"
    video.write_bytes(fetch(page, "#video video"))
    page.close()
    assert status == "clip.mp4: 1 face in 5 frames (the first 5 of 12: --max-frames)"
    capture = cv2.VideoCapture(str(video))
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, first = capture.read()
    capture.release()
    assert ok and frames == 5
    assert_labelled_at_the_face(frame, first)


# --------------------------------------------------------------------------
# Bad input, and no one else in
# --------------------------------------------------------------------------


def test_bad_uploads_get_one_line_and_the_server_goes_on(browser, server, tmp_path: Path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("not an image")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    (tmp_path / "large.mp4").write_bytes(np.random.default_rng(0).bytes(3 * 2**20))  # > 2 MB
    expected = {
        tmp_path / "empty.jpg": "empty.jpg is empty",
        tmp_path / "notes.jpg": "cannot read image notes.jpg",
        tmp_path / "notes.txt": "Invalid file type: notes.txt",
        tmp_path / "noise.mp4": "cannot read noise.mp4 as a video",
        tmp_path / "large.mp4": "exceed the maximum allowed size of 2.0 Mb",
        BIG: "biden.jpg is 970x2204 pixels, over the 1 megapixel limit (--max-megapixels)",
    }
    page = open_page(browser, server.url, tab="Photo or video")
    for path, message in expected.items():
        said = upload(page, path)
        assert message in said and "\n" not in said, said  # one line, no traceback
    status = upload(page, PORTRAIT)
    page.close()
    assert status == "obama-720p.jpg: 1 face"
    assert "Traceback" not in server.log.read_text()


def test_it_listens_here_only_writes_only_its_folder_and_removes_it(server: Server):
    """Runs last: stops the server."""
    if sys.platform == "linux":  # the kernel's table of sockets: which address it listens on
        listening = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                address, port = line.split()[1].split(":")
                if int(port, 16) == server.port and line.split()[3] == "0A":  # LISTEN
                    listening.add(address)
        assert listening == {"0100007F"}  # 127.0.0.1 only

    assert list(server.cwd.iterdir()) == []
    assert [path.name[:9] for path in server.tmp.iterdir()] == ["web_demo_"]
    server.process.send_signal(signal.SIGINT)  # Ctrl-C
    assert server.process.wait(timeout=60) == 0, server.log.read_text()[-2000:]
    assert list(server.tmp.iterdir()) == []
