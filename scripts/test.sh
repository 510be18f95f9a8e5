#!/usr/bin/env bash
# Install the package with its test extras and run the test suite (README command 2).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q torch==2.14.1 torchvision==0.29.1
python -m pip install -q -e ".[dev]"
python -m pytest tests -q -p no:cacheprovider "$@"
