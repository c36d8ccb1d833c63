"""Safe checkpoint loading for MMEngine 0.10 on torch >= 2.6.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``: only tensors, containers
and allow-listed classes are unpickled, so a checkpoint cannot run code on load. MMEngine
0.10.7 writes more than that (numpy arrays / scalars / dtypes and ``HistoryBuffer`` in the
message-hub state), so resuming failed.

* :func:`allow_mmengine_checkpoint_types` allow-lists exactly those types
  (:data:`MMENGINE_CHECKPOINT_GLOBALS`) -- safety stays on; ``import tinyvim_mm`` calls it;
* :func:`load_local_checkpoint`: always ``weights_only=True``, with clear errors for a
  checkpoint that would run code (:class:`UnsafeCheckpointError`) and for a truncated or
  corrupt file; :func:`use_safe_loader` makes it MMEngine's loader of local files (our
  tools call it).
"""
import os.path as osp
import pickle
from typing import Any, Callable, List, Optional, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """Stands in for ``builtins.getattr`` while unpickling: ``HistoryBuffer.__getstate__``
    stores its statistics methods, which pickle as ``getattr(HistoryBuffer, 'mean')``; any
    other ``getattr`` (the first step of most code-running pickles) is refused."""
    if obj is HistoryBuffer and name in STATISTICS_METHODS | set(
            HistoryBuffer._statistics_methods):
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(f'getattr({obj!r}, {name!r}) is not allowed')


def _numpy_globals() -> List[Any]:
    """numpy's array and scalar reconstruction (under the names numpy 1 and 2 pickle
    them by), arrays, dtypes and the classes of the numeric dtypes."""
    multiarray = (np._core if hasattr(np, '_core') else np.core).multiarray
    functions = [(fn, f'numpy.{core}.multiarray.{fn.__name__}')
                 for fn in (multiarray._reconstruct, multiarray.scalar)
                 for core in ('core', '_core')]
    dtype_classes = {type(np.dtype(t)) for t in (
        np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
        np.uint64, np.float16, np.float32, np.float64, np.complex64, np.complex128)}
    return [*functions, np.ndarray, np.dtype, *sorted(dtype_classes, key=str)]


#: The default statistics of ``HistoryBuffer``.
STATISTICS_METHODS = {'min', 'max', 'current', 'mean'}
#: What MMEngine 0.10 checkpoints hold beyond tensors and plain containers: numpy arrays,
#: scalars and dtypes (message hub, dataset meta) and the message hub's ``HistoryBuffer``
#: with its statistics methods. Reconstructing them runs no code of the file.
MMENGINE_CHECKPOINT_GLOBALS: List[Any] = [
    *_numpy_globals(), HistoryBuffer,
    (_history_buffer_getattr, 'builtins.getattr')
]


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint references a global that is not allow-listed."""


#: Phrases of the weights-only unpickler (and of ours) that mean "not allow-listed".
REFUSALS = ('Unsupported global', 'is blocked', 'Can only build', 'is not allowed')


def _refusal_reason(filename: str, error: Exception) -> Optional[str]:
    """Why the weights-only unpickler refused the file (None: the file is corrupt)."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(filename)
    except Exception:  # not a zip checkpoint: torch's message says more
        names = []
    if names:
        return f'it references {", ".join(names)}'
    detail = str(error).partition('WeightsUnpickler error:')[2].strip() or str(error)
    detail = detail.split('Check the documentation')[0].strip()
    return detail.splitlines()[0] if any(p in detail for p in REFUSALS) else None


def load_local_checkpoint(filename: str, map_location: Union[str, Callable, None] = None,
                          mmap: bool = False) -> Any:
    """``torch.load(filename, weights_only=True)`` with the allow-list, and clear errors.

    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: the file references a global outside the allow-list
            (e.g. a pickled ``os.system`` call): it is not loaded.
        RuntimeError: the file is truncated or not a torch checkpoint.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    try:
        return torch.load(filename, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        reason = _refusal_reason(filename, e)
        if reason is None:
            raise _corrupt(filename, e) from e
        raise UnsafeCheckpointError(
            f'Refusing to load {filename}: {reason}, outside the '
            'allow-list of what model checkpoints hold (tensors, containers, numpy '
            "arrays/scalars, MMEngine's HistoryBuffer); unpickling it could run code. Only "
            'if you trust the file: torch.load(..., weights_only=False) and save its '
            'state_dict again.') from e
    except PermissionError:
        raise
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        raise _corrupt(filename, e) from e


def _corrupt(filename: str, error: Exception) -> RuntimeError:
    return RuntimeError(
        f'Cannot read checkpoint {filename}: truncated or not a torch checkpoint '
        f'({type(error).__name__}: {str(error).strip().splitlines()[0]}). A save '
        'interrupted by a crash leaves such files: resume from an earlier checkpoint.')


def read_checkpoint_meta(filename: str) -> dict:
    """The ``meta`` dict of a local checkpoint (memory-mapped: tensors are not read)."""
    checkpoint = load_local_checkpoint(filename, map_location='cpu', mmap=True)
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    return meta or {}


def _load_from_local(filename: str, map_location: Union[str, Callable, None]) -> Any:
    return load_local_checkpoint(filename, map_location)


def allow_mmengine_checkpoint_types() -> None:
    """Allow-list :data:`MMENGINE_CHECKPOINT_GLOBALS` for ``torch.load(weights_only=True)``
    in this process (idempotent). ``import tinyvim_mm`` calls it: MMEngine's own loader,
    used by the toolboxes' tools, then reads MMEngine checkpoints with safety on."""
    torch.serialization.add_safe_globals(MMENGINE_CHECKPOINT_GLOBALS)


def use_safe_loader() -> None:
    """Make :func:`load_local_checkpoint` MMEngine's loader of local files in this process
    (its clear errors for unsafe and corrupt files); ``tools/train.py`` and
    ``tools/test.py`` call it."""
    allow_mmengine_checkpoint_types()
    CheckpointLoader.register_scheme(prefixes='', force=True)(_load_from_local)
