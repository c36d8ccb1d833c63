"""Selective scan (Mamba's S6 recurrence) with interchangeable backends.

Shapes follow Mamba/VMamba, with ``K`` scan directions of ``d`` channels each
sharing one ``B``/``C`` per direction:

- ``u``, ``delta``: ``(b, K*d, L)``
- ``A``: ``(K*d, N)``, already negative (``A = -exp(A_logs)``)
- ``B``, ``C``: ``(b, K, N, L)``
- ``D``, ``delta_bias``: ``(K*d,)`` or ``None``

For channel ``c`` (direction ``k = c // d``) and step ``t``, with ``h_0 = 0``::

    dt  = softplus(delta + delta_bias)            (softplus if delta_softplus)
    h_t = exp(dt * A) * h_{t-1} + dt * B_t * u_t  (h: an N-vector)
    y_t = <C_t, h_t> + D * u_t

Every backend accumulates in float32 and returns ``u``'s dtype.

Backends: ``'cuda'`` (mamba-ssm's compiled ``selective_scan_cuda`` extension,
as ``torch.library`` custom ops: differentiable and opaque to ``torch.compile``),
``'triton'`` (Triton forward kernels, see :mod:`.triton_scan`; where gradients
are needed, or where Triton cannot run, it falls back to what ``'auto'``
picks, the latter with a one-line log), ``'torch'`` (chunked pure PyTorch, any
device; a dense form of plain ops while exporting to ONNX), ``'ref'`` (a
per-step loop, for tests and benchmarks) and ``'auto'`` (``'cuda'`` when it
can run, else ``'torch'``).
"""
import math
from typing import List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from .support import SCAN_MIN_CAPABILITY, device_key, log_once, triton_unsupported
from .triton_scan import selective_scan_triton

try:  # mamba-ssm's kernel, imported alone: ``import mamba_ssm`` pulls in Triton and transformers
    import selective_scan_cuda
except ImportError as exc:
    selective_scan_cuda = None
    _CUDA_IMPORT_ERROR: Optional[ImportError] = exc
else:
    _CUDA_IMPORT_ERROR = None

BACKENDS = ('auto', 'cuda', 'torch', 'ref', 'triton')


def default_chunk_size(length: int) -> int:
    """The torch backend's chunk for sequences of ``length``: ``sqrt(2 L)``
    minimises its ``2 * chunk + L / chunk`` loop iterations (25 at L = 49, 115
    at L = 1050), and measured as fast as the best fixed size on CPU and GPU."""
    return max(1, round(math.sqrt(2 * length)))

__all__ = [
    'BACKENDS', 'default_chunk_size', 'SelectiveScanCuda', 'available_backends',
    'resolve_backend', 'selective_scan', 'selective_scan_flops',
    'selective_scan_ref', 'selective_scan_torch'
]


def selective_scan_flops(batch: int, length: int, channels: int, d_state: int,
                         with_D: bool = True) -> int:
    """FLOPs of the reference recurrence, VMamba's convention:
    ``9 * batch * length * channels * d_state``, plus ``batch * channels * length``
    for the ``D`` skip. ``channels`` is ``K*d``."""
    flops = 9 * batch * length * channels * d_state
    if with_D:
        flops += batch * channels * length
    return flops


def available_backends() -> List[str]:
    """Backends usable on this machine, best first (``'auto'`` not included):
    ``'cuda'`` for training, ``'triton'`` for inference on the current GPU."""
    on_gpu = torch.cuda.is_available()
    cuda = ['cuda'] if selective_scan_cuda is not None and on_gpu else []
    triton = ['triton'] if on_gpu and not triton_unsupported(*device_key('cuda'),
                                                             torch.float32) else []
    return cuda + triton + ['torch', 'ref']


def resolve_backend(name: str, device: Union[torch.device, str],
                    dtype: torch.dtype = torch.float32) -> str:
    """Map a backend name (``'auto'`` included) to the backend that will run
    for ``dtype`` tensors on ``device``. ``'triton'`` where Triton cannot run
    (no triton, not CUDA, compute capability < 7.0, bf16 before 8.0) becomes
    what ``'auto'`` picks, with a one-line log.

    Raises:
        ValueError: unknown name, or ``'cuda'`` for tensors not on a CUDA device.
        ImportError: ``'cuda'`` without the ``selective_scan_cuda`` extension.
    """
    if name not in BACKENDS:
        raise ValueError(f'Unknown selective-scan backend {name!r}; valid names: '
                         f"{', '.join(repr(b) for b in BACKENDS)}.")
    on_cuda = torch.device(device).type == 'cuda'
    if name == 'auto':
        return 'cuda' if on_cuda and selective_scan_cuda is not None else 'torch'
    if name == 'triton':
        reason = triton_unsupported(*device_key(device), dtype, SCAN_MIN_CAPABILITY)
        if not reason:
            return 'triton'
        fallback = resolve_backend('auto', device)
        log_once(f'tinyvim_mm: Triton selective scan unavailable ({reason}); using {fallback!r}')
        return fallback
    if name == 'cuda':
        if selective_scan_cuda is None:
            raise ImportError(
                "The 'cuda' selective-scan backend needs the compiled `selective_scan_cuda` "
                'extension, which ships with the `mamba-ssm` package built with CUDA '
                "(pip install mamba-ssm); use backend='torch' otherwise. "
                f'Import error: {_CUDA_IMPORT_ERROR}') from _CUDA_IMPORT_ERROR
        if not on_cuda:
            raise ValueError("The 'cuda' selective-scan backend needs tensors on a CUDA "
                             f'device, got {device}; use backend=\'torch\' or \'auto\'.')
    return name


def _check_inputs(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                  D: Optional[Tensor], delta_bias: Optional[Tensor]
                  ) -> Tuple[int, int, int, int, int]:
    """Validate shapes; return ``(b, K, d, N, L)``."""
    if u.dim() != 3:
        raise ValueError(f'u must be (b, K*d, L), got shape {tuple(u.shape)}')
    if not u.is_floating_point():
        raise ValueError(f'u must be a floating-point tensor, got {u.dtype}')
    b, channels, length = u.shape
    if delta.shape != u.shape:
        raise ValueError(f'delta must have the shape of u {tuple(u.shape)}, '
                         f'got {tuple(delta.shape)}')
    if A.dim() != 2 or A.shape[0] != channels:
        raise ValueError(f'A must be (K*d, N) = ({channels}, N), got {tuple(A.shape)}')
    d_state = A.shape[1]
    if B.dim() != 4 or B.shape[0] != b or B.shape[2:] != (d_state, length):
        raise ValueError(f'B must be (b, K, N, L) = ({b}, K, {d_state}, {length}), '
                         f'got {tuple(B.shape)}')
    if C.shape != B.shape:
        raise ValueError(f'C must have the shape of B {tuple(B.shape)}, got {tuple(C.shape)}')
    num_dirs = B.shape[1]
    if num_dirs == 0 or channels % num_dirs:
        raise ValueError(f'{channels} channels cannot be split into K={num_dirs} '
                         "directions (K is B's dim 1)")
    for name, t in (('D', D), ('delta_bias', delta_bias)):
        if t is not None and t.shape != (channels, ):
            raise ValueError(f'{name} must be (K*d,) = ({channels},), got {tuple(t.shape)}')
    return b, num_dirs, channels // num_dirs, d_state, length


def _delta_to_dt(delta: Tensor, delta_bias: Optional[Tensor], delta_softplus: bool) -> Tensor:
    """``softplus(delta + delta_bias)`` in float32, ``(b, K*d, L)``."""
    dt = delta.float()
    if delta_bias is not None:
        dt = dt + delta_bias.float()[:, None]
    return F.softplus(dt) if delta_softplus else dt


def selective_scan_ref(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                       D: Optional[Tensor] = None, delta_bias: Optional[Tensor] = None,
                       delta_softplus: bool = True) -> Tensor:
    """Naive per-step loop over ``L`` (for tests and benchmarks). Returns
    ``(b, K*d, L)`` in ``u``'s dtype."""
    b, _, d, d_state, _ = _check_inputs(u, delta, A, B, C, D, delta_bias)
    dt = _delta_to_dt(delta, delta_bias, delta_softplus)
    uf, Af = u.float(), A.float()
    Bc = B.float().repeat_interleave(d, dim=1)  # (b, K*d, N, L)
    Cc = C.float().repeat_interleave(d, dim=1)
    h = uf.new_zeros(b, u.shape[1], d_state)
    ys = []
    for dt_t, u_t, B_t, C_t in zip(dt.unbind(-1), uf.unbind(-1), Bc.unbind(-1), Cc.unbind(-1)):
        h = torch.exp(dt_t[:, :, None] * Af) * h + (dt_t * u_t)[:, :, None] * B_t
        ys.append((h * C_t).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + D.float()[:, None] * uf
    return y.to(u.dtype)


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


def _selective_scan_dense(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                          D: Optional[Tensor], delta_bias: Optional[Tensor],
                          delta_softplus: bool) -> Tensor:
    """The scan in closed form, of plain differentiable ops and no loop, for
    ONNX export (any ``L``: dynamic input sizes): ``h_t = sum_{s<=t}
    exp(A (S_t - S_s)) dt_s u_s B_s`` with ``S = cumsum(dt)``. Exponents of the
    kept terms are never positive; memory is ``O(b K d N L^2)``."""
    b, num_dirs, d_state, length = B.shape
    u, A = u.float(), A.float()
    dt = _delta_to_dt(delta, delta_bias, delta_softplus)  # (b, K*d, L)
    cum = dt.cumsum(-1)
    gaps = cum.unsqueeze(-1) - cum.unsqueeze(-2)  # (b, K*d, t, s): S_t - S_s
    causal = torch.ones_like(gaps[0, 0]).tril()
    decay = torch.exp(torch.clamp(A[None, :, :, None, None] * gaps.unsqueeze(2), max=0.0))
    decay = decay * causal  # (b, K*d, N, t, s)
    shape = (b, num_dirs, -1, d_state, length)
    Bc = B.float().unsqueeze(2)  # (b, K, 1, N, L), broadcast over each direction's channels
    Cc = C.float().unsqueeze(2)
    x = (dt * u).view(b, num_dirs, -1, 1, length) * Bc  # (b, K, d, N, s)
    h = (decay.view(*shape, length) * x.unsqueeze(-2)).sum(-1)  # (b, K, d, N, t)
    y = (h * Cc).sum(3).reshape(u.shape)
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
    While exporting to ONNX, the loop-free :func:`_selective_scan_dense` runs
    instead. Returns ``(b, K*d, L)`` in ``u``'s dtype."""
    _check_inputs(u, delta, A, B, C, D, delta_bias)
    length = u.shape[-1]
    if chunk_size is None:
        chunk_size = default_chunk_size(length)
    if chunk_size < 1:
        raise ValueError(f'chunk_size must be >= 1, got {chunk_size}')
    if torch.onnx.is_in_onnx_export():
        return _selective_scan_dense(u, delta, A, B, C, D, delta_bias,
                                     delta_softplus).to(u.dtype)
    chunk = math.ceil(length / math.ceil(length / chunk_size))
    optional = [None if t is None else t.float() for t in (D, delta_bias)]
    with torch.autocast(u.device.type, enabled=False):  # float32 math under AMP too
        y = _ChunkedScan.apply(u.float(), delta.float(), A.float(), B.float(), C.float(),
                               *optional, delta_softplus, chunk)
    return y.to(u.dtype)


# mamba-ssm's kernel as custom ops: ``torch.compile`` treats them as opaque
# calls (an autograd.Function calling the extension would break the graph).
# ``x`` holds the kernel's per-chunk states (chunks of 2048 steps), which its
# backward needs. Registered for every device type: the extension itself
# rejects non-CUDA tensors (tests substitute a CPU stand-in).
@torch.library.custom_op('tinyvim::selective_scan_cuda_fwd', mutates_args=())
def _cuda_fwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
              delta_bias: Optional[Tensor], delta_softplus: bool) -> Tuple[Tensor, Tensor]:
    out, x, *_ = selective_scan_cuda.fwd(u, delta, A, B, C, D, None, delta_bias, delta_softplus)
    return out, x


@_cuda_fwd.register_fake
def _(u, delta, A, B, C, D, delta_bias, delta_softplus):
    b, channels, length = u.shape
    x = u.new_empty((b, channels, -(-length // 2048), 2 * A.shape[1]), dtype=A.dtype)
    return torch.empty_like(delta), x


@torch.library.custom_op('tinyvim::selective_scan_cuda_bwd', mutates_args=())
def _cuda_bwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
              delta_bias: Optional[Tensor], grad_out: Tensor, x: Tensor,
              delta_softplus: bool) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor,
                                             Tensor]:
    grads = selective_scan_cuda.bwd(u, delta, A, B, C, D, None, delta_bias, grad_out, x, None,
                                    None, delta_softplus, False)[:7]
    # custom ops return tensors: an empty one stands for the gradient of a missing D / bias
    return tuple(u.new_empty(0) if g is None else g for g in grads)


@_cuda_bwd.register_fake
def _(u, delta, A, B, C, D, delta_bias, grad_out, x, delta_softplus):
    return (torch.empty_like(u), torch.empty_like(delta), torch.empty_like(A),
            torch.empty_like(B), torch.empty_like(C),
            *(u.new_empty(0) if t is None else torch.empty_like(t) for t in (D, delta_bias)))


def _cuda_setup_context(ctx, inputs, output) -> None:
    *tensors, delta_softplus = inputs
    ctx.save_for_backward(*tensors, output[1])
    ctx.delta_softplus = delta_softplus


def _cuda_backward(ctx, grad_out: Tensor, grad_x: Optional[Tensor]):
    u, delta, A, B, C, D, delta_bias, x = ctx.saved_tensors
    grads = torch.ops.tinyvim.selective_scan_cuda_bwd(u, delta, A, B, C, D, delta_bias,
                                                      grad_out.contiguous(), x,
                                                      ctx.delta_softplus)
    return (*grads[:5], None if D is None else grads[5],
            None if delta_bias is None else grads[6], None)


_cuda_fwd.register_autograd(_cuda_backward, setup_context=_cuda_setup_context)


class SelectiveScanCuda:
    """mamba-ssm's ``selective_scan_cuda`` kernel, differentiable (mirrors
    ``mamba_ssm.ops.selective_scan_interface.SelectiveScanFn``):
    ``SelectiveScanCuda.apply(u, delta, A, B, C, D, delta_bias, delta_softplus)``.

    ``u``, ``delta``, ``B``, ``C`` run in ``u``'s dtype (float32, float16 or
    bfloat16); ``A``, ``D`` and ``delta_bias`` in float32. Gradients come back
    in the dtypes of the inputs given.
    """

    @staticmethod
    def apply(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
              delta_bias: Optional[Tensor], delta_softplus: bool) -> Tensor:
        u = u.contiguous()
        delta, B, C = (t.to(u.dtype).contiguous() for t in (delta, B, C))
        D, delta_bias = (None if t is None else t.float().contiguous() for t in (D, delta_bias))
        return _cuda_fwd(u, delta, A.float().contiguous(), B, C, D, delta_bias,
                         delta_softplus)[0]


def _selective_scan_cuda(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                         D: Optional[Tensor] = None, delta_bias: Optional[Tensor] = None,
                         delta_softplus: bool = True) -> Tensor:
    """Selective scan on mamba-ssm's CUDA kernel. Returns ``(b, K*d, L)`` in
    ``u``'s dtype."""
    _check_inputs(u, delta, A, B, C, D, delta_bias)
    resolve_backend('cuda', u.device)
    return SelectiveScanCuda.apply(u, delta, A, B, C, D, delta_bias, delta_softplus)


def _selective_scan_triton(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                           D: Optional[Tensor] = None, delta_bias: Optional[Tensor] = None,
                           delta_softplus: bool = True) -> Tensor:
    """Triton forward kernel where no gradient is needed, else the backend
    ``'auto'`` picks. Returns ``(b, K*d, L)`` in ``u``'s dtype."""
    _check_inputs(u, delta, A, B, C, D, delta_bias)
    tensors = (u, delta, A, B, C, D, delta_bias)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return _IMPLS[resolve_backend('auto', u.device)](*tensors, delta_softplus)
    D, delta_bias = (None if t is None else t.float() for t in (D, delta_bias))
    return selective_scan_triton(u, delta, A.float(), B, C, D, delta_bias, delta_softplus)


_IMPLS = {
    'cuda': _selective_scan_cuda,
    'triton': _selective_scan_triton,
    'torch': selective_scan_torch,
    'ref': selective_scan_ref,
}


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                   D: Optional[Tensor] = None, delta_bias: Optional[Tensor] = None,
                   delta_softplus: bool = True, backend: str = 'auto') -> Tensor:
    """Selective scan with the chosen backend (see the module docstring).

    Args:
        u, delta: ``(b, K*d, L)``.
        A: ``(K*d, N)``, negative.
        B, C: ``(b, K, N, L)``.
        D, delta_bias: ``(K*d,)`` or ``None``.
        delta_softplus: apply softplus to ``delta + delta_bias``.
        backend: ``'auto'``, ``'cuda'``, ``'triton'``, ``'torch'`` or ``'ref'``.

    Returns:
        ``(b, K*d, L)`` in ``u``'s dtype.
    """
    name = resolve_backend(backend, u.device, u.dtype)
    return _IMPLS[name](u, delta, A, B, C, D, delta_bias, delta_softplus)
