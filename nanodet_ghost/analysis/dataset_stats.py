"""What a dataset holds and whether the model can learn its boxes (`tools/dataset_report.py`).

- `split_stats`: images, boxes per class, images without boxes, and the loader's own summary line
  (the same text the loaders log: what was skipped or repaired).
- `positive_coverage`: each GT box resized as validation resizes it (letterbox or stretch to
  `data.input_size`, no augmentation), then assigned with the training loss's own anchors and
  ATSS assigner (`GFLLoss.anchors`, `GFLLoss.assigner`) on the point grid of the padded input.
  A box that gets no positive anchor is never learned; the share of boxes with at least one is
  the number to watch when boxes are small for the input size.
- `report_table` and `report_figure` present them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from matplotlib.figure import Figure

from nanodet_ghost.analysis.figures import DPI, class_colors
from nanodet_ghost.data.collate import SIZE_DIVISOR
from nanodet_ghost.data.transforms import keep_boxes, resize_matrix, warp_boxes
from nanodet_ghost.model.head.decode import featmap_sizes, grid_points

SIZE_BINS = (0, 4, 8, 16, 32, 64, 128, 256, 512, 1e9)  # sqrt(w * h) at the input, pixels
REPORT_FIGSIZE = (16.0, 5.0)  # inches; the png is REPORT_FIGSIZE * DPI pixels


@dataclass
class SplitStats:
    """Counts of one split. `boxes_per_class[k]` counts label k; `summary` is the source's line."""

    split: str
    num_images: int
    num_boxes: int
    num_ignore: int
    boxes_per_class: np.ndarray
    images_without_boxes: int
    summary: str


@dataclass
class Coverage:
    """Every GT box of a split at the network input, and its positives.

    Attributes:
        input_hw: (H, W) of the padded input the point grid is built on.
        widths, heights: [G] box size in input pixels.
        labels: [G] class.
        positives: [G] anchors the assigner gives each box.
    """

    input_hw: Tuple[int, int]
    widths: np.ndarray
    heights: np.ndarray
    labels: np.ndarray
    positives: np.ndarray

    @property
    def share_covered(self) -> float:
        """Share of boxes with at least one positive (NaN without boxes)."""
        return float(np.mean(self.positives > 0)) if len(self.positives) else math.nan

    def by_size(self) -> List[Tuple[float, float, int, int]]:
        """Per `SIZE_BINS` bin of sqrt(w * h): (low, high, boxes, boxes with a positive)."""
        size = np.sqrt(self.widths * self.heights)
        rows = []
        for low, high in zip(SIZE_BINS[:-1], SIZE_BINS[1:]):
            inside = (size >= low) & (size < high)
            rows.append((low, high, int(inside.sum()), int((self.positives[inside] > 0).sum())))
        return rows


def split_stats(split: str, source: Any) -> SplitStats:
    """Counts of a dataset source (`get_annotation`, `class_names`, `summary()`)."""
    per_class = np.zeros(len(source.class_names), np.int64)
    without, boxes, ignore = 0, 0, 0
    for i in range(len(source)):
        ann = source.get_annotation(i)
        labels = np.asarray(ann["labels"], np.int64)
        per_class += np.bincount(labels, minlength=len(per_class))[:len(per_class)]
        boxes += len(labels)
        ignore += len(ann["ignore"])
        without += int(len(labels) == 0)
    return SplitStats(split, len(source), boxes, ignore, per_class, without, source.summary())


def padded_input_hw(input_size: Sequence[int]) -> Tuple[int, int]:
    """(H, W) of a collated batch for `data.input_size` (W, H): padded to `SIZE_DIVISOR`."""
    w, h = int(input_size[0]), int(input_size[1])
    return (-(-h // SIZE_DIVISOR) * SIZE_DIVISOR, -(-w // SIZE_DIVISOR) * SIZE_DIVISOR)


def boxes_at_input(ann: Dict[str, Any], input_size: Sequence[int], keep_ratio: bool
                   ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes [N, 4], labels [N], ignore [M, 4]) of one annotation mapped as `ValPipeline` maps
    them (xyxy input pixels; boxes left empty by the resize are dropped)."""
    w, h = int(input_size[0]), int(input_size[1])
    m = resize_matrix((ann["width"], ann["height"]), (w, h), keep_ratio)
    boxes = warp_boxes(np.asarray(ann["boxes"], np.float32).reshape(-1, 4), m, w, h)
    keep = keep_boxes(boxes, 0.0)
    ignore = warp_boxes(np.asarray(ann["ignore"], np.float32).reshape(-1, 4), m, w, h)
    return boxes[keep], np.asarray(ann["labels"], np.int64).reshape(-1)[keep], ignore[keep_boxes(ignore, 0.0)]


def positive_coverage(source: Any, loss_fn: Any, input_size: Sequence[int], keep_ratio: bool) -> Coverage:
    """Positives per GT box with the training loss's anchors and assigner (see module doc).

    Args:
        source: dataset source. loss_fn: a `GFLLoss` (`build_model(cfg.model).loss_fn`).
        input_size: `data.input_size` (W, H); keep_ratio: `data.keep_ratio`.
    """
    input_hw = padded_input_hw(input_size)
    points, point_strides = grid_points(input_hw, loss_fn.strides)
    anchors = loss_fn.anchors(points, point_strides)
    level_counts = [h * w for h, w in featmap_sizes(input_hw, loss_fn.strides)]
    widths, heights, labels, positives = [], [], [], []
    for i in range(len(source)):
        boxes, box_labels, ignore = boxes_at_input(source.get_annotation(i), input_size, keep_ratio)
        result = loss_fn.assigner.assign(anchors, level_counts, torch.from_numpy(boxes),
                                         torch.from_numpy(box_labels), torch.from_numpy(ignore))
        assigned = result.gt_indices[result.positive]
        positives.append(torch.bincount(assigned, minlength=len(boxes)).numpy())
        widths.append(boxes[:, 2] - boxes[:, 0])
        heights.append(boxes[:, 3] - boxes[:, 1])
        labels.append(box_labels)

    def cat(parts: List[np.ndarray], dtype: Any) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    return Coverage(input_hw, cat(widths, np.float64), cat(heights, np.float64),
                    cat(labels, np.int64), cat(positives, np.int64))


def report_table(stats: Sequence[SplitStats], class_names: Sequence[str],
                 coverage: Optional[Coverage] = None, coverage_split: str = "",
                 assigner_text: str = "") -> str:
    """The text report: counts per split, positive coverage by box size, the loaders' lines."""
    names = [str(n) for n in class_names]
    head = ["split", "images", "boxes", "no-box images", "ignore"] + names
    rows = [[s.split, s.num_images, s.num_boxes, s.images_without_boxes, s.num_ignore]
            + [int(v) for v in s.boxes_per_class] for s in stats]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    lines = ["  ".join(f"{str(x):>{w}}" if i else f"{str(x):<{w}}" for i, (x, w) in enumerate(zip(r, widths)))
             for r in [head] + rows]
    if coverage is not None:
        h, w = coverage.input_hw
        covered = int((coverage.positives > 0).sum())
        lines += ["", f"positive coverage of the {coverage_split} boxes at input {w}x{h} ({assigner_text}): "
                  f"{covered} of {len(coverage.positives)} boxes get at least one positive "
                  f"({100 * coverage.share_covered:.1f} %)",
                  "  box size sqrt(w*h) at the input    boxes   with a positive"]
        for low, high, n, ok in coverage.by_size():
            if n:
                span = f">= {low:g} px" if high > 1e8 else f"{low:g}-{high:g} px"
                lines.append(f"  {span:<33}{n:>6}   {ok:>6} ({100 * ok / n:.1f} %)")
    lines += ["", "what the loaders found:"] + [f"  {s.summary}" for s in stats]
    return "\n".join(lines)


def report_figure(stats: Sequence[SplitStats], class_names: Sequence[str], coverage: Coverage,
                  strides: Sequence[int], anchor_scale: float, coverage_split: str) -> Figure:
    """Boxes per class and split; box width / height histograms at the input against the strides
    and anchor sizes; the share of boxes with a positive by box size."""
    fig = Figure(figsize=REPORT_FIGSIZE, dpi=DPI, layout="constrained")
    ax_cls, ax_hist, ax_cov = fig.subplots(1, 3)
    x = np.arange(len(class_names))
    width = 0.8 / max(len(stats), 1)
    for i, s in enumerate(stats):
        ax_cls.bar(x + (i - (len(stats) - 1) / 2) * width, s.boxes_per_class, width, label=s.split)
    ax_cls.set_xticks(x, list(class_names), rotation=45 if len(class_names) > 6 else 0, ha="right"
                      if len(class_names) > 6 else "center", fontsize=8)
    ax_cls.set_title("boxes per class")
    ax_cls.legend(fontsize=8)

    sizes = np.concatenate([coverage.widths, coverage.heights])
    top = max(float(sizes.max()) if sizes.size else 1.0, max(strides) * anchor_scale) * 1.5
    low = max(1.0, min(float(sizes.min()) if sizes.size else 1.0, min(strides)) / 1.5)
    bins = np.geomspace(low, top, 40)
    ax_hist.hist(np.clip(coverage.widths, 1.0, None), bins=bins, alpha=0.6, label="width")
    ax_hist.hist(np.clip(coverage.heights, 1.0, None), bins=bins, alpha=0.6, label="height")
    ax_hist.set_xscale("log")
    colors = class_colors(len(strides))
    for s, c in zip(strides, colors):
        ax_hist.axvline(s, color=c, linestyle="-", linewidth=1.5, label=f"stride {s}")
        ax_hist.axvline(s * anchor_scale, color=c, linestyle=":", linewidth=1.5,
                        label=f"anchor {s * anchor_scale:g}")
    ax_hist.set_xlabel("pixels at the network input")
    ax_hist.set_title(f"{coverage_split} box sizes at input {coverage.input_hw[1]}x{coverage.input_hw[0]}")
    ax_hist.legend(fontsize=7)

    rows = [r for r in coverage.by_size() if r[2]]
    labels = [f">={r[0]:g}" if r[1] > 1e8 else f"{r[0]:g}-{r[1]:g}" for r in rows]
    shares = [r[3] / r[2] for r in rows]
    bars = ax_cov.bar(np.arange(len(rows)), shares, color="#1f3b99")
    for bar, r in zip(bars, rows):
        ax_cov.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.01, f"{r[3]}/{r[2]}",
                    ha="center", fontsize=7)
    ax_cov.set_xticks(np.arange(len(rows)), labels, fontsize=8)
    ax_cov.set_ylim(0, 1.1)
    ax_cov.set_xlabel("box size sqrt(w*h) at the input, pixels")
    ax_cov.set_ylabel("share with >= 1 positive")
    ax_cov.set_title(f"boxes the assigner gives a positive: {100 * coverage.share_covered:.1f} %")
    return fig
