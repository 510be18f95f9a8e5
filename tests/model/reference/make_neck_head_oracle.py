"""Writes neck_head_oracle.npz: NanoDet's own GhostPAN and NanoDetPlusHead on random weights.

    NANODET_SRC=/path/to/RangiLyu/nanodet python tests/model/reference/make_neck_head_oracle.py

Cases (configs in nanodet_ghost's argument names):

- `plus`: the NanoDet-Plus layout, small: GhostPAN (kernel 5, one extra level) → NanoDetPlusHead
  (kernel 5, strides 8/16/32/64, 3 classes, reg_max 7).
- `no_extra`: the same neck without the extra level, on the `plus` weights (extra convs unused).
- `res`: GhostPAN with `use_res`, `expand` 0.5, kernel 3, ReLU.

The npz holds `meta` (json: the configs and, per case, the (name, shape) layout of its weights),
`<case>.weights` (float32, all weights and BN statistics of neck then head, flattened in the
layout's order, under NanoDet's names), the inputs `input.<i>` (features of a 64x96 image, batch 2:
8x12, 4x6, 2x3) and the outputs `<case>.<mode>.neck.<i>` / `<case>.<mode>.head` for the case's
modes: `eval` on the batch, `train` (BN on batch statistics, from the same weights) on its first
image only, and with a head only the head's output. These cuts, and one array for all weights of
a case (a zip entry per tensor would double the file), keep the file under 150 KB. `num_blocks` > 1 is not a case: NanoDet's GhostBlocks feeds every block
`2 * out_channels` and fails. Odd feature sizes are not either: NanoDet upsamples by scale_factor=2.
"""
from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nanodet_build import (  # noqa: E402
    NANODET_SRC_ENV, build_nanodet_head, build_nanodet_neck, import_nanodet, randomize_)
from nanodet_names import NANODET_ONLY  # noqa: E402

OUT = Path(__file__).resolve().parent / "neck_head_oracle.npz"
IN_CHANNELS = [8, 12, 16]
FEATURE_SIZES = [(8, 12), (4, 6), (2, 3)]
BATCH = 2
NECK = dict(in_channels=IN_CHANNELS, out_channels=8, kernel_size=5, expand=1.0, num_blocks=1,
            use_res=False, num_extra_level=1, activation="LeakyReLU")
CONFIG: Dict[str, Dict[str, Any]] = {
    "plus": {"neck": NECK, "head": dict(num_classes=3, in_channels=8, feat_channels=8, stacked_convs=2,
                                        kernel_size=5, strides=[8, 16, 32, 64], reg_max=7),
             "modes": ["eval", "train"]},
    "no_extra": {"neck": {**NECK, "num_extra_level": 0}, "weights_from": "plus", "modes": ["eval"]},
    "res": {"neck": {**NECK, "kernel_size": 3, "expand": 0.5, "use_res": True, "activation": "ReLU"},
            "modes": ["eval", "train"]},
}


def pack(modules: Dict[str, nn.Module]) -> Tuple[np.ndarray, List[Tuple[str, str, List[int]]]]:
    """All state-dict tensors of `modules` as one float32 vector, and their (module, name, shape)."""
    layout, chunks = [], []
    for part, module in modules.items():
        for name, value in module.state_dict().items():
            if name not in NANODET_ONLY:
                layout.append((part, name, list(value.shape)))
                chunks.append(value.detach().double().reshape(-1).numpy())
    return np.concatenate(chunks).astype(np.float32), layout


def main() -> None:
    src = os.environ.get(NANODET_SRC_ENV)
    if not src:
        raise SystemExit(f"set {NANODET_SRC_ENV} to a RangiLyu/nanodet checkout")
    ghost_pan_cls, head_cls = import_nanodet(src)
    gen = torch.Generator().manual_seed(20240611)
    inputs = [torch.randn(BATCH, c, h, w, generator=gen) for c, (h, w) in zip(IN_CHANNELS, FEATURE_SIZES)]
    arrays: Dict[str, np.ndarray] = {f"input.{i}": x.numpy() for i, x in enumerate(inputs)}
    meta: Dict[str, Any] = {"config": CONFIG, "layout": {}}

    initial: Dict[str, Dict[str, nn.Module]] = {}
    for case, cfg in CONFIG.items():
        modules = {"neck": build_nanodet_neck(ghost_pan_cls, cfg["neck"])}
        if "head" in cfg:
            modules["head"] = build_nanodet_head(head_cls, cfg["head"])
        if "weights_from" in cfg:
            # strict=False: the source neck also has the extra-level convs this one lacks
            modules["neck"].load_state_dict(initial[cfg["weights_from"]]["neck"].state_dict(), strict=False)
        else:
            for module in modules.values():
                randomize_(module, gen)
            arrays[f"{case}.weights"], meta["layout"][case] = pack(modules)
        initial[case] = copy.deepcopy(modules)

        for mode in cfg["modes"]:
            run = copy.deepcopy(initial[case])  # train mode updates the running statistics
            batch = inputs if mode == "eval" else [x[:1] for x in inputs]
            with torch.no_grad():
                outs = run["neck"].train(mode == "train")([x.clone() for x in batch])
                if "head" in run:
                    arrays[f"{case}.{mode}.head"] = run["head"].train(mode == "train")(list(outs)).numpy()
                if mode == "eval" or "head" not in run:
                    arrays.update({f"{case}.{mode}.neck.{i}": o.numpy() for i, o in enumerate(outs)})
        scale = max(float(np.abs(v).max()) for k, v in arrays.items() if k.startswith(f"{case}.") and "weights" not in k)
        print(f"{case}: outputs up to {scale:.3g} in magnitude")
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.1f} KiB, {len(arrays)} arrays)")


if __name__ == "__main__":
    main()
