"""ament_python package `grounding_dino_ros`: the pure `perception` library plus the ROS `nodes`."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE_NAME = "grounding_dino_ros"

setup(
    name=PACKAGE_NAME,
    version="0.1.0",
    packages=find_packages(include=["perception", "perception.*", "nodes", "nodes.*"]),
    package_data={"perception": ["assets/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE_NAME}"]),
        (f"share/{PACKAGE_NAME}", ["package.xml"]),
        (f"share/{PACKAGE_NAME}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE_NAME}/config", glob("config/*.yaml")),
    ],
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.4",
        "numpy>=1.24,<2",
        "transformers>=5.0,<6",
        "safetensors",
        "pyyaml",
    ],
    zip_safe=False,
    maintainer="grounding_dino_ros maintainers",
    maintainer_email="maintainers@grounding-dino-ros.invalid",
    description="Open-set detection and tracking with Grounding DINO for ROS 2 and offline video.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "gdino = perception.cli.main:main",
            "detector_node = nodes.detector_node:main",
            "video_source_node = nodes.video_source_node:main",
        ],
    },
)
