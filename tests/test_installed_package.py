"""The package as a user installs it: a wheel in a fresh virtual environment, run from an empty folder.

No tools/, demo/ or config/ folder is around it there, so `nanodet-ghost` must bring everything: the
commands, the bundled configs and the paths (what it writes goes under the current folder, never
into site-packages). Each command gives what the checkout's script gives on the same input.
Slow: builds a wheel and runs a short quickstart (a few minutes on 2 busy cores).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

from nanodet_ghost.paths import CONFIG_DIR, REPO_ROOT

# The quickstart at its shortest: one epoch at 128x128 in a budget it cannot stretch (the first epoch
# outlasts it), no plots; the dataset is generated into the test's own cache.
QUICKSTART_ARGS = ["train.time_budget=00:20", "train.max_epochs=1", "train.val_interval=1",
                   "data.input_size=[128,128]", "data.train_input_size=[128,128]", "train.plots=false"]
SOURCES = ["setup.py", "setup.cfg", "nanodet_ghost"]


def _run(cmd: List[str], cwd: Path, env: Dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def _after_usage(help_text: str) -> str:
    """A help text without its usage lines (argparse wraps them at the width of the program's name)."""
    return help_text.split("\n\n", 1)[1]


def _predictions(folder: Path) -> List[dict]:
    return json.loads((folder / "predictions.json").read_text())


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A virtual environment (torch & co. from the system) with the wheel of this checkout installed."""
    root = tmp_path_factory.mktemp("installed")
    src = root / "src"  # a copy, so that the build leaves nothing (build/, *.egg-info) in the checkout
    src.mkdir()
    for name in SOURCES:
        if (REPO_ROOT / name).is_dir():
            shutil.copytree(REPO_ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO_ROOT / name, src / name)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    _run([sys.executable, "-m", "pip", "wheel", src, "--no-deps", "--no-build-isolation", "-w", root / "dist"],
         root, env)
    wheel = next((root / "dist").glob("nanodet_ghost-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"nanodet_ghost/configs/{p.name}" for p in CONFIG_DIR.glob("*.yml")} <= set(names)
    assert not any(n.startswith(("tools/", "demo/", "config/", "tests/")) for n in names)

    env_dir = root / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", env_dir], root, env)
    # --ignore-installed: the editable install of the main checkout in the system site stays untouched
    _run([env_dir / "bin" / "python", "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed",
          wheel], root, env)
    return env_dir


@pytest.mark.slow
def test_installed_commands_match_the_checkout_scripts(venv: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"  # empty: nothing of the checkout is importable from here
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["NANODET_GHOST_CACHE"] = str(tmp_path / "cache")
    checkout_env = {**env, "PYTHONPATH": str(REPO_ROOT)}
    console = venv / "bin" / "nanodet-ghost"

    where = _run([venv / "bin" / "python", "-c", "import nanodet_ghost; print(nanodet_ghost.__file__)"], work, env)
    site = Path(where.stdout.strip()).resolve()
    assert venv.resolve() in site.parents, f"nanodet_ghost imported from {site}, not from the wheel in {venv}"

    # --help: the list of commands, and each command's help is its script's
    listing = _run([console, "--help"], work, env).stdout
    for name in ("train", "test", "predict", "export", "demo", "browse", "report", "flops", "quickstart"):
        assert f"\n  {name} " in listing
    assert _after_usage(_run([console, "export", "--help"], work, env).stdout) == _after_usage(
        _run([sys.executable, REPO_ROOT / "tools" / "export.py", "--help"], work, checkout_env).stdout)

    # quickstart: the bundled config, everything written under the current folder
    files_before = {p for p in venv.rglob("*") if "__pycache__" not in p.parts}
    quick = _run([console, "quickstart", *QUICKSTART_ARGS], work, env)
    run_dir = work / "work_dirs" / "quickstart"
    best = run_dir / "checkpoints" / "best.ckpt"
    assert best.is_file() and (run_dir / "predictions_grid.jpg").is_file()
    assert f"best checkpoint: {best.relative_to(work)}" in quick.stdout or f"best checkpoint: {best}" in quick.stdout
    assert {p for p in venv.rglob("*") if "__pycache__" not in p.parts} == files_before  # nothing written there
    # the checkout's evaluation of that checkpoint gives the mAP the installed quickstart reported
    stats = tmp_path / "stats.json"
    _run([sys.executable, REPO_ROOT / "tools" / "test.py", run_dir / "config.yaml", best, "--split", "val",
          "--stats-out", stats], work, checkout_env)
    final = json.loads((run_dir / "final_eval.json").read_text())
    assert abs(json.loads(stats.read_text())["stats"][0] - final["val"]["mAP"]) < 1e-9

    # export by a bundled config's name, installed and from the checkout
    _run([console, "export", "quickstart", best, "--format", "onnx", "--out", "installed.onnx"], work, env)
    _run([sys.executable, REPO_ROOT / "tools" / "export.py", "quickstart", best, "--format", "onnx",
          "--out", "checkout.onnx"], work, checkout_env)

    # predict on a generated image: the same detections from both commands and both exports
    image = sorted((tmp_path / "cache").rglob("val/images/*.jpg"))[0]
    _run([console, "predict", image, "--model", "installed.onnx", "--out", "installed", "--score-thr", "0.01"],
         work, env)
    _run([sys.executable, REPO_ROOT / "tools" / "predict.py", image, "--model", "installed.onnx", "--out",
          "checkout", "--score-thr", "0.01"], work, checkout_env)
    _run([sys.executable, REPO_ROOT / "tools" / "predict.py", image, "--model", "checkout.onnx", "--out",
          "checkout_export", "--score-thr", "0.01"], work, checkout_env)
    installed = _predictions(work / "installed")
    assert installed, "no detection at score >= 0.01: the short run learned nothing to compare"
    assert installed == _predictions(work / "checkout")
    exported = _predictions(work / "checkout_export")
    assert [(d["image_id"], d["category_id"]) for d in exported] == [(d["image_id"], d["category_id"]) for d in installed]
    np.testing.assert_allclose([d["bbox"] + [d["score"]] for d in exported],
                               [d["bbox"] + [d["score"]] for d in installed], atol=1e-3)
    assert (work / "installed" / "predictions.csv").read_text() == (work / "checkout" / "predictions.csv").read_text()
