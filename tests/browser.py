"""A real browser on the web demo, for its tests and bench/web_fps.py: Debian's
headless Chromium driven by Playwright, with a fake camera that films a photo."""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import cv2
import numpy as np

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# A closed network refuses Chromium's background connections; a fresh profile each time.
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
CAMERA_SIZE = (640, 480)
# Notes, in the page, when each new labelled frame is shown.
COUNT_FRAMES = """() => {
    window.frames_back = [];
    let last = null;
    new MutationObserver(() => {
        const shown = document.querySelector("#live img")?.src;
        if (shown && shown !== last) window.frames_back.push(performance.now());
        last = shown;
    }).observe(document.querySelector("#live"), {subtree: true, childList: true, attributes: true});
}"""


def missing() -> str:
    """Why no browser test can run here; "" when one can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed: pip install -r requirements.txt"
    if not Path(CHROMIUM).is_file():
        return f"no Chromium at {CHROMIUM}: apt-get install chromium (or set CHROMIUM)"
    return ""


def camera_frame(photo: Path) -> np.ndarray:
    """The middle of a photo at the fake camera's size (4:3), BGR."""
    image = cv2.imread(str(photo))
    height, width = image.shape[:2]
    side = min(width, height * 4 // 3)
    left = (width - side) // 2
    return cv2.resize(image[:, left : left + side], CAMERA_SIZE, interpolation=cv2.INTER_AREA)


def write_camera_clip(frames: list[np.ndarray], path: Path) -> Path:
    """A Y4M clip of 640x480 frames, which Chromium's fake camera plays in a loop."""
    width, height = CAMERA_SIZE
    with open(path, "wb") as clip:
        clip.write(f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            clip.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path


def launch(playwright, clip: Path):
    """Chromium (a new empty profile) with the clip as its camera, which pages may
    use without asking."""
    return playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=[
            *FLAGS,
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={clip}",
        ],
    )


def open_page(browser, url: str, tab: str = "Webcam"):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(url)
    page.get_by_role("tab", name=tab).click()
    return page


def start_webcam(page, timeout_s: float = 120) -> None:
    """Turn the webcam on, and wait for its first labelled frame."""
    page.get_by_text("Click to Access Webcam").click()
    page.get_by_role("button", name="capture photo").click()
    page.locator("#live img").wait_for(timeout=timeout_s * 1000)
    page.evaluate(COUNT_FRAMES)


def frames_back(page) -> list[float]:
    """When each labelled frame came back since start_webcam, in ms of the page's clock."""
    return page.evaluate("window.frames_back")


def live_frame(page) -> tuple[np.ndarray, str]:
    """The labelled frame shown now (BGR), and its text: the labels."""
    image = page.locator("#live img")
    data = base64.b64decode(image.get_attribute("src").split(",", 1)[1])
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), image.get_attribute("alt")
