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
"$VENV/bin/python" -m pip install --quiet --no-build-isolation -e .
if [ -f scripts/install_ros.sh ]; then
  VENV="$VENV" bash scripts/install_ros.sh
fi
touch "$VENV/.setup-stamp"
