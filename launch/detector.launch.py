"""Grounding DINO detector node.

    ros2 launch grounding_dino_ros detector.launch.py cameras:=/cam/image_raw prompt:="a person ."

Arguments: cameras (comma-separated image topics), prompt, params_file (default: the package's
config/detector_node.yaml), model, device, dtype. Empty arguments keep the params file's values.
The same settings without launch: ``ros2 run grounding_dino_ros detector_node --ros-args
--params-file config/detector_node.yaml -p prompt:="a person ."``.
"""
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from nodes.launch_arguments import detector_parameters

ARGUMENTS = {
    "cameras": ("", "comma-separated image topics; a topic ending in /compressed is read as CompressedImage"),
    "prompt": ("", "phrases separated by ' . '; also settable on the ~/prompt topic"),
    "params_file": (None, "parameters YAML for the node"),
    "model": ("", "model directory or checkpoint; empty: the bundled model"),
    "device": ("", "torch device, e.g. cpu or cuda"),
    "dtype": ("", "float32, float16 or bfloat16"),
}


def _detector(context):
    values = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    return [
        Node(
            package="grounding_dino_ros",
            executable="detector_node",
            name="grounding_dino",
            output="screen",
            parameters=detector_parameters(values),
        )
    ]


def generate_launch_description():
    default_params = str(Path(get_package_share_directory("grounding_dino_ros")) / "config" / "detector_node.yaml")
    declared = [
        DeclareLaunchArgument(name, default_value=default_params if default is None else default, description=text)
        for name, (default, text) in ARGUMENTS.items()
    ]
    return LaunchDescription(declared + [OpaqueFunction(function=_detector)])
