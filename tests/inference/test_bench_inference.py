"""benchmarks/bench_inference.py runs end to end (tiny repeat counts, small size, no peer) and
replaces only its own section of the markdown file."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from nanodet_ghost.paths import REPO_ROOT


def test_bench_inference_writes_its_section(demo_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\n## Training\n\nkeep me\n\n## Inference speed\n\nold numbers\n")
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "bench_inference.py"), "--sizes", "128", "--repeats", "2",
         "--warmup", "1", "--rounds", "1", "--candidates", "50", "--out", str(out), "--no-peer"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "## Training\n\nkeep me" in text and "old numbers" not in text
    assert text.count("## Inference speed") == 1
    for row in ("ours eager unfused", "ours eager fused", "ours ORT forward", "ours Predictor end to end",
                "ours OnnxPredictor end to end", "Machine:", "Threads:", "### 128x128"):
        assert row in text, row
    assert "skipped" in text  # the peer rows and their ratios say so
