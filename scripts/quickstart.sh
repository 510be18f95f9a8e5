#!/usr/bin/env bash
# Install the package and run the main job on the embedded default dataset (README command 1).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q torch==2.14.1 torchvision==0.29.1
python -m pip install -q -e .
python tools/quickstart.py "$@"
