"""Flip test-time augmentation, averaged per point before NMS.

The detector runs on the image and on its mirror images (one batch). Each view's dense output is
mapped back onto the original grid: the cells are mirrored, and a horizontal flip swaps the left and
right distance distributions (a vertical flip, top and bottom). Then per point, the class
probabilities and each side's distance distribution are averaged over the views. The result is
returned in the head's raw layout (logits of the averaged probabilities), so the unchanged
`PostProcessor` decodes it and runs one NMS.

Averaging the distributions, not picking the best box of each view after NMS, is what makes the box
edges more precise: every point's edges become the mean of its views' edges.

The mapping is exact only when a point and its mirror image are both points of the grid: the points
sit at cell centres (`center_offset` 0.5), and the input's height and width are multiples of every
stride. Other cases raise `ValueError` instead of averaging misaligned points.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nanodet_ghost.model.head.decode import featmap_sizes

# view name -> (flip width, flip height)
FLIP_VIEWS = {"none": (False, False), "h": (True, False), "v": (False, True), "hv": (True, True)}
_EPS = 1e-6


def check_flip_views(views: Sequence[str]) -> Tuple[str, ...]:
    """The views as a tuple, with "none" first; unknown names raise `ValueError`."""
    unknown = [v for v in views if v not in FLIP_VIEWS]
    if unknown:
        raise ValueError(f"unknown flip view(s) {unknown}; choose from {sorted(FLIP_VIEWS)}")
    return ("none",) + tuple(dict.fromkeys(v for v in views if v != "none"))


def _flip_dims(flip_w: bool, flip_h: bool, w_dim: int, h_dim: int) -> list:
    return [d for d, flip in ((w_dim, flip_w), (h_dim, flip_h)) if flip]


class FlipTTA(nn.Module):
    """`forward(images: Tensor[B, 3, H, W]) -> Tensor[B, N, C + 4 * (reg_max + 1)]`, the detector's raw
    layout, averaged over the image and its flips.

    Args:
        detector: a `Detector` (anything with `forward(images) -> raw`, `num_classes` and a
            `postprocess` that has `strides`, `reg_max` and `center_offset`).
        views: flips besides the image itself: "h" (left-right), "v" (up-down), "hv" (both).
    """

    def __init__(self, detector: nn.Module, views: Sequence[str] = ("h",)) -> None:
        super().__init__()
        self.detector = detector
        self.views = check_flip_views(views)
        post = detector.postprocess
        if abs(float(post.center_offset) - 0.5) > 1e-9:
            raise ValueError(
                f"flip TTA needs points at cell centres (center_offset 0.5); this head puts them at "
                f"offset {post.center_offset}, where a mirrored point falls between two points"
            )
        self.strides = list(post.strides)
        self.reg_max = int(post.reg_max)
        self.num_classes = int(detector.num_classes)

    def check_input(self, input_hw: Tuple[int, int]) -> None:
        bad = [s for s in self.strides if input_hw[0] % s or input_hw[1] % s]
        if bad:
            raise ValueError(
                f"flip TTA needs an input whose height and width are multiples of every stride "
                f"{self.strides}; {input_hw[1]}x{input_hw[0]} (W x H) is not a multiple of {bad}"
            )

    def unflip(self, raw: Tensor, input_hw: Tuple[int, int], flip_w: bool, flip_h: bool) -> Tuple[Tensor, Tensor]:
        """Map one view's `raw [B, N, C + 4 * (R + 1)]` onto the original grid and sides: class logits
        `[B, N, C]` and distance logits `[B, N, 4, R + 1]` (sides l, t, r, b)."""
        levels = []
        start = 0
        for h, w in featmap_sizes(input_hw, self.strides):
            level = raw[:, start:start + h * w].reshape(raw.shape[0], h, w, -1)
            levels.append(level.flip(_flip_dims(flip_w, flip_h, w_dim=2, h_dim=1)).reshape(raw.shape[0], h * w, -1))
            start += h * w
        out = torch.cat(levels, dim=1)
        reg = out[..., self.num_classes:].reshape(*out.shape[:-1], 4, self.reg_max + 1)
        sides = [2 if flip_w else 0, 3 if flip_h else 1, 0 if flip_w else 2, 1 if flip_h else 3]
        return out[..., : self.num_classes], reg[..., sides, :]

    def forward(self, images: Tensor) -> Tensor:
        input_hw = (int(images.shape[-2]), int(images.shape[-1]))
        self.check_input(input_hw)
        batch = images.shape[0]
        flipped = [images.flip(_flip_dims(*FLIP_VIEWS[name], w_dim=-1, h_dim=-2)) for name in self.views]
        raw_all = self.detector(torch.cat(flipped)).float()
        cls_prob = 0.0
        reg_prob = 0.0
        for i, name in enumerate(self.views):
            cls, reg = self.unflip(raw_all[i * batch:(i + 1) * batch], input_hw, *FLIP_VIEWS[name])
            cls_prob = cls_prob + cls.sigmoid()
            reg_prob = reg_prob + F.softmax(reg, dim=-1)
        cls_prob = (cls_prob / len(self.views)).clamp(_EPS, 1 - _EPS)
        reg_prob = (reg_prob / len(self.views)).clamp_min(_EPS)
        # logit(p) and log(q): the post-processor's sigmoid and softmax give back p and q.
        reg_logits = reg_prob.log().reshape(*reg_prob.shape[:-2], -1)
        return torch.cat((torch.logit(cls_prob), reg_logits), dim=-1)

    def predict(self, raw: Tensor, metas, input_hw: Tuple[int, int], score_thr: float | None = None):
        return self.detector.predict(raw, metas, input_hw, score_thr=score_thr)
