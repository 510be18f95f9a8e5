"""docs/deploy.md's standalone script (onnxruntime, numpy and OpenCV only) run where nanodet_ghost
cannot be imported: its detections equal the PyTorch `Predictor`'s on the same images."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from nanodet_ghost.export.formats import export_model as export_format
from nanodet_ghost.inference.common import Detections
from nanodet_ghost.inference.predictor import Predictor
from nanodet_ghost.paths import REPO_ROOT

from inference_helpers import assert_same_detections, read_images

pytest.importorskip("onnxruntime", reason="pip install 'nanodet_ghost[onnxruntime]'")

DEPLOY_DOC = REPO_ROOT / "docs" / "deploy.md"
# nanodet_ghost is installed in this environment: the runner makes every import of it fail.
RUNNER = """
import runpy, sys
sys.modules["nanodet_ghost"] = None
try:
    import nanodet_ghost  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("nanodet_ghost is importable: the check is void")
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def standalone_script() -> str:
    text = DEPLOY_DOC.read_text()
    block = re.search(r"<!-- standalone:start -->\s*```python\n(.*?)```\s*<!-- standalone:end -->", text, re.S)
    assert block, f"{DEPLOY_DOC} lacks the standalone block between its markers"
    return block.group(1)


def test_the_script_is_short_and_imports_no_nanodet_ghost() -> None:
    script = standalone_script()
    assert len(script.strip().splitlines()) <= 45
    imports = set(re.findall(r"^\s*(?:import|from)\s+([\w.]+)", script, re.M))
    assert imports <= {"json", "sys", "cv2", "numpy", "onnxruntime"}, imports


def _parse(output: str, class_names, image_hw) -> Detections:
    rows = [line.split("\t") for line in output.strip().splitlines() if line.strip()]
    labels = np.array([class_names.index(r[0]) for r in rows], np.int64)
    scores = np.array([float(r[1]) for r in rows], np.float32)
    boxes = np.array([[float(v) for v in r[2].split()] for r in rows], np.float32).reshape(-1, 4)
    return Detections(boxes=boxes, scores=scores, labels=labels, names=[r[0] for r in rows], image_hw=image_hw)


@pytest.mark.parametrize("keep_ratio", [True, False])
def test_standalone_detections_equal_the_predictor(keep_ratio, export_model, photo_paths, tmp_path: Path) -> None:
    from inference_helpers import make_cfg

    cfg = make_cfg("data.input_size=[256,192]", f"data.keep_ratio={str(keep_ratio).lower()}")
    model_path = export_format(export_model, cfg, "onnx", tmp_path / "model.onnx", head="nms")
    script = tmp_path / "detect.py"
    script.write_text(standalone_script())
    from nanodet_ghost.data.synthetic import render_image

    scene, _ = render_image(np.random.default_rng(5))
    cv2.imwrite(str(tmp_path / "scene.png"), scene)
    paths = list(photo_paths[:2]) + [tmp_path / "scene.png"]
    predictor = Predictor.from_config(cfg, export_model)
    total = 0
    for path, image in zip(paths, read_images(paths)):
        proc = subprocess.run([sys.executable, "-c", RUNNER, str(script), str(model_path), str(path)],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        got = _parse(proc.stdout, list(cfg.data.class_names), image.shape[:2])
        expected = predictor.predict(image)
        assert_same_detections(expected, got, box_atol=1e-2, score_atol=1e-4)
        total += len(got)
    assert total > 5, "the test model should detect something"
