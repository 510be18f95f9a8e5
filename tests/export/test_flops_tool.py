"""tools/flops.py: parameters and multiply-adds per part."""
from __future__ import annotations

import subprocess
import sys

from nanodet_ghost.paths import CONFIG_DIR, REPO_ROOT


def test_flops_tool_reports_parts() -> None:
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "flops.py"),
                           str(CONFIG_DIR / "nanodet_ghost_320.yml"), "--input-size", "160", "160"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.split()}
    for part in ("backbone", "neck", "head", "total"):
        assert part in rows
    params = {p: int(rows[p][1].replace(",", "")) for p in ("backbone", "neck", "head", "total")}
    assert params["backbone"] + params["neck"] + params["head"] == params["total"]
    macs = {p: float(rows[p][3]) for p in ("backbone", "neck", "head", "total")}
    assert abs(macs["backbone"] + macs["neck"] + macs["head"] - macs["total"]) < 0.002
    assert 0.05 < macs["total"] < 0.2  # ~0.37 GMACs at 320, a quarter at 160
    assert "multiply-adds" in proc.stdout
