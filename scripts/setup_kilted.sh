#!/usr/bin/env bash
# Creates .venv-kilted (or $VENV) from nothing: the same environment as .venv (scripts/setup_env.sh) with
# ROS 2 Kilted's wheels (the un-prefixed ros-*) in place of Jazzy's, so the ROS tests run on both
# distributions (`make test-kilted`). A venv holds one ROS distribution only: the ros-jazzy-* wheels pin
# the ros-* ones at Jazzy versions. About 7 GB (torch is most of it).
set -euo pipefail
cd "$(dirname "$0")/.."
export VENV=${VENV:-.venv-kilted} GDINO_ROS_DISTRO=kilted
# The native op lives in the source tree (an editable install), built against the pinned torch that this
# venv installs too: when .venv's setup has built it, it serves here as well (CI saves about 1.5 minutes).
if compgen -G "perception/ops/_C*.so" >/dev/null; then
  echo "setup_kilted: the native op is already built in perception/ops; not building it again"
  export GDINO_OPS_BUILD=none
fi
exec bash scripts/setup_env.sh
