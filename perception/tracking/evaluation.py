"""Tracking evaluation on generated videos with exact ground truth, our tracker beside its baselines.

Scenarios: "default" (perception.training.synthetic.generate_video: a few objects, mostly one per phrase),
"crowd" and "mixed" (perception.training.crowds: many walkers of one phrase, without and with a few others).

Three sources of detections:
- the detector: each video is written to an MP4 file and run through the whole offline pipeline (decode,
  batched detection, our tracker, encode), prompted with the phrases of that video's objects; every frame's
  detector output is recorded once (down to ByteTrack's low threshold) and replayed to the baselines;
- noisy ground truth (perception.tracking.noise): drawn once per frame and fed to every tracker;
- a recording of an earlier run's detector output (perception.tracking.recorded), replayed through the same
  pipeline in place of the model, or, with a detector pace, to the trackers on the node's path (the frames
  the detector takes, perception.tracking.pace).
Every tracker gets the identical detections per frame and the same box threshold: detections below it
only serve the trackers that use low scores (ByteTrack's second association, our continue_threshold).
Scores come from TrackEval (perception.tracking.metrics), for ours and each baseline in one run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from perception.tracking.coverage import Coverage, read_mot_boxes
from perception.tracking.metrics import TrackingScores, evaluate_trackers
from perception.tracking.records import mot_lines
from perception.tracking import ObjectTracker, detection_floor
from perception.tracking.baselines import ByteTrack, ByteTrackConfig, NorfairBaseline
from perception.tracking.noise import NOISY_TRUTH_BOX_THRESHOLD, NoiseConfig, NoisyTruth
from perception.tracking.oracle import ORACLE_MODES, corrected_video
from perception.tracking.pace import DetectorPace, track_at_pace
from perception.tracking.trajectories import Sequence
from perception.tracking.recorded import Recording, RecordingDetector, ReplayedDetector
from perception.training.crowds import CROWD, MIXED_CROWD, generate_crowd_video
from perception.training.prompts import build_prompt
from perception.training.synthetic import TrackedObject, generate_video, write_mot_sequence
from perception.types import Detections
from perception.video.encode import VideoWriter
from perception.video.job import FrameDetector, VideoJobConfig, process_video
from perception.video.outputs import VideoOutputs

TRACKER_NAME = "gdino"
BASELINES = ("norfair", "bytetrack")
SCENARIOS = ("default", "crowd", "mixed")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class TrackingEvalConfig:
    scenario: str = "default"
    videos: int = 4
    frames: int = 60  # per video
    size: tuple[int, int] = (240, 320)  # (height, width) of the generated videos
    frame_rate: int = 10
    seed: int = 0  # video i is generated from seed + i
    job: VideoJobConfig = field(default_factory=VideoJobConfig)  # batch size, stride, tracker settings

    def __post_init__(self) -> None:
        _check(self.scenario in SCENARIOS,
               f"eval scenario must be one of {', '.join(SCENARIOS)}; got {self.scenario!r}")
        _check(1 <= self.videos <= 1000, f"eval videos must be in [1, 1000]; got {self.videos}")
        _check(2 <= self.frames <= 100_000, f"eval frames must be in [2, 100000]; got {self.frames}")
        _check(1 <= self.frame_rate <= 1000, f"eval frame_rate must be in [1, 1000]; got {self.frame_rate}")
        height, width = self.size
        _check(height >= 64 and width >= 64 and height % 2 == 0 and width % 2 == 0,
               f"eval size must be even numbers >= 64 (4:2:0 video); got {width}x{height}")

    def videos_described(self) -> dict:
        """What the generated videos are, as a recording of detections on them keeps it (recorded.VIDEO_KEYS)."""
        return {"scenario": self.scenario, "seed": self.seed, "videos": self.videos, "frames": self.frames,
                "size": self.size, "frame_rate": self.frame_rate, "frame_stride": self.job.frame_stride}


@dataclass(frozen=True)
class TrackingComparison:
    """Our tracker's scores and each baseline's (by name), on the same videos and detections."""

    ours: TrackingScores
    baselines: dict[str, TrackingScores]
    # Per video, each frame's detections as every tracker got them (None where skipped); with a detector, down
    # to `floor`: what perception.tracking.recorded writes.
    detections: dict[str, list[Detections | None]] = field(default_factory=dict)
    floor: float | None = None
    # With a detector or a recording of one: our tracker's and the detector's coverage of the ground truth by
    # visibility (perception.tracking.coverage.Coverage.as_dict).
    coverage: dict | None = None


def scenario_video(scenario: str, seed: int, frames: int,
                   size: tuple[int, int]) -> tuple[list[np.ndarray], list[list[TrackedObject]]]:
    """The frames and ground truth of one generated video of a scenario."""
    if scenario == "default":
        return generate_video(seed, frames, size)
    return generate_crowd_video(seed, frames, size, CROWD if scenario == "crowd" else MIXED_CROWD)


def video_name(scenario: str, seed: int) -> str:
    """The name of a scenario's generated video of ``seed`` (its MOT sequence and its recording entry)."""
    return f"{scenario}-{seed:04d}" if scenario != "default" else f"synthetic-{seed:04d}"


def _phrases(objects_per_frame: list[list[TrackedObject]]) -> list[str]:
    return sorted({item.phrase for objects in objects_per_frame for item in objects})


def _replay(tracker, detections: list[Detections | None], box_threshold: float, stride: int, mot_path: Path,
            matched_only: bool = False) -> None:
    with open(mot_path, "w", encoding="utf-8") as mot:
        for index, frame_detections in enumerate(detections):
            tracks = tracker.update(frame_detections, period=stride, box_threshold=box_threshold)
            mot.write(mot_lines(index, [track for track in tracks if track.matched] if matched_only else tracks))


def _track_frames(name: str, frame_at, truth: list[list[TrackedObject]], phrases: list[str], size: tuple[int, int],
                  frame_rate: float, job: VideoJobConfig, detections: list[Detections | None],
                  ours: list[Detections | None], start_threshold: float, taken: list[int] | None, work_dir: Path,
                  baselines: tuple[str, ...]) -> None:
    """One video tracked by ours and each baseline on the same frames, its ground truth and every tracker's MOT
    file written under work_dir. truth, detections (what the baselines get, down to the lowest threshold any of
    them uses) and ours (what our tracker gets: the detector's answer at our tracker's floor): per frame scored.
    taken: None for every frame at the job's stride; else the video's frame index of each frame scored, which
    are the frames a detector at an uneven pace took (perception.tracking.pace)."""
    write_mot_sequence(work_dir / "gt" / name, truth, size, fps=frame_rate)
    tracker, stride = ObjectTracker(job.tracker), job.frame_stride
    tracker.set_phrases(phrases)
    if taken is None:
        tracks = [tracker.update(frame_detections, frame=frame_at(index), period=stride,
                                 start_threshold=start_threshold, timestamp=index / frame_rate)
                  for index, frame_detections in enumerate(ours)]
    else:
        tracks = track_at_pace(tracker, ours, taken, frame_at, frame_rate, start_threshold)
    with open(work_dir / "trackers" / TRACKER_NAME / f"{name}.txt", "w", encoding="utf-8") as mot:
        mot.write("".join(mot_lines(index, frame_tracks) for index, frame_tracks in enumerate(tracks)))
    for baseline in baselines:
        _replay(_baseline(baseline, frame_rate), detections, start_threshold, stride,
                work_dir / "trackers" / baseline / f"{name}.txt", matched_only=taken is not None)


def _noisy_truth_run(name: str, frame_at, objects_per_frame: list[list[TrackedObject]], size: tuple[int, int],
                     frame_rate: float, job: VideoJobConfig, noise: NoiseConfig, rng: np.random.Generator,
                     pace: DetectorPace | None, work_dir: Path, baselines: tuple[str, ...]) -> list:
    """One video of noisy truth, tracked by ours (frame_at(index): the frame it sees) and each baseline on the
    identical detections (:func:`_track_frames`); returns each frame's detections (None where the detector
    skipped it). With ``pace``, only the frames the detector takes (drawn from ``rng`` before any noise) are
    tracked and scored, as on the node (perception.tracking.pace)."""
    taken = None if pace is None else pace.taken(len(objects_per_frame), rng)
    truth = objects_per_frame if taken is None else [objects_per_frame[index] for index in taken]
    noisy, stride = NoisyTruth(noise, size, rng), job.frame_stride
    detections = [noisy(objects) if index % stride == 0 else None for index, objects in enumerate(truth)]
    _track_frames(name, frame_at, truth, _phrases(objects_per_frame), size, frame_rate, job, detections, detections,
                  NOISY_TRUTH_BOX_THRESHOLD, taken, work_dir, baselines)
    return detections


def _replay_at_pace(name: str, frames: list[np.ndarray], objects_per_frame: list[list[TrackedObject]],
                    recording: Recording, seed: int, config: TrackingEvalConfig, pace: DetectorPace,
                    work_dir: Path, baselines: tuple[str, ...], coverage: Coverage) -> list:
    """One video's recorded detections (made at stride 1) on the frames a detector at ``pace`` takes (drawn from
    the video's seed, as noisy truth draws them), tracked as on the node: ours gets what the detector answers
    at our tracker's floor (perception.tracking.detection_floor, as perception.streams asks), the baselines all
    that was recorded (:func:`_track_frames`). Adds the frames taken to ``coverage``; returns their detections."""
    taken = pace.taken(len(objects_per_frame), np.random.default_rng(seed))
    recorded = ReplayedDetector(recording, name).detections  # every frame's: recorded at stride 1
    detections = [recorded[index] for index in taken]
    truth, box_threshold = [objects_per_frame[index] for index in taken], recording.header["box_threshold"]
    # The node asks its detector for the frames it took, down to the tracker's floor.
    node_detector = ReplayedDetector(Recording(recording.header, {name: detections}), name)
    ours = node_detector.detect([frames[index] for index in taken], detection_floor(box_threshold, config.job.tracker))
    _track_frames(name, frames.__getitem__, truth, _phrases(objects_per_frame), config.size, config.frame_rate,
                  config.job, detections, ours, box_threshold, taken, work_dir, baselines)
    tracked = read_mot_boxes(work_dir / "trackers" / TRACKER_NAME / f"{name}.txt", len(taken))
    for objects, found, boxes in zip(truth, detections, tracked):
        coverage.add(objects, found, boxes, box_threshold)
    return detections


def _track_with_detector(frames: list[np.ndarray], objects_per_frame: list[list[TrackedObject]],
                         detector: FrameDetector, config: TrackingEvalConfig, clip: Path,
                         mot_path: Path) -> tuple[list, float]:
    """Run the pipeline on the video; returns the detector's output of each frame (None where skipped) and the
    lowest score it reaches down to."""
    height, width = config.size
    rate = Fraction(config.frame_rate)
    with VideoWriter(str(clip), width, height, rate, 1 / rate) as writer:
        for index, image in enumerate(frames):
            writer.write(image, pts=index)
    # The work folder is the evaluation's own: a rerun in it replaces the last run's files.
    outputs = VideoOutputs(str(clip.with_suffix(".tracked.mp4")), str(clip.with_suffix(".jsonl")), str(mot_path),
                           overwrite=True)
    recorder = RecordingDetector(detector, ByteTrackConfig().low_threshold)
    process_video(recorder, build_prompt(_phrases(objects_per_frame)).text, str(clip), outputs, config.job)
    if isinstance(detector, ReplayedDetector):
        detector.check_done()
    recorded = iter(recorder.recorded)
    return [next(recorded) if index % config.job.frame_stride == 0 else None for index in range(len(frames))], \
        recorder.lowest


def _check_pace(pace: DetectorPace | None, detector: FrameDetector | None, job: VideoJobConfig) -> None:
    if pace is not None:
        _check(detector is None, "a detector pace is for noisy truth and recorded detections (the model path runs "
                                 "gdino video's stride): record the model's detections, then replay them at a pace")
        _check(job.frame_stride == 1, "a detector pace replaces the frame stride: leave the stride at 1 (and record "
                                      "the detections to replay at a pace at stride 1)")


def _baseline(name: str, frame_rate: float):
    return NorfairBaseline() if name == "norfair" else ByteTrack(ByteTrackConfig.for_frame_rate(frame_rate))


def evaluate_on_synthetic_videos(work_dir: Path, config: TrackingEvalConfig, detector: FrameDetector | None = None,
                                 noise: NoiseConfig | None = None, baselines: tuple[str, ...] = BASELINES,
                                 replay: Recording | None = None, pace: DetectorPace | None = None,
                                 oracle: str | None = None) -> TrackingComparison:
    """Generate config.videos videos of config.scenario under work_dir, track them with ours and each of
    `baselines` (() for ours alone), and score every tracker with TrackEval.

    Pass a detector to evaluate the whole pipeline, a recording of a detector's output on these videos to
    run the pipeline on it instead (perception.tracking.recorded.RecordingError if it was made on other
    videos or cannot serve the tracker's thresholds), or noise to evaluate the trackers on corrupted
    ground truth: exactly one of the three. ``pace``: with noise or a recording (made at stride 1), the detector
    takes an uneven subset of the frames and the trackers see only those, as on the node
    (perception.tracking.pace); the same frames for both, drawn from each video's seed. ``oracle``: with a
    recording only, each video's recorded detections are first corrected against its ground truth
    (perception.tracking.oracle, one of its ORACLE_MODES).
    """
    _check(sum(source is not None for source in (detector, noise, replay)) == 1,
           "evaluate with one of a detector, a recording of one and a noise model")
    _check_pace(pace, detector, config.job)
    _check(oracle is None or replay is not None, "an oracle corrects recorded detections: replay a recording")
    _check(oracle in (None, *ORACLE_MODES), f"oracle mode must be one of {', '.join(ORACLE_MODES)}; got {oracle!r}")
    if replay is not None:
        replay.check_fits(config.videos_described())
    unknown = sorted(set(baselines) - set(BASELINES))
    _check(not unknown, f"unknown baselines {unknown}; choose from {', '.join(BASELINES)}")
    gt_root, trackers_root, clips = work_dir / "gt", work_dir / "trackers", work_dir / "clips"
    for directory in (gt_root, clips, *(trackers_root / name for name in (TRACKER_NAME, *baselines))):
        directory.mkdir(parents=True, exist_ok=True)
    box_threshold = (NOISY_TRUTH_BOX_THRESHOLD if noise is not None
                     else replay.header["box_threshold"] if replay is not None else detector.box_threshold)
    lengths, detections_of, floor, coverage = {}, {}, None, Coverage()
    for offset in range(config.videos):
        seed = config.seed + offset
        name = video_name(config.scenario, seed)
        frames, objects_per_frame = scenario_video(config.scenario, seed, config.frames, config.size)
        recording = replay if replay is None or oracle is None else corrected_video(replay, name, objects_per_frame,
                                                                                     oracle)
        if noise is not None:
            detections = _noisy_truth_run(name, frames.__getitem__, objects_per_frame, config.size, config.frame_rate,
                                          config.job, noise, np.random.default_rng(seed), pace, work_dir, baselines)
        elif pace is not None:
            detections = _replay_at_pace(name, frames, objects_per_frame, recording, seed, config, pace, work_dir,
                                         baselines, coverage)
        else:
            write_mot_sequence(gt_root / name, objects_per_frame, config.size, fps=config.frame_rate)
            video_detector = detector if recording is None else ReplayedDetector(recording, name)
            mot_path = trackers_root / TRACKER_NAME / f"{name}.txt"
            detections, lowest = _track_with_detector(frames, objects_per_frame, video_detector, config,
                                                      clips / f"{name}.mp4", mot_path)
            floor = lowest if floor is None else min(floor, lowest)
            for objects, found, tracked in zip(objects_per_frame, detections, read_mot_boxes(mot_path, len(frames))):
                if found is not None:
                    coverage.add(objects, found, tracked, box_threshold)
            for baseline in baselines:
                _replay(_baseline(baseline, config.frame_rate), detections, box_threshold, config.job.frame_stride,
                        trackers_root / baseline / f"{name}.txt")
        detections_of[name] = detections
        lengths[name] = len(detections)
    scores = evaluate_trackers(gt_root, trackers_root, [TRACKER_NAME, *baselines], lengths)
    return TrackingComparison(ours=scores[TRACKER_NAME], baselines={name: scores[name] for name in baselines},
                              detections=detections_of, floor=floor,
                              coverage=coverage.as_dict() if noise is None else None)


def evaluate_on_trajectories(work_dir: Path, sequences: list[Sequence], noise: NoiseConfig, draws: int = 10,
                             seed: int = 0, job: VideoJobConfig | None = None,
                             baselines: tuple[str, ...] = BASELINES, pace: DetectorPace | None = None
                             ) -> TrackingComparison:
    """Track each annotated sequence (perception.tracking.trajectories) `draws` times, with noisy truth in place
    of a detector (draw d of the i-th sequence from the generator seeded (d, i), d = seed, seed + 1, ...), by
    ours and each of `baselines` on the identical detections; scored with TrackEval over all sequences and
    draws (files under work_dir). ``pace``: the detector takes an uneven subset of the frames and the trackers see
    only those, as on the node (perception.tracking.pace)."""
    _check(sequences, "evaluate on at least one sequence")
    _check(1 <= draws <= 1000, f"noise draws per sequence must be in [1, 1000]; got {draws}")
    unknown = sorted(set(baselines) - set(BASELINES))
    _check(not unknown, f"unknown baselines {unknown}; choose from {', '.join(BASELINES)}")
    job = job or VideoJobConfig()
    _check_pace(pace, None, job)
    gt_root, trackers_root = work_dir / "gt", work_dir / "trackers"
    for directory in (gt_root, *(trackers_root / name for name in (TRACKER_NAME, *baselines))):
        directory.mkdir(parents=True, exist_ok=True)
    names = [sequence.name for sequence in sequences]
    _check(len(set(names)) == len(names), f"sequences need distinct names; got {names}")
    lengths, detections_of = {}, {}
    for index, sequence in enumerate(sequences):
        grey = None if sequence.images is not None else sequence.frame(0)
        frame_at = sequence.frame if grey is None else (lambda _, grey=grey: grey)
        for draw in range(seed, seed + draws):
            name = f"{sequence.name}-noise{draw:04d}"
            detections = _noisy_truth_run(name, frame_at, sequence.objects_per_frame, sequence.size,
                                          sequence.frame_rate, job, noise, np.random.default_rng([draw, index]), pace,
                                          work_dir, baselines)
            detections_of[name] = detections
            lengths[name] = len(detections)
    scores = evaluate_trackers(gt_root, trackers_root, [TRACKER_NAME, *baselines], lengths)
    return TrackingComparison(ours=scores[TRACKER_NAME], baselines={name: scores[name] for name in baselines},
                              detections=detections_of)


def baseline_settings(name: str, frame_rate: float) -> dict:
    """The settings a baseline runs with in this evaluation, for the report."""
    return _baseline(name, frame_rate).settings


def switches_per_20_tracks(scores: TrackingScores) -> float:
    """Identity switches per 20 ground-truth tracks (the issue's target: at most 1)."""
    return 20.0 * scores.id_switches / scores.gt_tracks if scores.gt_tracks else math.nan
