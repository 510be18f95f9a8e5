"""Images that could not be read during an evaluation: dropped with their ground truth, or an error.

An evaluation dataset stands in for an unreadable image with a marker that `collate` moves to
`batch["dropped"]`; `unreadable_in_batch` turns those into `{image_id: "file_name: problem"}`,
which is what the evaluator (`CocoEvaluator.evaluate(..., unreadable=...)`) and the DDP gather
(`gather_unreadable`) pass around. Nothing here imports torch.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Mapping, Tuple

from nanodet_ghost.evaluation.jsonio import EvaluationInputError

logger = logging.getLogger(__name__)

_EXAMPLES = 3
STRICT_HINT = "evaluation.strict=true (tools/test.py --strict)"


def unreadable_in_batch(batch: Mapping[str, Any]) -> Dict[int, str]:
    """`{image_id: "file_name: problem"}` of the images a collated batch had to leave out."""
    return {int(d["image_id"]): f"{d['file_name']}: {d['problem']}"
            for d in batch.get("dropped", ())}


def describe(unreadable: Mapping[int, str]) -> str:
    """A few of the unreadable images, e.g. "a.jpg: truncated JPEG; b.jpg: ...; +3 more"."""
    items = [unreadable[k] for k in sorted(unreadable)]
    more = f"; +{len(items) - _EXAMPLES} more" if len(items) > _EXAMPLES else ""
    return "; ".join(items[:_EXAMPLES]) + more


def refuse_unreadable(unreadable: Mapping[int, str]) -> None:
    """Raise `EvaluationInputError` naming the unreadable images (strict evaluation)."""
    if unreadable:
        raise EvaluationInputError(
            f"{len(unreadable)} {'image' if len(unreadable) == 1 else 'images'} of the "
            f"evaluation could not be read and {STRICT_HINT} is set: {describe(unreadable)}")


def without_images(gt: Mapping[str, Any], unreadable: Mapping[int, str]
                   ) -> Tuple[Dict[str, Any], int, int]:
    """(COCO ground truth without those images and their annotations, images removed, non-crowd
    boxes removed); logs the one line that says so. `gt` is not modified."""
    drop = {int(k) for k in unreadable}
    images = [im for im in gt["images"] if int(im["id"]) not in drop]
    kept, removed_boxes = [], 0
    for ann in gt["annotations"]:
        if int(ann["image_id"]) in drop:
            removed_boxes += 0 if ann.get("iscrowd", 0) else 1
        else:
            kept.append(ann)
    removed_images = len(gt["images"]) - len(images)
    logger.warning("dropped %d unreadable %s and their %d GT boxes from the evaluation (%s); "
                   "set %s to fail instead", removed_images,
                   "image" if removed_images == 1 else "images", removed_boxes,
                   describe(unreadable), STRICT_HINT)
    return dict(gt, images=images, annotations=kept), removed_images, removed_boxes
