"""Selective scan (Mamba's S6 recurrence) with interchangeable backends.

The interface and the recurrence are in :mod:`.reference`. Backends:

- ``'cuda'``: mamba-ssm's compiled ``selective_scan_cuda`` extension (:mod:`.cuda`);
- ``'triton'``: Triton kernels, no compiled extension: the Laplace mixer's whole 2-D
  cross scan with its backward (:mod:`.cross_triton`, parallel along ``L``) and the
  inference kernels of :mod:`.triton_fwd`. Through the 1-D interface of
  :func:`selective_scan` it runs forward only (with gradients: ``'cuda'`` if the
  extension is there, else ``'torch'``);
- ``'torch'``: the chunked pure-PyTorch scan, any device (:mod:`.chunked`; a loop-free
  closed form while exporting to ONNX);
- ``'ref'``: the per-step loop, for tests and benchmarks;
- ``'auto'``: on a CUDA device Triton runs on, ``'triton'``; else ``'cuda'`` when
  mamba-ssm's extension can run, else ``'torch'`` (:func:`resolve_backend`).

Where Triton cannot run (no triton, not CUDA, compute capability < 7.0, bf16 before
8.0), ``'triton'`` becomes ``'cuda'`` or ``'torch'``, with a one-line log.
"""
from typing import List, Optional, Union

import torch
from torch import Tensor

from ..device import SCAN_MIN_CAPABILITY, device_key, kernel_unsupported, log_once, triton_unsupported
from .chunked import (default_chunk_size, scan_chunked_export, selective_scan_torch,
                      softplus_export)
from .cross_triton import cross_selective_scan_train, split_projection
from .cuda import SelectiveScanCuda, extension_available, require_extension, selective_scan_cuda
from .reference import check_inputs, selective_scan_flops, selective_scan_ref
from .triton_fwd import cross_scan_block, cross_selective_scan, selective_scan_triton

BACKENDS = ('auto', 'cuda', 'torch', 'ref', 'triton')

__all__ = [
    'BACKENDS', 'SelectiveScanCuda', 'available_backends', 'check_backend', 'cross_scan_block',
    'cross_selective_scan', 'cross_selective_scan_train', 'default_chunk_size',
    'fused_cross_scan_block', 'resolve_backend', 'scan_chunked_export', 'selective_scan',
    'selective_scan_flops', 'selective_scan_ref', 'selective_scan_torch', 'softplus_export',
    'split_projection'
]


def check_backend(name: str) -> str:
    """``name`` if it is a backend name, else a ``ValueError`` listing the valid ones."""
    if name not in BACKENDS:
        raise ValueError(f'Unknown selective-scan backend {name!r}; valid names: '
                         f"{', '.join(repr(b) for b in BACKENDS)}.")
    return name


def available_backends() -> List[str]:
    """Backends usable on this machine, best first (``'auto'`` not included)."""
    on_gpu = torch.cuda.is_available()
    cuda = ['cuda'] if extension_available() and on_gpu else []
    triton = ['triton'] if on_gpu and not triton_unsupported(*device_key('cuda'),
                                                             torch.float32) else []
    return triton + cuda + ['torch', 'ref']


def _without_triton(device: Union[torch.device, str]) -> str:
    """The backend where Triton cannot run: ``'cuda'`` with the extension, else ``'torch'``."""
    return 'cuda' if torch.device(device).type == 'cuda' and extension_available() else 'torch'


def resolve_backend(name: str, device: Union[torch.device, str],
                    dtype: torch.dtype = torch.float32) -> str:
    """The backend that runs for ``dtype`` tensors on ``device`` when ``name`` (``'auto'``
    included) is asked for.

    Raises:
        ValueError: unknown name, or ``'cuda'`` for tensors not on a CUDA device.
        ImportError: ``'cuda'`` without the ``selective_scan_cuda`` extension.
    """
    check_backend(name)
    on_cuda = torch.device(device).type == 'cuda'
    if name == 'auto':
        if on_cuda and not triton_unsupported(*device_key(device), dtype, SCAN_MIN_CAPABILITY):
            return 'triton'
        return _without_triton(device)
    if name == 'triton':
        reason = triton_unsupported(*device_key(device), dtype, SCAN_MIN_CAPABILITY)
        if not reason:
            return 'triton'
        fallback = _without_triton(device)
        log_once(f'tinyvim_mm: Triton selective scan unavailable ({reason}); using {fallback!r}')
        return fallback
    if name == 'cuda':
        require_extension(device)
    return name


def fused_cross_scan_block(x: Tensor) -> Optional[int]:
    """Channels per program of the fused inference cross scan
    (:func:`cross_selective_scan`) for the ``(B, d, h, w)`` input ``x``, or ``None``
    where it cannot run on ``x``'s device or would be slower than the scan by direction."""
    b, d, h, w = x.shape
    if kernel_unsupported(x):
        return None
    return cross_scan_block(b, d, h * w, x.device)


def _selective_scan_triton(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                           D: Optional[Tensor] = None, delta_bias: Optional[Tensor] = None,
                           delta_softplus: bool = True) -> Tensor:
    """Triton forward kernel where no gradient is needed, else ``'cuda'`` / ``'torch'``.
    Returns ``(b, K*d, L)`` in ``u``'s dtype."""
    check_inputs(u, delta, A, B, C, D, delta_bias)
    tensors = (u, delta, A, B, C, D, delta_bias)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return _IMPLS[_without_triton(u.device)](*tensors, delta_softplus)
    D, delta_bias = (None if t is None else t.float() for t in (D, delta_bias))
    return selective_scan_triton(u, delta, A.float(), B, C, D, delta_bias, delta_softplus)


_IMPLS = {
    'cuda': selective_scan_cuda,
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
