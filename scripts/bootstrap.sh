#!/usr/bin/env bash
# Creates .venv beside this repo and installs mlcls (editable) with its test tools.
# Idempotent: a second run only checks that the install is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import mlcls, paddle, pytest, onnxruntime, openvino, paddle2onnx, ray, pypdfium2, prometheus_client" >/dev/null 2>&1; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
fi
