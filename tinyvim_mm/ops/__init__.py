"""Kernels and their dispatch: the selective-scan backends (:mod:`.scan`), the fused
FFN block (:mod:`.ffn`), the fused Laplace mixer's element-wise kernels (:mod:`.mixer`),
the device capability checks that choose among them (:mod:`.device`), CUDA-graph
replay of any module's forward (:mod:`.cuda_graphs`) and the size arithmetic of the ONNX
export forms (:mod:`.onnx_shapes`).
Nothing here imports :mod:`tinyvim_mm.models`."""
from .device import kernel_unsupported
from .ffn import fused_ffn, fused_ffn_transposed, fused_ffn_unsupported
from .mixer import fused_mixer_unsupported, mixer_merge, silu_avg_pool
from .scan import (BACKENDS, SelectiveScanCuda, available_backends, check_backend,
                   cross_selective_scan, cross_selective_scan_train, default_chunk_size,
                   fused_cross_scan_block, resolve_backend, scan_chunked_export, selective_scan,
                   selective_scan_flops, selective_scan_ref, selective_scan_torch, softplus_export,
                   split_projection)

__all__ = [
    'BACKENDS', 'SelectiveScanCuda', 'available_backends', 'check_backend',
    'cross_selective_scan', 'cross_selective_scan_train', 'default_chunk_size',
    'fused_cross_scan_block', 'fused_ffn', 'fused_ffn_transposed', 'fused_ffn_unsupported',
    'fused_mixer_unsupported', 'kernel_unsupported', 'mixer_merge', 'resolve_backend',
    'scan_chunked_export', 'selective_scan', 'selective_scan_flops', 'selective_scan_ref',
    'selective_scan_torch', 'silu_avg_pool', 'softplus_export', 'split_projection'
]
