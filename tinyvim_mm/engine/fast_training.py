"""Fast training by default: the configs' ``fast_training`` settings, applied by
:class:`FastTrainingRunner` where they run.

A config opts in with ``runner_type = 'FastTrainingRunner'`` and, for example::

    fast_training = dict(amp='float16', channels_last=True, fused_optimizer=True,
                         compile=False)

- ``amp``: ``'float16'`` / ``'bfloat16'`` mixed precision (the optim wrapper becomes its
  ``Amp*`` version: ``AGCOptimWrapper`` -> ``AmpAGCOptimWrapper``), or ``False``;
- ``channels_last``: the backbone's weights (and so its activations) in channels-last
  memory format, set before the model is wrapped for distributed training; a TinyViM
  backbone returns its maps in its input's layout (NCHW from the data preprocessors), so
  necks and heads run as in the plain form (mmcv's ``RoIAlign`` reads NCHW memory
  whatever the strides: a channels-last neck would feed it garbage, silently). The
  weights are initialised in the plain layout (initialisers fill memory in order, so a
  channels-last tensor would draw other values from the same seed), so both forms start
  alike;
- ``fused_optimizer``: the fused CUDA implementation of ``Adam`` / ``AdamW`` / ``SGD``;
- ``compile``: ``torch.compile`` of the backbone's training-mode calls, in place (the
  state-dict keys stay; validation and test run it eagerly, see
  :func:`compile_for_training`), ``True``, the keyword arguments of ``torch.compile``
  or, short for ``dict(mode=...)``, one of its modes (``--cfg-options
  fast_training.compile=reduce-overhead`` replaces a config's ``compile=False``, which a
  dict given on the command line cannot without ``_delete_``);
- ``async_logging``: the losses reach the log one iteration late, from copies to the
  host started without waiting (:class:`~tinyvim_mm.engine.async_log.AsyncRuntimeInfoHook`
  in place of MMEngine's ``RuntimeInfoHook``, whose ``.item()`` makes the host wait for
  the device at the end of every iteration while the next batch, the hooks and the next
  launches are still to come);
- ``preprocess_stream``: the data preprocessor's training calls (copies to the device,
  normalisation, labels, Mixup / CutMix) run on a CUDA stream of their own
  (:func:`preprocess_on_side_stream`), so that their blocking copies wait for that
  stream alone, not for the previous iteration's work queued on the main one: with
  ``async_logging`` the next batch is prepared while the device trains on this one.
- ``host_threads``: the intra-op threads of the training process (``torch.set_num_threads``)
  while it trains, e.g. ``1``, what ``torchrun`` gives each of several processes per
  node; the main process of a GPU run does only small CPU work (mmdet's box sampling and
  mask padding), for which a pool of one thread per core competes with its data workers
  for the cores. Restored when training ends.

They apply on CUDA devices only; elsewhere (CPU runs, tests) training runs in the plain
form, with one log line saying so. Any of them is turned off from the command line, e.g.
``--cfg-options fast_training.amp=False``, or all with ``fast_training=None``.
"""
import contextlib
import copy
import logging
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.model import is_model_wrapper
from mmengine.registry import RUNNERS
from mmengine.runner import Runner
from mmengine.structures import BaseDataElement

from .runner import enable_amp

#: The settings a config may give, and what each means when absent.
DEFAULTS: Dict[str, object] = dict(amp=False, channels_last=False, fused_optimizer=False,
                                   compile=False, async_logging=False,
                                   preprocess_stream=False, host_threads=False)
FUSED_OPTIMIZERS = ('Adam', 'AdamW', 'SGD')
COMPILE_MODES = ('default', 'reduce-overhead', 'max-autotune', 'max-autotune-no-cudagraphs')


def compile_kwargs(compile_cfg: object) -> dict:
    """The keyword arguments of ``torch.compile`` that a ``compile`` setting stands for:
    ``True`` none, a mode string ``dict(mode=...)``, a dict itself.

    Raises:
        ValueError: any other value, or an unknown mode.
    """
    if compile_cfg is True:
        return {}
    if isinstance(compile_cfg, str):
        if compile_cfg not in COMPILE_MODES:
            raise ValueError(f'fast_training.compile: unknown torch.compile mode '
                             f'{compile_cfg!r}; valid: {COMPILE_MODES}')
        return dict(mode=compile_cfg)
    if isinstance(compile_cfg, dict):
        return dict(compile_cfg)
    raise ValueError('fast_training.compile must be False, True, a torch.compile mode or a '
                     f'dict of its keyword arguments, got {compile_cfg!r}')


def uses_cuda_graphs(compile_cfg: object) -> bool:
    """Whether a ``compile`` setting records CUDA graphs (inductor's
    ``reduce-overhead`` and ``max-autotune`` modes, or ``triton.cudagraphs``)."""
    if not compile_cfg:
        return False
    compile_cfg = compile_kwargs(compile_cfg)
    options = compile_cfg.get('options') or {}
    return (compile_cfg.get('mode') in ('reduce-overhead', 'max-autotune')
            or bool(options.get('triton.cudagraphs')))


def plan_fast_training(settings: Optional[dict], capability: Optional[Tuple[int, int]],
                       accumulation: int = 1, rocm: bool = False,
                       sync_bn: bool = False) -> Tuple[dict, List[str]]:
    """The settings that apply on a CUDA device of ``capability`` (``None``: no CUDA
    device), with ``accumulation`` backward passes per optimizer step (the optim
    wrapper's ``accumulative_counts``), on ROCm or not, and with the backbone's
    BatchNorms synchronised across processes (``sync_bn``: the config's ``sync_bn`` in a
    distributed run) or not; one note for each setting that does not apply, saying why.

    A compile that records CUDA graphs is dropped under gradient accumulation (the
    graphs' backward outputs become the ``.grad`` tensors and the next micro-batch's
    replay overwrites them: wrong gradients or an error, pytorch/pytorch#169545), on
    ROCm (inductor's graph trees train worse there, pytorch/pytorch#187715) and with
    SyncBatchNorm (``torch.compile`` breaks the graph at each one, pytorch/pytorch#161302:
    dozens of small graphs between collectives instead of one).

    Raises:
        ValueError: an unknown setting, ``amp`` or ``compile`` value.
    """
    settings = dict(settings or {})
    unknown = set(settings) - set(DEFAULTS)
    if unknown:
        raise ValueError(f'Unknown fast_training settings {sorted(unknown)}; valid: '
                         f'{sorted(DEFAULTS)}')
    if settings.get('amp') not in (False, None, 'float16', 'bfloat16'):
        raise ValueError(f"fast_training.amp must be 'float16', 'bfloat16' or False, got "
                         f"{settings['amp']!r}")
    if settings.get('compile'):
        compile_kwargs(settings['compile'])
    threads = settings.get('host_threads')
    if threads is not None and threads is not False and (type(threads) is not int
                                                          or threads < 1):
        raise ValueError(f'fast_training.host_threads must be a number of threads >= 1 or '
                         f'False, got {threads!r}')
    wanted = {k: v for k, v in settings.items() if v}
    if not wanted:
        return {}, []
    if capability is None:
        return {}, [f'no CUDA device: {", ".join(sorted(wanted))} off (plain fp32 training)']
    notes = []
    if wanted.get('amp') == 'bfloat16' and capability < (8, 0):
        wanted['amp'] = 'float16'
        notes.append(f'bfloat16 needs compute capability 8.0 (this GPU: {capability}): '
                     'amp=float16')
    if wanted.get('compile') and capability < (7, 0):
        del wanted['compile']
        notes.append('torch.compile (Triton) needs compute capability 7.0: compile off')
    why = (f'gradient accumulation ({accumulation} backward passes per step) would overwrite '
           'its gradients' if accumulation > 1 else 'not reliable on ROCm' if rocm
           else 'SyncBatchNorm breaks the graph at each BN' if sync_bn else '')
    if why and uses_cuda_graphs(wanted.get('compile')):
        notes.append(f'torch.compile with CUDA graphs: {why}: compile off')
        del wanted['compile']
    return wanted, notes


def apply_to_config(cfg, settings: dict) -> None:
    """The config edits of :func:`plan_fast_training`'s settings (AMP, fused optimizer,
    the runtime-info hook of ``async_logging``).

    Raises:
        ValueError: ``fused_optimizer`` for an optimizer without a fused implementation;
            ``async_logging`` with a config whose own ``runtime_info`` hook is another.
    """
    if settings.get('amp'):
        enable_amp(cfg)
        cfg.optim_wrapper.dtype = settings['amp']
    if settings.get('fused_optimizer'):
        optimizer = cfg.optim_wrapper.optimizer
        if optimizer.get('type') not in FUSED_OPTIMIZERS:
            raise ValueError(f'fast_training.fused_optimizer: {optimizer.get("type")!r} has no '
                             f'fused implementation; set it False (fused: {FUSED_OPTIMIZERS})')
        optimizer.fused = True
    if settings.get('async_logging'):
        hooks = cfg.get('default_hooks') or {}
        current = hooks.get('runtime_info', dict(type='RuntimeInfoHook'))
        if (current or {}).get('type') not in ('RuntimeInfoHook', 'AsyncRuntimeInfoHook'):
            raise ValueError(f'fast_training.async_logging replaces the RuntimeInfoHook, but '
                             f'default_hooks.runtime_info is {current!r}; set '
                             'fast_training.async_logging=False')
        cfg.default_hooks = dict(hooks, runtime_info=dict(type='AsyncRuntimeInfoHook'))


def backbone_of(model: nn.Module) -> nn.Module:
    """What the model edits apply to: the backbone of ``model`` (inside a DDP wrapper), or
    the model if it has none."""
    if is_model_wrapper(model):
        model = model.module
    return getattr(model, 'backbone', model)


def compile_for_training(module: nn.Module, **kwargs) -> None:
    """``torch.compile(**kwargs)`` of ``module``'s calls in training mode, in place; in
    eval mode (validation, test) it runs eagerly.

    In place like ``nn.Module.compile`` (the same ``_compiled_call_impl`` slot: the
    state-dict keys stay). Eval runs eagerly because the dense configs validate and test
    at many image sizes (keep-ratio resizes): compiled, each new size would recompile and,
    with CUDA graphs, record another set of graphs.
    """
    eager = module._call_impl
    compiled = torch.compile(eager, **kwargs)

    def call(*args, **kw):
        return (compiled if module.training else eager)(*args, **kw)
    module._compiled_call_impl = call


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    """The tensors in ``value``: a tensor, or dicts, lists, tuples and MMEngine data
    elements (a batch's ``data_samples``) of them, nested, and the tensors that box
    types such as mmdet's ``HorizontalBoxes`` hold (their ``tensor`` attribute)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(getattr(value, 'tensor', None), torch.Tensor):
        yield value.tensor
    elif isinstance(value, (dict, BaseDataElement)):
        for v in value.values():
            yield from _tensors(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v)


def preprocess_on_side_stream(preprocessor: nn.Module) -> None:
    """Run ``preprocessor``'s training calls on a CUDA stream of their own, in place.

    A data preprocessor copies the batch to the device with blocking copies (images,
    labels, Mixup's permutation index), and a blocking copy waits for everything queued on
    its stream: on the main stream, for the whole previous iteration, while the host
    still has the batch's per-sample Python work to do and the device then idles. On a
    stream of its own the copies wait for the preprocessing alone, which thus overlaps
    the previous iteration. The main stream then waits for the side stream (on the
    device), and every output tensor is marked as used by the main stream
    (``record_stream``), so that the caching allocator does not hand its memory to the
    next batch's preprocessing before the main stream is done with it. Calls with
    ``training=False`` (validation, test) and calls without CUDA run as before.
    """
    forward = preprocessor.forward
    streams: Dict[int, torch.cuda.Stream] = {}

    def call(data: dict, training: bool = False) -> dict:
        if not training or not torch.cuda.is_available():
            return forward(data, training)
        index = torch.cuda.current_device()
        if index not in streams:
            streams[index] = torch.cuda.Stream(index)
        main = torch.cuda.current_stream(index)
        with torch.cuda.stream(streams[index]):
            out = forward(data, training)
        main.wait_stream(streams[index])
        marked = set()
        for t in _tensors(out):
            key = t.untyped_storage().data_ptr()
            if t.is_cuda and key not in marked:
                marked.add(key)
                t.record_stream(main)
        return out

    preprocessor.forward = call


def prepare_model(model: nn.Module, settings: dict) -> nn.Module:
    """The model edits: channels-last backbone weights, a backbone compiled for training
    (in place), the data preprocessor on a stream of its own."""
    if settings.get('channels_last'):
        backbone_of(model).to(memory_format=torch.channels_last)
    compile_cfg = settings.get('compile')
    if compile_cfg:
        compile_for_training(backbone_of(model), **compile_kwargs(compile_cfg))
    if settings.get('preprocess_stream'):
        inner = model.module if is_model_wrapper(model) else model
        preprocess_on_side_stream(inner.data_preprocessor)
    return model


def init_in_plain_layout(model: nn.Module, init: Callable[[], None]) -> None:
    """Run ``init`` (a weight initialiser of ``model``) with the backbone's 4-D tensors in
    the contiguous layout, then return them to channels-last, in place (parameters keep
    their identity, so optimizers and wrappers built on them stay valid).

    Random initialisers fill memory in order: on channels-last weights the same seed
    would give other weights than the plain form's.
    """
    backbone = backbone_of(model)
    backbone.to(memory_format=torch.contiguous_format)
    try:
        init()
    finally:
        backbone.to(memory_format=torch.channels_last)


@contextlib.contextmanager
def host_threads(threads: Optional[int]) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` inside the block (nothing for ``None`` or
    ``False``), the former number restored after it."""
    if not threads:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _plan(cfg) -> Tuple[dict, List[str]]:
    """:func:`plan_fast_training` for ``cfg`` on this machine's first CUDA device."""
    cuda = torch.cuda.is_available()
    accumulation = (cfg.get('optim_wrapper') or {}).get('accumulative_counts', 1)
    distributed = cfg.get('launcher', 'none') != 'none'
    return plan_fast_training(cfg.get('fast_training'),
                              torch.cuda.get_device_capability() if cuda else None,
                              accumulation, rocm=cuda and torch.version.hip is not None,
                              sync_bn=distributed and bool(cfg.get('sync_bn')))


@RUNNERS.register_module()
class FastTrainingRunner(Runner):
    """MMEngine's ``Runner`` that applies the config's ``fast_training`` settings (module
    docstring) where they run, and logs which."""

    #: The settings that applied (set by :meth:`from_cfg`).
    fast_training: dict = {}

    def train(self) -> nn.Module:
        """MMEngine's training, with ``host_threads`` intra-op threads if set."""
        with host_threads(self.fast_training.get('host_threads')):
            return super().train()

    @classmethod
    def from_cfg(cls, cfg) -> 'FastTrainingRunner':
        cfg = copy.deepcopy(cfg)
        settings, notes = _plan(cfg)
        apply_to_config(cfg, settings)
        runner = super().from_cfg(cfg)  # its wrap_model records the settings
        message = f'fast_training: {settings}' if settings else 'fast_training: none applied'
        runner.logger.log(logging.WARNING if notes else logging.INFO,
                          '; '.join([message, *notes]))
        return runner

    def wrap_model(self, model_wrapper_cfg: Optional[dict], model: nn.Module) -> nn.Module:
        settings, _ = _plan(self.cfg)
        self.fast_training = settings  # what _init_model_weights sees
        return super().wrap_model(model_wrapper_cfg, prepare_model(model, settings))

    def _init_model_weights(self) -> None:
        if self.fast_training.get('channels_last'):
            init_in_plain_layout(self.model, super()._init_model_weights)
        else:
            super()._init_model_weights()
