"""The command line: `nanodet-ghost COMMAND [options]`, one module per command.

Each module has `parse_args(argv, prog)`, `run(args)` and `main(argv, prog)`. The console command
(`nanodet-ghost`, installed by pip) and the scripts of a checkout (tools/*.py, demo/demo.py) call the
same `main`; only the name in the help and in the one-line errors differs (`prog`). Exit codes:
`nanodet_ghost.cli.EXIT_MEANINGS`.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Dict, List, NamedTuple, Optional

from nanodet_ghost.cli import exit_codes_help

CONSOLE = "nanodet-ghost"


class Command(NamedTuple):
    module: str  # under nanodet_ghost.commands
    script: str  # the script of a checkout that runs the same main
    summary: str


# Imported only when chosen: `nanodet-ghost --help` and `nanodet-ghost test --ann ... --results ...`
# start without loading torch.
COMMANDS: Dict[str, Command] = {
    "train": Command("train", "tools/train.py", "train a detector from a config (a file or a bundled name)"),
    "test": Command("test", "tools/test.py", "COCO mAP of a checkpoint, an exported model or a results file"),
    "predict": Command("predict", "tools/predict.py", "detect in images, folders, videos or a camera; save "
                                                      "drawings, COCO json and csv"),
    "export": Command("export", "tools/export.py", "export a checkpoint: ONNX, OpenVINO, ncnn, MNN, INT8, "
                                                   "safetensors"),
    "demo": Command("demo", "demo/demo.py", "show detections on images, a video or a webcam"),
    "browse": Command("browse", "tools/browse_dataset.py", "draw dataset samples as the network sees them"),
    "report": Command("report", "tools/dataset_report.py", "what a config's dataset holds, and whether its "
                                                           "boxes suit the input size"),
    "flops": Command("flops", "tools/flops.py", "parameters and multiply-adds per part of the model"),
    "quickstart": Command("quickstart", "tools/quickstart.py", "train on the embedded synthetic dataset, "
                                                               "report mAP, draw predictions"),
}


def _parser() -> argparse.ArgumentParser:
    width = max(map(len, COMMANDS))
    listing = "\n".join(f"  {name:<{width}}  {cmd.summary}" for name, cmd in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog=CONSOLE, usage=f"{CONSOLE} [-h] COMMAND [options]", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="NanoDet-style detector with a GhostNet backbone: training, evaluation, prediction, export.",
        epilog=f"commands:\n{listing}\n\n`{CONSOLE} COMMAND --help` shows a command's options. In a checkout, "
               "the scripts tools/*.py and demo/demo.py run the same commands.\n\n" + exit_codes_help())
    parser.add_argument("command", choices=list(COMMANDS), metavar="COMMAND", help="one of the commands below")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """`nanodet-ghost COMMAND ...`: the command's `main` with the rest of `argv`, and its exit code.

    Without a known command, argparse prints the help (`--help`, exit 0) or a usage error (exit 2).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in COMMANDS:
        _parser().parse_args(argv[:1])  # exits: the help, or an unknown / missing command
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(f"{__name__}.{COMMANDS[name].module}")
    return module.main(rest, prog=f"{CONSOLE} {name}")

