"""The tracker in a crowd of one phrase: people dressed alike, entering, leaving, walking side by side and
hiding each other (640x480 frames, real norfair, no detector). Scenes are defined in seconds and sampled at
a frame rate, every update carrying its frame's timestamp."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from perception.boxes import box_iou
from perception.tracking import ObjectTracker
from perception.tracking.config import TrackerConfig
from perception.types import Detections

WIDTH, HEIGHT = 640, 480
SHIRT = (70, 90, 140)  # everybody dressed alike: colour cannot tell them apart
_FLOOR = np.clip(np.random.default_rng(0).normal(120, 10, (HEIGHT, WIDTH, 3)), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Walker:
    """A person walking at constant velocity (pixels per second) from ``appears`` on; detected while in view,
    except during ``unseen`` (seconds: hidden or missed by the detector)."""

    x: float  # left edge at time ``appears``
    y: float  # top edge
    vx: float = 0.0
    vy: float = 0.0
    appears: float = 0.0
    unseen: tuple[tuple[float, float], ...] = ()
    width: float = 50.0
    height: float = 130.0

    def box(self, time: float) -> np.ndarray | None:
        """(4,) xyxy of the part in view at ``time``, None before it appears or once it is out of view."""
        if time < self.appears:
            return None
        x0, y0 = self.x + self.vx * (time - self.appears), self.y + self.vy * (time - self.appears)
        box = np.array([x0, y0, x0 + self.width, y0 + self.height]).clip(0, [WIDTH, HEIGHT, WIDTH, HEIGHT])
        return box if (box[2] - box[0]) * (box[3] - box[1]) >= 0.5 * self.width * self.height else None

    def detected(self, time: float) -> bool:
        return self.box(time) is not None and not any(start <= time < end for start, end in self.unseen)


def frame_of(boxes: list[np.ndarray]) -> np.ndarray:
    image = _FLOOR.copy()
    for box in sorted(boxes, key=lambda box: box[3]):  # lower in the image is nearer: drawn last
        x0, y0, x1, y1 = np.round(box).astype(int)
        image[y0:y1, x0:x1] = SHIRT
    return image


def identities(walkers: list[Walker], seconds: float, fps: float = 10.0,
               config: TrackerConfig | None = None) -> list[set[int]]:
    """Track the scene; for each walker, the ids of the tracks matched to its detections."""
    tracker = ObjectTracker(config or TrackerConfig())
    tracker.set_phrases(["person"])
    ids: list[set[int]] = [set() for _ in walkers]
    for index in range(int(round(seconds * fps))):
        time = index / fps
        boxes = [walker.box(time) for walker in walkers]
        seen = [box for walker, box in zip(walkers, boxes) if walker.detected(time)]
        detections = Detections(boxes=np.array(seen).reshape(-1, 4), scores=[0.9] * len(seen),
                                labels=["person"] * len(seen))
        tracks = tracker.update(detections, frame=frame_of([box for box in boxes if box is not None]),
                                timestamp=time)
        shown = [index for index, walker in enumerate(walkers) if walker.detected(time)]
        for track in tracks:
            if not track.matched or not shown:
                continue
            # A matched track's box is one of the frame's detections: the walker it overlaps most.
            overlaps = box_iou(torch.tensor(np.array([boxes[index] for index in shown])),
                               torch.from_numpy(track.box_xyxy[None]).double())[:, 0]
            if overlaps.max() > 0.5:
                ids[shown[int(overlaps.argmax())]].add(track.track_id)
    return ids


def one_id_each(ids: list[set[int]]) -> bool:
    return all(len(walker) == 1 for walker in ids) and len(set().union(*ids)) == len(ids)


# Someone walking along the top of the view the whole time: the scene is a crowd of one phrase.
BYSTANDER = Walker(x=20.0, y=10.0, vx=15.0)


@pytest.mark.parametrize("frames_later", [12, 25, 38])
def test_a_newcomer_where_someone_was_lost_gets_a_new_id(frames_later):
    # Walking right at 30 px/s, lost after 2 s (behind something, for good); then someone else dressed alike
    # appears 120 px behind where the lost one was last seen, walking the same way.
    lost = Walker(x=200.0, y=200.0, vx=30.0, unseen=((2.0, 99.0),))
    newcomer = Walker(x=260.0 - 120.0, y=200.0, vx=30.0, appears=2.0 + frames_later / 10)
    ids = identities([BYSTANDER, lost, newcomer], seconds=2.0 + frames_later / 10 + 2.0)
    assert one_id_each(ids), ids


@pytest.mark.parametrize("frames_later", [12, 25, 38])
def test_a_newcomer_entering_where_someone_left_the_view_gets_a_new_id(frames_later):
    # Leaves through the right border at 60 px/s; then someone enters there 120 px lower, walking left.
    leaving = Walker(x=470.0, y=150.0, vx=60.0)
    left_at = (WIDTH - 470.0 - 25.0) / 60.0  # half of it out of view
    newcomer = Walker(x=WIDTH - 25.0, y=270.0, vx=-60.0, appears=left_at + frames_later / 10)
    ids = identities([BYSTANDER, leaving, newcomer], seconds=left_at + frames_later / 10 + 2.0)
    assert one_id_each(ids), ids


@pytest.mark.parametrize("first_missed, missed_for, other_missed", [(0.1, 0.3, 0.6), (0.2, 0.3, 0.7), (0.2, 0.2, 0.5)])
def test_people_side_by_side_keep_their_ids_when_one_is_missed_for_a_few_frames(first_missed, missed_for,
                                                                                other_missed):
    # Two people walk into view side by side, 10 px apart; the first is missed for a few frames while its
    # track is being confirmed, then the second is missed for a frame while the first is seen again.
    first = Walker(x=60.0, y=200.0, vx=30.0, unseen=((first_missed, first_missed + missed_for),))
    second = Walker(x=120.0, y=200.0, vx=30.0, unseen=((other_missed, other_missed + 0.1),))
    assert one_id_each(identities([BYSTANDER, first, second], seconds=4.0))


def crossing(hidden_for: float) -> list[Walker]:
    """One person passing behind another walking the other way: unseen for ``hidden_for`` seconds while
    behind, then seen again where it was heading; and a bystander."""
    behind = Walker(x=100.0, y=180.0, vx=60.0, unseen=((2.9, 2.9 + hidden_for),))
    in_front = Walker(x=500.0, y=200.0, vx=-60.0)
    return [BYSTANDER, behind, in_front]


@pytest.mark.parametrize("hidden_for", [0.6, 1.8])
def test_a_person_hidden_behind_another_keeps_its_id(hidden_for):
    # 1.8 s is longer than the track coasts (hit_counter_max, 15 frames at 10 fps): re-identification.
    assert one_id_each(identities(crossing(hidden_for), seconds=6.0))


def scene_in_seconds() -> list[Walker]:
    """Crossing with an occlusion of 1.5 s, a person lost for good, a newcomer behind where it was lost."""
    lost = Walker(x=200.0, y=300.0, vx=30.0, unseen=((2.0, 99.0),))
    newcomer = Walker(x=140.0, y=300.0, vx=30.0, appears=3.0)
    return [*crossing(1.5), lost, newcomer]


def test_the_same_scene_at_10_and_30_fps_gives_the_same_identities():
    at_10, at_30 = identities(scene_in_seconds(), 6.0, fps=10.0), identities(scene_in_seconds(), 6.0, fps=30.0)
    assert one_id_each(at_10), at_10
    assert one_id_each(at_30), at_30
