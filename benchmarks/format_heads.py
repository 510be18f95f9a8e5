"""bench_formats' rows for the export heads (`--head boxes|nms`) and MNN's: exports, timing rows, targets.

A head row is keyed `<format>+<head>` (e.g. `onnx+nms`) beside the formats' own rows (the `raw`
head). For each it times the runtime's forward (`ExportedPredictor.run`), image in → detections
out (`predict`), and, for the nms head, reading the detections (`postprocess_outputs`: slice,
letterbox inverse), which with pre-processing is all the work left outside the runtime.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

HEAD_FORMATS = {"onnx": "ours.{head}.onnx", "openvino": "ours.{head}.xml", "mnn": "ours.{head}.mnn"}
HEAD_KINDS = ("boxes", "nms")
OUTSIDE_GOAL = 0.15  # (pre + reading the detections) / forward with the nms head


def export_heads(model, cfg, size: Sequence[int], workdir: Path) -> Dict[str, Path]:
    """`<format>+<head>` -> the export, for every format of `HEAD_FORMATS` and head of `HEAD_KINDS`."""
    from nanodet_ghost.export.formats import export_model

    return {f"{fmt}+{head}": Path(export_model(model, cfg, fmt, workdir / name.format(head=head), input_size=size,
                                               head=head))
            for fmt, name in HEAD_FORMATS.items() for head in HEAD_KINDS}


def add_head_rows(rows: Dict[str, Callable[[], object]], predictors: Dict[str, object], batch: np.ndarray,
                  photos: Sequence[np.ndarray], cfg, cycle: Callable) -> None:
    """Timing rows of every head export (`predictors`: key -> ExportedPredictor) into `rows`."""
    from nanodet_ghost.inference.common import preprocess_batch

    size = list(cfg.data.input_size)
    for key, predictor in predictors.items():
        rows[f"ours {key} forward"] = lambda p=predictor: p.run(batch)
        rows[f"ours {key} end to end"] = cycle([lambda img=img, p=predictor: p.predict(img) for img in photos])
        if key.endswith("+nms"):
            reads = []
            for img in photos:
                b, m = preprocess_batch([img], size, cfg.data.keep_ratio, cfg.data.mean, cfg.data.std)
                outputs = predictor.run(b)
                reads.append(lambda o=outputs, m=m, p=predictor: p.postprocess_outputs(o, m, (size[1], size[0])))
            rows[f"ours {key} read"] = cycle(reads)


def head_checks(t: Dict[str, Tuple[float, float]]) -> List[Tuple[str, Optional[float], str, float]]:
    """Issue 22's targets on ONNX Runtime and OpenVINO: (label, value, op, goal)."""
    med = {name: v[0] for name, v in t.items()}
    checks: List[Tuple[str, Optional[float], str, float]] = []
    for fmt, engine in (("onnx", "ORT"), ("openvino", "OpenVINO")):
        if f"ours {fmt}+nms forward" not in med:
            continue
        outside = (med["ours pre"] + med[f"ours {fmt}+nms read"]) / med[f"ours {fmt}+nms forward"]
        checks.append((f"{engine}, nms head: (pre + reading the detections) / forward", outside, "<=", OUTSIDE_GOAL))
        checks.append((f"{engine}: image to detections, nms head / raw head + numpy post",
                       med[f"ours {fmt}+nms end to end"] / med[f"ours {fmt} end to end"], "<=", 1.0))
    return checks


def head_notes(t: Dict[str, Tuple[float, float]]) -> List[str]:
    """One line per nms export: pre, read and forward medians."""
    med = {name: v[0] for name, v in t.items()}
    lines = []
    for key in sorted(k[len("ours "):-len(" read")] for k in med if k.endswith(" read")):
        lines.append(f"- `{key}`: pre {med['ours pre']:.2f} ms + reading the detections {med[f'ours {key} read']:.3f} ms "
                     f"outside a forward of {med[f'ours {key} forward']:.2f} ms.")
    return lines
