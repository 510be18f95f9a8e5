"""benchmarks/bench_formats.py: its tables and targets from given timings, and one tiny end-to-end
run (random weights, no peer) that rewrites only its own docs section and the README table."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nanodet_ghost.paths import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT))
from benchmarks.bench_formats import README_END, README_START, readme_table, target_lines, write_readme_table  # noqa: E402,E501

KEYS = ("pytorch", "onnx", "onnx-int8", "openvino", "openvino-int8", "ncnn")


def _rows(maps):
    return [{"format": k, "key": k, "size": None if k == "pytorch" else 1.0, "map": maps[k]} for k in KEYS]


def _timings(forward, peer=None):
    t = {f"ours {k} forward": (ms, ms) for k, ms in forward.items()}
    t.update({f"ours {k} end to end": (ms + 1, ms + 1) for k, ms in forward.items()})
    t.update({"ours pre": (0.2, 0.2), "ours pytorch post": (0.3, 0.3), "ours numpy post": (0.3, 0.3)})
    t.update({f"YOLOv8n {k} forward": (ms, ms) for k, ms in (peer or {}).items()})
    return t


def test_targets_are_judged_from_the_medians() -> None:
    forward = {"pytorch": 10.0, "onnx": 6.0, "onnx-int8": 5.0, "openvino": 4.5, "openvino-int8": 3.0, "ncnn": 8.0}
    maps = {"pytorch": 0.600, "onnx": 0.600, "onnx-int8": 0.595, "openvino": 0.6005, "openvino-int8": 0.580,
            "ncnn": 0.600}
    peers = [{"key": k} for k in ("pytorch", "onnx", "openvino-int8")]
    lines = target_lines(_rows(maps), peers, _timings(forward, {"pytorch": 20.0, "onnx": 12.0, "openvino-int8": 4.0}))
    text = "\n".join(lines)
    assert "| our ORT fp32 forward / our fastest (openvino-int8) forward | 2.000 | >= 1.5 | met |" in text
    assert "| our fastest forward / YOLOv8n's fastest (openvino-int8) | 0.750 | <= 0.85 | met |" in text
    assert "| openvino-int8 mAP loss vs openvino | 0.021 | <= 0.01 | MISSED |" in text
    assert "| onnx-int8 mAP loss vs onnx | 0.005 | <= 0.01 | met |" in text
    assert "| PyTorch path: (pre + post) / forward | 0.050 | <= 0.15 | met |" in text


def test_nms_head_targets_are_judged_from_the_medians() -> None:
    from benchmarks.format_heads import head_checks

    t = _timings({"onnx": 10.0, "openvino": 8.0})
    t.update({"ours onnx+nms forward": (10.5, 10.5), "ours onnx+nms read": (0.05, 0.05),
              "ours onnx+nms end to end": (10.9, 10.9), "ours openvino+nms forward": (8.0, 8.0),
              "ours openvino+nms read": (0.05, 0.05), "ours openvino+nms end to end": (9.5, 9.5)})
    checks = {label: (value, goal) for label, value, _, goal in head_checks(t)}
    assert checks["ORT, nms head: (pre + reading the detections) / forward"] == (0.25 / 10.5, 0.15)
    assert checks["ORT: image to detections, nms head / raw head + numpy post"] == (10.9 / 11.0, 1.0)
    assert checks["OpenVINO: image to detections, nms head / raw head + numpy post"] == (9.5 / 9.0, 1.0)


def test_readme_table_replaces_only_the_marked_block(tmp_path: Path) -> None:
    forward = {k: 5.0 for k in KEYS}
    lines = readme_table(_rows({k: 0.5 for k in KEYS}), _timings(forward), type("A", (), {"split": "test"})())
    assert len(lines) == 2 + 6 and lines[0].startswith("| format | size MB | test mAP |")
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_START}\nold\n{README_END}\noutro\n")
    write_readme_table(readme, lines)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old" not in text
    assert "| onnx-int8 | 1.0 | 0.500 | 5.00 | 6.00 |" in text


@pytest.mark.slow
def test_bench_formats_runs_end_to_end(bccd_root: Path, tmp_path: Path) -> None:
    out, readme = tmp_path / "benchmarks.md", tmp_path / "README.md"
    out.write_text("# Benchmarks\n\n## Training\n\nkeep me\n\n## Deployment formats\n\nold numbers\n")
    readme.write_text(f"{README_START}\n{README_END}\n")
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "bench_formats.py"), "--input-size", "96", "96",
         "--calib-images", "2", "--repeats", "2", "--warmup", "1", "--rounds", "1", "--no-peer", "--out", str(out),
         "--readme", str(readme)], capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert "## Training\n\nkeep me" in text and "old numbers" not in text
    for fmt in ("| ours | onnx-int8 |", "| ours | openvino-int8 |", "| ours | ncnn |", "| ours | mnn |",
                "| ours | onnx, nms head |", "| ours | openvino, boxes head |", "Machine:", "Targets",
                "ORT, nms head: (pre + reading the detections) / forward"):
        assert fmt in text, fmt
    assert "| openvino-int8 |" in readme.read_text()
