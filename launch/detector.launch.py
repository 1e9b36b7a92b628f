"""Grounding DINO detector node.

    ros2 launch grounding_dino_ros detector.launch.py cameras:=/cam/image_raw prompt:="a person ."

Arguments (nodes.launch_arguments.DETECTOR_ARGUMENTS; `--show-args` lists them): cameras (comma-separated
image topics), prompt, params_file (default: the package's config/detector_node.yaml), model, device, dtype,
autostart (false: the lifecycle node waits unconfigured). Empty arguments keep the params file's values.
The same settings without launch: ``ros2 run grounding_dino_ros detector_node --ros-args
--params-file config/detector_node.yaml -p prompt:="a person ."``.
"""
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from nodes.launch_arguments import DETECTOR_ARGUMENTS, detector_parameters


def _detector(context):
    values = {name: LaunchConfiguration(name).perform(context) for name in DETECTOR_ARGUMENTS}
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
        for name, (default, text) in DETECTOR_ARGUMENTS.items()
    ]
    return LaunchDescription(declared + [OpaqueFunction(function=_detector)])
