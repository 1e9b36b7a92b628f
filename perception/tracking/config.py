"""Typed configuration of the tracker: every norfair knob we expose, validated with its allowed range.

Hit counter arithmetic (norfair's): a track's counter starts at the detection period, gains
``2 * period`` on every matched frame (capped at ``hit_counter_max``) and loses 1 on every frame. A
track that has reached the cap therefore survives up to ``hit_counter_max`` consecutive frames without
a match and is deleted on the next one; it is reported once its counter exceeds ``initialization_delay``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

DISTANCES = ("iou", "euclidean")
LABEL_GATINGS = ("phrase", "prompt")
PROMPT_CHANGE_RULES = ("reset", "keep")
FILTERS = ("kalman", "none")
MOTION_MODELS = ("homography", "translation")
# consecutive_distance_threshold's default with the iou distance (at most distance_threshold).
CONSECUTIVE_IOU_GATE = 0.5
# Reported tracks of one association key from which crowd_measurement_noise applies to them.
CROWD_TRACKS = 3
# Settings read only between two consecutive frames the detector took (ObjectTracker.update with period 1: gdino video
# and the evaluation at stride 1); the node and gdino bag track at the detector's pace, where they do not apply.
CONSECUTIVE_FRAMES_ONLY = ("consecutive_distance_threshold", "steady_gate_margin", "crowd_measurement_noise")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    _check(value in choices, f"tracking {name} must be one of {', '.join(choices)}; got {value!r}")


@dataclass
class MotionConfig:
    """Camera-motion compensation through norfair's ``MotionEstimator`` (sparse optical flow on corners).

    Needs the frame on every ``update``. Worth its cost only for moving cameras: on a fixed camera it
    adds about a millisecond per frame at VGA size and changes nothing.
    """

    enabled: bool = False
    model: str = "homography"  # "translation" for pans only; "homography" also covers zoom and rotation
    max_points: int = 200  # corners sampled per frame; more is slower and steadier
    min_distance: int = 15  # pixels between sampled corners
    block_size: int = 3  # corner detector neighbourhood, pixels
    quality_level: float = 0.01  # minimal corner quality relative to the best corner, in (0, 1)

    def __post_init__(self) -> None:
        _check_choice("motion model", self.model, MOTION_MODELS)
        _check(self.max_points >= 4,
               f"tracking motion max_points must be >= 4 (a homography needs 4); got {self.max_points}")
        _check(self.min_distance >= 1, f"tracking motion min_distance must be >= 1 pixel; got {self.min_distance}")
        _check(self.block_size >= 3 and self.block_size % 2 == 1,
               f"tracking motion block_size must be an odd integer >= 3; got {self.block_size}")
        _check(0.0 < self.quality_level < 1.0,
               f"tracking motion quality_level must be in (0, 1); got {self.quality_level}")


@dataclass
class TrackerConfig:
    """Association, track life cycle, Kalman filter and camera motion of one tracker (one per stream)."""

    # "iou": distance 1 - IoU of boxes, threshold in (0, 1]; "euclidean": distance in pixels between the
    # stacked corner coordinates (x0, y0, x1, y1), threshold > 0. IoU needs no tuning per resolution.
    distance: str = "iou"
    # Largest distance that still matches. 0.6 for IoU accepts overlaps above 0.4: in crowds of one phrase
    # (gdino eval tracking --scenario crowd, noisy truth, seeds 0-7 and 100-107) 0.7 let a track take a
    # neighbour's box (IDF1 0.90 against 0.92, 11-13 switches against 8); on the default videos both hold.
    # Raise it for fast motion at low frame rates. Between two consecutive frames the detector took the gate is
    # tighter for tracks whose boxes are steady (consecutive_distance_threshold, steady_gate_margin).
    distance_threshold: float = 0.6
    # Largest distance that still matches in an update one frame after the detector's previous run (ObjectTracker.update
    # with period 1: gdino video and the evaluation at stride 1; not at the detector's pace, on the node and in gdino
    # bag: see ObjectTracker.update_at_detector_pace); at most distance_threshold. None: CONSECUTIVE_IOU_GATE (0.5, at
    # most distance_threshold) with the iou distance, distance_threshold with the euclidean one (no pixel gate was
    # measured); distance_threshold itself: one gate at every stride. Between two frames a person moves far less than
    # between two runs a few frames apart, and a box overlapping a track by 0.4-0.5 is then likelier a neighbour's.
    # With steady_gate_margin (the default) it is the gate of the tracks whose boxes are steady; alone, the gate of all.
    # 0.5 at every stride ended tracks that were still there at stride 3 (crowds, seeds 0 and 100: 11 and 19 switches
    # against 7 and 14); widening the gate by 0.05 per skipped frame merged ids more than twice as often with the
    # detector taking every 3rd to 12th frame (fresh crowds 700000, 710000).
    consecutive_distance_threshold: float | None = None
    # Each track's own gate between consecutive frames, from how steady its boxes have been (perception.tracking.gates):
    # a track whose boxes in consecutive frames overlapped each other by at least m accepts a box overlapping it by
    # more than m - steady_gate_margin, the gate staying within [consecutive_distance_threshold, distance_threshold]; a
    # track without three such pairs keeps distance_threshold. None: consecutive_distance_threshold for every track.
    # One tight gate (0.5) for all cut switches and merged ids by a third on noisy truth but was about even on the
    # bundled model's boxes, which wobble more from frame to frame, and worse on some seeds (fresh default videos 750000,
    # 940000, 1100000, 1110000, 1200000, 1210000, 534 tracks: 42 -> 38 switches, from 1 -> 6 on 1100000 to 12 -> 5 on
    # 1210000); the per-track gate keeps the looser one where the detector wobbles. Fresh seeds at stride 1, switches
    # and merged ids, this / one gate of 0.6 (before) / one of 0.5: the bundled model on default videos 1300000,
    # 1310000, 1340000, 1360000, 1370000 (398 tracks) 12, 3 / 12, 3 / 16, 3, on crowd videos 1320000, 1330000, 1350000
    # 63, 46 / 62, 53 / 63, 46; noisy-truth crowds 1400000-1409000 58, 63 / 78, 88 / 54, 56 (the crowd targets met on
    # 10 / 7 / 10 of the ten); real trajectories 1410000, 1420000 47, 33 / 57, 44 / 48, 30. Recorded after the choice:
    # default videos 1520000, 1530000, 1550000 14, 2 / 14, 2 / 15, 3; crowd videos 1500000, 1510000, 1540000 69, 42 /
    # 65, 42 / 68, 41: on the model's boxes about even, the gain is on steadier boxes. On the tuning seeds margins
    # of 0.1, 0.15 and 0.25, the least IoU of the last 4 pairs, and the tight gate for tracks without three pairs all
    # scored within a few switches of this (0.25 worse on noisy truth). At a stride and at the detector's pace the gate
    # is distance_threshold, as before.
    steady_gate_margin: float | None = 0.2
    # Frames a track survives without a match once its counter is full (see the module docstring). Counted in
    # updates, not seconds: it is norfair's counter (it also paces confirmation, initialization_delay); a
    # track it ends is kept for re-identification, whose window is in seconds (reid_seconds). On the node and
    # in `gdino bag` an update is a frame at frame_rate or a camera frame, whichever comes more often (15: 1.5 s
    # at 10 fps), however seldom the detector runs. A faster camera shortens it in seconds, and that matters
    # little: on real 25 fps trajectories (noisy truth, `--scenario trajectories`, seeds 0-9 and 1000-1009) 15,
    # 25 and 37 (1.5 s there) scored the same, re-identification giving an ended track its id back; 8 differed
    # (4 switches more on one set, IDF1 +0.005 on the other).
    hit_counter_max: int = 15
    # A track without a detection, while another reported track shares its association key (phrase or synonym
    # group), is reported at its predicted box for at most this many seconds after its last detection (or while
    # the detector's latest run matched it, for a detector run every few frames); after that it coasts
    # unreported until matched again (same id) or ended by hit_counter_max. Among several of one phrase, a
    # prediction nothing confirms may stand where someone else now is; the only reported track of its key is
    # reported until the hit counter ends it (norfair's way). 600: no limit in practice. Float32, bundled model
    # and noisy truth, tuning seeds: crowds of noisy truth (seeds 0-500 by 100) IDF1 0.905 -> 0.920 with the
    # same switches (44) and merged ids (40); default videos (12 seeds, 1040 tracks) 41 -> 43 switches. The
    # limit on every track (without the only-one rule) made 44 there: in float32 TrackEval may hand a lone
    # object to another track during the unreported gap.
    report_coasting_seconds: float = 0.5
    # Matches a new track needs before it is reported; 0 reports it on its first detection. Must be
    # below hit_counter_max. Small, because Grounding DINO rarely fires on nothing twice in a row. Counted in
    # frames of the detector's evidence: with the detector on every n-th frame (``period`` n), a new track needs
    # ceil(delay / n) matches after its first box and at least one (association.hold_until_confirmed; norfair's
    # own counter confirmed a single box at once from stride 3 on, a false positive included, which could take a
    # lost track's id), unless that box is the second of an unconfirmed track that moved too far for norfair to
    # match it (a long stride; the track then starts at the velocity its two boxes show). Stride 1 and 2 are as
    # norfair does them. Fresh noisy truth at stride 3: identity switches and merged ids fewer in crowds and on
    # real trajectories; the cost is one detector run's delay before a new (or returning) track is reported. At
    # the detector's pace (uneven gaps) a new track alone of its phrase waits for the detector's next run and is
    # confirmed once its boxes span the delay in frames (association.hold_until_spanned); among several of one
    # phrase norfair's counter decides, as before.
    initialization_delay: int = 2
    # "phrase": a detection continues only a track of the same phrase (or of the same synonym group).
    # "prompt": any phrase of the current prompt continues any track, for prompts whose phrases all
    # name one kind of thing ("person . pedestrian ."); the track's label is then its most frequent phrase.
    label_gating: str = "phrase"
    # With label_gating "phrase": groups of phrases that may continue each other's tracks, e.g.
    # (("person", "pedestrian"), ("car", "vehicle")), for prompts that mix synonyms and other things.
    synonym_groups: tuple[tuple[str, ...], ...] = ()
    # With label_gating "phrase": a detection that no track of its own phrase is near may continue a
    # reported track of another phrase that it overlaps by more than this IoU, when nothing of that
    # track's phrase is near it: the detector wavering between two phrases on one object ("red car",
    # "orange car"). The track keeps its most frequent phrase as label. 1 never joins phrases.
    cross_phrase_iou: float = 1.0
    # What a prompt change does to live tracks: "reset" drops them all; "keep" keeps the tracks whose
    # label (or synonym group) is still a phrase of the new prompt and drops the others. Ids are never
    # reused within a stream either way.
    on_prompt_change: str = "reset"
    # Detections of one association key (phrase, synonym group, or all with label_gating "prompt") that
    # overlap a higher-scored one by more than this IoU are duplicates of it and are dropped before
    # association, so one object cannot start two tracks. 1 keeps every detection.
    duplicate_iou: float = 0.7
    # A detection that continued no track starts one only if it overlaps no reported track of its key by more
    # than this IoU (the track's box after this frame's match) where that track is the only reported one of its
    # key: otherwise it is likelier a second box on that track's object (the detector drawing a partly hidden
    # object twice, its visible part and its whole, IoU 0.3-0.66 with each other), which would become a second
    # track and take the first one's id whenever it fitted the object better. Among several tracks of one key
    # (a crowd) such a box may be someone partly hidden behind another, so the rule is off there. 1 turns it
    # off. Float32, bundled model, default videos of 12 tuning seeds (0, 500, 5000, 10000, 20000-20700, 1040
    # tracks): identity switches 65 (off) -> 44 (0.3), IDF1 0.918 -> 0.923; 0.5 gave 53 (without the
    # only-one rule). Crowds of noisy truth (seeds 0-500 by 100, 8 videos each): unchanged with the only-one rule
    # (45 switches, 40 merged ids); without it 0.3 made 49 and 45 and lowered IDF1 from 0.905 to 0.898.
    # Where no box matched that track in this frame, the box overlapping it most continues it instead of being
    # dropped (the object moved further than the association reaches): dropped, it left the object unreported
    # until the coasting track ran out.
    new_track_iou: float = 0.3
    # ByteTrack's second association: a detection scored below the detector's box threshold but at least
    # this continues a reported track of its phrase that it overlaps (a partly hidden or blurred object
    # whose score dipped) and never starts a track. The pipelines then run the detector down to this
    # score (such boxes carry their best phrase even below the text threshold), so a continued track can
    # carry a score below the box threshold. 0 turns it off. 0.25, the text threshold: until boxes under
    # the text threshold carried their phrase, 0.2 was in effect 0.25 with a model (those boxes came back
    # labelled "" and continued nothing), and 0.2 made real added identity switches with the bundled model:
    # float32, default videos seeds 0 and 500, 2 and 4 -> 7 and 9 (its weak boxes are mostly second boxes on
    # objects already tracked). In crowds of noisy truth, whose weak boxes are all true, 0.2 was better (24
    # switches and 21 merged ids against 29 and 24 at 0.25, seeds 0, 100, 200): that advantage never reached
    # a model's detections. Such a box continues only a track that this frame's boxes above the box threshold
    # leave unmatched (ByteTrack's order; perception.tracking.association): a crowd model's weak boxes (the
    # crowd stage of the README's Training section, `gdino eval tracking --scenario crowd`, float32, replayed
    # recordings) are often second boxes or boxes between people, and taking a track from its person's sure
    # box they made switches: tuning seeds 200000 / 210000, 66 -> 57 and 39 -> 30 switches (IDF1 +0.005 /
    # +0.002), fresh 300000 / 310000 66 -> 60 and 54 -> 40 (IDF1 +0.006 / +0.004); the bundled model's
    # default videos within a switch. Noisy truth, whose weak boxes are all true, loses a little (fresh crowd
    # seeds 400000-409000: IDF1 -0.003 on average, 76 -> 77 switches, 83 -> 86 merged ids), and noisy truth with
    # copies of a walker's box as weak second boxes loses more (`--second-boxes 0.3`, fresh crowd seeds
    # 430000-437000: IDF1 -0.004 on average, 57 -> 64 switches, 60 -> 73 merged ids).
    continue_threshold: float = 0.25
    # Such a weak box continues a track only where it overlaps that track's last estimate by more than this
    # IoU: tighter than the association's gate (ByteTrack's second association is tighter than its first, too).
    # A crowd model's weak boxes often lie between two people, within the gate of the one whose own box it
    # missed, and carried that track onto the neighbour: the boxes of a track that held both people. The
    # bundled model, bfloat16, replayed recordings of tuning seeds 1300000 / 1800000 / 1810000 (crowd videos):
    # merged ids 18 / 12 / 17 -> 16 / 10 / 17 at 0.6, switches 34 / 22 / 25 -> 32 / 21 / 26, IDF1 +0.001 to
    # +0.004; 0.65 and 0.7 alike; default videos 1300000 / 1800000: switches 1 / 8 -> 2 / 5. Noisy truth,
    # whose weak boxes are all true, within a switch or a merge (IDF1 -0.001), better at a detector stride of 3
    # (two fewer switches). Fresh figures: the README's tracking section. 0 turns it off (any weak box within
    # the gate).
    continue_iou: float = 0.6
    # Frames per second assumed when ``ObjectTracker.update`` gets no ``timestamp``: every update is then
    # one frame later than the last. The windows below are in seconds, so a 10 fps video and a 30 fps
    # camera behave alike when each passes its frames' timestamps (or its true rate here). A stream updated
    # at the detector's pace (the node, `gdino bag`: ``ObjectTracker.update_at_detector_pace``) is stepped at
    # least this often, so that its hit counter and Kalman filter count frames of this rate, not the detector's
    # runs. There each gap between runs is rounded to whole frames of this rate (see step_at_camera_rate).
    frame_rate: float = 10.0
    # At the detector's pace on a camera faster than frame_rate (the node; the evaluation at a pace), step at the
    # camera's rate while the detector keeps up with it: from its fourth run on, once 9 in 10 of its latest runs
    # came at most 6 camera frames after the one before (back to frame_rate below 3 in 4), with hit_counter_max
    # scaled to keep its seconds (perception.tracking.pace.StepRateCheck, ObjectTracker.step_at). Fresh noisy truth
    # of real 25 fps trajectories (seeds 32000, 33000), switches and merged ids against frame_rate 10: the detector
    # taking every 1st-4th frame 134, 50 against 160, 72 (plain norfair 158, 79), every 2nd-6th 158, 60 against 241,
    # 90 (plain norfair 147, 81), IDF1 equal or higher; slower detectors, where the camera's rate lost IDF1, keep
    # frame_rate. false: keep frame_rate, and the node says what to set.
    step_at_camera_rate: bool = True
    # Re-identification (perception.tracking.reidentification): a new track of a lost track's phrase (or
    # synonym group) first seen at most this many seconds after the lost one was, confirmed within reach of
    # where it should be by then, takes its id back when no other explanation is as likely (1.5 times as long
    # for a lost track with no other track of its phrase known). 0: off.
    reid_seconds: float = 3.0
    # Reach around where the lost track should be (its last full-size box moved along its velocity), in box
    # sizes of the lost track (the square root of its largest recent box's area): reid_distance when it is
    # lost, plus reid_distance_per_second for each second since, never more than reid_max_distance; half as
    # much again for a lost track with no other track of its phrase known (no crowd to confuse it with).
    # 0.75/0.5/1.5: on the default videos with the bundled model (seeds 0-23) 0.5 left two more identity
    # switches; a cap of 2 or a growth of 1 per second changed nothing there and added a merge in crowds.
    reid_distance: float = 0.75
    reid_distance_per_second: float = 0.5
    reid_max_distance: float = 1.5
    # Also compare colours: a new track takes a lost one's id only if its colour histogram (hue, saturation
    # and value of the middle of the box) has at least this Bhattacharyya coefficient with one of the lost
    # track's recent full-size boxes, so a differently dressed person passing where another was lost keeps
    # its own id. Colour never decides between candidates dressed alike. Needs the frame with each update's
    # detections. 0: off. 0.5: on the generated videos (objects more than half visible, seeds 100-123) one
    # object scores 0.97 with itself 40 frames later (median; 0.79 at the 5th percentile), two objects of
    # different colours 0.13 (median; 0.68 at the 95th).
    reid_appearance: float = 0.5
    # "kalman": norfair's constant-velocity Kalman filter; "none": boxes stay where last seen.
    filter: str = "kalman"
    kalman_measurement_noise: float = 4.0  # norfair R: larger trusts detections less
    # norfair Q: larger follows changes in speed faster. The crowd model's boxes of partly hidden walkers change
    # shape as people pass in front, and 0.1 takes that for speed: the bundled crowd model's tuned_settings.yaml sets
    # 0.003 (README, Tracking: fewer switches in crowds; more on the default videos and on real trajectories at the
    # node's pace, so not the default).
    kalman_process_noise: float = 0.1
    # Where the tracker steps through frames the detector did not take (at its pace: the node, `gdino bag`; at a
    # stride: ObjectTracker.update with period > 1), each track's filter carries its covariance over the frames since
    # it was last matched (perception.tracking.kalman); false: norfair's filter, which grows it as for one frame
    # whatever the gap. Noisy truth of real 25 fps trajectories, fresh seeds 8000-11000 at the node's pace, switches
    # and mean IDF1: 1-4 frames between runs 343, 0.730 against 387, 0.726 (plain norfair 353, 0.682); 3-12 IDF1
    # 0.554 against 0.529; 10-30 0.332 against 0.323. Fresh seeds 16000-19000 at stride 3 / 6: 233 / 452 against
    # 260 / 541 switches, merged ids 78 / 154 against 86 / 200. With the crowd model's small process noise (0.003) it
    # lost on that model's crowd boxes (fresh recordings 2470000-2500000 at 1-4: 151 against 137 switches, IDF1 0.758
    # against 0.766), so its tuned_settings.yaml turns it off. Between consecutive frames the detector took
    # (ObjectTracker.update with period 1) the filter stays norfair's, as the settings there were tuned on it.
    kalman_carry: bool = True
    # A track's filter starts at rest (norfair's) and learns its speed over several matches. At the detector's pace
    # (the node, gdino bag) a track's second box starts its filter at half the velocity its two boxes show when that
    # is at least start_speed of the box's width per step (an update at frame_rate, or at the camera's rate:
    # step_at_camera_rate); 0: never. People crossing a real 25 fps view in 2-3 s left their own gate before the
    # filter caught up and came back as new tracks. Fresh trajectories (seeds 42000, 43000), identity switches with
    # the detector taking every 1st-4th / 2nd-6th / 3rd-12th frame: 133 / 160 / 171 -> 126 / 138 / 153, IDF1 higher,
    # our crowd and default videos unchanged (README, Tracking: what was tried and dropped). 0.2 (with the whole
    # velocity) changed nothing in crowds and too little on the trajectories. At a stride (ObjectTracker.update)
    # norfair's filter as tuned.
    start_speed: float = 0.1
    # Measurement noise (norfair R) of the tracks whose association key has at least CROWD_TRACKS reported tracks
    # (several people of one phrase in view), in place of kalman_measurement_noise. A crowd model's box of someone
    # partly hidden is the part it sees, drawn afresh as others pass in front: trusting the filter's path more there
    # keeps the track on its person. 0: kalman_measurement_noise for every track. Larger R for every track did as
    # well in crowds and worse on the default videos, whose objects of their own phrases turn and bounce: tuning
    # recordings (bfloat16, at the crowd model's settings), switches and merged ids, 4 / 16 for every track / 16 in
    # crowds: crowd videos 2090000-2120000, 1300000, 1800000 (843 tracks) 209, 132 / 189, 115 / 188, 114; default
    # videos 2060000-2160000 (9 sets) 27, 6 / 33, 11 / 28, 6. The bundled crowd model's tuned_settings.yaml sets 16;
    # fresh figures: the README's tracking section. Only between consecutive frames the detector took (ObjectTracker.
    # update with period 1), where it was measured: where one box carries a track over frames it was not seen, the
    # filter must follow it, and 16 there made more switches on noisy truth with the crowd settings (crowds 2350000 /
    # 2360000 at stride 3: 24 / 31 against 15 / 13; 2350000-2380000 at the node's pace, the detector taking every 1st
    # to 4th frame: 81 against 65).
    crowd_measurement_noise: float = 0.0
    motion: MotionConfig = field(default_factory=MotionConfig)

    def __post_init__(self) -> None:
        if isinstance(self.motion, dict):
            self.motion = MotionConfig(**self.motion)
        self.synonym_groups = tuple(tuple(group) for group in self.synonym_groups)
        _check_choice("distance", self.distance, DISTANCES)
        if self.distance == "iou":
            _check(0.0 < self.distance_threshold <= 1.0,
                   f"tracking distance_threshold must be in (0, 1] for the iou distance; got {self.distance_threshold}")
        else:
            _check(self.distance_threshold > 0.0, "tracking distance_threshold must be > 0 pixels for the euclidean "
                   f"distance; got {self.distance_threshold}")
        _check(self.consecutive_distance_threshold is None
               or 0.0 < self.consecutive_distance_threshold <= self.distance_threshold,
               "tracking consecutive_distance_threshold must be in (0, distance_threshold] = "
               f"(0, {self.distance_threshold}] (between consecutive frames the gate is at most the one after "
               f"skipped frames), or null; got {self.consecutive_distance_threshold}")
        _check(self.steady_gate_margin is None or 0.0 <= self.steady_gate_margin < 1.0,
               f"tracking steady_gate_margin must be in [0, 1), or null; got {self.steady_gate_margin}")
        _check(self.steady_gate_margin is None or self.distance == "iou" or self.consecutive_distance_threshold is None,
               "tracking steady_gate_margin sets a track's gate from the IoU of its boxes: with the euclidean distance "
               f"and consecutive_distance_threshold set ({self.consecutive_distance_threshold} pixels), set "
               "steady_gate_margin to null")
        _check(1 <= self.hit_counter_max <= 10_000,
               f"tracking hit_counter_max must be in [1, 10000]; got {self.hit_counter_max}")
        _check(0 <= self.initialization_delay < self.hit_counter_max,
               f"tracking initialization_delay must be in [0, hit_counter_max - 1] = [0, {self.hit_counter_max - 1}]; "
               f"got {self.initialization_delay}")
        _check_choice("label_gating", self.label_gating, LABEL_GATINGS)
        _check(0.0 < self.cross_phrase_iou <= 1.0,
               f"tracking cross_phrase_iou must be in (0, 1] (1 never joins phrases); got {self.cross_phrase_iou}")
        _check(0.0 < self.duplicate_iou <= 1.0,
               f"tracking duplicate_iou must be in (0, 1] (1 keeps every detection); got {self.duplicate_iou}")
        _check(0.0 < self.new_track_iou <= 1.0,
               f"tracking new_track_iou must be in (0, 1] (1 turns it off); got {self.new_track_iou}")
        _check(0.0 <= self.continue_threshold < 1.0,
               f"tracking continue_threshold must be in [0, 1) (0 turns it off); got {self.continue_threshold}")
        _check(0.0 <= self.continue_iou < 1.0,
               f"tracking continue_iou must be in [0, 1) (0: any weak box within the gate); got {self.continue_iou}")
        _check(0.0 < self.frame_rate <= 1000.0,
               f"tracking frame_rate must be in (0, 1000] frames per second; got {self.frame_rate}")
        _check(0.0 <= self.report_coasting_seconds <= 600.0,
               "tracking report_coasting_seconds must be in [0, 600] (0: among several tracks of a phrase only the "
               f"matched ones are reported); got {self.report_coasting_seconds}")
        _check(0.0 <= self.reid_seconds <= 600.0,
               f"tracking reid_seconds must be in [0, 600] (0 turns it off); got {self.reid_seconds}")
        _check(0.0 < self.reid_distance <= self.reid_max_distance <= 10.0,
               "tracking reid_distance and reid_max_distance must satisfy 0 < reid_distance <= reid_max_distance "
               f"<= 10 box sizes; got {self.reid_distance} and {self.reid_max_distance}")
        _check(0.0 <= self.reid_distance_per_second <= 10.0,
               f"tracking reid_distance_per_second must be in [0, 10] box sizes; got {self.reid_distance_per_second}")
        _check(0.0 <= self.reid_appearance < 1.0,
               f"tracking reid_appearance must be in [0, 1) (0 turns it off); got {self.reid_appearance}")
        _check_choice("on_prompt_change", self.on_prompt_change, PROMPT_CHANGE_RULES)
        _check_choice("filter", self.filter, FILTERS)
        _check(self.kalman_measurement_noise > 0.0,
               f"tracking kalman_measurement_noise must be > 0; got {self.kalman_measurement_noise}")
        _check(self.kalman_process_noise > 0.0,
               f"tracking kalman_process_noise must be > 0; got {self.kalman_process_noise}")
        _check(0.0 <= self.start_speed <= 10.0,
               f"tracking start_speed must be in [0, 10] box widths per step (0 turns it off); got {self.start_speed}")
        _check(self.crowd_measurement_noise >= 0.0,
               f"tracking crowd_measurement_noise must be >= 0 (0: kalman_measurement_noise for every track); got "
               f"{self.crowd_measurement_noise}")
        self._check_synonym_groups()

    def at_frame_rate(self, frame_rate: float) -> TrackerConfig:
        """This config stepping at ``frame_rate``, hit_counter_max scaled to keep its seconds."""
        return replace(self, frame_rate=frame_rate,
                       hit_counter_max=max(1, round(self.hit_counter_max * frame_rate / self.frame_rate)))

    def distance_threshold_at(self, period: int) -> float:
        """The association gate of an update ``period`` frames after the detector's previous run (between
        consecutive frames, that of the steady tracks when steady_gate_margin is set: see
        perception.tracking.gates)."""
        if period != 1:
            return self.distance_threshold
        if self.consecutive_distance_threshold is not None:
            return self.consecutive_distance_threshold
        return min(CONSECUTIVE_IOU_GATE, self.distance_threshold) if self.distance == "iou" else self.distance_threshold

    def _check_synonym_groups(self) -> None:
        seen: set[str] = set()
        for group in self.synonym_groups:
            _check(len(group) >= 2, f"tracking synonym_groups entries need at least two phrases; got {group!r}")
            for phrase in group:
                _check(isinstance(phrase, str) and phrase.strip() != "",
                       f"tracking synonym_groups phrases must be non-empty strings; got {phrase!r}")
                _check(phrase not in seen, f"tracking synonym_groups: phrase {phrase!r} appears in two groups")
                seen.add(phrase)
        _check(not (self.synonym_groups and self.label_gating == "prompt"),
               "tracking synonym_groups only apply with label_gating 'phrase' ('prompt' already joins all phrases)")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrackerConfig:
        """Build from a plain mapping (a YAML section); unknown keys are an error, never ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        _check(not unknown, f"unknown tracking keys {unknown}; allowed: {sorted(known)}")
        motion = values.get("motion", {})
        _check(isinstance(motion, (dict, MotionConfig)), "tracking motion must be a mapping")
        if isinstance(motion, dict):
            motion_known = {f.name for f in fields(MotionConfig)}
            motion_unknown = sorted(set(motion) - motion_known)
            _check(not motion_unknown,
                   f"unknown tracking motion keys {motion_unknown}; allowed: {sorted(motion_known)}")
        return cls(**values)
