"""Training components: optimizer wrappers and hooks."""
from .agc import (AdaptiveGradClipper, AGCOptimWrapper, AmpAGCOptimWrapper,
                  adaptive_clip_grad_)
from .async_log import AsyncRuntimeInfoHook, HostScalars
from .ema import ForeachExponentialMovingAverage
from .fast_training import FastTrainingRunner
from .hooks import CheckpointGuardHook, InferenceFormHook, get_rng_states, set_rng_states
from .optim_constructor import MergedGroupsOptimWrapperConstructor, merge_param_groups

__all__ = [
    'AGCOptimWrapper', 'AdaptiveGradClipper', 'AmpAGCOptimWrapper', 'AsyncRuntimeInfoHook',
    'CheckpointGuardHook', 'FastTrainingRunner', 'ForeachExponentialMovingAverage',
    'HostScalars', 'InferenceFormHook',
    'MergedGroupsOptimWrapperConstructor', 'adaptive_clip_grad_', 'get_rng_states',
    'merge_param_groups', 'set_rng_states'
]
