"""bench_bccd's seed table: every seed, then mean ± sample std."""
from __future__ import annotations

import statistics
import sys

from nanodet_ghost.paths import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT))
from benchmarks.bench_bccd import table  # noqa: E402


def _run(seed: int, test_map: float) -> dict:
    return {"seed": seed, "epochs": 120 + seed, "steps": 3000 + 25 * seed, "wall_min": 30.5, "val_map": 0.6,
            "test_stats": [test_map, 0.9] + [0.0] * 10,
            "test_ap": {"RBC": 0.5, "WBC": 0.8, "Platelets": test_map - 0.1}}


def test_table_lists_each_seed_then_mean_and_sample_std() -> None:
    maps = [0.601, 0.612, 0.596]
    lines = table([_run(s, m) for s, m in enumerate(maps)]).strip().splitlines()
    assert len(lines) == 2 + 3 + 1
    assert [line.split(" | ")[5] for line in lines[2:5]] == ["0.601", "0.612", "0.596"]
    mean_row = lines[-1].split(" | ")
    assert mean_row[0] == "| **mean ± std**"
    assert mean_row[5] == f"**{statistics.mean(maps):.3f} ± {statistics.stdev(maps):.3f}**"
    assert mean_row[1] == "121 ± 1.0" and mean_row[3] == "30.5 ± 0.0"


def test_one_seed_has_no_mean_row() -> None:
    lines = table([_run(0, 0.6)]).strip().splitlines()
    assert len(lines) == 3 and "mean" not in lines[-1]
