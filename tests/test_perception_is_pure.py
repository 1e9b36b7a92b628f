"""`perception/` never imports ROS: not at module level, not inside a function."""
from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import perception

PERCEPTION_DIR = Path(perception.__file__).resolve().parent
ROS_MODULES = {"rclpy", "rcl_interfaces", "rosidl_runtime_py", "launch", "launch_ros", "ament_index_python", "cv_bridge",
               "message_filters", "image_transport", "tf2_ros", "rosgraph_msgs"}


def is_ros(module: str) -> bool:
    top = module.split(".")[0]
    return top in ROS_MODULES or top.endswith(("_msgs", "_srvs", "_interfaces"))


def imported_modules(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module", "__import__"
        ) and node.args and isinstance(node.args[0], ast.Constant):
            names.append(str(node.args[0].value))
    return names


def test_no_perception_source_file_imports_ros():
    offenders = {
        str(path.relative_to(PERCEPTION_DIR)): [name for name in imported_modules(path) if is_ros(name)]
        for path in sorted(PERCEPTION_DIR.rglob("*.py"))
    }
    assert len(offenders) > 10  # the scan really read the package
    assert {path: names for path, names in offenders.items() if names} == {}


def test_importing_every_perception_module_loads_no_ros_module():
    modules = [info.name for info in pkgutil.walk_packages([str(PERCEPTION_DIR)], "perception.")]
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = result.stdout.split()
    assert "perception.streams" in loaded
    assert [name for name in loaded if is_ros(name)] == []


def test_the_checker_recognises_ros_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import os\ndef f():\n    from sensor_msgs.msg import Image\n    import rclpy.node\n")
    assert [name for name in imported_modules(sample) if is_ros(name)] == ["sensor_msgs.msg", "rclpy.node"]
