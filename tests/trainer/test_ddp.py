"""Two-process CPU DDP (gloo) through tools/train.py: trains, validates, evaluates every image once."""
import csv
import json
import subprocess
import sys

import pytest

from nanodet_ghost.data.synthetic import generate_split
from nanodet_ghost.paths import REPO_ROOT

from trainer_helpers import write_config


@pytest.mark.slow
def test_two_process_cpu_ddp(tiny_coco, tmp_path):
    # 5 validation images over 2 ranks: the DistributedSampler pads one rank with a duplicate.
    val = generate_split(tmp_path / "val5", 5, seed=21)
    save_dir = tmp_path / "ddp"
    config = write_config(tiny_coco, save_dir, {
        "data.val.root": str(val / "images"), "data.val.ann_file": str(val / "annotations.json"),
        "train.strategy": "ddp", "train.devices": "2", "train.max_epochs": 1,
    })
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "train.py"), str(config)],
                          capture_output=True, text=True, timeout=400, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "world_size=2" in proc.stderr or "distributed_backend=gloo" in proc.stderr, proc.stderr[-2000:]

    rows = list(csv.DictReader(open(save_dir / "logs" / "version_0" / "metrics.csv")))
    evaluated = [float(r["val/num_images"]) for r in rows if r.get("val/num_images")]
    assert evaluated == [5.0]
    final = json.loads((save_dir / "final_eval.json").read_text())
    assert final["val"]["num_images"] == 5
