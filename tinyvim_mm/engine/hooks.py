"""Hooks: exact resume and strict checkpoints (:class:`CheckpointGuardHook`)."""
import logging
import random
from typing import Any, Dict, Iterator, List, Optional

import numpy as np
import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.registry import HOOKS

from tinyvim_mm.checkpoint.state_dict import state_dict_problems


def get_rng_states() -> Dict[str, Any]:
    """Python, numpy, torch (and CUDA) generator states, as tensors and plain types."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    states = dict(python=random.getstate(), torch=torch.get_rng_state(),
                  numpy=(kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss))
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states['cuda'] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: Dict[str, Any]) -> None:
    """Restore what :func:`get_rng_states` returned (its tensors may have been loaded onto
    a GPU, as a resumed checkpoint's are: the generators take them from the CPU)."""
    random.setstate(states['python'])
    kind, keys, pos, has_gauss, gauss = states['numpy']
    np.random.set_state((kind, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(states['torch'].cpu())
    cuda = states.get('cuda')
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


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


@HOOKS.register_module()
class InferenceFormHook(Hook):
    """Test in the fast inference form: after the checkpoint is loaded, fold the model and
    swap its blocks for their fused forms (``tinyvim_mm.deploy.optimize_for_inference``;
    kernels that cannot run on the device fall back with a one-line log), and replay the
    TinyViM backbone's forward from CUDA graphs, one per input shape
    (``tinyvim_mm.deploy.enable_cuda_graphs``; on GPUs only, at most ``max_graphs``
    shapes). ``tools/test.py --deploy`` adds it; the other arguments are
    ``optimize_for_inference``'s."""

    priority = 'VERY_LOW'

    def __init__(self, fuse_blocks: bool = True, fuse_mixers: bool = True,
                 fold_axial: bool = True, scan_backend: Optional[str] = 'triton',
                 channels_last: bool = True, cuda_graphs: bool = True,
                 max_graphs: int = 16) -> None:
        self.kwargs = dict(fuse_blocks=fuse_blocks, fuse_mixers=fuse_mixers,
                           fold_axial=fold_axial, scan_backend=scan_backend,
                           channels_last=channels_last)
        from tinyvim_mm.deploy import check_inference_options, check_max_graphs
        check_inference_options(scan_backend)  # a typo fails when built, not after loading
        self.cuda_graphs = cuda_graphs
        self.max_graphs = check_max_graphs(max_graphs)

    def before_test(self, runner) -> None:
        from tinyvim_mm.deploy import enable_cuda_graphs, optimize_for_inference
        from tinyvim_mm.models import TinyViM
        model = _bare_model(runner.model)
        optimize_for_inference(model, **self.kwargs)
        graphed = 0
        if self.cuda_graphs:
            for backbone in [m for m in model.modules() if isinstance(m, TinyViM)]:
                enable_cuda_graphs(backbone, self.max_graphs)
                graphed += 1
        runner.logger.info(f'testing the inference form ({self.kwargs}); TinyViM backbones '
                           f'replaying CUDA graphs on GPU inputs: {graphed}')
