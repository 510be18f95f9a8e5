"""The README's main job, shortened: train → checkpoint → tools/test.py → prediction."""
import json
import os
import re
import subprocess
import sys

import pytest

from nanodet_ghost.paths import REPO_ROOT


def run(args, env, timeout=600):
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


@pytest.mark.slow
def test_quickstart_short(tmp_path):
    env = {**os.environ, "NANODET_GHOST_CACHE": str(tmp_path / "cache")}
    save_dir = tmp_path / "run"
    proc = run([str(REPO_ROOT / "tools" / "quickstart.py"), f"train.save_dir={save_dir}", "train.max_epochs=2", "train.val_interval=1",
                "train.max_time=null", "data.input_size=[192,192]", "data.num_workers=0"], env)
    assert "COCO mAP@[.5:.95] on the synthetic val split" in proc.stdout
    # the prediction line names what was found, or the best score when nothing passed 0.3
    assert re.search(r"prediction on 000000\.jpg: (0 objects \((none above 0\.30; best score [0-9.]+|no candidates)\)|"
                     r"[1-9]\d* objects \(\w+ [0-9.]+)", proc.stdout), proc.stdout[-500:]
    best = save_dir / "checkpoints" / "best.ckpt"
    assert best.is_file() and (save_dir / "prediction.png").is_file()
    assert f"plots: {save_dir / 'plots'} (results.png" in proc.stdout  # where the README's pictures come from
    assert (save_dir / "plots" / "results.png").is_file() and (save_dir / "plots" / "val_predictions.jpg").is_file()
    final = json.loads((save_dir / "final_eval.json").read_text())
    assert final["val"]["num_images"] == 60

    stats = tmp_path / "stats.json"
    run([str(REPO_ROOT / "tools" / "test.py"), str(save_dir / "config.yaml"), str(best), "--split", "val",
         "--stats-out", str(stats)], env)
    reported = json.loads(stats.read_text())["stats"]
    assert len(reported) == 12
    assert abs(reported[0] - final["val"]["mAP"]) < 1e-9  # same checkpoint, same numbers
