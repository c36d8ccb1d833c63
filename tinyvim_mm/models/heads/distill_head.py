"""Two-head classifier head with DeiT-style hard distillation."""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.registry import MODELS
from mmpretrain.models.heads import ClsHead
from mmpretrain.structures import DataSample


@MODELS.register_module()
class DistillClsHead(ClsHead):
    """Linear ``head`` and ``dist_head`` on pooled features (released TinyViM
    classifier; parameter names match ``convert_official(..., 'classifier')``).

    - Training: ``(1 - distill_weight) * loss(head, labels) + distill_weight *
      CE(dist_head, argmax(teacher_logits))`` (DeiT hard distillation). Without
      teacher logits the ``dist_head`` is trained on the labels with ``loss``
      as well. ``labels`` may be Mixup/CutMix soft scores.
    - Inference (:meth:`forward`, ``predict``): the average of both heads'
      logits.

    Args:
        num_classes: number of classes.
        in_channels: channels of the pooled feature.
        distill_weight: weight of the ``dist_head`` loss (DeiT's ``alpha``).
        loss: loss on the labels (e.g. ``LabelSmoothLoss``).
        init_cfg: initialisation; trunc-normal std 0.02, zero bias by default.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 distill_weight: float = 0.5,
                 loss: dict = dict(type='CrossEntropyLoss', loss_weight=1.0),
                 init_cfg: Optional[dict] = dict(type='TruncNormal', layer='Linear',
                                                 std=0.02, bias=0.)) -> None:
        super().__init__(loss=loss, init_cfg=init_cfg)
        if num_classes <= 0:
            raise ValueError(f'num_classes must be positive, got {num_classes}')
        if not 0 <= distill_weight <= 1:
            raise ValueError(f'distill_weight must be in [0, 1], got {distill_weight}')
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.distill_weight = distill_weight
        self.head = nn.Linear(in_channels, num_classes)
        self.dist_head = nn.Linear(in_channels, num_classes)

    def pre_logits(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """The pooled ``(B, in_channels)`` feature of the last stage."""
        return feats[-1]

    def forward_heads(self, feats: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(head logits, dist_head logits)``, each ``(B, num_classes)``."""
        x = self.pre_logits(feats)
        return self.head(x), self.dist_head(x)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """Inference logits: the average of the two heads."""
        cls_score, dist_score = self.forward_heads(feats)
        return (cls_score + dist_score) / 2

    def loss(self, feats: Sequence[torch.Tensor], data_samples: List[DataSample],
             teacher_logits: Optional[torch.Tensor] = None) -> dict:
        """``loss_cls`` on the labels and ``loss_dist`` on the teacher's hard
        labels (or on the labels without teacher), already weighted."""
        cls_score, dist_score = self.forward_heads(feats)
        if 'gt_score' in data_samples[0]:
            target = torch.stack([s.gt_score for s in data_samples])
        else:
            target = torch.cat([s.gt_label for s in data_samples])
        batch = cls_score.size(0)
        loss_cls = self.loss_module(cls_score, target, avg_factor=batch)
        if teacher_logits is None:
            loss_dist = self.loss_module(dist_score, target, avg_factor=batch)
        else:
            if teacher_logits.shape != dist_score.shape:
                raise ValueError(f'Teacher logits {tuple(teacher_logits.shape)} do not match '
                                 f'the student logits {tuple(dist_score.shape)}: the teacher '
                                 'must predict the same classes')
            loss_dist = F.cross_entropy(dist_score, teacher_logits.argmax(dim=1))
        return dict(loss_cls=(1 - self.distill_weight) * loss_cls,
                    loss_dist=self.distill_weight * loss_dist)
