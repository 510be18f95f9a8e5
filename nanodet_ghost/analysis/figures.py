"""matplotlib figures of a run and of an evaluation: arrays in, `Figure` out.

Figures are built with the object API (`matplotlib.figure.Figure`), never through pyplot, so no
global state or GUI backend is involved and this works headless. `save_figure` writes PNG at
`DPI`; the pixel size of each figure is `figure_size(name, num_classes)`. Class colours are the
drawing palette's (`make_palette`), so a class has the same colour in every picture.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from nanodet_ghost.analysis.coco_curves import ConfidenceCurves, PRCurves
from nanodet_ghost.analysis.confusion import normalize_rows
from nanodet_ghost.analysis.training_log import EpochSeries
from nanodet_ghost.inference.visualize import make_palette

DPI = 100
MAX_LEGEND_CLASSES = 20  # more per-class entries than this make an unreadable legend
MAX_ANNOTATED_CLASSES = 30  # confusion matrix cells get numbers up to this many classes
MEAN_COLOR = "#1f3b99"
_FIXED_INCHES: Dict[str, Tuple[float, float]] = {
    "results": (14.0, 7.0),
    "pr_curve": (9.0, 6.5),
    "confidence_curve": (9.0, 6.5),
    "confusion_matrix": (16.0, 7.5),
    "message": (8.0, 4.0),
}


def figure_size(name: str, num_classes: int = 0) -> Tuple[int, int]:
    """(width, height) in pixels of the figure `name` for `num_classes` classes: fixed, except the
    per-class bar charts, which grow with the class count."""
    if name in _FIXED_INCHES:
        w, h = _FIXED_INCHES[name]
    elif name == "per_class_ap":
        w, h = 9.0, max(4.0, 1.6 + 0.32 * num_classes)
    elif name == "ap_by_size":
        w, h = 10.0, max(4.5, 1.8 + 0.45 * (num_classes + 1))
    else:
        raise ValueError(f"unknown figure {name!r}")
    return int(round(w * DPI)), int(round(h * DPI))


def _figure(name: str, num_classes: int = 0) -> Figure:
    w, h = figure_size(name, num_classes)
    return Figure(figsize=(w / DPI, h / DPI), dpi=DPI, layout="constrained")


def class_colors(num_classes: int) -> List[Tuple[float, float, float]]:
    """RGB in 0..1 of the drawing palette (BGR 0..255)."""
    return [(r / 255.0, g / 255.0, b / 255.0) for b, g, r in make_palette(num_classes)]


def save_figure(fig: Figure, path: Union[str, Path]) -> Path:
    """Write `fig` as an image (format from the suffix) at `DPI`; creates the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def message_figure(title: str, message: str) -> Figure:
    """A figure that says why there is nothing to plot."""
    fig = _figure("message")
    ax = fig.subplots()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=12)
    return fig


# ---------------------------------------------------------------------------------- training
def _loss_names(log: EpochSeries) -> List[str]:
    train = [n for n in log.names("train/") if n.startswith("train/loss")]
    return train + [n for n in log.names("val/") if n == "val/loss"]


def results_figure(log: EpochSeries) -> Figure:
    """Each loss term, val mAP / AP50 and the learning rate against the (1-based) epoch."""
    panels: List[Tuple[str, List[str]]] = [(n, [n]) for n in _loss_names(log)]
    panels += [(n, [n]) for n in ("val/mAP", "val/AP50") if log.get(n) is not None]
    lr_names = log.names("lr-")
    if lr_names:
        panels.append(("learning rate", lr_names))
    if not panels:
        return message_figure("results", "the training log holds no metrics yet")
    fig = _figure("results")
    cols = math.ceil(len(panels) / 2) if len(panels) > 3 else len(panels)
    axes = np.atleast_1d(fig.subplots(math.ceil(len(panels) / cols), cols)).reshape(-1)
    for ax, (title, names) in zip(axes, panels):
        for name in names:
            epochs, values = log.series[name]
            ax.plot(epochs + 1, values, marker="o" if len(epochs) < 30 else None, markersize=3,
                    label=name.split("/", 1)[-1] if len(names) > 1 else None)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if len(names) > 1:
            ax.legend(fontsize=7)
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    return fig


# ---------------------------------------------------------------------------------- curves
def pr_curve_figure(curves: PRCurves, class_names: Sequence[str]) -> Figure:
    """Per-class precision-recall at IoU 0.5, the mean at 0.5 and the mean at 0.5:0.95."""
    fig = _figure("pr_curve")
    ax = fig.subplots()
    show_legend = len(class_names) <= MAX_LEGEND_CLASSES
    for k, (name, color) in enumerate(zip(class_names, class_colors(len(class_names)))):
        if np.isnan(curves.per_class[k]).all():
            continue
        ax.plot(curves.recall, curves.per_class[k], color=color, linewidth=1,
                label=f"{name} {curves.class_ap50[k]:.3f}" if show_legend else None)
    ax.plot(curves.recall, curves.mean50, color=MEAN_COLOR, linewidth=3,
            label=f"all classes, IoU 0.5: AP50 {curves.ap50:.3f}")
    ax.plot(curves.recall, curves.mean50_95, color=MEAN_COLOR, linewidth=2, linestyle="--",
            label=f"all classes, IoU 0.5:0.95: AP {curves.ap:.3f}")
    _unit_axes(ax, "recall", "precision")
    ax.set_title("precision-recall (COCO, 101-point interpolation, area under the curve = AP)")
    ax.legend(loc="lower left", fontsize=8)
    return fig


def confidence_figure(curves: ConfidenceCurves, class_names: Sequence[str],
                      which: str = "f1") -> Figure:
    """`which` ("f1", "precision" or "recall") against confidence at IoU 0.5, per class and the
    class mean; the threshold of the best mean F1 is marked."""
    values = {"f1": curves.f1, "precision": curves.precision, "recall": curves.recall}[which]
    fig = _figure("confidence_curve")
    ax = fig.subplots()
    show_legend = len(class_names) <= MAX_LEGEND_CLASSES
    for k, (name, color) in enumerate(zip(class_names, class_colors(len(class_names)))):
        if not np.isnan(values[k]).all():
            ax.plot(curves.confidence, values[k], color=color, linewidth=1,
                    label=name if show_legend else None)
    with np.errstate(invalid="ignore"):
        valid = ~np.isnan(values).all(axis=1)
        mean = values[valid].mean(axis=0) if valid.any() else np.full_like(curves.confidence, np.nan)
    best = curves.best_threshold
    if math.isfinite(best):
        best_value = float(np.interp(best, curves.confidence, mean))
        ax.axvline(best, color="grey", linestyle=":", linewidth=1)
        label = f"all classes: {best_value:.3f} at {best:.3f} (best mean F1 {curves.best_f1:.3f})"
    else:
        label = "all classes"
    ax.plot(curves.confidence, mean, color=MEAN_COLOR, linewidth=3, label=label)
    name = {"f1": "F1", "precision": "precision", "recall": "recall"}[which]
    _unit_axes(ax, "confidence", name)
    ax.set_title(f"{name} against the score threshold (COCO matching at IoU 0.5)")
    ax.legend(loc="lower left" if which != "precision" else "lower right", fontsize=8)
    return fig


def _unit_axes(ax, xlabel: str, ylabel: str) -> None:
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


# ---------------------------------------------------------------------------------- matrices
def confusion_matrix_figure(matrix: np.ndarray, class_names: Sequence[str], score_thr: float,
                            iou_thr: float = 0.5) -> Figure:
    """Counts (left) and row-normalised shares (right); rows GT, columns predictions."""
    labels = list(class_names) + ["background"]
    fig = _figure("confusion_matrix")
    axes = fig.subplots(1, 2)
    annotate = len(class_names) <= MAX_ANNOTATED_CLASSES
    for ax, data, title, fmt in ((axes[0], np.asarray(matrix), "counts", "{:.0f}"),
                                 (axes[1], normalize_rows(matrix), "share of each GT row", "{:.2f}")):
        image = ax.imshow(data, cmap="Blues", vmin=0)
        fig.colorbar(image, ax=ax, shrink=0.8)
        ticks = np.arange(len(labels))
        size = 8 if len(labels) <= 12 else 5
        ax.set_xticks(ticks, labels, rotation=45, ha="right", fontsize=size)
        ax.set_yticks(ticks, labels, fontsize=size)
        ax.set_xlabel("predicted")
        ax.set_ylabel("ground truth")
        ax.set_title(f"{title} (score >= {score_thr:.2f}, IoU >= {iou_thr:.2f})", fontsize=10)
        if annotate:
            top = float(data.max()) if data.size else 0.0
            for (i, j), v in np.ndenumerate(data):
                if v:
                    ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=size,
                            color="white" if v > 0.6 * top else "black")
    return fig


def per_class_ap_figure(table: Dict[str, np.ndarray], class_names: Sequence[str]) -> Figure:
    """Horizontal bars of AP@[.5:.95] and AP50 per class (`ap_table` output)."""
    fig = _figure("per_class_ap", len(class_names))
    ax = fig.subplots()
    y = np.arange(len(class_names))
    ap, ap50 = table["all"][:-1], table["AP50"][:-1]
    ax.barh(y - 0.2, np.nan_to_num(ap50), height=0.4, color="#9ecae1", label="AP50")
    ax.barh(y + 0.2, np.nan_to_num(ap), height=0.4, color=MEAN_COLOR, label="AP@[.5:.95]")
    for k in range(len(class_names)):
        text = "no GT" if np.isnan(ap[k]) else f"AP {ap[k]:.3f}, AP50 {ap50[k]:.3f}"
        ax.text(min(np.nan_to_num(ap50[k]), 0.75) + 0.01, k, text, va="center", fontsize=8)
    ax.set_yticks(y, list(class_names), fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("AP")
    ax.set_title(f"per-class AP (mean: AP {table['all'][-1]:.3f}, AP50 {table['AP50'][-1]:.3f})")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return fig


def ap_by_size_figure(table: Dict[str, np.ndarray], class_names: Sequence[str],
                      stats: Optional[Sequence[float]] = None) -> Figure:
    """AP@[.5:.95] for small / medium / large boxes (COCO's area ranges), overall (from the 12
    stats when given, else the class mean) and per class; "n/a" where a range has no GT box."""
    sizes = ("small", "medium", "large")
    overall = [stats[3 + i] if stats is not None else table[s][-1] for i, s in enumerate(sizes)]
    overall = [np.nan if v is None or v < 0 else float(v) for v in overall]
    groups = ["all classes"] + list(class_names)
    fig = _figure("ap_by_size", len(class_names))
    ax = fig.subplots()
    y = np.arange(len(groups))
    colors = ("#fdae6b", "#6baed6", "#74c476")
    for i, (size, color) in enumerate(zip(sizes, colors)):
        values = np.array([overall[i]] + list(table[size][:-1]), np.float64)
        offsets = y + (i - 1) * 0.27
        ax.barh(offsets, np.nan_to_num(values), height=0.27, color=color, label=size)
        for yy, v in zip(offsets, values):
            ax.text((0.0 if np.isnan(v) else v) + 0.01, yy, "n/a" if np.isnan(v) else f"{v:.3f}",
                    va="center", fontsize=7)
    ax.set_yticks(y, groups, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("AP@[.5:.95]")
    ax.set_title("AP by object size (COCO areas: small < 32², medium < 96², large)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return fig
