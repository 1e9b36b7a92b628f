"""`gdino eval tracking [--scenario default|crowd|mixed|trajectories] [--json]`: HOTA, IDF1, MOTA, identity
switches, merged ids and fragmentations (TrackEval) on generated videos with exact ground truth, for the whole
pipeline with a model or for the tracker alone on noisy truth, or on real annotated pedestrians (MOT Challenge
ground truth: two TUD sequences come with motmetrics, or name your own with --ground-truth) with noisy truth;
plain norfair and ByteTrack are scored beside ours on the identical detections in the same run."""
from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path

from perception.cli.errors import EXIT_OK, CliError
from perception.cli.model_args import add_detector_arguments, build_compared_detector, precision_report
from perception.cli.video import add_tracker_arguments, parse_size, tracker_config_from_args, tuned_tracking

# Videos x frames per scenario: the default's 24 x 60 hold about 90 tracks (one switch moves the rate per
# 20 tracks by about 0.2); a crowd's 8 x 150 hold about 180 (by about 0.1) and take about a minute on
# noisy truth on 2 CPU cores.
SCENARIO_SIZES = {"default": (24, 60), "crowd": (8, 150), "mixed": (8, 150)}
TRAJECTORIES = "trajectories"
# Noise draws per annotated sequence: the TUD pair drawn 10 times holds 180 tracks.
TRAJECTORY_DRAWS = 10
NOISE_FLAGS = ("jitter", "miss_rate", "dropout_rate", "dropout_frames", "false_positives", "min_visibility",
               "second_boxes")


def register_eval(eval_subparsers) -> None:
    parser = eval_subparsers.add_parser("tracking", help="tracking metrics on generated videos with ground truth",
                                        description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--scenario", choices=(*SCENARIO_SIZES, TRAJECTORIES), default=None,
                        help="default: a few objects of mostly distinct phrases; crowd: 6-15 walkers of one phrase "
                             "entering, leaving, crossing and hiding under a panning camera; mixed: a crowd and a "
                             "few walkers of other phrases; trajectories: real annotated pedestrians with noisy "
                             "truth (motmetrics' TUD-Campus and TUD-Stadtmitte, or --ground-truth) (default: "
                             "default)")
    parser.add_argument("--detections", choices=("model", "noisy-truth"), default="model",
                        help="model: run the detector on the videos (default); noisy-truth: feed the trackers "
                             "ground truth with jitter, misses, dropouts and false positives (scores them alone)")
    parser.add_argument("--videos", type=int, help="generated videos (default: 24 for default, 8 for crowds)")
    parser.add_argument("--frames", type=int, help="frames per video (default: 60 for default, 150 for crowds)")
    parser.add_argument("--size", type=parse_size, default=None, help="video WIDTHxHEIGHT (default 320x240)")
    parser.add_argument("--seed", type=int, default=None, help="video i is generated from seed + i (default 0)")
    parser.add_argument("--stride", type=int, default=None, help="detector on every n-th frame (default 1)")
    parser.add_argument("--work-dir", type=Path, help="keep the generated videos, outputs and MOT files here")
    real = parser.add_argument_group("real trajectories (--scenario trajectories, with --detections noisy-truth)")
    real.add_argument("--ground-truth", type=Path, nargs="+", metavar="PATH",
                      help="MOT Challenge sequences: gt.txt files or sequence folders (gt/gt.txt, seqinfo.ini, "
                           "images if any); implies --scenario trajectories (default: motmetrics' two TUD "
                           "sequences); --videos is the noise draws per sequence (default 10)")
    real.add_argument("--frame-rate", type=float,
                      help="frames per second of ground truth without a seqinfo.ini (with --size WIDTHxHEIGHT)")
    real.add_argument("--no-occlusion", action="store_true",
                      help="every annotated person is fully visible (default: as annotated in MOT17's visibility "
                           "column, or estimated from the boxes in front)")
    recorded = parser.add_mutually_exclusive_group()
    recorded.add_argument("--record-detections", type=Path, metavar="FILE",
                          help="with the model: write its output on every video (down to ByteTrack's low "
                               "threshold) to FILE, JSON lines, for --replay-detections")
    recorded.add_argument("--replay-detections", type=Path, metavar="FILE",
                          help="run the pipeline on the detections recorded in FILE instead of the model, on the "
                               "videos they were recorded on (scenario, seed, videos, frames, size and stride "
                               "come from FILE): tracker settings, and --box-threshold down to the recorded floor, "
                               "compared on a model's boxes without running it")
    parser.add_argument("--oracle", choices=("scores", "selection", "truth"),
                        help="with --replay-detections: correct the recorded detections against the videos' ground "
                             "truth first, to see what a better detector would give: scores (each object's best box "
                             "scores 0.9), selection (that box alone), truth (the same, drawn at the ground-truth "
                             "box); perception/tracking/oracle.py")
    noise = parser.add_argument_group("noisy truth (with --detections noisy-truth)")
    noise.add_argument("--jitter", type=float, help="std of each box corner's offset, fraction of the box size "
                                                    "(default 0.05)")
    noise.add_argument("--miss-rate", type=float, help="chance a visible object is missed in a frame (default 0.1)")
    noise.add_argument("--dropout-rate", type=float, help="chance per frame that an object starts a dropout "
                                                          "(default 0.02)")
    noise.add_argument("--dropout-frames", type=int, help="frames a dropout lasts (default 3)")
    noise.add_argument("--false-positives", type=float,
                       help="false positives per frame as a fraction of the objects in view (default 0.05)")
    noise.add_argument("--min-visibility", type=float,
                       help="objects less visible than this are never detected (default 0.2)")
    noise.add_argument("--second-boxes", type=float,
                       help="chance a detected object also gets a second box scored under the box threshold, as a "
                            "crowd-trained model reports (about 0.3); default 0")
    noise.add_argument("--detector-pace", metavar="N|SHORTEST-LONGEST",
                       help="the node's path: the detector takes a frame, then the one SHORTEST to LONGEST frames "
                            "later (drawn evenly; e.g. 3-12), dropping those between as the node does when it is "
                            "slower than the camera; the trackers see and are scored on those frames only, by the "
                            "boxes they matched (ours steps through the frames it did not see, as on the node; "
                            "the baselines update once per frame taken). With --detections noisy-truth or "
                            "--replay-detections (a recording made at stride 1: the same frames are taken as with "
                            "noisy truth). Not with --stride")
    add_tracker_arguments(parser)
    add_detector_arguments(parser)
    parser.set_defaults(run=run)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _pace(args: argparse.Namespace):
    """The --detector-pace, or None."""
    from perception.tracking.pace import DetectorPace

    if args.detector_pace is None:
        return None
    if args.detections != "noisy-truth" and args.replay_detections is None:
        _refuse(args, ("detector_pace",), "for --detections noisy-truth or --replay-detections only (record the "
                                          "model's detections with --record-detections, then replay them at a pace)")
    if args.stride not in (None, 1):
        if args.replay_detections is not None:  # the stride is the recording's
            raise CliError(f"--detector-pace: {args.replay_detections} was recorded at stride {args.stride}; record "
                           "at stride 1 to replay at a pace")
        raise CliError("--detector-pace replaces --stride: give one of them")
    try:
        return DetectorPace.parse(args.detector_pace)
    except ValueError as error:
        raise CliError(f"--detector-pace: {error}") from error


def _noise(args: argparse.Namespace):
    from perception.tracking.noise import NoiseConfig

    if args.detections == "model":
        _refuse(args, NOISE_FLAGS, "for --detections noisy-truth only")
        return None
    return NoiseConfig(**{name: getattr(args, name) for name in NOISE_FLAGS if getattr(args, name) is not None})


def _targets(scenario: str, detections: str, baselines: dict) -> dict:
    """The issue's targets, as {metric: bound} (IDF1 a minimum, the others maximums)."""
    if scenario == "default":
        return {"IDF1": 0.90, "id_switches_per_20_gt_tracks": 1.0}
    norfair = baselines["norfair"]
    if detections == "noisy-truth":
        return {"IDF1": round(norfair.idf1 + 0.03, 4), "id_switches": round(0.8 * norfair.id_switches, 2),
                "merged_ids": norfair.merged_ids}
    return {"IDF1": round(max([0.85] + [scores.idf1 for scores in baselines.values()]), 4),
            "id_switches_per_20_gt_tracks": 2.0}


def _meets(targets: dict, result: dict) -> bool:
    return all(result[key] >= bound if key == "IDF1" else result[key] <= bound for key, bound in targets.items())


def _summary(scores) -> dict:
    from perception.tracking.evaluation import switches_per_20_tracks

    return {**scores.as_dict(), "id_switches_per_20_gt_tracks": round(switches_per_20_tracks(scores), 3)}


# The options that say which videos are generated, with their defaults, and where a recording keeps each.
VIDEO_OPTIONS = {"scenario": ("default", "scenario"), "seed": (0, "seed"), "stride": (1, "frame_stride"),
                 "videos": (None, "videos"), "frames": (None, "frames"), "size": ((320, 240), "size")}
# Model options a replay or noisy truth cannot honour: (attribute, value when not given).
MODEL_OPTIONS = (("weights", None), ("preset", None), ("box_threshold", None), ("text_threshold", None),
                 ("nms_iou", None), ("present_phrase_threshold", None), ("present_phrase_iou", None),
                 ("shortest_edge", None), ("longest_edge", None), ("compile", False),
                 ("device", "cpu"), ("dtype", "auto"))


def _refuse(args: argparse.Namespace, options, why: str) -> None:
    """A CliError naming those of ``options`` that were given, with ``why`` they do not apply. options: names
    (not given: None) or (name, value when not given) pairs."""
    pairs = [(option, None) if isinstance(option, str) else option for option in options]
    given = [_flag(name) for name, unset in pairs if getattr(args, name) != unset]
    if given:
        raise CliError(f"{', '.join(given)}: {why}")


def _replayed(args: argparse.Namespace):
    """The recording --replay-detections names, with the video options taken from it (a given one that
    differs is an error); None without the option."""
    from perception.tracking.recorded import RecordingError, read_recording

    if args.replay_detections is None:
        if args.oracle is not None:
            raise CliError("--oracle corrects recorded detections: give --replay-detections FILE")
        return None
    if args.detections != "model":
        raise CliError("--replay-detections replays a model's detections; it does not go with --detections "
                       f"{args.detections}")
    _refuse(args, [option for option in MODEL_OPTIONS if option[0] != "box_threshold"],
            f"the detections come from {args.replay_detections}, not from a model (record them again with these "
            "options)")
    try:
        recording = read_recording(args.replay_detections)
        if args.box_threshold is not None:
            recording = recording.at_box_threshold(args.box_threshold)
    except RecordingError as error:
        raise CliError(str(error)) from error
    for option, (_, key) in VIDEO_OPTIONS.items():
        recorded = recording.header[key]
        recorded = tuple(reversed(recorded)) if option == "size" else recorded  # (width, height) on the command line
        value = getattr(args, option)
        if value is not None and value != recorded:
            raise CliError(f"{_flag(option)} {value}: {args.replay_detections} was recorded with {recorded}")
        setattr(args, option, recorded)
    return recording


def _recorded_tuned_tracking(recording) -> tuple[dict, str] | None:
    """The tracker settings the recorded detections' weights carry, as the recording keeps them (None: none, or
    a recording made before they were kept)."""
    from perception.tracking.recorded import TUNED_TRACKING_KEY

    kept = recording.header.get(TUNED_TRACKING_KEY)
    return (kept[0], kept[1]) if kept else None


def _record_to(args: argparse.Namespace) -> Path | None:
    path = args.record_detections
    if path is None:
        return None
    if args.detections != "model":
        raise CliError(f"--record-detections records a model's detections; --detections is {args.detections}")
    if path.is_dir() or not path.parent.is_dir():
        raise CliError(f"--record-detections {path}: not a file in an existing folder")
    return path


def _write_recording(path: Path, config, comparison, detector, tuned: tuple[dict, str] | None) -> None:
    from perception.tracking.recorded import TUNED_TRACKING_KEY, present_phrase_rule, write_recording

    present_floor, present_iou = present_phrase_rule(detector)
    header = {**config.videos_described(), "box_threshold": detector.box_threshold,
              "present_phrase_floor": present_floor, "present_phrase_iou": present_iou, "floor": comparison.floor,
              "weights": detector.description, "dtype": str(detector.dtype).removeprefix("torch."),
              TUNED_TRACKING_KEY: list(tuned) if tuned is not None else None}
    write_recording(path, header, comparison.detections)


def _work_dir(args: argparse.Namespace, prefix: str):
    """--work-dir, kept; else a temporary folder removed afterwards."""
    return contextlib.nullcontext(args.work_dir) if args.work_dir else tempfile.TemporaryDirectory(prefix=prefix)


def run(args: argparse.Namespace) -> int:
    from perception.tracking.evaluation import TrackingEvalConfig, evaluate_on_synthetic_videos
    from perception.tracking.recorded import RecordingError
    from perception.video.job import VideoJobConfig

    if args.ground_truth is not None and args.scenario is None:
        args.scenario = TRAJECTORIES
    if args.detections == "noisy-truth":
        _refuse(args, MODEL_OPTIONS, "no model runs with --detections noisy-truth (the trackers get corrupted ground "
                                    "truth)")
    if args.scenario == TRAJECTORIES:
        return _report(args, *_run_trajectories(args))
    _refuse(args, ("ground_truth", "frame_rate", ("no_occlusion", False)), f"for --scenario {TRAJECTORIES} only")
    replay, record_to = _replayed(args), _record_to(args)
    for option, (default, _) in VIDEO_OPTIONS.items():
        if getattr(args, option) is None:
            setattr(args, option, default)
    videos, frames = SCENARIO_SIZES[args.scenario]
    with_model = args.detections == "model" and replay is None
    # The tracker settings the detections' weights carry: read once, for the tracker and the recording. Noisy truth
    # comes from no model, so none (the tracker's own defaults, whatever the default weights carry).
    tuned = None
    if replay is not None:
        tuned = _recorded_tuned_tracking(replay)
    elif with_model:
        tuned = tuned_tracking(args.weights)
    try:
        noise, pace = _noise(args), _pace(args)
        job = VideoJobConfig(batch_size=args.batch_size, frame_stride=args.stride,
                             tracker=tracker_config_from_args(args, tuned))
        config = TrackingEvalConfig(scenario=args.scenario, videos=args.videos or videos, frames=args.frames or frames,
                                    size=(args.size[1], args.size[0]), seed=args.seed, job=job)
    except ValueError as error:
        raise CliError(str(error)) from error
    detector, agreement = build_compared_detector(args) if with_model else (None, None)
    started = time.perf_counter()
    with _work_dir(args, "gdino-eval-tracking-") as work_dir:
        try:
            comparison = evaluate_on_synthetic_videos(Path(work_dir), config, detector=detector, noise=noise,
                                                      replay=replay, pace=pace, oracle=args.oracle)
        except RecordingError as error:
            raise CliError(str(error)) from error
    if record_to is not None:
        _write_recording(record_to, config, comparison, detector, tuned)
    return _report(args, comparison, config.frame_rate, noise, {
        "weights": detector.description if detector is not None else None,
        "box_threshold": detector.box_threshold if detector is not None else None,
        **(precision_report(detector, agreement) if detector is not None else {}),
        **({"weights": f"{replay.header['weights']} (replayed from {args.replay_detections})",
            "box_threshold": replay.header["box_threshold"], "dtype": replay.header["dtype"],
            "agreement_with_float32": None} if replay is not None else {}),
        "oracle": args.oracle if replay is not None else None,
        "recorded_detections": str(record_to) if record_to is not None else None,
        "videos": config.videos,
        "frames_per_video": config.frames,
        "detector_pace": pace.as_list() if pace is not None else None,
        "coverage_by_visibility": comparison.coverage,
        "seed": config.seed,
        "seconds": round(time.perf_counter() - started, 1),
    })


def _run_trajectories(args: argparse.Namespace):
    """Noisy truth on annotated sequences: (comparison, frame rate of the baselines' settings, noise, report)."""
    from perception.tracking.evaluation import evaluate_on_trajectories
    from perception.tracking.trajectories import TrajectoriesError, bundled_sequences, read_sequence
    from perception.video.job import VideoJobConfig

    if args.detections != "noisy-truth":
        raise CliError(f"--scenario {TRAJECTORIES} scores the trackers on noisy truth: add --detections noisy-truth "
                       "(the model needs video, and MOT ground truth is boxes)")
    _refuse(args, ("frames", "record_detections", "replay_detections", "oracle"),
            f"not for --scenario {TRAJECTORIES} (the sequences set their frames)")
    started = time.perf_counter()
    size = None if args.size is None else (args.size[1], args.size[0])
    try:
        paths = args.ground_truth or bundled_sequences()
        sequences = [read_sequence(path, size, args.frame_rate, occlusion=not args.no_occlusion) for path in paths]
        noise, pace = _noise(args), _pace(args)
        job = VideoJobConfig(batch_size=args.batch_size, frame_stride=args.stride or 1,
                             tracker=tracker_config_from_args(args, tuned=None))  # noisy truth: no model's settings
        with _work_dir(args, "gdino-eval-trajectories-") as work_dir:
            comparison = evaluate_on_trajectories(Path(work_dir), sequences, noise, args.videos or TRAJECTORY_DRAWS,
                                                  args.seed or 0, job, pace=pace)
    except (TrajectoriesError, ValueError, OSError) as error:
        raise CliError(str(error)) from error
    rates = {sequence.frame_rate for sequence in sequences}
    return comparison, max(rates), noise, {
        "sequences": [{"name": sequence.name, "frames": len(sequence.objects_per_frame),
                       "size": [sequence.size[1], sequence.size[0]], "frame_rate": sequence.frame_rate,
                       "appearance": "images" if sequence.images is not None else "none (uniform grey frames)"}
                      for sequence in sequences],
        "occlusion": "none" if args.no_occlusion else "annotated or estimated from the boxes",
        "detector_pace": pace.as_list() if pace is not None else None,
        "videos": len(comparison.detections), "noise_draws_per_sequence": args.videos or TRAJECTORY_DRAWS,
        "seed": args.seed or 0, "seconds": round(time.perf_counter() - started, 1)}


def _report(args: argparse.Namespace, comparison, frame_rate: float, noise, details: dict) -> int:
    from perception.tracking.coverage import COVER_IOU
    from perception.tracking.evaluation import baseline_settings

    result = _summary(comparison.ours)
    targets = _targets(args.scenario, args.detections, comparison.baselines)
    result.update({
        "baselines": {name: {**_summary(scores), "settings": baseline_settings(name, frame_rate)}
                      for name, scores in comparison.baselines.items()},
        "targets": targets,
        "meets_targets": _meets(targets, result),
        "scenario": args.scenario,
        "detections": args.detections,
        "noise": noise.as_dict() if noise is not None else None,
        **details,
    })
    if args.json:
        print(json.dumps(result))
    else:
        for name, scores in [("ours", result), *result["baselines"].items()]:
            print(f"{name:>9}: HOTA {scores['HOTA']:.3f}  IDF1 {scores['IDF1']:.3f}  MOTA {scores['MOTA']:.3f}  "
                  f"id switches {scores['id_switches']} ({scores['id_switches_per_20_gt_tracks']:.2f} per 20 tracks)  "
                  f"merged ids {scores['merged_ids']}  fragmentations {scores['fragmentations']}")
        shape = (f"{result['videos']} videos x {result['frames_per_video']} frames" if "frames_per_video" in result
                 else f"{len(result['sequences'])} sequences x {result['noise_draws_per_sequence']} noise draws")
        if result.get("oracle") is not None:
            shape += f", the recorded detections corrected (--oracle {result['oracle']})"
        if result["detector_pace"] is not None:
            shape += (f", the detector on every {'-'.join(map(str, result['detector_pace']))} frames "
                      f"({result['frames']} frames scored)")
        print(f"{result['gt_tracks']} ground-truth tracks [{args.scenario}, {args.detections}, {shape}]; "
              f"targets {targets}: "
              f"{'met' if result['meets_targets'] else 'not met'}")
        for band, shares in (result.get("coverage_by_visibility") or {}).items():
            print(f"visible {band}: {shares['objects']} ground-truth boxes; covered at IoU >= {COVER_IOU} by our "
                  f"tracks {shares['tracked']}, by boxes of the detector above the threshold {shares['detected']}, at "
                  f"any score {shares['found']}")
        if result.get("agreement_with_float32") is not None:
            print(f"{result['dtype']} against float32 on the same frames: {result['agreement_with_float32']} of "
                  f"{result['float32_detections']} detections matched at IoU >= 0.9, largest score difference "
                  f"{result['max_score_difference_with_float32']}")
    return EXIT_OK
