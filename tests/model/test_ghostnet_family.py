"""GhostNet's width and depth knobs, feature_info at every scale, and ImageNet weights loaded
partially into a shallower (or dynamic) network."""
import logging
import math
import re

import pytest
import torch

from nanodet_ghost.model.backbone import ghostnet
from nanodet_ghost.model.backbone.ghostnet import GHOSTNET_STAGES, GhostNet, kept_block_indices
from nanodet_ghost.model.weights import CheckpointMismatchError

LOGGER = "nanodet_ghost.model.backbone.ghostnet_weights"


@pytest.fixture(scope="module")
def imagenet_file(tmp_path_factory):
    """A full GhostNet 1.0x state dict with random values (classifier included), as the official
    checkpoint lays it out; returns (path, state)."""
    torch.manual_seed(3)
    state = {k: torch.randn_like(v.float()).to(v.dtype) if v.is_floating_point() else v.clone()
             for k, v in GhostNet().state_dict().items()}
    state.update({"conv_head.weight": torch.randn(1280, 960, 1, 1), "classifier.weight": torch.randn(1000, 1280)})
    path = tmp_path_factory.mktemp("imagenet") / "ghostnet_1x.pth"
    torch.save(state, path)
    return path, state


@pytest.mark.parametrize("depth", [0.5, 1.0])
@pytest.mark.parametrize("width", [0.5, 0.75, 1.3])
def test_width_and_depth_outputs_match_feature_info(width: float, depth: float) -> None:
    net = GhostNet(width=width, depth=depth, out_stages=(2, 4, 6, 9)).eval()
    with torch.no_grad():
        outs = net(torch.randn(1, 3, 64, 64))
    assert [(o.shape[1], 64 // o.shape[2], 64 // o.shape[3]) for o in outs] == \
        [(f.num_chs, f.reduction, f.reduction) for f in net.feature_info]
    expected = [ghostnet.make_divisible(c * width, 4) for c in (24, 40, 112, 960)]
    assert net.out_channels == expected and net.strides == [4, 8, 16, 32]


def test_stopping_at_stage_8() -> None:
    net = GhostNet(width=0.75, depth=0.5, out_stages=(3, 8)).eval()
    assert len(net.blocks) == 9  # stage 9 (the final conv) is not built
    with torch.no_grad():
        outs = net(torch.randn(2, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(2, 32, 8, 8), (2, 120, 2, 2)]
    assert [(f.stage, f.num_chs, f.reduction) for f in net.feature_info] == [(3, 32, 8), (8, 120, 32)]


def test_width_1_3_channels() -> None:
    assert GhostNet(width=1.3).out_channels == [52, 144, 1248]
    assert GhostNet(width=0.5).out_channels == [20, 56, 480]


@pytest.mark.parametrize("depth", [0.01, 0.2, 0.5, 0.7, 1.0])
def test_depth_keeps_the_last_blocks(depth: float) -> None:
    net = GhostNet(depth=depth, out_stages=(8,))
    full = GhostNet(out_stages=tuple(range(10)))
    assert net.kept_blocks == kept_block_indices(depth)
    for stage, kept, built in zip(GHOSTNET_STAGES, net.kept_blocks, net.blocks):
        count = max(1, round(len(stage) * depth))
        assert kept == list(range(len(stage) - count, len(stage)))  # no stride-2 block inside a stage here
        assert len(built) == len(kept)
        assert [hasattr(b, "conv_dw") for b in built] == [stage[i][4] == 2 for i in kept]
    deep = GhostNet(depth=depth, out_stages=tuple(range(10)))
    assert deep.feature_info == full.feature_info  # every stage ends with its full-depth channels


def test_depth_always_keeps_stride_2_blocks(monkeypatch) -> None:
    s1, s2 = (3, 32, 32, 0.0, 1), (3, 64, 32, 0.0, 2)
    monkeypatch.setattr(ghostnet, "GHOSTNET_STAGES", ((s1, s2, s1, s1), (s2,), (s1, s1, s2)))
    assert kept_block_indices(0.25) == [[1], [0], [2]]
    assert kept_block_indices(0.5) == [[1, 3], [0], [1, 2]]
    assert kept_block_indices(0.75) == [[1, 2, 3], [0], [1, 2]]
    assert kept_block_indices(1.0) == [[0, 1, 2, 3], [0], [0, 1, 2]]


@pytest.mark.parametrize("width", [0, -0.5, math.nan, math.inf])
def test_bad_width_raises(width: float) -> None:
    with pytest.raises(ValueError, match=re.escape(f"width must be > 0, got {width}")):
        GhostNet(width=width)


@pytest.mark.parametrize("depth", [0, -0.5, 1.01, math.nan])
def test_bad_depth_raises(depth: float) -> None:
    with pytest.raises(ValueError, match=re.escape(f"depth must lie in (0, 1], got {depth}")):
        GhostNet(depth=depth)


@pytest.mark.parametrize("experts", [-1, 1, 2.5])
def test_bad_dynamic_experts_raise(experts) -> None:
    with pytest.raises(ValueError, match="dynamic_experts must be 0"):
        GhostNet(dynamic_experts=experts)


def _block_state(net: GhostNet, stage: int, index: int) -> dict:
    return net.blocks[stage][index].state_dict()


def test_partial_load_maps_kept_blocks_to_their_source(imagenet_file, caplog) -> None:
    path, state = imagenet_file
    full = GhostNet(pretrained=str(path))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        net = GhostNet(depth=0.5, pretrained=str(path))
    assert net.kept_blocks[6] == [3, 4] and net.kept_blocks[8] == [2, 3]
    for stage, kept in enumerate(net.kept_blocks):
        for index, source in enumerate(kept):
            own, src = _block_state(net, stage, index), _block_state(full, stage, source)
            assert own.keys() == src.keys()
            assert all(torch.equal(own[k], src[k]) for k in own), (stage, index, source)
    assert torch.equal(net.blocks[9][0].conv.weight, state["blocks.9.0.conv.weight"])
    assert torch.equal(net.conv_stem.weight, state["conv_stem.weight"])
    total = len(net.state_dict())
    lines = [r.getMessage() for r in caplog.records if "loaded" in r.getMessage()]
    assert len(lines) == 1 and f"loaded {total} of {total} tensors" in lines[0]
    assert "blocks.6.0 <- blocks.6.3" in lines[0] and "0 left at their initialisation" in lines[0]


def test_partial_load_leaves_what_does_not_fit(imagenet_file, caplog) -> None:
    """At depth 0.2 stage 6 keeps only block 4, whose input is now 80 channels instead of 112:
    its expansion conv and its new projection shortcut keep their initialisation."""
    path, state = imagenet_file
    torch.manual_seed(0)
    fresh = GhostNet(depth=0.2)
    torch.manual_seed(0)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        net = GhostNet(depth=0.2, pretrained=str(path))
    own = net.state_dict()
    not_loaded = []
    for key, value in own.items():
        source = state.get(net.source_key(key))
        if source is None or source.shape != value.shape:
            not_loaded.append(key)
            assert torch.equal(value, fresh.state_dict()[key]), key  # left at its initialisation
        else:
            assert torch.equal(value, source), key
    assert "blocks.6.0.ghost1.primary_conv.0.weight" in not_loaded and "blocks.6.0.shortcut.0.weight" in not_loaded
    message = next(r.getMessage() for r in caplog.records if "loaded" in r.getMessage())
    match = re.search(r"loaded (\d+) of (\d+) tensors", message)
    assert match and (int(match[1]), int(match[2])) == (len(own) - len(not_loaded), len(own))
    assert f"{len(not_loaded)} left at their initialisation" in message
    assert "blocks.6.0.ghost1.primary_conv.0.weight" in message


def test_dynamic_experts_start_from_the_pretrained_kernel(imagenet_file, caplog) -> None:
    path, state = imagenet_file
    with caplog.at_level(logging.INFO, logger=LOGGER):
        net = GhostNet(depth=0.5, dynamic_experts=3, out_stages=(4, 6), pretrained=str(path))
    conv = net.blocks[6][1].ghost2.primary_conv[0]
    source = state["blocks.6.4.ghost2.primary_conv.0.weight"]
    assert conv.weight.shape == (3 * source.shape[0], *source.shape[1:])
    assert all(torch.equal(expert, source) for expert in conv.weight.split(source.shape[0]))
    messages = [r.getMessage() for r in caplog.records]
    assert any("routing tensors of the dynamic convolutions" in m for m in messages)
    assert any("start with all their 3 experts equal to the pretrained kernel" in m for m in messages)


def test_pretrained_needs_width_1(imagenet_file) -> None:
    path, _ = imagenet_file
    with pytest.raises(CheckpointMismatchError, match=r"ghostnet_1x\.pth: ImageNet GhostNet weights exist only for "
                                                      r"width 1\.0, but this backbone has width 0\.5"):
        GhostNet(width=0.5, pretrained=str(path))


def test_partial_load_still_checks_the_file(tmp_path) -> None:
    state = GhostNet().state_dict()
    state["blocks.6.3.se.conv_reduce_renamed.weight"] = state.pop("blocks.6.3.se.conv_reduce.weight")
    torch.save(state, tmp_path / "renamed.pth")
    with pytest.raises(CheckpointMismatchError, match=r"renamed\.pth: not a GhostNet 1\.0x state dict"):
        GhostNet(depth=0.5, pretrained=str(tmp_path / "renamed.pth"))
