"""Checkpoints: released-layout conversion, strict pretrained loading and safe loading."""
from .safe_load import (UnsafeCheckpointError, allow_mmengine_checkpoint_types,
                        load_local_checkpoint, read_checkpoint_meta, use_safe_loader)
from .state_dict import (backbone_state_dict, convert_official, extract_state_dict,
                         is_released_layout, load_pretrained_backbone, state_dict_problems)

__all__ = [
    'UnsafeCheckpointError', 'allow_mmengine_checkpoint_types', 'backbone_state_dict',
    'convert_official', 'extract_state_dict', 'is_released_layout', 'load_local_checkpoint',
    'load_pretrained_backbone', 'read_checkpoint_meta', 'state_dict_problems', 'use_safe_loader'
]
