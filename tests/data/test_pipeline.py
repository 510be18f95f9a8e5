"""Train / val pipelines: sample format, config mapping, multi-scale, determinism."""
from __future__ import annotations

import dataclasses

import numpy as np

from nanodet_ghost.data.config import AugmentConfig
from nanodet_ghost.data.pipeline import TrainPipeline, ValPipeline
from nanodet_ghost.data.transforms import warp_boxes


def make_record(w: int = 300, h: int = 200, n: int = 3):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
    xy = rng.uniform(0, [w - 60, h - 60], (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(10, 60, (n, 2))], 1).astype(np.float32)
    ann = dict(image_id=7, file_name="a.jpg", height=h, width=w, boxes=boxes,
               labels=np.arange(n, dtype=np.int64), ignore=np.array([[0, 0, 30, 30]], np.float32))
    return img, ann


def assert_sample_format(sample, input_hw):
    assert sample["img"].dtype == np.float32 and sample["img"].shape == (3, *input_hw)
    assert sample["gt_boxes"].dtype == np.float32 and sample["gt_boxes"].shape[1] == 4
    assert sample["gt_labels"].dtype == np.int64
    assert len(sample["gt_labels"]) == len(sample["gt_boxes"])
    assert sample["gt_ignore"].dtype == np.float32 and sample["gt_ignore"].shape[1] == 4
    meta = sample["meta"]
    assert set(meta) == {"image_id", "file_name", "orig_hw", "input_hw", "warp_matrix"}
    assert meta["input_hw"] == input_hw and meta["warp_matrix"].shape == (3, 3)
    assert meta["warp_matrix"].dtype == np.float32


def test_val_pipeline_sample() -> None:
    img, ann = make_record()
    sample = ValPipeline((320, 256))(img, ann)
    assert_sample_format(sample, (256, 320))
    assert sample["meta"]["orig_hw"] == (200, 300) and sample["meta"]["image_id"] == 7
    m = sample["meta"]["warp_matrix"].astype(np.float64)
    np.testing.assert_allclose(sample["gt_boxes"], warp_boxes(ann["boxes"], m, 320, 256),
                               atol=1e-4)
    np.testing.assert_allclose(sample["gt_ignore"], warp_boxes(ann["ignore"], m, 320, 256),
                               atol=1e-4)


def test_train_pipeline_takes_augment_config_fields() -> None:
    kwargs = dataclasses.asdict(AugmentConfig())
    pipeline = TrainPipeline((320, 320), True, **kwargs)
    img, ann = make_record()
    assert_sample_format(pipeline(img, ann, np.random.default_rng(0)), (320, 320))


def test_train_pipeline_is_deterministic_given_rng() -> None:
    pipeline = TrainPipeline((320, 320), rotation=10.0, mosaic=0.0)
    img, ann = make_record()
    a = pipeline(img, ann, np.random.default_rng(3))
    b = pipeline(img, ann, np.random.default_rng(3))
    c = pipeline(img, ann, np.random.default_rng(4))
    np.testing.assert_array_equal(a["img"], b["img"])
    np.testing.assert_array_equal(a["gt_boxes"], b["gt_boxes"])
    assert not np.array_equal(a["img"], c["img"])


def test_multi_scale_sizes_are_multiples_of_32_in_range() -> None:
    pipeline = TrainPipeline((320, 320), multi_scale=(0.6, 1.4))
    img, ann = make_record()
    rng = np.random.default_rng(0)
    sizes = {pipeline(img, ann, rng)["img"].shape[1:] for _ in range(40)}
    assert len(sizes) > 3
    for h, w in sizes:
        assert h == w and h % 32 == 0 and 192 <= h <= 448


def test_min_box_size_drops_small_boxes_and_empty_images_work() -> None:
    img, ann = make_record()
    ann["boxes"] = np.array([[10, 10, 11, 11], [50, 50, 150, 150]], np.float32)
    ann["labels"] = np.array([0, 1], np.int64)
    pipeline = TrainPipeline((320, 320), scale=(1.0, 1.0), translate=0.0, flip=0.0,
                             min_box_size=4.0)
    sample = pipeline(img, ann, np.random.default_rng(0))
    assert sample["gt_labels"].tolist() == [1]
    ann["boxes"], ann["labels"] = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    empty = pipeline(img, ann, np.random.default_rng(0))
    assert empty["gt_boxes"].shape == (0, 4) and empty["gt_labels"].shape == (0,)


def test_mosaic_probability_and_extra_records() -> None:
    never = TrainPipeline((320, 320), mosaic=0.0)
    always = TrainPipeline((320, 320), mosaic=1.0)
    rng = np.random.default_rng(0)
    assert never.num_extra_images(rng) == 0 and always.num_extra_images(rng) == 3
    img, ann = make_record()
    sample = always(img, ann, rng, extra=[make_record(200, 300, 2)] * 3)
    assert_sample_format(sample, (320, 320))
    assert ValPipeline((320, 320)).num_extra_images(rng) == 0


def _widest_box(pipeline: TrainPipeline, mosaic: bool, draws: int = 12) -> float:
    """Widest output box over `draws` samples of four 320x320 images with one 40-pixel box in the
    middle of each: clipping at the window only narrows a box, so the widest is an unclipped one."""
    def record():
        img, ann = make_record(320, 320, 1)
        ann["boxes"] = np.array([[140, 140, 180, 180]], np.float32)
        return img, ann

    rng = np.random.default_rng(0)
    widths = []
    for _ in range(draws):
        img, ann = record()
        boxes = pipeline(img, ann, rng, extra=[record() for _ in range(3)] if mosaic else ())["gt_boxes"]
        widths.extend((boxes[:, 2] - boxes[:, 0]).tolist())
    return max(widths)


def test_mosaic_scale_keeps_objects_at_single_image_size() -> None:
    fixed = dict(scale=(1.0, 1.0), translate=0.0, flip=0.0, saturation=(1.0, 1.0))
    assert abs(_widest_box(TrainPipeline((320, 320), **fixed), mosaic=False) - 40.0) < 0.5
    # By default a mosaic shows its 2x canvas at half size: objects half as wide.
    assert abs(_widest_box(TrainPipeline((320, 320), mosaic=1.0, **fixed), mosaic=True) - 20.0) < 0.5
    zoomed = TrainPipeline((320, 320), mosaic=1.0, mosaic_scale=(2.0, 2.0), **fixed)
    assert abs(_widest_box(zoomed, mosaic=True) - 40.0) < 0.5
    # mosaic_scale leaves single-image samples alone.
    assert abs(_widest_box(zoomed, mosaic=False) - 40.0) < 0.5


def test_train_input_size_applies_to_training_only() -> None:
    from omegaconf import OmegaConf

    from nanodet_ghost.data.config import DataConfig
    from nanodet_ghost.data.loader import build_pipeline

    data = OmegaConf.structured(DataConfig(input_size=[416, 320], train_input_size=[320, 256]))
    assert build_pipeline(data, train=True).input_size == (320, 256)
    assert build_pipeline(data, train=False).input_size == (416, 320)
    data.train_input_size = None
    assert build_pipeline(data, train=True).input_size == (416, 320)
