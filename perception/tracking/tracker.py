"""ObjectTracker: one per stream (a video, a camera topic); each ``update`` advances one frame.

An update takes the :class:`~perception.types.Detections` of one frame (boxes xyxy in pixels of that
frame) and returns the reported :class:`Track` objects. Its steps, each in its own module:

1. frames: the frame and boxes are checked and the update's time is set (:mod:`.frames`);
2. association: detections are matched to live tracks, norfair doing the matching (:mod:`.association`);
3. memory: every matched track records where, when and how it was seen (:mod:`.history`);
4. re-identification: a track confirmed in this frame takes a lost track's id when nothing else explains
   it as well, else a new id (:mod:`.reidentification`); one that norfair confirmed on its first box (from
   stride 3 on) waits for a second box first, whatever id it would take, unless its box is the second of an
   unconfirmed track norfair could not match (``initialization_delay`` in :mod:`.config`);
5. retirement: tracks norfair ended are kept as lost for ``reid_seconds`` (longer for a track alone of its
   phrase, :func:`.reidentification.window`);
6. report: the tracks past their initialization delay and seen within ``report_coasting_seconds`` (the only
   reported track of its key: until its hit counter ends it).

Frame skipping: when the detector runs only every ``period`` frames, call ``update(detections,
period=period)`` on the frames it ran and ``update(None)`` on the others; tracks then coast on their
Kalman prediction in between (norfair's ``period``), reported as long as the detector's latest run matched them.

A stream updated at the detector's pace (a camera whose frames arrive while the detector is busy, and are
dropped): call ``update_at_detector_pace``, which first steps the tracks through the frames at
``config.frame_rate`` that passed unseen, so that the hit counter and the Kalman filter, which
count updates, count time. A new track alone of its key is held through those frames and confirmed by the frames
its boxes span (``initialization_delay`` in :mod:`.config`). ``step_at`` changes the rate it steps at mid-stream
(a camera faster than ``config.frame_rate`` whose detector keeps up: :class:`.pace.StepRateCheck`). There a track's
second box starts its filter moving (``config.start_speed``, :meth:`_start_moving`).

After frames the detector skipped (at a stride or at its pace) each track's filter carries its uncertainty over the
frames since it was last matched (:mod:`.kalman`, ``config.kalman_carry``).
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from perception.tracking.appearance import appearance
from perception.tracking.association import (
    Association, hold_until_confirmed, hold_until_spanned, motion_estimator, norfair_tracker, only_of_their_key,
    reported, set_measurement_noise, xyxy)
from perception.tracking.frames import Clock, check_boxes_finite, check_boxes_in_frame, checked_frame
from perception.tracking.gates import Gates, update_gates
from perception.tracking.history import Sighting, TrackHistory, area, centre, overlap
from perception.tracking.kalman import carry_uncertainty, rescale_steps
from perception.tracking.reidentification import reach, reidentify, window as reid_window
from perception.tracking.config import TrackerConfig
from perception.types import Detections

logger = logging.getLogger(__name__)

# A lost object whose predicted box is covered this much by a track matched now may still be behind it.
_HIDDEN_COVER = 0.5
# The share of the velocity of a track's first two boxes that starts its filter (config.start_speed): two jittered
# boxes a step or two apart overstate it, and the whole of it carried a walker crossing in front of another onto
# the other's box (generated crowds at every 1st-4th frame, 8 seeds: 105 identity switches against 99 without it;
# half: 99, still cutting switches on real trajectories at every 2nd-6th frame from 170 to 151 against 139 whole).
_START_VELOCITY_SHARE = 0.5


def detection_floor(box_threshold: float, config: TrackerConfig) -> float:
    """Lowest score the detector should report when its detections feed a tracker with ``config``."""
    return min(box_threshold, config.continue_threshold) if config.continue_threshold > 0 else box_threshold


@dataclass(frozen=True)
class Track:
    """One live track in one frame.

    box_xyxy: (4,) float32 in pixels of the current frame: the matched detection's box when
        ``matched``, else the filter's prediction (which may reach outside the frame).
    score: the score of the last detection matched to the track.
    label: the phrase the track was matched with most often (ties go to the most recent).
    age: frames since the identity's first detection (0 on that frame).
    """

    track_id: int
    label: str
    score: float
    box_xyxy: np.ndarray
    age: int
    matched: bool


class ObjectTracker:
    """Tracks the detections of one stream; see the module docstring for the calling pattern."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self._configured = self.config  # as given: step_at scales from it
        self._association = Association(self.config)
        self._tracker = norfair_tracker(self.config)
        self._motion = motion_estimator(self.config)
        self._clock = Clock(self.config.frame_rate)
        self._phrases: tuple[str, ...] | None = None
        self._histories: dict[int, TrackHistory] = {}  # by norfair initializing_id, for live norfair objects
        self._lost: list[TrackHistory] = []  # reported tracks norfair ended, for re-identification
        self._next_id = 1
        self._frame = 0  # updates so far
        self._last_detector_run = -math.inf  # time of the last update with detections

    @property
    def phrases(self) -> tuple[str, ...] | None:
        """Phrases of the current prompt, None before the first :meth:`set_phrases`."""
        return self._phrases

    def set_phrases(self, phrases: Sequence[str]) -> None:
        """Tell the tracker the current prompt's phrases; on a change, apply ``config.on_prompt_change``.

        "reset" drops every track; "keep" keeps the tracks whose label, or a synonym of it, is a phrase
        of the new prompt. Ids keep counting either way, so an id never names two objects in a stream.
        """
        phrases = tuple(phrases)
        if self._phrases is not None and phrases != self._phrases:
            new = set(phrases) if self.config.on_prompt_change == "keep" else set()
            kept = [obj for obj in self._tracker.tracked_objects
                    if self._association.synonyms_of(self._histories[obj.initializing_id].label) & new]
            logger.debug("prompt changed: kept %d of %d tracks", len(kept), len(self._tracker.tracked_objects))
            self._tracker.tracked_objects = kept
            self._lost = [lost for lost in self._lost if self._association.synonyms_of(lost.label) & new]
            self._forget_ended_objects(retire=False)
        self._phrases = phrases

    def update(self, detections: Detections | None, frame: np.ndarray | None = None, period: int = 1,
               start_threshold: float = 0.0, timestamp: float | None = None) -> list[Track]:
        """Advance one frame.

        detections: this frame's detections, or None when the detector did not run on this frame.
        frame: (H, W, 3) uint8 RGB, or (H, W) uint8 grayscale; required on every call when camera-motion
            compensation is enabled, and with non-empty detections when re-identification compares
            appearance (``reid_appearance``); it also tells which tracks left through an image border.
        period: frames since the detector last ran (its stride), in [1, hit_counter_max].
        start_threshold: the detector's box threshold; detections scored below it may only continue a
            reported track (and only with ``config.continue_threshold`` set; otherwise they are ignored).
        timestamp: the frame's time in seconds (any origin, never decreasing), on every call or on none;
            without it, updates are one frame apart at ``config.frame_rate``.
        Returns the reported tracks (past their initialization delay), ordered by id.
        """
        # Per-track gates matter only where there are boxes to match: not on the frames the detector skipped.
        steadiness = {} if detections is None else {key: history.steadiness for key, history in self._histories.items()}
        return self._step(detections, frame, period, start_threshold, timestamp,
                          update_gates(period, self.config, steadiness), consecutive=period == 1)

    def _step(self, detections: Detections | None, frame: np.ndarray | None, period: int, start_threshold: float,
              timestamp: float | None, gates: Gates, consecutive: bool, at_pace: bool = False) -> list[Track]:
        """:meth:`update` with the association's gates (distance thresholds) given; consecutive: the detector took
        the previous frame too (``update`` with period 1), where ``crowd_measurement_noise`` applies; otherwise (a
        stride, or the detector's pace) frames it skipped came before, and the filters carry their uncertainty over
        the frames since each track was last matched (:mod:`.kalman`, with ``config.kalman_carry``). at_pace: an
        update of :meth:`update_at_detector_pace` (new tracks alone of their key wait for the frames their boxes
        span, :meth:`_hold_lone_newcomers`)."""
        frame = self._checked(detections, frame, period)
        now = self._clock.tick(timestamp)
        self._frame += 1
        fresh = self._associate(detections, frame, period, start_threshold, gates, consecutive)
        matched = [obj for obj in self._tracker.tracked_objects if id(obj.last_detection) in fresh]
        self._remember(matched, now, None if frame is None else frame.shape[:2])
        self._forget_ended_objects(retire=True)
        if at_pace:
            self._start_moving(matched)
            self._hold_lone_newcomers()
        self._confirm_new_tracks(matched, now, period)
        self._drop_expired_lost_tracks(now)
        if detections is not None:
            self._last_detector_run = now
        # Seen recently enough to be reported: within report_coasting_seconds (a microsecond's slack for the
        # rounding of frame times), or in the detector's latest run; the only reported track of its key always.
        seen_since = min(now - self.config.report_coasting_seconds - 1e-6, self._last_detector_run)
        shown = reported(self._tracker.tracked_objects)
        tracks = [self._to_track(obj, id(obj.last_detection) in fresh)
                  for obj, alone in zip(shown, only_of_their_key(shown))
                  if alone or self._histories[obj.initializing_id].last_time >= seen_since]
        return sorted(tracks, key=lambda track: track.track_id)

    def _catch_up(self, timestamp: float, frame: np.ndarray | None) -> int:
        """Step the tracks through the frames at ``config.frame_rate`` that passed unseen before ``timestamp``,
        for a stream updated only on the frames the detector took; returns the ``period`` to pass to the update
        at ``timestamp``: the frames since the previous update, this one included, at most hit_counter_max.

        Without it such a stream's tracks live for hit_counter_max of the detector's runs, not frames (15 s at one
        run a second), and the filter takes every gap between runs, long or short, for one frame. The frames
        stepped are empty updates one frame apart, at most hit_counter_max + 1 (after which norfair has ended
        every track); the gap's seconds still count whole for re-identification. ``frame``: the frame of the
        update at ``timestamp``, needed only with camera-motion compensation (the camera's motion over the gap
        is then applied at its first frame). Before the first update, or with ``timestamp`` less than 1.5
        frames after the last update, nothing is stepped and the period is 1.
        """
        if self._motion is not None and frame is None:
            raise ValueError("camera-motion compensation is enabled: pass the frame to update_at_detector_pace")
        last = self._clock.now
        if last is None:
            return 1
        timestamp = self._clock.checked(timestamp)
        frame_time = 1.0 / self.config.frame_rate
        frames = math.floor((timestamp - last) / frame_time + 0.5)
        skipped = min(max(frames - 1, 0), self.config.hit_counter_max + 1)
        for obj in self._lone_unconfirmed():  # they wait for the detector's next run (hold_until_spanned)
            obj.hit_counter += skipped
        for step in range(1, skipped + 1):
            self.update(None, frame=frame, timestamp=min(last + step * frame_time, timestamp))
        return min(max(frames, 1), self.config.hit_counter_max)

    def update_at_detector_pace(self, detections: Detections, frame: np.ndarray | None, timestamp: float,
                                start_threshold: float = 0.0) -> list[Track]:
        """Update on a frame of a stream updated only on the frames its detector took: :meth:`_catch_up` to
        ``timestamp``, then :meth:`update` there with the period it gives, and with ``config.distance_threshold``
        as the association's gate whatever that period: it counts steps at ``config.frame_rate``, not the
        camera's frames, so a period of 1 does not tell that the detector took two consecutive frames (at 25 fps,
        a gap of one to three frames is one step at 10). consecutive_distance_threshold there made more identity
        switches (real trajectories at 25 fps, the detector taking every 1st to 4th frame, tuning seeds 0 and
        1000: 85 and 109 against 72 and 92)."""
        period = self._catch_up(timestamp, frame)
        return self._step(detections, frame, period, start_threshold, timestamp, Gates(self.config.distance_threshold),
                          consecutive=False, at_pace=True)

    def step_at(self, frame_rate: float) -> None:
        """From now on step at ``frame_rate`` (a camera's, faster than the configured frame_rate; or the configured
        one again; :mod:`.pace`) with hit_counter_max scaled to keep the configured seconds, as if the stream had been
        tracked so from its start: each confirmed track's hit counter is scaled (within the new maximum), and each
        filter's velocity and its covariances are rescaled to steps of the new length. A track still unconfirmed
        keeps its counter, as initialization_delay does not scale. Windows in seconds (re-identification,
        reporting) are unchanged."""
        ratio = frame_rate / self.config.frame_rate
        config = self._configured.at_frame_rate(frame_rate)
        self.config = self._association.config = config
        self._tracker.hit_counter_max = config.hit_counter_max
        self._clock.frame_rate = frame_rate
        for obj in self._tracker.tracked_objects:
            obj.hit_counter_max = config.hit_counter_max
            if not obj.is_initializing:
                obj.hit_counter = min(round(obj.hit_counter * ratio), config.hit_counter_max)
            rescale_steps(obj.filter, ratio)

    def _associate(self, detections: Detections | None, frame: np.ndarray | None, period: int,
                   start_threshold: float, gates: Gates, consecutive: bool) -> set[int]:
        """Match this frame's detections to the live tracks (norfair); returns the ids (``id()``) of the
        detections handed to norfair, so a track whose last detection is one of them was matched now."""
        transformation = None if self._motion is None else self._motion.update(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self._tracker.distance_threshold = gates.default  # norfair reads it on every update
        self._tracker.distance_function.gates = gates
        candidates, low = ([], []) if detections is None else self._association.candidates(
            detections, reported(self._tracker.tracked_objects), start_threshold, gates)
        if self.config.reid_appearance > 0:
            # Only for the detections norfair gets: duplicates and unused low scores never need it.
            for candidate in candidates:
                candidate.data["look"] = appearance(frame, xyxy(candidate.points))
        # By norfair's initializing_id, unique within the tracker: the id() of an object norfair ends in this
        # update may be given to one it starts, which made the filtering below depend on the allocator.
        existing = {obj.initializing_id for obj in self._tracker.tracked_objects}
        set_measurement_noise(self._tracker.tracked_objects, self.config, consecutive)
        carry_uncertainty(self._tracker.tracked_objects, not consecutive and self.config.kalman_carry)
        # norfair iterates the list whenever a transformation is given, so an empty list stands for "none".
        self._tracker.update(candidates, period=period, coord_transformations=transformation)
        # Objects norfair started that may not start: from a low score, or a second box on a tracked object.
        # (The candidates stay alive until this returns, so their id()s name them.)
        low_ids = {id(c) for c in low}
        started = [obj for obj in self._tracker.tracked_objects if obj.initializing_id not in existing]
        ended = {obj.initializing_id for obj in started if id(obj.last_detection) in low_ids}
        tracks = [obj for obj in reported(self._tracker.tracked_objects) if obj.initializing_id in existing]
        fresh = {id(candidate) for candidate in candidates}
        second, continued = self._association.second_boxes(
            [obj for obj in started if obj.initializing_id not in ended], tracks, fresh)
        if second:
            logger.debug("tracking: %d boxes overlapping a track of their phrase started nothing, %d of them "
                         "continue it", len(second), len(continued))
        for track, obj in continued:  # as norfair's match would have: it took this frame's decrement already
            track.hit(obj.last_detection, period=period)
        ended |= {obj.initializing_id for obj in second}
        if ended:
            self._tracker.tracked_objects = [obj for obj in self._tracker.tracked_objects
                                             if obj.initializing_id not in ended]
        return fresh

    def _remember(self, matched: list, now: float, frame_size: tuple[int, int] | None) -> None:
        """Record where, when and how each track matched now was seen (a new track's memory starts here)."""
        for obj in matched:
            history = self._histories.setdefault(obj.initializing_id, TrackHistory(obj.label, self._frame, now))
            detection = obj.last_detection
            history.see(Sighting(now, xyxy(detection.absolute_points), xyxy(detection.points),
                                 detection.data.get("look")), detection.data["phrase"], frame_size, self._frame)

    def _start_moving(self, matched: list) -> None:
        """At the detector's pace: start the filter of each track matched now with its second box at a share
        (``_START_VELOCITY_SHARE``) of the velocity its two boxes show, if that is at least ``config.start_speed`` of
        its width per step (norfair starts every filter at rest, and one that moves far between two of the detector's
        runs left its own gate before the filter learnt its speed)."""
        if self.config.start_speed <= 0 or self._clock.step is None:
            return
        for obj in matched:
            history = self._histories[obj.initializing_id]
            if history.boxes_seen != 2:
                continue
            box, velocity = history.sightings[-1].box, history.velocity()
            width = max(float(box[2] - box[0]), 1.0)
            if float(np.linalg.norm(velocity)) * self._clock.step >= self.config.start_speed * width:
                self._carry_velocity(obj, _START_VELOCITY_SHARE * velocity)

    def _drop_expired_lost_tracks(self, now: float) -> None:
        """Keep a lost track while a new track first seen within the longest re-identification window of its loss
        may still be confirmed."""
        oldest = min([h.first_time for h in self._histories.values() if h.track_id is None], default=now)
        self._lost = [lost for lost in self._lost if lost.last_time + reid_window(self.config) >= oldest]

    def _checked(self, detections: Detections | None, frame: np.ndarray | None, period: int) -> np.ndarray | None:
        """The frame as (H, W, 3) uint8 RGB (or None), once every argument of an update is accepted."""
        if not 1 <= period <= self.config.hit_counter_max:
            raise ValueError(
                f"tracking period must be in [1, hit_counter_max] = [1, {self.config.hit_counter_max}] "
                f"(longer gaps delete every track); got {period}"
            )
        if frame is not None:
            frame = checked_frame(frame)
        elif self._motion is not None:
            raise ValueError("camera-motion compensation is enabled: pass the frame to every update")
        if detections is None:
            return frame
        check_boxes_finite(detections.boxes)
        if frame is not None:
            check_boxes_in_frame(detections.boxes, frame.shape[:2])
        elif len(detections) and self.config.reid_appearance > 0:
            raise ValueError("re-identification compares appearance (reid_appearance > 0): pass the frame with "
                             "each frame's detections, or set reid_appearance to 0")
        return frame

    def _lone_unconfirmed(self) -> list:
        """The norfair objects not yet confirmed that are alone of their key (no other live object of it, no lost
        track of it kept for re-identification): objects of a phrase newly in view, whose boxes no earlier or
        nearby identity of their phrase could explain."""
        lost = {history.key for history in self._lost}
        objects = self._tracker.tracked_objects
        return [obj for obj, alone in zip(objects, only_of_their_key(objects))
                if alone and self._histories[obj.initializing_id].track_id is None and obj.label not in lost]

    def _hold_lone_newcomers(self) -> None:
        """At the detector's pace, make each track started now alone of its key wait until its boxes span
        ``initialization_delay`` frames (:func:`.association.hold_until_spanned`), its hit counter held through
        the frames the detector skips until then (:meth:`_catch_up`). Among several of one key norfair's counter
        still decides: holding those too made more identity switches."""
        for obj in self._lone_unconfirmed():
            if self._histories[obj.initializing_id].first_frame == self._frame:  # started now
                hold_until_spanned(obj, self.config.initialization_delay)

    def _confirm_new_tracks(self, matched: list, now: float, period: int) -> None:
        """Give every track confirmed in this frame a lost track's id (re-identification) or a new one."""
        confirmed = [obj for obj in matched if self._histories[obj.initializing_id].track_id is None
                     and not obj.is_initializing]
        for obj in confirmed:
            history = self._histories[obj.initializing_id]
            if history.first_frame == self._frame:  # norfair started it in this update
                # Confirmed by norfair on its first box (a box counts `period` frames there): wait for a second
                # one unless this box is already it, near an unconfirmed track of its key that missed it.
                earlier = self._unconfirmed_predecessor(history, now)
                if earlier is None:
                    hold_until_confirmed(obj, self.config.initialization_delay, period)
                    if obj.is_initializing:
                        continue
                else:
                    history.take_over(earlier)
                    history.first_time = earlier.first_time
                    self._end(earlier)
                    self._carry_velocity(obj, history.velocity())
            lost = None
            if self.config.reid_seconds > 0:
                lost = reidentify(history, self._lost_tracks(history), self._claimants(history),
                                  lambda track: self._maybe_hidden(track, matched, now), self.config)
            if lost is None:
                history.track_id = self._next_id
                self._next_id += 1
                continue
            logger.debug("tracking: track %d re-identified", lost.track_id)
            history.take_over(lost)
            if lost in self._lost:
                self._lost.remove(lost)
            else:  # still coasting in norfair: end it
                self._end(lost)

    def _unconfirmed_predecessor(self, new: TrackHistory, now: float) -> TrackHistory | None:
        """The nearest unconfirmed track of new's key not matched now whose last box lies within re-identification
        reach of new's first: at a long stride an object moves too far between two of the detector's runs for
        norfair to match it while its filter knows no velocity yet, and new is its second box."""
        nearest, best = None, math.inf
        for obj in self._tracker.tracked_objects:
            earlier = self._histories.get(obj.initializing_id)
            if (earlier is None or earlier is new or earlier.key != new.key or earlier.track_id is not None
                    or earlier.last_time >= now or not obj.is_initializing):
                continue
            distance = float(np.linalg.norm(centre(new.sightings[0].box) - centre(earlier.predicted(now))))
            if distance <= reach(earlier, now, self.config) and distance < best:
                nearest, best = earlier, distance
        return nearest

    def _carry_velocity(self, obj, velocity: np.ndarray) -> None:
        """Start the Kalman filter of a norfair object at ``velocity`` ((2,) pixels per second; in the filter, pixels
        per update): one that continues an earlier one, at the velocity its sightings show (norfair starts every
        object at rest: one that moves most of its width between two of the detector's runs would again be out of its
        reach at the next), or a new one at its second box (:meth:`_start_moving`)."""
        state = getattr(obj.filter, "x", None)
        if self._clock.step is None or state is None or not hasattr(obj.filter, "dim_z"):
            return  # no filter ("none"), or no time step yet
        points = obj.filter.dim_z // 2
        state[obj.filter.dim_z:] = np.tile(velocity * self._clock.step, points).reshape(-1, 1)

    def _end(self, history: TrackHistory) -> None:
        """End the norfair object of a history whose identity another object continues."""
        self._tracker.tracked_objects = [o for o in self._tracker.tracked_objects
                                         if self._histories.get(o.initializing_id) is not history]
        self._forget_ended_objects(retire=False)

    def _lost_tracks(self, new: TrackHistory) -> list[TrackHistory]:
        """Reported tracks of new's key not seen since before new's first detection, live (coasting) or ended."""
        live = [self._histories[obj.initializing_id] for obj in self._tracker.tracked_objects
                if obj.initializing_id in self._histories]
        return [track for track in live + self._lost
                if track.key == new.key and track.track_id is not None and track.last_time < new.first_time]

    def _claimants(self, new: TrackHistory) -> list[TrackHistory]:
        return [history for history in self._histories.values() if history.key == new.key and history is not new]

    def _maybe_hidden(self, lost: TrackHistory, matched: list, now: float) -> bool:
        """Whether a track matched now covers most of where the lost track should be."""
        box = lost.predicted(now)
        size = area(box)
        return size > 0 and any(overlap(box, xyxy(obj.last_detection.absolute_points)) >= _HIDDEN_COVER * size
                                for obj in matched)

    def _forget_ended_objects(self, retire: bool) -> None:
        """Drop the memory of norfair objects that no longer exist; with ``retire``, keep the reported ones as
        lost tracks for re-identification."""
        alive = {obj.initializing_id for obj in self._tracker.tracked_objects}
        for key in [key for key in self._histories if key not in alive]:
            history = self._histories.pop(key)
            if retire and history.track_id is not None and self.config.reid_seconds > 0:
                self._lost.append(history)

    def _to_track(self, obj, matched: bool) -> Track:
        history = self._histories[obj.initializing_id]
        box = xyxy(obj.last_detection.points if matched else obj.estimate).astype(np.float32)
        return Track(
            track_id=history.track_id,
            label=history.label,
            score=float(obj.last_detection.data["score"]),
            box_xyxy=box,
            age=self._frame - history.first_frame,
            matched=matched,
        )
