"""Safe checkpoint loading and exact resume for MMEngine 0.10 on torch >= 2.6.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``: only tensors, containers
and allow-listed classes are unpickled, so a checkpoint cannot run code on load. MMEngine
0.10.7 writes more than that (numpy arrays / scalars / dtypes and ``HistoryBuffer`` in the
message-hub state), so resuming failed. ``import tinyvim_mm`` imports this module, which

* allow-lists exactly those types (:data:`MMENGINE_CHECKPOINT_GLOBALS`,
  ``torch.serialization.add_safe_globals``) -- safety stays on;
* replaces MMEngine's loader of local files by :func:`load_local_checkpoint`: always
  ``weights_only=True``, and clear errors for a checkpoint that would run code
  (:class:`UnsafeCheckpointError`) and for a truncated or corrupt file;
* registers :class:`CheckpointGuardHook` (``tools/train.py`` and ``tools/test.py`` add
  it): checkpoints carry the RNG states and a resumed run continues bit-exactly, and a
  checkpoint whose weights do not fit the model is refused with the keys named.
"""
import logging
import os.path as osp
import pickle
import random
from typing import Any, Callable, Dict, Iterator, List, Optional, Union

import numpy as np
import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer, print_log
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.registry import HOOKS
from mmengine.runner.checkpoint import CheckpointLoader

from .checkpoint import state_dict_problems


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


# ------------------------------------------------------------------------- RNG states
def get_rng_states() -> Dict[str, Any]:
    """Python, numpy, torch (and CUDA) generator states, as tensors and plain types."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    states = dict(python=random.getstate(), torch=torch.get_rng_state(),
                  numpy=(kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss))
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states['cuda'] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: Dict[str, Any]) -> None:
    """Restore what :func:`get_rng_states` returned."""
    random.setstate(states['python'])
    kind, keys, pos, has_gauss, gauss = states['numpy']
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(states['torch'])
    cuda = states.get('cuda')
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


class _RestoreAfterSkip:
    """Iterator proxy: after ``skip`` batches, restore RNG states, then fetch the next."""

    def __init__(self, iterator: Iterator, skip: int, states: Dict[str, Any]) -> None:
        self.iterator, self.skip, self.states = iterator, skip, states

    def __iter__(self) -> '_RestoreAfterSkip':
        return self

    def __next__(self) -> Any:
        if self.skip == 0 and self.states is not None:
            set_rng_states(self.states)
            self.states = None
        self.skip -= 1
        return next(self.iterator)


def _bare_model(model: nn.Module) -> nn.Module:
    """The model inside a DDP / test-time-augmentation wrapper."""
    if is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        return model.module
    return model


def check_state_dict(model: nn.Module, state_dict: Dict[str, torch.Tensor]) -> List[str]:
    """Differences between a checkpoint's ``state_dict`` and ``model``: missing and
    unexpected keys and shape mismatches (empty when they fit exactly)."""
    state_dict = {k[7:] if k.startswith('module.') else k: v for k, v in state_dict.items()}
    return state_dict_problems(model.state_dict(), state_dict)


@HOOKS.register_module()
class CheckpointGuardHook(Hook):
    """Exact resume and strict checkpoints.

    * Saves the Python / numpy / torch / CUDA RNG states in every checkpoint and restores
      them on resume exactly where the interrupted run stood: after MMEngine's
      iteration-based loop has skipped the batches already trained (with data workers
      that skip replays their random draws), at the start for epoch-based loops. With a
      fixed seed the continued run is then bit-identical to an uninterrupted one.
      Validation leaves the training RNG states as they were, so where a run was
      interrupted and validated does not matter.
    * Refuses a resumed checkpoint whose weights do not fit the model (MMEngine loads it
      non-strictly and then fails on the optimizer state, or trains a half-loaded model);
      with ``strict_load=True`` also a ``load_from`` checkpoint (``tools/test.py``).

    Limits: an epoch-based run resumed from a mid-epoch checkpoint repeats that epoch
    (MMEngine); persistent data workers restart their random streams; in distributed
    runs rank 0's states are saved and only rank 0 restores them.
    """

    priority = 'VERY_LOW'

    def __init__(self, strict_load: bool = False) -> None:
        self.strict_load = strict_load
        self._resumed_states: Optional[Dict[str, Any]] = None
        self._val_states: Optional[Dict[str, Any]] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['rng_states'] = get_rng_states()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        resuming = getattr(runner, '_resume', False)
        if (resuming or self.strict_load) and 'state_dict' in checkpoint:
            problems = check_state_dict(_bare_model(runner.model), checkpoint['state_dict'])
            if problems:
                hint = ('Resuming continues a run of the same config; to start from other '
                        'weights use load_from without --resume.' if resuming else
                        'Test with the config the checkpoint was trained with; convert '
                        'released checkpoints with tools/convert_official.py.')
                raise RuntimeError(
                    f'Cannot {"resume from" if resuming else "load"} this checkpoint: its '
                    f'weights do not fit the model of the config ({"; ".join(problems)}). '
                    + hint)
        if resuming:
            self._resumed_states = checkpoint.get('rng_states')
            if self._resumed_states is None:
                print_log('The resumed checkpoint has no RNG states (saved without '
                          'CheckpointGuardHook): the continued run is not bit-identical to '
                          'an uninterrupted one.', logger='current', level=logging.WARNING)

    def before_train(self, runner) -> None:
        states, self._resumed_states = self._resumed_states, None
        if states is None or runner.rank != 0:
            return
        loop = runner.train_loop
        if hasattr(loop, 'dataloader_iterator') and runner.iter > 0:
            # IterBasedTrainLoop skips `iter` batches first: restore after them.
            loop.dataloader_iterator = _RestoreAfterSkip(loop.dataloader_iterator,
                                                         runner.iter, states)
        else:
            set_rng_states(states)

    def before_val(self, runner) -> None:
        self._val_states = get_rng_states()

    def after_val(self, runner) -> None:
        if self._val_states is not None:
            set_rng_states(self._val_states)
            self._val_states = None


torch.serialization.add_safe_globals(MMENGINE_CHECKPOINT_GLOBALS)
CheckpointLoader.register_scheme(prefixes='', force=True)(_load_from_local)
