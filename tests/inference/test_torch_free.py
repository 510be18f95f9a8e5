"""`nanodet_ghost.inference.onnx_predictor` needs only numpy, OpenCV and onnxruntime."""
from __future__ import annotations

import subprocess
import sys
import textwrap

from nanodet_ghost.paths import REPO_ROOT

_BLOCK_TORCH = """
import importlib.abc, sys
class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith(("torch.", "torchvision", "pytorch_lightning", "lightning")):
            raise ImportError(f"torch-free check: {name} must not be imported")
        return None
sys.meta_path.insert(0, _NoTorch())
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, cwd=REPO_ROOT)


def test_import_loads_no_torch() -> None:
    proc = _run("""
        import sys
        import nanodet_ghost.inference.onnx_predictor
        from nanodet_ghost.inference import OnnxPredictor, Detections
        import nanodet_ghost.inference.visualize
        heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'pytorch_lightning'))
        print('LOADED', heavy)
    """)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout


def test_prediction_runs_with_torch_blocked(onnx320, photo_paths) -> None:
    """Predicting (preprocess, ORT, numpy decode + NMS, drawing) works when torch cannot be imported."""
    proc = _run(_BLOCK_TORCH + f"""
from nanodet_ghost.inference.onnx_predictor import OnnxPredictor
from nanodet_ghost.inference.visualize import draw_detections
from nanodet_ghost.data.image_io import read_image
predictor = OnnxPredictor({str(onnx320)!r}, num_threads=1)
dets = predictor.predict({str(photo_paths[0])!r}, score_thr=0.05)
drawn = draw_detections(read_image({str(photo_paths[0])!r}), dets)
print('DETECTIONS', len(dets), drawn.shape)
""")
    assert proc.returncode == 0, proc.stderr
    assert "DETECTIONS" in proc.stdout and "DETECTIONS 0 " not in proc.stdout
