"""Dynamic convolution (Chen et al., "Dynamic Convolution: Attention over Convolution Kernels",
CVPR 2020; Yang et al., "CondConv", NeurIPS 2019).

A layer holds K expert kernels. For every image a routing vector `softmax(Linear(avgpool(x)))`
weighs the experts, and the image is convolved with the mixed kernel. Mixing the kernels rather
than the K outputs is exact (convolution is linear in its kernel) and costs one convolution.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _pair(value: int | Tuple[int, int]) -> Tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


class DynamicConv2d(nn.Module):
    """A convolution whose kernel is a per-image softmax mixture of `num_experts` kernels.

    Args:
        in_channels, out_channels, kernel_size, stride, padding: as `nn.Conv2d` (groups=1).
        num_experts: K, the number of expert kernels (>= 1).
        bias: one bias per expert, mixed like the kernels.

    Parameters: `weight [K * Cout, Cin, kh, kw]` (expert k is rows `k * Cout` to `(k + 1) * Cout`;
    4-d like any conv weight, so `model.to(memory_format=torch.channels_last)` and weight tooling
    apply), `bias [K, Cout]` (or None) and `routing`, an `nn.Linear(Cin, K)`.

    `forward(x: Tensor[B, Cin, H, W]) -> Tensor[B, Cout, H', W']` (H', W' as `nn.Conv2d`):
    `a = softmax(routing(mean_hw(x)))  [B, K]`, `W_b = sum_k a[b, k] W_k`, `y_b = W_b * x_b`.
    In eager mode the B mixed kernels run as ONE grouped convolution over the batch
    (`x` viewed as `[1, B*Cin, H, W]`, `groups=B`).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Tuple[int, int],
                 stride: int | Tuple[int, int] = 1, padding: int | Tuple[int, int] = 0, num_experts: int = 4,
                 bias: bool = False) -> None:
        super().__init__()
        if num_experts < 1:
            raise ValueError(f"num_experts must be >= 1, got {num_experts}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.padding = _pair(kernel_size), _pair(stride), _pair(padding)
        self.num_experts = int(num_experts)
        self.weight = nn.Parameter(torch.empty(num_experts * out_channels, in_channels, *self.kernel_size))
        self.bias: Optional[nn.Parameter] = (
            nn.Parameter(torch.empty(num_experts, out_channels)) if bias else None)
        self.routing = nn.Linear(in_channels, num_experts)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Every expert as `nn.Conv2d` initialises its kernel (per expert, so the fans are right)."""
        fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        for k, expert in enumerate(self.weight.split(self.out_channels)):
            nn.init.kaiming_uniform_(expert, a=math.sqrt(5))
            if self.bias is not None:
                nn.init.uniform_(self.bias[k], -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))

    def routing_weights(self, x: Tensor) -> Tensor:
        """`x [B, Cin, H, W]` -> expert weights `[B, K]` (each row sums to 1)."""
        return torch.softmax(self.routing(x.mean((2, 3))), dim=1)

    def mixed_kernels(self, x: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
        """Per-image kernels `[B, Cout, Cin, kh, kw]` and biases `[B, Cout]` (or None)."""
        attention = self.routing_weights(x)
        weight = (attention @ self.weight.reshape(self.num_experts, -1)).reshape(
            -1, self.out_channels, *self.weight.shape[1:])
        bias = attention @ self.bias if self.bias is not None else None
        return weight, bias

    def forward(self, x: Tensor) -> Tensor:
        weight, bias = self.mixed_kernels(x)
        if torch.jit.is_tracing() and self.kernel_size == (1, 1) and self.stride == (1, 1) and self.padding == (0, 0):
            # ONNX Conv's `group` is a constant, so a traced grouped conv would freeze the batch
            # size of the export. A 1x1 conv is a batched matmul, which stays batch-agnostic.
            out = weight.flatten(2) @ x.flatten(2)  # [B, Cout, Cin] @ [B, Cin, HW]
            if bias is not None:
                out = out + bias.unsqueeze(-1)
            return out.reshape(x.shape[0], self.out_channels, x.shape[2], x.shape[3])
        batch = x.shape[0]
        out = F.conv2d(x.reshape(1, -1, x.shape[2], x.shape[3]), weight.reshape(-1, *weight.shape[2:]),
                       bias.reshape(-1) if bias is not None else None, self.stride, self.padding, groups=batch)
        return out.reshape(batch, self.out_channels, out.shape[2], out.shape[3])

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, num_experts={self.num_experts}, bias={self.bias is not None}")


@torch.no_grad()
def fuse_dynamic_conv_bn(conv: DynamicConv2d, bn: nn.BatchNorm2d) -> DynamicConv2d:
    """A new `DynamicConv2d` equal to `bn(conv(x))` with BN in eval mode.

    Exact because the routing weights sum to 1: BN's scale goes into every expert kernel and its
    shift `(b_k - mean) * scale + beta` into every expert bias. `model.fuse.fuse_model` calls it.
    """
    if conv.out_channels != bn.num_features or bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"cannot fuse {conv} with {bn}")
    fused = DynamicConv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                          conv.num_experts, bias=True).to(device=conv.weight.device, dtype=conv.weight.dtype)
    var, mean = bn.running_var.double(), bn.running_mean.double()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(var)
    scale = gamma / torch.sqrt(var + bn.eps)
    bias = conv.bias.double() if conv.bias is not None else mean.new_zeros(conv.num_experts, conv.out_channels)
    fused.weight.copy_(conv.weight.double() * scale.repeat(conv.num_experts).reshape(-1, 1, 1, 1))
    fused.bias.copy_((bias - mean) * scale + beta)
    fused.routing.load_state_dict(conv.routing.state_dict())
    return fused
