"""ONNX Runtime vs PyTorch on real photos: raw outputs within 1e-4, same detections."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from inference_helpers import assert_same_detections, read_images
from nanodet_ghost.inference.onnx_predictor import OnnxPredictor
from nanodet_ghost.inference.predictor import Predictor


def test_onnx_output_matches_pytorch(cfg320, model320, onnx320, photo_paths) -> None:
    predictor = Predictor.from_config(cfg320, model320)
    batch, _ = predictor.preprocess(read_images(photo_paths))
    with torch.no_grad():
        raw = model320(batch)  # the unfused model: fusion is part of what is checked
    expected = torch.cat((raw[..., :80].sigmoid(), raw[..., 80:]), dim=-1).numpy()
    got = OnnxPredictor(onnx320, num_threads=2).forward(batch.numpy())
    assert got.shape == expected.shape == (len(photo_paths), 2100, 80 + 32)
    assert np.abs(got - expected).max() < 1e-4


@pytest.mark.parametrize("score_thr", [0.05, 0.3])
def test_onnx_predictor_detections_equal_predictor(cfg320, model320, onnx320, photo_paths, score_thr) -> None:
    torch_dets = Predictor.from_config(cfg320, model320).predict([str(p) for p in photo_paths], score_thr=score_thr)
    onnx_dets = OnnxPredictor(onnx320, num_threads=2).predict([str(p) for p in photo_paths], score_thr=score_thr)
    assert len(torch_dets) == len(onnx_dets) == len(photo_paths)
    assert sum(len(d) for d in torch_dets) > 10, "the test model should detect something"
    for a, b in zip(torch_dets, onnx_dets):
        assert a.image_hw == b.image_hw and a.source == b.source
        assert_same_detections(a, b)
        assert a.names == [cfg320.data.class_names[int(i)] for i in a.labels]


def test_onnx_predictor_reads_everything_from_metadata(cfg320, onnx320) -> None:
    predictor = OnnxPredictor(onnx320)
    assert predictor.class_names == list(cfg320.data.class_names)
    assert predictor.input_size == (320, 320) and predictor.strides == [8, 16, 32] and predictor.reg_max == 7
    assert predictor.mean == list(cfg320.data.mean) and predictor.std == list(cfg320.data.std)
    assert predictor.keep_ratio is True and predictor.center_offset == 0.5
    assert predictor.params.score_thr == cfg320.model.postprocess.score_thr
    assert predictor.params.nms_iou == 0.6 and predictor.params.max_detections == 100


def test_predict_batch_matches_predict(cfg320, onnx320, photo_paths) -> None:
    """The evaluation hook's entry point gives what `predict` gives on the same images."""
    predictor = OnnxPredictor.from_config(onnx320, cfg320.model)
    images = read_images(photo_paths[:3])
    from nanodet_ghost.inference.common import preprocess_batch

    batch, metas = preprocess_batch(images, (320, 320), True, cfg320.data.mean, cfg320.data.std)
    by_batch = predictor.predict_batch(batch, metas)
    by_image = predictor.predict(images)
    assert len(by_batch) == len(by_image) == len(images) == 3
    assert sum(len(d) for d in by_image) > 0, "the test model should detect something"
    for a, b in zip(by_batch, by_image):
        np.testing.assert_array_equal(a["boxes"], b.boxes)
        np.testing.assert_array_equal(a["scores"], b.scores)
        np.testing.assert_array_equal(a["labels"], b.labels)


def test_not_an_export_is_refused(tmp_path) -> None:
    from nanodet_ghost.inference.onnx_predictor import OnnxModelError

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(OnnxModelError, match="bad.onnx"):
        OnnxPredictor(bad)
    with pytest.raises(FileNotFoundError):
        OnnxPredictor(tmp_path / "missing.onnx")
