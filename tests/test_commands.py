"""`nanodet-ghost COMMAND`: the commands of the package, the scripts that run them, bundled configs."""
from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys

import pytest

from nanodet_ghost.cli import EXIT_USAGE
from nanodet_ghost.commands import COMMANDS, CONSOLE, main
from nanodet_ghost.paths import REPO_ROOT, bundled_configs


def _load_script(path: str):
    spec = importlib.util.spec_from_file_location("script_" + path.replace("/", "_")[:-3], REPO_ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_help_lists_every_command(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for name, command in COMMANDS.items():
        assert f"  {name} " in out and command.summary in out


@pytest.mark.parametrize("argv", [[], ["bogus"], ["--log-level", "INFO"]])
def test_a_missing_or_unknown_command_is_a_usage_error(argv, capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == EXIT_USAGE
    assert capsys.readouterr().err.splitlines()[-1].startswith(f"{CONSOLE}: error: ")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_script_runs_the_commands_main(name: str) -> None:
    module = importlib.import_module(f"nanodet_ghost.commands.{COMMANDS[name].module}")
    assert _load_script(COMMANDS[name].script).main is module.main


def test_export_onnx_script_runs_the_onnx_alias() -> None:
    from nanodet_ghost.commands import export_onnx

    assert _load_script("tools/export_onnx.py").main is export_onnx.main


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_help_is_the_scripts_help(name: str, capsys) -> None:
    with pytest.raises(SystemExit):
        main([name, "--help"])
    console = capsys.readouterr().out
    script = COMMANDS[name].script
    with pytest.raises(SystemExit):
        _load_script(script).main(["--help"])
    # argparse wraps the usage lines at the width of the name, so compare from the description on
    assert console.startswith(f"usage: {CONSOLE} {name} ")
    assert console.split("\n\n", 1)[1] == capsys.readouterr().out.split("\n\n", 1)[1]


def test_errors_are_named_after_the_console_command(tmp_path, capsys) -> None:
    missing = tmp_path / "nope.yml"
    assert main(["train", str(missing)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"{CONSOLE} train: error: config file not found: {missing} ") and err.count("\n") == 1
    assert all(name in err for name in bundled_configs())


def test_a_bundled_config_runs_by_name(capsys) -> None:
    assert main(["flops", "quickstart", "--input-size", "64", "64"]) == 0
    assert "total" in capsys.readouterr().out


def test_python_m_runs_the_console_command(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "nanodet_ghost", "train", str(tmp_path / "nope.yml")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == EXIT_USAGE and proc.stderr.startswith(f"{CONSOLE} train: error: "), proc.stderr
