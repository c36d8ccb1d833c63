"""Convolutional feed-forward network, and its fused inference form."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from tinyvim_mm.ops import fused_ffn_transposed, fused_ffn_unsupported
from tinyvim_mm.ops.device import log_once
from .conv_bn import ConvBN


class ConvFFN(nn.Module):
    """``ConvBN1x1 -> GELU -> ConvBN1x1``: ``(B, C, H, W) -> (B, C, H, W)``.

    Args:
        channels: input/output channels ``C``.
        hidden_channels: hidden width (``4 C`` in TinyViM).
        deploy: build the folded form directly.
    """

    def __init__(self, channels: int, hidden_channels: int, deploy: bool = False) -> None:
        super().__init__()
        self.fc1 = ConvBN(channels, hidden_channels, deploy=deploy)
        self.act = nn.GELU()
        self.fc2 = ConvBN(hidden_channels, channels, deploy=deploy)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class FusedFFN(nn.Module):
    """``x + fc2(GELU(fc1(dw(x))))``, ``dw`` optional, as one Triton kernel at inference:
    ``(B, C, H, W) -> (B, C, H, W)`` (channels-last on the kernel path).

    Built from folded layers by ``LocalBlock.to_fused()`` / ``TinyViMBlock.to_fused()``.
    Where the kernel cannot run (CPU, GPUs before Ampere, autograd) it computes the same
    with convolutions, with a one-line log.

    Args:
        fc1, fc2: the folded 1x1 convs (with bias).
        dw: the folded depth-wise conv applied first, or ``None``.
    """

    def __init__(self, fc1: nn.Conv2d, fc2: nn.Conv2d, dw: Optional[nn.Conv2d] = None) -> None:
        super().__init__()
        self.dw = dw
        self.fc1 = fc1
        self.fc2 = fc2
        # the kernel's weight layout, prepared once (inference weights are fixed)
        self.register_buffer('w1t', fc1.weight.detach().flatten(1).t().contiguous(),
                             persistent=False)
        self.register_buffer('w2t', fc2.weight.detach().flatten(1).t().contiguous(),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training or torch.is_grad_enabled()):
            reason = fused_ffn_unsupported(x)
            if not reason:
                dw = self.dw
                return fused_ffn_transposed(x, self.w1t, self.fc1.bias, self.w2t,
                                            self.fc2.bias, None if dw is None else dw.weight,
                                            None if dw is None else dw.bias)
            log_once(f'tinyvim_mm: fused FFN kernel unavailable ({reason}); using convolutions')
        y = x if self.dw is None else self.dw(x)
        return x + self.fc2(F.gelu(self.fc1(y)))
