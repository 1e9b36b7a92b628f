#!/usr/bin/env bash
# The GPU check for a bare, offline GPU machine whose Python already holds torch, numpy, transformers,
# safetensors, tokenizers, OpenCV and pytest (and nvcc and ninja): builds the op for this GPU, runs the GPU
# tests, compares the detector across devices and dtypes and benchmarks it against transformers, in under
# 8 minutes. Writes OUT_DIR/gpu_check.json; exits non-zero on any failure. The logic is in
# perception/bench/gpu_check.py.
#   scripts/gpu_check.sh [--device cuda|cpu] OUT_DIR     (--device cpu: the dry run CI does)
# PYTHON chooses the interpreter (default: .venv/bin/python when it exists, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
exec "$PYTHON" -m perception.bench.gpu_check "$@"
