"""tools/export_onnx.py end to end on a Lightning-format checkpoint; the exported file is checked,
self-describing (metadata) and holds the EMA weights, fused."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from inference_helpers import CONFIG, save_lightning_checkpoint
from nanodet_ghost.cli import EXIT_CHECKPOINT
from nanodet_ghost.export.heads import RawHead
from nanodet_ghost.export.onnx import export_onnx, verify_with_onnxruntime
from nanodet_ghost.paths import REPO_ROOT


def _run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "export_onnx.py"), *args],
                          capture_output=True, text=True, timeout=300)


def test_export_tool_end_to_end(export_cfg, export_model, tmp_path: Path) -> None:
    live = copy.deepcopy(export_model)
    with torch.no_grad():
        for p in live.head.predictors:
            p.weight.mul_(3.0)  # the live weights differ: the export must take the EMA ones
    ckpt = save_lightning_checkpoint(live, tmp_path / "model_best.ckpt", ema_model=export_model)
    out = tmp_path / "sub" / "model.onnx"
    proc = _run_tool(str(CONFIG), str(ckpt), "--out", str(out), "--input-size", "256", "192",
                     "--dynamic-batch", "--opset", "17")
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}" in proc.stdout and "ema weights" in proc.stderr

    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    assert model.opset_import[0].version == 17
    assert not any(n.op_type == "BatchNormalization" for n in model.graph.node), "BN not fused"
    # GhostModule's cat(...)[:, :out_chs] is a no-op for every block: its Slice is removed.
    assert not [n.name for n in model.graph.node if n.op_type == "Slice" and "/backbone/" in n.name]
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["class_names"]) == list(export_cfg.data.class_names)
    assert json.loads(meta["input_size"]) == [256, 192]
    assert json.loads(meta["strides"]) == [8, 16, 32] and meta["reg_max"] == "7"
    assert json.loads(meta["mean"]) == list(export_cfg.data.mean)
    assert json.loads(meta["std"]) == list(export_cfg.data.std)
    assert json.loads(meta["keep_ratio"]) is True and meta["center_offset"] == "0.5"
    assert meta["format_version"] == "1" and "sigmoid" in meta["score_layout"]

    x = torch.randn(2, 3, 192, 256, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = RawHead(export_model).eval()(x).numpy()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": x.numpy()})[0]  # dynamic batch: B = 2
    n = 24 * 32 + 12 * 16 + 6 * 8
    assert got.shape == (2, n, 80 + 32)
    assert np.abs(got - expected).max() < 1e-4


def test_verify_with_onnxruntime_measures_the_export(export_cfg, export_model, tmp_path: Path, caplog) -> None:
    """The export check compares with the PyTorch model it is given: near zero for the model that
    was exported; inf with a warning naming the output for a model whose outputs have another
    shape (another class count)."""
    from inference_helpers import make_cfg
    from nanodet_ghost.model import build_model

    path = export_onnx(export_model, export_cfg, tmp_path / "m.onnx", input_size=(128, 96), verify=False)
    diff = verify_with_onnxruntime(str(path), export_model, export_cfg, (128, 96))
    assert 0.0 <= diff < 1e-4
    other_cfg = make_cfg("model.head.num_classes=3", "data.class_names=[a,b,c]")
    other = build_model(other_cfg.model).eval()
    with caplog.at_level("WARNING"):
        assert verify_with_onnxruntime(str(path), other, other_cfg, (128, 96)) == float("inf")
    assert "m.onnx: output output has shape" in caplog.text


def test_fixed_batch_export_and_predictor_loop(export_cfg, export_model, photo_paths, tmp_path: Path) -> None:
    """Without --dynamic-batch the batch is 1; `OnnxPredictor` then runs a list image by image."""
    from nanodet_ghost.inference.onnx_predictor import OnnxPredictor

    path = export_onnx(export_model, export_cfg, tmp_path / "fixed.onnx", input_size=(160, 128))
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 3, 128, 160]
    predictor = OnnxPredictor(path)
    images = [str(p) for p in photo_paths[:3]]
    batch = predictor.predict(images, score_thr=0.2)
    single = [predictor.predict(p, score_thr=0.2) for p in images]
    assert len(batch) == len(single) == 3
    assert sum(len(d) for d in single) > 0, "the test model should detect something"
    for a, b in zip(batch, single):
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.scores, b.scores)


def test_export_tool_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "broken.ckpt"
    bad.write_bytes(b"not a checkpoint")
    proc = _run_tool(str(CONFIG), str(bad), "--out", str(tmp_path / "m.onnx"))
    assert proc.returncode == EXIT_CHECKPOINT and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "broken.ckpt" in proc.stderr
    with pytest.raises(ValueError, match="opset"):
        export_onnx(torch.nn.Identity(), None, tmp_path / "x.onnx", opset=11)
