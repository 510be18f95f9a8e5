"""collate, DetectionDataset (bad-image substitution), build_dataset / build_dataloader, seeds."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List

import cv2
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import Dataset

from nanodet_ghost.data import synthetic
from nanodet_ghost.data.collate import collate
from nanodet_ghost.data.config import DataConfig
from nanodet_ghost.data.image_io import ImageReadError
from nanodet_ghost.data.loader import DetectionDataset, build_dataloader, build_dataset
from nanodet_ghost.data.pipeline import TrainPipeline, ValPipeline


class FakeSource:
    """Minimal raw-record source; images listed in `bad` raise ImageReadError."""

    name = "fake"
    class_names = ["a", "b"]
    category_ids = [1, 2]

    def __init__(self, n: int = 6, bad: tuple = ()) -> None:
        self.n, self.bad = n, set(bad)

    def __len__(self) -> int:
        return self.n

    def load_image(self, i: int) -> np.ndarray:
        if i in self.bad:
            raise ImageReadError(f"/data/img{i}.jpg", "truncated JPEG")
        return np.full((60 + i, 80, 3), 10 * i, np.uint8)

    def get_annotation(self, i: int) -> Dict[str, Any]:
        return dict(image_id=i, file_name=f"img{i}.jpg", height=60 + i, width=80,
                    boxes=np.array([[5, 5, 40, 30]], np.float32), labels=np.array([i % 2]),
                    ignore=np.zeros((0, 4), np.float32))


def fake_sample(h: int, w: int, n: int) -> Dict[str, Any]:
    return dict(img=np.ones((3, h, w), np.float32), gt_boxes=np.ones((n, 4), np.float32),
                gt_labels=np.arange(n), gt_ignore=np.zeros((0, 4), np.float32),
                meta=dict(image_id=n, input_hw=(h, w)))


def test_collate_pads_to_multiple_of_32_and_keeps_lists() -> None:
    batch = collate([fake_sample(320, 320, 2), fake_sample(250, 330, 0)])
    images = batch["images"]
    assert images.shape == (2, 3, 320, 352) and images.dtype == torch.float32
    assert images[1, :, :250, :330].eq(1).all() and images[1, :, 250:].eq(0).all()
    assert images[1, :, :, 330:].eq(0).all() and images[0, :, :, 320:].eq(0).all()
    t0, t1 = batch["targets"]
    assert t0["boxes"].shape == (2, 4) and t0["labels"].dtype == torch.long
    assert t1["boxes"].shape == (0, 4) and t1["labels"].shape == (0,)
    assert t1["ignore"].shape == (0, 4)
    assert [m["image_id"] for m in batch["metas"]] == [2, 0]


def test_bad_image_is_substituted_logged_once_and_counted(caplog) -> None:
    ds = DetectionDataset(FakeSource(bad={1}), ValPipeline((64, 64)), seed=0)
    with caplog.at_level(logging.WARNING, logger="nanodet_ghost.data.loader"):
        first, second = ds[1], ds[1]
    assert first["meta"]["image_id"] != 1 and second["meta"]["image_id"] != 1
    assert ds.num_read_errors == 2 and ds.bad_files == {"/data/img1.jpg"}
    warnings = [r for r in caplog.records if "img1.jpg" in r.getMessage()]
    assert len(warnings) == 1


def test_bad_image_raises_when_not_substituting_or_all_bad() -> None:
    strict = DetectionDataset(FakeSource(bad={0}), ValPipeline((64, 64)), unreadable="raise")
    with pytest.raises(ImageReadError, match="img0.jpg"):
        strict[0]
    all_bad = DetectionDataset(FakeSource(n=3, bad={0, 1, 2}), ValPipeline((64, 64)),
                               max_consecutive_failures=5)
    with pytest.raises(ImageReadError, match="in a row"):
        all_bad[0]
    assert all_bad.num_read_errors == 5


def test_eval_dataset_marks_unreadable_images_and_collate_drops_them() -> None:
    ds = DetectionDataset(FakeSource(n=4, bad={1, 2}), ValPipeline((64, 64)), unreadable="mark")
    samples = [ds[i] for i in range(4)]
    assert samples[1] == dict(unreadable="truncated JPEG", meta=dict(image_id=1,
                                                                     file_name="img1.jpg"))
    assert ds.num_read_errors == 2 and ds.bad_files == {"/data/img1.jpg", "/data/img2.jpg"}
    batch = collate(samples[:3])
    assert batch["images"].shape == (1, 3, 64, 64)
    assert [m["image_id"] for m in batch["metas"]] == [0] and len(batch["targets"]) == 1
    assert batch["dropped"] == [dict(image_id=1, file_name="img1.jpg", problem="truncated JPEG"),
                                dict(image_id=2, file_name="img2.jpg", problem="truncated JPEG")]
    assert collate(samples[3:])["dropped"] == []


def test_batch_of_only_unreadable_images_is_empty() -> None:
    ds = DetectionDataset(FakeSource(n=4, bad={1, 2}), ValPipeline((64, 64)), unreadable="mark")
    batches = list(build_dataloader(ds, batch_size=2, num_workers=0, shuffle=False))
    sizes = [b["images"].shape[0] for b in batches]
    assert sizes == [1, 1]  # [0, bad 1], [bad 2, 3]
    empty = collate([ds[1], ds[2]])
    assert empty["images"].shape == (0, 3, 32, 32) and empty["metas"] == [] == empty["targets"]
    assert [d["image_id"] for d in empty["dropped"]] == [1, 2]


def test_unknown_unreadable_policy() -> None:
    with pytest.raises(ValueError, match="unreadable must be one of"):
        DetectionDataset(FakeSource(), ValPipeline((64, 64)), unreadable="skip")


def test_val_split_without_boxes_warns(tmp_path: Path, caplog) -> None:
    (tmp_path / "img").mkdir()
    cv2.imwrite(str(tmp_path / "img" / "a.jpg"), np.zeros((20, 30, 3), np.uint8))
    ann = tmp_path / "val.json"
    ann.write_text(json.dumps(dict(images=[dict(id=1, file_name="a.jpg", width=30, height=20)],
                                   annotations=[], categories=[dict(id=1, name="a")])))
    cfg = OmegaConf.structured(DataConfig)
    cfg.class_names = ["a"]
    for split in ("train", "val"):
        cfg[split].root, cfg[split].ann_file = str(tmp_path / "img"), str(ann)
        cfg[split].name = split
    with caplog.at_level(logging.WARNING, logger="nanodet_ghost.data.loader"):
        build_dataset(cfg, "train")
        assert not caplog.records  # background-only training data is allowed
        build_dataset(cfg, "val")
    assert [r.getMessage() for r in caplog.records] == [
        "val: the val split has 1 images but no ground-truth boxes, so its mAP will be 0; "
        "check data.val (class_names, label files, keep_background)"]


class RandomDraws(Dataset):
    """Returns (worker id, a draw from the dataset generator, a draw from np.random)."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> Dict[str, Any]:
        info = torch.utils.data.get_worker_info()
        return dict(img=np.zeros((3, 32, 32), np.float32), gt_boxes=np.zeros((0, 4)),
                    gt_labels=np.zeros(0), gt_ignore=np.zeros((0, 4)),
                    meta=dict(worker=info.id if info else -1, draw=float(self.rng.random()),
                              np_draw=float(np.random.random())))


def _draws(seed: int) -> List[tuple]:
    loader = build_dataloader(RandomDraws(), batch_size=1, num_workers=2, shuffle=False,
                              seed=seed)
    return [(b["metas"][0]["worker"], b["metas"][0]["draw"], b["metas"][0]["np_draw"])
            for b in loader]


def test_worker_seeds_differ_and_are_reproducible() -> None:
    draws = _draws(seed=5)
    by_worker = {w: [(d, n) for ww, d, n in draws if ww == w] for w in (0, 1)}
    assert by_worker[0] and by_worker[1]
    assert by_worker[0][0][0] != by_worker[1][0][0]  # dataset generators differ
    assert by_worker[0][0][1] != by_worker[1][0][1]  # numpy global seeds differ
    assert _draws(seed=5) == draws
    assert _draws(seed=6) != draws


def test_build_dataset_synthetic_and_dataloader(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(synthetic.SPLITS, "train", (6, 11))
    monkeypatch.setitem(synthetic.SPLITS, "val", (4, 12))
    cfg = OmegaConf.structured(DataConfig)
    for split in ("train", "val"):  # data.<split>.split defaults to the section's name
        cfg[split].format, cfg[split].root = "synthetic", str(tmp_path)
    train, val = build_dataset(cfg, "train"), build_dataset(cfg, "val")
    assert isinstance(train.pipeline, TrainPipeline) and isinstance(val.pipeline, ValPipeline)
    assert len(train) == 6 and len(val) == 4
    assert train.class_names == list(synthetic.SYNTHETIC_CLASSES)
    assert train.unreadable == "substitute" and val.unreadable == "mark"
    batch = next(iter(build_dataloader(train, 3, 0, True, seed=0)))
    assert batch["images"].shape == (3, 3, 320, 320) and len(batch["targets"]) == 3
    with pytest.raises(ValueError, match="split"):
        build_dataset(cfg, "bogus")


def test_build_dataset_coco128_with_workers(coco128_root: Path) -> None:
    cfg = OmegaConf.structured(DataConfig)
    cfg.train.root = str(coco128_root / "train2017")
    cfg.train.ann_file = str(coco128_root / "annotations" / "instances_train2017.json")
    ds = build_dataset(cfg, "train")
    assert len(ds) == 128 and len(ds.class_names) == 80
    loader = build_dataloader(ds, batch_size=4, num_workers=2, shuffle=True, seed=0)
    batch = next(iter(loader))
    assert batch["images"].shape == (4, 3, 320, 320)
    assert all(t["boxes"].shape[1] == 4 for t in batch["targets"])


def test_browse_dataset_tool_writes_pngs(tmp_path: Path, monkeypatch, capsys) -> None:
    import importlib.util

    from nanodet_ghost.paths import REPO_ROOT

    spec = importlib.util.spec_from_file_location("browse_dataset",
                                                  REPO_ROOT / "tools" / "browse_dataset.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    monkeypatch.setitem(synthetic.SPLITS, "train", (5, 13))
    config = tmp_path / "synthetic.yml"
    config.write_text(f"data:\n  train: {{format: synthetic, root: '{tmp_path}'}}\n"
                      "  augment: {mosaic: 0.5, rotation: 10}\n")
    assert tool.main([str(config), "--n", "3", "--out", str(tmp_path / "out")]) == 0
    pngs = sorted((tmp_path / "out").glob("train_*.png"))
    assert len(pngs) == 3 and "wrote 3 train samples" in capsys.readouterr().out
