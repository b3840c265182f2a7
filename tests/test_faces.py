"""Faces found in real footage: recall through cuts, motion and missed searches,
the YuNet download and its fallback, upright crops, and the FPS figure."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import (
    PHOTOS,
    ROOT,
    SAMPLE_FACE,
    SAMPLE_PHOTO,
    assert_one_line_error,
    run_script,
)

import fer_common as fer
import fer_faces
import video_tester as vt

SHARED_YUNET = ROOT.parent / "shared" / "yunet" / "face_detection_yunet_2023mar.onnx"
needs_yunet = pytest.mark.skipif(not SHARED_YUNET.is_file(), reason=f"no YuNet at {SHARED_YUNET}")
DETECTORS = [
    pytest.param(["--detector", "haar"], id="haar"),
    pytest.param(["--detector", "yunet", "--detector-model", str(SHARED_YUNET)], id="yunet",
                 marks=needs_yunet),
]  # fmt: skip


def pipeline(*options: str) -> vt.Pipeline:
    return vt.Pipeline(vt.parse_args(["--model", str(ROOT / "models"), *options]))


# --------------------------------------------------------------------------
# Every face, every frame
# --------------------------------------------------------------------------

FRAME = (640, 360)


def shot(photo: str, scale: float, start: tuple[int, int], step: tuple[int, int], frames: int):
    """A camera panning over a photo: (frame, the faces' boxes in it) per frame."""
    image = cv2.imread(str(PHOTOS / photo))
    image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    pad = 150  # room to pan; repeated edges hold no faces
    image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    cascade = cv2.CascadeClassifier(vt.CASCADE)
    faces = cascade.detectMultiScale(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), 1.1, 8)
    for i in range(frames):
        x, y = start[0] + step[0] * i, start[1] + step[1] * i
        yield image[y : y + FRAME[1], x : x + FRAME[0]].copy(), faces - [x, y, 0, 0]


def clip_with_cuts():
    """Three shots, cut between searches (frames 32 and 62): one face, two, one."""
    return [
        *shot("obama-720p.jpg", 0.6, (150, 120), (4, 1), 32),
        *shot("two_people.jpg", 0.7, (300, 150), (-4, -3), 30),
        *shot("obama-720p.jpg", 0.6, (320, 100), (-3, 0), 20),
    ]


@pytest.mark.parametrize("detector", DETECTORS)
def test_every_face_of_a_clip_with_cuts_and_motion_is_labelled(detector):
    run = pipeline(*detector)
    for index, (frame, faces) in enumerate(clip_with_cuts()):
        assert (faces[:, :2] >= 0).all() and (faces[:, :2] + faces[:, 2:] <= FRAME).all()
        boxes = np.array([track.box for track in run(frame)]).reshape(-1, 4)
        overlap = fer_faces.iou(faces, boxes)
        assert (overlap.max(axis=1, initial=0) >= 0.4).all(), f"frame {index}: a face missed"
        assert (overlap.max(axis=0, initial=0) >= 0.4).all(), f"frame {index}: a box on no face"


def test_a_face_that_searches_miss_stays_labelled(monkeypatch):
    """A search that misses a face (a turned head, a blur) does not take its label
    away while the face can still be followed."""
    run = pipeline("--detector", "haar", "--detect-every", "3", "--full-search-every", "1")
    search, searches = run.finder.detector, []

    def forgetful(frame, gray):
        searches.append(frame)
        boxes, angles = search(frame, gray)
        return (boxes[:0], angles[:0]) if len(searches) in (2, 3) else (boxes, angles)

    monkeypatch.setattr(run.finder, "detector", forgetful)
    photo = cv2.imread(str(SAMPLE_PHOTO))
    height, width = photo.shape[:2]
    for dx in [0, 2, 4, 2, 0, -2, -4, -2, 0, 2, 4, 2]:
        shift = np.float32([[1, 0, dx], [0, 1, 0]])
        tracks = run(cv2.warpAffine(photo, shift, (width, height), borderMode=cv2.BORDER_REPLICATE))
        assert [track.id for track in tracks] == [1]
        assert np.abs(tracks[0].box[:2] - np.add(SAMPLE_FACE[:2], (dx, 0))).max() <= 3
    assert len(searches) == 4  # frames 0, 3, 6, 9: two of them found nothing


def test_searches_between_whole_frame_ones_look_only_where_the_picture_changed(monkeypatch):
    """A shaking camera over an empty room: the periodic searches find nothing
    changed and do not run; a face steps in: the next search looks around it only,
    and finds it where it is in the frame."""
    run = pipeline("--detector", "haar", "--detect-every", "3", "--full-search-every", "100")
    search, searched = run.finder.detector, []

    def noted(frame, gray):
        searched.append(gray.shape)
        return search(frame, gray)

    monkeypatch.setattr(run.finder, "detector", noted)
    photo = cv2.imread(str(SAMPLE_PHOTO))
    x, y, w, h = SAMPLE_FACE
    room = photo.copy()
    room[y - h // 4 : y + h + h // 4, x - w // 4 : x + w + w // 4] = np.median(photo, axis=(0, 1))
    height, width = photo.shape[:2]
    for frame, dx in enumerate([0, 2, 4, 2, 0, -2, 0]):
        shift = np.float32([[1, 0, dx], [0, 1, 0]])
        scene = photo if frame >= 5 else room  # the face steps in at frame 5
        tracks = run(cv2.warpAffine(scene, shift, (width, height), borderMode=cv2.BORDER_REPLICATE))
        assert len(tracks) == (frame == 6)
    assert np.abs(tracks[0].box - np.add(SAMPLE_FACE, (dx, 0, 0, 0))).max() <= 3
    # frame 0: the whole frame; 3: nothing changed, no search; 6: around the face
    assert len(searched) == 2 and searched[0] == (height, width)
    assert searched[1][0] * searched[1][1] < height * width / 2


# --------------------------------------------------------------------------
# YuNet: downloaded once, checked, or the Haar cascade
# --------------------------------------------------------------------------


@pytest.fixture
def server():
    """A web server on 127.0.0.1 with /good.onnx (YuNet, where the shared copy is)
    and /bad.onnx (other bytes); yields its address."""
    files = {"/bad.onnx": bytes(1000)}
    if SHARED_YUNET.is_file():
        files["/good.onnx"] = SHARED_YUNET.read_bytes()

    class Files(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = files.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):  # quiet
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Files)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def closed_port() -> str:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{free.getsockname()[1]}/yunet.onnx"


@needs_yunet
def test_download_checks_the_file_and_writes_it_whole(server, tmp_path: Path, capsys):
    target = tmp_path / "models" / "yunet.onnx"
    assert fer_faces.download_yunet(target, f"{server}/good.onnx")
    assert hashlib.sha256(target.read_bytes()).hexdigest() == fer_faces.YUNET_SHA256
    assert [p.name for p in target.parent.iterdir()] == ["yunet.onnx"]  # no temporary file
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 1 and "SHA-256 checked" in out


@pytest.mark.parametrize("where", ["wrong checksum", "no server", "no such file"])
def test_failed_download_leaves_nothing_and_says_so_in_one_line(where, server, tmp_path, capsys):
    url = {"wrong checksum": f"{server}/bad.onnx", "no server": closed_port(),
           "no such file": f"{server}/missing.onnx"}[where]  # fmt: skip
    target = tmp_path / "models" / "yunet.onnx"
    assert not fer_faces.download_yunet(target, url)
    assert not target.parent.exists() or not any(target.parent.iterdir())
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 1 and "failed" in out and "Haar cascade" in out
    if where == "wrong checksum":
        assert "SHA-256" in out


def detector_for(options: list[str], yunet_at: Path, url: str, monkeypatch):
    monkeypatch.setattr(fer_faces, "YUNET_PATH", yunet_at)
    monkeypatch.setattr(fer_faces, "YUNET_URL", url)
    return fer_faces.make_detector(vt.parse_args(options))


@needs_yunet
def test_yunet_is_downloaded_once_into_models(server, tmp_path, monkeypatch, capsys):
    target = tmp_path / "models" / "yunet.onnx"
    detector = detector_for(["--detector", "yunet"], target, f"{server}/good.onnx", monkeypatch)
    assert isinstance(detector, fer_faces.YuNetDetector) and target.is_file()
    assert "SHA-256 checked" in capsys.readouterr().out
    detector = detector_for(["--detector", "yunet"], target, closed_port(), monkeypatch)
    assert isinstance(detector, fer_faces.YuNetDetector)  # the copy at hand: no download
    assert capsys.readouterr().out == ""


def test_offline_yunet_falls_back_to_the_haar_cascade(tmp_path, monkeypatch, capsys):
    options = ["--detector", "yunet"]
    detector = detector_for(options, tmp_path / "yunet.onnx", closed_port(), monkeypatch)
    assert isinstance(detector, fer_faces.HaarDetector)
    assert "using the Haar cascade" in capsys.readouterr().out


def test_auto_takes_yunet_only_when_its_file_is_at_hand(tmp_path, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("auto must not download")

    monkeypatch.setattr(fer_faces.urllib.request, "urlopen", no_download)
    target = tmp_path / "yunet.onnx"
    assert isinstance(detector_for([], target, "", monkeypatch), fer_faces.HaarDetector)
    if SHARED_YUNET.is_file():
        target.write_bytes(SHARED_YUNET.read_bytes())
        assert isinstance(detector_for([], target, "", monkeypatch), fer_faces.YuNetDetector)


def test_a_missing_or_broken_detector_model_is_a_one_line_error(tmp_path: Path):
    with pytest.raises(fer.UserError, match="no YuNet model at"):
        fer_faces.make_detector(vt.parse_args(["--detector-model", str(tmp_path / "no.onnx")]))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a network")
    result = run_script("video_tester.py", "--source", str(SAMPLE_PHOTO), "--no-display",
                        "--detector-model", str(broken))  # fmt: skip
    assert_one_line_error(result, "cannot load the YuNet face detector", "broken.onnx")


# --------------------------------------------------------------------------
# Upright faces
# --------------------------------------------------------------------------


def turned(image: np.ndarray, centre: tuple[float, float], degrees: float) -> np.ndarray:
    """The image turned counter-clockwise by `degrees` about `centre`."""
    turn = cv2.getRotationMatrix2D(centre, degrees, 1.0)
    size = (image.shape[1], image.shape[0])
    return cv2.warpAffine(image, turn, size, borderMode=cv2.BORDER_REPLICATE)


def likeness(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


def test_upright_face_undoes_a_known_turn():
    gray = cv2.imread(str(SAMPLE_PHOTO), cv2.IMREAD_GRAYSCALE)
    box = np.array(SAMPLE_FACE)
    centre = (box[0] + box[2] / 2, box[1] + box[3] / 2)
    upright = fer_faces.upright_face(gray, box, 0.0, fer.FACE_MARGIN)
    assert likeness(upright, fer.crop_faces(gray, box[None])[0, :, :, 0]) > 0.99
    for degrees in (-25, 25):
        leaning = turned(gray, centre, degrees)  # its eyes now lean by -degrees
        aligned = fer_faces.upright_face(leaning, box, -degrees, fer.FACE_MARGIN)
        plain = fer.crop_faces(leaning, box[None])[0, :, :, 0]
        assert likeness(aligned, upright) > 0.97 > likeness(plain, upright) + 0.1


@needs_yunet
def test_yunet_reads_how_a_face_leans_from_its_eyes():
    """With test_upright_face_undoes_a_known_turn: the eyes end up level."""
    detector = fer_faces.YuNetDetector(SHARED_YUNET, vt.MIN_SCORE)
    photo = cv2.imread(str(PHOTOS / "obama-720p.jpg"))
    (box,), (lean,) = detector(photo, None)
    centre = (box[0] + box[2] / 2, box[1] + box[3] / 2)
    for degrees in (-10, 10):
        _, (angle,) = detector(turned(photo, centre, degrees), None)
        assert abs(angle - (lean - degrees)) < 3  # the eye line turned with the picture


# --------------------------------------------------------------------------
# Frames per second
# --------------------------------------------------------------------------


def test_frame_rate_is_the_runs_rate_over_the_last_second():
    now = [0.0]
    rate = vt.FrameRate(window=1.0, clock=lambda: now[0])

    def frames(count: int, seconds_each: float) -> float:
        for _ in range(count):
            now[0] += seconds_each
            fps = rate.tick()
        return fps

    assert frames(50, 0.02) == pytest.approx(50)  # the first second: 50 frames
    assert frames(1, 0.0001) == pytest.approx(51 / 1.0001, rel=0.03)  # no face: not 10,000
    assert frames(60, 0.1) == pytest.approx(10)  # slower now: the last second shows it
    assert frames(3, 2.0) == pytest.approx(0.5)  # slower than one frame a second
