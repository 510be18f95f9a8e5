"""The network, loss and decoding learn real data: overfit 4 coco128 images from random init."""
import cv2
import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from nanodet_ghost.config import load_config
from nanodet_ghost.model import build_model
from nanodet_ghost.paths import CONFIG_DIR

pycocotools = pytest.importorskip("pycocotools.coco")

SIZE = 320
MEAN = np.array([103.53, 116.28, 123.675], np.float32)
STD = np.array([57.375, 57.12, 58.395], np.float32)


def letterbox(img: np.ndarray):
    h, w = img.shape[:2]
    scale = min(SIZE / w, SIZE / h)
    warp = np.array([[scale, 0, (SIZE - w * scale) / 2], [0, scale, (SIZE - h * scale) / 2], [0, 0, 1]])
    out = cv2.warpAffine(img, warp[:2], (SIZE, SIZE))
    return torch.from_numpy(((out - MEAN) / STD).transpose(2, 0, 1).copy()), warp


@pytest.mark.slow
def test_overfits_four_real_images(coco128_root):
    coco = pycocotools.COCO(str(coco128_root / "annotations" / "instances_train2017.json"))
    cat_ids = sorted(coco.cats)  # all 80 COCO categories -> contiguous labels
    images, targets, metas, originals = [], [], [], []
    for image_id in sorted(coco.getImgIds())[:4]:
        info = coco.imgs[image_id]
        img = cv2.imread(str(coco128_root / "train2017" / info["file_name"]))
        tensor, warp = letterbox(img)
        anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id)) if not a["iscrowd"]]
        xyxy = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], np.float32)
        labels = torch.tensor([cat_ids.index(a["category_id"]) for a in anns])
        in_input = xyxy * warp[0, 0]
        in_input[:, [0, 2]] += warp[0, 2]
        in_input[:, [1, 3]] += warp[1, 2]
        images.append(tensor)
        targets.append({"boxes": torch.from_numpy(in_input), "labels": labels})
        metas.append({"warp_matrix": warp, "orig_hw": img.shape[:2]})
        originals.append((torch.from_numpy(xyxy), labels))
    batch = torch.stack(images)

    torch.manual_seed(0)
    cfg = load_config(CONFIG_DIR / "nanodet_ghost_320.yml")
    model = build_model(cfg.model).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    first = None
    for _ in range(80):
        losses = model.loss(model(batch), targets, (SIZE, SIZE))
        optimizer.zero_grad()
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 35.0)
        optimizer.step()
        first = first if first is not None else losses["loss"].item()
    last = losses["loss"].item()
    assert last <= 0.4 * first, f"total loss fell only from {first:.3f} to {last:.3f}"

    model.eval()
    with torch.no_grad():
        predictions = model.predict(model(batch), metas, (SIZE, SIZE))
    hits = 0
    for pred, (gt_boxes, gt_labels) in zip(predictions, originals):
        if len(pred["boxes"]) == 0:
            continue
        same_class = gt_labels == pred["labels"][0]
        if same_class.any() and box_iou(pred["boxes"][:1], gt_boxes[same_class]).max() >= 0.5:
            hits += 1
    assert hits >= 3, f"top detection matched a GT of its class in only {hits} of 4 images"
