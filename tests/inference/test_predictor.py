"""`Predictor`: checkpoint loading (EMA preferred), input forms, batching, result fields."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from inference_helpers import CONFIG, assert_same_detections, read_images, save_lightning_checkpoint
from nanodet_ghost.data.image_io import ImageReadError
from nanodet_ghost.inference.common import Detections
from nanodet_ghost.inference.predictor import Predictor


@pytest.fixture(scope="module")
def predictor(cfg320, model320) -> Predictor:
    return Predictor.from_config(cfg320, model320, batch_size=4)


def test_from_checkpoint_prefers_ema(cfg320, model320, photo_paths, tmp_path) -> None:
    live = copy.deepcopy(model320)
    with torch.no_grad():
        for p in live.head.predictors:
            p.bias.add_(5.0)  # the live weights differ from the EMA ones
    ckpt = save_lightning_checkpoint(live, tmp_path / "last.ckpt", ema_model=model320)
    loaded = Predictor.from_checkpoint(CONFIG, ckpt, fuse=False)
    for k, v in model320.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k], v), k
    assert loaded.class_names == list(cfg320.data.class_names) and loaded.input_size == (320, 320)
    # A DictConfig works as well as a path; by default the model is fused (same detections).
    again = Predictor.from_checkpoint(cfg320, ckpt)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in again.model.modules())
    path = str(photo_paths[0])
    assert_same_detections(loaded.predict(path, score_thr=0.3), again.predict(path, score_thr=0.3),
                           box_atol=1e-3, score_atol=1e-5)


def test_input_forms_and_batching(predictor: Predictor, photo_paths) -> None:
    paths = [str(p) for p in photo_paths]
    images = read_images(photo_paths)
    single = predictor.predict(paths[0], score_thr=0.3)
    assert isinstance(single, Detections)
    assert single.source == paths[0] and single.image_hw == images[0].shape[:2]
    from_array = predictor.predict(images[0], score_thr=0.3)
    assert from_array.source is None
    np.testing.assert_array_equal(single.boxes, from_array.boxes)

    batched = predictor.predict(paths, score_thr=0.3)  # batches of 4 (6 images: 4 + 2)
    one_by_one = [predictor.predict(p, score_thr=0.3) for p in paths]
    assert isinstance(batched, list) and len(batched) == len(one_by_one) == len(images) == len(paths) == 6
    assert sum(len(d) for d in batched) > 10
    for a, b, img in zip(batched, one_by_one, images):
        assert_same_detections(a, b, box_atol=1e-3, score_atol=1e-5)
        h, w = img.shape[:2]
        assert a.boxes.dtype == np.float32 and a.scores.dtype == np.float32 and a.labels.dtype == np.int64
        assert (a.boxes[:, 0::2] >= 0).all() and (a.boxes[:, 0::2] <= w).all()
        assert (a.boxes[:, 1::2] >= 0).all() and (a.boxes[:, 1::2] <= h).all()
        assert (a.scores > 0.3).all() and len(a) <= 100


def test_score_threshold_default_and_override(predictor: Predictor, photo_paths) -> None:
    """The config's threshold (0.05) applies by default; `score_thr=0.5` gives exactly the default
    detections above 0.5: NMS and the top-k cut are greedy by score, so a higher threshold only
    removes the tail."""
    paths = [str(p) for p in photo_paths]
    default = predictor.predict(paths)
    strict = predictor.predict(paths, score_thr=0.5)
    assert len(default) == len(strict) == len(paths) > 0
    assert sum(int((d.scores <= 0.5).sum()) for d in default) > 0, "nothing below 0.5 to filter out"
    assert sum(len(d) for d in strict) > 0, "nothing above 0.5 to keep"
    for d, s in zip(default, strict):
        assert (d.scores > 0.05).all() and (s.scores > 0.5).all()
        above = d.scores > 0.5
        np.testing.assert_array_equal(s.boxes, d.boxes[above])
        np.testing.assert_array_equal(s.scores, d.scores[above])
        np.testing.assert_array_equal(s.labels, d.labels[above])


def test_grayscale_and_bad_inputs(predictor: Predictor, photo_paths, tmp_path) -> None:
    gray = read_images(photo_paths[:1])[0][:, :, 0]
    assert predictor.predict(gray).image_hw == gray.shape
    with pytest.raises(ValueError, match="uint8"):
        predictor.predict(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ImageReadError, match="missing.jpg"):
        predictor.predict(str(tmp_path / "missing.jpg"))
