"""Every command-line tool reports user errors in one line, with exit codes from one table."""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Dict, List

import pytest
import yaml

from nanodet_ghost.cli import (
    EXIT_CHECKPOINT,
    EXIT_CODES,
    EXIT_DATA,
    EXIT_MEANINGS,
    EXIT_USAGE,
    exit_code_for,
    exit_codes_help,
)
from nanodet_ghost.paths import CONFIG_DIR, REPO_ROOT, bundled_configs

TOOLS = {
    "tools/train.py": "tool_train",
    "tools/test.py": "tool_test",
    "tools/export_onnx.py": "tool_export_onnx",
    "tools/browse_dataset.py": "tool_browse_dataset",
    "tools/flops.py": "tool_flops",
    "tools/quickstart.py": "tool_quickstart",
    "demo/demo.py": "tool_demo",
}


def load_tool(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(TOOLS[path], REPO_ROOT / path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def _write_yaml(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_every_exception_in_the_table_exists():
    for name in EXIT_CODES:
        module_name, _, class_name = name.rpartition(".")
        module = importlib.import_module(module_name)
        assert issubclass(getattr(module, class_name), BaseException), name


def test_readme_shows_the_same_exit_codes():
    readme = (REPO_ROOT / "README.md").read_text()
    rows = re.findall(r"^\| (\d+) \| (.+?) \|$", readme, flags=re.M)
    assert [int(code) for code, _ in rows] == [code for code, _ in EXIT_MEANINGS]


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_every_tool_lists_the_exit_codes_in_its_help(tool, capsys):
    with pytest.raises(SystemExit) as done:
        load_tool(tool).main(["--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.rstrip().endswith(exit_codes_help())


def _missing_config_argv(tool: str, missing: str, checkpoint: str) -> List[str]:
    return {
        "tools/train.py": [missing],
        "tools/test.py": [missing, "x.ckpt"],
        "tools/export_onnx.py": [missing, "x.ckpt", "--out", "m.onnx"],
        "tools/browse_dataset.py": [missing],
        "tools/flops.py": [missing],
        "tools/quickstart.py": ["--config", missing],
        "demo/demo.py": ["image", "--config", missing, "--model", checkpoint, "--path", "x.jpg"],
    }[tool]


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_every_tool_reports_a_missing_config_as_usage_error(tool, tmp_path, capsys):
    missing = str(tmp_path / "nope.yml")
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"")
    assert load_tool(tool).main(_missing_config_argv(tool, missing, str(checkpoint))) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err == (f"{tool}: error: config file not found: {missing} (not a file, nor one of the bundled configs: "
                   f"{', '.join(bundled_configs())})\n")


def _bad_key_config(tmp_path: Path) -> Path:
    return _write_yaml(tmp_path / "typo.yml", {"data": {"class_names": ["a"]}, "train": {"max_epochz": 3}})


def _broken_checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "broken.ckpt"
    path.write_bytes(b"not a checkpoint")
    return path


def _missing_annotations_config(tmp_path: Path) -> Path:
    return _write_yaml(tmp_path / "noann.yml", {
        "data": {"class_names": ["a"], "train": {"format": "coco", "root": str(tmp_path),
                                                 "ann_file": str(tmp_path / "missing.json")}},
        "model": {"head": {"num_classes": 1}},
    })


# tool -> (argv maker, exit code, words the one line must contain); tools/test.py's cases are in
# tests/evaluation (test_eval_errors.py, test_eval_runner.py).
CASES: Dict[str, tuple] = {
    "tools/train.py": (lambda t: [str(_bad_key_config(t))], EXIT_USAGE, "max_epochz"),
    "tools/flops.py": (lambda t: [str(_bad_key_config(t))], EXIT_USAGE, "max_epochz"),
    "tools/quickstart.py": (lambda t: ["--config", str(_bad_key_config(t))], EXIT_USAGE, "max_epochz"),
    "tools/export_onnx.py": (lambda t: [str(CONFIG_DIR / "quickstart.yml"), str(_broken_checkpoint(t)),
                                        "--out", str(t / "m.onnx")], EXIT_CHECKPOINT, "broken.ckpt"),
    "tools/browse_dataset.py": (lambda t: [str(_missing_annotations_config(t))], EXIT_DATA, "missing.json"),
    "demo/demo.py": (lambda t: ["image", "--model", str(_broken_checkpoint(t)), "--config",
                                str(CONFIG_DIR / "quickstart.yml"), "--path", "x.jpg"],
                     EXIT_CHECKPOINT, "broken.ckpt"),
}


@pytest.mark.parametrize("tool", sorted(CASES))
def test_each_tool_maps_its_errors_to_the_table(tool, tmp_path, capsys):
    make_argv, code, words = CASES[tool]
    assert load_tool(tool).main(make_argv(tmp_path)) == code
    err = capsys.readouterr().err
    assert err.startswith(f"{tool}: error: ") and err.count("\n") == 1 and words in err, err
    assert "Traceback" not in err


def test_debug_log_level_shows_the_traceback(tmp_path, capsys, caplog):
    flops = load_tool("tools/flops.py")
    with caplog.at_level("DEBUG", logger="nanodet_ghost.cli"):
        assert flops.main([str(_bad_key_config(tmp_path)), "--log-level", "DEBUG"]) == EXIT_USAGE
    assert "Traceback" in caplog.text and "ConfigError" in caplog.text


def test_unknown_exceptions_are_not_swallowed():
    class Bug(RuntimeError):
        pass

    assert exit_code_for(Bug("x")) is None
    assert exit_code_for(FileNotFoundError("x")) == EXIT_DATA
