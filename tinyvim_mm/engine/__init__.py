"""Training components: optimizer wrappers and hooks."""
from .agc import AGCOptimWrapper, AmpAGCOptimWrapper, adaptive_clip_grad_

__all__ = ['AGCOptimWrapper', 'AmpAGCOptimWrapper', 'adaptive_clip_grad_']
