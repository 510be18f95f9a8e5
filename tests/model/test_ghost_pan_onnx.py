"""A NanoDet-Plus-shaped detector (GhostNet → GhostPAN with one extra level → GFLHead with kernel 5
and strides 8/16/32/64), assembled by hand, goes through the repo's ONNX exporter (BN fused) and
runs in ONNX Runtime like PyTorch; the numpy decoding reads four levels from the metadata."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from nanodet_ghost.export.heads import RawHead
from nanodet_ghost.export.onnx import export_onnx
from nanodet_ghost.inference.postprocess_np import decode_np
from nanodet_ghost.model.backbone.ghostnet import GhostNet
from nanodet_ghost.model.detector import Detector
from nanodet_ghost.model.fuse import fuse_model, remaining_batchnorms
from nanodet_ghost.model.head.decode import featmap_sizes
from nanodet_ghost.model.head.gfl_head import GFLHead
from nanodet_ghost.model.head.postprocess import PostProcessor
from nanodet_ghost.model.loss.gfl_loss import GFLLoss
from nanodet_ghost.model.neck.ghost_pan import GhostPAN
from reference.nanodet_build import randomize_

ort = pytest.importorskip("onnxruntime")
logger = logging.getLogger(__name__)

STRIDES = [8, 16, 32, 64]
NUM_CLASSES = 3
INPUT_WH = (160, 96)  # 96 is no multiple of 64: the stride-64 level is ceil(96 / 64) = 2 rows


@pytest.fixture(scope="module")
def plus_detector() -> Detector:
    torch.manual_seed(0)
    backbone = GhostNet(width=0.5, activation="LeakyReLU")
    neck = GhostPAN(backbone.out_channels, 32, kernel_size=5, num_extra_level=1)
    head = GFLHead(NUM_CLASSES, neck.out_channels, feat_channels=32, kernel_size=5, strides=STRIDES)
    model = Detector(backbone, neck, head, GFLLoss(NUM_CLASSES, STRIDES), PostProcessor(NUM_CLASSES, STRIDES))
    randomize_(model, torch.Generator().manual_seed(1))  # BN statistics that fusion has to fold
    return model.eval()


def _cfg():
    """What the exporter reads from a config: the metadata fields."""
    return OmegaConf.create({
        "model": {"head": {"num_classes": NUM_CLASSES, "strides": STRIDES, "reg_max": 7, "center_offset": 0.5},
                  "postprocess": {"score_thr": 0.05, "nms_iou": 0.6, "nms_pre": 1000, "max_detections": 100}},
        "data": {"class_names": ["a", "b", "c"], "mean": [103.53, 116.28, 123.675], "std": [57.375, 57.12, 58.395],
                 "keep_ratio": True, "input_size": list(INPUT_WH)},
    })


def test_fusion_folds_every_batchnorm(plus_detector: Detector) -> None:
    fused = fuse_model(plus_detector)
    assert remaining_batchnorms(fused) == []
    x = torch.randn(1, 3, INPUT_WH[1], INPUT_WH[0], generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected, got = plus_detector(x), fused(x)
    scale = float(expected.abs().max())
    assert float((got - expected).abs().max()) <= 1e-5 * max(1.0, scale)


def test_export_and_onnxruntime_parity(plus_detector: Detector, tmp_path: Path) -> None:
    import onnx

    path = export_onnx(plus_detector, _cfg(), tmp_path / "plus.onnx", input_size=INPUT_WH, simplify=False,
                       verify=False)
    model = onnx.load(path)
    assert not any(n.op_type == "BatchNormalization" for n in model.graph.node), "BN not fused"
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["strides"]) == STRIDES

    width, height = INPUT_WH
    x = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        raw = plus_detector(x)
        expected = RawHead(plus_detector).eval()(x).numpy()
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    n = sum(h * w for h, w in featmap_sizes((height, width), STRIDES))
    assert n == 12 * 20 + 6 * 10 + 3 * 5 + 2 * 3
    assert got.shape == expected.shape == (1, n, NUM_CLASSES + 32)
    diff = float(np.abs(got - expected).max())
    scale = max(1.0, float(np.abs(expected).max()))
    logger.info("ONNX Runtime vs PyTorch: max abs diff %.3g (outputs up to %.3g)", diff, scale)
    assert diff <= 1e-4 * scale

    # decoding reads the four strides from the metadata; boxes agree with the torch post-processor
    scores, boxes = decode_np(got, NUM_CLASSES, 7, json.loads(meta["strides"]), (height, width))
    torch_scores, torch_boxes = plus_detector.postprocess.decode(raw, (height, width))
    assert np.abs(boxes - torch_boxes.numpy()).max() < 1e-2
    assert np.abs(scores - torch_scores.numpy()).max() < 1e-4
