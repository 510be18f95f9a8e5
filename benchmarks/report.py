"""Shared by the benchmarks: machine description and section-wise updates of docs/benchmarks.md."""
from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import List, Set, Tuple

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS_MD = REPO_ROOT / "docs" / "benchmarks.md"
HEADER = "# Benchmarks\n\nEvery figure below was measured by a script in `benchmarks/`; each section names its machine and date.\n"


def cpu_model_and_flags() -> Tuple[str, Set[str]]:
    """lscpu's model name and CPU flags (the flags are empty where lscpu is missing)."""
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in lscpu.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("Flags:"):
                flags = set(line.split(":", 1)[1].split())
    except (OSError, subprocess.SubprocessError):
        pass
    return model, flags


def machine_description() -> str:
    """CPU model, core count, notable SIMD flags, torch version and thread count."""
    model, flags = cpu_model_and_flags()
    notable = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16") if f in flags]
    return (f"{model}, {os.cpu_count()} cores ({', '.join(notable) or 'no AVX2'}), torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")


def today() -> str:
    return _dt.date.today().isoformat()


def write_section(title: str, body: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace (or append) the `## title` section of the benchmarks page, leaving the others alone."""
    text = path.read_text() if path.exists() else HEADER
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def replace_between_markers(path: Path, name: str, lines: List[str]) -> bool:
    """Replace what stands between `<!-- name:start -->` and `<!-- name:end -->` in `path` with
    `lines`; False (nothing written) when the file lacks the markers."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text()
    if start not in text or end not in text:
        return False
    head, rest = text.split(start, 1)
    path.write_text(head + start + "\n" + "\n".join(lines) + "\n" + end + rest.split(end, 1)[1])
    return True
