"""The Laplace mixer's element-wise work around its scan in two Triton kernels
(inference).

Between its depth-wise convs and ``out_proj`` the mixer runs, conv by conv: SiLU, the
channel split, average pooling of the low-frequency part, nearest upsampling and a
subtraction (the Laplace residual), bilinear upsampling of the scan's output and an
addition, the high-frequency part's depth-wise 3x3 conv, a cast and a concatenation:
about ten launches and as many passes over full-resolution tensors. Here:

- :func:`silu_avg_pool`: ``avg_pool2d(silu(t[:, :low]), k, ceil_mode=True)``, channels
  last (what the scan's per-pixel projection reads);
- :func:`mixer_merge`: the whole tensor ``out_proj`` takes, from the pre-activation
  ``t``, the pooled map and the scan's output, in one pass (SiLU recomputed where it is
  read).
"""
import torch
from torch import Tensor

from ..device import device_guard, kernel_unsupported, next_pow2

__all__ = ['fused_mixer_unsupported', 'mixer_merge', 'silu_avg_pool']


def _channel_block(*groups: int) -> int:
    """Channels per program for channel ``groups`` each cut into blocks: of 16, 32 and
    64 the one padding the fewest channels (the wider on ties); narrower groups get
    their own width rounded up to a power of 2."""
    if max(groups) < 16:
        return max(4, next_pow2(max(groups)))
    return min((64, 32, 16), key=lambda block: sum(-(-g // block) * block for g in groups))


def _pixel_block(block_c: int) -> int:
    """Pixels per program: 2048-element tiles."""
    return 2048 // block_c


def _pooled_size(size: int, k: int) -> int:
    return -(-size // k)


def fused_mixer_unsupported(t: Tensor) -> str:
    """``''`` if the fused mixer kernels can run on ``t``, else the reason."""
    reason = kernel_unsupported(t)
    if not reason and t.numel() >= 2**31:
        reason = f'{t.numel()} elements: the kernels index with 32 bits'
    return reason


@torch.library.custom_op('tinyvim::silu_avg_pool', mutates_args=())
def _silu_avg_pool(t: Tensor, k: int) -> Tensor:
    from .kernels import silu_pool_kernel
    b, c, height, width = t.shape
    h, w = _pooled_size(height, k), _pooled_size(width, k)
    out = torch.empty((b, c, h, w), device=t.device, dtype=t.dtype,
                      memory_format=torch.channels_last)
    pixels = b * h * w
    block_c = _channel_block(c)
    block_p = _pixel_block(block_c)
    with device_guard(t):
        silu_pool_kernel[(-(-pixels // block_p), -(-c // block_c))](
            t, out, pixels, c, height, width, h, w, *t.stride(), *out.stride(), K=k,
            BLOCK_P=block_p, BLOCK_C=block_c, num_warps=4)
    return out


@_silu_avg_pool.register_fake
def _(t, k):
    b, c, height, width = t.shape
    return torch.empty((b, c, _pooled_size(height, k), _pooled_size(width, k)),
                       device=t.device, dtype=t.dtype, memory_format=torch.channels_last)


@torch.library.custom_op('tinyvim::mixer_merge', mutates_args=())
def _mixer_merge(t: Tensor, pooled: Tensor, y: Tensor, weight: Tensor, bias: Tensor,
                 k: int) -> Tensor:
    from .kernels import merge_kernel
    b, c, height, width = t.shape
    low, h, w = y.shape[1:]
    out = torch.empty_like(t)
    pixels = b * height * width
    block_c = _channel_block(low, c - low)
    block_p = _pixel_block(block_c)
    blocks = -(-low // block_c) + -(-(c - low) // block_c)
    with device_guard(t):
        merge_kernel[(-(-pixels // block_p), blocks)](
            t, pooled, y, weight, bias, out, pixels, c, low, height, width, h, w, 1.0 / k,
            *t.stride(), *pooled.stride(), *y.stride(), *out.stride(), K=k,
            KS=weight.shape[-1], BLOCK_P=block_p, BLOCK_C=block_c, num_warps=4)
    return out


@_mixer_merge.register_fake
def _(t, pooled, y, weight, bias, k):
    return torch.empty_like(t)


def _check_4d(name: str, t: Tensor) -> None:
    if t.dim() != 4:
        raise ValueError(f'{name} must be (B, C, H, W), got shape {tuple(t.shape)}')


def silu_avg_pool(t: Tensor, k: int) -> Tensor:
    """``F.avg_pool2d(F.silu(t), k, ceil_mode=True)`` in one kernel (forward only).

    Args:
        t: ``(B, C, H, W)``, any strides (e.g. a channel slice), float32 / float16 /
            bfloat16.
        k: pooling factor (``1``: ``silu(t)``).

    Returns:
        ``(B, C, ceil(H / k), ceil(W / k))`` channels-last, in ``t``'s dtype (float32
        sums).
    """
    _check_4d('t', t)
    if k < 1:
        raise ValueError(f'pooling factor must be >= 1, got {k}')
    return _silu_avg_pool(t, k)


def mixer_merge(t: Tensor, pooled: Tensor, y: Tensor, weight: Tensor, bias: Tensor,
                k: int) -> Tensor:
    """The Laplace mixer's input to ``out_proj``, in one kernel (forward only)::

        a = silu(t); low, high = a[:, :d], a[:, d:]
        out = cat([up_bilinear(y) + low - up_nearest(pooled), dw(high)], 1)

    with both upsamplings by ``k`` cropped to ``(H, W)`` (``k = 1``: ``out[:, :d] = y``)
    and ``dw`` the depth-wise conv ``weight``, ``bias`` (odd size, zero padding).

    Args:
        t: ``(B, C, H, W)``, the mixer's activation before its SiLU.
        pooled: ``(B, d, ceil(H / k), ceil(W / k))``, ``avg_pool2d(low, k, ceil_mode=True)``
            (see :func:`silu_avg_pool`).
        y: the scan's (layer-normed) output, shaped like ``pooled``; any float dtype.
        weight, bias: ``(C - d, 1, s, s)`` and ``(C - d,)``.
        k: the pooling factor.

    Returns:
        ``(B, C, H, W)`` in ``t``'s dtype and memory format (float32 arithmetic).
    """
    for name, tensor in (('t', t), ('pooled', pooled), ('y', y)):
        _check_4d(name, tensor)
    if k < 1:
        raise ValueError(f'pooling factor must be >= 1, got {k}')
    b, c, height, width = t.shape
    low = y.shape[1]
    grid = (b, low, _pooled_size(height, k), _pooled_size(width, k))
    if tuple(y.shape) != grid or tuple(pooled.shape) != grid:
        raise ValueError(f'pooled and y must be {grid} for t of shape {tuple(t.shape)} and '
                         f'k={k}, got {tuple(pooled.shape)} and {tuple(y.shape)}')
    high = (c - low, 1)
    if (not 0 < low < c or tuple(weight.shape[:2]) != high or weight.dim() != 4
            or weight.shape[2] != weight.shape[3] or weight.shape[2] % 2 == 0
            or tuple(bias.shape) != (c - low, )):
        raise ValueError(f'the depth-wise conv must be an odd square ({c - low}, 1, s, s) '
                         f'with a ({c - low},) bias for {c} channels of which {low} are '
                         f'scanned, got {tuple(weight.shape)} and {tuple(bias.shape)}')
    return _mixer_merge(t, pooled, y, weight.contiguous(), bias.contiguous(), k)
