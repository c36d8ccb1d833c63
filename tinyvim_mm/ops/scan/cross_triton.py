"""The Laplace mixer's whole 2-D cross selective scan, trainable, in Triton.

:func:`cross_selective_scan_train` computes what the mixer's
``cross_merge(selective_scan(cross_scan(x), ...))`` does (4 directions: row-major,
column-major and both reversed; summed back on the grid; no LayerNorm) and its
gradients, without mamba-ssm's compiled extension and without cross-scanned copies
of the inputs: every kernel reads ``x``, ``delta``, ``B``, ``C`` (and ``dy``) at
the pixels of the steps it scans, through their strides. ``delta``, ``B`` and ``C``
come as the mixer makes them, one per-pixel projection ``(b, H, W, 4(d + 2N))``
(:func:`split_projection`), whose gradient the backward kernels write in place: no
per-view gradients for autograd to scatter back into it.

Algorithm (chunked scan; ``L = H*W`` cut into chunks of ``T`` steps). Per direction
``k``, channel ``c``, state ``n`` and step ``t`` (``dt = softplus(delta + bias)``,
``a_t = exp(dt_t A)``)::

    h_t = a_t h_{t-1} + dt_t u_t B_t,   y_t = <C_t, h_t> + D u_t

Forward, 3 kernel launches (2 when ``L`` fits one chunk: no carry):

1. ``fwd_chunk_kernel``, one program per (chunk, channel block, b*4 + k): the state
   each chunk ends with from a zero start, in closed form
   (``sum_t exp(A (dt_{t+1} + ..)) dt_t u_t B_t``), and the chunk's ``sum dt``.
   Direction-0 programs also write ``y = (sum_k D_k) x``.
2. ``chunk_carry_kernel``, one program per (channel block, b*4 + k): the state
   entering every chunk, by an associative scan over the chunks.
3. ``fwd_scan_kernel``, one program per chunk etc.: the chunk's states from its
   entering state by ``tl.associative_scan`` along the chunk, ``y += <C, h>``.

Backward, 3 kernel launches (2 for one chunk) and 3 small sums: ``bwd_chunk_kernel``
(each chunk's contribution to the adjoint flowing out of its first step; also
initialises ``dx``, ``dB``, ``dC``), the same carry kernel run right to left, and
``bwd_scan_kernel``, which recomputes the chunk's states (forward scan from the
saved entering state) and adjoints (reverse scan from the carried one) and forms
every gradient. ``dA``, ``dD`` and ``delta_bias``'s gradient leave it as
per-(batch, chunk) partial sums that two ``torch.sum`` passes reduce (rows in about
``sqrt(rows)`` groups, then the groups: a single pass over ``b * L / T`` rows runs
them one after another; deterministic, and no contention between the programs
sharing a channel).

Memory: the forward saves its inputs (float32, see "Precision") and the states
entering the chunks, ``(4b, L/T, d, N)`` float32, where a scan keeping every state
(like the torch backend) holds ``(b, 4, d, N, L)``: ``T`` times less (6.4 MiB
instead of 103 MiB at b=2, d=96, L=4200, N=8 with the default T=16), and no
``(b, 4, d, L)`` cross-scanned copies of ``x``, ``delta``, ``y`` or their gradients.

Sums over directions (``y``, ``dx``) and over channel blocks (``dB``, ``dC``) are
float32 ``tl.atomic_add``: each element receives only 4 (directions) or ``d / BLOCK_D``
(channel blocks) adds from different programs, so contention is negligible, and
per-direction buffers would cost a ``(b, 4, d, L)`` tensor and another pass over it.
The price: the order of those few fp32 additions, hence the last bit of
``y``, ``dx``, ``dB``, ``dC``, varies from run to run (as in mamba-ssm's backward).
Under ``torch.use_deterministic_algorithms(True)`` (MMEngine's
``randomness.deterministic``) each direction (``y``, ``dx``) and each channel block
(``dB``, ``dC``) gets its own zero-initialised part, every element receives a single
add, and the parts are summed afterwards by ``torch.sum``: the same bits on every run,
for up to ``4x`` the memory of those outputs and one more pass over them.

Precision: the kernels compute in float32; half-precision ``x`` and ``proj``
(autocast) are widened to float32 copies before them. Measured on an H200 (this op's
previous form, which took ``delta``, ``B``, ``C`` as three views; the
``python -m tinyvim_mm.ops.scan.cross_triton_bench`` shapes, forward + backward kernel
time): the kernels reading 16-bit inputs took 1.3-1.5x their float32 time (the
``delta`` / ``B`` / ``C`` gathers, in either layout), more than the casts cost: with
them, 12-38 % less GPU time per call in bf16 and fp16 (e.g. 0.665 -> 0.527 ms at
b=2, d=96, 60x70; 1.086 -> 0.749 ms at b=256, d=96, 7x7), for 1.3-1.7x the call's
peak memory (its saved inputs are the float32 copies: 71 instead of 50 MiB at 60x70).
"""
import math
from typing import Optional, Tuple

import torch
from torch import Tensor

from ..device import device_guard, next_pow2

NUM_DIRECTIONS = 4
#: Sequences up to this many steps run as one chunk (no carry pass; 2 launches each way).
MAX_SINGLE_CHUNK = 64
#: Steps per chunk for longer sequences: on an H200 at b=2, d=96, L=1050 and 4200,
#: 16-step chunks (and more channels per program) gave the fastest forward + backward.
LONG_CHUNK = 16
#: Elements of a program's ``(T, BLOCK_D, N)`` tiles (32 a thread with :func:`_num_warps`;
#: twice as many made the backward spill registers).
FWD_TILE = 2048
BWD_TILE = 2048
#: Chunks per iteration of the carry kernel's loop, and its tile size.
CARRY_CHUNKS = 64
CARRY_TILE = 2048

__all__ = ['cross_selective_scan_train', 'default_chunk_size', 'split_projection']


def default_chunk_size(length: int) -> int:
    """Steps per chunk for sequences of ``length``: ``length`` rounded up to a power of 2
    up to :data:`MAX_SINGLE_CHUNK` (one chunk), else :data:`LONG_CHUNK`. Takes symbolic
    sizes too (``torch.compile`` with dynamic shapes)."""
    if length > MAX_SINGLE_CHUNK:
        return LONG_CHUNK
    chunk = MAX_SINGLE_CHUNK
    while chunk > 1 and chunk // 2 >= length:
        chunk //= 2
    return chunk


def _block_d(d: int, chunk: int, block_n: int, tile: int) -> int:
    """Channels per program: as many as fit ``tile`` elements of ``(chunk, BLOCK_D,
    N)`` tiles, at most ``d`` rounded up to a power of 2."""
    return max(1, min(next_pow2(d), tile // (chunk * block_n)))


def _num_warps(elements: int) -> int:
    """Warps for a program of ``elements``-element tiles: 32 elements a thread, 1 to 8 warps
    (fastest on an H200 in a sweep of 2-8 warps at 1024-8192 elements)."""
    return max(1, min(8, elements // 1024))


def _strides(t: Tensor) -> Tuple[int, ...]:
    return tuple(t.stride())


def _accumulator(parts: int, shape: Tuple[int, ...], device: torch.device) -> Tensor:
    """A float32 output of ``shape`` that kernels add to: uninitialised if in one part
    (the kernels write it before adding to it), else ``(parts, *shape)`` zeros (one part
    per direction or channel block, summed by :func:`_summed`; a kernel writes part 0)."""
    if parts == 1:
        return torch.empty(shape, device=device, dtype=torch.float32)
    return torch.zeros((parts, *shape), device=device, dtype=torch.float32)


def _part_stride(t: Tensor, parts: int) -> int:
    """Elements between the parts of an :func:`_accumulator` (0: a single part)."""
    return t[0].numel() if parts > 1 else 0


def _summed(t: Tensor, parts: int) -> Tensor:
    return t.sum(0) if parts > 1 else t


def _carry(end: Tensor, dtsum: Tensor, A: Tensor, out: Tensor, d: int, n_state: int,
           block_n: int, reverse: bool) -> None:
    """Launch ``chunk_carry_kernel`` over ``end``, ``dtsum`` (``(4b, chunks, d[, N])``)."""
    from .cross_triton_kernels import chunk_carry_kernel
    rows, n_chunks = end.shape[:2]
    block_c = min(next_pow2(n_chunks), CARRY_CHUNKS)
    block_d = max(1, min(next_pow2(d), CARRY_TILE // (block_c * block_n)))
    chunk_carry_kernel[(-(-d // block_d), rows)](
        end, dtsum, A, out, d, n_chunks, N=n_state, BLOCK_N=block_n, BLOCK_C=block_c,
        BLOCK_D=block_d, REVERSE=reverse,
        num_warps=_num_warps(block_c * block_d * block_n))


def split_projection(proj: Tensor, d: int, n_state: int) -> Tuple[Tensor, Tensor, Tensor]:
    """``delta`` ``(b, 4, d, H, W)``, ``B`` and ``C`` ``(b, 4, N, H, W)``: views of the
    mixer's per-pixel projection ``proj`` ``(b, H, W, 4(d + 2N))``, laid out as
    ``[delta (4, d) | B (4, N) | C (4, N)]`` along its last dimension."""
    k = NUM_DIRECTIONS

    def part(start: int, width: int) -> Tensor:
        return proj[..., start:start + k * width].unflatten(-1, (k, width)).permute(0, 3, 4, 1, 2)
    return part(0, d), part(k * d, n_state), part(k * (d + n_state), n_state)


def _param_rows(rows: int) -> Tuple[int, int]:
    """``(groups, per_group)`` of the per-chunk partial sums' ``rows``: about
    ``sqrt(rows)`` each, so that both reduction passes have many outputs and few steps."""
    groups = max(1, math.isqrt(rows))
    return groups, -(-rows // groups)


@torch.library.custom_op('tinyvim::cross_scan_train_fwd', mutates_args=())
def _cross_scan_fwd(x: Tensor, proj: Tensor, A: Tensor, D: Tensor, delta_bias: Tensor,
                    delta_softplus: bool, chunk: int) -> Tuple[Tensor, Tensor]:
    """Forward op: ``y`` (float32 ``(b, d, H, W)``) and the states entering each chunk
    (float32 ``(4b, chunks, d, N)``; empty for a single chunk), kept for the backward."""
    from .cross_triton_kernels import fwd_chunk_kernel, fwd_scan_kernel
    b, d, height, width = x.shape
    length, n_state = height * width, A.shape[1]
    delta, B, C = split_projection(proj, d, n_state)
    n_chunks = -(-length // chunk)
    block_n = next_pow2(n_state)
    A, D, delta_bias = A.contiguous(), D.contiguous(), delta_bias.contiguous()
    # deterministic: one output per direction (each element added to once), summed after
    parts = NUM_DIRECTIONS if torch.are_deterministic_algorithms_enabled() else 1
    y = _accumulator(parts, (b, d, height, width), x.device)
    carried = n_chunks > 1
    states = x.new_empty((b * NUM_DIRECTIONS, n_chunks, d, n_state) if carried else (0, ),
                         dtype=torch.float32)
    end = torch.empty_like(states)
    dtsum = x.new_empty(states.shape[:3] if carried else (0, ), dtype=torch.float32)
    block_d = _block_d(d, chunk, block_n, FWD_TILE)
    grid = (n_chunks, -(-d // block_d), b * NUM_DIRECTIONS)
    meta = dict(N=n_state, BLOCK_N=block_n, BLOCK_T=chunk, BLOCK_D=block_d,
                SOFTPLUS=delta_softplus, num_warps=_num_warps(chunk * block_d * block_n))
    with device_guard(x):
        fwd_chunk_kernel[grid](x, delta, B, A, D, delta_bias, y, end, dtsum, d, length, height,
                               width, n_chunks, *_strides(x), *_strides(delta), *_strides(B),
                               STATES=carried, **meta)
        if carried:
            _carry(end, dtsum, A, states, d, n_state, block_n, reverse=False)
        fwd_scan_kernel[grid](x, delta, B, C, A, delta_bias, states, y, d, length, height, width,
                              n_chunks, _part_stride(y, parts), *_strides(x),
                              *_strides(delta), *_strides(B), *_strides(C), CARRY=carried,
                              **meta)
    return _summed(y, parts), states


@_cross_scan_fwd.register_fake
def _(x, proj, A, D, delta_bias, delta_softplus, chunk):
    b, d, height, width = x.shape
    n_chunks = -(-(height * width) // chunk)
    y = x.new_empty((b, d, height, width), dtype=torch.float32)
    shape = (b * NUM_DIRECTIONS, n_chunks, d, A.shape[1]) if n_chunks > 1 else (0, )
    return y, x.new_empty(shape, dtype=torch.float32)


@torch.library.custom_op('tinyvim::cross_scan_train_bwd', mutates_args=())
def _cross_scan_bwd(x: Tensor, proj: Tensor, A: Tensor, D: Tensor, delta_bias: Tensor,
                    states: Tensor, grad_y: Tensor, delta_softplus: bool,
                    chunk: int) -> Tuple[Tensor, Tensor, Tensor]:
    """Backward op: the gradients of ``x`` and ``proj`` (contiguous, in their inputs'
    shapes and dtypes) and, float32 ``(4d * (N + 2),)``, those of ``A`` (``(4d, N)``
    flattened), ``D`` and ``delta_bias`` one after another (split by the caller: a
    custom op's outputs must not alias one another)."""
    from .cross_triton_kernels import bwd_chunk_kernel, bwd_scan_kernel
    b, d, height, width = x.shape
    length, n_state = height * width, A.shape[1]
    delta, B, C = split_projection(proj, d, n_state)
    n_chunks = -(-length // chunk)
    block_n = next_pow2(n_state)
    A32, D, delta_bias = A.contiguous(), D.contiguous(), delta_bias.contiguous()
    carried = n_chunks > 1
    f32 = dict(device=x.device, dtype=torch.float32)
    block_d = _block_d(d, chunk, block_n, BWD_TILE)
    # deterministic: dx by direction, dB and dC by channel block (each element added to
    # once), summed after
    deterministic = torch.are_deterministic_algorithms_enabled()
    dx_parts = NUM_DIRECTIONS if deterministic else 1
    dbc_parts = -(-d // block_d) if deterministic else 1
    dx = _accumulator(dx_parts, (b, d, height, width), x.device)
    # every element is written: ddelta stored, dB / dC zeroed then added to
    dproj = torch.empty(proj.shape, **f32)
    ddelta, dB_out, dC_out = split_projection(dproj, d, n_state)
    dB, dC = dB_out, dC_out
    if dbc_parts > 1:
        dB, dC = (_accumulator(dbc_parts, B.shape, x.device) for _ in range(2))
    channels = NUM_DIRECTIONS * d
    rows = b * n_chunks
    groups, per_group = _param_rows(rows)
    dparam = torch.empty((groups * per_group, channels * (n_state + 2)), **f32)
    dparam[rows:].zero_()
    end = torch.empty_like(states)
    dtsum = torch.empty(states.shape[:3] if carried else (0, ), **f32)
    dcarry = torch.empty_like(states)
    grid = (n_chunks, -(-d // block_d), b * NUM_DIRECTIONS)
    meta = dict(N=n_state, BLOCK_N=block_n, BLOCK_T=chunk, BLOCK_D=block_d,
                SOFTPLUS=delta_softplus, num_warps=_num_warps(chunk * block_d * block_n))
    out_strides = _strides(dB[0] if dbc_parts > 1 else dB)  # dC's are the same
    with device_guard(x):
        bwd_chunk_kernel[grid](grad_y, delta, C, A32, D, delta_bias, dx, dB, dC, end, dtsum, d,
                               length, height, width, n_chunks, *_strides(grad_y),
                               *_strides(delta), *_strides(C), *out_strides, STATES=carried,
                               **meta)
        if carried:
            _carry(end, dtsum, A32, dcarry, d, n_state, block_n, reverse=True)
        bwd_scan_kernel[grid](x, delta, B, C, A32, delta_bias, grad_y, states, dcarry, dx, ddelta,
                              dB, dC, dparam, d, length, height, width, n_chunks,
                              _part_stride(dx, dx_parts), _part_stride(dB, dbc_parts),
                              *_strides(x), *_strides(delta), *_strides(B), *_strides(C),
                              *_strides(grad_y), *_strides(ddelta), *out_strides,
                              CARRY=carried, **meta)
    if dbc_parts > 1:
        dB_out.copy_(dB.sum(0))
        dC_out.copy_(dC.sum(0))
    dparams = dparam.view(groups, per_group, -1).sum(1).sum(0)
    return _summed(dx, dx_parts).to(x.dtype), dproj.to(proj.dtype), dparams


@_cross_scan_bwd.register_fake
def _(x, proj, A, D, delta_bias, states, grad_y, delta_softplus, chunk):
    return (x.new_empty(x.shape), proj.new_empty(proj.shape),
            A.new_empty((A.shape[0] * (A.shape[1] + 2), ), dtype=torch.float32))


def _setup_context(ctx, inputs, output) -> None:
    *tensors, delta_softplus, chunk = inputs
    ctx.save_for_backward(*tensors, output[1])
    ctx.delta_softplus, ctx.chunk = delta_softplus, chunk


def _backward(ctx, grad_y: Tensor, grad_states: Optional[Tensor]):
    x, proj, A, D, delta_bias, states = ctx.saved_tensors
    dx, dproj, dparams = torch.ops.tinyvim.cross_scan_train_bwd(
        x, proj, A, D, delta_bias, states, grad_y, ctx.delta_softplus, ctx.chunk)
    channels, n_state = A.shape
    dA, dD, dbias = dparams.split([channels * n_state, channels, channels])
    return (dx, dproj, dA.view(channels, n_state).to(A.dtype), dD.to(D.dtype),
            dbias.to(delta_bias.dtype), None, None)


_cross_scan_fwd.register_autograd(_backward, setup_context=_setup_context)


def _check(x: Tensor, proj: Tensor, A: Tensor, D: Tensor, delta_bias: Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f'x must be (b, d, H, W), got shape {tuple(x.shape)}')
    if A.dim() != 2:
        raise ValueError(f'A must be (4d, N), got shape {tuple(A.shape)}')
    b, d, height, width = x.shape
    n_state = A.shape[1]
    expected = {
        'proj': (proj, (b, height, width, NUM_DIRECTIONS * (d + 2 * n_state))),
        'A': (A, (NUM_DIRECTIONS * d, n_state)),
        'D': (D, (NUM_DIRECTIONS * d, )),
        'delta_bias': (delta_bias, (NUM_DIRECTIONS * d, )),
    }
    for name, (t, shape) in expected.items():
        if tuple(t.shape) != shape:
            raise ValueError(f'{name} must have shape {shape} for x of shape '
                             f'{tuple(x.shape)} and N = {n_state}, got {tuple(t.shape)}')


def cross_selective_scan_train(x: Tensor, proj: Tensor, A: Tensor, D: Tensor,
                               delta_bias: Tensor, delta_softplus: bool = True,
                               chunk_size: Optional[int] = None) -> Tensor:
    """4-direction 2-D selective scan summed on the grid, differentiable (see the module
    docstring); one opaque op under ``torch.compile``. Runs on CUDA tensors (on CPU
    ones only under ``TRITON_INTERPRET=1``).

    Args:
        x: ``(b, d, H, W)``, the scanned input ``u`` of every direction; any strides,
            float32, float16 or bfloat16 (half precision is widened, see above).
        proj: ``(b, H, W, 4(d + 2N))``, each pixel's ``delta`` of the 4 directions, then
            their ``B``, then their ``C`` (:func:`split_projection`); any strides and
            dtype, like ``x``.
        A: ``(4d, N)``, negative; D, delta_bias: ``(4d,)``; float32.
        delta_softplus: ``dt = softplus(delta + delta_bias)``, else ``delta + delta_bias``.
        chunk_size: steps per chunk, a power of 2 (default :func:`default_chunk_size`).

    Returns:
        float32 ``(b, d, H, W)``, contiguous: the sum of the 4 directions' outputs,
        each mapped back to its pixels. Gradients come back in the inputs' dtypes.
    """
    _check(x, proj, A, D, delta_bias)
    b, d, height, width = x.shape
    chunk = chunk_size or default_chunk_size(height * width)
    if chunk & (chunk - 1):
        raise ValueError(f'chunk_size must be a power of 2, got {chunk}')
    x, proj = x.float(), proj.float()  # see "Precision" above
    return _cross_scan_fwd(x, proj, A, D, delta_bias, delta_softplus, chunk)[0]
