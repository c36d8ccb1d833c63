"""Custom operators: selective-scan backends, Triton fast paths and the
capability checks that choose among them."""
from .fused_ffn import fused_ffn, fused_ffn_unsupported
from .inference import FusedFFN, FusedTinyViMBlock, optimize_for_inference
from .selective_scan import (BACKENDS, SelectiveScanCuda, available_backends, default_chunk_size,
                             resolve_backend, selective_scan, selective_scan_flops,
                             selective_scan_ref, selective_scan_torch)
from .support import triton_unsupported
from .triton_scan import cross_scan_block, cross_selective_scan

__all__ = [
    'BACKENDS', 'default_chunk_size', 'SelectiveScanCuda', 'available_backends',
    'resolve_backend', 'selective_scan', 'selective_scan_flops', 'selective_scan_ref',
    'selective_scan_torch', 'cross_selective_scan', 'cross_scan_block', 'fused_ffn',
    'fused_ffn_unsupported', 'triton_unsupported', 'FusedFFN', 'FusedTinyViMBlock',
    'optimize_for_inference'
]
