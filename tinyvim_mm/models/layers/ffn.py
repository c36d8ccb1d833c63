"""Convolutional feed-forward network, and its fused inference form."""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from tinyvim_mm.ops import fused_ffn_transposed, fused_ffn_unsupported
from tinyvim_mm.ops.device import log_once
from .conv_bn import ConvBN
from .weight_cache import DerivedWeights


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
    with convolutions, with a one-line log (without autograd, GELU and the residual in
    place).

    Args:
        fc1, fc2: the folded 1x1 convs (with bias).
        dw: the folded depth-wise conv applied first, or ``None``.
    """

    def __init__(self, fc1: nn.Conv2d, fc2: nn.Conv2d, dw: Optional[nn.Conv2d] = None) -> None:
        super().__init__()
        self.dw = dw
        self.fc1 = fc1
        self.fc2 = fc2
        self._kernel_weights = DerivedWeights()

    def kernel_weights(self, dtype: torch.dtype) -> Tuple[Optional[torch.Tensor], ...]:
        """``(w1t, b1, w2t, b2, dw_weight, dw_bias)`` as the kernel reads them: in
        ``dtype``, contiguous, the 1x1 weights transposed to ``(C, 4C)`` and ``(4C, C)``;
        kept per dtype until a weight they come from changes (:class:`DerivedWeights`):
        no transposes and, under autocast, no casts per call."""
        dw = self.dw
        sources = (self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias,
                   None if dw is None else dw.weight, None if dw is None else dw.bias)

        def build() -> Tuple[Optional[torch.Tensor], ...]:
            w1, b1, w2, b2, dw_weight, dw_bias = sources
            return tuple(None if t is None else t.detach().to(dtype).contiguous()
                         for t in (w1.flatten(1).t(), b1, w2.flatten(1).t(), b2, dw_weight,
                                   dw_bias))
        return self._kernel_weights.get(dtype, sources, build)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training or torch.is_grad_enabled()):
            reason = fused_ffn_unsupported(x)
            if not reason:
                return fused_ffn_transposed(x, *self.kernel_weights(x.dtype))
            log_once(f'tinyvim_mm: fused FFN kernel unavailable ({reason}); using convolutions')
        y = x if self.dw is None else self.dw(x)
        if torch.is_grad_enabled():
            return x + self.fc2(F.gelu(self.fc1(y)))
        # inference: GELU and the residual in place, into buffers made here. On the CPU each
        # new activation-sized buffer costs page faults (glibc returns freed large blocks
        # to the system): 1.1-1.2x the fallback's speed for TinyViM-S, batch 1-2, 2 threads
        out = self.fc2(torch.ops.aten.gelu_(self.fc1(y)))
        return out.add_(x) if out.dtype == x.dtype else x + out  # autocast: x's dtype wins
