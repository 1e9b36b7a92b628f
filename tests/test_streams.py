"""The detect-and-track step the node and `gdino bag` share, and the annotation drawing, with the real
(tiny, random-weight) detector and the real tracker."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from tolerances import MODEL_ULPS, assert_within_ulps

from perception.detector import DetectorConfig, GroundingDinoDetector
from perception.drawing import draw_objects, draw_objects_yuv420, rgb_to_yuv, yuv420_planes
from perception.postprocess import PostprocessConfig
from perception.preprocess import PreprocessConfig
from perception.streams import LabeledBox, MultiStreamDetector
from perception.tracking.config import MotionConfig, TrackerConfig

pytestmark = pytest.mark.numeric


@pytest.fixture(scope="module")
def detector():
    config = DetectorConfig(preprocess=PreprocessConfig(shortest_edge=64, longest_edge=96),
                            postprocess=PostprocessConfig(box_threshold=0.0, text_threshold=0.0, max_detections=5))
    return GroundingDinoDetector.from_pretrained("random:tiny", config=config)


def images():
    generator = np.random.default_rng(3)
    return [generator.integers(0, 255, (64, 96, 3), dtype=np.uint8) for _ in range(2)]


def as_tuples(objects):
    return [(o.label, round(o.score, 4), tuple(np.round(o.box_xyxy, 2)), o.object_id) for o in objects]


def assert_same_objects(actual, expected):
    """Labels and ids exactly; scores and boxes within MODEL_ULPS, since a frame computed in another batch
    size may go through other CPU kernels."""
    assert [(o.label, o.object_id) for o in actual] == [(o.label, o.object_id) for o in expected]
    assert_within_ulps([o.score for o in actual], [o.score for o in expected], MODEL_ULPS, torch.float32)
    assert_within_ulps(np.array([o.box_xyxy for o in actual]).reshape(-1, 4),
                       np.array([o.box_xyxy for o in expected]).reshape(-1, 4), MODEL_ULPS, torch.float32)


def test_streams_in_one_batch_get_what_each_gets_alone(detector):
    first, second = images()
    together = MultiStreamDetector(detector, TrackerConfig(initialization_delay=0))
    together.set_prompt("a person . a car .")
    alone = MultiStreamDetector(detector, TrackerConfig(initialization_delay=0))
    alone.set_prompt("a person . a car .")
    for _ in range(3):
        batch = together.process([("left", first), ("right", second)])
        left = alone.process([("left", first)]).objects[0]
        right = alone.process([("right", second)]).objects[0]
        assert_same_objects(batch.objects[0], left)
        assert_same_objects(batch.objects[1], right)
        assert batch.model_seconds > 0
    # One tracker per stream: both streams number their tracks from the same start.
    assert sorted(o.object_id for o in batch.objects[0])[0] == sorted(o.object_id for o in batch.objects[1])[0]


def test_a_stream_repeated_in_a_batch_is_tracked_in_order(detector):
    first, _ = images()
    pipeline = MultiStreamDetector(detector, TrackerConfig(initialization_delay=0))
    assert pipeline.phrases is None
    with pytest.raises(RuntimeError, match="before set_prompt"):
        pipeline.process([("cam", first)])
    assert pipeline.set_prompt("a person .") == ["a person"]
    result = pipeline.process([("cam", first), ("cam", first), ("cam", first)])
    ids = [sorted(o.object_id for o in objects) for objects in result.objects]
    assert ids[0] and ids[0] == ids[1] == ids[2]  # the same objects keep their ids over the three frames
    assert all(o.label == "a person" for objects in result.objects for o in objects)


def test_camera_motion_compensation_gets_each_streams_frames(detector):
    # A camera that does not move: compensation finds no motion and changes no id.
    first, second = images()
    ids = []
    for motion in (MotionConfig(), MotionConfig(enabled=True, model="translation")):
        pipeline = MultiStreamDetector(detector, TrackerConfig(initialization_delay=0, motion=motion))
        pipeline.set_prompt("a person . a car .")
        results = [pipeline.process([("left", first), ("right", second)]) for _ in range(3)]
        ids.append([as_tuples(objects) for result in results for objects in result.objects])
    assert ids[0] == ids[1] and ids[0][0]


def test_without_tracking_every_detection_is_reported_with_an_empty_id(detector):
    first, _ = images()
    pipeline = MultiStreamDetector(detector, None)
    pipeline.set_prompt("a car .")
    objects = pipeline.process([("cam", first)]).objects[0]
    assert len(objects) == 5 and {o.object_id for o in objects} == {""}


@pytest.mark.parametrize("tracking", [True, False])
def test_a_refused_frame_costs_only_itself(detector, tracking):
    first, second = images()
    pipeline = MultiStreamDetector(detector, TrackerConfig(initialization_delay=0) if tracking else None)
    pipeline.set_prompt("a person . a car .")
    alone = MultiStreamDetector(detector, TrackerConfig(initialization_delay=0) if tracking else None)
    alone.set_prompt("a person . a car .")
    unusable = first.astype(np.float64)  # the detector takes uint8 images only
    result = pipeline.process([("left", first), ("bad", unusable), ("right", second)])
    assert result.objects[1] is None and isinstance(result.errors[1], TypeError)
    assert result.errors[0] is None and result.errors[2] is None
    expected = alone.process([("left", first), ("right", second)]).objects
    assert len(expected[0]) > 0
    assert_same_objects(result.objects[0], expected[0])
    assert_same_objects(result.objects[2], expected[1])


def test_drawing_outlines_each_box_and_leaves_the_input_alone():
    frame = np.zeros((40, 60, 3), np.uint8)
    objects = [LabeledBox("a cat", 0.9, np.array([10, 12, 30, 35], np.float32), "4"),
               LabeledBox("a dog", 0.5, np.array([35, 20, 55, 38], np.float32), "")]
    drawn = draw_objects(frame, objects)
    assert not frame.any()  # a copy was drawn on
    assert drawn[35, 20].any() and drawn[25, 10].any()  # bottom and left edges of the first box
    assert not drawn[25, 20].any()  # its inside stays untouched
    assert tuple(drawn[37, 45]) != tuple(drawn[35, 20])  # different objects, different colours
    again = draw_objects(frame, objects[:1])
    assert tuple(again[35, 20]) == tuple(drawn[35, 20])  # an id keeps its colour
    with pytest.raises(ValueError, match="uint8 RGB"):
        draw_objects(frame[:, :, 0], objects)


def to_yuv420(rgb: np.ndarray) -> np.ndarray:
    import av

    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray()


def to_rgb(planes: np.ndarray) -> np.ndarray:
    import av

    return av.VideoFrame.from_ndarray(planes, format="yuv420p").reformat(format="rgb24").to_ndarray()


@pytest.mark.parametrize("rgb", [(0, 0, 0), (255, 255, 255), (200, 30, 90), (20, 180, 240)])
def test_drawing_colours_convert_to_yuv_as_ffmpeg_does(rgb):
    planes = to_yuv420(np.full((4, 4, 3), rgb, np.uint8))
    y_plane, u_plane, v_plane = yuv420_planes(planes, 4, 4)
    expected = rgb_to_yuv(rgb)
    assert abs(int(y_plane[0, 0]) - expected[0]) <= 1
    assert abs(int(u_plane[0, 0]) - expected[1]) <= 1 and abs(int(v_plane[0, 0]) - expected[2]) <= 1


@pytest.mark.parametrize("size", [(96, 128), (90, 160)])  # height 90: chroma rows do not fill whole luma rows
def test_drawing_on_yuv420_planes_looks_like_drawing_on_rgb(size):
    height, width = size
    frame = np.random.default_rng(4).integers(60, 200, (height, width, 3), dtype=np.uint8)
    objects = [LabeledBox("a cat", 0.9, np.array([10, 30, 60, 80], np.float32), "4"),
               LabeledBox("a dog", 0.5, np.array([70, 20, 120, 70], np.float32), "")]
    planes = to_yuv420(frame)
    drawn = draw_objects_yuv420(planes, height, width, objects)
    assert np.array_equal(planes, to_yuv420(frame))  # a copy was drawn on
    changed = drawn != planes
    assert changed.any()
    y_before, _, _ = yuv420_planes(planes, height, width)
    y_after, u_after, v_after = yuv420_planes(drawn, height, width)
    reference = draw_objects(frame, objects)
    annotated = (reference != frame).any(axis=2)
    # Away from the annotations (two pixels of margin), each luma sample keeps its decoded value exactly.
    near = cv2.dilate(annotated.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert np.array_equal(y_after[~near], y_before[~near])
    # On the left edge of the first box the three planes carry its colour.
    expected = rgb_to_yuv(tuple(int(c) for c in draw_objects(np.zeros_like(frame), objects[:1])[55, 10]))
    assert (y_after[55, 10], u_after[55 // 2, 10 // 2], v_after[55 // 2, 10 // 2]) == expected
    # Seen as RGB, the annotations match draw_objects' up to 4:2:0 chroma, anti-aliasing and rounding.
    difference = np.abs(reference.astype(int) - to_rgb(drawn).astype(int)).max(axis=2)
    assert np.median(difference[annotated]) < 12, np.median(difference[annotated])  # 2 here; swapped U and V: 103
    with pytest.raises(ValueError, match="even sizes"):
        draw_objects_yuv420(planes, height + 1, width, objects)


def test_camera_stamps_time_the_trackers_and_a_clock_stepping_back_stops_no_stream(detector):
    first, second = images()
    pipeline = MultiStreamDetector(detector, TrackerConfig(initialization_delay=0))
    pipeline.set_prompt("a person . a car .")
    # Stamps in seconds, one stream without any, one whose clock steps back (a replayed recording).
    results = [pipeline.process([("left", first), ("right", second)], [stamp, None])
               for stamp in (100.0, 100.1, 99.0, 100.2)]
    assert all(objects for result in results for objects in result.objects)
    assert pipeline._stream_times == {"left": 100.2, "right": pytest.approx(3 / TrackerConfig().frame_rate)}


def test_a_stream_at_the_detectors_pace_is_tracked_as_if_the_tracker_saw_every_frame():
    """The node takes a camera's frames while its detector is free, and drops the others: with the detector
    on an uneven ~1-7 frames of the tracker's frame rate, its tracks must be those of a tracker fed every frame
    (None where the detector did not run, as `gdino video` feeds it). Updated once per detector run, the hit
    counter counted runs (a track outlived an absence of 15 runs, 15 s at one run a second) and the Kalman
    filter took each gap for one frame."""
    from perception.tracking import ObjectTracker
    from perception.tracking.recorded import Recording, ReplayedDetector
    from perception.types import Detections

    frame_rate, frames = 10.0, 140
    runs = [0, 1, 2, 3, 5, 6, 9, 10, 11, 18, 19, 20, 24, 25, 26, 27, 33, 34, 40, 41, 42, 43, 44, 46]
    runs += list(range(50, 100, 5)) + [100, 101, 102, 110, 111, 112, 113, 114, 118, 125, 126, 127, 133, 139]

    def boxes_at(frame: int) -> Detections:
        # One walker at 3 px a frame; one still object that is away from frame 45 to 99 (5.5 s), then back.
        boxes = [[20 + 3 * frame, 100, 60 + 3 * frame, 180]]
        if not 45 <= frame < 100:
            boxes.append([400, 200, 440, 280])
        return Detections(boxes=np.array(boxes, np.float32), scores=np.full(len(boxes), 0.9, np.float32),
                          labels=["a person"] * len(boxes))

    image = np.zeros((240, 560, 3), np.uint8)
    config = TrackerConfig(frame_rate=frame_rate)
    reference = ObjectTracker(config)
    reference.set_phrases(["a person"])
    expected, last_run = {}, None
    for frame in range(frames):
        if frame in runs:
            period = 1 if last_run is None else frame - last_run
            tracks = reference.update(boxes_at(frame), frame=image, period=min(period, config.hit_counter_max),
                                      timestamp=frame / frame_rate)
            expected[frame] = [(str(t.track_id), tuple(np.round(t.box_xyxy, 3))) for t in tracks if t.matched]
            last_run = frame
        else:
            reference.update(None, frame=image, timestamp=frame / frame_rate)

    recording = Recording({"box_threshold": 0.35, "present_phrase_floor": None, "present_phrase_iou": 1.0, "floor": 0.0},
                          {"camera": [boxes_at(frame) for frame in runs]})
    pipeline = MultiStreamDetector(ReplayedDetector(recording, "camera"), config)
    pipeline.set_prompt("a person .")
    actual = {}
    for frame in runs:
        objects = pipeline.process([("camera", image)], [frame / frame_rate]).objects[0]
        actual[frame] = [(o.object_id, tuple(np.round(o.box_xyxy, 3))) for o in objects]
    assert actual == expected
    # The still object came back after longer than its hit counter and re-identification window: a new id.
    ids_before = {object_id for object_id, box in expected[44] if box[0] == 400}
    ids_after = {object_id for object_id, box in expected[139] if box[0] == 400}
    assert ids_before and ids_after and ids_before != ids_after
