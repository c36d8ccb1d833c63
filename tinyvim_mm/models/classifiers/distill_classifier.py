"""Image classifier trained with a frozen teacher (DeiT-style hard distillation).

Importing this module registers ``DistillImageClassifier`` and ``DistillClsHead`` for
mmpretrain configs (``custom_imports``).
"""
from pathlib import Path
from typing import List, Optional, Union

import torch
import torch.nn as nn
from mmengine.logging import MMLogger, print_log
from mmengine.model import BaseModel
from mmengine.registry import MODELS
from mmpretrain.models.classifiers import ImageClassifier
from mmpretrain.registry import MODELS as PRETRAIN_MODELS
from mmpretrain.structures import DataSample

from tinyvim_mm.checkpoint import extract_state_dict, load_local_checkpoint, state_dict_problems

from ..heads import DistillClsHead


class _Detached:
    """Holds a module outside its owner's module tree, so that it has no
    parameters, buffers or ``state_dict`` entries there, is left alone by
    ``train()`` / ``init_weights()`` / optimizers / DDP, and is shared, not
    copied, by ``deepcopy`` (the EMA model)."""

    def __init__(self, module: nn.Module) -> None:
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

    Its weights are loaded by :meth:`init_weights`, which ``Runner.train()``
    calls before the first iteration: a missing or unfit checkpoint stops
    training there with a clear error, while evaluation (``Runner.test()``,
    ``tools/test.py``) never needs the teacher checkpoint.

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
    """

    def __init__(self,
                 backbone: dict,
                 neck: Optional[dict] = None,
                 head: Optional[dict] = None,
                 teacher: Optional[Union[dict, nn.Module]] = None,
                 teacher_checkpoint: Optional[str] = None,
                 pretrained: Optional[str] = None,
                 train_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(backbone, neck=neck, head=head, pretrained=pretrained,
                         train_cfg=train_cfg, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        self._teacher: Optional[_Detached] = None
        self.teacher_checkpoint = teacher_checkpoint
        self._teacher_loaded = False
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
        module = teacher if isinstance(teacher, nn.Module) else PRETRAIN_MODELS.build(teacher)
        self._teacher = _Detached(module.requires_grad_(False).eval())

    @property
    def teacher(self) -> Optional[nn.Module]:
        """The frozen teacher, or ``None``."""
        return None if self._teacher is None else self._teacher.module

    def _apply(self, fn, *args, **kwargs) -> 'DistillImageClassifier':
        super()._apply(fn, *args, **kwargs)
        if self._teacher is not None:
            self._teacher.module._apply(fn, *args, **kwargs)
        return self

    def init_weights(self) -> None:
        """Initialise the student, then load the teacher's checkpoint."""
        super().init_weights()
        if self._teacher is not None and not self._teacher_loaded:
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

    @torch.no_grad()
    def teacher_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """The frozen teacher's ``(B, num_classes)`` logits for ``inputs``."""
        if self._teacher is None:
            raise RuntimeError('This classifier has no teacher')
        if not self._teacher_loaded:
            raise RuntimeError('The teacher weights are not loaded: call init_weights() '
                               '(Runner.train() does) or load_teacher() first')
        teacher = self.teacher
        logits = teacher(inputs, mode='tensor') if isinstance(teacher, BaseModel) \
            else teacher(inputs)
        return logits.float()

    def loss(self, inputs: torch.Tensor, data_samples: List[DataSample]) -> dict:
        """Losses of both heads; ``dist_head`` against the teacher if any."""
        feats = self.extract_feat(inputs)
        if self._teacher is None:
            return self.head.loss(feats, data_samples)
        return self.head.loss(feats, data_samples, teacher_logits=self.teacher_logits(inputs))
