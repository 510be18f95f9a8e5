"""benchmarks/bench_scale.py at 300 images: it generates the dataset, the second build reads the
label cache, the workers' USS is measured, every target gets a verdict and nothing is written."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from nanodet_ghost.paths import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT))
from benchmarks import bench_scale  # noqa: E402

pytest.importorskip("psutil")


def test_generated_json_matches_its_files(tmp_path: Path) -> None:
    ann_file = bench_scale.generate(tmp_path / "ds", num_images=40, pool=7)
    data = json.loads(ann_file.read_text())
    assert len(data["images"]) == 40 and len(data["categories"]) == 80
    assert len({img["file_name"] for img in data["images"]}) == 40
    import cv2

    for img in data["images"][:8]:
        decoded = cv2.imread(str(tmp_path / "ds" / "images" / img["file_name"]))
        assert decoded.shape[:2] == (img["height"], img["width"])
    assert 4 < len(data["annotations"]) / 40 < 11  # about 7.3 boxes per image


def test_smoke_run_prints_verdicts_and_writes_nothing(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("NANODET_GHOST_CACHE", str(tmp_path / "user_cache"))
    out = tmp_path / "benchmarks.md"
    code = bench_scale.main(["--images", "300", "--pool", "20", "--eval-images", "20",
                             "--eval-dets", "5", "--work-dir", str(tmp_path / "work"),
                             "--out", str(out), "--no-write"])
    text = capsys.readouterr().out
    assert code == 0 and not out.exists()
    assert "second build (cache read) / first build" in text  # the cache was used
    for words in ("vs json.load alone", "largest worker USS growth over the 20% pass (after",
                  "| second build (reads the label cache) |"):
        assert words in text
    verdicts = [line for line in text.splitlines() if "(target" in line]
    assert len(verdicts) == 6  # printed, then in the section body
    assert all(line.rstrip(")").endswith(("met", "missed")) for line in verdicts)
    assert "evaluation of 20 images" in text or "TODO evaluation timing" in text
