"""Writes plus_oracle.npz: NanoDet's own DSL assigner, NanoDet-Plus loss and gradients on the cases
of plus_cases.py.

    NANODET_SRC=/path/to/RangiLyu/nanodet python tests/model/reference/make_plus_oracle.py

Cases:

- `dsl.<case>` for `DSL_CASES`: one image's assigner inputs (126 points, 4 classes) and NanoDet's
  gt index (-1 negative) and soft label per point. No case has tied costs: which of several tied
  points `torch.topk` keeps is up to the torch build, so ties are checked live and against a
  per-GT loop in the tests instead of pinned here.
- `model_before_detach`, `model_after_detach`: the small NanoDet-Plus of plus_cases.py (stand-in
  backbone, GhostPAN, NanoDetPlusHead, aux GhostPAN, SimpleConvHead) on three 128x128 images, through
  `NanoDetPlus.forward_train` at epoch 0 and at `detach_epoch`: the losses, the assignment of each
  image and the gradient of every parameter.
- `loss_aux`, `loss_self`: `NanoDetPlusHead.loss` on given head outputs (two 32x64 images), with
  and without an auxiliary output: losses, assignments, gradients of the outputs.

Weights, images and head outputs are float16-exact and stored as float16; gradients and soft
labels as float32; losses in `meta` (json) as Python floats.
"""
from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Dict

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nanodet_build import NANODET_SRC_ENV  # noqa: E402
from nanodet_plus_run import import_nanodet_plus, run_dsl_case, run_loss_case, run_model_case  # noqa: E402
from plus_cases import (  # noqa: E402
    AUX_HEAD, DETACH_EPOCH, DSL_CASES, HEAD, LOSS_CASES, LOSS_HW, MODEL_EPOCHS, NECK, build_ours, dsl_inputs,
    loss_inputs, model_images_lowres, model_targets, pack, parts, randomize_model_, upsample_images)

OUT = Path(__file__).resolve().parent / "plus_oracle.npz"
SEED = 20240612


def main() -> None:
    src = os.environ.get(NANODET_SRC_ENV)
    if not src:
        raise SystemExit(f"set {NANODET_SRC_ENV} to a RangiLyu/nanodet checkout")
    warnings.filterwarnings("ignore", message="torch.meshgrid")  # NanoDet's priors
    nd = import_nanodet_plus(src)
    arrays: Dict[str, np.ndarray] = {}
    meta: Dict[str, Any] = {"config": {"neck": NECK, "head": HEAD, "aux_head": AUX_HEAD, "detach_epoch": DETACH_EPOCH},
                            "torch": torch.__version__, "losses": {}, "layout": {}}

    for i, case in enumerate(DSL_CASES):
        inputs = dsl_inputs(case, SEED + i)
        gt_indices, soft = run_dsl_case(nd, inputs)
        for name in ("cls_logits", "decoded_boxes", "gt_boxes"):
            arrays[f"dsl.{case}.{name}"] = inputs[name].numpy().astype(np.float32)
        arrays[f"dsl.{case}.gt_labels"] = inputs["gt_labels"].numpy().astype(np.int8)
        arrays[f"dsl.{case}.gt_indices"] = gt_indices.numpy().astype(np.int8)
        arrays[f"dsl.{case}.soft"] = soft.numpy().astype(np.float32)
        print(f"dsl.{case}: {int((gt_indices >= 0).sum())} positives of {gt_indices.numel()} points, "
              f"{inputs['gt_boxes'].shape[0]} GTs")

    gen = torch.Generator().manual_seed(SEED)
    model = build_ours()
    randomize_model_(model, gen)
    state = {f"{part}.{k}": v for part, module in parts(model).items() for k, v in module.state_dict().items()}
    arrays["model.weights"], meta["layout"]["weights"] = pack(state, np.float16)
    lowres = model_images_lowres(gen)
    arrays["model.images_lowres"] = lowres.numpy().astype(np.float16)
    images, targets = upsample_images(lowres), model_targets()
    for case, epoch in MODEL_EPOCHS.items():
        result = run_model_case(nd, model, images, targets, epoch)
        grads = dict(sorted(result["grads"].items()))
        arrays[f"{case}.grads"], meta["layout"][f"{case}.grads"] = pack(grads, np.float32)
        arrays[f"{case}.assignments"] = result["assignments"].numpy().astype(np.int8)
        meta["losses"][case] = result["losses"]
        print(f"{case}: losses {result['losses']}")

    for case in LOSS_CASES:
        raw, aux_raw, targets = loss_inputs(case, gen)
        arrays[f"{case}.raw"] = raw.numpy().astype(np.float16)
        if aux_raw is not None:
            arrays[f"{case}.aux_raw"] = aux_raw.numpy().astype(np.float16)
        result = run_loss_case(nd, raw, aux_raw, targets, LOSS_HW)
        arrays[f"{case}.grads"], meta["layout"][f"{case}.grads"] = pack(result["grads"], np.float32)
        arrays[f"{case}.assignments"] = result["assignments"].numpy().astype(np.int8)
        meta["losses"][case] = result["losses"]
        print(f"{case}: losses {result['losses']}")

    arrays["meta"] = np.array(json.dumps(meta))
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.1f} KiB, {len(arrays)} arrays)")


if __name__ == "__main__":
    main()
