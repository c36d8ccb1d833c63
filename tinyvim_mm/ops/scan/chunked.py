"""The ``torch`` backend: a chunked selective scan in pure PyTorch (any device,
differentiable through a hand-written backward), and the loop-free chunked form of
plain ops that runs while exporting to ONNX (any input size)."""
import math
from typing import Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..onnx_shapes import causal_mask, crop_like, pad_to_multiple, reshape
from .reference import check_inputs


def default_chunk_size(length: int) -> int:
    """The torch backend's chunk for sequences of ``length``: ``sqrt(2 L)``
    minimises its ``2 * chunk + L / chunk`` loop iterations (25 at L = 49, 115
    at L = 1050), and measured as fast as the best fixed size on CPU and GPU."""
    return max(1, round(math.sqrt(2 * length)))

def _softplus_(x: Tensor) -> Tensor:
    """In-place softplus. ``log1p(exp(-|x|))`` is taken as a compensated
    ``log(1 + e)``: torch's CPU ``log1p`` is not vectorised and made softplus
    the slowest op of the torch backend."""
    e = torch.exp(-x.abs())  # (0, 1]
    p = e + 1
    correction = (p - 1).sub_(e).div_(p)  # rounding error of 1 + e, relative to p
    return x.clamp_(min=0).add_(p.log_()).sub_(correction)


def _chunked_scan_(x: Tensor, a: Tensor, dt: Tensor, log2_A: Tensor, chunk: int,
                   reverse: bool = False) -> None:
    """Solve ``h_t = a_t * h_{t-1} + x_t`` (``h_t = a_t * h_{t+1} + x_t`` if
    ``reverse``) along dim 0 in place of ``x``, from a zero state.

    ``x``, ``a``: ``(L, b, K, N, d)`` with ``a_t = 2 ** (dt_t * log2_A)``;
    ``dt``: ``(L, b, K, 1, d)``, ``log2_A``: ``(K, N, d)`` (for each chunk's
    total decay), with ``L % chunk == 0``. Every chunk is first scanned from a
    zero state, all chunks at once (``chunk`` steps); a loop over the
    ``L / chunk`` chunks then carries the true state into each chunk, and a
    second sweep over the chunks' offsets writes all states. Exponents are
    never positive (``dt >= 0``, ``A <= 0``) and no decay is ever inverted, so
    nothing can overflow.
    """
    num_chunks = x.shape[0] // chunk
    x = x.view(num_chunks, chunk, *x.shape[1:])
    a = a.view(num_chunks, chunk, *a.shape[1:])

    steps = range(chunk - 1, -1, -1) if reverse else range(chunk)
    first = steps[0]
    if num_chunks > 1:
        end = x[:, first].clone()  # each chunk's final state from a zero start
        for t in steps[1:]:
            end = torch.addcmul(x[:, t], a[:, t], end)
        total = torch.mul(dt.view(num_chunks, chunk, *dt.shape[1:]).sum(1), log2_A).exp2_()
        h0 = torch.zeros_like(end)  # the true state entering each chunk
        chunks = range(num_chunks - 2, -1, -1) if reverse else range(1, num_chunks)
        for j in chunks:
            i = j + 1 if reverse else j - 1
            torch.addcmul(end[i], total[i], h0[i], out=h0[j])
        x[:, first].addcmul_(a[:, first], h0)
    for prev, t in zip(steps, steps[1:]):
        x[:, t].addcmul_(a[:, t], x[:, prev])


def _time_major(x: Tensor, length: int) -> Tensor:
    """``(b, ..., L)`` -> contiguous ``(length, b, rest)``, zero-padded in time."""
    b, steps = x.shape[0], x.shape[-1]
    out = x.new_empty(length, b, x[0].numel() // steps)
    out[:steps] = x.reshape(b, -1, steps).permute(2, 0, 1)
    out[steps:] = 0
    return out


def _channels_last(x: Tensor, length: int, shape: Tuple[int, ...]) -> Tensor:
    """Inverse of :func:`_time_major`: the first ``length`` steps of
    time-major ``x`` as a contiguous ``shape`` (time last)."""
    out = x.new_empty(shape)
    out.view(shape[0], -1, length)[:] = x[:length].view(length, shape[0], -1).permute(1, 2, 0)
    return out


class _ChunkedScan(torch.autograd.Function):
    """:func:`selective_scan_torch` on float32 inputs, with a hand-written
    backward that runs the chunked scan in reverse (autograd cannot go through
    the in-place scan, and is slow through an out-of-place one).

    Internally time-major, so that each time step is contiguous: per-channel
    tensors are ``(L, b, K, 1, d)``, per-direction ones ``(L, b, K, N, 1)`` and
    states and decays ``(L, b, K, N, d)``; both are kept for the backward.
    """

    @staticmethod
    def forward(ctx, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                D: Optional[Tensor], delta_bias: Optional[Tensor], delta_softplus: bool,
                chunk: int) -> Tensor:
        b, num_dirs, d_state, length = B.shape
        d = u.shape[1] // num_dirs
        chan, state = (b, num_dirs, 1, d), (b, num_dirs, d_state, 1)
        padded = math.ceil(length / chunk) * chunk
        # one zero step more than needed, so that dt[1:] is the next step's dt
        dt = _time_major(delta, padded + 1).view(-1, *chan)
        if delta_bias is not None:
            dt[:length] += delta_bias.reshape(num_dirs, 1, d)
        z = None
        if delta_softplus:
            z = dt[:length].clone()
            _softplus_(dt[:length])
        uT = _time_major(u, padded).view(-1, *chan)
        BT = _time_major(B, padded).view(-1, *state)
        CT = _time_major(C, padded).view(-1, *state)
        log2_A = (A * math.log2(math.e)).reshape(num_dirs, d, d_state).transpose(1, 2).contiguous()

        # the decays of every step (and of the zero step after the last), formed once:
        # the forward scan reads a[:padded], the backward's reverse scan a[1:]
        a = torch.mul(dt, log2_A).exp2_()  # (padded + 1, b, K, N, d)
        h = torch.mul(uT * dt[:padded], BT)  # inputs dt * u * B, then states
        _chunked_scan_(h, a[:padded], dt[:padded], log2_A, chunk)
        y = torch.matmul(CT.transpose(-1, -2), h)  # (padded, b, K, 1, d)
        y = _channels_last(y, length, u.shape)
        if D is not None:
            y.addcmul_(D[:, None], u)

        ctx.save_for_backward(u, z, dt, a, uT, log2_A, BT, CT, D, h)
        ctx.has_bias, ctx.chunk = delta_bias is not None, chunk
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y: Tensor):
        grad_y = grad_y.float()
        u, z, dt, a, uT, log2_A, BT, CT, D, h = ctx.saved_tensors
        padded, b, num_dirs, d_state, d = h.shape
        length = u.shape[-1]
        gy = _time_major(grad_y, padded).view(padded, b, num_dirs, 1, d)

        # dL/dh_t = C_t gy_t + a_{t+1} dL/dh_{t+1}: the same scan, reversed
        g = torch.mul(gy, CT)
        _chunked_scan_(g, a[1:], dt[1:], log2_A, ctx.chunk, reverse=True)
        grad_C = torch.matmul(h, gy.transpose(-1, -2))  # (padded, b, K, N, 1)
        grad_B = torch.matmul(g, (uT * dt[:padded]).transpose(-1, -2))
        grad_w = torch.matmul(BT.transpose(-1, -2), g)[:length]  # d/d(dt * u): (L, b, K, 1, d)
        # d/d(dt_t * A) = dL/dh_t * h_{t-1} * a_t for t >= 1 (h_{-1} = 0)
        g_log = torch.mul(a[1:length], g[1:length]).mul_(h[:length - 1])
        grad_A = torch.mul(g_log, dt[1:length], out=g[:length - 1]).sum((0, 1))  # (K, N, d)
        grad_dt = grad_w * uT[:length]
        grad_dt[1:] += g_log.mul_(log2_A).sum(3, keepdim=True).mul_(math.log(2))
        grad_u = _channels_last(grad_w.mul_(dt[:length]), length, u.shape)
        if z is not None:
            grad_dt.mul_(torch.sigmoid(z))
        grad_bias = grad_dt.sum((0, 1)).view(-1) if ctx.has_bias else None
        grad_D = None
        if D is not None:
            grad_u.addcmul_(grad_y, D[:, None])
            grad_D = (grad_y * u).sum((0, 2))
        grad_A = grad_A.transpose(1, 2).reshape(num_dirs * d, d_state)
        return (grad_u, _channels_last(grad_dt, length, u.shape), grad_A,
                _channels_last(grad_B, length, BT.shape[1:4] + (length, )),
                _channels_last(grad_C, length, BT.shape[1:4] + (length, )), grad_D, grad_bias,
                None, None)


#: Chunk length of the export form: a fixed number of unrolled steps, so any (dynamic)
#: ``L`` works; ``L`` is zero-padded to a multiple of it (17: measured fastest in
#: onnxruntime with 10-25 alike, 7 is 8-10 % slower, 4 is 2.4x slower).
EXPORT_CHUNK = 17
#: Exponents are clipped here before ``exp``: onnxruntime's Exp takes a ~25x slower path
#: below -87.3 (results that underflow), and ``exp(-80) ~ 2e-35`` is 0 for the scan.
_EXP_MIN = -80.0


def softplus_export(x: Tensor) -> Tensor:
    """softplus of vectorised ONNX ops (onnxruntime's Softplus kernel is scalar, ~10x
    slower than this); absolute error <= 6e-8."""
    return torch.relu(x) + torch.log(1 + torch.exp(-x.abs()))


def scan_chunked_export(u: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor,
                        chunk: Optional[int] = None) -> Tensor:
    """``<C_t, h_t>`` of the selective scan, channels-last and loop-free, for ONNX export.

    Args:
        u, dt: ``(b, K, L, d)`` (``dt`` after softplus).
        A: ``(K, N, d)``, negative.
        B, C: ``(b, K, L, N)``.
        chunk: steps per chunk (default :data:`EXPORT_CHUNK`).

    Returns:
        ``(b, K, L, d)`` (no ``D`` term).

    ``L`` is cut into ``ceil(L / chunk)`` chunks (zero-padded: ``dt = 0`` there, so the
    padding neither decays nor feeds the state). Per chunk step, all chunks at once: an
    unrolled sweep gives each chunk's end state from a zero start; the state entering
    chunk ``j`` is ``sum_{i<j} exp(A (S_start(j) - S_end(i))) end_i`` (dense over the
    chunks, ``S = cumsum(dt)``; the pairs ``i >= j`` are multiplied by an exact 0: a
    factor ``exp(-80)`` there made denormal products, which onnxruntime computes 20-30x
    slower); a second sweep runs from those states, which are then contracted with ``C``
    all at once. Per-step tensors are ``(b, K, L / chunk, N, d)``, small enough to stay in
    cache; exponents are never positive; ``O(b K N d (L + (L / chunk)^2))``. Sizes that
    depend on ``L`` are read at run time by :mod:`tinyvim_mm.ops.onnx_shapes` (any ``L``).
    """
    T = chunk or EXPORT_CHUNK
    N, d = A.shape[-2:]  # sizes of a parameter: constants in the exported graph
    z = pad_to_multiple(torch.cat([dt, dt * u, B, C], dim=-1), 2, T)
    z = reshape(z, [0, 0, -1, T, 2 * (d + N)])  # (b, K, nc, T, 2d + 2N)
    dt, w, B, C = z.split([d, d, N, N], dim=-1)
    dt, w = dt.unsqueeze(-2), w.unsqueeze(-2)  # (b, K, nc, T, 1, d)
    B, C = B.unsqueeze(-1), C.unsqueeze(-1)  # (b, K, nc, T, N, 1)
    A = A[:, None, None]  # (K, 1, 1, N, d)
    a = torch.exp(torch.clamp(A * dt, min=_EXP_MIN))  # (b, K, nc, T, N, d)
    x = w * B
    a_t, x_t = a.split(1, dim=3), x.split(1, dim=3)
    h = x_t[0]
    for t in range(1, T):  # end state of every chunk, from a zero start
        h = a_t[t] * h + x_t[t]
    tot = dt.sum(3, keepdim=True)  # (b, K, nc, 1, 1, d)
    end = tot.cumsum(2)
    gaps = (end - tot) - end.transpose(2, 3)  # (b, K, j, i, 1, d): S_start(j) - S_end(i)
    causal = causal_mask(tot, 2, trailing=2)  # (j, i, 1, 1): 1 where i < j
    carry = torch.exp(torch.clamp(A * gaps, _EXP_MIN, 0.0)) * causal  # (b, K, j, i, N, d)
    h = (carry * h.transpose(2, 3)).sum(3, keepdim=True)  # the state entering each chunk
    hs = []
    for t in range(T):
        h = a_t[t] * h + x_t[t]
        hs.append(h)
    ys = (torch.cat(hs, 3) * C).sum(-2)  # (b, K, nc, T, d): one product, not one per step
    return crop_like(reshape(ys, [0, 0, -1, d]), u, dims=(2, ))


def selective_scan_export(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                          D: Optional[Tensor], delta_bias: Optional[Tensor],
                          delta_softplus: bool) -> Tensor:
    """The scan of plain differentiable ops and no data-dependent loop, for ONNX export
    (any ``L``: dynamic input sizes): :func:`scan_chunked_export` on channels-last views.
    Same arguments and result as the other backends (float32)."""
    num_dirs, channels = B.shape[1], u.shape[1]
    u, A = u.float(), A.float()
    dt = delta.float()
    if delta_bias is not None:
        dt = dt + delta_bias.float()[:, None]
    if delta_softplus:
        dt = softplus_export(dt)

    def channels_last(t: Tensor) -> Tensor:  # (b, K*d, L) -> (b, K, L, d)
        return reshape(t, [0, num_dirs, channels // num_dirs, -1]).transpose(2, 3)

    y = scan_chunked_export(channels_last(u), channels_last(dt),
                            A.unflatten(0, (num_dirs, -1)).transpose(1, 2),
                            B.float().transpose(2, 3), C.float().transpose(2, 3))
    y = reshape(y.transpose(2, 3), [0, channels, -1])  # (b, K*d, L)
    if D is not None:
        y = y + D.float()[:, None] * u
    return y


def selective_scan_torch(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                         D: Optional[Tensor] = None, delta_bias: Optional[Tensor] = None,
                         delta_softplus: bool = True,
                         chunk_size: Optional[int] = None) -> Tensor:
    """Pure-PyTorch selective scan (any device, differentiable, float32
    accumulation). ``L`` is cut into ``ceil(L / chunk_size)`` chunks of equal
    length (at most ``chunk_size``; the last one zero-padded): the states
    are swept over the ``chunk_size`` offsets of all chunks at once and carried
    across the ``L / chunk_size`` chunks, so the Python loops run
    ``O(chunk_size + L / chunk_size)`` times, not ``L`` (``chunk_size=None``:
    :func:`default_chunk_size`, ``O(sqrt(L))`` iterations). Decays are only ever
    multiplied, never inverted (stable for ``dt >= 0``, ``A <= 0``).
    While exporting to ONNX, the loop-free chunked form of
    :func:`scan_chunked_export` runs instead. Returns ``(b, K*d, L)`` in ``u``'s dtype."""
    check_inputs(u, delta, A, B, C, D, delta_bias)
    length = u.shape[-1]
    if chunk_size is None:
        chunk_size = default_chunk_size(length)
    if chunk_size < 1:
        raise ValueError(f'chunk_size must be >= 1, got {chunk_size}')
    if torch.onnx.is_in_onnx_export():
        return selective_scan_export(u, delta, A, B, C, D, delta_bias,
                                     delta_softplus).to(u.dtype)
    chunk = math.ceil(length / math.ceil(length / chunk_size))
    optional = [None if t is None else t.float() for t in (D, delta_bias)]
    with torch.autocast(u.device.type, enabled=False):  # float32 math under AMP too
        y = _ChunkedScan.apply(u.float(), delta.float(), A.float(), B.float(), C.float(),
                               *optional, delta_softplus, chunk)
    return y.to(u.dtype)
