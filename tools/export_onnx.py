#!/usr/bin/env python
"""`tools/export.py --format onnx` with ONNX-only options (`--opset`, `--no-simplify`, `--no-fuse`) as a script of the checkout: see nanodet_ghost/commands/export_onnx.py (`--help`)."""
import sys
from pathlib import Path

_REPO_ROOT = str(Path(__file__).resolve().parent.parent)
if _REPO_ROOT not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, _REPO_ROOT)

from nanodet_ghost.commands.export_onnx import main, parse_args, run  # noqa: E402,F401  (tests call them)

if __name__ == "__main__":
    sys.exit(main())
