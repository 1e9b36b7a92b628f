"""The tracks' Kalman filter (perception.tracking.kalman) against norfair's and against a textbook filter."""
from __future__ import annotations

import numpy as np
from norfair.filter import OptimizedKalmanFilterFactory

from perception.tracking import ObjectTracker
from perception.tracking.config import TrackerConfig
from perception.tracking.kalman import CarriedKalmanFilterFactory
from perception.types import Detections

SCENE = np.full((480, 640, 3), 128, np.uint8)
# Frames the detector takes (10 fps) of a walker speeding up; in the last it misses the walker.
TAKEN = [0, 1, 4, 6, 9, 10, 13, 14, 17]
# Frames a detector running on every frame finds the walker in (missed in 11, 12 and after 13), and the last one.
FOUND = [*range(11), 13, 17]


def walker(frame: int) -> np.ndarray:
    x = 100.0 + 4.0 * frame + 0.25 * frame**2
    return np.array([x, 150.0 + 0.5 * frame, x + 60.0, 270.0 + 0.5 * frame], np.float32)


def textbook_estimate(carry: bool, config: TrackerConfig, taken: list[int] = TAKEN) -> np.ndarray:
    """The walker's box predicted at taken[-1] by a constant-velocity Kalman filter per coordinate started as
    norfair starts one (velocity 0, variances 10 and 1), matched at taken[1:-1]; its covariance carried over the
    frames between matches (carry) or, as norfair's filter does, over one frame whatever the gap."""
    first = walker(taken[0]).astype(np.float64)
    state = np.stack([first, np.zeros(4)])  # (position, velocity) x 4 coordinates
    covariance = np.array([[10.0, 0.0], [0.0, 1.0]])
    covariances = [covariance.copy() for _ in range(4)]
    for last, frame in zip(taken[:-2], taken[1:-1]):
        gap = frame - last
        span = gap if carry else 1
        step = np.array([[1.0, span], [0.0, 1.0]])
        for c in range(4):
            position, velocity = state[0, c] + gap * state[1, c], state[1, c]
            p = step @ covariances[c] @ step.T + span * config.kalman_process_noise * np.eye(2)
            gain = p[:, 0] / (p[0, 0] + config.kalman_measurement_noise)
            error = float(walker(frame)[c]) - position
            state[:, c] = [position + gain[0] * error, velocity + gain[1] * error]
            covariances[c] = p - np.outer(gain, p[0])
    return state[0] + (taken[-1] - taken[-2]) * state[1]


def coasting_box(how: str, config: TrackerConfig) -> np.ndarray:
    """The walker's box our tracker reports (coasting) in the last frame. how: "pace" (update_at_detector_pace on
    the frames TAKEN), "stride" (``update`` on every frame: ``None`` where the detector did not run, the period
    since its last run in TAKEN) or "every" (the detector runs on every frame and finds the walker in FOUND)."""
    tracker = ObjectTracker(config)
    tracker.set_phrases(["person"])
    tracks = []
    taken = FOUND if how == "every" else TAKEN
    for index, frame in enumerate(taken):
        seen = index < len(taken) - 1
        boxes = walker(frame)[None] if seen else np.zeros((0, 4), np.float32)
        detections = Detections(boxes, np.full(len(boxes), 0.8, np.float32), ["person"] * len(boxes))
        if how == "pace":
            tracks = tracker.update_at_detector_pace(detections, SCENE, frame / config.frame_rate)
        else:
            previous = taken[index - 1] if index else frame - 1
            stride = how == "stride"
            for _ in range(previous + 1, frame):
                tracker.update(None if stride else Detections(), frame=SCENE)
            tracks = tracker.update(detections, frame=SCENE, period=frame - previous if stride else 1)
    (track,) = tracks
    assert not track.matched
    return track.box_xyxy


def test_after_frames_the_detector_skipped_a_track_weighs_a_box_by_the_frames_since_it_was_last_seen():
    config = TrackerConfig()
    carried, one_frame = textbook_estimate(True, config), textbook_estimate(False, config)
    assert np.abs(carried - one_frame).max() > 3.0  # the two filters disagree by pixels on this walk
    # The node's path and a stride carry the covariance over the frames the tracker stepped unseen.
    np.testing.assert_allclose(coasting_box("pace", config), carried, atol=1e-3)
    np.testing.assert_allclose(coasting_box("stride", config), carried, atol=1e-3)
    # A detector on every frame that missed the walker keeps norfair's filter, which those settings were tuned on.
    every = textbook_estimate(False, config, FOUND)
    assert np.abs(textbook_estimate(True, config, FOUND) - every).max() > 0.05
    np.testing.assert_allclose(coasting_box("every", config), every, atol=1e-3)
    # Turned off (the crowd model's tuned settings), norfair's filter everywhere.
    off = TrackerConfig(kalman_carry=False)
    for how in ("pace", "stride"):
        np.testing.assert_allclose(coasting_box(how, off), textbook_estimate(False, off), atol=1e-3)


def test_without_carrying_the_filter_is_norfairs_to_the_bit():
    rng = np.random.default_rng(7)
    start = rng.uniform(0, 500, (2, 2))
    ours = CarriedKalmanFilterFactory(R=4.0, Q=0.1).create_filter(start)
    theirs = OptimizedKalmanFilterFactory(R=4.0, Q=0.1).create_filter(start)
    for frame in range(60):
        ours.predict()
        theirs.predict()
        if rng.random() < 0.6:  # matched in some frames, unmatched in others
            seen = (start + 3.0 * frame + rng.normal(0, 2.0, (2, 2))).reshape(4, 1)
            ours.update(seen)
            theirs.update(seen)
    for name in ("x", "pos_variance", "pos_vel_covariance", "vel_variance"):
        assert np.array_equal(getattr(ours, name), getattr(theirs, name)), name
