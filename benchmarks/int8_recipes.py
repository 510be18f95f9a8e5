"""The INT8 recipe choice, measured: BCCD mAP and forward time of each candidate recipe.

Used by `bench_formats.py --recipes`: every recipe quantizes the same fp32 ONNX export on the
same calibration images; ONNX Runtime recipes differ in the calibration method and in whether the
head's output convolutions stay in float, OpenVINO ones in the NNCF preset and the same float head.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List

import numpy as np

from nanodet_ghost.export.onnx_int8 import Int8Recipe, quantize_onnx
from nanodet_ghost.export.openvino import NncfRecipe, export_openvino

ORT_RECIPES: Dict[str, Int8Recipe] = {
    "ORT MinMax, float head outputs (default)": Int8Recipe(),
    "ORT Entropy, float head outputs": Int8Recipe(calibration="entropy"),
    "ORT Percentile, float head outputs": Int8Recipe(calibration="percentile"),
    "ORT MinMax, everything quantized": Int8Recipe(float_outputs=False),
}
OPENVINO_RECIPES: Dict[str, NncfRecipe] = {
    "NNCF performance, everything quantized (default)": NncfRecipe(),
    "NNCF performance, float head outputs": NncfRecipe(float_outputs=True),
    "NNCF mixed, everything quantized": NncfRecipe(preset="mixed"),
}


def build_recipes(fp32_onnx: Path, images: np.ndarray, workdir: Path) -> Dict[str, Path]:
    """Every recipe's model file, by recipe label."""
    paths: Dict[str, Path] = {}
    for i, (label, recipe) in enumerate(ORT_RECIPES.items()):
        paths[label] = Path(quantize_onnx(fp32_onnx, workdir / f"recipe_ort_{i}.onnx", images, recipe))
    for i, (label, nncf_recipe) in enumerate(OPENVINO_RECIPES.items()):
        paths[label] = Path(export_openvino(fp32_onnx, workdir / f"recipe_ov_{i}.xml", images, nncf_recipe))
    return paths


def recipe_table(paths: Dict[str, Path], maps: Dict[str, float], forward_ms: Callable[[str], float],
                 fp32_map: Dict[str, float]) -> List[str]:
    """Markdown rows: recipe, mAP, loss against the fp32 format of the same engine, forward ms."""
    lines = ["| INT8 recipe | mAP | loss vs fp32 | forward median ms |", "|---|---:|---:|---:|"]
    for label in paths:
        base = fp32_map["onnx" if label.startswith("ORT") else "openvino"]
        lines.append(f"| {label} | {maps[label]:.3f} | {base - maps[label]:+.3f} | {forward_ms(label):.2f} |")
    return lines
