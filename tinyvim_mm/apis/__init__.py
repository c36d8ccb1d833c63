"""High-level APIs: single-image inference and drawing for the three toolboxes."""
from .inference import (CheckpointMismatchError, draw, init_model, load_inference_config,
                        load_state_dict_strict, read_image, task_of)

__all__ = [
    'CheckpointMismatchError', 'draw', 'init_model', 'load_inference_config',
    'load_state_dict_strict', 'read_image', 'task_of'
]
