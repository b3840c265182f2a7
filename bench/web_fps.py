"""The web demo's live webcam as the browser sees it: labelled frames per second
coming back to the page, and the server's time per frame.

    python -m bench.web_fps [--seconds 20] [--screenshot docs/web_demo.png]

Serves web_demo.py's page from this process (its WebDemo and page, with
label_webcam timed), opens it in Debian's headless Chromium (Playwright, as
tests/test_web_demo.py does) with a fake camera that films one face (the test's
640x480 middle of ../shared/photos/obama-720p.jpg, with bench/fps.py's slight
camera shake), turns the webcam on and counts the labelled frames that come back
after a few seconds' warm-up, with each face detector. "server": label_webcam's
time per frame (the pipeline, then the JPEG for the page), then the pipeline's
stages; "rest": the rest of each frame's time (the page's JPEG, Gradio's queue,
the network, decoding, and the wait for the page's next frame: it sends one every
--stream-every seconds at most, 0.05 s by default, so 20 FPS at most). Prints a
Markdown table. Not a test: the machine's load changes the figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import web_demo
from bench.accuracy import print_table
from bench.fps import PHOTOS, SHARED_YUNET, shaken
from tests.browser import (
    camera_frame,
    frames_back,
    launch,
    missing,
    open_page,
    start_webcam,
    write_camera_clip,
)

ROOT = Path(__file__).resolve().parent.parent

WARM_UP = 5  # seconds of frames left out of the count: the model's first calls are slow
STAGES = ("detect", "preprocess", "classify", "draw")


def measure(settings: list[str], clip: Path, seconds: float, screenshot: str) -> dict:
    """Serve the page with these settings and film the clip: the browser's FPS, and
    the server's milliseconds per frame (in all, and by pipeline stage)."""
    from playwright.sync_api import sync_playwright

    demo = web_demo.WebDemo(web_demo.parse_args(settings))
    calls, lives = [], []
    label_webcam = demo.label_webcam

    def timed(frame, live):
        started = time.perf_counter()
        shown, live = label_webcam(frame, live)
        calls.append(time.perf_counter() - started)
        lives.append(live)
        return shown, live

    demo.label_webcam = timed
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    blocks = web_demo.page(demo)
    blocks.launch(server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False,
                  run_history=False)  # fmt: skip
    try:
        with sync_playwright() as playwright:
            browser = launch(playwright, clip)
            page = open_page(browser, f"http://127.0.0.1:{port}/")
            start_webcam(page)
            page.wait_for_timeout(WARM_UP * 1000)
            warm, warm_stages = len(calls), dict(lives[-1].pipeline.seconds)
            start = page.evaluate("performance.now()")
            page.wait_for_timeout(seconds * 1000)
            times = [t for t in frames_back(page) if t >= start]
            if screenshot:
                page.set_viewport_size({"width": 1280, "height": 640})
                page.screenshot(path=screenshot)
            browser.close()
    finally:
        blocks.close()
    counted = calls[warm:]
    stages = {stage: lives[-1].pipeline.seconds[stage] - warm_stages[stage] for stage in STAGES}
    fps = (len(times) - 1) / ((times[-1] - times[0]) / 1000)
    server = 1000 * sum(counted) / len(counted)
    return {"fps": fps, "frames": len(times), "server": server, "rest": 1000 / fps - server,
            **{stage: 1000 * spent / len(counted) for stage, spent in stages.items()}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20, help="frames counted this long")
    parser.add_argument("--screenshot", default="", help="PNG of the page (the first row's)")
    args = parser.parse_args()
    if reason := missing():
        sys.exit(reason)
    detectors = {"Haar": ["--detector", "haar"]}
    if SHARED_YUNET.is_file():
        detectors["YuNet"] = ["--detector", "yunet", "--detector-model", str(SHARED_YUNET)]

    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in cpu.splitlines()
                  if line.startswith("Model name")), platform.machine())  # fmt: skip
    print(
        f"{os.cpu_count()} cores ({model}), load average {os.getloadavg()[0]:.1f} at the "
        f"start; webcam 640x480, one face, {args.seconds:g} s counted; ms per frame"
    )
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        frames = shaken(camera_frame(PHOTOS / "obama-720p.jpg"), 60)
        clip = write_camera_clip(frames, Path(scratch) / "camera.y4m")
        for name, settings in detectors.items():
            result = measure(settings, clip, args.seconds, args.screenshot if not rows else "")
            figures = (f"{result[key]:.1f}" for key in ("server", *STAGES, "rest"))
            rows.append([name, f"{result['fps']:.1f}", str(result["frames"]), *figures])
    print_table(["detector", "FPS in the browser", "frames", "server", *STAGES, "rest"], rows)


if __name__ == "__main__":
    main()
