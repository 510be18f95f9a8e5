"""An ImageNet GhostNet state dict as a `.safetensors` file in timm's `ghostnet_100` layout.

The key names below are timm's, read from timm 1.0.31 `timm/models/ghostnet.py` (`GhostNet`,
`GhostBottleneck`, `GhostModule`) and `_efficientnet_blocks.py` (`ConvBnAct`: `conv`, `bn1`;
`SqueezeExcite`: `conv_reduce`, `conv_expand`): the official layout, plus the classifier
(`conv_head`, `classifier`). The weights are our own, randomly initialised.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from nanodet_ghost.model.backbone.ghostnet import GhostNet
from nanodet_ghost.model.weights import CheckpointMismatchError

TIMM_KEYS = (  # a sample of timm's ghostnet_100 state-dict keys, one per kind of layer
    "conv_stem.weight", "bn1.running_var", "blocks.0.0.ghost1.primary_conv.0.weight",
    "blocks.0.0.ghost1.cheap_operation.1.running_mean", "blocks.1.0.conv_dw.weight", "blocks.1.0.bn_dw.bias",
    "blocks.1.0.shortcut.0.weight", "blocks.1.0.shortcut.3.running_var", "blocks.3.0.se.conv_reduce.weight",
    "blocks.3.0.se.conv_expand.bias", "blocks.6.4.ghost2.primary_conv.1.weight", "blocks.9.0.conv.weight",
    "blocks.9.0.bn1.num_batches_tracked", "conv_head.weight", "conv_head.bias", "classifier.weight",
    "classifier.bias",
)


def timm_layout_state_dict() -> dict:
    """Our randomly initialised 1.0x weights, BatchNorm made non-trivial, with timm's classifier keys."""
    torch.manual_seed(3)
    state = {k: v.clone() for k, v in GhostNet().state_dict().items()}
    for key, value in state.items():
        if key.endswith(("bn1.weight", "bn_dw.weight", ".running_var")) or ".1.weight" in key or ".3.weight" in key:
            state[key] = torch.empty_like(value).uniform_(0.5, 1.5)
        elif key.endswith((".bias", ".running_mean")):
            state[key] = torch.randn_like(value) * 0.1
    state.update({"conv_head.weight": torch.randn(1280, 960, 1, 1), "conv_head.bias": torch.randn(1280),
                  "classifier.weight": torch.randn(1000, 1280), "classifier.bias": torch.randn(1000)})
    missing = [k for k in TIMM_KEYS if k not in state]
    assert not missing, f"our keys no longer follow timm's layout: {missing}"
    return state


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("ghostnet_weights")
    state = timm_layout_state_dict()
    files = {"pth": folder / "ghostnet_100.pth", "safetensors": folder / "model.safetensors",
             "safetensors_no_counters": folder / "no_counters.safetensors"}
    torch.save(state, files["pth"])
    save_file(state, str(files["safetensors"]))
    save_file({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")},
              str(files["safetensors_no_counters"]))
    return files


@torch.no_grad()
def _features(net: GhostNet) -> tuple:
    torch.manual_seed(0)
    return net.eval()(torch.randn(1, 3, 96, 128))


@pytest.mark.parametrize("kind", ["safetensors", "safetensors_no_counters"])
@pytest.mark.parametrize("depth", [1.0, 0.5])
def test_safetensors_gives_the_features_of_the_pth(weight_files, kind, depth, monkeypatch) -> None:
    reference = _features(GhostNet(depth=depth, pretrained=str(weight_files["pth"])))

    def no_pickle(*args, **kwargs):
        raise AssertionError("torch.load called for a .safetensors file")

    monkeypatch.setattr(torch, "load", no_pickle)
    loaded = _features(GhostNet(depth=depth, pretrained=str(weight_files[kind])))
    assert len(loaded) == len(reference) == 3
    for a, b in zip(loaded, reference):
        assert torch.equal(a, b)
    untrained = _features(GhostNet(depth=depth))
    assert not torch.equal(untrained[-1], reference[-1]), "the weights changed nothing"


def test_mismatched_safetensors_names_the_file_and_keys(tmp_path: Path) -> None:
    state = timm_layout_state_dict()
    state["blocks.3.0.se.conv_reduce_renamed.weight"] = state.pop("blocks.3.0.se.conv_reduce.weight")
    path = tmp_path / "renamed.safetensors"
    save_file(state, str(path))
    with pytest.raises(CheckpointMismatchError, match=r"renamed\.safetensors: not a GhostNet 1\.0x state dict\n"
                       r"  missing keys \(1\): blocks\.3\.0\.se\.conv_reduce\.weight\n"
                       r"  unexpected keys \(1\): blocks\.3\.0\.se\.conv_reduce_renamed\.weight$"):
        GhostNet(pretrained=str(path))


def test_broken_safetensors_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(CheckpointMismatchError, match=r"broken\.safetensors: cannot be read as a safetensors file"):
        GhostNet(pretrained=str(path))
