"""What the fast paths need from the device, and one-line logs when they fall back.

The checks run in plain Python (``torch.compile`` treats their results as
constants) and never raise: a fast path that cannot run reports a reason and
its caller takes the portable path instead.
"""
import contextlib
import functools
import logging
import os
from typing import Tuple, Union

import torch

logger = logging.getLogger('tinyvim_mm')
_LOGGED = set()

#: Triton kernels without matrix products (the selective scan) run from Volta on.
SCAN_MIN_CAPABILITY = (7, 0)
#: Kernels with ``tl.dot`` need Ampere tensor cores (Triton 3 dropped Volta's).
DOT_MIN_CAPABILITY = (8, 0)


def log_once(message: str) -> None:
    """Log ``message`` as a warning of the ``tinyvim_mm`` logger, once per process."""
    if message not in _LOGGED:
        _LOGGED.add(message)
        logger.warning(message)


def triton_interpreter() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get('TRITON_INTERPRET', '0') == '1'


@functools.lru_cache(maxsize=None)
def triton_import_error() -> str:
    """``''`` when ``triton`` imports, else why not."""
    try:
        import triton  # noqa: F401
    except Exception as exc:  # a broken install raises more than ImportError
        return f'triton is not importable ({type(exc).__name__}: {exc})'
    return ''


def _unsupported(device_type: str, device_index: int, dtype: torch.dtype,
                 min_capability: Tuple[int, int]) -> str:
    if triton_import_error():
        return triton_import_error()
    if device_type == 'cpu' and triton_interpreter():
        return ''
    if device_type != 'cuda':
        return f'tensors on {device_type}, not on a CUDA device'
    if not torch.cuda.is_available():
        return 'CUDA is not available'
    capability = tuple(torch.cuda.get_device_capability(device_index))
    if capability < min_capability:
        return (f'compute capability {capability[0]}.{capability[1]} < '
                f'{min_capability[0]}.{min_capability[1]}')
    if dtype == torch.bfloat16 and capability < (8, 0):
        return f'bfloat16 needs compute capability 8.0, got {capability[0]}.{capability[1]}'
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        return f'unsupported dtype {dtype}'
    return ''


@torch.compiler.assume_constant_result
def triton_unsupported(device_type: str, device_index: int, dtype: torch.dtype,
                       min_capability: Tuple[int, int] = SCAN_MIN_CAPABILITY) -> str:
    """``''`` if Triton kernels can run on this device for ``dtype`` inputs, else
    the reason (no triton, not CUDA, compute capability too low, bf16 before
    Ampere). On CPU they run only under ``TRITON_INTERPRET=1``."""
    return _unsupported(device_type, device_index, dtype, min_capability)


def device_key(device: Union[torch.device, str]) -> Tuple[str, int]:
    """``(type, index)`` of ``device``, the index resolved to the current CUDA device."""
    device = torch.device(device)
    index = device.index
    if device.type == 'cuda' and index is None:
        index = torch.cuda.current_device() if torch.cuda.is_available() else 0
    return device.type, index or 0


@torch.compiler.assume_constant_result
def multiprocessor_count(device_type: str, device_index: int) -> int:
    """Streaming multiprocessors of a CUDA device (1 elsewhere)."""
    if device_type != 'cuda' or not torch.cuda.is_available():
        return 1
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def kernel_unsupported(x: torch.Tensor, needs_dot: bool = False) -> str:
    """``''`` if this project's Triton kernels can run on ``x`` (its device and dtype),
    else the reason; ``needs_dot``: kernels with matrix products (Ampere and newer)."""
    return triton_unsupported(*device_key(x.device), x.dtype,
                              DOT_MIN_CAPABILITY if needs_dot else SCAN_MIN_CAPABILITY)


def next_pow2(x: int) -> int:
    """The smallest power of 2 ``>= x`` (1 for ``x <= 1``): Triton block sizes."""
    return 1 << max(x - 1, 0).bit_length()


def device_guard(t: torch.Tensor):
    """The CUDA device of ``t`` as the current one while launching kernels on it (a
    no-op on the CPU, where kernels run only in Triton's interpreter)."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()
