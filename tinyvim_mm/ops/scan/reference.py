"""The selective-scan interface, its argument checks and the per-step reference.

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
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

def selective_scan_flops(batch: int, length: int, channels: int, d_state: int,
                         with_D: bool = True) -> int:
    """FLOPs of the reference recurrence, VMamba's convention:
    ``9 * batch * length * channels * d_state``, plus ``batch * channels * length``
    for the ``D`` skip. ``channels`` is ``K*d``."""
    flops = 9 * batch * length * channels * d_state
    if with_D:
        flops += batch * channels * length
    return flops


def check_inputs(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
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


def delta_to_dt(delta: Tensor, delta_bias: Optional[Tensor], delta_softplus: bool) -> Tensor:
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
    b, _, d, d_state, _ = check_inputs(u, delta, A, B, C, D, delta_bias)
    dt = delta_to_dt(delta, delta_bias, delta_softplus)
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
