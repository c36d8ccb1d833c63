"""Training components: optimizer wrappers and hooks."""
from .agc import AGCOptimWrapper, AmpAGCOptimWrapper, adaptive_clip_grad_
from .fast_training import FastTrainingRunner
from .hooks import CheckpointGuardHook, InferenceFormHook, get_rng_states, set_rng_states

__all__ = [
    'AGCOptimWrapper', 'AmpAGCOptimWrapper', 'CheckpointGuardHook', 'FastTrainingRunner',
    'InferenceFormHook', 'adaptive_clip_grad_', 'get_rng_states', 'set_rng_states'
]
