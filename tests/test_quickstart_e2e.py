"""The README's main job, shortened: train → checkpoint → tools/test.py → prediction."""
import json
import os
import re
import subprocess
import sys

import pytest

from nanodet_ghost.analysis.found import find_in_first_images
from nanodet_ghost.config import load_config
from nanodet_ghost.data.loader import build_source_for
from nanodet_ghost.inference.predictor import Predictor
from nanodet_ghost.paths import REPO_ROOT

# The short run: a 90-second budget at 256x256. The full quickstart's rule is 75 % of the objects of
# the first 4 val images found at score >= 0.3. This run scores lower: measured 2026-12-02 (2-core
# AMD EPYC, synthetic_v3), 12 of 17 at score >= 0.1 and 4 of 17 at 0.3, so it must find 40 % at
# score >= 0.1 (room for a slower machine that gets fewer epochs into the budget).
SHORT_BUDGET = "00:01:30"
SHORT_SIZE = 256
SHORT_SCORE_THR = 0.1
SHORT_MIN_FOUND = 0.4


def run(args, env, timeout=600):
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


@pytest.mark.slow
def test_quickstart_short(tmp_path):
    env = {**os.environ, "NANODET_GHOST_CACHE": str(tmp_path / "cache")}
    save_dir = tmp_path / "run"
    proc = run([str(REPO_ROOT / "tools" / "quickstart.py"), f"train.save_dir={save_dir}",
                f"train.time_budget={SHORT_BUDGET}", "train.max_epochs=4", "train.val_interval=2",
                f"data.input_size=[{SHORT_SIZE},{SHORT_SIZE}]", "data.num_workers=0"], env)
    assert "COCO mAP@[.5:.95] on the synthetic val split" in proc.stdout
    line = re.search(r"prediction on the first 4 val images: found (\d+) of (\d+) objects \(\d+ %\) at IoU >= 0\.50 "
                     r"with score >= 0\.30 -> (\S+)", proc.stdout)
    assert line, proc.stdout[-500:]
    best = save_dir / "checkpoints" / "best.ckpt"
    assert best.is_file() and (save_dir / "predictions_grid.jpg").is_file()
    assert f"plots: {save_dir / 'plots'} (results.png" in proc.stdout  # where the README's pictures come from
    assert (save_dir / "plots" / "results.png").is_file() and (save_dir / "plots" / "val_predictions.jpg").is_file()
    final = json.loads((save_dir / "final_eval.json").read_text())
    assert final["val"]["num_images"] == 60

    # the quickstart's rule (objects found at IoU >= 0.5) at a score threshold fitting this short run
    cfg = load_config(save_dir / "config.yaml")
    source = build_source_for(cfg.data.val, list(cfg.data.class_names), "val")
    items = find_in_first_images(source, Predictor.from_checkpoint(cfg, best), 4, iou_thr=0.5, score_thr=SHORT_SCORE_THR)
    found, total = sum(int(i.found.sum()) for i in items), sum(len(i.found) for i in items)
    assert found >= SHORT_MIN_FOUND * total, f"found {found} of {total} at score >= {SHORT_SCORE_THR}"
    printed = find_in_first_images(source, Predictor.from_checkpoint(cfg, best), 4, iou_thr=0.5, score_thr=0.3)
    assert (int(line.group(1)), int(line.group(2))) == (sum(int(i.found.sum()) for i in printed), total)

    stats = tmp_path / "stats.json"
    run([str(REPO_ROOT / "tools" / "test.py"), str(save_dir / "config.yaml"), str(best), "--split", "val",
         "--stats-out", str(stats)], env)
    reported = json.loads(stats.read_text())["stats"]
    assert len(reported) == 12
    assert abs(reported[0] - final["val"]["mAP"]) < 1e-9  # same checkpoint, same numbers
