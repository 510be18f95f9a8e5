"""benchmarks/bench_family.py: the table, the README rows and the targets from given figures, and the
accuracy it reads back from earlier runs' bench.json."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nanodet_ghost.paths import REPO_ROOT, bundled_config

sys.path.insert(0, str(REPO_ROOT))
import benchmarks.bench_family as bench_family  # noqa: E402
from benchmarks.report import replace_between_markers  # noqa: E402

ARGS = argparse.Namespace(budget="00:00:15:00", seeds=[0])


def _figures(yolo_ms=(20.0, 18.0, 10.0), yolo_map=0.55):
    infos = [
        {"config": "config/fast.yml", "params": 800_000, "gflops": 0.4, "size": [416, 320],
         "accuracy": {"maps": [0.58], "epochs": [60], "mean": 0.58, "std": None}},
        {"config": "config/slow.yml", "params": 3_000_000, "gflops": 1.2, "size": [416, 320],
         "accuracy": {"maps": [0.61, 0.62], "epochs": [40, 41], "mean": 0.615, "std": 0.007}},
        {"config": "config/untrained.yml", "params": 1_000_000, "gflops": 0.5, "size": [416, 320], "accuracy": None},
    ]
    timings = {}
    for name, ms in (("fast", (9.0, 8.0, 6.5)), ("slow", (15.0, 12.0, 8.0)), ("untrained", (10.0, 9.0, 6.0))):
        timings.update({f"{name} {fmt}": (v, v) for fmt, v in zip(bench_family.ENGINES, ms)})
    timings.update({f"YOLOv8n {fmt}": (v, v) for fmt, v in zip(bench_family.ENGINES, yolo_ms)})
    for info in infos:
        info["fastest"] = min(timings[f"{Path(info['config']).stem} {fmt}"][0] for fmt in bench_family.ENGINES)
    yolo = {"timed": True, "version": "8.x", "map": yolo_map, "best_map": yolo_map, "best_size": "416x320",
            "map_cell": f"{yolo_map:.3f}", "epochs": "50",
            "params": 3_150_000, "gflops": 2.8, "fastest": min(yolo_ms)}
    return infos, yolo, timings


def test_table_ratios_and_targets() -> None:
    infos, yolo, timings = _figures()
    table = bench_family.render(infos, timings, yolo, ARGS)
    fast = [line for line in table if "`fast`" in line][0]
    assert "| 0.650 |" in fast and "0.580" in fast  # 6.5 ms / YOLOv8n's fastest 10.0 ms
    assert "0.615 ± 0.007 (0.610 / 0.620)" in [line for line in table if "`slow`" in line][0]
    assert "not trained" in [line for line in table if "`untrained`" in line][0]
    targets = bench_family.target_lines(infos, yolo, timings)
    assert "`fast`: speed 0.650 (goal <= 0.7) met; mAP 0.580" in targets[0] and targets[0].endswith("met")
    assert "speed 0.800 (goal <= 0.7) MISSED" in targets[1]  # accurate, but not fast enough
    assert targets[2].endswith("MISSED") and "not measured" in targets[2]


def test_map_must_also_beat_yolov8n() -> None:
    infos, yolo, timings = _figures(yolo_map=0.60)
    assert bench_family.target_lines(infos, yolo, timings)[0].endswith("MISSED")  # 0.58 < YOLOv8n's 0.60


def test_map_must_beat_yolov8n_at_its_best_eval_size() -> None:
    infos, yolo, timings = _figures(yolo_map=0.55)
    assert bench_family.target_lines(infos, yolo, timings)[0].endswith("met")
    yolo.update(best_map=0.59, best_size="320")  # YOLOv8n at its own training size beats the 0.58 member
    assert bench_family.target_lines(infos, yolo, timings)[0].endswith("MISSED")
    assert "1.00x | 0.550; 0.590 at 320 |" in bench_family.readme_lines(infos, yolo, timings, ARGS)[-1]


def test_readme_rows_name_the_fastest_engine(tmp_path: Path) -> None:
    infos, yolo, timings = _figures()
    lines = bench_family.readme_lines(infos, yolo, timings, ARGS)
    assert lines[2].startswith("| `fast` | 0.80 | 0.40 | 6.50 (OpenVINO INT8) | 0.65x | 0.580 |")
    assert lines[-1].startswith("| YOLOv8n |") and "1.00x | 0.550 |" in lines[-1]
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- bench_family:start -->\nold\n<!-- bench_family:end -->\noutro\n")
    assert replace_between_markers(readme, "bench_family", lines)
    text = readme.read_text()
    assert "old" not in text and text.startswith("intro\n") and text.endswith("outro\n") and "`fast`" in text
    assert not replace_between_markers(tmp_path / "README.md", "other", lines)


def test_accuracy_reads_earlier_runs(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(bench_family, "_REPO_ROOT", tmp_path)
    assert bench_family.accuracy("config/member.yml", "00:00:15:00", [0, 1], train=False, reuse=False) is None
    for seed, value in ((0, 0.6), (1, 0.62)):
        record = tmp_path / "work_dirs" / "family" / "15min" / "member" / f"seed{seed}" / "bench.json"
        record.parent.mkdir(parents=True)
        record.write_text(json.dumps({"test_stats": [value] + [0.0] * 11, "epochs": 50 + seed}))
    acc = bench_family.accuracy("config/member.yml", "00:00:15:00", [0, 1], train=False, reuse=False)
    assert acc["maps"] == [0.6, 0.62] and acc["epochs"] == [50, 51]
    assert abs(acc["mean"] - 0.61) < 1e-12 and abs(acc["std"] - 0.0141421) < 1e-6


def test_the_family_list_names_shipped_configs() -> None:
    assert all(bundled_config(path) is not None for path in bench_family.FAMILY)  # config/NAME.yml: bundled


def test_budget_folders_keep_runs_of_different_budgets_apart() -> None:
    assert bench_family.budget_folder("00:00:15:00") == "15min"
    assert bench_family.budget_folder("00:00:30:00") == "30min"
    assert bench_family.budget_folder("00:01:00:30") == "3630s"


def test_accuracy_cell_says_when_seeds_are_missing() -> None:
    infos, _, _ = _figures()
    assert bench_family.accuracy_cell(infos[0]["accuracy"], [0]) == "0.580"
    assert bench_family.accuracy_cell(infos[0]["accuracy"], [0, 1, 2]) == "0.580 (1 of 3 seeds)"
    assert bench_family.accuracy_cell(infos[1]["accuracy"], [0, 1], per_seed=True) == "0.615 ± 0.007 (0.610 / 0.620)"
