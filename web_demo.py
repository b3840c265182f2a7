"""Label faces in a browser: the webcam live, or an uploaded photo or video.

    python web_demo.py                     # then open http://127.0.0.1:7860
    python web_demo.py --share             # also a public link (Colab, a remote GPU box)
    python web_demo.py --detector yunet    # any setting of video_tester.py, same defaults

A local web page (Gradio) around video_tester.py's pipeline: the same detector,
tracker, model and drawing. The page sends each webcam frame and gets it back
labelled; a photo or video comes back labelled, with the per-face table, the
timeline plot and the CSV log. The server listens on this machine only unless
--host or --share says otherwise, and writes only inside its own temporary
folder, removed when it stops (Ctrl-C).
"""

from __future__ import annotations

import argparse
import atexit
import base64
import copy
import html
import os
import shutil
import signal
import tempfile
import threading
import typing
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

import fer_common as fer
import video_tester as vt
from fer_common import UserError

# Everything the server writes (uploads, results, Gradio's cache) goes into one
# folder of its own, removed at exit. Gradio reads where when it is imported.
FOLDER = Path(tempfile.mkdtemp(prefix="web_demo_"))
atexit.register(shutil.rmtree, FOLDER, ignore_errors=True)
os.environ["GRADIO_TEMP_DIR"] = str(FOLDER)

if typing.TYPE_CHECKING:  # imported when the page is built: seconds, which --help need not wait
    import gradio as gr

# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------

HOST = "127.0.0.1"  # who may connect: this machine; "0.0.0.0": the local network too
PORT = 7860  # the page's port: http://HOST:PORT
SHARE = False  # also a public link, through Gradio's share servers
MAX_UPLOAD_MB = 100  # larger uploads are refused
MAX_MEGAPIXELS = 40.0  # larger photos are refused (a 4K frame has 8.3)
MAX_FRAMES = 1800  # a video's frames labelled at most (a minute at 30 FPS); the rest are left
STREAM_EVERY = 0.05  # seconds between the webcam frames the page sends: 20 a second at most

# What the command line accepts beyond the type of each setting's default.
ACCEPTS = {
    "PORT": fer.number(1, 65535, kind=int),
    "MAX_UPLOAD_MB": fer.number(1, kind=int),
    "MAX_MEGAPIXELS": fer.number(0.1),
    "MAX_FRAMES": fer.number(1, kind=int),
    "STREAM_EVERY": fer.number(0.01, 10),
}
OWN_SETTINGS = {name: value for name, value in globals().items()
                if name.isupper() and name not in ("FOLDER", "ACCEPTS")}  # fmt: skip
# video_tester.py's settings and defaults, less its files and window: the page has its own
FILE_SETTINGS = ("SOURCE", "SAMPLE", "OUTPUT", "LOG", "SUMMARY", "EXPLAIN_DIR", "DISPLAY",
                 "WORKERS", "RAY", "ANNOTATE")  # fmt: skip
PIPELINE_SETTINGS = {n: v for n, v in vt.SETTINGS.items() if n not in FILE_SETTINGS}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = fer.settings_parser({**OWN_SETTINGS, **PIPELINE_SETTINGS}, __doc__,
                                 [vt.__file__, __file__], {**vt.ACCEPTS, **ACCEPTS})  # fmt: skip
    parser.set_defaults(**{name.lower(): vt.SETTINGS[name] for name in FILE_SETTINGS})
    return parser.parse_args(argv)


# --------------------------------------------------------------------------
# Labelling
# --------------------------------------------------------------------------


class SharedPipeline(vt.Pipeline):
    """video_tester's pipeline, one frame at a time whichever thread calls it (webcams
    and uploads run side by side): its model and detector are not thread-safe."""

    lock = threading.Lock()  # one for every copy

    def __call__(self, *args, **kwargs) -> list[vt.Track]:
        with self.lock:
            return super().__call__(*args, **kwargs)

    def copy(self) -> SharedPipeline:
        """The same model and detector, with faces (tracks, ids) of its own."""
        other = copy.copy(self)
        other.reset()
        return other


@dataclass
class Live:
    """One browser tab's webcam: its faces and ids, and its frame rate."""

    pipeline: SharedPipeline
    rate: vt.FrameRate


class WebDemo:
    """What the page does: the model and detector are loaded once, and each webcam
    and each upload gets faces of its own."""

    def __init__(self, cfg: argparse.Namespace):
        self.cfg = cfg
        self.pipeline = SharedPipeline(cfg)

    def label_webcam(self, frame: np.ndarray | None, live: Live | None) -> tuple[str, Live]:
        """One RGB webcam frame, labelled: an <img> of it, its labels as the text
        (screen readers). The JPEG travels inside the answer, where an image output
        would be a file on disk and one more request per frame."""
        live = live or Live(self.pipeline.copy(), vt.FrameRate())
        if frame is None:
            return "", live
        bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
        tracks = live.pipeline(bgr, fps=live.rate.tick())
        jpeg = base64.b64encode(cv2.imencode(".jpg", bgr)[1]).decode()
        labels = ", ".join(vt.label_text(track) for track in tracks) or "no face"
        return f'<img alt="{labels}" src="data:image/jpeg;base64,{jpeg}">', live

    def label_upload(self, path: str) -> tuple:
        """An uploaded photo or video, labelled; bad input: one line on the page."""
        try:
            return self.label_file(Path(path))
        except UserError as error:  # say the file's name, not where Gradio keeps it
            message = str(error).replace(path, Path(path).name)
            import gradio as gr

            raise gr.Error(html.escape(message), print_exception=False) from None

    def label_file(self, path: Path) -> tuple:
        check_upload(path, self.cfg.max_megapixels)
        source = vt.Source(str(path), str(path))
        results = Path(tempfile.mkdtemp(dir=FOLDER))
        labelled = results / f"{path.stem}_labelled{'.jpg' if source.is_still else '.webm'}"
        log = results / f"{path.stem}_faces.csv"
        cfg = argparse.Namespace(**{**vars(self.cfg), "output": str(labelled), "log": str(log)})
        pipeline = self.pipeline.copy()
        try:
            history, frames = vt.label(source, pipeline, cfg, max_frames=self.cfg.max_frames)
        finally:
            source.release()
        faces = pipeline.tracker.next_id - 1
        status = f"**{html.escape(path.name)}**: {faces} face{'s' * (faces != 1)}"
        if not source.is_still:
            status += f" in {frames} frames"
            if frames == self.cfg.max_frames and source.total != frames:
                total = f" of {source.total}" if source.total else ""
                status += f" (the first {frames}{total}: --max-frames)"
        table = plot = None
        if history:
            summary = vt.summarize(history)
            plot = str(results / f"{path.stem}_summary.png")
            vt.plot_summary(history, summary, plot)
            table = vt.format_summary(summary).rename_axis("face").reset_index()
        still = source.is_still
        import gradio as gr

        return (
            gr.Image(str(labelled) if still else None, visible=still),
            gr.Video(None if still else str(labelled), visible=not still),
            table,
            plot,
            str(log),
            status,
        )


def check_upload(path: Path, max_megapixels: float) -> None:
    """Refuse an empty file, and a photo too large to label, before decoding it."""
    if path.stat().st_size == 0:
        raise UserError(f"{path.name} is empty")
    if path.suffix.lower() not in fer.IMAGE_SUFFIXES:
        return
    try:
        with Image.open(path) as image:  # reads the header only
            width, height = image.size
    except Image.DecompressionBombError:  # over Pillow's own limit, 179 megapixels
        width = height = 100_000
    except OSError:
        return  # not an image Pillow reads: OpenCV says so
    if width * height > max_megapixels * 1e6:
        raise UserError(
            f"{path.name} is {width}x{height} pixels, over the {max_megapixels:g} megapixel "
            "limit (--max-megapixels): send a smaller copy"
        )


# --------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------


def page(demo: WebDemo) -> gr.Blocks:
    import gradio as gr

    with gr.Blocks(title="Facial emotion recognition", analytics_enabled=False) as blocks:
        gr.Markdown(
            "# Facial emotion recognition\n"
            "Every face gets a box, one of 7 emotions and its confidence; grey: uncertain."
        )
        with gr.Tab("Webcam"), gr.Row():
            webcam = gr.Image(sources=["webcam"], streaming=True, label="Webcam")
            live_view = gr.HTML(css_template="img { width: 100%; }", elem_id="live")
        with gr.Tab("Photo or video"):
            upload = gr.File(label="A photo or video", file_types=["image", "video"],
                             elem_id="upload")  # fmt: skip
            status = gr.Markdown(elem_id="status")
            photo = gr.Image(label="Labelled", visible=False, elem_id="photo")
            video = gr.Video(label="Labelled", visible=False, elem_id="video")
            table = gr.Dataframe(label="Each face: frames, seconds, main emotion, share per "
                                 "emotion", elem_id="faces")  # fmt: skip
            plot = gr.Image(label="Each face's emotion over time", show_label=False)
            log = gr.File(label="CSV log: one row per face per frame", elem_id="log")
        live = gr.State()
        webcam.stream(demo.label_webcam, [webcam, live], [live_view, live],
                      stream_every=demo.cfg.stream_every, concurrency_limit=None,
                      show_progress="hidden")  # fmt: skip
        upload.upload(demo.label_upload, upload, [photo, video, table, plot, log, status])
    return blocks


def main() -> None:
    cfg = parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as on Ctrl-C: tidy up
    blocks = page(WebDemo(cfg))
    try:
        blocks.launch(
            server_name=cfg.host,
            server_port=cfg.port,
            share=cfg.share,
            max_file_size=cfg.max_upload_mb * 2**20,
            allowed_paths=[str(FOLDER)],
            ssr_mode=False,
            run_history=False,
        )
    except OSError as error:  # the port is taken, or the host is not this machine's
        reason = fer.first_line(error).split(". ")[0]  # without Gradio's advice on its own API
        raise UserError(f"cannot serve on {cfg.host}:{cfg.port} ({reason}): try another --port "
                        "or --host") from None  # fmt: skip


if __name__ == "__main__":
    fer.run_cli(main)
