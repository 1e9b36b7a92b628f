"""The launch files' own logic (argument -> parameter mapping, camera choice), without `launch`,
and the parameters file against the node's declared parameters."""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
import yaml

pytest.importorskip("rcl_interfaces.msg", reason="ROS 2 is installed by scripts/install_ros.sh")
from nodes.launch_arguments import (  # noqa: E402
    CAMERA_ARGUMENTS,
    CAMERA_TOPIC,
    DETECTOR_ARGUMENTS,
    camera_node,
    detector_parameters,
)
from nodes.parameters import SPECS_BY_NAME, check_value, detector_config, synonym_groups, tracker_config  # noqa: E402
from perception.camera_messages import detections_topic  # noqa: E402
from perception.postprocess import PostprocessConfig  # noqa: E402
from perception.tracking.config import CONSECUTIVE_FRAMES_ONLY, MotionConfig, TrackerConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_empty_arguments_keep_the_params_file_values():
    assert detector_parameters({"params_file": "/p.yaml", "cameras": "", "prompt": "", "model": "", "device": ""}) == [
        "/p.yaml"
    ]
    assert detector_parameters({}) == []


def test_arguments_override_the_params_file_in_order():
    result = detector_parameters(
        {"params_file": "/p.yaml", "cameras": " /a/image_raw, /b/image_raw/compressed ,", "prompt": "a cat .",
         "model": "/models/gdino", "device": "cuda", "dtype": "float16"}
    )
    assert result == [
        "/p.yaml",
        {"cameras": ["/a/image_raw", "/b/image_raw/compressed"], "prompt": "a cat .", "model": "/models/gdino",
         "device": "cuda", "dtype": "float16"},
    ]
    with pytest.raises(ValueError, match="unknown detector launch arguments"):
        detector_parameters({"camera": "/a"})
    assert detector_parameters({"autostart": "False"}) == [{"autostart": False}]
    with pytest.raises(ValueError, match="autostart must be true or false"):
        detector_parameters({"autostart": "no"})


def test_the_camera_launch_file_refuses_cameras_instead_of_ignoring_it():
    chosen = camera_node({"source": "video", "video_path": "/d.mp4", "cameras": ""}, lambda package: False)
    assert chosen.parameters["topic"] == CAMERA_TOPIC
    with pytest.raises(ValueError, match="takes no cameras:=.*detector.launch.py cameras:="):
        camera_node({"source": "video", "video_path": "/d.mp4", "cameras": "/front/image_raw"}, lambda package: False)


def test_camera_choice_prefers_v4l2_camera_then_usb_cam():
    both = camera_node({"source": "auto"}, lambda package: True)
    assert (both.package, both.executable, both.namespace) == ("v4l2_camera", "v4l2_camera_node", "camera")
    assert both.parameters == {"video_device": "/dev/video0"}
    only_usb = camera_node({"source": "auto", "video_device": "/dev/video2"}, lambda package: package == "usb_cam")
    assert (only_usb.package, only_usb.parameters["video_device"]) == ("usb_cam", "/dev/video2")
    with pytest.raises(ValueError, match="no camera driver installed.*source:=video"):
        camera_node({"source": "auto"}, lambda package: False)
    with pytest.raises(ValueError, match="usb_cam"):
        camera_node({"source": "usb_cam"}, lambda package: package == "v4l2_camera")


def test_video_source_publishes_where_the_detector_listens():
    chosen = camera_node({"source": "video", "video_path": "/data/demo.mp4", "loop": "true"}, lambda package: False)
    assert (chosen.package, chosen.executable) == ("grounding_dino_ros", "video_source_node")
    assert chosen.parameters == {"path": "/data/demo.mp4", "topic": CAMERA_TOPIC, "loop": True}
    with pytest.raises(ValueError, match="video_path"):
        camera_node({"source": "video"}, lambda package: False)
    with pytest.raises(ValueError, match="loop must be true or false"):
        camera_node({"source": "video", "video_path": "x", "loop": "yes"}, lambda package: False)
    with pytest.raises(ValueError, match="source must be one of"):
        camera_node({"source": "gopro"}, lambda package: False)


def test_the_params_file_sets_only_declared_parameters_with_allowed_values():
    values = yaml.safe_load((ROOT / "config" / "detector_node.yaml").read_text())["/**"]["ros__parameters"]
    flat = {}

    def flatten(prefix: str, section: dict) -> None:
        for name, value in section.items():
            if isinstance(value, dict):
                flatten(f"{prefix}{name}.", value)
            else:
                flat[prefix + name] = value

    flatten("", values)
    assert set(flat) == set(SPECS_BY_NAME)
    for name, value in flat.items():
        spec = SPECS_BY_NAME[name]
        assert type(value) is type(spec.default), name
        assert check_value(name, value) is None, name
        if spec.value_range is not None:
            assert spec.value_range[0] <= value <= spec.value_range[1], name
    # And they build valid pipeline configs.
    assert detector_config(flat).box_threshold == flat["box_threshold"]
    assert detector_config(flat).postprocess == PostprocessConfig()  # the file keeps every default of the detector's
    assert tracker_config(flat).hit_counter_max == flat["tracking.hit_counter_max"]
    assert tracker_config({**flat, "tracking.enabled": False}) is None
    # Every tracker setting has a parameter, with the same default; but those that only ObjectTracker.update reads
    # between consecutive frames (the node tracks at the detector's pace: update_at_detector_pace).
    assert tracker_config(flat) == TrackerConfig()
    assert {f"tracking.{field.name}" for field in fields(TrackerConfig)
            if field.name != "motion" and field.name not in CONSECUTIVE_FRAMES_ONLY} | {
        f"tracking.motion.{field.name}" for field in fields(MotionConfig)} == {
        name for name in SPECS_BY_NAME if name.startswith("tracking.") and name != "tracking.enabled"}
    # A size of 0 means the checkpoint's own; one size set overrides that size only.
    assert detector_config(flat).preprocess_overrides == {}
    assert detector_config({**flat, "shortest_edge": 480}).preprocess_overrides == {"shortest_edge": 480}


def test_synonym_groups_parameter_is_phrases_by_comma_and_groups_by_semicolon():
    assert synonym_groups("") == ()
    assert synonym_groups(" person, pedestrian ;car,vehicle; ") == (("person", "pedestrian"), ("car", "vehicle"))
    flat = {spec.name: spec.default for spec in SPECS_BY_NAME.values()}
    config = tracker_config({**flat, "tracking.synonym_groups": "person,pedestrian", "tracking.motion.enabled": True})
    assert config.synonym_groups == (("person", "pedestrian"),) and config.motion.enabled
    with pytest.raises(ValueError, match="need at least two phrases"):
        tracker_config({**flat, "tracking.synonym_groups": "person"})


def test_camera_topics_map_to_distinct_detection_topics():
    assert detections_topic("/robot/front/image_raw") == "/robot/front/detections"
    assert detections_topic("/robot/front/image_raw/compressed") == "/robot/front/detections"
    assert detections_topic("/image") == "/detections"
    assert check_value("cameras", ["/a/image_raw", "/b/image_raw"]) is None
    assert "both publish on /a/detections" in check_value("cameras", ["/a/image_raw", "/a/image_rect"])
    assert "absolute" in check_value("cameras", ["camera/image_raw"])
    assert "at least one" in check_value("cameras", [])


@pytest.mark.parametrize("name", ["detector.launch.py", "camera_detector.launch.py"])
def test_launch_files_parse_and_delegate_to_the_tested_functions(name):
    import ast

    tree = ast.parse((ROOT / "launch" / name).read_text())
    imported = {(node.module, alias.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                for alias in node.names}
    assert ("nodes.launch_arguments", "detector_parameters" if name == "detector.launch.py" else "camera_node") in imported
    assert any(isinstance(node, ast.FunctionDef) and node.name == "generate_launch_description" for node in tree.body)
    # Every declared argument has a description (`ros2 launch ... --show-args`).
    declarations = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
                    and getattr(node.func, "id", None) == "DeclareLaunchArgument"]
    assert declarations and all(any(k.arg == "description" for k in call.keywords) for call in declarations)
    for name, (_, description) in {**DETECTOR_ARGUMENTS, **CAMERA_ARGUMENTS}.items():
        assert len(description) > 10, name


def test_depth_parameters_name_a_depth_and_camera_info_topic_per_colour_camera():
    from nodes.parameters import DepthCamera, depth_cameras

    cameras = ["/front/color/image_raw", "/back/image_raw/compressed"]
    values = {"cameras": cameras, "depth.topics": " /front/color/image_raw=/front/depth/image_rect ; "
              "/back/image_raw/compressed=/back/depth", "depth.camera_info_topics": "/back/image_raw/compressed=/back/info"}
    assert depth_cameras(values) == {
        "/front/color/image_raw": DepthCamera("/front/depth/image_rect", "/front/color/camera_info"),
        "/back/image_raw/compressed": DepthCamera("/back/depth", "/back/info"),
    }
    assert depth_cameras({**values, "depth.topics": "", "depth.camera_info_topics": ""}) == {}
    for topics, message in (("/side/image_raw=/side/depth", "colour topic of cameras"),
                            ("/front/color/image_raw", "'colour topic=/absolute/topic'"),
                            ("/front/color/image_raw=/a; /front/color/image_raw=/b", "names '/front/color/image_raw' twice")):
        with pytest.raises(ValueError, match=message):
            depth_cameras({**values, "depth.topics": topics, "depth.camera_info_topics": ""})
    with pytest.raises(ValueError, match="depth.camera_info_topics"):
        depth_cameras({**values, "depth.topics": "", "depth.camera_info_topics": "/back/image_raw/compressed=/i"})
