"""Face tracks, label smoothing, the threaded frame reader and the session summary."""

from __future__ import annotations

import itertools
import threading
import time

import cv2
import numpy as np
import pytest
from conftest import ROOT, SAMPLE_FACE, SAMPLE_PHOTO

import fer_common as fer
import fer_faces
import video_tester as vt

UNIFORM = np.full(len(fer.EMOTIONS), 1 / len(fer.EMOTIONS))


def one_hot(emotion: int) -> np.ndarray:
    return np.eye(len(fer.EMOTIONS))[emotion]


def new_tracker(**settings) -> fer_faces.Tracker:
    """A tracker with the demo's settings, but for `settings`."""
    defaults = {"smoothing": vt.SMOOTHING, "min_iou": vt.MIN_IOU, "max_missed": vt.MAX_MISSED}
    return fer_faces.Tracker(**{**defaults, **settings})


# --------------------------------------------------------------------------
# Tracker
# --------------------------------------------------------------------------


def test_iou_of_known_boxes():
    boxes = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 5, 5]])
    overlap = fer_faces.iou(boxes, boxes[:1])
    np.testing.assert_allclose(overlap[:, 0], [1.0, 50 / 150, 0.0])
    assert fer_faces.iou(boxes, np.zeros((0, 4))).shape == (3, 0)


def test_ids_survive_small_motion_and_new_faces_get_new_ids():
    tracker = new_tracker(smoothing=0.5)
    left, right = np.array([100, 100, 80, 80]), np.array([400, 120, 90, 90])
    first = tracker.update(np.array([left, right]), np.array([UNIFORM, UNIFORM]))
    ids = [track.id for track in first]
    assert ids == [1, 2]
    for step in range(1, 20):  # both faces drift a few pixels a frame; order swaps
        shift = np.array([3 * step, -2 * step, step // 4, step // 4])
        tracks = tracker.update(np.array([right + shift, left + shift]), np.array([UNIFORM] * 2))
        assert [track.id for track in tracks] == ids[::-1]
    newcomer = tracker.update(np.array([[700, 300, 60, 60]]), np.array([UNIFORM]))
    assert newcomer[0].id == 3


def test_a_face_lost_for_too_long_comes_back_with_a_new_id():
    tracker = new_tracker(max_missed=2)
    box = np.array([[50, 50, 60, 60]])
    assert tracker.update(box, np.array([UNIFORM]))[0].id == 1
    for _ in range(2):
        tracker.update(np.zeros((0, 4), int), np.zeros((0, 7)))
    assert tracker.update(box, np.array([UNIFORM]))[0].id == 1  # back within 2 misses
    for _ in range(3):
        tracker.update(np.zeros((0, 4), int), np.zeros((0, 7)))
    assert tracker.update(box, np.array([UNIFORM]))[0].id == 2


def test_frames_between_searches_do_not_count_as_misses():
    tracker = new_tracker(max_missed=1)
    box, none = np.array([[50, 50, 60, 60]]), np.zeros((0, 4), int)
    assert tracker.update(box, np.array([UNIFORM]))[0].id == 1
    tracker.update(none, np.zeros((0, 7)))  # one search misses it
    for _ in range(14):  # followed frames until the next search: not misses
        tracker.update(none, np.zeros((0, 7)), searched=False)
    assert tracker.update(box, np.array([UNIFORM]))[0].id == 1


def test_a_face_followed_but_never_found_again_ends_after_max_missed():
    tracker = new_tracker(max_missed=2)
    box, probabilities, followed = np.array([[50, 50, 60, 60]]), np.array([UNIFORM]), [False]
    assert tracker.update(box, probabilities)[0].id == 1
    for _ in range(2):  # searches that miss the face, still followed between them
        assert tracker.update(box, probabilities, found=followed)[0].id == 1
        assert tracker.update(box, probabilities, searched=False)[0].id == 1
    assert tracker.update(box, probabilities, found=followed)[0].id == 1  # the third miss
    assert tracker.shown == []  # shown one last time: not followed any further
    assert tracker.update(box, probabilities)[0].id == 2


def test_a_search_of_part_of_the_frame_counts_a_miss_only_for_the_faces_there():
    tracker = new_tracker(max_missed=1)
    inside, outside = np.array([50, 50, 60, 60]), np.array([400, 50, 60, 60])
    tracks = tracker.update(np.array([inside, outside]), np.array([UNIFORM] * 2))
    followed = list(zip(tracks, [inside, outside]))
    for _ in range(2):  # two searches of the left part, each finding nothing
        faces = fer_faces.faces_of(np.zeros((0, 4)), np.zeros(0), followed, searched=False,
                                   region=(0, 0, 300, 300))  # fmt: skip
        assert faces.looked.tolist() == [True, False]
        tracker.update(faces.boxes, np.array([UNIFORM] * 2), faces.searched, faces.found,
                       faces.looked)  # fmt: skip
    assert [track.id for track in tracker.shown] == [2]  # the face on the left is gone
    assert tracker.shown[0].missed == 0


def label_changes(probabilities: np.ndarray, smoothing: float) -> int:
    tracker = new_tracker(smoothing=smoothing)
    box = np.array([[10, 10, 50, 50]])
    shown = [tracker.update(box, p[None])[0].emotion for p in probabilities]
    return sum(a != b for a, b in itertools.pairwise(shown))


def test_smoothing_reduces_flips_on_a_noisy_sequence():
    rng = np.random.default_rng(0)
    steady = 0.45 * one_hot(3) + 0.35 * one_hot(6) + 0.2 * UNIFORM  # Happy, close to Neutral
    noisy = np.clip(steady + rng.normal(0, 0.12, (200, 7)), 1e-3, None)
    noisy /= noisy.sum(axis=1, keepdims=True)
    raw, smoothed = label_changes(noisy, 0.0), label_changes(noisy, vt.SMOOTHING)
    assert raw >= 20
    assert smoothed <= raw / 4


def test_smoothed_label_follows_a_real_change_within_a_few_frames():
    sequence = np.array([one_hot(3)] * 30 + [one_hot(0)] * 30) * 0.8 + 0.2 * UNIFORM
    tracker = new_tracker()
    box = np.array([[10, 10, 50, 50]])
    shown = [tracker.update(box, p[None])[0].emotion for p in sequence]
    assert shown[29] == "Happy"
    assert "Angry" in shown[30:34] and set(shown[34:]) == {"Angry"}


def haar_pipeline(*options: str) -> vt.Pipeline:
    return vt.Pipeline(vt.parse_args(["--model", str(ROOT / "models"), "--detector", "haar",
                                      *options]))  # fmt: skip


def test_tracks_follow_a_moving_face_between_detections():
    """Between full detections the face is followed by template matching."""
    photo = cv2.imread(str(SAMPLE_PHOTO))
    pipeline = haar_pipeline("--detect-every", "50")
    height, width = photo.shape[:2]
    for dx in range(0, 40, 4):  # the face slides 4 px right per frame
        shift = np.float32([[1, 0, dx], [0, 1, dx // 2]])
        frame = cv2.warpAffine(photo, shift, (width, height), borderMode=cv2.BORDER_REPLICATE)
        tracks = pipeline(frame)
        assert [track.id for track in tracks] == [1]
        x, y, _, _ = tracks[0].box
        assert abs(x - (SAMPLE_FACE[0] + dx)) <= 3 and abs(y - (SAMPLE_FACE[1] + dx // 2)) <= 3


def test_background_search_never_holds_up_a_frame(monkeypatch):
    """With a live camera the whole-frame search runs beside the frames: while it
    runs, frames go on (faces followed); its faces join when it is done."""
    pipeline = haar_pipeline()
    finder = pipeline.finder
    search = finder.detector
    release = threading.Event()

    def slow_search(frame, gray):
        release.wait(timeout=30)
        return search(frame, gray)

    monkeypatch.setattr(finder, "detector", slow_search)
    finder.search_in_background()
    photo = cv2.imread(str(SAMPLE_PHOTO))
    try:
        for _ in range(5):  # the search is still running: no face yet, no waiting
            started = time.perf_counter()
            assert pipeline(photo.copy()) == []
            assert time.perf_counter() - started < 5
        release.set()
        finder.search.result(timeout=30)
        tracks = pipeline(photo.copy())
        assert [track.id for track in tracks] == [1]
        assert np.abs(tracks[0].box - SAMPLE_FACE).max() <= 3
        assert [track.id for track in pipeline(photo.copy())] == [1]  # followed
    finally:
        release.set()
        finder.close()
    with pytest.raises(RuntimeError):  # closed: takes no more searches
        finder.searcher.submit(int)


# --------------------------------------------------------------------------
# Threaded frame reader
# --------------------------------------------------------------------------


class FakeCapture:
    """A camera or video that makes numbered frames, and notes how it is used."""

    def __init__(self, frames: int = 1000, delay: float = 0.0, fail_at: int | None = None):
        self.count, self.frames, self.delay, self.fail_at = 0, frames, delay, fail_at
        self.released = False
        self.reading = threading.Lock()

    def read(self):
        with self.reading:
            assert not self.released, "read after release"
            if self.fail_at is not None and self.count == self.fail_at:
                raise RuntimeError("camera unplugged")
            if self.count >= self.frames:
                return False, None
            time.sleep(self.delay)
            self.count += 1
            return True, np.full((4, 4, 3), self.count, np.int32)

    def release(self):
        with self.reading:  # a release during a read is what crashes real drivers
            self.released = True


def fake_source(capture: FakeCapture, camera: bool) -> vt.Source:
    source = vt.Source.__new__(vt.Source)
    source.spec, source.capture = ("0" if camera else "clip.mp4"), capture
    source.paths = source.total = source.reader = None
    return source


def test_video_frames_are_all_read_in_order():
    source = fake_source(FakeCapture(frames=50), camera=False)
    values = [int(frame[0, 0, 0]) for _, frame in source.frames()]
    source.release()
    assert values == list(range(1, 51))
    assert not source.reader.thread.is_alive() and source.capture.released


def test_camera_drops_stale_frames_instead_of_queueing_them():
    source = fake_source(FakeCapture(frames=400, delay=0.001), camera=True)
    values = []
    for _, frame in source.frames():
        values.append(int(frame[0, 0, 0]))
        time.sleep(0.02)  # a slow consumer: the camera makes ~20 frames meanwhile
    source.release()
    assert len(values) < 100  # most frames were dropped...
    assert all(b > a for a, b in itertools.pairwise(values))  # ...and none came late


def test_reader_is_released_when_the_consumer_stops_early_or_fails():
    for stop in ("break", "error"):
        capture = FakeCapture(delay=0.001)
        source = fake_source(capture, camera=False)
        try:
            for index, _ in enumerate(source.frames()):
                if index == 5:
                    if stop == "break":
                        break
                    raise ValueError("boom")
        except ValueError:
            pass
        finally:
            source.release()
        assert capture.released and not source.reader.thread.is_alive()


def test_a_failing_capture_is_a_user_error_not_a_hang():
    source = fake_source(FakeCapture(fail_at=7), camera=False)
    frames = []
    with pytest.raises(fer.UserError, match="reading frames failed: camera unplugged"):
        frames.extend(source.frames())
    source.release()
    assert len(frames) == 7 and source.capture.released


# --------------------------------------------------------------------------
# Session summary
# --------------------------------------------------------------------------


def test_summary_table_shares_per_track():
    history = [(0.0, 1, "Happy"), (0.1, 1, "Happy"), (0.2, 1, "Sad"), (0.3, 1, "Happy"),
               (0.0, 2, "Angry"), (0.5, 2, "Angry")]  # fmt: skip
    table = vt.summarize(history)
    assert table.loc[1, "Happy"] == 0.75 and table.loc[1, "Sad"] == 0.25
    assert table.loc[2, "Angry"] == 1.0 and table.loc[2, "mostly"] == "Angry"
    assert table.loc[1, "frames"] == 4 and table.loc[2, "seconds"] == 0.5
    np.testing.assert_allclose(table[list(fer.EMOTIONS)].sum(axis=1), 1.0)
