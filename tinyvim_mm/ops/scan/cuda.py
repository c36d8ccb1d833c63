"""The ``cuda`` backend: mamba-ssm's compiled ``selective_scan_cuda`` extension as
``torch.library`` custom ops (differentiable, opaque to ``torch.compile``).

The extension is imported alone: ``import mamba_ssm`` pulls in Triton and transformers.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

from .reference import check_inputs

try:
    import selective_scan_cuda as _ext
except ImportError as exc:
    _ext = None
    IMPORT_ERROR: Optional[ImportError] = exc
else:
    IMPORT_ERROR = None


def extension_available() -> bool:
    """Whether mamba-ssm's ``selective_scan_cuda`` extension imported."""
    return _ext is not None


def require_extension(device: torch.device) -> None:
    """Raise a clear error unless the extension can run on ``device``.

    Raises:
        ImportError: the extension is missing.
        ValueError: ``device`` is not a CUDA device.
    """
    if _ext is None:
        raise ImportError(
            "The 'cuda' selective-scan backend needs the compiled `selective_scan_cuda` "
            'extension, which ships with the `mamba-ssm` package built with CUDA '
            "(pip install mamba-ssm); use backend='triton', 'torch' or 'auto' otherwise. "
            f'Import error: {IMPORT_ERROR}') from IMPORT_ERROR
    if torch.device(device).type != 'cuda':
        raise ValueError("The 'cuda' selective-scan backend needs tensors on a CUDA "
                         f"device, got {device}; use backend='torch' or 'auto'.")


# mamba-ssm's kernel as custom ops: ``torch.compile`` treats them as opaque
# calls (an autograd.Function calling the extension would break the graph).
# ``x`` holds the kernel's per-chunk states (chunks of 2048 steps), which its
# backward needs. Registered for every device type: the extension itself
# rejects non-CUDA tensors (tests substitute a CPU stand-in).
@torch.library.custom_op('tinyvim::selective_scan_cuda_fwd', mutates_args=())
def _cuda_fwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
              delta_bias: Optional[Tensor], delta_softplus: bool) -> Tuple[Tensor, Tensor]:
    out, x, *_ = _ext.fwd(u, delta, A, B, C, D, None, delta_bias, delta_softplus)
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
    grads = _ext.bwd(u, delta, A, B, C, D, None, delta_bias, grad_out, x, None,
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


def selective_scan_cuda(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                         D: Optional[Tensor] = None, delta_bias: Optional[Tensor] = None,
                         delta_softplus: bool = True) -> Tensor:
    """Selective scan on mamba-ssm's CUDA kernel. Returns ``(b, K*d, L)`` in
    ``u``'s dtype."""
    check_inputs(u, delta, A, B, C, D, delta_bias)
    require_extension(u.device)
    return SelectiveScanCuda.apply(u, delta, A, B, C, D, delta_bias, delta_softplus)
