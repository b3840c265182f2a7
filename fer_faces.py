"""Where the faces are, frame after frame: two face detectors (OpenCV's Haar
cascade and YuNet, downloaded once), faces followed between whole-frame searches,
an id per face with smoothed probabilities, and upright 48x48 crops."""

from __future__ import annotations

import argparse
import hashlib
import http.client
import urllib.request
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

import fer_common as fer
from fer_common import UserError

# YuNet (Wu, Peng, Yu 2023; MIT License), as the OpenCV model zoo publishes it.
YUNET_URL = (
    "https://github.com/opencv/opencv_zoo/raw/main/"
    "models/face_detection_yunet/face_detection_yunet_2023mar.onnx"
)
YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
YUNET_BYTES = 232_589
YUNET_PATH = Path(__file__).resolve().parent / "models" / "face_detection_yunet_2023mar.onnx"
DOWNLOAD_TIMEOUT = 30  # seconds without an answer before the download gives up

TEMPLATE_SIZE = 24  # px: faces are followed between searches at this size
FOLLOW_SCORE = 0.5  # template match a followed face needs; below, the face is lost
CUT_THRESHOLD = 30  # mean grey-level change of a 32x24 thumbnail that counts as a camera cut
# Where the picture changed: a pixel has changed when it is this many grey levels
# outside the range of its old neighbours within SHAKE px (a shaking camera moves
# the whole picture a few pixels); a 16x16 cell when a quarter of its pixels have.
CHANGE_THRESHOLD = 25
SHAKE = 7
CHANGE_CELL = 16
CHANGE_SHARE = 0.25
UNCERTAIN = "uncertain"  # the label shown when a face's top probability is too low


# --------------------------------------------------------------------------
# Detectors: (BGR frame, its grayscale) -> boxes (N, 4) as x, y, w, h, and
# angles (N,): degrees each face leans (turning it by that sets its eyes level)
# --------------------------------------------------------------------------


class HaarDetector:
    """OpenCV's frontal-face Haar cascade: always at hand, upright faces only."""

    def __init__(self, path: str, scale_factor: float, min_neighbors: int, min_face: int):
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise UserError(f"cannot load the face detector {path}")
        self.options = {"scaleFactor": scale_factor, "minNeighbors": min_neighbors,
                        "minSize": (min_face, min_face)}  # fmt: skip

    def __call__(self, frame: np.ndarray, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        boxes = np.asarray(self.cascade.detectMultiScale(gray, **self.options), int).reshape(-1, 4)
        # Left to right: OpenCV's threads return them in any order, and new faces get
        # their ids in this order (every run over a file must give the same ids).
        boxes = boxes[np.lexsort((boxes[:, 1], boxes[:, 0]))]
        return boxes, np.zeros(len(boxes))


class YuNetDetector:
    """YuNet through cv2.FaceDetectorYN: tilted, turned and small faces too, with
    five landmarks per face (eyes, nose tip, mouth corners)."""

    def __init__(self, path: str | Path, min_score: float):
        self.size = (320, 320)  # the frame size it expects; set anew for each new size
        try:
            self.net = cv2.FaceDetectorYN.create(str(path), "", self.size, min_score)
        except cv2.error as error:
            raise UserError(
                f"cannot load the YuNet face detector {path} ({fer.first_line(error)}): "
                "delete it to download it again, or pass --detector haar"
            ) from None

    def __call__(self, frame: np.ndarray, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        size = (frame.shape[1], frame.shape[0])
        if size != self.size:
            self.net.setInputSize(size)
            self.size = size
        found = self.net.detect(frame)[1]
        found = np.zeros((0, 15), np.float32) if found is None else found
        x, y, w, h = found[:, :4].T
        side = np.sqrt(w * h)  # a square as big as the box: the Haar cascade's framing
        boxes = np.stack([x + (w - side) / 2, y + (h - side) / 2, side, side], axis=1)
        right_eye, left_eye = found[:, 4:6], found[:, 6:8]  # the person's: image left, right
        dx, dy = (left_eye - right_eye).T
        return np.round(boxes).astype(int).reshape(-1, 4), np.degrees(np.arctan2(dy, dx))


def make_detector(cfg: argparse.Namespace) -> HaarDetector | YuNetDetector:
    """The detector `cfg.detector` names: "haar", "yunet" (downloaded into models/
    the first time; the Haar cascade when that fails), or "auto": YuNet when its
    file is at hand, else the Haar cascade."""
    path = Path(cfg.detector_model or YUNET_PATH)
    if cfg.detector_model and cfg.detector != "haar" and not path.is_file():
        raise UserError(f"no YuNet model at {path} (--detector-model)")
    wanted = cfg.detector == "yunet" or (cfg.detector == "auto" and path.is_file())
    if wanted and (path.is_file() or download_yunet(path)):
        return YuNetDetector(path, cfg.min_score)
    return HaarDetector(cfg.cascade, cfg.scale_factor, cfg.min_neighbors, cfg.min_face)


def download_yunet(path: Path, url: str | None = None) -> bool:
    """Fetch YuNet from the OpenCV model zoo into `path`, check its SHA-256 and
    write it atomically; one line says how it went. False when it failed."""
    url = url or YUNET_URL
    print(f"downloading the YuNet face detector to {path}:", end=" ", flush=True)
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response:
            data = response.read(YUNET_BYTES + 1)  # more than that cannot be the file
    except (OSError, ValueError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)  # urllib's, without "<urlopen error ...>"
        print(f"failed ({fer.first_line(reason)}); using the Haar cascade")
        return False
    digest = hashlib.sha256(data).hexdigest()
    if digest != YUNET_SHA256:
        print(f"failed (SHA-256 {digest[:16]}..., expected {YUNET_SHA256[:16]}...); "
              "using the Haar cascade")  # fmt: skip
        return False
    with fer.atomic_path(path) as tmp:
        tmp.write_bytes(data)
    print("done, SHA-256 checked")
    return True


# --------------------------------------------------------------------------
# Faces in each frame: searched now and then, followed in between
# --------------------------------------------------------------------------


@dataclass
class Faces:
    """The faces of one frame."""

    boxes: np.ndarray  # (N, 4) x, y, w, h
    angles: np.ndarray  # (N,) degrees each face leans
    found: np.ndarray  # (N,) bool: found by a search (else followed)
    searched: bool  # whether a whole-frame search ended this frame
    looked: np.ndarray  # (N,) bool: a search ended this frame and looked where the face is


def faces_of(
    boxes: np.ndarray,
    angles: np.ndarray,
    followed: list[tuple[Track, np.ndarray]],
    searched: bool,
    region: tuple[int, int, int, int] | None = (0, 0, 0, 0),
) -> Faces:
    """Faces from a search's boxes and angles, then the followed faces it did not find.
    `region`: where a search looked (x0, y0, x1, y1; None: the whole frame; the
    default, empty: nowhere)."""
    followed_boxes = np.reshape([box for _, box in followed], (-1, 4)).astype(int)
    if region is None:
        looked = np.ones(len(followed_boxes), bool)
    else:
        x0, y0, x1, y1 = region
        x, y, w, h = followed_boxes.T
        looked = (x >= x0) & (y >= y0) & (x + w <= x1) & (y + h <= y1)
    return Faces(
        boxes=np.concatenate([np.reshape(boxes, (-1, 4)), followed_boxes]).astype(int),
        angles=np.concatenate([angles, [track.angle for track, _ in followed]]),
        found=np.arange(len(boxes) + len(followed)) < len(boxes),
        searched=searched,
        looked=np.concatenate([np.ones(len(boxes), bool), looked]),
    )  # fmt: skip


class FaceFinder:
    """Finds the faces of each frame. The detector searches every `detect_every`
    frames, and the whole frame at once after a camera cut or when a face is lost;
    in between, each face is followed by matching its look near its last box (a
    fraction of a millisecond per face, where a search takes tens). A face that a
    search misses stays as long as it can be followed.

    A new face changes the picture where it appears, so the periodic searches look
    only where the picture changed since they last looked there (nothing changed:
    no search). The whole frame again after a search that found a new face (a
    search misses some faces, and faces come in groups), and every
    `full_search_every`-th time, for a face that the searches missed by chance."""

    def __init__(self, detector, detect_every: int, min_iou: float, full_search_every: int = 1):
        self.detector, self.detect_every, self.min_iou = detector, detect_every, min_iou
        self.full_search_every = full_search_every
        self.since_search = detect_every  # search the first frame
        self.periodic_searches = 0
        self.whole_frame_next = True
        self.thumbnail: np.ndarray | None = None
        self.searched_gray: np.ndarray | None = None  # the frame as the searches last saw it
        self.searcher: ThreadPoolExecutor | None = None  # see search_in_background
        self.search: Future | None = None

    def search_in_background(self) -> None:
        """Run the whole-frame searches in a thread, for a live camera: a search
        takes several frames' time, and the frames keep coming meanwhile (its
        faces join a few frames late). Files keep the search in line, so that
        every run over them gives the same result."""
        self.searcher = ThreadPoolExecutor(1, thread_name_prefix="face-search")

    def close(self) -> None:
        if self.searcher is not None:
            self.searcher.shutdown(cancel_futures=True)

    def __call__(
        self, frame: np.ndarray, gray: np.ndarray, tracks: list[Track], new_scene: bool = False
    ) -> Faces:
        """The faces of this frame; `tracks` are those of the last frame."""
        cut = new_scene or self.cut(gray)
        followed = [] if cut else self.follow(gray, tracks)
        self.since_search += 1
        region = None  # the whole frame
        due = cut or len(followed) < len(tracks)
        if not due and self.since_search >= self.detect_every:
            due, region = True, self.changed_region(gray)
        found = self.search_if(due, frame, gray, region)
        if found is None:
            return faces_of([], np.zeros(0), followed, searched=False)
        self.since_search = 0
        boxes, angles = found
        missed = [(track, box) for track, box in followed
                  if not (iou(box[None], boxes) >= self.min_iou).any()]  # fmt: skip
        self.whole_frame_next = len(boxes) > len(followed) - len(missed)  # a face not followed
        return faces_of(boxes, angles, missed, searched=region is None, region=region)

    def search_if(
        self, due: bool, frame: np.ndarray, gray: np.ndarray, region: tuple | None = None
    ):
        """The detector's (boxes, angles) when a search ends this frame, else None."""
        if self.searcher is None:
            return self.detect(frame, gray, region) if due else None
        if due and self.search is None:  # the frame is drawn on meanwhile: search a copy
            self.search = self.searcher.submit(self.detect, frame.copy(), gray, region)
        if self.search is not None and self.search.done():
            result, self.search = self.search.result(), None
            return result
        return None

    def detect(
        self, frame: np.ndarray, gray: np.ndarray, region: tuple[int, int, int, int] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The detector's boxes and angles in `region` (x0, y0, x1, y1; None: everywhere)."""
        if region is None:
            return self.detector(frame, gray)
        x0, y0, x1, y1 = region
        if x1 <= x0 or y1 <= y0:
            return np.zeros((0, 4), int), np.zeros(0)
        boxes, angles = self.detector(frame[y0:y1, x0:x1], gray[y0:y1, x0:x1])
        return np.add(boxes, (x0, y0, 0, 0)), angles

    def changed_region(self, gray: np.ndarray) -> tuple[int, int, int, int] | None:
        """Where the picture changed since the searches last looked there (x0, y0,
        x1, y1; empty if nowhere), widened so that a face there fits in; None: the
        whole frame (see the class's docstring)."""
        last, self.periodic_searches = self.searched_gray, self.periodic_searches + 1
        if (
            last is None
            or last.shape != gray.shape
            or self.whole_frame_next
            or self.periodic_searches % self.full_search_every == 0
        ):
            self.searched_gray = gray.copy()
            return None
        near = np.ones((2 * SHAKE + 1, 2 * SHAKE + 1), np.uint8)
        change = cv2.max(cv2.subtract(gray, cv2.dilate(last, near)),
                         cv2.subtract(cv2.erode(last, near), gray))  # fmt: skip
        change[:SHAKE], change[-SHAKE:], change[:, :SHAKE], change[:, -SHAKE:] = 0, 0, 0, 0
        height, width = gray.shape
        cells = cv2.resize(np.uint8(change > CHANGE_THRESHOLD), (width // CHANGE_CELL,
                           height // CHANGE_CELL), interpolation=cv2.INTER_AREA)  # fmt: skip
        rows, columns = np.nonzero(cells >= CHANGE_SHARE)
        if len(rows) == 0:
            return 0, 0, 0, 0
        top, bottom, left, right = rows.min(), rows.max() + 1, columns.min(), columns.max() + 1
        pad_y, pad_x = (bottom - top) // 2 + 1, (right - left) // 2 + 1  # a face reaches beyond
        x0, x1 = max(left - pad_x, 0) * CHANGE_CELL, min((right + pad_x) * CHANGE_CELL, width)
        y0, y1 = max(top - pad_y, 0) * CHANGE_CELL, min((bottom + pad_y) * CHANGE_CELL, height)
        last[y0:y1, x0:x1] = gray[y0:y1, x0:x1]
        return x0, y0, x1, y1

    def cut(self, gray: np.ndarray) -> bool:
        """Whether the picture changed at once, as at a camera cut."""
        small = cv2.resize(gray, (32, 24), interpolation=cv2.INTER_AREA).astype(np.float32)
        last, self.thumbnail = self.thumbnail, small
        return last is not None and float(np.abs(small - last).mean()) > CUT_THRESHOLD

    def follow(self, gray: np.ndarray, tracks: list[Track]) -> list[tuple[Track, np.ndarray]]:
        """(track, new box) for each face found again near its last box, by its look
        when a search last found it."""
        height, width = gray.shape[:2]
        followed = []
        for track in tracks:
            if track.template is None:
                continue
            x, y, w, h = track.box
            scale = TEMPLATE_SIZE / w
            x0, y0 = max(x - w // 2, 0), max(y - h // 2, 0)
            x1, y1 = min(x + w + w // 2, width), min(y + h + h // 2, height)
            if x1 - x0 < w or y1 - y0 < h:
                continue  # mostly out of the frame
            region = cv2.resize(gray[y0:y1, x0:x1], None, fx=scale, fy=scale,
                                interpolation=cv2.INTER_AREA)  # fmt: skip
            match = cv2.matchTemplate(region, track.template, cv2.TM_CCOEFF_NORMED)
            _, score, _, (mx, my) = cv2.minMaxLoc(match)
            if score >= FOLLOW_SCORE:
                box = np.array([x0 + round(mx / scale), y0 + round(my / scale), w, h])
                followed.append((track, box))
        return followed

    def remember(self, gray: np.ndarray, tracks: list[Track], faces: Faces) -> None:
        """Keep how each face that a search found looks now, and how it leans."""
        for track, found, angle in zip(tracks, faces.found, faces.angles):
            x, y, w, h = np.maximum(track.box, 0)
            face = gray[y : y + h, x : x + w]
            if found and face.size:
                size = (TEMPLATE_SIZE, TEMPLATE_SIZE)
                track.template = cv2.resize(face, size, interpolation=cv2.INTER_AREA)
                track.angle = float(angle)


# --------------------------------------------------------------------------
# Tracking: an id per face, and labels that do not flicker
# --------------------------------------------------------------------------


@dataclass
class Track:
    id: int
    box: np.ndarray  # x, y, w, h
    probabilities: np.ndarray  # smoothed over the frames so far
    raw: np.ndarray | None = None  # this frame's own probabilities, before smoothing
    label: str = ""  # what is shown: the emotion, or UNCERTAIN below the tracker's min_confidence
    missed: int = 0  # whole-frame searches in a row that did not find this face
    template: np.ndarray | None = None  # the face when a search last found it, small
    angle: float = 0.0  # degrees the face leant then

    @property
    def emotion(self) -> str:
        return fer.EMOTIONS[int(np.argmax(self.probabilities))]


class Tracker:
    """Follows faces from frame to frame by box overlap (IoU), smooths each face's
    probabilities with an exponential moving average, and labels a face UNCERTAIN
    while its smoothed top probability is below `min_confidence`."""

    def __init__(
        self, smoothing: float, min_iou: float, max_missed: int, min_confidence: float = 0.0
    ):
        self.smoothing, self.min_iou, self.max_missed = smoothing, min_iou, max_missed
        self.min_confidence = min_confidence
        self.tracks: list[Track] = []
        self.shown: list[Track] = []  # the last frame's tracks, to follow into the next
        self.next_id = 1

    def update(
        self,
        boxes: np.ndarray,
        probabilities: np.ndarray,
        searched: bool = True,
        found: np.ndarray | None = None,
        looked: np.ndarray | None = None,
    ) -> list[Track]:
        """The track of each box, in order: continued where a box overlaps one, else new.

        A search counts a miss for each face it looked for and did not find: a
        whole-frame search (`searched`) for every face, also those no longer in view;
        a search of part of the frame for the faces there (`looked`: which boxes a
        search covered). `found`: which boxes a search found (all by default; the
        others were followed). A face followed between searches keeps its count."""
        from scipy.optimize import linear_sum_assignment

        found = np.full(len(boxes), searched) if found is None else found
        looked = np.zeros(len(boxes), bool) if looked is None else looked
        overlap = iou(boxes, np.array([t.box for t in self.tracks]).reshape(-1, 4))
        rows, cols = linear_sum_assignment(overlap, maximize=True)
        matched = {r: self.tracks[c] for r, c in zip(rows, cols) if overlap[r, c] >= self.min_iou}
        if searched:
            for track in self.tracks:
                track.missed += 1
        shown = []
        for i, (box, probs) in enumerate(zip(boxes, probabilities)):
            track = matched.get(i)
            if track is None:
                track = Track(self.next_id, box, probs)
                self.next_id += 1
                self.tracks.append(track)
            else:
                track.box = box
                track.probabilities = (
                    self.smoothing * track.probabilities + (1 - self.smoothing) * probs
                )
            track.raw = probs
            sure = track.probabilities.max() >= self.min_confidence
            track.label = track.emotion if sure else UNCERTAIN
            if found[i]:
                track.missed = 0
            elif looked[i] and not searched:  # a search of part of the frame missed it
                track.missed += 1
            shown.append(track)
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        self.shown = [t for t in shown if t.missed <= self.max_missed]
        return shown

    def reset(self) -> None:
        """Forget every face (the next image shows another scene); ids keep counting."""
        self.tracks, self.shown = [], []


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in `a` with every box in `b` (x, y, w, h)."""
    a, b = a[:, None, :].astype(float), b[None, :, :].astype(float)
    a_end, b_end = a[..., :2] + a[..., 2:], b[..., :2] + b[..., 2:]
    sides = np.minimum(a_end, b_end) - np.maximum(a[..., :2], b[..., :2])
    inter = np.prod(np.clip(sides, 0, None), axis=-1)
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return inter / np.maximum(union, 1e-9)


# --------------------------------------------------------------------------
# Faces for the model
# --------------------------------------------------------------------------


def crop_upright(
    gray: np.ndarray, boxes: np.ndarray, angles: np.ndarray, margin: float = fer.FACE_MARGIN
) -> np.ndarray:
    """Cut each box, widened by `margin`, into a (N, 48, 48, 1) batch; a face that
    leans is turned upright first, as FER-2013's faces are."""
    leaning = np.asarray(angles) != 0
    faces = np.empty((len(boxes), fer.IMAGE_SIZE, fer.IMAGE_SIZE, 1), np.uint8)
    faces[~leaning] = fer.crop_faces(gray, boxes[~leaning], margin)
    for i in np.flatnonzero(leaning):
        faces[i, :, :, 0] = upright_face(gray, boxes[i], angles[i], margin)
    return faces


def crop_transform(
    box: np.ndarray, angle: float, margin: float, shape: tuple[int, ...]
) -> np.ndarray:
    """The 2x3 affine map from a frame of `shape` to the face as crop_upright cuts it
    (48x48): to draw what the model saw back onto the frame."""
    size = fer.IMAGE_SIZE
    if angle == 0:  # fer.crop_faces: the widened box, clipped at the border, resized
        x0, y0, x1, y1 = fer.face_region(box, margin, shape)
        sx, sy = size / (x1 - x0), size / (y1 - y0)
        return np.array([[sx, 0, -x0 * sx], [0, sy, -y0 * sy]])
    x, y, w, h = box
    centre = (x + w / 2, y + h / 2)
    turn = cv2.getRotationMatrix2D(centre, angle, size / upright_side(box, margin))
    turn[:, 2] += (size / 2 - centre[0], size / 2 - centre[1])
    return turn


def upright_side(box: np.ndarray, margin: float) -> float:
    """The side of the square, in frame pixels, that upright_face cuts around a box."""
    return max(box[2], box[3]) * (1 + 2 * margin)


def upright_face(
    gray: np.ndarray, box: np.ndarray, angle: float, margin: float, size: int = fer.IMAGE_SIZE
) -> np.ndarray:
    """The box, widened by `margin`, turned by `angle` degrees about its centre,
    as a `size` x `size` image."""
    x, y, w, h = box
    side = upright_side(box, margin)
    reach = int(np.ceil(side * np.sqrt(2)))  # holds the turned square at any angle
    region = cv2.getRectSubPix(gray, (reach, reach), (x + w / 2, y + h / 2))  # edges repeat
    scale = size / side
    # resize first, turn after: warpAffine alone would alias a big face
    small = cv2.resize(region, None, fx=scale, fy=scale, interpolation=fer.interpolation(scale))
    centre = (small.shape[1] / 2, small.shape[0] / 2)
    turn = cv2.getRotationMatrix2D(centre, angle, 1.0)
    turn[:, 2] += (size / 2 - centre[0], size / 2 - centre[1])
    return cv2.warpAffine(small, turn, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
