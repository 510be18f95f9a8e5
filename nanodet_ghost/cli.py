"""What the command-line tools share: exit codes and one-line error messages.

Every command (`nanodet_ghost.commands`, run as `nanodet-ghost CMD` or by the scripts tools/*.py and
demo/demo.py) runs its work through `run_tool`, which turns the errors a
user can fix into one line on stderr, `PROG: error: MESSAGE`, and an exit code of `EXIT_MEANINGS`
(the README shows the same table; each tool's `--help` ends with it). `--log-level DEBUG` adds the
traceback and the full message. Exceptions are matched by name, so this module imports nothing
heavy (scoring a results file works without torch).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Callable, Dict, List, Optional, Tuple

from nanodet_ghost.paths import resolve_config_path

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_DATA = 3
EXIT_CHECKPOINT = 4
EXIT_INTERRUPTED = 130
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
TIMED_LOG_FORMAT = "%(asctime)s " + LOG_FORMAT  # for long runs (training)

EXIT_MEANINGS: Tuple[Tuple[int, str], ...] = (
    (EXIT_OK, "success"),
    (EXIT_FAILED, "the tool ran but failed: a check it was asked for did not pass, training diverged, "
                  "or another bad value"),
    (EXIT_USAGE, "bad command line or config (also argparse's usage errors)"),
    (EXIT_DATA, "bad or missing input: a dataset, annotations, images, a video, a results file; "
                "any missing input file, checkpoints included"),
    (EXIT_CHECKPOINT, "a checkpoint or model file that cannot be read safely or does not match the config"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C)"),
)

# Exception class (module.QualName) -> exit code. The first class along an exception's MRO that is
# listed decides, so a subclass can get a code other than its base's. Unlisted exceptions are bugs:
# they keep their traceback.
EXIT_CODES: Dict[str, int] = {
    "nanodet_ghost.config.ConfigError": EXIT_USAGE,
    "nanodet_ghost.trainer.runner.ClassCountError": EXIT_USAGE,
    "nanodet_ghost.cli.UsageError": EXIT_USAGE,
    "lightning_fabric.utilities.exceptions.MisconfigurationException": EXIT_USAGE,
    "nanodet_ghost.data.base.DatasetError": EXIT_DATA,
    "nanodet_ghost.data.image_io.ImageReadError": EXIT_DATA,
    "nanodet_ghost.evaluation.jsonio.EvaluationInputError": EXIT_DATA,
    "nanodet_ghost.cli.InputError": EXIT_DATA,
    "builtins.FileNotFoundError": EXIT_DATA,
    "nanodet_ghost.model.weights.CheckpointMismatchError": EXIT_CHECKPOINT,
    "nanodet_ghost.inference.metadata.ModelFileError": EXIT_CHECKPOINT,  # OnnxModelError too
    "nanodet_ghost.inference.backends.MissingRuntimeError": EXIT_FAILED,  # names the pip extra
    "nanodet_ghost.export.calibration.CalibrationError": EXIT_DATA,
    "nanodet_ghost.trainer.module.NonFiniteLossError": EXIT_FAILED,
    "builtins.OSError": EXIT_FAILED,  # e.g. an output that cannot be written
    "builtins.ValueError": EXIT_FAILED,
}

logger = logging.getLogger(__name__)


class UsageError(ValueError):
    """A command line that cannot work (a missing config file, options that exclude each other)."""


class InputError(ValueError):
    """An input a tool was given cannot be used (a missing image or video, a camera that is busy)."""


def exit_code_for(exc: BaseException) -> Optional[int]:
    """The exit code of `exc` from `EXIT_CODES`, or None when it is not a known user error."""
    for cls in type(exc).__mro__:
        code = EXIT_CODES.get(f"{cls.__module__}.{cls.__qualname__}")
        if code is not None:
            return code
    return None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def run_tool(prog: str, work: Callable[[], int]) -> int:
    """Run `work()` and return its exit code; a known error becomes one stderr line and its code.

    Args:
        prog: how the tool is named in the message, e.g. "tools/train.py".
        work: the tool's body, called with no arguments (logging is configured already).
    """
    try:
        return work()
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted\n")
        return EXIT_INTERRUPTED
    except Exception as exc:
        code = exit_code_for(exc)
        if code is None:
            raise
        logger.debug("%s failed:\n%s", prog, exc, exc_info=True)
        more = " (--log-level DEBUG shows the rest)" if len(str(exc).strip().splitlines()) > 1 else ""
        sys.stderr.write(f"{prog}: error: {first_line(exc)}{more}\n")
        return code


def run_main(prog: str, parse_args: Callable[[Optional[List[str]], str], argparse.Namespace],
             run: Callable[[argparse.Namespace], int], argv: Optional[List[str]] = None,
             log_format: str = LOG_FORMAT) -> int:
    """A command's `main`: `parse_args(argv, prog)`, log at `--log-level`, then `run(args)` through
    `run_tool`. `prog` names the command in its help and errors: "tools/train.py" when the script
    runs it, "nanodet-ghost train" when the console command does."""
    args = parse_args(argv, prog)
    configure_logging(args.log_level, log_format)
    return run_tool(prog, lambda: run(args))


def config_path(path: str) -> str:
    """`path` when it is a file, else the shipped config it names (`bccd_ghost_320`, or the
    README's `config/bccd_ghost_320.yml`); else a `UsageError` that lists the shipped configs (a
    config named on the command line is a usage problem, not a data problem)."""
    try:
        return resolve_config_path(path)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None


def process_rank() -> int:
    """This process's rank in a distributed run, from the environment that torchrun (RANK) or
    Lightning's DDP launcher (NODE_RANK, LOCAL_RANK) sets before it starts; 0 outside one. Any
    non-zero rank is returned as 1 when only the node and local ranks are known."""
    if os.environ.get("RANK", "").isdigit():
        return int(os.environ["RANK"])
    return int(any(os.environ.get(name, "0") not in ("", "0") for name in ("NODE_RANK", "LOCAL_RANK")))


def configure_logging(level: str = "INFO", fmt: str = LOG_FORMAT) -> None:
    """Log to stderr at `level` (a name such as "DEBUG"), the same way in every tool. In a
    distributed run only rank 0 logs at INFO; the other ranks log their warnings and errors (all
    of it at DEBUG), so that the console says each thing once."""
    level = level.upper()
    if level == "INFO" and process_rank() != 0:
        level = "WARNING"
    logging.basicConfig(level=level, format=fmt)


def exit_codes_help() -> str:
    """The exit-code table as plain text, for the end of a tool's `--help`."""
    return "exit codes:\n" + "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_MEANINGS)


def tool_parser(prog: str, description: str, epilog: str = "") -> argparse.ArgumentParser:
    """An argument parser with `--log-level` and the exit-code table at the end of `--help`."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     epilog=(epilog + "\n\n" if epilog else "") + exit_codes_help(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log-level", default="INFO", type=str.upper, choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="DEBUG also shows the traceback of an error")
    return parser
