"""Loading an official-layout ImageNet GhostNet state dict from a local file."""
import pytest
import torch

from nanodet_ghost.config import load_config
from nanodet_ghost.model import build_model
from nanodet_ghost.model.backbone.ghostnet import GhostNet
from nanodet_ghost.model.weights import CheckpointMismatchError
from nanodet_ghost.paths import CONFIG_DIR


def _imagenet_state_dict() -> dict:
    """A full GhostNet 1.0x classifier state dict, as the official checkpoint lays it out."""
    torch.manual_seed(1)
    state = {k: torch.randn_like(v.float()).to(v.dtype) if v.is_floating_point() else v.clone()
             for k, v in GhostNet().state_dict().items()}
    state["conv_head.weight"] = torch.randn(1280, 960, 1, 1)
    state["conv_head.bias"] = torch.randn(1280)
    state["classifier.weight"] = torch.randn(1000, 1280)
    state["classifier.bias"] = torch.randn(1000)
    return state


@pytest.mark.parametrize("wrap", ["bare", "state_dict", "model", "module_prefix"])
def test_full_state_dict_loads_unchanged(tmp_path, wrap):
    state = _imagenet_state_dict()
    saved = {f"module.{k}": v for k, v in state.items()} if wrap == "module_prefix" else state
    if wrap in ("state_dict", "model"):
        saved = {wrap: saved, "epoch": 300}
    path = tmp_path / "ghostnet_1x.pth"
    torch.save(saved, path)

    net = GhostNet(pretrained=str(path))
    for key, value in net.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_pretrained_through_config(tmp_path):
    path = tmp_path / "ghostnet.pth"
    state = _imagenet_state_dict()
    torch.save(state, path)
    cfg = load_config(CONFIG_DIR / "nanodet_ghost_320.yml", [f"model.backbone.pretrained={path}"])
    model = build_model(cfg.model)
    assert torch.equal(model.backbone.blocks[6][3].ghost1.primary_conv[0].weight,
                       state["blocks.6.3.ghost1.primary_conv.0.weight"])


def test_renamed_key_is_named_in_error(tmp_path):
    state = _imagenet_state_dict()
    state["blocks.3.0.se.conv_reduce_renamed.weight"] = state.pop("blocks.3.0.se.conv_reduce.weight")
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(ValueError) as err:
        GhostNet(pretrained=str(path))
    message = str(err.value)
    assert "blocks.3.0.se.conv_reduce_renamed.weight" in message
    assert "blocks.3.0.se.conv_reduce.weight" in message
    assert str(path) in message


def test_shape_mismatch_is_named(tmp_path):
    path = tmp_path / "half.pth"
    torch.save(GhostNet(width=0.5).state_dict(), path)
    # The same listing as a detector checkpoint that does not fit (model.weights.describe_mismatch).
    with pytest.raises(CheckpointMismatchError, match=r"half\.pth: not a GhostNet 1\.0x state dict\n  shape mismatches "
                       r"\(\d+\): blocks\.0\.0\.ghost1\.cheap_operation\.0\.weight: file \(4, 1, 3, 3\) vs model "
                       r"\(8, 1, 3, 3\);.* and \d+ more$"):
        GhostNet(width=1.0, pretrained=str(path))


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="does_not_exist.pth"):
        GhostNet(pretrained="/nonexistent/does_not_exist.pth")
