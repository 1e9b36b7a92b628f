#!/usr/bin/env bash
# Creates .venv with everything the package, its tests and its ROS nodes need, from nothing.
# Idempotent: `make` calls it whenever requirements.txt, setup.py or this script change.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -r requirements.txt
# --no-build-isolation: the native op compiles against the torch installed above, not a second one.
"$VENV/bin/python" -m pip install --no-build-isolation -e .
if [ -f scripts/install_ros.sh ]; then
  VENV="$VENV" bash scripts/install_ros.sh
fi
# Real footage for the demo and the end-to-end video test: Debian's opencv-doc ships vtest.avi.
DEMO_VIDEO=/usr/share/doc/opencv-doc/examples/data/vtest.avi
if [ ! -f "$DEMO_VIDEO" ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq opencv-doc >/dev/null
  else
    echo "setup: $DEMO_VIDEO is missing; install Debian's opencv-doc package (sudo apt-get install opencv-doc)" >&2
  fi
fi
touch "$VENV/.setup-stamp"
