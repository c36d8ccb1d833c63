"""The fused Laplace mixer: its element-wise work around the scan in two Triton kernels
(inference)."""
from .fused_mixer import fused_mixer_unsupported, mixer_merge, silu_avg_pool

__all__ = ['fused_mixer_unsupported', 'mixer_merge', 'silu_avg_pool']
