"""Triton selective-scan kernels (forward only), as ``torch.library`` custom ops.

- ``tinyvim::selective_scan_triton``: the :func:`~tinyvim_mm.ops.selective_scan`
  interface (``u, delta: (b, K*d, L)``, ``B, C: (b, K, N, L)``); one program per
  (batch, direction, channel block), the state in registers, a loop over ``L``.
- ``tinyvim::cross_scan_triton``: the whole 4-direction 2-D scan of the
  Laplace mixer in one kernel. It reads ``x`` and the projections at their
  pixels (index arithmetic instead of cross-scan copies), sums the directions
  on the grid and, when one program holds all channels, applies the
  LayerNorm too.

Both are opaque to ``torch.compile`` (no graph break) and need no gradient:
callers use them under ``torch.no_grad()`` and fall back otherwise.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..device import device_key, multiprocessor_count, next_pow2

#: Longest sequence the cross-scan kernel takes; longer ones (large detection
#: inputs) are better served by kernels that split ``L`` over threads.
CROSS_SCAN_MAX_LENGTH = 1024
SPLIT_BLOCK_D = 32


def _num_warps(block: int) -> int:
    return max(1, min(8, block // 256))


def _launch_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                 D: Optional[Tensor], bias: Optional[Tensor], norm: Optional[Tuple[Tensor, Tensor]],
                 out: Tensor, d: int, height: int, width: int, eps: float, softplus: bool,
                 cross: bool, grid: Tuple[int, int, int], block_d: int) -> None:
    """Launch ``scan_kernel``; every tensor argument is a 5-D ``(b, k, c|n, row,
    col)`` view (any strides)."""
    from .triton_fwd_kernels import scan_kernel
    n_state = A.shape[1]
    dummy = A  # never read when the matching flag is off
    nw, nb = norm if norm is not None else (dummy, dummy)
    scan_kernel[grid](
        u, delta, A, B, C, D if D is not None else dummy, bias if bias is not None else dummy,
        nw, nb, out, d, height * width, height, width, eps,
        *u.stride(), *delta.stride(), *B.stride(), *C.stride(), *out.stride(),
        N=n_state, BLOCK_N=next_pow2(n_state), BLOCK_D=block_d, CROSS=cross,
        NUM_DIRS=4 if cross else 1,
        HAS_D=D is not None, HAS_BIAS=bias is not None, SOFTPLUS=softplus,
        NORM=norm is not None, num_warps=_num_warps(block_d * next_pow2(n_state)))


@torch.library.custom_op('tinyvim::selective_scan_triton', mutates_args=())
def selective_scan_triton(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                          D: Optional[Tensor], delta_bias: Optional[Tensor],
                          delta_softplus: bool) -> Tensor:
    """Forward selective scan (module docstring of ``selective_scan`` for the
    shapes); ``A``, ``D``, ``delta_bias`` float32. Returns ``(b, K*d, L)`` in
    ``u``'s dtype."""
    b, channels, length = u.shape
    num_dirs = B.shape[1]
    d = channels // num_dirs
    out = torch.empty_like(u, memory_format=torch.contiguous_format)

    def view(t: Tensor) -> Tensor:  # (b, K*d, L) -> (b, K, d, 1, L)
        return t.as_strided((b, num_dirs, d, 1, length),
                            (t.stride(0), d * t.stride(1), t.stride(1), 0, t.stride(2)))

    block_d = min(next_pow2(d), 64)
    _launch_scan(view(u), view(delta), A.contiguous(), B.unsqueeze(3), C.unsqueeze(3), D,
                 delta_bias, None, view(out), d, 1, length, 0.0, delta_softplus, False,
                 (b, num_dirs, -(-d // block_d)), block_d)
    return out


@selective_scan_triton.register_fake
def _(u, delta, A, B, C, D, delta_bias, delta_softplus):
    return torch.empty_like(u, memory_format=torch.contiguous_format)


@torch.library.custom_op('tinyvim::cross_scan_triton', mutates_args=())
def cross_scan_triton(x: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor,
                      delta_bias: Tensor, norm_weight: Optional[Tensor],
                      norm_bias: Optional[Tensor], eps: float, block_d: int) -> Tensor:
    """The 4-direction 2-D selective scan, summed on the grid (see
    :func:`cross_selective_scan`); layer-normed when ``norm_weight`` is given,
    which needs ``block_d >= d``. Returns float32 ``(b, d, H, W)``,
    channels-last."""
    b, d, height, width = x.shape
    out = torch.empty((b, d, height, width), device=x.device, dtype=torch.float32,
                      memory_format=torch.channels_last)
    norm = None if norm_weight is None else (norm_weight, norm_bias)
    _launch_scan(x.unsqueeze(1).expand(b, 4, d, height, width), delta, A.contiguous(), B, C, D,
                 delta_bias, norm, out.unsqueeze(1).expand(b, 4, d, height, width), d, height,
                 width, eps, True, True, (b, 1, -(-d // block_d)), block_d)
    return out


@cross_scan_triton.register_fake
def _(x, delta, A, B, C, D, delta_bias, norm_weight, norm_bias, eps, block_d):
    b, d, height, width = x.shape
    return torch.empty((b, d, height, width), device=x.device, dtype=torch.float32,
                       memory_format=torch.channels_last)


def cross_scan_block(batch: int, d: int, length: int, device: torch.device) -> Optional[int]:
    """Channels per program for :func:`cross_selective_scan`, or ``None`` when
    the kernel would be slower than the scan-by-direction path: all ``d``
    channels (LayerNorm fused) once the batch alone fills the GPU, else
    ``SPLIT_BLOCK_D`` when that does, else ``None`` (as for ``L`` beyond
    ``CROSS_SCAN_MAX_LENGTH``)."""
    if length > CROSS_SCAN_MAX_LENGTH:
        return None
    sms = multiprocessor_count(*device_key(device))
    if batch >= sms:
        return max(next_pow2(d), 16)
    if batch * -(-d // SPLIT_BLOCK_D) >= sms:
        return SPLIT_BLOCK_D
    return None


def cross_selective_scan(x: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor,
                         delta_bias: Tensor, norm_weight: Tensor, norm_bias: Tensor,
                         eps: float = 1e-5, block_d: Optional[int] = None) -> Tensor:
    """4-direction 2-D selective scan + LayerNorm, as the Laplace mixer's
    ``cross_scan -> selective_scan -> cross_merge -> LayerNorm`` computes it.

    Args:
        x: ``(b, d, H, W)``, the scanned input ``u`` of every direction.
        delta: ``(b, 4, d, H, W)``, direction ``k``'s ``delta`` at each pixel.
        A: ``(4*d, N)``; D, delta_bias: ``(4*d,)``; all float32 (softplus on
            ``delta + delta_bias``).
        B, C: ``(b, 4, N, H, W)``.
        norm_weight, norm_bias: the LayerNorm's ``(d,)`` affine parameters.
        eps: the LayerNorm's epsilon.
        block_d: channels per program (default :func:`cross_scan_block`, which
            must not be ``None`` then).

    Returns:
        float32 ``(b, d, H, W)``, channels-last.
    """
    b, d = x.shape[:2]
    if block_d is None:
        block_d = cross_scan_block(b, d, x.shape[2] * x.shape[3], x.device)
    if block_d >= d:
        return cross_scan_triton(x, delta, A, B, C, D, delta_bias, norm_weight, norm_bias, eps,
                                 block_d)
    y = cross_scan_triton(x, delta, A, B, C, D, delta_bias, None, None, eps, block_d)
    y = F.layer_norm(y.permute(0, 2, 3, 1), (d, ), norm_weight, norm_bias, eps)
    return y.permute(0, 3, 1, 2)
