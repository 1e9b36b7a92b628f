"""A camera (v4l2_camera or usb_cam when installed, or a video file) and the detector on it.

    ros2 launch grounding_dino_ros camera_detector.launch.py prompt:="a person ."
    ros2 launch grounding_dino_ros camera_detector.launch.py source:=video video_path:=demo.mp4 loop:=true

Arguments (nodes.launch_arguments; `--show-args` lists them): source (auto, v4l2_camera, usb_cam, video),
video_device, video_path, loop, and every argument of detector.launch.py except cameras: the camera or the
video publishes /camera/image_raw and the detector listens there, so cameras:= is refused with a message.
"""
from pathlib import Path

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from nodes.launch_arguments import CAMERA_ARGUMENTS, CAMERA_TOPIC, DETECTOR_ARGUMENTS, camera_node

# The detector listens on CAMERA_TOPIC; camera_node refuses a cameras:= given here.
PASSED_ON = [name for name in DETECTOR_ARGUMENTS if name != "cameras"]


def _installed(package: str) -> bool:
    try:
        get_package_share_directory(package)
    except PackageNotFoundError:
        return False
    return True


def _camera(context):
    values = {name: LaunchConfiguration(name).perform(context) for name in CAMERA_ARGUMENTS}
    values["cameras"] = LaunchConfiguration("cameras", default="").perform(context)
    chosen = camera_node(values, _installed)
    return [Node(package=chosen.package, executable=chosen.executable, namespace=chosen.namespace,
                 parameters=[chosen.parameters], output="screen")]


def generate_launch_description():
    share = Path(get_package_share_directory("grounding_dino_ros"))
    declared = [DeclareLaunchArgument(name, default_value=default, description=text)
                for name, (default, text) in CAMERA_ARGUMENTS.items()]
    declared += [DeclareLaunchArgument(name, default_value=str(share / "config" / "detector_node.yaml")
                                       if default is None else default, description=text)
                 for name, (default, text) in DETECTOR_ARGUMENTS.items() if name in PASSED_ON]
    detector = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(share / "launch" / "detector.launch.py")),
        launch_arguments=[("cameras", CAMERA_TOPIC)]
        + [(name, LaunchConfiguration(name)) for name in PASSED_ON],
    )
    return LaunchDescription(declared + [OpaqueFunction(function=_camera), detector])
