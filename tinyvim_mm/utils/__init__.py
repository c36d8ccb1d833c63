from .checkpoint import (backbone_state_dict, convert_official, extract_state_dict,
                         load_pretrained_backbone)

__all__ = [
    'backbone_state_dict', 'convert_official', 'extract_state_dict', 'load_pretrained_backbone'
]
