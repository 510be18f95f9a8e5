"""benchmarks/bench_yolo_bccd.py: its YOLO-format writer on a generated VOC dataset (labels checked against
the boxes after our reader's repairs), and, with ultralytics installed, one tiny end-to-end run."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np
import pytest

from nanodet_ghost.data.voc import VocSource
from nanodet_ghost.paths import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT))
from benchmarks.bench_yolo_bccd import SECTION, write_yolo_dataset  # noqa: E402

CLASSES = ("RBC", "WBC", "Platelets")
Box = Tuple[str, float, float, float, float]  # class name, xmin, ymin, xmax, ymax as written in the xml


def _xml(stem: str, width: int, height: int, boxes: Sequence[Box]) -> str:
    objects = "".join(
        f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
        f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>" for name, x1, y1, x2, y2 in boxes)
    return (f"<annotation><filename>{stem}.jpg</filename><size><width>{width}</width><height>{height}</height>"
            f"<depth>3</depth></size>{objects}</annotation>")


def make_voc(root: Path, images: Dict[str, List[Tuple[str, int, int, List[Box]]]]) -> None:
    """A VOC devkit at `root`: {split: [(stem, width, height, boxes)]}, images drawn with their boxes."""
    rng = np.random.default_rng(0)
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for split, items in images.items():
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{s}\n" for s, *_ in items))
        for stem, width, height, boxes in items:
            img = rng.integers(150, 230, (height, width, 3), dtype=np.uint8)
            for name, x1, y1, x2, y2 in boxes:
                colour = [(60, 60, 200), (200, 60, 160), (60, 160, 60)][CLASSES.index(name)]
                cv2.rectangle(img, (int(x1), int(y1)), (int(x2) - 1, int(y2) - 1), colour, -1)
            cv2.imwrite(str(root / "JPEGImages" / f"{stem}.jpg"), img)
            (root / "Annotations" / f"{stem}.xml").write_text(_xml(stem, width, height, boxes))


def _labels(path: Path) -> np.ndarray:
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    return np.array(rows, dtype=np.float64).reshape(-1, 5)


def test_writer_labels_match_the_repaired_source_boxes(tmp_path: Path) -> None:
    voc = tmp_path / "voc"
    make_voc(voc, {
        "train": [("a", 100, 80, [("RBC", 10, 20, 50, 60), ("WBC", 60, 5, 90, 35)]),
                  ("empty", 64, 48, []),
                  # xmax beyond the width: clipped to 120; the zero-size box is skipped
                  ("dirty", 120, 90, [("Platelets", 100, 40, 130, 70), ("RBC", 30, 30, 30, 50)])],
        "test": [("b", 80, 80, [("WBC", 0, 0, 40, 20)])],
    })
    sources = {s: VocSource(str(voc), CLASSES, split=s) for s in ("train", "test")}
    assert sources["train"].fixed["clipped box"] == 1 and sources["train"].skipped["zero-size box"] == 1
    yaml_path = write_yolo_dataset(sources, tmp_path / "out")

    import yaml

    data = yaml.safe_load(yaml_path.read_text())
    assert data["names"] == {0: "RBC", 1: "WBC", 2: "Platelets"} and data["train"] == "images/train"
    assert Path(data["path"]) == (tmp_path / "out").resolve()
    expected = {  # class, cx, cy, w, h normalised, computed by hand from the xml after clipping
        ("train", "a"): [[0, 30 / 100, 40 / 80, 40 / 100, 40 / 80], [1, 75 / 100, 20 / 80, 30 / 100, 30 / 80]],
        ("train", "empty"): [],
        ("train", "dirty"): [[2, 110 / 120, 55 / 90, 20 / 120, 30 / 90]],
        ("test", "b"): [[1, 20 / 80, 10 / 80, 40 / 80, 20 / 80]],
    }
    for (split, stem), rows in expected.items():
        image = tmp_path / "out" / "images" / split / f"{stem}.jpg"
        assert image.is_file() and image.resolve() == (voc / "JPEGImages" / f"{stem}.jpg").resolve()
        label_file = tmp_path / "out" / "labels" / split / f"{stem}.txt"
        assert label_file.is_file(), label_file  # an empty file for the image without boxes
        np.testing.assert_allclose(_labels(label_file), np.array(rows).reshape(-1, 5), atol=1e-6)
    # The labels are the source's boxes, as our model sees them.
    for split, source in sources.items():
        for i in range(len(source)):
            ann = source.get_annotation(i)
            got = _labels(tmp_path / "out" / "labels" / split / ann["file_name"].replace(".jpg", ".txt"))
            w, h = ann["width"], ann["height"]
            xyxy = np.stack([(got[:, 1] - got[:, 3] / 2) * w, (got[:, 2] - got[:, 4] / 2) * h,
                             (got[:, 1] + got[:, 3] / 2) * w, (got[:, 2] + got[:, 4] / 2) * h], axis=1)
            np.testing.assert_allclose(xyxy, ann["boxes"].reshape(-1, 4), atol=1e-3)
            np.testing.assert_array_equal(got[:, 0].astype(int), ann["labels"])
    # Writing again replaces the earlier export.
    write_yolo_dataset({"test": sources["test"]}, tmp_path / "out")
    assert not (tmp_path / "out" / "labels" / "train").exists()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ultralytics") is None, reason="ultralytics not installed ([bench])")
def test_bench_yolo_bccd_runs_end_to_end(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)

    def items(prefix: str, n: int) -> List[Tuple[str, int, int, List[Box]]]:
        out = []
        for k in range(n):
            x, y = (int(v) for v in rng.integers(4, 40, 2))
            out.append((f"{prefix}{k}", 96, 72, [(CLASSES[k % 3], x, y, x + 24, y + 20)] if k else []))
        return out

    voc = tmp_path / "voc"
    make_voc(voc, {"train": items("tr", 6), "val": items("va", 3), "test": items("te", 3)})
    work, doc = tmp_path / "work", tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## Other\n\nkeep me\n")
    script = str(REPO_ROOT / "benchmarks" / "bench_yolo_bccd.py")
    roots = [f"data.{s}.root={voc}" for s in ("train", "val", "test")]
    proc = subprocess.run(
        [sys.executable, script, "--epochs", "1", "--imgsz", "64", "--batch", "4", "--work-dir", str(work),
         "--no-write", *roots, "data.input_size=[96,72]"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| eval size (W x H) | epochs |" in proc.stdout and "| 96x72 | 1 |" in proc.stdout, proc.stdout
    figures = json.loads((work / "bench.json").read_text())
    assert figures["epochs"] == 1 and figures["network_attempts"] == []
    assert figures["train_args"]["pretrained"] is False and figures["train_args"]["amp"] is False
    assert [r["eval_size"] for r in figures["rows"]] == ["96x72", "64 (train imgsz)"]
    assert set(figures["rows"][0]["test_ap"]) == set(CLASSES)
    assert not doc.read_text().count(SECTION)
    # --reuse reports bench.json without training, and writes only its own section.
    proc = subprocess.run([sys.executable, script, "--reuse", "--work-dir", str(work), "--doc", str(doc)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = doc.read_text()
    assert f"## {SECTION}" in text and "## Other\n\nkeep me" in text and "| 96x72 | 1 |" in text
