"""Each member of the model family goes through the documented commands: tools/train.py (a few steps on
generated data), tools/test.py, tools/predict.py and demo/demo.py, on the checkpoint training wrote.

One member per code path: GhostNet at another width and depth with dynamic convolution (backbone
knobs), GhostPAN with the four-level Plus head (ATSS), and NanoDet-Plus with its auxiliary head and
the dsl assigner (whose checkpoints carry the auxiliary weights that inference leaves out).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nanodet_ghost.data.synthetic import SYNTHETIC_CLASSES, generate_split
from nanodet_ghost.paths import CONFIG_DIR, REPO_ROOT

MEMBERS = {
    "bccd_ghost050_pan": ["model.backbone.depth=0.5", "model.backbone.dynamic_experts=2"],
    "bccd_ghost_ghostpan_atss": [],
    "bccd_nanodet_plus_ghost": ["model.aux_head.detach_epoch=1"],  # both AGM paths in two epochs
}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    """A generated COCO split (images/ and annotations.json) used for train, val and test."""
    return generate_split(tmp_path_factory.mktemp("family_shapes"), 6, seed=5)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=600,
                          cwd=REPO_ROOT)


@pytest.mark.slow
@pytest.mark.parametrize("member", list(MEMBERS))
def test_member_trains_tests_predicts_and_demos(member: str, shapes: Path, tmp_path: Path) -> None:
    split = {"format": "coco", "root": str(shapes / "images"), "ann_file": str(shapes / "annotations.json")}
    config = tmp_path / f"{member}_shapes.yml"
    config.write_text(yaml.safe_dump({
        "_base_": str(CONFIG_DIR / f"{member}.yml"),
        "model": {"head": {"num_classes": len(SYNTHETIC_CLASSES)}},
        "data": {"class_names": list(SYNTHETIC_CLASSES), "input_size": [128, 128], "train_input_size": None,
                 "train": split, "val": split, "test": split, "batch_size": 3, "val_batch_size": 6},
        "train": {"save_dir": str(tmp_path / "run"), "time_budget": None, "max_epochs": 2, "val_interval": 1,
                  "plots": False, "log_every_n_steps": 1},
    }))
    trained = _run("tools/train.py", config, *MEMBERS[member])
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "test mAP@[.5:.95] = " in trained.stdout
    ckpt = tmp_path / "run" / "checkpoints" / "best.ckpt"
    assert ckpt.is_file()

    stats = tmp_path / "stats.json"
    tested = _run("tools/test.py", config, ckpt, "--split", "test", "--stats-out", stats,
                  "--override", *MEMBERS[member])
    assert tested.returncode == 0, tested.stderr[-3000:]
    assert len(json.loads(stats.read_text())["stats"]) == 12

    overrides = [arg for o in MEMBERS[member] for arg in ("-o", o)]
    predicted = _run("tools/predict.py", shapes / "images", "--model", ckpt, "--config", config,
                     "--out", tmp_path / "predict", "--score-thr", "0.01", *overrides)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert len(json.loads((tmp_path / "predict" / "images.json").read_text())) == 6

    image = sorted((shapes / "images").glob("*.jpg"))[0]
    demo = _run("demo/demo.py", "image", "--config", config, "--model", ckpt, "--path", image, "--save-result",
                "--no-show", "--out-dir", tmp_path / "demo", "--override", *MEMBERS[member])
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert (tmp_path / "demo" / image.name).is_file()
