"""Flip TTA: a view's dense output is mapped back onto the right points and sides, and averaged."""
from __future__ import annotations

from typing import Dict, Tuple

import pytest
import torch
from torch import Tensor, nn

from nanodet_ghost.model.head.decode import distribution_to_distance, grid_points
from nanodet_ghost.model.head.flip_tta import FlipTTA, check_flip_views
from nanodet_ghost.model.head.postprocess import PostProcessor

NUM_CLASSES, REG_MAX, STRIDES = 3, 7, (8, 16, 32)
INPUT_HW = (64, 96)  # (H, W), multiples of 32


def mirror_raw(raw: Tensor, input_hw: Tuple[int, int], flip_w: bool, flip_h: bool) -> Tensor:
    """What a perfectly equivariant detector outputs on the flipped image, built point by point
    from the grid's coordinates (not by reshaping, as FlipTTA does)."""
    points, strides = grid_points(input_hw, STRIDES)
    height, width = input_hw
    out = torch.empty_like(raw)
    lookup: Dict[Tuple[float, float, float], int] = {
        (float(x), float(y), float(s)): i for i, ((x, y), s) in enumerate(zip(points.tolist(), strides.tolist()))}
    for i, ((x, y), s) in enumerate(zip(points.tolist(), strides.tolist())):
        j = lookup[(width - x if flip_w else x, height - y if flip_h else y, s)]
        cls, reg = raw[:, i, :NUM_CLASSES], raw[:, i, NUM_CLASSES:].reshape(-1, 4, REG_MAX + 1)
        left, top, right, bottom = reg.unbind(1)
        if flip_w:
            left, right = right, left
        if flip_h:
            top, bottom = bottom, top
        out[:, j] = torch.cat((cls, left, top, right, bottom), dim=1)
    return out


class ScriptedDetector(nn.Module):
    """Returns a fixed output per view, recognising the view by where the marker pixel went."""

    def __init__(self, outputs: Dict[Tuple[bool, bool], Tensor]) -> None:
        super().__init__()
        self.outputs = outputs
        self.postprocess = PostProcessor(NUM_CLASSES, STRIDES, REG_MAX)
        self.num_classes = NUM_CLASSES

    def forward(self, images: Tensor) -> Tensor:
        rows = []
        for image in images:
            marker = image[0].nonzero()[0].tolist()  # the one non-zero pixel: (row, col)
            key = (marker[1] != 0, marker[0] != 0)  # (flipped left-right, flipped up-down)
            rows.append(self.outputs[key][0])
        return torch.stack(rows)


def marked_image() -> Tensor:
    image = torch.zeros(1, 3, *INPUT_HW)
    image[0, 0, 0, 0] = 1.0
    return image


def n_points() -> int:
    return grid_points(INPUT_HW, STRIDES)[0].shape[0]


@pytest.mark.parametrize("views", [("h",), ("v",), ("h", "v", "hv")])
def test_equivariant_views_give_back_the_single_view_boxes(views) -> None:
    torch.manual_seed(0)
    raw = torch.randn(1, n_points(), NUM_CLASSES + 4 * (REG_MAX + 1)) * 2
    outputs = {(fw, fh): mirror_raw(raw, INPUT_HW, fw, fh) for fw in (False, True) for fh in (False, True)}
    tta = FlipTTA(ScriptedDetector(outputs), views)
    averaged = tta(marked_image())
    post = tta.detector.postprocess
    scores, boxes = post.decode(raw, INPUT_HW)
    tta_scores, tta_boxes = post.decode(averaged, INPUT_HW)
    torch.testing.assert_close(tta_scores, scores, atol=1e-5, rtol=0)
    torch.testing.assert_close(tta_boxes, boxes, atol=1e-4, rtol=0)


def test_views_are_averaged_per_point() -> None:
    torch.manual_seed(1)
    shape = (1, n_points(), NUM_CLASSES + 4 * (REG_MAX + 1))
    plain, other = torch.randn(shape), torch.randn(shape)
    outputs = {(False, False): plain, (True, False): mirror_raw(other, INPUT_HW, True, False)}
    tta = FlipTTA(ScriptedDetector(outputs), ("h",))
    post = tta.detector.postprocess
    averaged = tta(marked_image())
    scores, _ = post.decode(averaged, INPUT_HW)
    torch.testing.assert_close(scores, (post.decode(plain, INPUT_HW)[0] + post.decode(other, INPUT_HW)[0]) / 2,
                               atol=1e-5, rtol=0)
    # the expected distance is linear in the probabilities, so every side is the mean of the views'
    def distances(raw: Tensor) -> Tensor:
        return distribution_to_distance(raw[..., NUM_CLASSES:], REG_MAX)

    torch.testing.assert_close(distances(averaged), (distances(plain) + distances(other)) / 2, atol=1e-4, rtol=0)


def test_real_detector_keeps_the_raw_layout() -> None:
    from nanodet_ghost.config import load_config
    from nanodet_ghost.model import build_model
    from nanodet_ghost.paths import CONFIG_DIR

    torch.manual_seed(0)
    model = build_model(load_config(CONFIG_DIR / "bccd_ghost050_d50_pan.yml").model).eval()
    images = torch.randn(2, 3, *INPUT_HW)
    with torch.no_grad():
        raw = model(images)
        averaged = FlipTTA(model, ("h", "v", "hv"))(images)
    assert averaged.shape == raw.shape and torch.isfinite(averaged).all()
    assert not torch.allclose(averaged, raw)  # the flips are real views, not copies


def test_refuses_what_it_cannot_map_exactly() -> None:
    detector = ScriptedDetector({})
    with pytest.raises(ValueError, match=r"unknown flip view\(s\) \['x'\]"):
        FlipTTA(detector, ("x",))
    with pytest.raises(ValueError, match="96x60 .* not a multiple of \\[8, 16, 32\\]"):
        FlipTTA(detector, ("h",)).check_input((60, 96))
    detector.postprocess.center_offset = 0.0
    with pytest.raises(ValueError, match="center_offset 0.5.*offset 0.0"):
        FlipTTA(detector, ("h",))
    assert check_flip_views(("hv", "none", "h", "hv")) == ("none", "hv", "h")
