"""The TinyViM classifier as a plain ``nn.Module`` (no toolbox): for benchmarks, ONNX
export and inference scripts. Its parameter names are those of the mmpretrain model
(``backbone.*``, ``head.head.*``, ``head.dist_head.*``), so mmpretrain checkpoints and
converted released checkpoints load as they are."""
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn

from tinyvim_mm.checkpoint import (convert_official, extract_state_dict, is_released_layout,
                                   load_local_checkpoint, state_dict_problems)
from ..backbones import TinyViM


class TinyViMClassifier(nn.Module):
    """Backbone (last stage, batch-normed) -> global average pool -> ``head`` and
    ``dist_head``: ``(B, 3, H, W) -> (B, num_classes)``, the average of both heads
    (the released model's inference), or both logits while training.

    Args:
        arch: TinyViM arch (``'s'``, ``'b'``, ``'l'`` or a dict).
        num_classes: classes of both heads.
        scan_backend: selective-scan backend of the backbone.
        deploy: build the folded backbone directly.
    """

    def __init__(self, arch: Union[str, dict] = 's', num_classes: int = 1000,
                 scan_backend: str = 'auto', deploy: bool = False) -> None:
        super().__init__()
        if num_classes <= 0:
            raise ValueError(f'num_classes must be positive, got {num_classes}')
        self.backbone = TinyViM(arch, out_indices=(3, ), scan_backend=scan_backend,
                                deploy=deploy)
        width = self.backbone.out_channels[-1]
        self.head = nn.Module()
        self.head.head = nn.Linear(width, num_classes)
        self.head.dist_head = nn.Linear(width, num_classes)

    @property
    def num_classes(self) -> int:
        return self.head.head.out_features

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        pooled = self.backbone(x)[-1].mean((2, 3))
        logits = self.head.head(pooled), self.head.dist_head(pooled)
        return logits if self.training else (logits[0] + logits[1]) / 2

    @classmethod
    def from_checkpoint(cls, checkpoint: str, arch: Optional[str] = None,
                        scan_backend: str = 'auto') -> 'TinyViMClassifier':
        """The classifier with the weights of a released or mmpretrain checkpoint, in eval
        mode; the class count comes from the checkpoint, the arch too unless given.

        Raises:
            ValueError: the checkpoint holds no classifier heads, or fits no arch (the
                message names the differences).
        """
        state_dict = extract_state_dict(load_local_checkpoint(checkpoint, map_location='cpu'))
        if is_released_layout(state_dict):
            state_dict = convert_official(state_dict, target='classifier')
        state_dict = {k: v for k, v in state_dict.items()
                      if k.startswith(('backbone.', 'head.head.', 'head.dist_head.'))}
        if 'head.head.weight' not in state_dict:
            raise ValueError(f'{checkpoint} holds no classifier head (head.head.weight): '
                             'it is not a TinyViM classification checkpoint')
        num_classes = state_dict['head.head.weight'].shape[0]
        problems = {}
        for name in [arch] if arch else list(TinyViM.arch_settings):
            model = cls(name, num_classes, scan_backend)
            problems[name] = state_dict_problems(model.state_dict(), state_dict)
            if not problems[name]:
                model.load_state_dict(state_dict)
                return model.eval()
        raise ValueError(f'{checkpoint} does not fit TinyViMClassifier: ' + '; '.join(
            f'arch {name!r}: {", ".join(p[:3])}' for name, p in problems.items()))
