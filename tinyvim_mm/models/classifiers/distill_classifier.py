"""Image classifier trained with a frozen teacher (DeiT-style hard distillation).

Importing this module registers ``DistillImageClassifier`` and ``DistillClsHead`` for
mmpretrain configs (``custom_imports``).
"""
import copy
import logging
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.logging import MMLogger, print_log
from mmengine.model import BaseModel
from mmengine.registry import MODELS
from mmpretrain.models.classifiers import ImageClassifier
from mmpretrain.registry import MODELS as PRETRAIN_MODELS
from mmpretrain.structures import DataSample

from tinyvim_mm.checkpoint import extract_state_dict, load_local_checkpoint, state_dict_problems
from tinyvim_mm.ops.cuda_graphs import enable_cuda_graphs

from ..heads import DistillClsHead

#: ``teacher_fast['dtype']`` values.
FAST_DTYPES = {'float16': torch.float16, 'bfloat16': torch.bfloat16, 'float32': torch.float32}


class _TeacherLogits(nn.Module):
    """``(B, 3, H, W)`` images -> the teacher's ``(B, num_classes)`` logits: one tensor in,
    one out, whichever kind the teacher is (what a CUDA graph replays)."""

    def __init__(self, teacher: nn.Module) -> None:
        super().__init__()
        self.teacher = teacher

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.teacher, BaseModel):
            return self.teacher(x, mode='tensor')
        return self.teacher(x)


def _keeping_memory_format(fn: Callable[[torch.Tensor], torch.Tensor]
                           ) -> Callable[[torch.Tensor], torch.Tensor]:
    """``fn`` (a ``Module._apply`` conversion) with each tensor's memory format kept:
    ``.to(device / dtype)`` moves pass, ``.to(memory_format=...)`` changes do not."""

    def apply(t: torch.Tensor) -> torch.Tensor:
        out = fn(t)
        if out.dim() != 4:
            return out
        channels_last = t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()
        return out.contiguous(memory_format=torch.channels_last if channels_last
                              else torch.contiguous_format)  # a no-op where it already is

    return apply


class _Detached:
    """Holds a module (or the CUDA streams of the concurrent teacher) outside its owner's
    module tree, so that it has no parameters, buffers or ``state_dict`` entries there,
    is left alone by ``train()`` / ``init_weights()`` / optimizers / DDP, and is shared,
    not copied, by ``deepcopy`` (the EMA model)."""

    def __init__(self, module: Any) -> None:
        self.module = module

    def __deepcopy__(self, memo: dict) -> '_Detached':
        return self


@MODELS.register_module()
class DistillImageClassifier(ImageClassifier):
    """:class:`mmpretrain.models.ImageClassifier` whose ``dist_head`` learns
    from a frozen teacher's hard predictions (DeiT hard distillation).

    The teacher sees the same (augmented, mixed) inputs as the student. It is
    kept in eval mode without gradients and lives outside the module tree:
    it is not in ``parameters()`` nor in the student's checkpoint, and the
    optimizer and EMA never see it; only device/dtype moves (``to``, ``cuda``,
    ``half``) follow the student.

    It is built and its weights are loaded by :meth:`init_weights`, which
    ``Runner.train()`` calls before the first iteration: a missing or unfit
    checkpoint stops training there with a clear error, while evaluation and
    inference (``Runner.test()``, ``tools/test.py``, ``mmpretrain.get_model``)
    never build the teacher nor need its checkpoint.

    On CUDA the teacher runs as fast as inference can (``teacher_fast``): weights
    and inputs in half precision, compiled by ``torch.compile`` and replayed from CUDA
    graphs (RegNetY-16GF, batch 128, H200: 21.5 ms a batch; not compiled 31.8 ms,
    channels-last 38.2 ms, float32 45.6 ms), on a CUDA stream of its own beside the
    student's forward (TinyViM-B's training loop on an H200: 2,241 against 2,168 img/s
    after the student, 9.4 against 10.6 GB held); it only decides the hard labels (its
    argmax), which this does not change in practice (:meth:`teacher_agreement` measures it).

    Args:
        backbone, neck, head, pretrained, train_cfg, data_preprocessor,
        init_cfg: as in ``ImageClassifier``; with a teacher the head must be a
            :class:`DistillClsHead`.
        teacher: config (or module) of the teacher, an mmpretrain model whose
            ``forward(inputs, mode='tensor')`` gives logits (e.g.
            ``dict(type='TimmClassifier', model_name='regnety_160')``) or a
            plain module returning logits. ``None``: no distillation, both
            heads learn from the labels.
        teacher_checkpoint: local path of the teacher's weights (a state dict,
            bare or under ``state_dict`` / ``model``), loaded strictly.
        teacher_fast: on CUDA, ``dtype`` (``'float16'``, ``'bfloat16'`` or
            ``'float32'``), ``channels_last`` and ``compile`` (``torch.compile`` of
            the teacher in place: ``True`` or its keyword arguments) and
            ``cuda_graphs`` (replay the teacher's forward from CUDA graphs, one per
            batch shape: :func:`tinyvim_mm.ops.cuda_graphs.enable_cuda_graphs`) of the teacher's
            forward, and ``concurrent`` (run the teacher on a CUDA stream of its own, beside
            the student's forward: the teacher's compute-bound convolutions and the
            student's memory-bound kernels share the GPU); ``None``: fp32, as built.
    """

    def __init__(self,
                 backbone: dict,
                 neck: Optional[dict] = None,
                 head: Optional[dict] = None,
                 teacher: Optional[Union[dict, nn.Module]] = None,
                 teacher_checkpoint: Optional[str] = None,
                 teacher_fast: Optional[dict] = dict(dtype='float16', channels_last=False,
                                                     compile=True, cuda_graphs=True,
                                                     concurrent=True),
                 pretrained: Optional[str] = None,
                 train_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(backbone, neck=neck, head=head, pretrained=pretrained,
                         train_cfg=train_cfg, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        self._teacher: Optional[_Detached] = None
        self._teacher_cfg = teacher
        self.teacher_checkpoint = teacher_checkpoint
        self.teacher_fast = dict(teacher_fast or {})
        unknown = set(self.teacher_fast) - {'dtype', 'channels_last', 'compile', 'cuda_graphs',
                                            'concurrent'}
        compile_cfg = self.teacher_fast.get('compile', False)
        if (unknown or self.teacher_fast.get('dtype', 'float32') not in FAST_DTYPES
                or not isinstance(compile_cfg, (bool, dict))
                or not isinstance(self.teacher_fast.get('cuda_graphs', False), bool)
                or not isinstance(self.teacher_fast.get('concurrent', False), bool)):
            raise ValueError(f'teacher_fast takes dtype ({sorted(FAST_DTYPES)}), channels_last, '
                             f'compile (True, False or torch.compile keyword arguments), '
                             f'cuda_graphs and concurrent (True / False), got {teacher_fast}')
        if (self.teacher_fast.get('cuda_graphs') and isinstance(compile_cfg, dict)
                and 'reduce-overhead' in str(compile_cfg.get('mode'))):
            raise ValueError(f'teacher_fast: cuda_graphs=True and compile mode '
                             f'{compile_cfg["mode"]!r} both capture CUDA graphs; keep one')
        self._teacher_loaded = False
        self._teacher_fast_on: Optional[torch.device] = None
        self._teacher_graphed: Optional[_Detached] = None
        # device index -> the concurrent teacher's CUDA stream
        self._teacher_streams = _Detached({})
        if teacher is None:
            if teacher_checkpoint is not None:
                raise ValueError('teacher_checkpoint is set but teacher is None; set '
                                 'model.teacher or drop teacher_checkpoint')
            return
        if teacher_checkpoint is None:
            raise ValueError('A teacher needs its weights: set model.teacher_checkpoint to a '
                             'local checkpoint file (a randomly initialised teacher is useless)')
        if not isinstance(self.head, DistillClsHead):
            raise TypeError(f'Distillation needs a DistillClsHead, got {type(self.head).__name__}')
        if isinstance(teacher, nn.Module):
            self._teacher = _Detached(teacher.requires_grad_(False).eval())

    @property
    def has_teacher(self) -> bool:
        """Whether the classifier distils from a teacher (built or not yet)."""
        return self._teacher_cfg is not None

    @property
    def teacher(self) -> Optional[nn.Module]:
        """The frozen teacher (built on first use, on the student's device), or ``None``."""
        if self._teacher is None and self._teacher_cfg is not None:
            module = PRETRAIN_MODELS.build(self._teacher_cfg).requires_grad_(False).eval()
            device = next(self.parameters()).device
            self._teacher = _Detached(module.to(device))
        return None if self._teacher is None else self._teacher.module

    def _apply(self, fn, *args, **kwargs) -> 'DistillImageClassifier':
        super()._apply(fn, *args, **kwargs)
        if self._teacher is not None:
            # device and dtype follow; the memory format stays the teacher's own (the
            # student's channels-last would put RegNetY-16GF's grouped convolutions on a
            # slower cuDNN path: 38.2 instead of 32.2 ms a batch of 128 on an H200)
            self._teacher.module._apply(_keeping_memory_format(fn), *args, **kwargs)
            self._teacher_fast_on = None
            self._teacher_graphed = None
        return self

    def init_weights(self) -> None:
        """Initialise the student, then load the teacher's checkpoint."""
        super().init_weights()
        if self.has_teacher and not self._teacher_loaded:
            self.load_teacher()

    def load_teacher(self) -> None:
        """Load ``teacher_checkpoint`` into the teacher, strictly.

        Raises:
            FileNotFoundError: the file does not exist.
            RuntimeError: it cannot be read or does not fit the teacher.
        """
        path = Path(self.teacher_checkpoint).expanduser()
        name = type(self.teacher).__name__
        if not path.is_file():
            raise FileNotFoundError(
                f'Teacher checkpoint {str(path)!r} (model.teacher_checkpoint) not found. '
                'Download the teacher weights there (the TinyViM recipe uses DeiT\'s RegNetY-16GF, '
                'regnety_160-a5fe3fc4.pth) or train without teacher (*_noteacher configs).')
        try:
            state_dict = extract_state_dict(load_local_checkpoint(str(path), 'cpu'))
        except Exception as err:
            raise RuntimeError(f'Cannot read teacher checkpoint {str(path)!r}: {err}') from err
        problems = state_dict_problems(self.teacher.state_dict(), state_dict)
        if problems:
            raise RuntimeError(f'Teacher checkpoint {str(path)!r} does not fit the teacher '
                               f'({name}): ' + '; '.join(problems))
        self.teacher.load_state_dict(state_dict, strict=True)
        self._teacher_loaded = True
        print_log(f'Loaded the distillation teacher ({name}) from {path}',
                  logger=MMLogger.get_current_instance())

    def _fast_teacher(self, device: torch.device) -> nn.Module:
        """The teacher in its :attr:`teacher_fast` form on CUDA (converted once)."""
        teacher = self.teacher
        if device.type != 'cuda' or not self.teacher_fast or self._teacher_fast_on == device:
            return teacher
        dtype = FAST_DTYPES[self.teacher_fast.get('dtype', 'float32')]
        if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            dtype = torch.float16
        teacher.to(dtype=dtype, memory_format=torch.channels_last if
                   self.teacher_fast.get('channels_last') else torch.contiguous_format)
        compile_cfg = self.teacher_fast.get('compile')
        if compile_cfg and torch.cuda.get_device_capability(device) < (7, 0):
            print_log('teacher_fast.compile: torch.compile (Triton) needs compute capability '
                      '7.0; the teacher runs without', logger=MMLogger.get_current_instance(),
                      level=logging.WARNING)
        elif compile_cfg:
            teacher.compile(**(compile_cfg if isinstance(compile_cfg, dict) else {}))
        if self.teacher_fast.get('cuda_graphs'):
            # a full batch and the epoch's last, shorter one
            self._teacher_graphed = _Detached(
                enable_cuda_graphs(_TeacherLogits(teacher).eval(), max_graphs=4))
        self._teacher_fast_on = device
        return teacher

    @torch.no_grad()
    def teacher_logits(self, inputs: torch.Tensor, fast: bool = True) -> torch.Tensor:
        """The frozen teacher's float32 ``(B, num_classes)`` logits for ``inputs``
        (in its :attr:`teacher_fast` form unless ``fast=False``)."""
        if not self.has_teacher:
            raise RuntimeError('This classifier has no teacher')
        if not self._teacher_loaded:
            raise RuntimeError('The teacher weights are not loaded: call init_weights() '
                               '(Runner.train() does) or load_teacher() first')
        teacher = self._fast_teacher(inputs.device) if fast else self.teacher
        weight = next(teacher.parameters())
        memory_format = (torch.channels_last if self.teacher_fast.get('channels_last')
                         and inputs.is_cuda and fast else torch.contiguous_format)
        x = inputs.to(dtype=weight.dtype, memory_format=memory_format)
        graphed = self._teacher_graphed
        net = graphed.module if fast and graphed is not None and inputs.is_cuda \
            else _TeacherLogits(teacher)
        with torch.autocast(inputs.device.type, enabled=False):
            logits = net(x)
        return logits.float()

    @torch.no_grad()
    def teacher_agreement(self, inputs: torch.Tensor) -> float:
        """Fraction of ``inputs`` whose hard label (argmax) the fast teacher gives as the
        float32 teacher does (1.0 off CUDA or without ``teacher_fast``)."""
        fast = self.teacher_logits(inputs).argmax(1)
        reference = copy.deepcopy(self.teacher).float().to(memory_format=torch.contiguous_format)
        reference._compiled_call_impl = None  # eager: no compilation for one reference call
        x = inputs.float().contiguous()
        with torch.autocast(inputs.device.type, enabled=False):
            logits = _TeacherLogits(reference)(x)
        return float((logits.argmax(1) == fast).float().mean())

    def loss(self, inputs: torch.Tensor, data_samples: List[DataSample]) -> dict:
        """Losses of both heads; ``dist_head`` against the teacher if any."""
        if not self.has_teacher:
            return self.head.loss(self.extract_feat(inputs), data_samples)
        if self.teacher_fast.get('concurrent') and inputs.is_cuda:
            feats, logits = self._student_beside_teacher(inputs)
        else:
            feats = self.extract_feat(inputs)
            logits = self.teacher_logits(inputs)
        return self.head.loss(feats, data_samples, teacher_logits=logits)

    def _student_beside_teacher(self, inputs: torch.Tensor
                                ) -> Tuple[Tuple[torch.Tensor, ...], torch.Tensor]:
        """The student's features and the teacher's logits, the teacher launched first on
        a stream of its own (``teacher_fast.concurrent``). The side stream starts once the
        inputs are ready; the main stream waits for it before the logits are used, and
        the logits (allocated on the side stream) are marked as used by the main one, so
        that the allocator does not hand their memory to the next batch's teacher early.
        ``inputs`` outlive the wait, so no main-stream allocation reuses them meanwhile."""
        streams, index = self._teacher_streams.module, inputs.device.index
        if index not in streams:
            streams[index] = torch.cuda.Stream(inputs.device)
        side, main = streams[index], torch.cuda.current_stream(inputs.device)
        side.wait_stream(main)
        with torch.cuda.stream(side):
            logits = self.teacher_logits(inputs)
        feats = self.extract_feat(inputs)
        main.wait_stream(side)
        logits.record_stream(main)
        return feats, logits
