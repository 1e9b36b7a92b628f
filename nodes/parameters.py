"""Every parameter of the detector node, declared in one place with its description and range, and
mapped onto the pipeline's configs.

Start-time parameters are read when the node is configured, so they change only while it is unconfigured
(after ``cleanup``, or before the first ``configure`` with ``autostart`` false); ``prompt``, ``box_threshold``
and ``text_threshold`` change in any state and take effect between batches. Image QoS is sensor-data by
default and overridable per topic with rclpy's standard ``qos_overrides.<topic>.subscription.*``
parameters.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

from perception.camera_messages import DEFAULT_MAX_PIXELS, detections_topic
from perception.detector import DTYPE_NAMES, DetectorConfig
from perception.postprocess import PostprocessConfig
from perception.preprocess import PreprocessConfig
from perception.tracking.config import (
    CONSECUTIVE_FRAMES_ONLY,
    DISTANCES,
    FILTERS,
    LABEL_GATINGS,
    MOTION_MODELS,
    PROMPT_CHANGE_RULES,
    MotionConfig,
    TrackerConfig,
)
from perception.weights import TunedSettings

@dataclass(frozen=True)
class ParameterSpec:
    name: str
    default: Any
    description: str
    runtime: bool = False  # False: read at configure, refused while the node is configured
    value_range: tuple[float, float] | None = None  # inclusive; int or float as the default
    choices: tuple[str, ...] = ()

    def descriptor(self) -> ParameterDescriptor:
        descriptor = ParameterDescriptor(name=self.name, description=self.description)
        if isinstance(self.default, list):
            descriptor.type = ParameterType.PARAMETER_STRING_ARRAY
        if self.value_range is not None:
            low, high = self.value_range
            if isinstance(self.default, float):
                descriptor.floating_point_range = [FloatingPointRange(from_value=float(low), to_value=float(high))]
            else:
                descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=1)]
        if self.choices:
            descriptor.additional_constraints = "one of: " + ", ".join(self.choices)
        return descriptor


_TRACKER_DEFAULTS = TrackerConfig()
_MOTION_DEFAULTS = MotionConfig()
_PREPROCESS_DEFAULTS = PreprocessConfig()
_POSTPROCESS_DEFAULTS = PostprocessConfig()

SPECS = (
    ParameterSpec("autostart", True, "Configure and activate at start (a managed lifecycle node); false: wait in "
                  "unconfigured for a lifecycle manager's transitions."),
    ParameterSpec(
        "cameras",
        ["/camera/image_raw"],
        "Image topics (sensor_msgs/Image). A topic ending in /compressed is read as sensor_msgs/CompressedImage. "
        "Detections go to <topic's namespace>/detections.",
    ),
    ParameterSpec("prompt", "", "Phrases to detect, separated by ' . ', e.g. 'a person . a red mug .'; "
                  "also set through the ~/prompt topic. Empty: frames are skipped until a prompt arrives.", runtime=True),
    ParameterSpec("box_threshold", 0.35, "Smallest box score reported.", runtime=True, value_range=(0.0, 1.0)),
    ParameterSpec("text_threshold", 0.25, "Smallest token score for a phrase to label a box.", runtime=True,
                  value_range=(0.0, 1.0)),
    ParameterSpec("model", "", "Model directory, original .pth checkpoint, bundled:crowds (the bundled model "
                  "trained longer on crowds of one phrase), bundled (the first bundled model), or random:tiny "
                  "(plumbing tests); empty: bundled:crowds."),
    ParameterSpec("model_settings", True, "Use the settings tuned for the model (a tuned_settings.yaml beside its "
                  "weights; bundled:crowds has one) for the parameters they name that are left at their defaults; "
                  "each is set at configure, so the parameter shows it, and logged. false: the parameters as given."),
    ParameterSpec("device", "cpu", "Torch device for inference, e.g. cpu, cuda, cuda:1."),
    ParameterSpec("dtype", "auto", "Inference precision; auto: float16 on a CUDA GPU, bfloat16 on a CPU with bfloat16 "
                  "instructions where a check against float32 passes, else float32 (the choice is logged).",
                  choices=DTYPE_NAMES),
    ParameterSpec("shortest_edge", 0,
                  "Images are resized so their short side has this many pixels (unless longest_edge caps it); "
                  f"0: the checkpoint's own size (else {_PREPROCESS_DEFAULTS.shortest_edge}). Either size set "
                  "alone leaves the other at the checkpoint's own.",
                  value_range=(0, 8192)),
    ParameterSpec("longest_edge", 0, "Cap on the resized long side, pixels; 0: the checkpoint's own, "
                  f"else {_PREPROCESS_DEFAULTS.longest_edge}.", value_range=(0, 8192)),
    ParameterSpec("nms_iou", 0.0, "Per-phrase non-maximum suppression IoU threshold; 0 keeps every box.",
                  value_range=(0.0, 1.0)),
    ParameterSpec("present_phrase_threshold", _POSTPROCESS_DEFAULTS.present_phrase_threshold,
                  "A box scored above this but not above box_threshold is reported too when a box of its phrase in "
                  "the image passes box_threshold and it overlaps no reported box of its phrase by more than "
                  "present_phrase_iou (crowds of one phrase); 1 turns it off. Tracks still start at box_threshold.",
                  value_range=(0.0, 1.0)),
    ParameterSpec("present_phrase_iou", _POSTPROCESS_DEFAULTS.present_phrase_iou,
                  "The overlap with a reported box of its phrase that drops a box kept by present_phrase_threshold.",
                  value_range=(0.0, 1.0)),
    ParameterSpec("max_detections", _POSTPROCESS_DEFAULTS.max_detections, "Most boxes reported per image.",
                  value_range=(1, 10_000)),
    ParameterSpec("batch_size", DetectorConfig().batch_size,
                  "Most images per forward pass; frames of more cameras run in several passes.", value_range=(1, 64)),
    ParameterSpec("max_image_pixels", DEFAULT_MAX_PIXELS,
                  "Images with more pixels (width x height) are skipped as malformed (too_large), a compressed one "
                  "by its header, before it is decoded (a small PNG can declare gigabytes).",
                  value_range=(1, 10**10)),
    ParameterSpec("publish_annotated", False, "Also publish <namespace>/detections/image with boxes drawn."),
    ParameterSpec("health_period", 10.0, "Seconds between health reports on the log and /diagnostics.",
                  value_range=(0.1, 3600.0)),
    ParameterSpec("depth.topics", "",
                  "Depth images registered (aligned) to colour cameras, 16UC1 millimetres or 32FC1 metres, as "
                  "'colour topic=depth topic' entries joined by ';', e.g. '/cam/color/image_raw="
                  "/cam/aligned_depth_to_color/image_raw'. Those cameras also get <namespace>/detections_3d "
                  "(vision_msgs/Detection3DArray). Empty: 2D only."),
    ParameterSpec("depth.camera_info_topics", "",
                  "CameraInfo of those colour cameras as 'colour topic=camera_info topic' entries joined by ';'; "
                  "a camera not named here uses <namespace of its colour topic>/camera_info."),
    ParameterSpec("depth.slop", 0.02, "Largest difference, seconds, between a colour stamp and its depth "
                  "partner's; a frame without a partner is published in 2D only (counted in health).",
                  value_range=(0.0, 1.0)),
    ParameterSpec("depth.wait", 0.1, "Seconds after a colour frame's arrival that its depth partner may "
                  "still arrive.", value_range=(0.0, 5.0)),
    ParameterSpec("depth.smoothing", 0.5, "Weight of the newest 3D estimate of a track (exponential "
                  "smoothing of centre and size); 1: no smoothing.", value_range=(1e-6, 1.0)),
    ParameterSpec("depth.max_age", 2.0, "Seconds a track's smoothed 3D estimate is remembered without "
                  "an update.", value_range=(1e-3, 600.0)),
    ParameterSpec("tracking.enabled", True, "Track objects per camera; detection ids are then track ids."),
    ParameterSpec("tracking.distance", _TRACKER_DEFAULTS.distance, "Association distance.", choices=DISTANCES),
    ParameterSpec("tracking.distance_threshold", _TRACKER_DEFAULTS.distance_threshold,
                  "Largest association distance that still matches: (0, 1] for iou, pixels for euclidean.",
                  value_range=(1e-6, 1e6)),
    ParameterSpec("tracking.hit_counter_max", _TRACKER_DEFAULTS.hit_counter_max,
                  "Frames a track survives without a match: camera frames, or frames at tracking.frame_rate "
                  "while the detector is slower.", value_range=(1, 10_000)),
    ParameterSpec("tracking.initialization_delay", _TRACKER_DEFAULTS.initialization_delay,
                  "Frames of matches a new track needs before it is published (a new object alone of its phrase: "
                  "frames its boxes span); below hit_counter_max.", value_range=(0, 9_999)),
    ParameterSpec("tracking.label_gating", _TRACKER_DEFAULTS.label_gating,
                  "phrase: a detection continues only tracks of its phrase; prompt: of any phrase.", choices=LABEL_GATINGS),
    ParameterSpec("tracking.cross_phrase_iou", _TRACKER_DEFAULTS.cross_phrase_iou,
                  "With phrase gating, a detection may continue a track of another phrase it overlaps by more "
                  "than this IoU when nothing of either phrase competes; 1: never.", value_range=(1e-6, 1.0)),
    ParameterSpec("tracking.duplicate_iou", _TRACKER_DEFAULTS.duplicate_iou,
                  "Same-phrase detections overlapping a better one by more than this IoU are dropped; 1: keep all.",
                  value_range=(1e-6, 1.0)),
    ParameterSpec("tracking.report_coasting_seconds", _TRACKER_DEFAULTS.report_coasting_seconds,
                  "Seconds a track without a detection is still published at its predicted box while others of its "
                  "phrase are published (the only one: until its hit counter ends it; each track says matched); 0: "
                  "among several of a phrase only matched ones.",
                  value_range=(0.0, 600.0)),
    ParameterSpec("tracking.new_track_iou", _TRACKER_DEFAULTS.new_track_iou,
                  "A detection overlapping the only published track of its phrase by more than this IoU starts no "
                  "track (a second box on that object) and continues that track if no other box did; 1: off.",
                  value_range=(1e-6, 1.0)),
    ParameterSpec("tracking.continue_threshold", _TRACKER_DEFAULTS.continue_threshold,
                  "Detections scored from this up to box_threshold continue tracks, never start one; 0: off.",
                  value_range=(0.0, 0.999)),
    ParameterSpec("tracking.continue_iou", _TRACKER_DEFAULTS.continue_iou,
                  "Such a weak detection continues only a track it overlaps by more than this IoU; 0: any within "
                  "the gate.",
                  value_range=(0.0, 0.999)),
    ParameterSpec("tracking.frame_rate", _TRACKER_DEFAULTS.frame_rate,
                  "The least often a camera's tracker is stepped while the detector is slower than the camera "
                  "(hit_counter_max counts these steps); frames are timed by their stamps, or without one by "
                  "their arrival. See tracking.step_at_camera_rate.",
                  value_range=(0.1, 1000.0)),
    ParameterSpec("tracking.step_at_camera_rate", _TRACKER_DEFAULTS.step_at_camera_rate,
                  "While the detector takes at least every 6th frame of a camera faster than tracking.frame_rate "
                  "(judged on its latest runs), step that camera's tracker at the camera's rate, hit_counter_max "
                  "scaled to the same seconds: fewer identity switches. false: keep tracking.frame_rate and log "
                  "what to set."),
    ParameterSpec("tracking.reid_seconds", _TRACKER_DEFAULTS.reid_seconds,
                  "Seconds a lost track can be re-identified by a new track of its phrase nearby; 0: off.",
                  value_range=(0.0, 600.0)),
    ParameterSpec("tracking.reid_distance", _TRACKER_DEFAULTS.reid_distance,
                  "Reach around where a lost track should be, in its box sizes, when it is lost.",
                  value_range=(1e-6, 10.0)),
    ParameterSpec("tracking.reid_distance_per_second", _TRACKER_DEFAULTS.reid_distance_per_second,
                  "Growth of that reach for each second the track has been lost, in box sizes.",
                  value_range=(0.0, 10.0)),
    ParameterSpec("tracking.reid_max_distance", _TRACKER_DEFAULTS.reid_max_distance,
                  "The largest reach, in box sizes of the lost track; at least reid_distance.",
                  value_range=(1e-6, 10.0)),
    ParameterSpec("tracking.reid_appearance", _TRACKER_DEFAULTS.reid_appearance,
                  "Colour similarity (Bhattacharyya coefficient of histograms) a re-identified track needs with the "
                  "lost one; 0: position and size only.", value_range=(0.0, 0.999999)),
    ParameterSpec("tracking.on_prompt_change", _TRACKER_DEFAULTS.on_prompt_change,
                  "What a prompt change does to live tracks.", choices=PROMPT_CHANGE_RULES),
    ParameterSpec("tracking.synonym_groups", "",
                  "With phrase gating, groups of phrases that continue each other's tracks: phrases joined by ',' "
                  "and groups by ';', e.g. 'person,pedestrian; car,vehicle'. Empty: none."),
    ParameterSpec("tracking.filter", _TRACKER_DEFAULTS.filter, "Motion model of a track.", choices=FILTERS),
    ParameterSpec("tracking.kalman_measurement_noise", _TRACKER_DEFAULTS.kalman_measurement_noise,
                  "Kalman filter R: larger trusts detections less.", value_range=(1e-6, 1e6)),
    ParameterSpec("tracking.kalman_process_noise", _TRACKER_DEFAULTS.kalman_process_noise,
                  "Kalman filter Q: larger follows changes in speed faster.", value_range=(1e-6, 1e6)),
    ParameterSpec("tracking.kalman_carry", _TRACKER_DEFAULTS.kalman_carry,
                  "Each track's Kalman filter carries its uncertainty over the camera frames since it was last "
                  "matched; false: norfair's filter, which grows it as for one frame whatever the gap."),
    ParameterSpec("tracking.start_speed", _TRACKER_DEFAULTS.start_speed,
                  "A track's second box starts its Kalman filter at half the velocity its two boxes show when that is "
                  "at least this many box widths per step (the node tracks at the detector's pace); 0: never.",
                  value_range=(0.0, 10.0)),
    ParameterSpec("tracking.motion.enabled", _MOTION_DEFAULTS.enabled,
                  "Compensate camera motion (sparse optical flow on each camera's frames) for moving cameras."),
    ParameterSpec("tracking.motion.model", _MOTION_DEFAULTS.model,
                  "Camera motion model: translation for pans only; homography also covers zoom and rotation.",
                  choices=MOTION_MODELS),
    ParameterSpec("tracking.motion.max_points", _MOTION_DEFAULTS.max_points, "Corners sampled per frame.",
                  value_range=(4, 100_000)),
    ParameterSpec("tracking.motion.min_distance", _MOTION_DEFAULTS.min_distance, "Pixels between sampled corners.",
                  value_range=(1, 10_000)),
    ParameterSpec("tracking.motion.block_size", _MOTION_DEFAULTS.block_size,
                  "Corner detector neighbourhood, pixels (odd).", value_range=(3, 99)),
    ParameterSpec("tracking.motion.quality_level", _MOTION_DEFAULTS.quality_level,
                  "Minimal corner quality relative to the best corner.", value_range=(1e-6, 0.999999)),
)
SPECS_BY_NAME = {spec.name: spec for spec in SPECS}
RUNTIME_PARAMETERS = frozenset(spec.name for spec in SPECS if spec.runtime)


def check_value(name: str, value: Any) -> str | None:
    """Why ``value`` is not allowed for parameter ``name``, or None when it is. Ranges are also
    enforced by ROS through the descriptors; choices and list contents only here."""
    spec = SPECS_BY_NAME[name]
    if spec.choices and value not in spec.choices:
        return f"{name} must be one of {', '.join(spec.choices)}; got {value!r}"
    if name == "cameras":
        return _check_cameras(value)
    return None


def _check_cameras(topics: list[str]) -> str | None:
    if not topics:
        return "cameras must list at least one image topic"
    outputs = {}
    for topic in topics:
        if not topic or not topic.startswith("/"):
            return f"cameras entries must be absolute topic names starting with '/'; got {topic!r}"
        output = detections_topic(topic)
        if output in outputs:
            return f"cameras {outputs[output]!r} and {topic!r} would both publish on {output}"
        outputs[output] = topic
    return None


@dataclass(frozen=True)
class DepthCamera:
    """Where a colour camera's registered depth image and its CameraInfo come from."""

    depth_topic: str
    camera_info_topic: str


def depth_cameras(values: dict[str, Any]) -> dict[str, DepthCamera]:
    """The depth.* topic parameters -> colour topic -> DepthCamera; ValueError naming a bad entry."""
    depth = _topic_map("depth.topics", values["depth.topics"], values["cameras"])
    infos = _topic_map("depth.camera_info_topics", values["depth.camera_info_topics"], list(depth))
    return {camera: DepthCamera(topic, infos.get(camera, camera_namespace(camera) + "/camera_info"))
            for camera, topic in depth.items()}


def _topic_map(name: str, text: str, cameras: list[str]) -> dict[str, str]:
    """'colour=other; ...' -> {colour: other}; every colour topic must be one of ``cameras``."""
    mapping = {}
    for entry in (entry.strip() for entry in text.split(";")):
        if not entry:
            continue
        camera, _, topic = (part.strip() for part in entry.partition("="))
        if not topic.startswith("/") or camera not in cameras:
            raise ValueError(f"{name} entries must be 'colour topic=/absolute/topic' with a colour topic of "
                             f"{'cameras' if name == 'depth.topics' else 'depth.topics'}; got {entry!r}")
        if camera in mapping:
            raise ValueError(f"{name} names {camera!r} twice")
        mapping[camera] = topic
    return mapping


def camera_namespace(camera: str) -> str:
    """``/robot/front/image_raw`` (or ``.../compressed``) -> ``/robot/front``, where its outputs go."""
    return detections_topic(camera).rsplit("/", 1)[0]


def tuned_parameter_values(settings: TunedSettings) -> dict[str, Any]:
    """A model's tuned settings as node parameter values (name -> value); ValueError for a setting no parameter
    holds. Those that apply only between consecutive frames the detector took (tuned_settings_not_at_pace) are left
    out: the node tracks at the detector's pace."""
    named = dict(settings.postprocess)
    left_out = tuned_settings_not_at_pace(settings)
    for name, value in settings.tracking.items():
        if name == "motion":
            named.update({f"tracking.motion.{key}": item for key, item in value.items()})
        elif name == "synonym_groups":
            named["tracking.synonym_groups"] = "; ".join(",".join(group) for group in value)
        elif name in left_out:
            continue  # the node tracks at the detector's pace, where these do not apply
        else:
            named[f"tracking.{name}"] = value
    if named.get("nms_iou", 0.0) is None:
        named["nms_iou"] = 0.0  # the parameter's "keep every box"
    unknown = sorted(set(named) - set(SPECS_BY_NAME))
    if unknown:
        raise ValueError(f"{settings.source} sets {', '.join(unknown)}, which the node has no parameter for")
    return {name: float(value) if isinstance(SPECS_BY_NAME[name].default, float) else value
            for name, value in named.items()}


def tuned_settings_not_at_pace(settings: TunedSettings) -> dict[str, Any]:
    """A model's tuned tracker settings that apply only between consecutive frames the detector took
    (CONSECUTIVE_FRAMES_ONLY, name -> value): tuned_parameter_values leaves them out, as the node tracks at the
    detector's pace."""
    return {name: value for name, value in settings.tracking.items() if name in CONSECUTIVE_FRAMES_ONLY}


def model_setting_changes(values: dict[str, Any], tuned: dict[str, Any],
                          set_before: dict[str, Any]) -> dict[str, Any]:
    """The parameter changes that make a model's tuned settings (``tuned``, parameter name -> value) apply at
    configure. A parameter takes its tuned value when the user left it alone: at its declared default, or at the
    value an earlier configure set (``set_before``, for another model); one an earlier configure set that this model
    does not tune goes back to its default."""
    def left_alone(name: str) -> bool:
        return values[name] == SPECS_BY_NAME[name].default or set_before.get(name, object()) == values[name]

    changes = {name: value for name, value in tuned.items() if left_alone(name) and values[name] != value}
    changes.update({name: SPECS_BY_NAME[name].default for name in set_before
                    if name not in tuned and left_alone(name) and values[name] != SPECS_BY_NAME[name].default})
    return changes


def detector_config(values: dict[str, Any]) -> DetectorConfig:
    """The detector parameters -> DetectorConfig (its own checks raise ValueError with the range)."""
    sizes = {name: values[name] for name in ("shortest_edge", "longest_edge") if values[name]}
    return DetectorConfig(
        preprocess_overrides=sizes,
        postprocess=PostprocessConfig(
            box_threshold=values["box_threshold"],
            text_threshold=values["text_threshold"],
            nms_iou=values["nms_iou"] or None,
            present_phrase_threshold=values["present_phrase_threshold"],
            present_phrase_iou=values["present_phrase_iou"],
            max_detections=values["max_detections"],
        ),
        batch_size=values["batch_size"],
    )


def tracker_config(values: dict[str, Any]) -> TrackerConfig | None:
    """The tracking.* parameter values -> TrackerConfig, or None when tracking is disabled."""
    if not values["tracking.enabled"]:
        return None
    settings: dict[str, Any] = {"motion": {}}
    for name, value in values.items():
        if name.startswith("tracking.motion."):
            settings["motion"][name[len("tracking.motion."):]] = value
        elif name.startswith("tracking.") and name != "tracking.enabled":
            settings[name[len("tracking."):]] = value
    settings["synonym_groups"] = synonym_groups(settings.get("synonym_groups", ""))
    return TrackerConfig.from_dict(settings)


def synonym_groups(text: str) -> tuple[tuple[str, ...], ...]:
    """'person,pedestrian; car,vehicle' -> (("person", "pedestrian"), ("car", "vehicle")); TrackerConfig
    checks the groups (two phrases at least, none in two groups)."""
    groups = [group.strip() for group in text.split(";")]
    return tuple(tuple(phrase.strip() for phrase in group.split(",")) for group in groups if group)
