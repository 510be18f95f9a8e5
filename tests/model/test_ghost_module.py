"""GhostModule skips its channel slice exactly when the concatenation already has `out_chs` channels."""
import operator

import pytest
import torch
import torch.fx

from nanodet_ghost.model.backbone.ghostnet import GhostModule


@pytest.mark.parametrize("out_chs", [16, 5])
def test_output_is_the_concatenation_trimmed_to_out_chs(out_chs: int) -> None:
    torch.manual_seed(0)
    module = GhostModule(8, out_chs).eval()
    x = torch.randn(2, 8, 12, 12)
    with torch.no_grad():
        primary = module.primary_conv(x)
        expected = torch.cat((primary, module.cheap_operation(primary)), dim=1)[:, :out_chs]
        got = module(x)
    assert got.shape == (2, out_chs, 12, 12)
    assert torch.equal(got, expected)


def test_even_out_chs_traces_no_slice() -> None:
    def slices(module: GhostModule) -> int:
        graph = torch.fx.symbolic_trace(module).graph
        return sum(1 for n in graph.nodes if n.op == "call_function" and n.target is operator.getitem)

    assert slices(GhostModule(8, 16).eval()) == 0
    assert slices(GhostModule(8, 5).eval()) == 1  # the check above can fail: an odd width still slices
