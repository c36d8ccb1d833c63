"""The fused conv-FFN block (one Triton kernel, inference)."""
from .fused_ffn import MAX_CHANNELS, fused_ffn, fused_ffn_transposed, fused_ffn_unsupported

__all__ = ['MAX_CHANNELS', 'fused_ffn', 'fused_ffn_transposed', 'fused_ffn_unsupported']
