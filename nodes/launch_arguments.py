"""What the launch files decide, as pure functions: launch argument strings -> node parameters, and
which camera driver to start. Importable without ``launch`` (not installable everywhere), so it is
tested on its own; the launch files only call these.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

CAMERA_TOPIC = "/camera/image_raw"
CAMERA_SOURCES = ("auto", "v4l2_camera", "usb_cam", "video")
# Driver package -> its executable; both publish `image_raw` in the namespace they are started in.
CAMERA_DRIVERS = {"v4l2_camera": "v4l2_camera_node", "usb_cam": "usb_cam_node_exe"}

# Launch argument -> (default, description), for `ros2 launch ... --show-args`. A params_file default of None
# stands for the package's config/detector_node.yaml, which only the launch file can locate.
DETECTOR_ARGUMENTS = {
    "cameras": ("", "comma-separated image topics; a topic ending in /compressed is read as CompressedImage"),
    "prompt": ("", "phrases separated by ' . '; also settable on the ~/prompt topic"),
    "params_file": (None, "parameters YAML for the node (default: the package's config/detector_node.yaml)"),
    "model": ("", "model directory or checkpoint; empty: bundled:crowds"),
    "device": ("", "torch device, e.g. cpu or cuda"),
    "dtype": ("", "auto (float16 on a CUDA GPU, bfloat16 on a CPU with bfloat16 instructions where it passes "
                  "a check, else float32), float32, float16 or bfloat16"),
    "autostart": ("", "true: configure and activate at start; false: wait unconfigured for a lifecycle manager"),
}
CAMERA_ARGUMENTS = {
    "source": ("auto", "auto (v4l2_camera, else usb_cam), v4l2_camera, usb_cam or video"),
    "video_device": ("/dev/video0", "device for v4l2_camera / usb_cam"),
    "video_path": ("", "video file for source:=video"),
    "loop": ("false", "replay the video file forever"),
}


def detector_parameters(arguments: Mapping[str, str]) -> list[Any]:
    """Launch arguments -> the detector node's ``parameters`` list: the params file first, then the
    non-empty arguments as overrides (later entries win in launch_ros).

    arguments: those of DETECTOR_ARGUMENTS; ``cameras`` is comma-separated topics, ``autostart`` true or
    false; an empty string keeps the params file's (or the node's default) value.
    """
    unknown = sorted(set(arguments) - set(DETECTOR_ARGUMENTS))
    if unknown:
        raise ValueError(f"unknown detector launch arguments {unknown}")
    overrides: dict[str, Any] = {}
    cameras = [topic.strip() for topic in arguments.get("cameras", "").split(",") if topic.strip()]
    if cameras:
        overrides["cameras"] = cameras
    for name in ("prompt", "model", "device", "dtype"):
        if arguments.get(name, ""):
            overrides[name] = arguments[name]
    if arguments.get("autostart", ""):
        overrides["autostart"] = _true_or_false("autostart", arguments["autostart"])
    params_file = arguments.get("params_file", "")
    return ([params_file] if params_file else []) + ([overrides] if overrides else [])


@dataclass(frozen=True)
class CameraNode:
    """A node to start for the camera: package, executable, namespace and parameters."""

    package: str
    executable: str
    namespace: str
    parameters: dict[str, Any] = field(default_factory=dict)


def camera_node(arguments: Mapping[str, str], is_installed: Callable[[str], bool]) -> CameraNode:
    """Choose the camera for ``source`` (one of CAMERA_SOURCES); every choice publishes CAMERA_TOPIC.

    "auto" takes v4l2_camera, else usb_cam, whichever is installed; "video" publishes ``video_path``
    with this package's video source (``loop`` "true"/"false"). A non-empty ``cameras`` is refused: the
    detector of camera_detector.launch.py listens on CAMERA_TOPIC.
    """
    if arguments.get("cameras", ""):
        raise ValueError(
            f"camera_detector.launch.py connects the detector to {CAMERA_TOPIC}, where the camera or video "
            "publishes, so it takes no cameras:=; for other topics start the drivers yourself and use "
            "detector.launch.py cameras:=<topics>"
        )
    source = arguments.get("source", "auto")
    if source not in CAMERA_SOURCES:
        raise ValueError(f"source must be one of {', '.join(CAMERA_SOURCES)}; got {source!r}")
    if source == "video":
        path = arguments.get("video_path", "")
        if not path:
            raise ValueError("source:=video needs video_path:=<file>")
        return CameraNode("grounding_dino_ros", "video_source_node", "",
                          {"path": path, "topic": CAMERA_TOPIC, "loop": _true_or_false("loop", arguments.get("loop", "false"))})
    candidates = list(CAMERA_DRIVERS) if source == "auto" else [source]
    for package in candidates:
        if is_installed(package):
            namespace = CAMERA_TOPIC.rsplit("/", 1)[0].lstrip("/")
            return CameraNode(package, CAMERA_DRIVERS[package], namespace,
                              {"video_device": arguments.get("video_device", "/dev/video0")})
    raise ValueError(
        f"no camera driver installed (tried {', '.join(candidates)}): "
        "apt install ros-jazzy-v4l2-camera, or use source:=video video_path:=<file>"
    )


def _true_or_false(name: str, text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise ValueError(f"{name} must be true or false; got {text!r}")
    return text.lower() == "true"
