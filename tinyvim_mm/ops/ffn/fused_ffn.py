"""A whole conv-FFN block in one Triton kernel (inference):
``x + fc2(GELU(fc1(dw(x))))`` on channels-last input, ``dw`` an optional
depth-wise conv, ``fc1``/``fc2`` 1x1 convs. The ``4C``-wide hidden activation
never reaches device memory, so a block reads ``x`` and writes its output once,
instead of the ~20 passes of the conv-by-conv form.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

from ..device import kernel_unsupported, next_pow2

#: Widest block the kernel takes (its ``BLOCK_M x C`` accumulator is in registers).
MAX_CHANNELS = 256


def launch_config(channels: int, half: bool) -> Tuple[int, int, int, int, int]:
    """``(BLOCK_C, BLOCK_M, BLOCK_H, num_warps, num_stages)`` of the kernel for a block of
    ``channels`` (``BLOCK_C`` the next power of 2, at least 16). Half precision: from sweeps on an H100 (fp16, batch 1024; docs/benchmarks.md, "The
    fused FFN kernel's launch"): up to 64 channels at TinyViM-S's stage-1 / 2 shapes
    1.62 / 1.12 / 0.50 ms against 1.98 / 1.50 / 0.64 ms with float32's launch, 65-128 at
    TinyViM-B / L's stage 2 1.14 / 0.87 / 1.38 ms against 2.23 / 1.75 / 2.76 ms. Float32
    (the dense tasks' inference form; twice the registers and shared memory per tile)
    keeps the launches its measurements were made with (not swept)."""
    block_c = max(16, next_pow2(channels))
    if block_c <= 64:
        launch = (64, 32, 4, 1) if half else (128, 64, 4, 3)
    elif block_c <= 128:
        launch = (64, 64, 4, 3) if half else (64, 64, 8, 3)
    else:
        launch = 32, 32, 8, 3
    return (block_c, *launch)


@torch.library.custom_op('tinyvim::fused_ffn_triton', mutates_args=())
def fused_ffn_triton(x: Tensor, w1t: Tensor, b1: Tensor, w2t: Tensor, b2: Tensor,
                     dw_weight: Optional[Tensor], dw_bias: Optional[Tensor]) -> Tensor:
    """See :func:`fused_ffn`; ``x`` channels-last, weights contiguous in ``x``'s
    dtype, ``w1t``: ``fc1``'s weight as ``(C, 4C)``, ``w2t``: ``fc2``'s as ``(4C, C)``."""
    from .kernels import ffn_kernel
    b, channels, height, width = x.shape
    hidden = w1t.shape[1]
    out = torch.empty_like(x, memory_format=torch.channels_last)
    half = x.dtype != torch.float32
    block_c, block_m, block_h, warps, stages = launch_config(channels, half)
    rows = b * height * width
    has_dw = dw_weight is not None
    ffn_kernel[(-(-rows // block_m), )](
        x, out, dw_weight if has_dw else w1t, dw_bias if has_dw else b1, w1t, b1, w2t, b2,
        rows, height, width, channels, hidden,
        HAS_DW=has_dw, KS=dw_weight.shape[-1] if has_dw else 1, BLOCK_M=block_m,
        BLOCK_C=block_c, BLOCK_H=block_h,
        PRECISION='tf32' if half else 'ieee',
        num_warps=warps, num_stages=stages)
    return out


@fused_ffn_triton.register_fake
def _(x, w1t, b1, w2t, b2, dw_weight, dw_bias):
    return torch.empty_like(x, memory_format=torch.channels_last)


def fused_ffn_unsupported(x: Tensor) -> str:
    """``''`` if :func:`fused_ffn` can run on ``x``, else the reason."""
    reason = kernel_unsupported(x, needs_dot=True)
    if not reason and x.shape[1] > MAX_CHANNELS:
        reason = f'{x.shape[1]} channels > {MAX_CHANNELS}'
    if not reason and x.numel() >= 2**31:
        reason = f'{x.numel()} elements: the kernel indexes with 32 bits'
    return reason


def fused_ffn(x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor,
              dw_weight: Optional[Tensor] = None, dw_bias: Optional[Tensor] = None) -> Tensor:
    """``x + conv1x1(GELU(conv1x1(dw(x), w1, b1)), w2, b2)`` in one Triton kernel.

    Args:
        x: ``(B, C, H, W)``; made channels-last if it is not.
        w1, b1: ``fc1``'s ``(4C, C, 1, 1)`` weight and ``(4C,)`` bias.
        w2, b2: ``fc2``'s ``(C, 4C, 1, 1)`` weight and ``(C,)`` bias.
        dw_weight, dw_bias: a depth-wise ``(C, 1, k, k)`` conv (odd ``k``, zero
            padding ``k // 2``) applied first, or ``None``.

    Returns:
        ``(B, C, H, W)`` channels-last, in ``x``'s dtype. Forward only; check
        :func:`fused_ffn_unsupported` first.
    """
    return fused_ffn_transposed(x, w1.flatten(1).t(), b1, w2.flatten(1).t(), b2, dw_weight,
                                dw_bias)


def fused_ffn_transposed(x: Tensor, w1t: Tensor, b1: Tensor, w2t: Tensor, b2: Tensor,
                         dw_weight: Optional[Tensor] = None,
                         dw_bias: Optional[Tensor] = None) -> Tensor:
    """:func:`fused_ffn` with the 1x1 weights given as the kernel reads them:
    ``w1t = fc1.weight.flatten(1).t()`` ``(C, 4C)``, ``w2t = fc2.weight.flatten(1).t()``
    ``(4C, C)`` (modules cache them, see :class:`tinyvim_mm.models.layers.FusedFFN`)."""
    dtype = x.dtype
    weights = [None if t is None else t.to(dtype).contiguous()
               for t in (w1t, b1, w2t, b2, dw_weight, dw_bias)]
    return fused_ffn_triton(x.contiguous(memory_format=torch.channels_last), *weights)
